//! The run's `OPENCODE_CONFIG_CONTENT`: chant's rules as opencode `permission` rules, merged
//! with a committed `opencode.json`, and the gate plugin. Text only; never writes.
//!
//! opencode evaluates its permission rules in order and the **last** matching one decides
//! (its defaults come first, the config's after), so chant writes its rules after the
//! project's, its deny rules last. Patterns are opencode's wildcards (`*` matches any
//! characters, `/` included); edit patterns are paths relative to the clone.
//!
//! | chant | opencode |
//! |---|---|
//! | `permissions.allow_edit` | `edit`: `"*": "deny"`, each pattern `"allow"` |
//! | `permissions.deny_edit`, `file_access.denied_paths`, `agent.denied_paths` | `edit`: each pattern `"deny"` (denied paths also `read`) |
//! | `agent.commands.allowed`, `permissions.allow_bash` | `bash`: `"*": "deny"`, each pattern `"allow"` |
//! | `agent.commands.denied`, `permissions.deny_bash` | `bash`: each pattern `"deny"` |
//! | level `permissions` | `external_directory: "deny"` (no edit or read outside the clone) |
//! | `agent.network.enabled: false` and `permissions.allow_network: false` | `webfetch`, `websearch`: `"deny"` |
//!
//! The committed file (regular file, at most 1 MiB, JSON) keeps its keys except `plugin`
//! (code opencode would run), `mcp`, `formatter` and `lsp` (programs it would start by
//! itself, outside any permission rule), the `permission` of each `agent`/`mode` (which would replace
//! the rules below for that agent), and a rule of its own for a pattern chant also sets.

use std::path::Path;

use serde_json::{Map, Value};

use crate::agent::AgentError;
use crate::config::{AgentConfig, PathList, SandboxLevel};

/// The project config chant merges (opencode's own loading of it is switched off).
pub const PROJECT_CONFIG: &str = "opencode.json";

/// Keys of a committed config naming programs opencode runs by itself; dropped.
const COMMAND_KEYS: &[&str] = &["mcp", "formatter", "lsp"];

const MAX_SIZE: u64 = 1 << 20;

/// The gate plugin: every `bash` call goes through `$CHANT_EXEC --claude-hook` first; the
/// call is refused (the hook throws) unless the gate exits 0 — also when it cannot run.
pub const GATE_PLUGIN_JS: &str = r#"// Written by git-chant for one run: every bash command goes through chant's command gate.
import { spawnSync } from "node:child_process";

export const ChantGate = async () => ({
  "tool.execute.before": async (input, output) => {
    if (input.tool !== "bash") return;
    const command = String((output.args && output.args.command) || "");
    const gate = process.env.CHANT_EXEC;
    if (!gate) throw new Error("chant: command refused: the command gate is not available (CHANT_EXEC is unset)");
    const run = spawnSync(gate, ["--claude-hook"], {
      input: JSON.stringify({ hook_event_name: "PreToolUse", tool_name: "Bash", tool_input: { command } }),
      encoding: "utf8",
    });
    if (run.status !== 0) {
      const why = ((run.stderr || "") + (run.error ? String(run.error) : "")).trim();
      throw new Error(why || "chant: command refused: the command gate failed");
    }
  },
});
"#;

/// A lock file listing the package opencode installs into its config dir at start
/// (`@opencode-ai/plugin`), so that it does not try to.
pub const PLUGIN_LOCK: &str =
    "{\"packages\": {\"\": {\"dependencies\": {\"@opencode-ai/plugin\": \"*\"}}}}\n";

/// Chant's rules, as opencode permission rules (ordered: default, allow, deny).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub edit_allow: Vec<String>,
    pub edit_deny: Vec<String>,
    pub read_deny: Vec<String>,
    pub bash_allow: Vec<String>,
    pub bash_deny: Vec<String>,
    pub network: bool,
}

