//! `git chant work` with the real Claude Code CLI against `claude -p` with the same script in a
//! plain git worktree, measured in the same run. Both run in a network namespace holding only
//! `lo` against the scripted fake of the Anthropic API (tests/common/), so the model costs the
//! same (almost nothing) on both sides and the difference is chant's: clone, settings, gate
//! hook per command, ledger entries, policy check, landing.
//!
//! The script: a Write, a Bash command, a closing text. Baselines: `claude -p` alone in an
//! existing worktree, and `git worktree add` + `claude -p` + `git add -A` + `git commit`.
//!
//! At `docker`: `git chant work` against the same CLI in the same image under a plain
//! `docker run --rm` (same memory and cpu limits, read-only root, tmpfs home), both talking to
//! the fake inside the network namespace of a sleeping container of that image (chant through
//! its relay and egress proxy, the baseline directly).
//!
//! Run: `cargo bench --bench claude` (as root, with `claude` on PATH; `CHANT_BENCH_RUNS=N`;
//! `CHANT_BENCH_LEVELS=docker` for a subset). Targets: ≤ 1.15× the `claude -p` baseline at
//! `permissions`, ≤ 1.3× the `docker run --rm` baseline at `docker`.

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
    let levels = std::env::var("CHANT_BENCH_LEVELS").unwrap_or("permissions,none,docker".into());
    let levels: Vec<&str> = levels.split(',').collect();
    if levels.contains(&"docker") {
        docker_level(runs, script.clone());
    }
    let Some(live) = Live::start("bench claude", script) else {
        return;
    };
    println!("claude -p vs git chant work, same fake script (Write, Bash, text), {runs} runs each");
    for level in ["permissions", "none"] {
        if !levels.contains(&level) {
            continue;
        }
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

/// `git chant work` at docker vs `docker run --rm` of the same image, same script.
fn docker_level(runs: usize, script: Vec<Turn>) {
    let Some(image) = common::claude::image() else {
        return;
    };
    let docker = |args: &[&str]| -> String {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .expect("the docker CLI");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The fake lives in a sleeping container's namespace, which both sides can join.
    let sleeper = docker(&[
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sleep",
        &image,
        "100000",
    ]);
    let pid: u32 = docker(&["inspect", "-f", "{{.State.Pid}}", &sleeper])
        .parse()
        .expect("a pid");
    let netns = common::netns::Netns::of_process(pid);
    let api = common::anthropic::FakeAnthropic::start(&netns, script);
    let live = Live { api, netns };
    let (repo, _) = repo_with_claude(&format!(
        "  sandbox: docker\n  docker:\n    image: {image}\n    memory: 1G\n    cpu: 1000m\n  network:\n    enabled: true\n"
    ));
    let worktrees = repo.tmp.path().join("worktrees");
    let (mut plain, mut chant) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let wt = worktrees.join(format!("d{i}"));
        repo.git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            &format!("d{i}"),
            &wt.to_string_lossy(),
        ]);
        let mount = format!("{}:/workspace", wt.display());
        let network = format!("container:{sleeper}");
        let mut cmd = std::process::Command::new("docker");
        cmd.args([
            "run",
            "--rm",
            "--network",
            &network,
            "-v",
            &mount,
            "-w",
            "/workspace",
        ])
        .args([
            "--memory",
            "1g",
            "--cpus",
            "1",
            "--read-only",
            "--tmpfs",
            "/tmp",
        ])
        .args([
            "--tmpfs",
            "/home/agent",
            "-e",
            "HOME=/home/agent",
            "-e",
            "IS_SANDBOX=1",
        ]);
        for (k, v) in live.env() {
            cmd.args(["-e", &format!("{k}={v}")]);
        }
        cmd.args([
            &image,
            "claude",
            "-p",
            "Greet the user",
            "--output-format",
            "stream-json",
        ])
        .args(["--verbose", "--dangerously-skip-permissions"]);
        let started = Instant::now();
        let out = cmd.output().expect("docker run");
        plain.push(started.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(wt.join("ran.txt").exists(), "the baseline ran the script");

        let id = repo.add_spec(&format!("Greet {i}"), &["hello.txt"]);
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "--quiet", "-m", "spec"]);
        let started = Instant::now();
        live.chant(&repo, &["work", &id], &[]).assert_ok();
        chant.push(started.elapsed());
    }
    let _ = docker(&["rm", "-f", &sleeper]);
    let (p, c) = (median(&mut plain), median(&mut chant));
    println!(
        "{:<12} docker run --rm claude -p {:>6.0} ms  git chant work {:>6.0} ms  ratio {:.2}x (target <= 1.3x), {runs} runs each",
        "docker",
        ms(p),
        ms(c),
        c.as_secs_f64() / p.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
