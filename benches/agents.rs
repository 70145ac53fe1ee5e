//! `git chant work` at `permissions` with the real Codex CLI, opencode, Gemini CLI and aider,
//! each against the same CLI run directly in a plain git worktree with the same fake script,
//! measured in the same run (runs interleaved, so machine load falls on both sides alike).
//! Everything runs in a network namespace holding only `lo` against the scripted fakes of
//! tests/common/, so the model costs the same (almost nothing) on both sides and the
//! difference is chant's: clone, generated config, gate per command, ledger entries, policy
//! check, landing.
//!
//! Scripts: Codex CLI and opencode make an edit (`apply_patch`, `write`), run a shell command
//! and end with a text; Gemini CLI writes a file, runs a command, ends with a text; aider
//! answers once with an edit creating a file. Baselines: the CLI alone in an existing worktree,
//! run the way the adapter runs it (same flags, same quiet-start config, its own sandbox at
//! `permissions`) without chant's gate (Gemini CLI in yolo mode with API-key settings, as a
//! user without chant would run it), and `git worktree add` + the CLI + `git add -A` +
//! `git commit`.
//!
//! Run: `cargo bench --bench agents` (as root, the CLIs installed as `.ci/run` does;
//! `CHANT_BENCH_RUNS=N`, default 3; `CHANT_BENCH_AGENTS=codex,opencode,gemini,aider`, the
//! default, or a subset). Target: ≤ 1.15× the CLI alone.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use git_chant::agent::Agent;

use common::anthropic::Turn;
use common::gemini::FakeGemini;
use common::live::{repo_with_agent, Live, LiveOpenAi};
use common::openai::FakeOpenAi;
use common::TestRepo;

const KEY: &str = "bench-key-0000";

