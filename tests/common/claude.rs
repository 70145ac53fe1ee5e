//! Tests with the real Claude Code CLI: a network namespace holding only `lo`, the scripted
//! fake API inside it, and the variables that point the CLI at the fake.
//!
//! Where the CLI or the namespace is missing the test is skipped with a loud message,
//! unless `CHANT_REQUIRE_CLAUDE=1` (set by `.ci/run`, which installs the pinned CLI): then
//! it fails.

use std::process::Command;

use super::{Run, TestRepo};

use super::anthropic::{FakeAnthropic, Turn};
use super::netns::Netns;

/// The API key the tests give Claude (and check is masked wherever chant prints).
pub const API_KEY: &str = "sk-ant-test-7f3a9c1e5b2d4860";

/// A namespace with the fake API serving one script.
pub struct Live {
    pub api: FakeAnthropic,
    // Dropped last: the server's socket lives in it.
    pub netns: Netns,
}

impl Live {
    /// Sets up for `test`; None when it must be skipped (see the module docs).
    pub fn start(test: &str, script: Vec<Turn>) -> Option<Live> {
        Live::serving(test, script, FakeAnthropic::start)
    }

    /// [`Live::start`] with the fake API served over HTTPS (fixtures/tls/: the client must
    /// trust `ca.pem`, e.g. through `agent.network.upstream_ca`).
    pub fn start_tls(test: &str, script: Vec<Turn>) -> Option<Live> {
        Live::serving(test, script, FakeAnthropic::start_tls)
    }

    fn serving(
        test: &str,
        script: Vec<Turn>,
        start: fn(&Netns, Vec<Turn>) -> FakeAnthropic,
    ) -> Option<Live> {
        let skip = |why: String| -> Option<Live> {
            if std::env::var_os("CHANT_REQUIRE_CLAUDE").is_some() {
                panic!("{test}: {why} (CHANT_REQUIRE_CLAUDE is set)");
            }
            eprintln!(
                "\n!!! SKIPPED {test}: {why}.\n!!! Install the CLI as .ci/run does \
                 (npm install -g @anthropic-ai/claude-code@VERSION) and run as root.\n"
            );
            None
        };
        match Command::new("claude").arg("--version").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return skip(format!(
                    "`claude --version` failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => return skip(format!("the `claude` CLI is not on PATH ({e})")),
        }
        let netns = match Netns::new() {
            Ok(n) => n,
            Err(e) => return skip(format!("no network namespace: {e}")),
        };
        let api = start(&netns, script);
        Some(Live { api, netns })
    }

    /// The variables that point Claude at the fake and keep it quiet.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ANTHROPIC_API_KEY", API_KEY.to_string()),
            ("ANTHROPIC_BASE_URL", self.api.url()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_string()),
        ]
    }

    /// `git chant <args>` in `repo`, run inside the namespace with the test's clean
    /// environment, the fake's variables and `extra`.
    pub fn chant(&self, repo: &TestRepo, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let mut cmd = self.chant_cmd(repo, args, extra);
        Run(cmd.output().expect("run git-chant in the namespace"))
    }

    /// The command [`Live::chant`] runs (nsenter execs git-chant: same pid, so signals
    /// reach it).
    pub fn chant_cmd(&self, repo: &TestRepo, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = self.netns.command(env!("CARGO_BIN_EXE_git-chant"));
        repo.env(&mut cmd);
        cmd.envs(self.env())
            .envs(extra.iter().copied())
            .args(args)
            .current_dir(&repo.root);
        cmd
    }
}

/// A repository whose agent is the real `claude` (`agent.command: [claude, -p, "{prompt}"]`)
/// with `extra` YAML lines under `agent:`, and one spec; returns it and the spec id.
pub fn repo_with_claude(extra: &str) -> (TestRepo, String) {
    super::live::repo_with_agent("[claude, -p, \"{prompt}\"]", extra)
}

/// The real `claude` binary (the npm package's native executable), resolved.
pub fn claude_binary() -> Result<std::path::PathBuf, String> {
    let out = Command::new("sh")
        .args(["-c", "command -v claude"])
        .output()
        .map_err(|e| e.to_string())?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if found.is_empty() {
        return Err("the `claude` CLI is not on PATH".into());
    }
    std::fs::canonicalize(&found).map_err(|e| format!("{found}: {e}"))
}

/// An image holding the real `claude` ([`super::payload::claude`]) and busybox for the rest;
/// built by `docker import` once per test binary run (and kept by the engine while nothing
/// changes).
pub fn image() -> Option<String> {
    static IMAGE: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    super::image::once(&IMAGE, || {
        super::agent_images::image_of("chant-test-claude", super::payload::claude())
    })
}
