//! The run's `.claude/settings.json`: chant's rules merged with what the project committed.
//!
//! Read from the fresh clone before the agent starts ([`crate::agent::committed`]).

use std::path::Path;

use serde_json::{Map, Value};

use crate::agent::AgentError;

/// Keys of a committed settings file that could switch chant's gate or mode off, or start
/// programs outside any permission rule (a credential helper, project MCP servers approved
/// in advance, plugins with hooks of their own); dropped.
const DROPPED: &[&str] = &[
    "hooks",
    "disableAllHooks",
    "apiKeyHelper",
    "awsAuthRefresh",
    "awsCredentialExport",
    "otelHeadersHelper",
    "statusLine",
    "enableAllProjectMcpServers",
    "enabledMcpjsonServers",
    "enabledPlugins",
    "extraKnownMarketplaces",
];
/// Keys under `permissions` that chant decides for the run; dropped.
const DROPPED_PERMISSIONS: &[&str] = &["defaultMode", "additionalDirectories"];

/// The text of `rel` in `clone` when it is a regular file (see [`crate::agent::committed`]).
pub(super) fn read_committed(clone: &Path, rel: &str) -> Result<Option<String>, AgentError> {
    crate::agent::committed::read(clone, rel)
}

/// `ours` (chant's rules and hook) merged into the committed files, in order: their allow,
/// deny and ask rules are kept, chant's allow and deny rules added (Claude Code evaluates
/// deny first, so chant's denies win over any allow), their hooks, `disableAllHooks`,
/// `permissions.defaultMode` and `permissions.additionalDirectories` dropped, and chant's
/// hooks set.
pub fn merge_settings(ours: &Value, committed: &[(&str, String)]) -> Result<Value, AgentError> {
    let mut merged = Map::new();
    for (rel, text) in committed {
        let value: Value = serde_json::from_str(text).map_err(|e| AgentError::ProjectSettings {
            path: rel.to_string(),
            reason: format!("is not valid JSON ({e})"),
        })?;
        let Value::Object(object) = value else {
            return Err(AgentError::ProjectSettings {
                path: rel.to_string(),
                reason: "is not a JSON object".into(),
            });
        };
        for (key, value) in object {
            if DROPPED.contains(&key.as_str()) {
                continue;
            }
            if key == "permissions" {
                let into = merged
                    .entry("permissions")
                    .or_insert_with(|| Value::Object(Map::new()));
                merge_permissions(into, &value);
            } else {
                merged.insert(key, value);
            }
        }
    }
    let permissions = merged
        .entry("permissions")
        .or_insert_with(|| Value::Object(Map::new()));
    merge_permissions(permissions, &ours["permissions"]);
    if let Value::Object(p) = permissions {
        for key in DROPPED_PERMISSIONS {
            p.remove(*key);
        }
    }
    merged.insert("hooks".into(), ours["hooks"].clone());
    Ok(Value::Object(merged))
}

/// chant's hooks, all on `Bash`: `gate` before each call (PreToolUse), `result` after it
/// (PostToolUse when it exited 0, PostToolUseFailure otherwise).
pub(super) fn hooks(gate: &str, result: &str) -> Value {
    let on_bash = |command: &str| {
        serde_json::json!([{
            "matcher": "Bash",
            "hooks": [{"type": "command", "command": command}]
        }])
    };
    serde_json::json!({
        "PreToolUse": on_bash(gate),
        "PostToolUse": on_bash(result),
        "PostToolUseFailure": on_bash(result),
    })
}

/// Adds the rule lists of `from` to `into` (union, order kept); other keys of `from` win.
fn merge_permissions(into: &mut Value, from: &Value) {
    let (Value::Object(into), Value::Object(from)) = (into, from) else {
        return;
    };
    for (key, value) in from {
        match (key.as_str(), value) {
            ("allow" | "deny" | "ask", Value::Array(rules)) => {
                let list = into
                    .entry(key.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = list {
                    for rule in rules {
                        if !list.contains(rule) {
                            list.push(rule.clone());
                        }
                    }
                }
            }
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ours() -> Value {
        json!({"permissions": {"allow": ["Edit(/src/**)"], "deny": ["Bash(curl:*)"]},
               "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": []}]}})
    }

    #[test]
    fn committed_rules_are_kept_and_chants_denies_added() {
        let committed = r#"{"permissions": {"allow": ["Bash(curl:*)", "Bash(npm test:*)"],
            "deny": ["Read(/.env)"], "defaultMode": "bypassPermissions"},
            "model": "sonnet", "hooks": {"PreToolUse": []}, "disableAllHooks": true}"#;
        let merged = merge_settings(&ours(), &[(".claude/settings.json", committed.into())])
            .expect("merges");
        assert_eq!(
            merged["permissions"]["allow"],
            json!(["Bash(curl:*)", "Bash(npm test:*)", "Edit(/src/**)"])
        );
        // Claude Code evaluates deny before allow: curl stays refused.
        assert_eq!(
            merged["permissions"]["deny"],
            json!(["Read(/.env)", "Bash(curl:*)"])
        );
        assert!(merged["permissions"].get("defaultMode").is_none());
        assert!(merged.get("disableAllHooks").is_none());
        assert_eq!(merged["hooks"], ours()["hooks"]);
        assert_eq!(merged["model"], "sonnet");
    }

    #[test]
    fn a_committed_file_that_is_not_json_names_itself() {
        let err = merge_settings(&ours(), &[(".claude/settings.json", "{nope".into())])
            .expect_err("refused");
        assert!(err.to_string().contains(".claude/settings.json"), "{err}");
    }
}