impl Rules {
    pub fn from_config(agent: &AgentConfig) -> Rules {
        let mut out = Rules {
            network: agent.network.enabled || agent.permissions.allow_network,
            ..Rules::default()
        };
        out.edit_allow = path_patterns(&agent.permissions.allow_edit, true);
        let denied: Vec<String> = [&agent.file_access.denied_paths, &agent.denied_paths]
            .into_iter()
            .flat_map(|l| path_patterns(l, false))
            .collect();
        out.edit_deny = path_patterns(&agent.permissions.deny_edit, false);
        for p in &denied {
            push(&mut out.edit_deny, p.clone());
            push(&mut out.read_deny, p.clone());
        }
        for p in agent
            .commands
            .allowed
            .iter()
            .chain(&agent.permissions.allow_bash)
        {
            push(&mut out.bash_allow, command_pattern(p));
        }
        for p in agent
            .commands
            .denied
            .iter()
            .chain(&agent.permissions.deny_bash)
        {
            push(&mut out.bash_deny, command_pattern(p));
        }
        out
    }

    /// The permissions chant sets at `level`, each with its rules in order.
    fn blocks(&self, level: SandboxLevel) -> Vec<Block> {
        let block =
            |name: &'static str, default: Option<&str>, allow: &[String], deny: &[String]| Block {
                name,
                default: default.map(str::to_string),
                rules: allow
                    .iter()
                    .map(|p| (p.clone(), "allow".to_string()))
                    .chain(deny.iter().map(|p| (p.clone(), "deny".to_string())))
                    .collect(),
            };
        let edit_default = (!self.edit_allow.is_empty()).then_some("deny");
        let bash_default = (!self.bash_allow.is_empty()).then_some("deny");
        let mut blocks = vec![
            block("edit", edit_default, &self.edit_allow, &self.edit_deny),
            block("bash", bash_default, &self.bash_allow, &self.bash_deny),
            block("read", None, &[], &self.read_deny),
        ];
        if level == SandboxLevel::Permissions {
            blocks.push(block("external_directory", Some("deny"), &[], &[]));
        }
        if !self.network {
            blocks.push(block("webfetch", Some("deny"), &[], &[]));
            blocks.push(block("websearch", Some("deny"), &[], &[]));
        }
        blocks.retain(|b| b.default.is_some() || !b.rules.is_empty());
        blocks
    }
}

/// One permission's rules as chant sets them: an optional `"*"` action, then (pattern,
/// action) pairs, allows before denies.
#[derive(Debug, Clone)]
struct Block {
    name: &'static str,
    default: Option<String>,
    rules: Vec<(String, String)>,
}

fn push(list: &mut Vec<String>, item: String) {
    if !item.is_empty() && !list.contains(&item) {
        list.push(item);
    }
}

/// A command pattern in opencode's form (whitespace normalised; opencode's `*` and `?` are
/// chant's, and `x *` also matches `x` alone in both).
fn command_pattern(pattern: &str) -> String {
    pattern.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// chant's path patterns as opencode wildcards, relative to the clone: allow lists anchored
/// at the root, deny patterns without an inner `/` at any depth; a directory also covers
/// what is inside it.
fn path_patterns(list: &PathList, anchored: bool) -> Vec<String> {
    let mut out = Vec::new();
    for raw in list.0.patterns() {
        let trimmed = raw.trim();
        let is_dir = trimmed.ends_with('/');
        let body = trimmed.trim_start_matches("./").trim_end_matches('/');
        let body = body.strip_prefix('/').unwrap_or(body).replace("**", "*");
        if body.is_empty() {
            continue;
        }
        let mut bases = vec![body.clone()];
        if !(anchored || trimmed.starts_with('/') || body.contains('/') || body.starts_with('*')) {
            bases.push(format!("*/{body}"));
        }
        let last = body.rsplit('/').next().unwrap_or(&body).to_string();
        let looks_like_dir = is_dir || !(last.contains('.') || last.contains('*'));
        for base in bases {
            if looks_like_dir && !base.ends_with('*') {
                push(&mut out, format!("{base}/*"));
            }
            push(&mut out, base);
        }
    }
    out
}

/// The committed `opencode.json` of the clone as a JSON object, when it is a regular file;
/// an unreadable, oversized or invalid one is an error naming it.
pub fn read_committed(clone: &Path) -> Result<Option<Map<String, Value>>, AgentError> {
    let path = clone.join(PROJECT_CONFIG);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return Ok(None);
    };
    if !meta.file_type().is_file() {
        return Ok(None);
    }
    let bad = |reason: String| AgentError::ProjectSettings {
        path: PROJECT_CONFIG.to_string(),
        reason,
    };
    if meta.len() > MAX_SIZE {
        return Err(bad(format!("is larger than {MAX_SIZE} bytes")));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(bad("is not a JSON object".into())),
        Err(e) => Err(bad(format!("is not valid JSON ({e})"))),
    }
}

