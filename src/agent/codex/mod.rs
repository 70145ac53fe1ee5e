//! Codex CLI (`agent.kind: codex`, or `codex` in `agent.command`).
//!
//! What chant does for it (facts checked against the real CLI, 0.171.0: ../shared/agent-clis.md
//! and docs/agents.md):
//! - argv: `codex exec` (bare `codex` wants a terminal) with `--json` (one JSON event per
//!   line) and `--skip-git-repo-check`; at `permissions` Codex's own sandbox
//!   `-s workspace-write` (writes only in the clone and the temp dirs; network per
//!   `agent.network`), elsewhere `--dangerously-bypass-approvals-and-sandbox` (at `none` the
//!   honour system; inside docker/vm/kubernetes the kernel or hypervisor contains it and
//!   Codex's own sandbox cannot start there). Flags the user wrote are kept.
//! - a per-run `CODEX_HOME` (`$HOME/.codex` in the run's private HOME; the user's own
//!   `~/.codex` is never read or written): `config.toml` compiled by [`config`] (quiet start,
//!   the model provider for `OPENAI_BASE_URL`, which Codex itself ignores, the `PreToolUse`
//!   hook that sends every shell command through chant's command gate, failing closed, at
//!   `none`/`permissions`/`docker`/`vm` (through the run's gate socket or qemu's forward
//!   there), and at
//!   `none`/`permissions` the edit hook) and `rules/chant.rules` (`agent.commands.denied`
//!   as Codex's own `prefix_rule`s).
//! - a committed `.codex/` in the project is not read: Codex reads a project's config and
//!   hooks only for a trusted project, and chant never marks the clone trusted.
//! - `TMPDIR` in the private HOME at `none`/`permissions`: Codex refuses to set up its
//!   sandbox helpers when `CODEX_HOME` is under the temp dir (as a run's HOME is when the
//!   repository is under /tmp), and then every sandboxed command fails.
//! - output: [`events::ExecJson`] reads the `--json` events.

pub mod config;
mod events;
pub mod patch;

use std::path::Path;

use super::{endpoint, Agent, AgentError, Observer, RunInputs, RunSetup};
use crate::config::{AgentKind, Config, SandboxLevel};

pub use events::ExecJson;

/// The variables of Codex's API access, passed to it when set (and masked).
pub const CREDENTIALS: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "CODEX_API_KEY",
    "OPENAI_ORGANIZATION",
    "OPENAI_PROJECT",
];

/// The settings among [`CREDENTIALS`] (endpoint, organization and project ids): masked in
/// output but not searched for in the agent's change; the rest are secrets.
pub const SETTING_VARS: &[&str] = &["OPENAI_BASE_URL", "OPENAI_ORGANIZATION", "OPENAI_PROJECT"];

/// OpenAI's API host, when `OPENAI_BASE_URL` is not set.
pub const DEFAULT_HOST: &str = "api.openai.com";

pub struct Codex {
    rules: config::Rules,
}

impl Codex {
    pub fn new(config: &Config) -> Codex {
        Codex {
            rules: config::Rules::from_config(&config.agent),
        }
    }
}

/// Levels where Codex runs on this machine, as the user: its sandbox, the edit hook (which
/// reads the clone at its host path) and the `TMPDIR` fix apply there.
fn runs_on_host(level: SandboxLevel) -> bool {
    matches!(level, SandboxLevel::None | SandboxLevel::Permissions)
}

/// Levels where the gate hook reaches chant (on this machine, through the run's gate
/// socket in a container, or through qemu's forward from a vm guest, whose busybox
/// `$CHANT_EXEC` serves `--claude-hook`). At kubernetes `$CHANT_EXEC` is a stub: a
/// fail-closed hook would refuse every command.
fn gate_reachable(level: SandboxLevel) -> bool {
    runs_on_host(level) || matches!(level, SandboxLevel::Docker | SandboxLevel::Vm)
}

impl Agent for Codex {
    fn kind(&self) -> AgentKind {
        AgentKind::Codex
    }

