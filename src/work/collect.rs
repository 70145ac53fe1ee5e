//! Turning what the agent left in its workspace into a list of changes against the start
//! tree, with every new blob written to the run's [`Quarantine`] (never straight into the
//! main object store: a refused run must leave that as it was).
//!
//! Reads the workspace only through `scan` (as data). Files whose stat is exactly what the
//! checkout produced are known unchanged without reading them; everything else is read
//! (bounded), hashed, and searched for sensitive words and the exposed secrets' values.

use std::collections::{BTreeSet, HashMap, HashSet};

use git2::{Oid, Repository};

use super::clone::Clone;
use super::quarantine::Quarantine;
use super::scan::{self, Found, Limits, Oddity};
use super::WorkError;
use crate::secrets::{Hit, SecretFinder};

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
    /// Exposed secrets found in the new content or in the path.
    pub secrets: Vec<Hit>,
}

/// The symlinks of the start tree and of the tree being landed, and what the agent never
/// saw: enough to judge where every link resolves (see `links`).
#[derive(Debug, Default)]
pub struct LinkTree {
    /// Symlinks of the start tree, path → target.
    pub before: HashMap<String, String>,
    /// Symlinks of the tree being landed, path → target.
    pub after: HashMap<String, String>,
    /// Paths of the start tree withheld from the clone (denied, not allowed, gitlinks):
    /// they land unchanged, so no change may replace them or what holds them.
    pub withheld: BTreeSet<String>,
}

/// The result of reading the workspace.
pub struct Collected {
    pub changes: Vec<Change>,
    pub oddities: Vec<Oddity>,
    pub links: LinkTree,
    /// The new blobs, until the change is accepted.
    pub objects: Quarantine,
}

/// What collecting searches the new content for.
pub struct Searches<'a> {
    pub max_file_size: u64,
    pub sensitive_words: &'a [String],
    pub secrets: &'a SecretFinder,
}

/// Compares the workspace of `clone` with its start commit `start`.
pub fn collect(
    main: &Repository,
    clone: &Clone,
    start: Oid,
    ignored: &HashSet<String>,
    searches: &Searches<'_>,
) -> Result<Collected, WorkError> {
    let max_file_size = searches.max_file_size;
    let run = clone
        .path
        .file_name()
        .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned());
    let objects = Quarantine::create(main, &run)?;
    let store = objects.repo();
    let (found, mut oddities) =
        scan::scan(&clone.path, Limits::default()).map_err(|e| WorkError::io(&clone.path, e))?;
    let words: Vec<String> = searches
        .sensitive_words
        .iter()
        .map(|w| w.to_lowercase())
        .collect();
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
        let (oid, mode, target, sensitive, mut secrets) = match item {
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
                let file = clone.path.join(path);
                match read_blob(store, &file, max_file_size, &words, searches.secrets) {
                    Ok((oid, sensitive, secrets)) => (oid, mode, None, sensitive, secrets),
                    Err(ReadError::Git(e)) => return Err(e.into()),
                    Err(ReadError::Io(e)) => {
                        oddities.push(Oddity {
                            rule: "unreadable",
                            path: path.to_string(),
                            detail: format!("cannot be read as a regular file: {e}"),
                        });
                        continue;
                    }
                }
            }
            Found::Symlink { target, .. } => (
                store.blob(target.as_bytes())?,
                0o120000,
                Some(target.clone()),
                Vec::new(),
                searches.secrets.find(target.as_bytes()),
            ),
        };
        let kind = match base {
            Some(b) if b.oid == oid && b.mode == mode => continue,
            Some(_) => ChangeKind::Modified,
            None => ChangeKind::Added,
        };
        secrets.extend(searches.secrets.find(path.as_bytes()));
        secrets.sort();
        secrets.dedup_by(|later, earlier| later.name == earlier.name);
        changes.push(Change {
            path: path.to_string(),
            kind,
            new: Some((oid, mode)),
            old_mode: base.map(|b| b.mode),
            link_target: target,
            sensitive,
            secrets,
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
            secrets: Vec::new(),
        });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let links = link_tree(main, start, clone, &changes)?;
    Ok(Collected {
        changes,
        oddities,
        links,
        objects,
    })
}

