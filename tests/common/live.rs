//! Driving `git chant work` with a real agent CLI: a network namespace holding only `lo`, a
//! scripted fake of the agent's model API inside it, and the variables pointing the CLI at
//! the fake — shared by the tests of each adapter (tests/gemini.rs, tests/aider.rs,
//! tests/codex.rs, tests/opencode.rs) and by tests/agent_clis.rs.
//!
//! Where the CLI or the namespace is missing the test is skipped with a loud message,
//! unless the CLI's `CHANT_REQUIRE_<NAME>` variable is set (`.ci/run` installs the pinned
//! CLIs and sets them): then it fails.

use std::process::Command;

use super::anthropic::Turn;
use super::netns::Netns;
use super::openai::FakeOpenAi;
use super::{Run, TestRepo};

/// The API key the OpenAI-speaking CLIs get (and that must be masked wherever chant prints).
pub const OPENAI_KEY: &str = "sk-test-openai-3c9e71d2b4a85f06";

/// A namespace with a fake API serving one script, and the variables for the CLI.
pub struct Live<A> {
    pub api: A,
    env: Vec<(String, String)>,
    // Dropped last: the server's socket lives in it.
    pub netns: Netns,
}

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

/// A namespace with the fake OpenAI API, for Codex CLI and opencode.
pub type LiveOpenAi = Live<FakeOpenAi>;

impl Live<FakeOpenAi> {
    /// [`Live::start`] with the fake OpenAI API serving `script` and the conventional
    /// variables (`OPENAI_API_KEY`, `OPENAI_BASE_URL`) pointing at it.
    pub fn openai(test: &str, program: &str, require: &str, script: Vec<Turn>) -> Option<Self> {
        Live::start(
            test,
            program,
            require,
            |netns| FakeOpenAi::start(netns, script),
            |api| {
                vec![
                    ("OPENAI_API_KEY", OPENAI_KEY.to_string()),
                    ("OPENAI_BASE_URL", api.base_url()),
                ]
            },
        )
    }
}

impl<A> Live<A> {
    /// Sets up `test` for `program` (required when `require` is set): `api` starts the fake
    /// in the namespace, `env` gives the variables pointing the CLI at it. None: skipped.
    pub fn start(
        test: &str,
        program: &str,
        require: &str,
        api: impl FnOnce(&Netns) -> A,
        env: impl FnOnce(&A) -> Vec<(&'static str, String)>,
    ) -> Option<Live<A>> {
        let netns = netns_for(test, program, require)?;
        let api = api(&netns);
        let env = env(&api)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        Some(Live { api, env, netns })
    }

    /// The variables that point the CLI at the fake.
    pub fn env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `git chant <args>` in `repo`, run inside the namespace with the test's clean
    /// environment, the fake's variables and `extra`.
    pub fn chant(&self, repo: &TestRepo, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let started = std::time::Instant::now();
        let out = self
            .chant_cmd(repo, args, extra)
            .output()
            .expect("run git-chant in the namespace");
        eprintln!(
            "--- git chant {}: {} in {} ms",
            args.join(" "),
            out.status,
            started.elapsed().as_millis()
        );
        Run(out)
    }

    /// The command [`Live::chant`] runs (nsenter execs git-chant: same pid).
    pub fn chant_cmd(&self, repo: &TestRepo, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = self.netns.command(env!("CARGO_BIN_EXE_git-chant"));
        repo.env(&mut cmd);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .args(args)
            .current_dir(&repo.root);
        cmd
    }

    /// `program` run directly in the namespace with an environment as empty as chant gives
    /// an agent (PATH, HOME, LANG, TERM) plus the fake's variables.
    pub fn direct(&self, program: &str, home: &std::path::Path, dir: &std::path::Path) -> Command {
        let mut cmd = self.netns.command(program);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("LANG", "C.UTF-8")
            .env("TERM", "dumb")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(dir)
            .stdin(std::process::Stdio::null());
        cmd
    }
}

/// A repository whose `agent.command` is `command` (a YAML flow list) with `extra` YAML
/// lines under `agent:`, and one spec targeting `hello.txt`; returns it and the spec id.
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

/// Everything chant printed or wrote about a run: stdout, stderr, run logs, the ledger.
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

/// The commands of the `command_run` entries with `details.decision` = `decision`.
pub fn command_runs(repo: &TestRepo, decision: &str) -> Vec<String> {
    repo.events("command_run")
        .iter()
        .filter(|e| e["details"]["decision"] == decision)
        .filter_map(|e| e["details"]["command"].as_str().map(str::to_string))
        .collect()
}

/// The file `rel` on branch `chant/<id>`, or None.
pub fn landed_file(repo: &TestRepo, id: &str, rel: &str) -> Option<String> {
    let out = repo
        .git_in(&repo.root, &[], &["show", &format!("chant/{id}:{rel}")])
        .0;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The files on `branch`.
pub fn landed(repo: &TestRepo, branch: &str) -> Vec<String> {
    repo.git(&["ls-tree", "-r", "--name-only", branch])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The one clone `--keep` left, after asserting there is exactly one.
pub fn kept_clone(repo: &TestRepo) -> std::path::PathBuf {
    let kept: Vec<_> = std::fs::read_dir(repo.clones_dir())
        .expect("the kept clone")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    kept.into_iter().next().expect("one kept clone")
}

/// What a run of a real agent CLI must have left behind: the checks the per-agent level
/// tests share (tests/codex.rs, gemini.rs, opencode.rs, aider.rs, kubernetes/agents.rs).
/// [`Expect::check`] asserts every field that is set; the default checks nothing, so a
/// test names each thing it holds the run to, and keeps its own further checks.
#[derive(Default)]
pub struct Expect<'a> {
    /// Files on `chant/<id>` and their whole text.
    pub landed: &'a [(&'a str, &'a str)],
    /// No file on `chant/<id>` starts with one of these (refused edits, probes of refused
    /// commands, the agent's own config).
    pub not_landed: &'a [&'a str],
    /// Host paths that must not exist: probes of refused commands, edits outside the clone.
    pub never_made: &'a [&'a std::path::Path],
    /// Paths the one clone `--keep` left must hold (the workspace came back) ...
    pub in_clone: &'a [&'a str],
    /// ... and must not (what was refused never happened there).
    pub not_in_clone: &'a [&'a str],
    /// The commands of the allowed `command_run` entries, all of them in order.
    pub allowed: Option<&'a [&'a str]>,
    /// The commands of the refused `command_run` entries, all of them in order.
    pub refused: Option<&'a [&'a str]>,
    /// The `sandbox` recorded on the first refused `command_run` entry.
    pub refused_at: Option<&'a str>,
    /// The `details.via` recorded on the first refused `command_run` entry.
    pub refused_via: Option<&'a str>,
    /// The API key, which must be in nothing chant printed, logged or recorded.
    pub key: Option<&'a str>,
    /// The agent's report is read from `spec_failed` instead of `spec_completed`.
    pub failed: bool,
    /// The report's `agent_refusals`.
    pub refusals: Option<u64>,
    /// The report's `agent_session_id` is not empty and starts with this ("" for any).
    pub session: Option<&'a str>,
    /// The report's `agent_input_tokens` is above 0.
    pub tokens: bool,
}

