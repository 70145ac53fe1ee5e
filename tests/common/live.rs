//! What every test of a real agent CLI under `git chant work` shares: the namespace (or a
//! loud skip), a repository whose `agent.command` runs the CLI, `git chant` run inside the
//! namespace, and readers of what chant said and recorded.
//!
//! Where the CLI or the namespace is missing the test is skipped with a loud message, unless
//! its `CHANT_REQUIRE_<CLI>` variable is set (`.ci/run` sets them): then it fails.

use std::process::Command;

use super::netns::Netns;
use super::openai::FakeOpenAi;
use super::{Run, TestRepo};

use super::anthropic::Turn;

/// The API key the OpenAI-speaking CLIs get (and that must be masked wherever chant prints).
pub const OPENAI_KEY: &str = "sk-test-openai-3c9e71d2b4a85f06";

/// The namespace, or None (after a loud message) when `program` or the namespace is
/// missing and `require` is not set.
pub fn netns_for(test: &str, program: &str, require: &str) -> Option<Netns> {
    let skip = |why: String| -> Option<Netns> {
        if std::env::var_os(require).is_some() {
            panic!("{test}: {why} ({require} is set)");
        }
        eprintln!(
            "\n!!! SKIPPED {test}: {why}.\n!!! Install it as .ci/run does, and run as root.\n"
        );
        None
    };
    match Command::new(program).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return skip(format!(
                "`{program} --version` failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return skip(format!("`{program}` is not on PATH ({e})")),
    }
    match Netns::new() {
        Ok(n) => Some(n),
        Err(e) => skip(format!("no network namespace: {e}")),
    }
}

/// A namespace with the fake OpenAI API serving one script, for Codex CLI and opencode.
pub struct LiveOpenAi {
    pub api: FakeOpenAi,
    // Dropped last: the server's socket lives in it.
    pub netns: Netns,
}

impl LiveOpenAi {
    /// Sets up for `test` with `program`; None when it must be skipped (module docs).
    pub fn start(test: &str, program: &str, require: &str, script: Vec<Turn>) -> Option<Self> {
        let netns = netns_for(test, program, require)?;
        let api = FakeOpenAi::start(&netns, script);
        Some(LiveOpenAi { api, netns })
    }

    /// The variables that point the CLI at the fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OPENAI_API_KEY", OPENAI_KEY.to_string()),
            ("OPENAI_BASE_URL", self.api.base_url()),
        ]
    }

    /// `git chant <args>` in `repo`, inside the namespace, with the test's clean
    /// environment, the fake's variables and `extra`.
    pub fn chant(&self, repo: &TestRepo, args: &[&str], extra: &[(&str, &str)]) -> Run {
        Run(chant_in(&self.netns, repo, &self.env(), args, extra)
            .output()
            .expect("run git-chant in the namespace"))
    }
}

/// `git chant <args>` run inside `netns` (nsenter execs it: same pid, so signals reach it).
pub fn chant_in(
    netns: &Netns,
    repo: &TestRepo,
    env: &[(&str, String)],
    args: &[&str],
    extra: &[(&str, &str)],
) -> Command {
    let mut cmd = netns.command(env!("CARGO_BIN_EXE_git-chant"));
    repo.env(&mut cmd);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .envs(extra.iter().copied())
        .args(args)
        .current_dir(&repo.root);
    cmd
}

/// A repository whose agent is `command` (a YAML flow list) with `extra` YAML lines under
/// `agent:`, and one committed spec; returns it and the spec id.
pub fn repo_with_agent(command: &str, extra: &str) -> (TestRepo, String) {
    let repo = TestRepo::initialised();
    let timeout = if extra.contains("timeout:") {
        ""
    } else {
        "  timeout: 2m\n"
    };
    repo.write_config(&format!("agent:\n  command: {command}\n{timeout}{extra}"));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "chant config"]);
    let id = repo.add_spec("Greet the user", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    (repo, id)
}

/// Everything chant printed or wrote about the run: stdout, stderr, run logs, the ledger.
pub fn everything_chant_said(repo: &TestRepo, run: &Run) -> String {
    let mut all = run.stdout() + &run.stderr();
    if let Ok(logs) = std::fs::read_dir(repo.path(".git/chant/logs")) {
        for log in logs.filter_map(Result::ok) {
            all.push_str(&std::fs::read_to_string(log.path()).unwrap_or_default());
        }
    }
    all.push_str(&repo.git(&["log", "--format=%B", "refs/chant/audit"]));
    all
}

/// The commands of the `command_run` entries with `details.decision == decision`.
pub fn command_runs(repo: &TestRepo, decision: &str) -> Vec<String> {
    repo.events("command_run")
        .iter()
        .filter(|e| e["details"]["decision"] == decision)
        .filter_map(|e| e["details"]["command"].as_str().map(str::to_string))
        .collect()
}

/// The file `rel` on branch `chant/<id>`, or None.
pub fn landed(repo: &TestRepo, id: &str, rel: &str) -> Option<String> {
    let out = repo
        .git_in(&repo.root, &[], &["show", &format!("chant/{id}:{rel}")])
        .0;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
