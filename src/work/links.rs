//! Where the symlinks of the tree being landed resolve.
//!
//! A link is judged by where it leads once checked out, not by how its target reads: the
//! target is resolved component by component against the final tree (the start tree with
//! the change applied, every symlink in it followed the way the kernel follows them), so
//! `x -> a/a/../..` with `a -> .` is seen to leave the tree. A component that is not a link
//! is taken for a directory: a path that does not exist yet may be created later, and must
//! not then turn a link into a way out. Pure: works on a map of link paths to targets and
//! never touches a file system or repository.

use std::collections::HashMap;

use crate::pattern::lookalike::{self, Special};

/// How many links one resolution may follow (Linux stops at 40).
pub const MAX_FOLLOWS: usize = 40;

/// How many path components one resolution may visit, so `a -> a/a/a/a` cannot make the
/// check itself expensive.
const MAX_STEPS: usize = 4096;

/// Why a link cannot land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkProblem {
    /// The target is absolute (on Unix or Windows), here or in a link it goes through.
    Absolute { via: String, target: String },
    /// Resolving it climbs above the repository root.
    Leaves,
    /// Resolving it enters `.git` (or a name git treats as `.git`).
    EntersGit { component: String },
    /// Following it never ends (a loop) or follows more links than [`MAX_FOLLOWS`].
    Loops,
}

impl std::fmt::Display for LinkProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkProblem::Absolute { via, target } => {
                write!(f, "leads through {via} to the absolute path '{target}'")
            }
            LinkProblem::Leaves => f.write_str("resolves outside the repository"),
            LinkProblem::EntersGit { component } => {
                write!(f, "resolves into git metadata ('{component}')")
            }
            LinkProblem::Loops => write!(
                f,
                "never resolves (a loop, or more than {MAX_FOLLOWS} links in a row)"
            ),
        }
    }
}

/// True when `target` is absolute on some platform: `/x`, `\\x`, `C:x`.
fn is_absolute(target: &str) -> bool {
    let b = target.as_bytes();
    b.first().is_some_and(|c| *c == b'/' || *c == b'\\')
        || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
}

/// The components of a target, with `\` read as a separator too (as Windows reads it).
fn components(target: &str) -> impl DoubleEndedIterator<Item = &str> {
    target.split(['/', '\\'])
}

/// Appends the component `part` to the path `here`.
fn enter(here: &mut String, starts: &mut Vec<usize>, part: &str) {
    if !here.is_empty() {
        here.push('/');
    }
    starts.push(here.len());
    here.push_str(part);
}

