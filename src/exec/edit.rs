//! The gate's decision on an edit an agent is about to make: the paths it would write,
//! judged against `agent.permissions.allow_edit`/`deny_edit`, `file_access.allowed_paths`/
//! `denied_paths` and `agent.allowed_paths`/`denied_paths`, as chant's check after the run
//! judges them. For agents whose own rules cannot name paths (Codex CLI's `apply_patch`),
//! so a denied edit is refused before it happens instead of failing the whole run after.
//!
//! Owns the decision only: never writes, prints or records. Paths are the agent's (absolute,
//! or relative to its working directory): one outside the clone is refused.

use std::path::{Component, Path};

use crate::config::AgentConfig;

/// Why an edit of `path` (as the agent named it) is refused, as (rule, detail); None when
/// chant's rules allow it. `clone` is the clone as the agent sees it.
pub fn refusal(agent: &AgentConfig, clone: &Path, path: &str) -> Option<(String, String)> {
    let Some(rel) = relative(clone, path) else {
        return Some(("outside".into(), format!("'{path}' is outside the clone")));
    };
    let fa = &agent.file_access;
    let deny = [
        ("agent.file_access.denied_paths", &fa.denied_paths.0),
        ("agent.denied_paths", &agent.denied_paths.0),
        (
            "agent.permissions.deny_edit",
            &agent.permissions.deny_edit.0,
        ),
    ];
    for (rule, list) in deny {
        if let Some(pattern) = list.first_match(&rel) {
            return Some((rule.into(), format!("'{rel}' matches '{pattern}'")));
        }
    }
    let allow = [
        ("agent.file_access.allowed_paths", &fa.allowed_paths.0),
        ("agent.allowed_paths", &agent.allowed_paths.0),
        (
            "agent.permissions.allow_edit",
            &agent.permissions.allow_edit.0,
        ),
    ];
    for (rule, list) in allow {
        if !list.is_empty() && !list.is_match(&rel) {
            return Some((
                rule.into(),
                format!("'{rel}' is outside {}", list.patterns().join(", ")),
            ));
        }
    }
    None
}

/// `path` relative to `clone`, lexically (`..` resolved without touching the disk); None
/// when it leaves the clone.
fn relative(clone: &Path, path: &str) -> Option<String> {
    let full = if Path::new(path).is_absolute() {
        Path::new(path).to_path_buf()
    } else {
        clone.join(path)
    };
    let rest = full.strip_prefix(clone).ok()?;
    let mut parts: Vec<String> = Vec::new();
    for c in rest.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn agent(yaml: &str) -> AgentConfig {
        Config::from_yaml("(test)", &serde_yaml_ng::from_str(yaml).expect("yaml"))
            .expect("config")
            .agent
    }

    #[test]
    fn denied_paths_outside_paths_and_escapes_are_refused() {
        let a = agent("agent: {permissions: {deny_edit: [secret.txt, config/]}}");
        let clone = Path::new("/c/clone");
        assert_eq!(refusal(&a, clone, "hello.txt"), None);
        assert_eq!(refusal(&a, clone, "/c/clone/src/a.rs"), None);
        for hostile in [
            "secret.txt",
            "/c/clone/secret.txt",
            "deep/dir/secret.txt",
            "./x/../secret.txt",
            "config/app.toml",
            "SECRET.TXT",
        ] {
            let refused = refusal(&a, clone, hostile);
            assert!(
                refused
                    .as_ref()
                    .is_some_and(|(rule, _)| rule == "agent.permissions.deny_edit"),
                "{hostile}: {refused:?}"
            );
        }
        for outside in [
            "/etc/passwd",
            "../other/x",
            "/c/clone/../clone2/x",
            "/c/clone",
        ] {
            assert_eq!(
                refusal(&a, clone, outside).map(|(r, _)| r),
                Some("outside".to_string()),
                "{outside}"
            );
        }
        let limited = agent("agent: {permissions: {allow_edit: [src/]}}");
        assert_eq!(refusal(&limited, clone, "src/a.rs"), None);
        assert!(refusal(&limited, clone, "README.md").is_some());
    }
}