/// The config text for one run at `level`: `committed` (cleaned, see the module docs) with
/// chant's permission rules after its own, and the gate plugin at `gate_plugin` as its only
/// plugin.
pub fn config_content(
    rules: &Rules,
    committed: Option<&Map<String, Value>>,
    level: SandboxLevel,
    gate_plugin: Option<&Path>,
) -> Result<String, AgentError> {
    let mut rest = committed.cloned().unwrap_or_default();
    rest.remove("plugin");
    if let Some(path) = gate_plugin {
        rest.insert(
            "plugin".into(),
            Value::Array(vec![format!("file://{}", path.display()).into()]),
        );
    }
    rest.remove("$schema");
    // Programs opencode would start outside any permission rule: local MCP servers (at
    // start), formatters (after every edit), language servers.
    for key in COMMAND_KEYS {
        rest.remove(*key);
    }
    for key in ["agent", "mode"] {
        if let Some(Value::Object(agents)) = rest.get_mut(key) {
            for agent in agents.values_mut() {
                if let Value::Object(a) = agent {
                    a.remove("permission");
                }
            }
        }
    }
    let theirs = match rest.remove("permission") {
        Some(Value::Object(p)) => p,
        Some(Value::String(action)) => {
            // A single action for every permission.
            let mut p = Map::new();
            p.insert("*".into(), Value::String(action));
            p
        }
        Some(_) => {
            return Err(AgentError::ProjectSettings {
                path: PROJECT_CONFIG.into(),
                reason: "has a `permission` that is neither an object nor an action".into(),
            })
        }
        None => Map::new(),
    };
    let ours = rules.blocks(level);
    let mut permission: Vec<(String, String)> = Vec::new();
    let mut names: Vec<&str> = theirs.keys().map(String::as_str).collect();
    for b in &ours {
        if !names.contains(&b.name) {
            names.push(b.name);
        }
    }
    for name in names {
        let our = ours.iter().find(|b| b.name == name);
        let mut entries: Vec<(String, String)> = Vec::new();
        let their_rules: Vec<(String, Value)> = match theirs.get(name) {
            Some(Value::String(action)) => vec![("*".into(), Value::String(action.clone()))],
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Some(other) => vec![("*".into(), other.clone())],
            None => Vec::new(),
        };
        let chant_sets = |pattern: &str| {
            our.is_some_and(|b| {
                b.rules.iter().any(|(p, _)| p == pattern)
                    || (pattern == "*" && b.default.as_deref() == Some("deny"))
            })
        };
        for (pattern, action) in &their_rules {
            if !chant_sets(pattern) {
                entries.push((json(pattern), action.to_string()));
            }
        }
        if let Some(b) = our {
            if let Some(default) = &b.default {
                let theirs_has_default = their_rules.iter().any(|(p, _)| p == "*");
                if default == "deny" || !theirs_has_default {
                    entries.push((json("*"), json(default)));
                }
            }
            for (pattern, action) in &b.rules {
                entries.push((json(pattern), json(action)));
            }
        }
        // Some permissions (`webfetch`, `websearch`) take only an action, not patterns.
        let value = match entries.as_slice() {
            [(pattern, action)] if pattern == "\"*\"" => action.clone(),
            _ => object(&entries),
        };
        permission.push((json(name), value));
    }
    let permission = object(&permission);
    let rest = Value::Object(rest).to_string();
    Ok(match rest.strip_suffix('}') {
        Some(open) if open.len() > 1 => format!("{open},\"permission\":{permission}}}"),
        _ => format!("{{\"permission\":{permission}}}"),
    })
}

