//! Turning what the agent left in its workspace into a list of changes against the start
//! tree, with every new blob written to the main repository's object store.
//!
//! Reads the workspace only through `scan` (as data). Files whose stat is exactly what the
//! checkout produced are known unchanged without reading them; everything else is read
//! (bounded) and hashed.

use std::collections::HashSet;

use git2::{Oid, Repository};

use super::clone::Clone;
use super::scan::{self, Found, Limits, Oddity};
use super::WorkError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
    /// The new blob and mode (None when deleted).
    pub new: Option<(Oid, i32)>,
    pub old_mode: Option<i32>,
    /// For symlinks: where the link points.
    pub link_target: Option<String>,
    /// Sensitive words found in the new content.
    pub sensitive: Vec<String>,
}

/// The result of reading the workspace.
#[derive(Debug, Default)]
pub struct Collected {
    pub changes: Vec<Change>,
    pub oddities: Vec<Oddity>,
}

/// Compares the workspace of `clone` with its start.
pub fn collect(
    main: &Repository,
    clone: &Clone,
    ignored: &HashSet<String>,
    max_file_size: u64,
    sensitive_words: &[String],
) -> Result<Collected, WorkError> {
    let (found, mut oddities) =
        scan::scan(&clone.path, Limits::default()).map_err(|e| WorkError::io(&clone.path, e))?;
    let words: Vec<String> = sensitive_words.iter().map(|w| w.to_lowercase()).collect();
    let mut seen: HashSet<&str> = HashSet::with_capacity(found.len());
    let mut changes = Vec::new();
    for item in &found {
        let path = item.path();
        if ignored.contains(path) {
            seen.insert(path);
            continue;
        }
        seen.insert(path);
        let base = clone.files.get(path);
        let (oid, mode, target, content) = match item {
            Found::File {
                executable,
                size,
                stat,
                ..
            } => {
                let mode = if *executable { 0o100755 } else { 0o100644 };
                if base.is_some_and(|b| b.stat == Some(*stat) && b.mode == mode) {
                    continue; // untouched since checkout
                }
                if *size > max_file_size {
                    oddities.push(Oddity {
                        rule: "file_size",
                        path: path.to_string(),
                        detail: format!("{size} bytes is over the limit of {max_file_size} (agent.file_access.max_file_size)"),
                    });
                    continue;
                }
                let bytes = match scan::read_file(&clone.path.join(path), max_file_size) {
                    Ok(b) => b,
                    Err(e) => {
                        oddities.push(Oddity {
                            rule: "unreadable",
                            path: path.to_string(),
                            detail: format!("cannot be read as a regular file: {e}"),
                        });
                        continue;
                    }
                };
                (main.blob(&bytes)?, mode, None, Some(bytes))
            }
            Found::Symlink { target, .. } => (
                main.blob(target.as_bytes())?,
                0o120000,
                Some(target.clone()),
                None,
            ),
        };
        let kind = match base {
            Some(b) if b.oid == oid && b.mode == mode => continue,
            Some(_) => ChangeKind::Modified,
            None => ChangeKind::Added,
        };
        let sensitive = content.map_or_else(Vec::new, |bytes| find_words(&bytes, &words));
        changes.push(Change {
            path: path.to_string(),
            kind,
            new: Some((oid, mode)),
            old_mode: base.map(|b| b.mode),
            link_target: target,
            sensitive,
        });
    }
    let mut deleted: Vec<&String> = clone
        .files
        .keys()
        .filter(|p| !seen.contains(p.as_str()) && !ignored.contains(*p))
        .filter(|p| !oddities.iter().any(|o| &o.path == *p))
        .collect();
    deleted.sort();
    for path in deleted {
        changes.push(Change {
            path: path.clone(),
            kind: ChangeKind::Deleted,
            new: None,
            old_mode: clone.files.get(path).map(|b| b.mode),
            link_target: None,
            sensitive: Vec::new(),
        });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Collected { changes, oddities })
}

/// Which of `words` (lower-case) occur in `bytes`, case-insensitively.
fn find_words(bytes: &[u8], words: &[String]) -> Vec<String> {
    if words.is_empty() {
        return Vec::new();
    }
    let lower = String::from_utf8_lossy(bytes).to_lowercase();
    words
        .iter()
        .filter(|w| lower.contains(w.as_str()))
        .cloned()
        .collect()
}
