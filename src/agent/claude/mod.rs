//! Claude Code (`agent.kind: claude`, or `claude` in `agent.command`).
//!
//! What chant does for it (facts checked against the real CLI: ../shared/agent-clis.md and
//! docs/agents.md):
//! - argv: the template plus `--output-format stream-json --verbose` and a permission mode:
//!   `bypassPermissions` at `none` (honour system: it may edit the clone) and inside
//!   docker/vm/kubernetes (the kernel or hypervisor contains it; its own prompts would only
//!   refuse), `acceptEdits` at `permissions` when `permissions.allow_edit` is empty, else
//!   `default` (only the allow rules pass; a call no rule covers is refused at once in `-p`
//!   mode). In bypass mode the settings' deny rules and the PreToolUse hook still apply.
//! - where the gate is reachable (none, permissions, docker and vm: there through the run's
//!   gate socket, see `crate::gate`) the settings and the hook below are written; at
//!   kubernetes `$CHANT_EXEC` is a stub and no hook is written (a fail-closed hook would
//!   refuse every command); in a pod, which clones the branch itself, chant's rules go in
//!   as `--settings` JSON (no hook), and the merged `.claude/settings.json` below (without
//!   any hook) is written over the pod's clone by its script, so the committed one's hooks
//!   never run there either.
//! - `.claude/settings.json` in the clone (never landed): chant's rules compiled by
//!   [`crate::exec::native`], merged with a committed `.claude/settings.json` and
//!   `.claude/settings.local.json` (their allow and deny rules are kept; chant's denies are
//!   added, and deny wins in Claude Code; their hooks, `disableAllHooks`, `defaultMode` and
//!   `additionalDirectories` are dropped so nothing can switch the gate off), plus the
//!   PreToolUse hook that sends every Bash call through chant's command gate, written to
//!   fail closed (Claude Code blocks a call only on exit 2).
//! - a committed `.mcp.json` is replaced by one naming no server for the run: `claude -p`
//!   starts a project's MCP servers without asking, outside every rule and hook.
//! - trust: `$HOME/.claude.json` in the run's private HOME marks the clone trusted, without
//!   which Claude Code ignores the allow rules of an untrusted workspace.
//! - environment: `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` (no calls home), `IS_SANDBOX=1`
//!   at `none` (bypass mode refuses to start as root without it), and its credential and
//!   endpoint variables when the user has them set.
//! - output: [`stream::StreamJson`] reads the stream-json events.

pub mod hook;
mod settings;
mod stream;

use std::path::Path;

use serde_json::json;

use super::{Agent, AgentError, Observer};
use crate::config::{AgentKind, Config, SandboxLevel};

pub use settings::merge_settings;
pub use stream::StreamJson;

/// The variables of Claude Code's API access, passed to it when set (and masked).
pub const CREDENTIALS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "ANTHROPIC_BEDROCK_BASE_URL",
    "ANTHROPIC_VERTEX_BASE_URL",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "CLOUD_ML_REGION",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "GOOGLE_APPLICATION_CREDENTIALS",
];

/// The settings among [`CREDENTIALS`] (endpoints, models, switches, regions, project ids):
/// masked in output but not searched for in the agent's change; the rest are secrets.
pub const SETTING_VARS: &[&str] = &[
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "ANTHROPIC_BEDROCK_BASE_URL",
    "ANTHROPIC_VERTEX_BASE_URL",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "CLOUD_ML_REGION",
    "AWS_REGION",
];

/// The settings file Claude Code reads in the project (the clone).
pub const SETTINGS: &str = ".claude/settings.json";
/// The per-user project settings file, merged and then emptied for the run.
pub const LOCAL_SETTINGS: &str = ".claude/settings.local.json";
/// The project's MCP servers, replaced by none for the run.
pub const MCP_CONFIG: &str = ".mcp.json";

pub struct Claude {
    rules: serde_json::Value,
    edits_limited: bool,
}