fn json(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A JSON object from already-encoded keys and values, in this order.
fn object(entries: &[(String, String)]) -> String {
    let body: Vec<String> = entries.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn rules(yaml: &str) -> Rules {
        let config =
            Config::from_yaml("(test)", &serde_yaml_ng::from_str(yaml).expect("test yaml"))
                .expect("valid config");
        Rules::from_config(&config.agent)
    }

    #[test]
    fn chants_rules_become_ordered_permission_rules() {
        let r = rules(
            "agent: {permissions: {deny_edit: [secret.txt, build/]}, commands: {denied: [\"touch *\"]}}",
        );
        let text = config_content(&r, None, SandboxLevel::Permissions, None).expect("config");
        assert_eq!(
            text,
            r#"{"permission":{"edit":{"secret.txt":"deny","*/secret.txt":"deny","build/*":"deny","build":"deny","*/build/*":"deny","*/build":"deny"},"bash":{"touch *":"deny"},"external_directory":"deny","webfetch":"deny","websearch":"deny"}}"#
        );
        let allow = rules("agent: {permissions: {allow_edit: [src/]}, commands: {allowed: [\"cargo test\"]}, network: {enabled: true}}");
        let text = config_content(&allow, None, SandboxLevel::None, None).expect("config");
        assert_eq!(
            text,
            r#"{"permission":{"edit":{"*":"deny","src/*":"allow","src":"allow"},"bash":{"*":"deny","cargo test":"allow"}}}"#
        );
    }

    #[test]
    fn a_committed_config_is_merged_and_chants_denies_come_last() {
        let r = rules(
            "agent: {permissions: {deny_edit: [secret.txt]}, commands: {denied: [\"touch *\"]}}",
        );
        let committed: Map<String, Value> = serde_json::from_str(
            r#"{"model": "openai/x", "plugin": ["file:///evil.js"],
                "mcp": {"p": {"type": "local", "command": ["touch", "probe"]}},
                "formatter": {"p": {"command": ["touch", "probe"], "extensions": [".txt"]}},
                "lsp": {"p": {"command": ["touch", "probe"], "extensions": [".txt"]}},
                "permission": {"bash": {"touch *": "allow", "*": "ask"}, "edit": "allow", "webfetch": "allow"},
                "agent": {"build": {"permission": {"bash": "allow"}, "model": "y"}}}"#,
        )
        .expect("json");
        let text =
            config_content(&r, Some(&committed), SandboxLevel::Permissions, None).expect("config");
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["model"], "openai/x");
        assert!(v.get("plugin").is_none(), "{text}");
        for key in COMMAND_KEYS {
            assert!(v.get(*key).is_none(), "{key}: {text}");
        }
        assert!(!text.contains("probe"), "{text}");
        assert!(v["agent"]["build"].get("permission").is_none(), "{text}");
        assert_eq!(v["agent"]["build"]["model"], "y");
        // Their `touch *` allow is gone, chant's deny is last; their `*: ask` stays.
        assert!(
            text.contains(r#""bash":{"*":"ask","touch *":"deny"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""edit":{"*":"allow","secret.txt":"deny","*/secret.txt":"deny"}"#),
            "{text}"
        );
        assert!(text.contains(r#""webfetch":"deny""#), "{text}");
    }

    #[test]
    fn a_committed_config_that_is_not_json_names_itself() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::write(tmp.path().join(PROJECT_CONFIG), "{ // jsonc\n}").expect("write");
        let err = read_committed(tmp.path()).expect_err("refused");
        assert!(err.to_string().contains("opencode.json"), "{err}");
        let other = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink("/etc/passwd", other.path().join(PROJECT_CONFIG)).expect("link");
        assert!(read_committed(other.path())
            .expect("a link is not read")
            .is_none());
    }
}
