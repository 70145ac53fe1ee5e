//! The policy check of step 8: every change the agent left behind is judged before
//! anything lands. Pure: takes the changes and the configuration, returns findings.

use super::collect::{Change, ChangeKind};
use super::scan::Oddity;
use crate::config::Config;

/// One reason a change cannot land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule, e.g. `file_access.denied_paths`, `symlink`, `protected`.
    pub rule: String,
    pub path: String,
    pub detail: String,
}

/// Something worth reporting that does not block landing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub path: String,
    pub detail: String,
}

/// Paths chant itself owns in a repository: never changed by an agent.
fn protected(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    if lower == ".chant" || lower.starts_with(".chant/") {
        return Some("chant's own files (.chant/) are never changed by an agent");
    }
    if lower.split('/').any(|part| part == ".git") {
        return Some("git metadata (.git) is never changed by an agent");
    }
    if matches!(lower.as_str(), ".gitmodules" | ".gitattributes")
        || lower.ends_with("/.gitattributes")
    {
        return Some(
            "git attributes and submodules can make git run programs; never changed by an agent",
        );
    }
    None
}

/// Judges `changes` and the workspace `oddities` against `config`.
pub fn check(
    changes: &[Change],
    oddities: &[Oddity],
    config: &Config,
) -> (Vec<Violation>, Vec<Notice>) {
    let agent = &config.agent;
    let fa = &agent.file_access;
    let mut violations: Vec<Violation> = oddities
        .iter()
        .map(|o| Violation {
            rule: o.rule.to_string(),
            path: o.path.clone(),
            detail: o.detail.clone(),
        })
        .collect();
    let mut notices = Vec::new();
    let allow_lists = [
        ("agent.file_access.allowed_paths", &fa.allowed_paths.0),
        ("agent.allowed_paths", &agent.allowed_paths.0),
        (
            "agent.permissions.allow_edit",
            &agent.permissions.allow_edit.0,
        ),
    ];
    let deny_lists = [
        ("agent.file_access.denied_paths", &fa.denied_paths.0),
        ("agent.denied_paths", &agent.denied_paths.0),
        (
            "agent.permissions.deny_edit",
            &agent.permissions.deny_edit.0,
        ),
    ];
    for change in changes {
        let path = change.path.as_str();
        let mut deny = |rule: &str, detail: String| {
            violations.push(Violation {
                rule: rule.to_string(),
                path: path.to_string(),
                detail,
            })
        };
        if let Some(why) = protected(path) {
            deny("protected", why.to_string());
        }
        for (rule, list) in &deny_lists {
            if let Some(pattern) = list.first_match(path) {
                deny(rule, format!("matches '{pattern}'"));
            }
        }
        for (rule, list) in &allow_lists {
            if !list.is_empty() && !list.is_match(path) {
                deny(rule, format!("is outside {}", list.patterns().join(", ")));
            }
        }
        if let Some(target) = &change.link_target {
            if let Some(why) = symlink_problem(path, target) {
                deny("symlink", why);
            }
        }
        if !change.sensitive.is_empty() {
            let detail = format!(
                "content matches sensitive pattern(s): {}",
                change.sensitive.join(", ")
            );
            if fa.fail_on_sensitive {
                deny("agent.file_access.sensitive_patterns", detail);
            } else {
                notices.push(Notice {
                    path: path.to_string(),
                    detail,
                });
            }
        }
        if change.kind != ChangeKind::Deleted {
            let new_mode = change.new.map(|(_, m)| m);
            if new_mode == Some(0o100755) && change.old_mode != Some(0o100755) {
                notices.push(Notice {
                    path: path.to_string(),
                    detail: "is now executable".into(),
                });
            }
        }
    }
    (violations, notices)
}

/// Why a symlink at `path` pointing to `target` cannot land, if it cannot.
fn symlink_problem(path: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return Some(format!("points to the absolute path '{target}'"));
    }
    let mut depth: Vec<&str> = path.split('/').collect();
    depth.pop(); // the link's own name
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return Some(format!("points outside the repository ('{target}')"));
                }
            }
            p if p.eq_ignore_ascii_case(".git") => {
                return Some(format!("points into git metadata ('{target}')"));
            }
            p => depth.push(p),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks() {
        assert!(symlink_problem("a/link", "../b").is_none());
        assert!(symlink_problem("a/link", "../../etc/passwd").is_some());
        assert!(symlink_problem("link", "/etc/passwd").is_some());
        assert!(symlink_problem("link", ".git/config").is_some());
        assert!(symlink_problem("a/b/link", "../c/../../x").is_none());
    }

    #[test]
    fn protected_paths() {
        assert!(protected(".chant/config.md").is_some());
        assert!(protected("src/.git/hooks/pre-commit").is_some());
        assert!(protected(".gitattributes").is_some());
        assert!(protected("src/main.rs").is_none());
        assert!(protected(".github/workflows/ci.yml").is_none());
    }
}
