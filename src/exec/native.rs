//! Sandbox level `permissions`: `agent.*` rules written as Claude Code's own permission
//! settings (`.claude/settings.json` in the clone, never committed), so the agent itself
//! refuses what the config forbids.
//!
//! Claude Code's rule syntax (its "Configure permissions" documentation): `Tool` or
//! `Tool(specifier)`; deny is evaluated before allow. `Bash(npm test:*)` matches `npm test`
//! and `npm test …` at a word boundary, `Bash(git *)` is a wildcard over the command text;
//! Claude Code splits `&&`/`;` chains itself. `Read(…)`/`Edit(…)` take gitignore-style
//! paths: `/path` from the project root (here the clone), `**/name` at any depth; `Edit`
//! covers every built-in tool that writes files. `WebFetch` / `WebSearch` name the web tools.
//!
//! What is mapped:
//! | config | Claude Code rule |
//! |---|---|
//! | `permissions.allow_bash`, `commands.allowed` | allow `Bash(p:*)` (exact/prefix) or `Bash(glob)` |
//! | `permissions.deny_bash`, `commands.denied` | deny `Bash(p:*)` or `Bash(glob)` |
//! | `permissions.allow_edit` | allow `Edit(/p)` |
//! | `permissions.deny_edit` | deny `Edit(…)` |
//! | `file_access.denied_paths`, `agent.denied_paths` | deny `Read(…)` and `Edit(…)` |
//! | `permissions.allow_network: false` and `network.enabled: false` | deny `WebFetch`, `WebSearch` |
//! | `network.enabled: true`: `allowed_hosts` / `denied_hosts` | allow / deny `WebFetch(domain:h)` |
//!
//! What it cannot express (and is enforced elsewhere, or not at all at this level):
//! - chant's wider deny matching (reordered flags, wrappers, `/usr/bin/curl`, redirections
//!   written without spaces): Claude Code matches the command text it sees; the gate
//!   (`git chant exec`) and the post-run policy check are the backstops.
//! - an allow list as a hard limit: Claude Code *asks* for commands no rule allows; with
//!   no one to answer, a non-interactive run refuses them.
//! - `?` in command patterns (Claude Code has only `*`): in deny rules it becomes `*`
//!   (wider); allow rules using it are skipped and listed in [`ClaudePermissions::unmapped`].
//! - `network.allowed_hosts`: host rules go to the egress proxy at levels docker/vm; here
//!   the web tools are either denied or left to ask.
//! - `file_access.allowed_paths`: enforced by what the clone checks out.

use serde_json::{json, Value};

use crate::config::{AgentConfig, PathList};

/// Claude Code permission rules generated from the agent config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaudePermissions {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// Config patterns that have no Claude Code equivalent, for a warning.
    pub unmapped: Vec<String>,
}

impl ClaudePermissions {
    /// Maps `agent` (see the module docs for the table).
    pub fn from_config(agent: &AgentConfig) -> ClaudePermissions {
        let mut out = ClaudePermissions::default();
        for p in agent
            .permissions
            .allow_bash
            .iter()
            .chain(&agent.commands.allowed)
        {
            match bash_rule(p, false) {
                Some(rule) => push(&mut out.allow, rule),
                None => out.unmapped.push(p.clone()),
            }
        }
        for p in agent
            .permissions
            .deny_bash
            .iter()
            .chain(&agent.commands.denied)
        {
            if let Some(rule) = bash_rule(p, true) {
                push(&mut out.deny, rule);
            }
        }
        for rule in path_rules("Edit", &agent.permissions.allow_edit, true) {
            push(&mut out.allow, rule);
        }
        for rule in path_rules("Edit", &agent.permissions.deny_edit, false) {
            push(&mut out.deny, rule);
        }
        for list in [&agent.file_access.denied_paths, &agent.denied_paths] {
            for tool in ["Read", "Edit"] {
                for rule in path_rules(tool, list, false) {
                    push(&mut out.deny, rule);
                }
            }
        }
        if !agent.permissions.allow_network && !agent.network.enabled {
            push(&mut out.deny, "WebFetch".into());
            push(&mut out.deny, "WebSearch".into());
        }
        // The allowlist as fetch rules (a port in a pattern has no equivalent there); a
        // bare `*` in denied_hosts is the default already.
        if agent.network.enabled {
            for p in agent.network.allowed_hosts.0.patterns() {
                push(
                    &mut out.allow,
                    format!("WebFetch(domain:{})", domain(p.as_str())),
                );
            }
            for p in agent.network.denied_hosts.0.patterns() {
                if !p.is_any() {
                    push(
                        &mut out.deny,
                        format!("WebFetch(domain:{})", domain(p.as_str())),
                    );
                }
            }
        }
        out
    }

