//! The run's `$CODEX_HOME/config.toml` and `rules/chant.rules`, compiled from chant's rules
//! and the variables the agent gets. Text only: `run_setup` hands them to `work`, which
//! writes them into the run's private HOME.
//!
//! What is mapped:
//! | chant | Codex |
//! |---|---|
//! | `agent.commands.denied`, `permissions.deny_bash` | `prefix_rule(pattern=[…], decision="forbidden")` where the pattern is a plain word prefix (`touch *`, `git push`); the gate hook covers every pattern |
//! | every shell command | `[[hooks.PreToolUse]]` on `Bash` → `"$CHANT_EXEC" --claude-hook \|\| exit 2` (`none`/`permissions`, `docker` through the run's gate socket, `vm` through qemu's forward) |
//! | `permissions.allow_edit`/`deny_edit`, `file_access` and `agent` path lists | `[[hooks.PreToolUse]]` on `apply_patch` → `"$CHANT_EXEC" --edit-hook \|\| exit 2`: each path the patch names, judged as chant's check after the run judges it (`none`/`permissions`: the hook reads the clone at its host path) |
//! | `agent.network.enabled` / `permissions.allow_network` | `sandbox_workspace_write.network_access` |
//! | `OPENAI_BASE_URL` (+ `OPENAI_API_KEY`) | a `model_providers.chant` entry with that `base_url` and `env_key`, chosen as `model_provider` |
//!
//! Not expressible in Codex's own config: path rules for edits (its `.rules` cover commands,
//! not `apply_patch`: the edit hook does), allow lists (the gate enforces
//! `agent.commands.allowed`).

use crate::config::{AgentConfig, SandboxLevel};

use super::super::endpoint;

/// The gate hook: anything but the gate's own allow (exit 0) becomes exit 2, the code that
/// makes Codex refuse the call (a hook that cannot run must not let the command through).
pub const GATE_HOOK: &str = "\"$CHANT_EXEC\" --claude-hook || exit 2";

/// The edit hook: the paths of each `apply_patch` against chant's edit rules, failing closed
/// the same way.
pub const EDIT_HOOK: &str = "\"$CHANT_EXEC\" --edit-hook || exit 2";

/// The name of the provider chant defines for `OPENAI_BASE_URL`.
pub const PROVIDER: &str = "chant";

/// Chant's command rules, as Codex can hold them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Word prefixes Codex refuses (`["git", "push"]`).
    pub forbidden_prefixes: Vec<Vec<String>>,
    pub network: bool,
}

impl Rules {
    pub fn from_config(agent: &AgentConfig) -> Rules {
        let mut forbidden_prefixes = Vec::new();
        for pattern in agent
            .commands
            .denied
            .iter()
            .chain(&agent.permissions.deny_bash)
        {
            if let Some(prefix) = word_prefix(pattern) {
                if !forbidden_prefixes.contains(&prefix) {
                    forbidden_prefixes.push(prefix);
                }
            }
        }
        Rules {
            forbidden_prefixes,
            network: agent.network.enabled || agent.permissions.allow_network,
        }
    }

    /// `rules/chant.rules` (Starlark), empty when there is nothing to forbid.
    pub fn rules_file(&self) -> String {
        let mut out = String::new();
        for prefix in &self.forbidden_prefixes {
            let words: Vec<String> = prefix.iter().map(|w| quote(w)).collect();
            out.push_str(&format!(
                "prefix_rule(pattern = [{}], decision = \"forbidden\", justification = {})\n",
                words.join(", "),
                quote(&format!(
                    "refused by chant (agent.commands): {}",
                    prefix.join(" ")
                ))
            ));
        }
        out
    }
}

/// A deny pattern as the words it starts with (`touch *` → `touch`), when it is one: no
/// wildcard before the end, no control characters.
fn word_prefix(pattern: &str) -> Option<Vec<String>> {
    if pattern.chars().any(char::is_control) {
        return None;
    }
    let mut words: Vec<&str> = pattern.split_whitespace().collect();
    if words.last() == Some(&"*") {
        words.pop();
    }
    if words.is_empty() || words.iter().any(|w| w.contains(['*', '?', '[', ']'])) {
        return None;
    }
    Some(words.into_iter().map(str::to_string).collect())
}

/// The model API the agent is pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `OPENAI_BASE_URL`, when set.
    pub base_url: Option<String>,
    /// The variable holding the key Codex sends.
    pub key_var: Option<&'static str>,
}

impl Endpoint {
    pub fn from_vars(exposed: &[(String, String)]) -> Endpoint {
        let key_var = ["OPENAI_API_KEY", "CODEX_API_KEY"]
            .into_iter()
            .find(|name| endpoint::var(exposed, name).is_some());
        Endpoint {
            base_url: endpoint::var(exposed, "OPENAI_BASE_URL").map(str::to_string),
            key_var,
        }
    }
}

/// A TOML basic string (JSON's escapes are TOML's).
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Which of chant's hooks a run's config holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hooks {
    /// The gate hook on every shell command (where `$CHANT_EXEC` reaches chant's gate).
    pub gate: bool,
    /// The edit hook on every `apply_patch` (where the clone's paths are the host's).
    pub edits: bool,
}