impl Expect<'_> {
    /// Asserts all of it of the run of spec `id` in `repo`; returns the agent's report (the
    /// details of the `spec_completed`, or with `failed` the `spec_failed`, entry).
    pub fn check(&self, repo: &TestRepo, id: &str, run: &Run) -> serde_json::Value {
        for (rel, text) in self.landed {
            assert_eq!(
                landed_file(repo, id, rel).as_deref(),
                Some(*text),
                "{rel} on chant/{id}"
            );
        }
        if !self.not_landed.is_empty() {
            let files = landed(repo, &format!("chant/{id}"));
            for never in self.not_landed {
                assert!(
                    !files.iter().any(|f| f.starts_with(never)),
                    "{never} landed: {files:?}"
                );
            }
        }
        for path in self.never_made {
            assert!(
                !path.exists(),
                "{}: refused, yet it happened",
                path.display()
            );
        }
        if !self.in_clone.is_empty() || !self.not_in_clone.is_empty() {
            let kept = kept_clone(repo);
            for rel in self.in_clone {
                assert!(kept.join(rel).exists(), "{rel}: the result came back");
            }
            for rel in self.not_in_clone {
                assert!(!kept.join(rel).exists(), "{rel}: refused, yet it happened");
            }
        }
        if let Some(allowed) = self.allowed {
            assert_eq!(command_runs(repo, "allowed"), allowed);
        }
        if let Some(refused) = self.refused {
            assert_eq!(command_runs(repo, "refused"), refused);
        }
        if self.refused_at.is_some() || self.refused_via.is_some() {
            let entries = repo.events("command_run");
            let refused = entries
                .iter()
                .find(|e| e["details"]["decision"] == "refused")
                .expect("a refused command_run entry");
            if let Some(sandbox) = self.refused_at {
                assert_eq!(refused["sandbox"], sandbox, "{refused}");
            }
            if let Some(via) = self.refused_via {
                assert_eq!(refused["details"]["via"], via, "{refused}");
            }
        }
        if let Some(key) = self.key {
            let said = everything_chant_said(repo, run);
            assert!(!said.contains(key), "the API key leaked:\n{said}");
        }
        let event = if self.failed {
            "spec_failed"
        } else {
            "spec_completed"
        };
        let report = repo.events(event).first().map(|e| e["details"].clone());
        if self.refusals.is_some() || self.session.is_some() || self.tokens {
            assert!(report.is_some(), "no {event} entry");
        }
        let report = report.unwrap_or_default();
        if let Some(refusals) = self.refusals {
            assert_eq!(report["agent_refusals"], refusals, "{report}");
        }
        if let Some(prefix) = self.session {
            assert!(
                report["agent_session_id"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty() && s.starts_with(prefix)),
                "{report}"
            );
        }
        if self.tokens {
            assert!(
                report["agent_input_tokens"].as_u64().is_some_and(|n| n > 0),
                "{report}"
            );
        }
        report
    }
}

/// `git chant work <id>` in `repo`, whose agent has no network at `level`, with the agent's
/// API at `url` in `var` (`http://HOST:PORT/...`): refused with exit 2 naming
/// `agent.network.enabled`, the API's `host:port` and the level, before a branch or a
/// ledger entry exists.
pub fn assert_refused_without_network(
    repo: &TestRepo,
    id: &str,
    level: &str,
    var: &str,
    url: &str,
) {
    let host_port = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .filter(|h| h.contains(':'))
        .unwrap_or_else(|| panic!("{url}: not http://HOST:PORT/..."));
    let ledger_before = repo.ledger().len();
    let run = repo
        .chant_cmd(&["work", id])
        .env(var, url)
        .output()
        .expect("run");
    let run = Run(run).assert_code(2);
    for needle in ["agent.network.enabled", host_port, level] {
        assert!(
            run.stderr().contains(needle),
            "{level}: {needle}: {}",
            run.stderr()
        );
    }
    assert_eq!(repo.rev(&format!("chant/{id}")), None, "{level}: no branch");
    assert_eq!(
        repo.ledger().len(),
        ledger_before,
        "{level}: nothing recorded"
    );
}
