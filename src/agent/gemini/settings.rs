//! The run's `.gemini/settings.json` in the clone (Gemini CLI's workspace settings, which
//! override the user's): chant's settings merged over what the project committed there.
//!
//! Merge: the committed object is the base; keys that would start programs outside chant's
//! gate or switch the gate off are dropped (`hooks`, `hooksConfig`, `mcpServers`,
//! `tools.discoveryCommand`, `tools.callCommand`, `context.includeDirectories`); chant's
//! keys are then set over it, leaf by leaf, so chant's wins wherever both set one. Tool
//! rules the project wrote (`tools.allowed`, `tools.exclude`) are kept: Gemini CLI ranks
//! them below chant's policy file, whose denies win (see [`super::policy`]).

use serde_json::{Map, Value};

use crate::agent::AgentError;

/// Top-level keys dropped from a committed file.
const DROPPED: &[&str] = &["hooks", "hooksConfig", "mcpServers"];
/// (section, key) pairs dropped from a committed file.
const DROPPED_NESTED: &[(&str, &str)] = &[
    ("tools", "discoveryCommand"),
    ("tools", "callCommand"),
    ("context", "includeDirectories"),
];

/// `ours` set over the committed file `rel` (its text), see the module docs.
pub fn merge(ours: &Value, committed: Option<(&str, &str)>) -> Result<Value, AgentError> {
    let mut base = match committed {
        None => Map::new(),
        Some((rel, text)) => {
            let bad = |reason: String| AgentError::ProjectSettings {
                path: rel.to_string(),
                reason,
            };
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(object)) => object,
                Ok(_) => return Err(bad("is not a JSON object".into())),
                Err(e) => return Err(bad(format!("is not valid JSON ({e})"))),
            }
        }
    };
    for key in DROPPED {
        base.remove(*key);
    }
    for (section, key) in DROPPED_NESTED {
        if let Some(Value::Object(s)) = base.get_mut(*section) {
            s.remove(*key);
        }
    }
    let mut merged = Value::Object(base);
    set_over(&mut merged, ours);
    Ok(merged)
}

/// Sets every leaf of `ours` in `into` (objects merged, anything else replaced).
fn set_over(into: &mut Value, ours: &Value) {
    match (into, ours) {
        (Value::Object(into), Value::Object(ours)) => {
            for (key, value) in ours {
                match into.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        set_over(existing, value)
                    }
                    _ => {
                        into.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (into, ours) => *into = ours.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chants_keys_win_and_what_could_bypass_the_gate_is_dropped() {
        let ours = json!({"security": {"auth": {"selectedType": "gemini-api-key"}},
                          "hooksConfig": {"enabled": true},
                          "hooks": {"BeforeTool": [{"matcher": "run_shell_command"}]}});
        let committed = json!({
            "security": {"auth": {"selectedType": "oauth-personal"}, "folderTrust": {"enabled": true}},
            "hooks": {"BeforeTool": [{"matcher": ".*", "hooks": [{"type": "command", "command": "true"}]}]},
            "hooksConfig": {"enabled": false, "disabled": ["chant-gate"]},
            "mcpServers": {"x": {"command": "sh"}},
            "tools": {"allowed": ["run_shell_command"], "exclude": ["web_fetch"],
                      "discoveryCommand": "sh -c x", "callCommand": "sh -c y"},
            "context": {"includeDirectories": ["/"], "fileName": "AGENTS.md"},
            "model": {"name": "gemini-2.5-flash"}
        })
        .to_string();
        let merged = merge(&ours, Some((".gemini/settings.json", &committed))).expect("merges");
        assert_eq!(merged["security"]["auth"]["selectedType"], "gemini-api-key");
        assert_eq!(merged["security"]["folderTrust"]["enabled"], true);
        assert_eq!(merged["hooks"], ours["hooks"]);
        assert_eq!(merged["hooksConfig"], json!({"enabled": true}));
        assert!(merged.get("mcpServers").is_none());
        assert!(merged["tools"].get("discoveryCommand").is_none());
        assert!(merged["tools"].get("callCommand").is_none());
        assert_eq!(merged["tools"]["exclude"], json!(["web_fetch"]));
        assert!(merged["context"].get("includeDirectories").is_none());
        assert_eq!(merged["context"]["fileName"], "AGENTS.md");
        assert_eq!(merged["model"]["name"], "gemini-2.5-flash");
    }

    #[test]
    fn a_committed_file_that_is_not_an_object_names_itself() {
        for text in ["{nope", "[1]"] {
            let err = merge(&json!({}), Some((".gemini/settings.json", text))).expect_err("bad");
            assert!(err.to_string().contains(".gemini/settings.json"), "{err}");
        }
    }
}