/// The whole `config.toml` for one run at `level`, with `hooks`.
pub fn config_toml(
    rules: &Rules,
    endpoint: &Endpoint,
    level: SandboxLevel,
    hooks: Hooks,
) -> String {
    let mut top = vec![
        "# Written by git-chant for one run; never the user's own config.".to_string(),
        "check_for_update_on_startup = false".to_string(),
    ];
    let mut tables = vec![
        "[analytics]\nenabled = false".to_string(),
        // Plugins look up github.com and chatgpt.com at start.
        "[features]\nplugins = false".to_string(),
    ];
    if level == SandboxLevel::Permissions {
        tables.push(format!(
            "[sandbox_workspace_write]\nnetwork_access = {}",
            rules.network
        ));
    }
    // Codex ignores OPENAI_BASE_URL, and its built-in provider does not read
    // OPENAI_API_KEY in `exec`: a provider of chant's own carries both. Without either
    // variable, Codex's own defaults (`CODEX_API_KEY`) apply.
    if endpoint.base_url.is_some() || endpoint.key_var == Some("OPENAI_API_KEY") {
        let url = endpoint
            .base_url
            .clone()
            .unwrap_or_else(|| format!("https://{}/v1", super::DEFAULT_HOST));
        top.push(format!("model_provider = {}", quote(PROVIDER)));
        let mut provider = format!(
            "[model_providers.{PROVIDER}]\nname = {}\nbase_url = {}\nwire_api = \"responses\"",
            quote("OpenAI (through git-chant's run config)"),
            quote(&url)
        );
        // Without a key, Codex says which variable is missing instead of sending no key.
        let key = endpoint.key_var.unwrap_or("OPENAI_API_KEY");
        provider.push_str(&format!("\nenv_key = {}", quote(key)));
        tables.push(provider);
    }
    let wanted = [
        (hooks.gate, "^Bash$", GATE_HOOK),
        (hooks.edits, "^apply_patch$", EDIT_HOOK),
    ];
    for (_, matcher, hook) in wanted.into_iter().filter(|(on, _, _)| *on) {
        tables.push(format!(
            "[[hooks.PreToolUse]]\nmatcher = {}\n\n[[hooks.PreToolUse.hooks]]\ntype = \"command\"\ncommand = {}",
            quote(matcher),
            quote(hook)
        ));
    }
    let mut out = top.join("\n");
    out.push_str("\n\n");
    out.push_str(&tables.join("\n\n"));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_patterns_that_are_word_prefixes_become_prefix_rules() {
        assert_eq!(word_prefix("touch *"), Some(vec!["touch".to_string()]));
        assert_eq!(
            word_prefix("git  push"),
            Some(vec!["git".to_string(), "push".to_string()])
        );
        assert_eq!(word_prefix("* > /dev/*"), None);
        assert_eq!(word_prefix("c?rl"), None);
        assert_eq!(word_prefix("rm\u{7}x"), None);
        let rules = Rules {
            forbidden_prefixes: vec![vec!["rm".into(), "-rf".into()]],
            network: false,
        };
        assert_eq!(
            rules.rules_file(),
            "prefix_rule(pattern = [\"rm\", \"-rf\"], decision = \"forbidden\", justification = \"refused by chant (agent.commands): rm -rf\")\n"
        );
    }

    #[test]
    fn openai_base_url_becomes_a_provider_and_the_gate_a_hook() {
        let endpoint = Endpoint::from_vars(&[
            ("OPENAI_API_KEY".into(), "sk-x".into()),
            (
                "OPENAI_BASE_URL".into(),
                "http://127.0.0.1:9/v1\"\n[x]".into(),
            ),
        ]);
        let text = config_toml(
            &Rules::default(),
            &endpoint,
            SandboxLevel::Permissions,
            Hooks {
                gate: true,
                edits: true,
            },
        );
        assert!(text.contains("model_provider = \"chant\""), "{text}");
        // The value stays one string: no table can be smuggled in through it.
        assert!(
            text.contains("base_url = \"http://127.0.0.1:9/v1\\\"\\n[x]\""),
            "{text}"
        );
        assert!(text.contains("env_key = \"OPENAI_API_KEY\""), "{text}");
        assert!(!text.contains("sk-x"), "the key itself is never written");
        assert!(text.contains("command = \"\\\"$CHANT_EXEC\\\" --claude-hook || exit 2\""));
        assert!(text.contains("network_access = false"));
        let none = config_toml(
            &Rules::default(),
            &Endpoint::from_vars(&[]),
            SandboxLevel::Vm,
            Hooks {
                gate: false,
                edits: false,
            },
        );
        assert!(!none.contains("model_provider"), "{none}");
        assert!(!none.contains("hooks"), "{none}");
        let docker = config_toml(
            &Rules::default(),
            &endpoint,
            SandboxLevel::Docker,
            Hooks {
                gate: true,
                edits: false,
            },
        );
        assert!(docker.contains("--claude-hook"), "{docker}");
        assert!(!docker.contains("--edit-hook"), "{docker}");
    }
}