    /// The `.claude/settings.json` document: `{"permissions": {"allow": […], "deny": […]}}`.
    pub fn to_settings_json(&self) -> Value {
        json!({"permissions": {"allow": self.allow, "deny": self.deny}})
    }
}

/// A host pattern without its port.
fn domain(pattern: &str) -> &str {
    match pattern.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => pattern,
    }
}

fn push(list: &mut Vec<String>, rule: String) {
    if !list.contains(&rule) {
        list.push(rule);
    }
}

/// One command pattern as a `Bash(…)` rule. None when it cannot be expressed.
pub fn bash_rule(pattern: &str, deny: bool) -> Option<String> {
    let norm = pattern.split_whitespace().collect::<Vec<_>>().join(" ");
    if norm.is_empty() {
        return None;
    }
    let norm = if norm.contains('?') {
        if !deny {
            return None;
        }
        norm.replace('?', "*")
    } else {
        norm
    };
    // `git *` is chant's "git, with or without arguments": Claude Code's prefix form.
    let prefix = norm.strip_suffix(" *").unwrap_or(&norm);
    if !prefix.contains('*') {
        return Some(format!("Bash({prefix}:*)"));
    }
    Some(format!("Bash({norm})"))
}

/// Path patterns as gitignore-style rules for `tool`. Allow lists are anchored at the clone
/// root (as chant reads them); deny patterns without an inner `/` match at any depth.
pub fn path_rules(tool: &str, list: &PathList, anchored: bool) -> Vec<String> {
    let mut out = Vec::new();
    for raw in list.0.patterns() {
        let trimmed = raw.trim();
        let is_dir = trimmed.ends_with('/');
        let body = trimmed.trim_start_matches("./").trim_end_matches('/');
        let body = body.strip_prefix('/').unwrap_or(body);
        if body.is_empty() {
            continue;
        }
        let base = if anchored || trimmed.starts_with('/') || body.contains('/') {
            format!("/{body}")
        } else if body.starts_with("**") {
            body.to_string()
        } else {
            format!("**/{body}")
        };
        out.push(format!("{tool}({base})"));
        // chant's patterns also cover a directory's contents.
        let last = body.rsplit('/').next().unwrap_or(body);
        let looks_like_dir = is_dir || !(last.contains('.') || last.contains('*'));
        if looks_like_dir && !base.ends_with("**") {
            out.push(format!("{tool}({base}/**)"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_rules() {
        assert_eq!(
            bash_rule("npm test", false).as_deref(),
            Some("Bash(npm test:*)")
        );
        assert_eq!(bash_rule("git *", false).as_deref(), Some("Bash(git:*)"));
        assert_eq!(bash_rule("curl", true).as_deref(), Some("Bash(curl:*)"));
        assert_eq!(
            bash_rule("rm  -rf", true).as_deref(),
            Some("Bash(rm -rf:*)")
        );
        assert_eq!(
            bash_rule("* > /dev/*", true).as_deref(),
            Some("Bash(* > /dev/*)")
        );
        assert_eq!(bash_rule("ls ?", false), None);
        assert_eq!(bash_rule("ls ?", true).as_deref(), Some("Bash(ls:*)"));
    }
}