impl Claude {
    pub fn new(config: &Config) -> Claude {
        let native = crate::exec::native::ClaudePermissions::from_config(&config.agent);
        Claude {
            rules: native.to_settings_json(),
            edits_limited: !config.agent.permissions.allow_edit.0.patterns().is_empty(),
        }
    }

    fn permission_mode(&self, level: SandboxLevel) -> &'static str {
        match level {
            SandboxLevel::Permissions if self.edits_limited => "default",
            SandboxLevel::Permissions => "acceptEdits",
            // Inside a container, a vm or a pod the kernel or hypervisor contains it.
            _ => "bypassPermissions",
        }
    }
}

/// The host (with its port, when the URL gives one) of `ANTHROPIC_BASE_URL`, else
/// Anthropic's API host.
fn api_host(base_url: Option<&str>) -> String {
    super::endpoint::host_of(base_url, "api.anthropic.com")
}

/// Levels where the gate hook reaches chant (on this machine, or through the run's gate
/// socket from a container or a vm guest), so the settings, trust state and hook are
/// written for it. At kubernetes `$CHANT_EXEC` is a stub: a fail-closed hook would refuse
/// every command.
fn gate_reachable(level: SandboxLevel) -> bool {
    matches!(
        level,
        SandboxLevel::None | SandboxLevel::Permissions | SandboxLevel::Docker | SandboxLevel::Vm
    )
}

/// The gate hook: `$CHANT_EXEC --claude-hook` decides; anything but its own allow (exit 0)
/// becomes exit 2, the only code that makes Claude Code refuse the call.
pub const GATE_HOOK: &str = "\"$CHANT_EXEC\" --claude-hook || exit 2";

/// The result hook (PostToolUse, PostToolUseFailure): `$CHANT_EXEC --claude-hook-result`
/// records the command's exit code and duration. It fails safe and never silently: the
/// command has run, so a failure to record it must not stop the run (never exit 2, which
/// Claude Code would hand the model), and Claude Code shows nothing of a hook's other
/// failures, so what went wrong goes to [`crate::agent::HOOK_ERRORS`] in the run's HOME,
/// which `work` reports after the run.
pub const RESULT_HOOK: &str = "\"$CHANT_EXEC\" --claude-hook-result 2>>\"$HOME/.chant-hook-errors\" || { echo \"chant: recording a command's result failed (exit $?)\" >>\"$HOME/.chant-hook-errors\"; exit 1; }";

impl Agent for Claude {
    fn kind(&self) -> AgentKind {
        AgentKind::Claude
    }

