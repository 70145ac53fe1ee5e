//! The policy check of step 8: every change the agent left behind is judged before
//! anything lands. Pure: takes the collected changes and the configuration, returns
//! findings. Names are judged as every file system that may check the tree out reads them
//! (`pattern::lookalike`), symlinks by where they resolve in the tree being landed
//! (`links`), content by the exposed secrets' values in it (`secrets::SecretFinder`).

use super::collect::{ChangeKind, Collected};
use super::links;
use crate::config::Config;
use crate::pattern::lookalike::{self, Special};
use crate::secrets::SecretFinder;

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

/// Paths chant itself owns in a repository, or git gives meaning to: never changed by an
/// agent, whatever spelling a file system would read as them.
fn protected(path: &str) -> Option<String> {
    for (depth, component) in path.split('/').enumerate() {
        let why = match lookalike::special(component) {
            Some(Special::Chant) if depth == 0 => {
                "chant's own files (.chant/) are never changed by an agent"
            }
            Some(Special::Git) => "git metadata (.git) is never changed by an agent",
            Some(Special::GitModules | Special::GitAttributes) => {
                "git attributes and submodules can make git run programs; never changed by an agent"
            }
            _ => continue,
        };
        let seen_as = lookalike::special(component).map_or("", Special::name);
        return Some(if component == seen_as {
            why.to_string()
        } else {
            format!("'{component}' is {seen_as} to git on macOS or Windows: {why}")
        });
    }
    None
}

/// Why a path cannot land whatever the rules say: a component that is an NTFS short name
/// can be a second name of another file on Windows (`GIT~1`, `CREDEN~1`).
fn unportable(path: &str) -> Option<String> {
    path.split('/')
        .find(|c| lookalike::looks_like_short_name(c))
        .map(|c| {
            format!(
                "'{c}' has the shape of an NTFS short name, which on Windows can name another file"
            )
        })
}

/// Judges what was collected against `config`. Every path in a finding is shown with the
/// components that hold a secret masked (`secrets`).
pub fn check(
    collected: &Collected,
    config: &Config,
    secrets: &SecretFinder,
) -> (Vec<Violation>, Vec<Notice>) {
    let agent = &config.agent;
    let fa = &agent.file_access;
    let mut violations: Vec<Violation> = collected
        .oddities
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
    let tree = &collected.links;
    for change in &collected.changes {
        let path = change.path.as_str();
        let mut deny = |rule: &str, detail: String| {
            violations.push(Violation {
                rule: rule.to_string(),
                path: path.to_string(),
                detail,
            })
        };
        if let Some(why) = protected(path) {
            deny("protected", why);
        }
        if let Some(why) = unportable(path) {
            deny("file_name", why);
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
        if let Some(withheld) = replaces_withheld(path, &tree.withheld) {
            deny(
                "withheld",
                format!("would replace '{withheld}', which was withheld from the agent"),
            );
        }
        if change.link_target.is_some() {
            let name = path.rsplit('/').next().unwrap_or(path);
            if let Some(s @ (Special::GitIgnore | Special::Mailmap)) = lookalike::special(name) {
                deny(
                    "symlink",
                    format!(
                        "{} is never a symlink (git refuses to read it through one)",
                        s.name()
                    ),
                );
            }
        }
        for hit in &change.secrets {
            deny(
                "secret_in_change",
                format!(
                    "holds the value of the secret {} ({})",
                    hit.name,
                    hit.form.as_str()
                ),
            );
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
    violations.extend(symlink_violations(collected));
    for v in &mut violations {
        v.path = secrets.mask_path(&v.path);
    }
    for n in &mut notices {
        n.path = secrets.mask_path(&n.path);
    }
    (violations, notices)
}

/// The withheld path that a change at `path` would replace: the same path, one below it
/// (a directory replaced by a file or link), or one above it (a file or gitlink that
/// would have to become a directory).
fn replaces_withheld<'a>(
    path: &str,
    withheld: &'a std::collections::BTreeSet<String>,
) -> Option<&'a str> {
    if let Some(w) = withheld.get(path) {
        return Some(w);
    }
    let below = format!("{path}/");
    if let Some(w) = withheld.range(below.clone()..).next() {
        if w.starts_with(&below) {
            return Some(w);
        }
    }
    let mut end = path.len();
    while let Some(i) = path[..end].rfind('/') {
        if let Some(w) = withheld.get(&path[..i]) {
            return Some(w);
        }
        end = i;
    }
    None
}

/// Every symlink of the tree being landed that resolves outside it or into `.git`, unless
/// it was already so before the agent ran and the agent did not touch it.
fn symlink_violations(collected: &Collected) -> Vec<Violation> {
    let tree = &collected.links;
    let changed: std::collections::HashSet<&str> =
        collected.changes.iter().map(|c| c.path.as_str()).collect();
    let mut paths: Vec<&String> = tree.after.keys().collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let Err(problem) = links::resolve(path, &tree.after) else {
            continue;
        };
        if !changed.contains(path.as_str()) && links::resolve(path, &tree.before).is_err() {
            continue; // as it was before the run
        }
        let detail = match (&problem, tree.after.get(path)) {
            (links::LinkProblem::Absolute { via, .. }, _) if via == path => problem.to_string(),
            (_, Some(target)) => format!("points to '{target}', which {problem}"),
            (_, None) => problem.to_string(),
        };
        out.push(Violation {
            rule: "symlink".to_string(),
            path: path.clone(),
            detail,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_paths() {
        for path in [
            ".chant/config.md",
            ".CHANT/config.md",
            ".chant./specs/x.md",
            "chant~1/config.md",
            ".cha\u{200c}nt/config.md",
            "src/.git/hooks/pre-commit",
            "src/.GIT/config",
            "src/git~1/config",
            "a/.git./config",
            "a/.git::$INDEX_ALLOCATION/config",
            "a/.g\u{200d}it/config",
            ".gitattributes",
            "sub/.gitattributes",
            "gitatt~1",
            ".gitmodules",
            "vendor/.gitmodules",
            ".GITMODULES",
            "gi7eba~1",
        ] {
            assert!(protected(path).is_some(), "{path}");
        }
        for path in [
            "src/main.rs",
            ".github/workflows/ci.yml",
            "docs/.chant/notes.md",
            ".gitignore",
            "src/.gitkeep",
        ] {
            assert!(protected(path).is_none(), "{path}");
        }
        assert!(protected(".GIT/config")
            .is_some_and(|why| why.contains("is .git to git on macOS or Windows")));
    }

    #[test]
    fn short_names_are_unportable() {
        assert!(unportable("CREDEN~1/aws.json").is_some());
        assert!(unportable("src/main.rs").is_none());
    }

    #[test]
    fn withheld_paths_are_never_replaced() {
        let withheld: std::collections::BTreeSet<String> = ["secrets/a.key", "vendor/lib"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            replaces_withheld("secrets", &withheld),
            Some("secrets/a.key")
        );
        assert_eq!(
            replaces_withheld("secrets/a.key", &withheld),
            Some("secrets/a.key")
        );
        assert_eq!(
            replaces_withheld("vendor/lib/x.c", &withheld),
            Some("vendor/lib")
        );
        assert_eq!(replaces_withheld("secrets-old", &withheld), None);
        assert_eq!(replaces_withheld("secrets/b.txt", &withheld), None);
        assert_eq!(replaces_withheld("vendor/libx", &withheld), None);
    }
}
