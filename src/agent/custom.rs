//! `agent.kind: custom`: the argv runs exactly as configured; chant adds nothing to its
//! environment and reads nothing from its output. At level `permissions` it still gets
//! Claude Code's settings file compiled from chant's rules (what chant has always written,
//! for a `claude` wrapped in a script), with the gate hook as before.

use std::path::Path;

use super::{Agent, Observer, Silent};
use crate::config::{AgentKind, Config, SandboxLevel};

pub struct Custom {
    settings: String,
}

impl Custom {
    pub fn new(config: &Config) -> Custom {
        let mut settings =
            crate::exec::native::ClaudePermissions::from_config(&config.agent).to_settings_json();
        settings["hooks"] = serde_json::json!({
            "PreToolUse": [{
                "matcher": "Bash",
                "hooks": [{"type": "command", "command": "\"$CHANT_EXEC\" --claude-hook"}]
            }]
        });
        let text = serde_json::to_string_pretty(&settings).unwrap_or_default() + "\n";
        Custom { settings: text }
    }
}

impl Agent for Custom {
    fn kind(&self) -> AgentKind {
        AgentKind::Custom
    }

    fn command(&self, template: &[String], _level: SandboxLevel) -> Vec<String> {
        template.to_vec()
    }

    fn workspace_files(
        &self,
        _clone: &Path,
        level: SandboxLevel,
    ) -> Result<Vec<(String, String)>, super::AgentError> {
        Ok(match level {
            SandboxLevel::Permissions => {
                vec![(".claude/settings.json".to_string(), self.settings.clone())]
            }
            _ => Vec::new(),
        })
    }

    fn home_files(&self, _workspace: &Path, _level: SandboxLevel) -> Vec<(String, String)> {
        Vec::new()
    }

    fn credential_names(&self) -> &'static [&'static str] {
        &[]
    }

    fn api_hosts(&self, _secrets: &crate::secrets::Secrets) -> Vec<String> {
        Vec::new()
    }

    fn fixed_env(&self, _level: SandboxLevel) -> Vec<(String, String)> {
        Vec::new()
    }

    fn commands_rule(&self, level: SandboxLevel) -> &'static str {
        match level {
            // `$CHANT_EXEC` is a stub there (no gate channel yet).
            SandboxLevel::Kubernetes => {
                "- Run shell commands directly; the sandbox contains them (there is no command gate at this level).\n"
            }
            _ => "- Run shell commands through \"$CHANT_EXEC\" (e.g. \"$CHANT_EXEC\" cargo test) so they are checked and recorded.\n",
        }
    }

    fn observer(&self) -> Box<dyn Observer> {
        Box::new(Silent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_points_at_the_gate_only_where_it_is_reachable() {
        let config = Config::from_yaml(
            "(test)",
            &serde_yaml_ng::from_str("agent: {}").expect("test yaml"),
        )
        .expect("valid config");
        let custom = Custom::new(&config);
        for level in [
            SandboxLevel::None,
            SandboxLevel::Permissions,
            SandboxLevel::Docker,
            SandboxLevel::Vm,
        ] {
            assert!(
                custom.commands_rule(level).contains("$CHANT_EXEC"),
                "{level}"
            );
        }
        assert!(!custom
            .commands_rule(SandboxLevel::Kubernetes)
            .contains("$CHANT_EXEC"));
    }
}
