//! `git chant work` with the real Claude Code CLI against `claude -p` with the same script in a
//! plain git worktree, measured in the same run. Both run in a network namespace holding only
//! `lo` against the scripted fake of the Anthropic API (tests/common/), so the model costs the
//! same (almost nothing) on both sides and the difference is chant's: clone, settings, gate
//! hook per command, ledger entries, policy check, landing.
//!
//! The script: a Write, a Bash command, a closing text. Baselines: `claude -p` alone in an
//! existing worktree, and `git worktree add` + `claude -p` + `git add -A` + `git commit`.
//!
//! Run: `cargo bench --bench claude` (as root, with `claude` on PATH; `CHANT_BENCH_RUNS=N`).
//! Target at `permissions`: ≤ 1.15× the `claude -p` baseline.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::anthropic::Turn;
use common::claude::{repo_with_claude, Live};

fn main() {
    let runs: usize = std::env::var("CHANT_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let script = vec![
        Turn::write("{cwd}/hello.txt", "Hello from Claude\n"),
        Turn::bash("echo ran > ran.txt"),
        Turn::Text("Done.".into()),
    ];
    let Some(live) = Live::start("bench claude", script) else {
        return;
    };
    println!("claude -p vs git chant work, same fake script (Write, Bash, text), {runs} runs each");
    for level in ["permissions", "none"] {
        let (repo, _) = repo_with_claude(&format!("  sandbox: {level}\n"));
        let worktrees = repo.tmp.path().join("worktrees");
        let (mut alone, mut plain, mut chant) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            let wt = worktrees.join(format!("wt{i}"));
            let started = Instant::now();
            repo.git(&[
                "worktree",
                "add",
                "-q",
                "-b",
                &format!("wt{i}"),
                &wt.to_string_lossy(),
            ]);
            alone.push(claude_p(&live, &repo, &wt, level));
            repo.git_in(&wt, &[], &["add", "-A"]);
            repo.git_in(&wt, &[], &["commit", "-q", "-m", "claude"]);
            plain.push(started.elapsed());

            let id = repo.add_spec(&format!("Greet {i}"), &["hello.txt"]);
            repo.git(&["add", "-A"]);
            repo.git(&["commit", "--quiet", "-m", "spec"]);
            let started = Instant::now();
            live.chant(&repo, &["work", &id], &[]).assert_ok();
            chant.push(started.elapsed());
        }
        let (a, p, c) = (median(&mut alone), median(&mut plain), median(&mut chant));
        println!(
            "{level:<12} claude -p {:>6.0} ms  worktree+claude+commit {:>6.0} ms  git chant work {:>6.0} ms  ratio {:.2}x vs claude -p, {:.2}x vs worktree+commit{}",
            ms(a),
            ms(p),
            ms(c),
            c.as_secs_f64() / a.as_secs_f64(),
            c.as_secs_f64() / p.as_secs_f64(),
            if level == "permissions" { " (target <= 1.15x)" } else { "" }
        );
    }
}

/// `claude -p` with the script in `dir`, trusted and allowed as chant would set it up, timed.
fn claude_p(live: &Live, repo: &common::TestRepo, dir: &Path, level: &str) -> Duration {
    let home = dir.with_extension("home");
    std::fs::create_dir_all(&home).expect("home");
    let trust = serde_json::json!({"hasCompletedOnboarding": true,
        "projects": {dir.to_string_lossy(): {"hasTrustDialogAccepted": true}}});
    std::fs::write(home.join(".claude.json"), trust.to_string()).expect("trust");
    let mode = if level == "none" {
        "bypassPermissions"
    } else {
        "acceptEdits"
    };
    let mut cmd = live.netns.command("claude");
    repo.env(&mut cmd);
    let started = Instant::now();
    let out = cmd
        .args([
            "-p",
            "Greet the user",
            "--output-format",
            "stream-json",
            "--verbose",
        ])
        .args(["--permission-mode", mode, "--allowedTools", "Bash"])
        .env("HOME", &home)
        .env("IS_SANDBOX", "1")
        .envs(live.env())
        .current_dir(dir)
        .output()
        .expect("claude");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("ran.txt").exists(), "the baseline ran the script");
    took
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
