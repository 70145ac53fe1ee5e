//! Gemini CLI (`agent.kind: gemini`, or `gemini` in `agent.command`).
//!
//! What chant does for it (facts checked against the real CLI 0.61.0 and its source:
//! ../shared/agent-clis.md and docs/agents.md):
//! - argv: the template plus `-p {prompt}` when it has no prompt, `--skip-trust` (the run's
//!   HOME knows no trusted folder, and headless Gemini CLI refuses an untrusted one),
//!   `--output-format stream-json`, and an approval mode: `default` at `permissions` (only
//!   what chant's policy allows runs; anything else would need a confirmation, which
//!   headless mode refuses), `yolo` elsewhere (chant's deny rules still apply: they rank
//!   above yolo's allow-all).
//! - `$HOME/.gemini/settings.json` in the run's private HOME: API-key auth (without it
//!   Gemini CLI picks another auth type and exits 41; it reads the auth type from there, not
//!   from the workspace), usage statistics, telemetry and auto-update off, hooks on, and —
//!   where the gate is reachable (`none`, `permissions`, and `docker` through the run's gate
//!   socket, `vm` through qemu's forward) — a `BeforeTool` hook that sends every
//!   `run_shell_command` through chant's command gate, written to fail closed.
//! - `.gemini/settings.json` in the clone (never landed; Gemini CLI's workspace settings,
//!   which override the user's): the committed one merged ([`settings`]: what could start
//!   programs or switch the gate off dropped, chant's keys set over it), or chant's keys
//!   alone; never hooks. Subagents are switched off (`experimental.enableAgents`), so a
//!   committed `.gemini/agents/*.md` (which may declare MCP servers) is never loaded.
//!   Workspace policy files (`.gemini/policies/`) are not loaded by 0.61.0 at all, and would
//!   rank below chant's user-tier policy if they were. Beside it an empty `.gemini/.env`, so Gemini CLI (which reads the
//!   first `.env` it finds from its working directory up, the clone's `.gemini/.env`
//!   first) reads no variables from the project.
//! - `$HOME/.gemini/policies/chant.toml`: chant's rules as policy ([`policy`]), in Gemini
//!   CLI's user tier, above any committed workspace policy.
//! - its credential and endpoint variables when the user has them set.
//! - output: [`stream::StreamJson`] reads the stream-json events.

mod policy;
mod settings;
mod stream;

use std::path::Path;

use serde_json::json;

use super::{Agent, AgentError, Observer};
use crate::config::{AgentConfig, AgentKind, Config, SandboxLevel};

pub use policy::Policy;
pub use stream::StreamJson;

/// The variables of Gemini CLI's API access, passed to it when set (and masked).
pub const CREDENTIALS: &[&str] = &[
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "GEMINI_MODEL",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_APPLICATION_CREDENTIALS",
];

/// The settings among [`CREDENTIALS`] (endpoint, model, switch, project, location): masked
/// in output but not searched for in the agent's change; the rest are secrets.
pub const SETTING_VARS: &[&str] = &[
    "GOOGLE_GEMINI_BASE_URL",
    "GEMINI_MODEL",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
];

/// The workspace settings file Gemini CLI reads in the project (the clone).
pub const SETTINGS: &str = ".gemini/settings.json";
/// The first `.env` Gemini CLI looks for from its working directory up: an empty one in the
/// clone ends its search, so no committed `.env` or `.gemini/.env` (which would set
/// variables such as its endpoint) is read; chant reads the project's `.env` itself.
pub const ENV_FILE: &str = ".gemini/.env";
const ENV_FILE_TEXT: &str =
    "# Written by git chant for this run: Gemini CLI reads no .env of the project.\n";
/// chant's policy file, in the run's private HOME.
pub const POLICY: &str = ".gemini/policies/chant.toml";

/// The gate hook: `$CHANT_EXEC --claude-hook` decides (Gemini CLI's hook input carries the
/// command as `tool_input.command`, as Claude Code's does). Gemini CLI blocks a call on an
/// exit code of 2 or more *with* text to give as the reason, but lets it through on exit 1
/// or when a failing hook printed nothing: so anything but the gate's allow becomes exit 2,
/// with a line of its own when the gate did not say why.
pub const GATE_HOOK: &str = "\"$CHANT_EXEC\" --claude-hook || { [ $? -eq 2 ] || \
echo 'chant: command refused: the command gate could not decide, so nothing runs' >&2; exit 2; }";