    fn command(&self, template: &[String], level: SandboxLevel) -> Vec<String> {
        let mut argv = template.to_vec();
        let has = |flag: &str| {
            template
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        if !matches!(template.get(1).map(String::as_str), Some("exec" | "e")) {
            argv.insert(1.min(argv.len()), "exec".into());
        }
        if !super::passes_prompt(template) {
            // Naming the program is enough: the prompt goes right after `exec`.
            argv.insert(2.min(argv.len()), "{prompt}".into());
        }
        if !has("--json") {
            argv.push("--json".into());
        }
        if !has("--skip-git-repo-check") {
            argv.push("--skip-git-repo-check".into());
        }
        let chose_sandbox = [
            "-s",
            "--sandbox",
            "--dangerously-bypass-approvals-and-sandbox",
        ]
        .iter()
        .any(|f| has(f));
        if !chose_sandbox {
            match level {
                SandboxLevel::Permissions => argv.extend(["-s".into(), "workspace-write".into()]),
                _ => argv.push("--dangerously-bypass-approvals-and-sandbox".into()),
            }
        }
        // The hook is chant's own, written for this run: Codex would otherwise wait for a
        // person to review and trust it, and refuse to run it in `exec`.
        if gate_reachable(level) && !has("--dangerously-bypass-hook-trust") {
            argv.push("--dangerously-bypass-hook-trust".into());
        }
        argv
    }

    fn workspace_files(
        &self,
        _clone: &Path,
        _level: SandboxLevel,
    ) -> Result<Vec<(String, String)>, AgentError> {
        Ok(Vec::new())
    }

    fn home_files(&self, _workspace: &Path, _level: SandboxLevel) -> Vec<(String, String)> {
        // Written by `run_setup`, which knows the endpoint.
        Vec::new()
    }

    fn credential_names(&self) -> &'static [&'static str] {
        CREDENTIALS
    }