#[allow(clippy::print_stdout)]
fn main() {
    let runs: usize = std::env::var("CHANT_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let agents = std::env::var("CHANT_BENCH_AGENTS")
        .unwrap_or_else(|_| "codex,opencode,gemini,aider".into());
    println!("the CLI alone vs git chant work at permissions, same fake script, {runs} runs each");
    for agent in agents.split(',') {
        match agent.trim() {
            "codex" => codex(runs),
            "opencode" => opencode(runs),
            "gemini" => gemini(runs),
            "aider" => aider(runs),
            other => println!("unknown agent {other:?} in CHANT_BENCH_AGENTS"),
        }
    }
}

fn codex(runs: usize) {
    let script = vec![
        Turn::tool(
            "apply_patch",
            json!("*** Begin Patch\n*** Add File: hello.txt\n+Hello\n*** End Patch\n"),
        ),
        Turn::tool("exec_command", json!({"cmd": "echo ran > ran.txt"})),
        Turn::Text("Done.".into()),
    ];
    let Some(live) = LiveOpenAi::openai("bench codex", "codex", "CHANT_REQUIRE_CODEX", script)
    else {
        return;
    };
    let (repo, _) = repo_with_agent(
        "[codex, exec, -m, gpt-5.5, \"{prompt}\"]",
        "  sandbox: permissions\n",
    );
    let provider = format!(
        "model_providers.chant={{name=\"chant\",base_url=\"{}\",env_key=\"OPENAI_API_KEY\",wire_api=\"responses\"}}",
        live.api.base_url()
    );
    compare("codex", runs, &live, &repo, |dir, home| {
        std::fs::create_dir_all(home.join("tmp")).expect("home");
        let mut cmd = live.direct("codex", home, dir);
        cmd.args(["exec", "-m", "gpt-5.5", "Greet the user", "--json"])
            .args(["--skip-git-repo-check", "-s", "workspace-write"])
            .args(["-c", "model_provider=chant", "-c", &provider])
            .args(["-c", "check_for_update_on_startup=false"])
            .args(["-c", "analytics.enabled=false", "--disable", "plugins"])
            .env("TMPDIR", home.join("tmp"));
        cmd
    });
}

fn opencode(runs: usize) {
    let script = vec![
        Turn::tool(
            "write",
            json!({"filePath": "hello.txt", "content": "Hello\n"}),
        ),
        Turn::tool(
            "bash",
            json!({"command": "echo ran > ran.txt", "description": "bench"}),
        ),
        Turn::Text("Done.".into()),
    ];
    let Some(live) = LiveOpenAi::openai(
        "bench opencode",
        "opencode",
        "CHANT_REQUIRE_OPENCODE",
        script,
    ) else {
        return;
    };
    let (repo, _) = repo_with_agent(
        "[opencode, run, -m, openai/gpt-4.1, \"{prompt}\"]",
        "  sandbox: permissions\n",
    );
    compare("opencode", runs, &live, &repo, |dir, home| {
        // The plugin lock the adapter writes too: without it opencode npm-installs its
        // plugin package at start (and waits on the network it does not have).
        let config = home.join(".config/opencode");
        std::fs::create_dir_all(config.join("node_modules")).expect("config dir");
        std::fs::write(
            config.join("package-lock.json"),
            git_chant::agent::opencode::config::PLUGIN_LOCK,
        )
        .expect("lock");
        let rules = json!({"permission": {"external_directory": "deny", "webfetch": "deny", "websearch": "deny"}});
        let mut cmd = live.direct("opencode", home, dir);
        cmd.args([
            "run",
            "-m",
            "openai/gpt-4.1",
            "Greet the user",
            "--format",
            "json",
        ])
        .env("OPENCODE_DISABLE_PROJECT_CONFIG", "1")
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
        .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
        .env("OPENCODE_DISABLE_SHARE", "1")
        .env("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
        .env("OPENCODE_CONFIG_CONTENT", rules.to_string());
        cmd
    });
}

fn gemini(runs: usize) {
    let script = vec![
        Turn::tool(
            "write_file",
            json!({"file_path": "hello.txt", "content": "Hello from Gemini\n"}),
        ),
        Turn::tool(
            "run_shell_command",
            json!({"command": "echo ran > ran.txt", "description": "bench"}),
        ),
        Turn::Text("Done.".into()),
    ];
    let Some(live) = Live::start(
        "bench gemini",
        "gemini",
        "CHANT_REQUIRE_GEMINI",
        |netns| FakeGemini::start(netns, script),
        |api| {
            vec![
                ("GEMINI_API_KEY", KEY.to_string()),
                ("GOOGLE_GEMINI_BASE_URL", api.url()),
            ]
        },
    ) else {
        return;
    };
    let (repo, _) = repo_with_agent("[gemini]", "  sandbox: permissions\n");
    compare("gemini", runs, &live, &repo, |dir, home| {
        std::fs::create_dir_all(home.join(".gemini")).expect("home");
        let settings = json!({"security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": false}, "telemetry": {"enabled": false},
            "general": {"disableAutoUpdate": true}});
        std::fs::write(home.join(".gemini/settings.json"), settings.to_string()).expect("settings");
        let mut cmd = live.direct("gemini", home, dir);
        cmd.args(["-p", "Greet the user", "--skip-trust"]).args([
            "--output-format",
            "stream-json",
            "--approval-mode",
            "yolo",
        ]);
        cmd
    });
}

fn aider(runs: usize) {
    let program = std::env::var("CHANT_AIDER").unwrap_or_else(|_| "aider".to_string());
    let reply = "hello.txt\n```\n<<<<<<< SEARCH\n=======\nHello from aider\n>>>>>>> REPLACE\n```\n";
    // One answer per run: the fake counts turns per conversation, and each run is one.
    let Some(live) = Live::start(
        "bench aider",
        &program,
        "CHANT_REQUIRE_AIDER",
        |netns| FakeOpenAi::start(netns, vec![Turn::Text(reply.into())]),
        |api| {
            vec![
                ("OPENAI_API_KEY", KEY.to_string()),
                ("OPENAI_BASE_URL", api.base_url()),
            ]
        },
    ) else {
        return;
    };
    let template = vec![
        program.clone(),
        "--model".to_string(),
        format!("openai/{}", common::openai::MODEL),
        "--edit-format".to_string(),
        "diff".to_string(),
    ];
    let command = format!(
        "[\"{program}\", --model, openai/{}, --edit-format, diff]",
        common::openai::MODEL
    );
    let (repo, _) = repo_with_agent(&command, "  sandbox: permissions\n");
    // The argv chant gives aider, with the prompt as a message instead of a file.
    let full = git_chant::agent::aider::Aider::new(&default_config())
        .command(&template, git_chant::config::SandboxLevel::Permissions);
    let mut argv = Vec::new();
    let mut args = full.into_iter();
    while let Some(a) = args.next() {
        if a == "--message-file" {
            args.next();
        } else {
            argv.push(a);
        }
    }
    compare("aider", runs, &live, &repo, |dir, home| {
        let mut cmd = live.direct(&argv[0], home, dir);
        cmd.args(&argv[1..])
            .args(["--message", "Greet the user"])
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True");
        cmd
    });
}

fn default_config() -> git_chant::config::Config {
    git_chant::config::Config::from_yaml(
        "(bench)",
        &serde_yaml_ng::from_str("agent: {}").expect("yaml"),
    )
    .expect("config")
}

/// Runs the CLI alone (`direct`, in a fresh worktree with a fresh HOME) and `git chant work`,
/// interleaved, `runs` times each; prints the medians and ratios.
fn compare<A>(
    name: &str,
    runs: usize,
    live: &Live<A>,
    repo: &TestRepo,
    direct: impl Fn(&Path, &Path) -> Command,
) {
    let worktrees = repo.tmp.path().join("worktrees");
    let (mut alone, mut plain, mut chant) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let wt = worktrees.join(format!("wt{i}"));
        let home = worktrees.join(format!("home{i}"));
        std::fs::create_dir_all(&home).expect("home");
        let started = Instant::now();
        repo.git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            &format!("wt{i}"),
            &wt.to_string_lossy(),
        ]);
        let mut cmd = direct(&wt, &home);
        let cli = Instant::now();
        let out = cmd.output().expect("run the CLI");
        alone.push(cli.elapsed());
        assert!(
            out.status.success() && wt.join("hello.txt").exists(),
            "{name} alone did not run the script: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        repo.git_in(&wt, &[], &["add", "-A"]);
        repo.git_in(&wt, &[], &["commit", "-q", "-m", name]);
        plain.push(started.elapsed());

        let id = repo.add_spec(&format!("Greet {i}"), &["hello.txt"]);
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "--quiet", "-m", "spec"]);
        let started = Instant::now();
        live.chant(repo, &["work", &id], &[]).assert_ok();
        chant.push(started.elapsed());
    }
    let (a, p, c) = (median(&mut alone), median(&mut plain), median(&mut chant));
    println!(
        "{name:<8} alone {:>6.0} ms  worktree+cli+commit {:>6.0} ms  git chant work {:>6.0} ms  ratio {:.2}x vs alone, {:.2}x vs worktree+commit (target <= 1.15x)",
        ms(a),
        ms(p),
        ms(c),
        c.as_secs_f64() / a.as_secs_f64(),
        c.as_secs_f64() / p.as_secs_f64(),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