pub struct Gemini {
    agent: AgentConfig,
}

impl Gemini {
    pub fn new(config: &Config) -> Gemini {
        Gemini {
            agent: config.agent.clone(),
        }
    }

    fn approval_mode(level: SandboxLevel) -> &'static str {
        match level {
            SandboxLevel::Permissions => "default",
            _ => "yolo",
        }
    }

    /// chant's own settings (see the module docs); `hooks`: with the gate hook.
    fn ours(hooks: bool) -> serde_json::Value {
        let mut ours = json!({
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": false},
            "telemetry": {"enabled": false},
            "general": {"disableAutoUpdate": true, "disableUpdateNag": true},
            "hooksConfig": {"enabled": true},
            // Subagents off: a project's `.gemini/agents/*.md` may declare MCP servers of
            // its own (programs started outside any policy rule) once the folder is trusted,
            // which `--skip-trust` makes it.
            "experimental": {"enableAgents": false},
        });
        if hooks {
            ours["hooks"] = json!({
                "BeforeTool": [{
                    "matcher": "^(run_shell_command|ShellTool)$",
                    "hooks": [{"type": "command", "name": "chant-gate", "command": GATE_HOOK}]
                }]
            });
        }
        ours
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// Levels where the gate hook reaches chant (on this machine, through the run's gate
/// socket in a container, or through qemu's forward from a vm guest, whose busybox
/// `$CHANT_EXEC` serves `--claude-hook`), so it is written for them (at kubernetes
/// `$CHANT_EXEC` is a stub: a fail-closed hook would refuse every command).
fn gate_reachable(level: SandboxLevel) -> bool {
    matches!(
        level,
        SandboxLevel::None | SandboxLevel::Permissions | SandboxLevel::Docker | SandboxLevel::Vm
    )
}

impl Agent for Gemini {
    fn kind(&self) -> AgentKind {
        AgentKind::Gemini
    }

    fn command(&self, template: &[String], level: SandboxLevel) -> Vec<String> {
        let mut argv = template.to_vec();
        let has = |flags: &[&str]| {
            template.iter().any(|a| {
                flags
                    .iter()
                    .any(|f| a == f || a.starts_with(&format!("{f}=")))
            })
        };
        if !has(&["-p", "--prompt"]) && !super::passes_prompt(template) {
            argv.extend(["-p".into(), "{prompt}".into()]);
        }
        if !has(&["--skip-trust"]) {
            argv.push("--skip-trust".into());
        }
        if !has(&["--output-format", "-o"]) {
            argv.extend(["--output-format".into(), "stream-json".into()]);
        }
        if !has(&["--approval-mode", "--yolo", "-y"]) {
            argv.extend(["--approval-mode".into(), Self::approval_mode(level).into()]);
        }
        argv
    }

    fn workspace_files(
        &self,
        clone: &Path,
        _level: SandboxLevel,
    ) -> Result<Vec<(String, String)>, AgentError> {
        // The workspace file overrides the user's: chant's keys are set over it too, and it
        // never holds hooks (they are chant's, in HOME, and would otherwise run twice).
        let committed = super::committed::read(clone, SETTINGS)?;
        let merged = settings::merge(
            &Self::ours(false),
            committed.as_deref().map(|text| (SETTINGS, text)),
        )?;
        Ok(vec![
            (SETTINGS.to_string(), pretty(&merged)),
            (ENV_FILE.to_string(), ENV_FILE_TEXT.to_string()),
        ])
    }

    fn home_files(&self, workspace: &Path, level: SandboxLevel) -> Vec<(String, String)> {
        let policy = Policy::compile(
            &self.agent,
            &workspace.to_string_lossy(),
            level == SandboxLevel::Permissions,
        );
        // No gate in a pod: Gemini CLI's own policy refuses the denied commands it can.
        let policy = if level == SandboxLevel::Kubernetes {
            policy.with_command_denies(&self.agent)
        } else {
            policy
        };
        vec![
            (
                SETTINGS.to_string(),
                pretty(&Self::ours(gate_reachable(level))),
            ),
            (POLICY.to_string(), policy.to_toml()),
        ]
    }

    fn credential_names(&self) -> &'static [&'static str] {
        CREDENTIALS
    }

    fn setting_names(&self) -> &'static [&'static str] {
        SETTING_VARS
    }

    fn api_hosts(&self, secrets: &crate::secrets::Secrets) -> Vec<String> {
        vec![super::endpoint::host_of(
            secrets.get("GOOGLE_GEMINI_BASE_URL"),
            "generativelanguage.googleapis.com",
        )]
    }

    fn fixed_env(&self, _level: SandboxLevel) -> Vec<(String, String)> {
        Vec::new()
    }

    fn commands_rule(&self, level: SandboxLevel) -> &'static str {
        // A pod's `$CHANT_EXEC` is a stub and no gate hook is written there.
        if level == SandboxLevel::Kubernetes {
            return "- Run shell commands with your run_shell_command tool as usual.\n";
        }
        "- Run shell commands with your run_shell_command tool as usual: chant's command gate checks and records each one before it runs.\n"
    }

    fn observer(&self) -> Box<dyn Observer> {
        Box::new(StreamJson::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemini(yaml: &str) -> Gemini {
        let config =
            Config::from_yaml("(test)", &serde_yaml_ng::from_str(yaml).expect("test yaml"))
                .expect("valid config");
        Gemini::new(&config)
    }

    #[test]
    fn the_argv_gets_a_prompt_trust_stream_json_and_a_mode_per_level() {
        let g = gemini("agent: {}");
        assert_eq!(
            g.command(&["gemini".to_string()], SandboxLevel::Permissions),
            [
                "gemini",
                "-p",
                "{prompt}",
                "--skip-trust",
                "--output-format",
                "stream-json",
                "--approval-mode",
                "default"
            ]
        );
        assert!(g
            .command(&["gemini".to_string()], SandboxLevel::None)
            .ends_with(&["--approval-mode".into(), "yolo".into()]));
    }

    #[test]
    fn a_template_passing_the_prompt_or_its_file_gets_no_second_prompt() {
        let g = gemini("agent: {}");
        for given in ["{prompt}", "Do what {prompt_file} says"] {
            let t: Vec<String> = vec!["gemini".into(), given.into()];
            let argv = g.command(&t, SandboxLevel::Permissions);
            assert!(!argv.contains(&"-p".to_string()), "{given}: {argv:?}");
            assert_eq!(argv[1], given, "{argv:?}");
        }
    }

    #[test]
    fn flags_the_user_wrote_are_kept() {
        let g = gemini("agent: {}");
        let t: Vec<String> = ["gemini", "{prompt}", "-o", "json", "--yolo", "-m", "x"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            g.command(&t, SandboxLevel::Permissions),
            [
                "gemini",
                "{prompt}",
                "-o",
                "json",
                "--yolo",
                "-m",
                "x",
                "--skip-trust"
            ]
        );
    }

    #[test]
    fn the_gate_hook_is_written_only_where_the_gate_is_reachable() {
        let g = gemini("agent: {}");
        let tmp = tempfile::tempdir().expect("tmp");
        for (level, hooked) in [
            (SandboxLevel::None, true),
            (SandboxLevel::Permissions, true),
            (SandboxLevel::Docker, true),
            (SandboxLevel::Vm, true),
            (SandboxLevel::Kubernetes, false),
        ] {
            let home = g.home_files(tmp.path(), level);
            let settings: serde_json::Value = serde_json::from_str(&home[0].1).expect("json");
            assert_eq!(home[0].0, SETTINGS);
            assert_eq!(home[1].0, POLICY);
            assert_eq!(
                settings["security"]["auth"]["selectedType"],
                "gemini-api-key"
            );
            assert_eq!(
                settings["hooks"]["BeforeTool"][0]["hooks"][0]["command"] == GATE_HOOK,
                hooked,
                "{level}"
            );
            let files = g.workspace_files(tmp.path(), level).expect("files");
            let workspace: serde_json::Value = serde_json::from_str(&files[0].1).expect("json");
            assert!(workspace.get("hooks").is_none(), "{level}");
            assert_eq!(workspace["hooksConfig"]["enabled"], true);
        }
    }

    #[test]
    fn the_api_host_comes_from_google_gemini_base_url() {
        let g = gemini("agent: {}");
        let none = crate::secrets::Secrets::default();
        assert_eq!(g.api_hosts(&none), ["generativelanguage.googleapis.com"]);
    }
}
