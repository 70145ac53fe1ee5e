//! `git chant work` overhead (everything but the agent) against the plain-git baseline of
//! the same change: `git worktree add` + edit + `git add -A` + `git commit`, measured in the
//! same run on repositories of 10,000 and 100,000 files.
//!
//! Run: `cargo bench --bench work` (optionally `CHANT_BENCH_SIZES=10000` to pick sizes).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_git-chant");

fn main() {
    let sizes: Vec<usize> = std::env::var("CHANT_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    println!("work overhead vs git worktree add + add -A + commit (agent edits one file)");
    for n in sizes {
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = tmp.path().join("repo");
        make_repo(&repo, n);
        let runs = if n >= 100_000 { 2 } else { 5 };
        let mut base = Vec::new();
        let mut chant = Vec::new();
        for i in 0..runs {
            base.push(baseline(&repo, i));
            chant.push(chant_work(&repo, i));
        }
        let b = median(&mut base);
        let c = median(&mut chant);
        println!(
            "files={n:>7}  git baseline {:>8.0} ms  git chant work {:>8.0} ms  ratio {:.2}x (target <= 1.5x)",
            ms(b),
            ms(c),
            c.as_secs_f64() / b.as_secs_f64()
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `PATH` with git-chant first, for the hooks `git chant init` installs.
fn path_with_bin() -> String {
    let bin = Path::new(BIN)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!("{bin}:{}", std::env::var("PATH").unwrap_or_default())
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .env("PATH", path_with_bin())
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// A repository of `n` small files in 100-file directories, made with fast-import.
fn make_repo(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q", "--initial-branch=main"]);
    git(dir, &["config", "user.name", "Bench"]);
    git(dir, &["config", "user.email", "bench@example.com"]);
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .spawn()
        .expect("fast-import");
    {
        let stdin = child.stdin.as_mut().expect("stdin");
        let mut out = std::io::BufWriter::new(stdin);
        writeln!(out, "commit refs/heads/main\ncommitter Bench <bench@example.com> 1700000000 +0000\ndata 5\nbase\n").expect("write");
        for i in 0..n {
            let content = format!("file {i}\n");
            writeln!(
                out,
                "M 100644 inline d{}/f{i}.txt\ndata {}\n{content}",
                i / 100,
                content.len()
            )
            .expect("write");
        }
    }
    assert!(child.wait().expect("wait").success());
    git(dir, &["reset", "-q", "--hard", "main"]);
    let chant = Command::new(BIN)
        .args(["init"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .expect("chant init");
    assert!(chant.success());
    std::fs::write(
        dir.join(".chant/config.md"),
        "---\nagent:\n  sandbox: none\n  command: [sh, -c, \"echo changed >> d0/f0.txt\"]\n---\n",
    )
    .expect("config");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "chant"]);
}

fn baseline(repo: &Path, i: usize) -> Duration {
    let wt = repo.parent().expect("parent").join(format!("wt{i}"));
    let start = Instant::now();
    git(
        repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            &format!("base{i}"),
            wt.to_str().expect("utf8"),
            "main",
        ],
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(wt.join("d0/f0.txt"))
        .and_then(|mut f| f.write_all(b"changed\n"))
        .expect("edit");
    git(&wt, &["add", "-A"]);
    // Plain git: without the hooks chant installed (chant's own landing runs no hooks).
    git(&wt, &["commit", "-q", "--no-verify", "-m", "change"]);
    let took = start.elapsed();
    git(
        repo,
        &["worktree", "remove", "--force", wt.to_str().expect("utf8")],
    );
    took
}

fn chant_work(repo: &Path, i: usize) -> Duration {
    let out = Command::new(BIN)
        .args(["add", &format!("bench {i}")])
        .current_dir(repo)
        .output()
        .expect("add");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(["work", &id])
        .current_dir(repo)
        .output()
        .expect("work");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "work failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}
