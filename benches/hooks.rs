//! Server-side hook cost: one push of 10,000 new commits (carrying `Chant-Spec` trailers,
//! covered by approvals) and 10,000 new ledger entries into a bare repository with the
//! `pre-receive` hook, against the same push into one without hooks, in the same run.
//!
//! The ledger entries are generated here independently of git-chant's own code (canonical
//! JSON + sha256, as DESIGN.md defines them) and written with `git fast-import`.
//!
//! Run: `cargo bench --bench hooks` (`CHANT_BENCH_N=2000` for a quicker run).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_git-chant");

fn main() {
    let n: usize = std::env::var("CHANT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let tmp = tempfile::tempdir().expect("tmp");
    let client = tmp.path().join("client");
    make_client(&client, n);
    let plain = tmp.path().join("plain.git");
    let hooked = tmp.path().join("hooked.git");
    for server in [&plain, &hooked] {
        git(
            tmp.path(),
            &[
                "init",
                "-q",
                "--bare",
                "--initial-branch=main",
                server.to_str().expect("utf8"),
            ],
        );
        git(
            &client,
            &[
                "push",
                "-q",
                server.to_str().expect("utf8"),
                "base:refs/heads/main",
            ],
        );
    }
    let status = Command::new(BIN)
        .args([
            "hooks",
            "install",
            "--server",
            "--dir",
            hooked.to_str().expect("utf8"),
        ])
        .stdout(Stdio::null())
        .status()
        .expect("install");
    assert!(status.success());
    let t_plain = push(&client, &plain);
    let t_hooked = push(&client, &hooked);
    let added = t_hooked.saturating_sub(t_plain);
    println!(
        "push of {n} commits + {n} ledger entries: no hooks {:.0} ms, with pre-receive {:.0} ms, added {:.0} ms (target < 2000 ms)",
        ms(t_plain),
        ms(t_hooked),
        ms(added)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn push(client: &Path, server: &Path) -> Duration {
    let bin_dir = Path::new(BIN).parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let start = Instant::now();
    let out = Command::new("git")
        .args([
            "push",
            "-q",
            server.to_str().expect("utf8"),
            "main",
            "refs/chant/audit",
        ])
        .current_dir(client)
        .env("PATH", path)
        .env("CHANT_PUSHER", "alice")
        .output()
        .expect("push");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "push refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// `base` with one commit; `main` with `n` more commits carrying spec trailers; a ledger of
/// `n` entries ending with approvals of the main tip for every spec.
fn make_client(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q", "--initial-branch=main"]);
    let specs: Vec<String> = (0..10).map(|i| format!("2026-01-22-{i:03}-abc")).collect();
    let mut fi = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .spawn()
        .expect("fast-import");
    {
        let mut out = std::io::BufWriter::new(fi.stdin.as_mut().expect("stdin"));
        writeln!(out, "commit refs/heads/base\nmark :1\ncommitter A <a@x> 1700000000 +0000\ndata 5\nbase\nM 644 inline README\ndata 2\nr\n").expect("w");
        writeln!(out, "commit refs/heads/main\nmark :2\ncommitter A <a@x> 1700000000 +0000\ndata 5\nbase\nfrom :1\n").expect("w");
        for i in 0..n {
            let msg = format!(
                "chant({0}): change {i}\n\nChant-Spec: {0}\n",
                specs[i % specs.len()]
            );
            let content = format!("{i}\n");
            writeln!(
                out,
                "commit refs/heads/main\ncommitter A <a@x> {} +0000\ndata {}\n{msg}M 644 inline f{}.txt\ndata {}\n{content}",
                1_700_000_001 + i,
                msg.len(),
                i % 500,
                content.len()
            )
            .expect("w");
        }
    }
    assert!(fi.wait().expect("wait").success());
    let tip = git(dir, &["rev-parse", "main"]);

    let mut fi = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .spawn()
        .expect("fast-import");
    {
        let mut out = std::io::BufWriter::new(fi.stdin.as_mut().expect("stdin"));
        let mut prev = "0".repeat(64);
        for i in 0..n {
            let approval = i + specs.len() >= n;
            let (event, spec, details) = if approval {
                let spec = &specs[n - 1 - i];
                (
                    "spec_approved",
                    spec.clone(),
                    serde_json::json!({"commit": tip, "branch": format!("chant/{spec}")}),
                )
            } else {
                (
                    "file_modified",
                    specs[i % specs.len()].clone(),
                    serde_json::json!({"path": format!("f{}.txt", i % 500)}),
                )
            };
            let mut entry = serde_json::json!({
                "ts": "2026-01-22T15:30:00Z", "event": event, "spec_id": spec, "actor": "alice",
                "agent": null, "sandbox": null, "host": "bench", "session": "sess_bench",
                "details": details, "prev_hash": prev,
            });
            let hash = hex(&Sha256::digest(
                serde_json::to_string(&entry).expect("json").as_bytes(),
            ));
            entry["hash"] = hash.clone().into();
            let msg = format!(
                "{event} {spec} by alice\n\n{}\n",
                serde_json::to_string(&entry).expect("json")
            );
            let from = if i == 0 {
                String::new()
            } else {
                format!("from :{}\n", 10 + i - 1)
            };
            writeln!(out, "commit refs/chant/audit\nmark :{}\nauthor alice <a@x> 1769095800 +0000\ncommitter alice <a@x> 1769095800 +0000\ndata {}\n{msg}{from}deleteall\n", 10 + i, msg.len()).expect("w");
            prev = hash;
        }
    }
    assert!(fi.wait().expect("wait").success());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