/// The symlinks before and after `changes`, and the withheld paths, from the start tree.
fn link_tree(
    main: &Repository,
    start: Oid,
    clone: &Clone,
    changes: &[Change],
) -> Result<LinkTree, WorkError> {
    let mut links = LinkTree::default();
    if clone.withheld.is_empty() {
        // Nothing withheld: the clone's record of the start tree is all of it, and the
        // walk (100,000 entries in a large repository) is not needed.
        for (path, file) in &clone.files {
            if file.mode == 0o120000 {
                let blob = main.find_blob(file.oid)?;
                let target = String::from_utf8_lossy(blob.content()).into_owned();
                links.before.insert(path.clone(), target);
            }
        }
        links.after = after(&links.before, changes);
        return Ok(links);
    }
    let tree = main.find_commit(start)?.tree()?;
    let mut failed = None;
    let walked = tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(git2::ObjectType::Tree) {
            return git2::TreeWalkResult::Ok;
        }
        let path = format!("{dir}{}", String::from_utf8_lossy(entry.name_bytes()));
        if !clone.files.contains_key(&path) {
            links.withheld.insert(path.clone());
        }
        if entry.filemode() == 0o120000 {
            match main.find_blob(entry.id()) {
                Ok(blob) => {
                    let target = String::from_utf8_lossy(blob.content()).into_owned();
                    links.before.insert(path, target);
                }
                Err(e) => {
                    failed = Some(e);
                    return git2::TreeWalkResult::Abort;
                }
            }
        }
        git2::TreeWalkResult::Ok
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    walked?;
    links.after = after(&links.before, changes);
    Ok(links)
}

/// The links of the start tree `before` with `changes` applied.
fn after(before: &HashMap<String, String>, changes: &[Change]) -> HashMap<String, String> {
    let mut after = before.clone();
    for change in changes {
        after.remove(&change.path);
        if let Some(target) = &change.link_target {
            after.insert(change.path.clone(), target.clone());
        }
    }
    after
}

/// Why a file could not be turned into a blob.
enum ReadError {
    /// The file: gone, not regular, changed while read. The run is refused for it.
    Io(std::io::Error),
    /// The object store. The run ends with this error.
    Git(git2::Error),
}

/// How much of a file is read at once: memory stays at this, whatever the file's size.
const CHUNK: usize = 1 << 20;

/// Streams the regular file `path` (at most `max` bytes) into a blob of `store`, searching
/// it for `words` (lower-case) and the secrets of `finder` on the way. Returns the blob,
/// the words found and the secrets found.
fn read_blob(
    store: &Repository,
    path: &std::path::Path,
    max: u64,
    words: &[String],
    finder: &SecretFinder,
) -> Result<(Oid, Vec<String>, Vec<Hit>), ReadError> {
    let (mut file, size) = scan::open_file(path).map_err(ReadError::Io)?;
    if size > max {
        return Err(ReadError::Io(std::io::Error::other(format!(
            "larger than {max} bytes"
        ))));
    }
    let odb = store.odb().map_err(ReadError::Git)?;
    let len = usize::try_from(size).map_err(|e| ReadError::Io(std::io::Error::other(e)))?;
    let mut writer = odb
        .writer(len, git2::ObjectType::Blob)
        .map_err(ReadError::Git)?;
    let mut secrets = finder.stream();
    let longest = words.iter().map(String::len).max().unwrap_or(0);
    let mut word_tail: Vec<u8> = Vec::new();
    let mut found_words: Vec<String> = Vec::new();
    let mut buf = vec![0u8; CHUNK.min(len.max(1))];
    let mut total: u64 = 0;
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).map_err(ReadError::Io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > size {
            return Err(ReadError::Io(std::io::Error::other(
                "it grew while being read",
            )));
        }
        let chunk = &buf[..n];
        std::io::Write::write_all(&mut writer, chunk).map_err(ReadError::Io)?;
        secrets.push(chunk);
        if longest > 0 {
            word_tail.extend_from_slice(chunk);
            for w in find_words(&word_tail, words) {
                if !found_words.contains(&w) {
                    found_words.push(w);
                }
            }
            word_tail = word_tail[word_tail.len().saturating_sub(longest * 4)..].to_vec();
        }
    }
    if total != size {
        return Err(ReadError::Io(std::io::Error::other(
            "it shrank while being read",
        )));
    }
    let oid = writer.finalize().map_err(ReadError::Git)?;
    found_words.sort_by_key(|w| words.iter().position(|x| x == w));
    Ok((oid, found_words, secrets.finish()))
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
