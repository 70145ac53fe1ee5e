//! `git chant work` with the real Codex CLI and opencode against each CLI run directly with
//! the same script in a plain git worktree, measured in the same run. Both sides run in a
//! network namespace holding only `lo` against the scripted fake of the OpenAI Responses API
//! (tests/common/), so the model costs the same on both sides and the difference is chant's:
//! clone, generated config, gate per command, ledger entries, policy check, landing.
//!
//! The script: an edit (Codex `apply_patch`, opencode `write`), a shell command, a closing
//! text. The baseline runs the CLI the way the adapter does (same flags, same quiet-start
//! config, its own sandbox at `permissions`), in an existing worktree, without the gate.
//!
//! Run: `cargo bench --bench openai_agents` (as root, with `codex`/`opencode` on PATH;
//! `CHANT_BENCH_RUNS=N`, default 3; `CHANT_BENCH_AGENTS=codex` for one). Target at
//! `permissions`: ≤ 1.15× the direct run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use common::anthropic::Turn;
use common::live::{repo_with_agent, LiveOpenAi};

#[allow(clippy::print_stdout)]
fn main() {
    let runs: usize = std::env::var("CHANT_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let only = std::env::var("CHANT_BENCH_AGENTS").unwrap_or_default();
    for agent in ["codex", "opencode"] {
        if !only.is_empty() && !only.split(',').any(|a| a == agent) {
            continue;
        }
        let (script, command) = match agent {
            "codex" => (
                vec![
                    Turn::tool(
                        "apply_patch",
                        json!("*** Begin Patch\n*** Add File: hello.txt\n+Hello\n*** End Patch\n"),
                    ),
                    Turn::tool("exec_command", json!({"cmd": "echo ran > ran.txt"})),
                    Turn::Text("Done.".into()),
                ],
                "[codex, exec, -m, gpt-5.5, \"{prompt}\"]",
            ),
            _ => (
                vec![
                    Turn::tool(
                        "write",
                        json!({"filePath": "hello.txt", "content": "Hello\n"}),
                    ),
                    Turn::tool(
                        "bash",
                        json!({"command": "echo ran > ran.txt", "description": "bench"}),
                    ),
                    Turn::Text("Done.".into()),
                ],
                "[opencode, run, -m, openai/gpt-4.1, \"{prompt}\"]",
            ),
        };
        let require = format!("CHANT_REQUIRE_{}", agent.to_uppercase());
        let Some(live) = LiveOpenAi::openai(&format!("bench {agent}"), agent, &require, script)
        else {
            continue;
        };
        let (repo, _) = repo_with_agent(command, "  sandbox: permissions\n");
        let worktrees = repo.tmp.path().join("worktrees");
        let (mut direct, mut chant) = (Vec::new(), Vec::new());
        for i in 0..runs {
            let wt = worktrees.join(format!("wt{i}"));
            repo.git(&[
                "worktree",
                "add",
                "-q",
                "-b",
                &format!("wt{i}"),
                &wt.to_string_lossy(),
            ]);
            direct.push(run_directly(agent, &live, &repo, &wt));

            let id = repo.add_spec(&format!("Greet {i}"), &["hello.txt"]);
            repo.git(&["add", "-A"]);
            repo.git(&["commit", "--quiet", "-m", "spec"]);
            let started = Instant::now();
            live.chant(&repo, &["work", &id], &[]).assert_ok();
            chant.push(started.elapsed());
        }
        let (d, c) = (median(&mut direct), median(&mut chant));
        println!(
            "{agent:<9} permissions: {agent} directly {:>6.0} ms  git chant work {:>6.0} ms  ratio {:.2}x (target <= 1.15x; medians of {runs})",
            ms(d),
            ms(c),
            c.as_secs_f64() / d.as_secs_f64()
        );
    }
}

/// The CLI alone in `dir` with the adapter's flags and config, timed.
fn run_directly(agent: &str, live: &LiveOpenAi, repo: &common::TestRepo, dir: &Path) -> Duration {
    let home = dir.with_extension("home");
    std::fs::create_dir_all(home.join("tmp")).expect("home");
    let mut cmd: Command = live.netns.command(agent);
    repo.env(&mut cmd);
    cmd.env("HOME", &home).envs(live.env()).current_dir(dir);
    if agent == "codex" {
        let provider = format!(
            "model_providers.chant={{name=\"chant\",base_url=\"{}\",env_key=\"OPENAI_API_KEY\",wire_api=\"responses\"}}",
            live.api.base_url()
        );
        cmd.args([
            "exec",
            "-m",
            "gpt-5.5",
            "Greet the user",
            "--json",
            "--skip-git-repo-check",
        ])
        .args([
            "-s",
            "workspace-write",
            "-c",
            "model_provider=chant",
            "-c",
            &provider,
        ])
        .args([
            "-c",
            "check_for_update_on_startup=false",
            "-c",
            "analytics.enabled=false",
        ])
        .args(["--disable", "plugins"])
        .env("TMPDIR", home.join("tmp"));
    } else {
        let lock = home.join(".config/opencode");
        std::fs::create_dir_all(lock.join("node_modules")).expect("config dir");
        std::fs::write(
            lock.join("package-lock.json"),
            git_chant::agent::opencode::config::PLUGIN_LOCK,
        )
        .expect("lock");
        cmd.args(["run", "-m", "openai/gpt-4.1", "Greet the user", "--format", "json"])
            .env("OPENCODE_DISABLE_PROJECT_CONFIG", "1")
            .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
            .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
            .env("OPENCODE_DISABLE_SHARE", "1")
            .env("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
            .env(
                "OPENCODE_CONFIG_CONTENT",
                json!({"permission": {"external_directory": "deny", "webfetch": "deny", "websearch": "deny"}})
                    .to_string(),
            );
    }
    let started = Instant::now();
    let out = cmd.output().expect("run the CLI");
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
