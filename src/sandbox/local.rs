//! Levels `none` and `permissions`: the agent runs as the user, in the clone, with the
//! filtered environment. `permissions` also writes the agent's native permission settings
//! into the clone before the run (never committed: `work` ignores that path when it
//! collects the result). Neither level contains the agent; the policy check after the
//! run is what keeps a misbehaving agent's work from landing.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{process, Job, Outcome, OutputSink, Sandbox, SandboxError};
use crate::config::{Config, SandboxLevel};

/// A sandbox that runs the agent on this machine as the current user.
pub struct Local {
    level: SandboxLevel,
    native: Option<NativeSettings>,
}

/// Files generated into the workspace for the agent's own permission system.
pub struct NativeSettings {
    pub files: Vec<(String, String)>,
}

impl Local {
    pub fn none() -> Self {
        Local {
            level: SandboxLevel::None,
            native: None,
        }
    }

    pub fn permissions(config: &Config) -> Self {
        Local {
            level: SandboxLevel::Permissions,
            native: Some(NativeSettings {
                files: native_settings(config),
            }),
        }
    }
}

impl Sandbox for Local {
    fn level(&self) -> SandboxLevel {
        self.level
    }

    fn preflight(&self, argv: &[String]) -> Result<(), SandboxError> {
        let program = argv.first().cloned().unwrap_or_default();
        let path = std::env::var("PATH").unwrap_or_default();
        match process::find_program(&program, &path) {
            Some(_) => Ok(()),
            None => Err(SandboxError::ProgramNotFound { program }),
        }
    }

    fn prepare(&self, workspace: &Path) -> Result<Vec<String>, SandboxError> {
        let Some(native) = &self.native else {
            return Ok(Vec::new());
        };
        let mut written = Vec::new();
        for (rel, text) in &native.files {
            // The base tree may hold symlinks here (`.claude -> /home/you`): never followed.
            crate::confined::write_in_tree(workspace, rel, text.as_bytes(), 0o644)
                .map_err(|e| SandboxError::Workspace(e.to_string()))?;
            written.push(rel.clone());
        }
        Ok(written)
    }

    fn run(
        &self,
        job: &Job,
        sink: &mut dyn OutputSink,
        stop: &Arc<AtomicBool>,
    ) -> Result<Outcome, SandboxError> {
        match &job.network {
            // The proxy variables are all that steers the program here: honour system.
            Some(egress) => {
                let mut job = job.clone();
                job.env.extend(crate::net::proxy_env(&egress.url));
                process::run(&job, sink, stop)
            }
            None => process::run(job, sink, stop),
        }
    }
}

/// The agent's native permission files for level `permissions`: (path in the clone, text).
///
/// Claude Code's `.claude/settings.json`: allow/deny rules from `agent.permissions`, and a
/// PreToolUse hook that sends every shell command through the command gate first.
fn native_settings(config: &Config) -> Vec<(String, String)> {
    let mut settings =
        crate::exec::native::ClaudePermissions::from_config(&config.agent).to_settings_json();
    settings["hooks"] = serde_json::json!({
        "PreToolUse": [{
            "matcher": "Bash",
            "hooks": [{"type": "command", "command": "\"$CHANT_EXEC\" --claude-hook"}]
        }]
    });
    let text = serde_json::to_string_pretty(&settings).unwrap_or_default();
    vec![(".claude/settings.json".to_string(), text + "\n")]
}