    fn setting_names(&self) -> &'static [&'static str] {
        SETTING_VARS
    }

    fn api_hosts(&self, secrets: &crate::secrets::Secrets) -> Vec<String> {
        vec![endpoint::host_of(
            secrets.get("OPENAI_BASE_URL"),
            DEFAULT_HOST,
        )]
    }

    fn fixed_env(&self, _level: SandboxLevel) -> Vec<(String, String)> {
        Vec::new()
    }

    fn commands_rule(&self, level: SandboxLevel) -> &'static str {
        if gate_reachable(level) {
            "- Run shell commands with your shell tool as usual: chant's command gate checks and records each one before it runs.\n"
        } else {
            "- Run shell commands with your shell tool as usual.\n"
        }
    }

    fn observer(&self) -> Box<dyn Observer> {
        Box::new(ExecJson::default())
    }

    fn run_setup(&self, run: &RunInputs<'_>) -> Result<RunSetup, AgentError> {
        let on_host = runs_on_host(run.level);
        let endpoint = config::Endpoint::from_vars(run.exposed);
        let mut setup = RunSetup::default();
        setup.home_files.push((
            ".codex/config.toml".into(),
            config::config_toml(
                &self.rules,
                &endpoint,
                run.level,
                config::Hooks {
                    gate: gate_reachable(run.level),
                    edits: on_host,
                },
            ),
        ));
        let rules = self.rules.rules_file();
        if !rules.is_empty() {
            setup
                .home_files
                .push((".codex/rules/chant.rules".into(), rules));
        }
        if on_host {
            setup
                .home_files
                .push(("tmp/.chant".into(), "the agent's TMPDIR\n".into()));
            setup.env.push((
                "TMPDIR".into(),
                run.home.join("tmp").to_string_lossy().into_owned(),
            ));
        }
        Ok(setup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codex(yaml: &str) -> Codex {
        let config =
            Config::from_yaml("(test)", &serde_yaml_ng::from_str(yaml).expect("test yaml"))
                .expect("valid config");
        Codex::new(&config)
    }

    #[test]
    fn the_program_name_alone_is_enough() {
        let a = codex("agent: {}");
        let argv = a.command(&["codex".to_string()], SandboxLevel::Permissions);
        assert_eq!(argv[..3], ["codex", "exec", "{prompt}"], "{argv:?}");
        let placed: Vec<String> = ["codex", "exec", "Read {prompt_file}"]
            .map(String::from)
            .to_vec();
        let argv = a.command(&placed, SandboxLevel::Permissions);
        assert_eq!(
            argv.iter().filter(|a| a.contains("{prompt")).count(),
            1,
            "{argv:?}"
        );
    }

    #[test]
    fn the_argv_is_codex_exec_with_json_and_a_sandbox_per_level() {
        let c = codex("agent: {}");
        let t: Vec<String> = ["codex", "{prompt}"].map(String::from).to_vec();
        assert_eq!(
            c.command(&t, SandboxLevel::Permissions),
            [
                "codex",
                "exec",
                "{prompt}",
                "--json",
                "--skip-git-repo-check",
                "-s",
                "workspace-write",
                "--dangerously-bypass-hook-trust"
            ]
        );
        let none = c.command(&t, SandboxLevel::None);
        assert!(none.contains(&"--dangerously-bypass-approvals-and-sandbox".to_string()));
        assert!(none.contains(&"--dangerously-bypass-hook-trust".to_string()));
        let docker = c.command(&t, SandboxLevel::Docker);
        assert!(docker.contains(&"--dangerously-bypass-approvals-and-sandbox".to_string()));
        assert!(docker.contains(&"--dangerously-bypass-hook-trust".to_string()));
        let vm = c.command(&t, SandboxLevel::Vm);
        assert!(vm.contains(&"--dangerously-bypass-approvals-and-sandbox".to_string()));
        assert!(vm.contains(&"--dangerously-bypass-hook-trust".to_string()));
        let far = c.command(&t, SandboxLevel::Kubernetes);
        assert!(!far.contains(&"--dangerously-bypass-hook-trust".to_string()));
    }

    #[test]
    fn flags_the_user_wrote_are_kept() {
        let c = codex("agent: {}");
        let t: Vec<String> = [
            "/opt/codex",
            "exec",
            "--sandbox=read-only",
            "--json",
            "{prompt}",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            c.command(&t, SandboxLevel::Permissions),
            [
                "/opt/codex",
                "exec",
                "--sandbox=read-only",
                "--json",
                "{prompt}",
                "--skip-git-repo-check",
                "--dangerously-bypass-hook-trust"
            ]
        );
    }

    #[test]
    fn the_private_home_gets_codex_home_and_tmpdir_outside_the_temp_dir() {
        let c = codex("agent: {commands: {denied: [\"touch *\"]}}");
        let exposed = vec![(
            "OPENAI_BASE_URL".to_string(),
            "http://127.0.0.1:9/v1".to_string(),
        )];
        let setup = c
            .run_setup(&RunInputs {
                clone: Path::new("/c"),
                home: Path::new("/r/home"),
                exposed: &exposed,
                level: SandboxLevel::Permissions,
            })
            .expect("setup");
        let names: Vec<&str> = setup.home_files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                ".codex/config.toml",
                ".codex/rules/chant.rules",
                "tmp/.chant"
            ]
        );
        assert_eq!(
            setup.env,
            [("TMPDIR".to_string(), "/r/home/tmp".to_string())]
        );
        let docker = c
            .run_setup(&RunInputs {
                clone: Path::new("/c"),
                home: Path::new("/home/agent"),
                exposed: &exposed,
                level: SandboxLevel::Docker,
            })
            .expect("setup");
        assert!(docker.env.is_empty());
        // The gate hook through the run's gate socket; the edit hook only on the host.
        assert!(docker.home_files[0].1.contains("--claude-hook"));
        assert!(!docker.home_files[0].1.contains("--edit-hook"));
    }
}