    fn command(&self, template: &[String], level: SandboxLevel) -> Vec<String> {
        let mut argv = template.to_vec();
        let has = |flag: &str| {
            template
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        if !has("-p") && !has("--print") {
            argv.insert(1.min(argv.len()), "-p".into());
        }
        if !super::passes_prompt(template) {
            // `claude -p` with neither a prompt argument nor standard input stops at once
            // ("Input must be provided"): the prompt goes right after the flag.
            let at = argv
                .iter()
                .position(|a| a == "-p" || a == "--print")
                .map_or(argv.len(), |i| i + 1);
            argv.insert(at, "{prompt}".into());
        }
        if !has("--output-format") {
            argv.extend(["--output-format".into(), "stream-json".into()]);
        }
        if !has("--verbose") {
            argv.push("--verbose".into());
        }
        if !has("--permission-mode") && !has("--dangerously-skip-permissions") {
            argv.extend([
                "--permission-mode".into(),
                self.permission_mode(level).into(),
            ]);
        }
        // The pod clones the branch itself, so a settings file written into chant's clone
        // never reaches it: chant's rules (without the gate hook, a stub there) go in as
        // `--settings` JSON, which Claude Code adds to the project's own (deny wins).
        if level == SandboxLevel::Kubernetes && !has("--settings") {
            argv.extend(["--settings".into(), self.rules.to_string()]);
        }
        argv
    }

    fn workspace_files(
        &self,
        clone: &Path,
        level: SandboxLevel,
    ) -> Result<Vec<(String, String)>, AgentError> {
        let mut ours = self.rules.clone();
        ours["hooks"] = if gate_reachable(level) {
            settings::hooks(GATE_HOOK, RESULT_HOOK)
        } else if level == SandboxLevel::Kubernetes {
            // The pod clones the branch itself and gets these files written over its
            // clone: the committed settings merged without their hooks, and no gate hook
            // (a stub there); chant's rules also come as `--settings`.
            serde_json::json!({})
        } else {
            return Ok(Vec::new());
        };
        let mut committed = Vec::new();
        for rel in [SETTINGS, LOCAL_SETTINGS] {
            if let Some(text) = settings::read_committed(clone, rel)? {
                committed.push((rel, text));
            }
        }
        let merged = merge_settings(&ours, &committed)?;
        let mut files = vec![(
            SETTINGS.to_string(),
            serde_json::to_string_pretty(&merged).unwrap_or_default() + "\n",
        )];
        if committed.iter().any(|(rel, _)| *rel == LOCAL_SETTINGS) {
            files.push((LOCAL_SETTINGS.to_string(), "{}\n".to_string()));
        }
        // `claude -p` starts the servers a project's `.mcp.json` names without asking
        // (seen in a pod with 2.1.x): programs outside every permission rule and hook.
        if std::fs::symlink_metadata(clone.join(MCP_CONFIG)).is_ok() {
            files.push((MCP_CONFIG.to_string(), "{\"mcpServers\": {}}\n".to_string()));
        }
        Ok(files)
    }

    fn home_files(&self, workspace: &Path, level: SandboxLevel) -> Vec<(String, String)> {
        // Only where the private HOME is the agent's (none, permissions). In a container the
        // clone stays untrusted, which only drops allow rules: in bypassPermissions mode they
        // are moot, and the deny rules and the gate hook still hold (tests/claude.rs).
        if !matches!(level, SandboxLevel::None | SandboxLevel::Permissions) {
            return Vec::new();
        }
        let state = json!({
            "hasCompletedOnboarding": true,
            "projects": {
                workspace.to_string_lossy(): {"hasTrustDialogAccepted": true}
            }
        });
        vec![(
            ".claude.json".to_string(),
            serde_json::to_string_pretty(&state).unwrap_or_default() + "\n",
        )]
    }

    fn credential_names(&self) -> &'static [&'static str] {
        CREDENTIALS
    }

