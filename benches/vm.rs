//! The vm level's per-run cost: `git chant work --sandbox vm` with an agent that does
//! nothing (busybox `true`), against a bare boot of the same kernel and chant's initramfs
//! that powers off as soon as its init starts, measured in the same run. Then the command
//! gate's cost in the guest: an agent that runs `true` 20 times through `$CHANT_EXEC`
//! (each call a round trip to chant on the host through qemu's forward, recorded in the
//! ledger) against one that runs it 20 times directly, in the same run.
//!
//! Run: `cargo bench --bench vm` (needs qemu, a kernel and busybox-static).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_git-chant");

fn main() {
    let runs = 3;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let path = format!(
        "{}:{}",
        Path::new(BIN).parent().expect("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("PATH", &path)
            .stdout(Stdio::null())
            .status()
            .expect("git")
            .success();
        assert!(ok, "git {args:?}");
    };
    let chant = |args: &[&str]| -> String {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(&repo)
            .env("PATH", &path)
            .output()
            .expect("git-chant");
        assert!(
            out.status.success(),
            "git chant {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "--initial-branch=main"]);
    git(&["config", "user.name", "Bench"]);
    git(&["config", "user.email", "bench@example.com"]);
    for i in 0..100 {
        std::fs::write(repo.join(format!("f{i}.txt")), format!("{i}\n")).expect("write");
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "base"]);
    chant(&["init"]);
    std::fs::write(
        repo.join(".chant/config.md"),
        "---\nagent:\n  sandbox: vm\n  command: [\"true\"]\n  vm:\n    memory: 256M\n---\n",
    )
    .expect("config");
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "chant"]);

    let config = git_chant::config::parse(
        ".chant/config.md",
        &std::fs::read_to_string(repo.join(".chant/config.md")).expect("read"),
    )
    .expect("config");
    let mut bare = Vec::new();
    let mut work = Vec::new();
    for i in 0..runs {
        bare.push(git_chant::sandbox::vm::bare_boot(&config.agent).expect("bare boot"));
        let id = chant(&["add", &format!("noop {i}")]);
        let start = Instant::now();
        chant(&["work", &id]);
        work.push(start.elapsed());
    }
    let b = median(&mut bare);
    let w = median(&mut work);

    println!(
        "vm level: bare boot to power-off {:.0} ms, git chant work (agent `true`) {:.0} ms, per-run overhead beyond the boot {:.0} ms ({:.2}x the bare boot)",
        ms(b),
        ms(w),
        ms(w.saturating_sub(b)),
        w.as_secs_f64() / b.as_secs_f64()
    );

    const CALLS: u32 = 20;
    let timed = |through: &str| {
        let command = format!(
            "[sh, -c, 'i=0; while [ $i -lt {CALLS} ]; do {through} true || exit 1; i=$((i+1)); done']"
        );
        std::fs::write(
            repo.join(".chant/config.md"),
            format!(
                "---\nagent:\n  sandbox: vm\n  command: {command}\n  vm:\n    memory: 256M\n---\n"
            ),
        )
        .expect("config");
        git(&["commit", "-q", "-am", "agent"]);
        let id = chant(&["add", "calls"]);
        let start = Instant::now();
        chant(&["work", &id]);
        start.elapsed()
    };
    let mut direct = Vec::new();
    let mut gated = Vec::new();
    for _ in 0..runs {
        direct.push(timed(""));
        gated.push(timed("\"$CHANT_EXEC\""));
    }
    let (d, g) = (median(&mut direct), median(&mut gated));
    println!(
        "vm gate: {CALLS} calls of `true` directly {:.0} ms, through \"$CHANT_EXEC\" {:.0} ms ({:.2}x), {:.0} ms per gate call",
        ms(d),
        ms(g),
        g.as_secs_f64() / d.as_secs_f64(),
        ms(g.saturating_sub(d)) / f64::from(CALLS)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