/// Resolves the link at `path` in a tree whose links are `links` (path → target);
/// `Ok(())` when it stays inside the tree and out of `.git`.
pub fn resolve(path: &str, links: &HashMap<String, String>) -> Result<(), LinkProblem> {
    let Some(target) = links.get(path) else {
        return Ok(());
    };
    if is_absolute(target) {
        return Err(LinkProblem::Absolute {
            via: path.to_string(),
            target: target.clone(),
        });
    }
    // Where resolution stands, as a path, and where each of its components starts.
    let mut here = String::with_capacity(path.len() + target.len());
    let mut starts: Vec<usize> = Vec::new();
    if let Some((dir, _)) = path.rsplit_once('/') {
        for part in dir.split('/') {
            enter(&mut here, &mut starts, part);
        }
    }
    // Components still to walk, the next one last.
    let mut todo: Vec<&str> = components(target).rev().collect();
    let mut follows = 0;
    let mut steps = 0;
    while let Some(part) = todo.pop() {
        steps += 1;
        if steps > MAX_STEPS {
            return Err(LinkProblem::Loops);
        }
        match part {
            "" | "." => continue,
            ".." => {
                match starts.pop() {
                    Some(start) => here.truncate(start.saturating_sub(1)),
                    None => return Err(LinkProblem::Leaves),
                }
                continue;
            }
            _ => {}
        }
        if lookalike::is_special(part, Special::Git) {
            return Err(LinkProblem::EntersGit {
                component: part.to_string(),
            });
        }
        enter(&mut here, &mut starts, part);
        if let Some(next) = links.get(here.as_str()) {
            follows += 1;
            if follows > MAX_FOLLOWS {
                return Err(LinkProblem::Loops);
            }
            if is_absolute(next) {
                return Err(LinkProblem::Absolute {
                    via: here,
                    target: next.clone(),
                });
            }
            // A link resolves relative to its own directory.
            if let Some(start) = starts.pop() {
                here.truncate(start.saturating_sub(1));
            }
            todo.extend(components(next).rev());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(links: &[(&str, &str)]) -> HashMap<String, String> {
        links
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    fn check(links: &[(&str, &str)], path: &str) -> Result<(), LinkProblem> {
        resolve(path, &tree(links))
    }

    #[test]
    fn links_that_stay_inside_are_fine() {
        assert_eq!(check(&[("a/link", "../b")], "a/link"), Ok(()));
        assert_eq!(check(&[("a/b/link", "../c/../../x")], "a/b/link"), Ok(()));
        assert_eq!(check(&[("a", "."), ("x", "a/a/b")], "x"), Ok(()));
        assert_eq!(check(&[("x", "./.github/ci.yml")], "x"), Ok(()));
        // `missing` is taken for a directory: `missing/..` is the root, still inside.
        assert_eq!(check(&[("x", "missing/../y")], "x"), Ok(()));
    }

    #[test]
    fn chains_through_other_links_are_followed() {
        assert_eq!(
            check(&[("a", "."), ("x", "a/a/../..")], "x"),
            Err(LinkProblem::Leaves)
        );
        assert_eq!(
            check(&[("d/up", ".."), ("x", "d/up/..")], "x"),
            Err(LinkProblem::Leaves)
        );
        assert_eq!(
            check(&[("hop", "sub/out"), ("sub/out", "../../etc")], "hop"),
            Err(LinkProblem::Leaves)
        );
        assert!(matches!(
            check(&[("hop", "abs"), ("abs", "/etc/passwd")], "hop"),
            Err(LinkProblem::Absolute { .. })
        ));
        assert!(matches!(
            check(&[("g", "."), ("x", "g/.GIT/config")], "x"),
            Err(LinkProblem::EntersGit { .. })
        ));
        assert!(matches!(
            check(&[("m", ".git."), ("x", "m/hooks")], "x"),
            Err(LinkProblem::EntersGit { .. })
        ));
    }

    #[test]
    fn a_directory_replaced_by_a_link_moves_everything_below_it() {
        // `lib` was a directory; now it is a link to `..`, and `use` goes through it.
        assert_eq!(
            check(&[("lib", ".."), ("use", "lib/x")], "use"),
            Err(LinkProblem::Leaves)
        );
    }

    #[test]
    fn absolute_targets_on_any_platform_are_refused() {
        for target in [
            "/etc/passwd",
            "\\\\server\\share",
            "C:\\Windows",
            "c:x",
            "\\x",
        ] {
            assert!(
                matches!(
                    check(&[("x", target)], "x"),
                    Err(LinkProblem::Absolute { .. })
                ),
                "{target}"
            );
        }
        assert_eq!(
            check(&[("a/x", "..\\..\\etc")], "a/x"),
            Err(LinkProblem::Leaves)
        );
    }

    #[test]
    fn loops_and_explosions_end() {
        assert_eq!(
            check(&[("a", "b"), ("b", "a")], "a"),
            Err(LinkProblem::Loops)
        );
        assert_eq!(check(&[("a", "a")], "a"), Err(LinkProblem::Loops));
        assert_eq!(
            check(&[("a", "a/a/a/a/a/a/a/a")], "a"),
            Err(LinkProblem::Loops)
        );
    }
}