    fn setting_names(&self) -> &'static [&'static str] {
        SETTING_VARS
    }

    fn api_hosts(&self, secrets: &crate::secrets::Secrets) -> Vec<String> {
        vec![api_host(secrets.get("ANTHROPIC_BASE_URL"))]
    }

    fn fixed_env(&self, level: SandboxLevel) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_string(),
                "1".to_string(),
            ),
            ("DISABLE_AUTOUPDATER".to_string(), "1".to_string()),
        ];
        if self.permission_mode(level) == "bypassPermissions" {
            env.push(("IS_SANDBOX".to_string(), "1".to_string()));
        }
        env
    }

    fn commands_rule(&self, level: SandboxLevel) -> &'static str {
        if gate_reachable(level) {
            "- Run shell commands with your Bash tool as usual: chant's command gate checks and records each one before it runs.\n"
        } else {
            "- Run shell commands with your Bash tool as usual; the sandbox contains them.\n"
        }
    }

    fn observer(&self) -> Box<dyn Observer> {
        Box::new(StreamJson::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claude(yaml: &str) -> Claude {
        let config =
            Config::from_yaml("(test)", &serde_yaml_ng::from_str(yaml).expect("test yaml"))
                .expect("valid config");
        Claude::new(&config)
    }

    #[test]
    fn the_argv_gets_stream_json_and_a_mode_per_level() {
        let c = claude("agent: {}");
        let t = vec!["claude".to_string(), "-p".into(), "{prompt}".into()];
        assert_eq!(
            c.command(&t, SandboxLevel::Permissions),
            [
                "claude",
                "-p",
                "{prompt}",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "acceptEdits"
            ]
        );
        assert!(c
            .command(&t, SandboxLevel::None)
            .ends_with(&["--permission-mode".into(), "bypassPermissions".into()]));
        let limited = claude("agent: {permissions: {allow_edit: [src/]}}");
        assert!(limited
            .command(&t, SandboxLevel::Permissions)
            .ends_with(&["--permission-mode".into(), "default".into()]));
    }

    #[test]
    fn the_program_name_alone_is_enough() {
        let c = claude("agent: {}");
        let argv = |t: &[&str]| {
            let t: Vec<String> = t.iter().map(|a| a.to_string()).collect();
            c.command(&t, SandboxLevel::Permissions)
        };
        assert_eq!(argv(&["claude"])[..3], ["claude", "-p", "{prompt}"]);
        assert_eq!(
            argv(&["/usr/bin/claude", "--print"])[..3],
            ["/usr/bin/claude", "--print", "{prompt}"]
        );
        assert_eq!(
            argv(&["claude", "--model", "x", "-p"])[..5],
            ["claude", "--model", "x", "-p", "{prompt}"]
        );
        // A prompt the user placed stays where it is, and is not added twice.
        let placed = argv(&["claude", "Read {prompt_file}"]);
        assert_eq!(placed.iter().filter(|a| a.contains("{prompt")).count(), 1);
    }

    #[test]
    fn flags_the_user_wrote_are_kept() {
        let c = claude("agent: {}");
        let t: Vec<String> = [
            "claude",
            "{prompt}",
            "--output-format=json",
            "--permission-mode",
            "plan",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            c.command(&t, SandboxLevel::Permissions),
            [
                "claude",
                "-p",
                "{prompt}",
                "--output-format=json",
                "--permission-mode",
                "plan",
                "--verbose"
            ]
        );
    }

    #[test]
    fn the_api_host_comes_from_anthropic_base_url() {
        assert_eq!(api_host(None), "api.anthropic.com");
        assert_eq!(api_host(Some("http://127.0.0.1:8080/v1")), "127.0.0.1:8080");
        assert_eq!(
            api_host(Some("https://user:pw@gateway.example.com/anthropic")),
            "gateway.example.com"
        );
    }

    #[test]
    fn the_result_hook_never_exits_2_and_writes_what_failed_where_work_reads_it() {
        assert!(RESULT_HOOK.contains(&format!("$HOME/{}", crate::agent::HOOK_ERRORS)));
        let home = tempfile::tempdir().expect("tempdir");
        // A gate that fails as badly as it can: exit 2 with a message.
        let gate = home.path().join("gate");
        std::fs::write(&gate, "#!/bin/sh\necho gate broke >&2\nexit 2\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&gate, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let status = std::process::Command::new("sh")
            .args(["-c", RESULT_HOOK])
            .env("CHANT_EXEC", &gate)
            .env("HOME", home.path())
            .stdin(std::process::Stdio::null())
            .status()
            .expect("sh");
        assert_eq!(status.code(), Some(1));
        let written =
            std::fs::read_to_string(home.path().join(crate::agent::HOOK_ERRORS)).expect("read");
        assert!(written.contains("gate broke"), "{written}");
        assert!(written.contains("failed (exit 2)"), "{written}");
    }

    #[test]
    fn the_gate_hook_is_written_only_where_the_gate_is_reachable() {
        let c = claude("agent: {}");
        let dir = tempfile::tempdir().expect("temp dir");
        for level in [
            SandboxLevel::None,
            SandboxLevel::Permissions,
            SandboxLevel::Docker,
            SandboxLevel::Vm,
        ] {
            let files = c.workspace_files(dir.path(), level).expect("files");
            let settings: serde_json::Value = serde_json::from_str(&files[0].1).expect("json");
            assert_eq!(
                settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"], GATE_HOOK,
                "{level}"
            );
            assert!(c.commands_rule(level).contains("command gate"), "{level}");
        }
        let level = SandboxLevel::Kubernetes;
        assert!(!c.commands_rule(level).contains("gate"), "{level}");
    }

    #[test]
    fn in_a_pod_the_committed_settings_are_replaced_by_a_merge_without_any_hook() {
        let c = claude("agent: {permissions: {deny_edit: [secret.txt]}}");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join(".claude")).expect("dir");
        std::fs::write(
            dir.path().join(SETTINGS),
            r#"{"permissions": {"allow": ["Edit(/secret.txt)", "Bash(*)"]},
                "hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "touch probe"}]}]},
                "apiKeyHelper": "touch probe", "enableAllProjectMcpServers": true, "model": "x"}"#,
        )
        .expect("write");
        std::fs::write(
            dir.path().join(LOCAL_SETTINGS),
            r#"{"disableAllHooks": true}"#,
        )
        .expect("write");
        std::fs::write(
            dir.path().join(MCP_CONFIG),
            r#"{"mcpServers": {"p": {"command": "touch", "args": ["probe"]}}}"#,
        )
        .expect("write");
        let files = c
            .workspace_files(dir.path(), SandboxLevel::Kubernetes)
            .expect("files");
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, [SETTINGS, LOCAL_SETTINGS, MCP_CONFIG]);
        assert!(!files[2].1.contains("probe"), "{}", files[2].1);
        let settings: serde_json::Value = serde_json::from_str(&files[0].1).expect("json");
        assert_eq!(settings["hooks"], json!({}), "{settings}");
        for dropped in [
            "apiKeyHelper",
            "enableAllProjectMcpServers",
            "disableAllHooks",
        ] {
            assert!(settings.get(dropped).is_none(), "{settings}");
        }
        assert!(!files[0].1.contains("probe"), "{}", files[0].1);
        // chant's deny is there (and wins over their allow in Claude Code).
        assert!(
            settings["permissions"]["deny"]
                .to_string()
                .contains("secret.txt"),
            "{settings}"
        );
        assert_eq!(files[1].1, "{}\n");
    }

    #[test]
    fn in_a_pod_chants_rules_go_in_as_settings_json_without_a_hook() {
        let c = claude("agent: {permissions: {deny_edit: [secret.txt]}}");
        let t = vec!["claude".to_string(), "-p".into(), "{prompt}".into()];
        let argv = c.command(&t, SandboxLevel::Kubernetes);
        let at = argv
            .iter()
            .position(|a| a == "--settings")
            .expect("--settings");
        let settings: serde_json::Value = serde_json::from_str(&argv[at + 1]).expect("json");
        let deny = settings["permissions"]["deny"].to_string();
        assert!(deny.contains("secret.txt"), "{settings}");
        assert!(settings.get("hooks").is_none(), "{settings}");
        for level in [SandboxLevel::Docker, SandboxLevel::Vm] {
            assert!(!c.command(&t, level).contains(&"--settings".to_string()));
        }
        // A --settings the user wrote is theirs.
        let mine = vec!["claude".to_string(), "--settings=/etc/mine.json".into()];
        let argv = c.command(&mine, SandboxLevel::Kubernetes);
        assert_eq!(
            argv.iter().filter(|a| a.starts_with("--settings")).count(),
            1
        );
    }

    #[test]
    fn the_private_home_trusts_the_clone() {
        let files = claude("agent: {}").home_files(Path::new("/c/x"), SandboxLevel::Permissions);
        let state: serde_json::Value = serde_json::from_str(&files[0].1).expect("json");
        assert_eq!(files[0].0, ".claude.json");
        assert_eq!(state["projects"]["/c/x"]["hasTrustDialogAccepted"], true);
    }
}
