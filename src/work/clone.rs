//! The sandboxed clone: a fresh repository outside the user's work tree that borrows the
//! main repository's objects (alternates), so creating it costs a checkout, not a copy of
//! history.
//!
//! The clone holds no remote, no credentials and no hooks; its git config is chant's own.
//! `file_access.denied_paths` never reach its work tree and `allowed_paths`, when set,
//! limit what is checked out. Once the agent has run, the clone is hostile: nothing here
//! reads it again — `collect` reads its work tree as data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use git2::{build::CheckoutBuilder, FileMode, Oid, Repository};

use super::scan::{self, StatKey};
use super::WorkError;
use crate::pattern::PathRules;

/// What may be checked out: every non-empty allow list must match, no deny list may.
pub struct Visibility<'a> {
    pub allow: Vec<&'a PathRules>,
    pub deny: Vec<&'a PathRules>,
}

impl Visibility<'_> {
    pub fn visible(&self, path: &str) -> bool {
        self.allow.iter().all(|a| a.is_empty() || a.is_match(path))
            && !self.deny.iter().any(|d| d.is_match(path))
    }
}

/// One file of the starting tree as it was checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseFile {
    pub oid: Oid,
    pub mode: i32,
    /// Stat of the checked-out file, to skip re-reading unchanged files later.
    pub stat: Option<StatKey>,
}

/// A prepared clone.
pub struct Clone {
    pub path: PathBuf,
    /// Files of the start tree that were checked out, by path.
    pub files: HashMap<String, BaseFile>,
    /// Paths of the start tree that were withheld (denied or not allowed).
    pub hidden: usize,
}

/// Creates the clone of `start` at `path` (which must not exist).
pub fn create(
    main: &Repository,
    start: Oid,
    branch: &str,
    path: &Path,
    visibility: &Visibility<'_>,
) -> Result<Clone, WorkError> {
    let start_commit = main.find_commit(start)?;
    let start_tree = start_commit.tree()?;

    // Which entries are visible; gitlinks (submodules) are never checked out.
    let mut files = HashMap::new();
    let mut removed = Vec::new();
    start_tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        let Some(name) = entry.name() else {
            return git2::TreeWalkResult::Skip;
        };
        let path = format!("{dir}{name}");
        match entry.kind() {
            Some(git2::ObjectType::Tree) => git2::TreeWalkResult::Ok,
            Some(git2::ObjectType::Blob) if visibility.visible(&path) => {
                files.insert(
                    path,
                    BaseFile {
                        oid: entry.id(),
                        mode: entry.filemode(),
                        stat: None,
                    },
                );
                git2::TreeWalkResult::Ok
            }
            _ => {
                removed.push(path);
                git2::TreeWalkResult::Ok
            }
        }
    })?;

    std::fs::create_dir_all(path).map_err(|e| WorkError::io(path, e))?;
    let clone = Repository::init(path)?;
    write_alternates(&clone, main)?;
    harden_config(&clone)?;

    // The tree the agent sees: the start tree without withheld paths, written into the
    // clone's own object store (the main repository is not touched).
    let tree_id = if removed.is_empty() {
        start_tree.id()
    } else {
        let mut update = git2::build::TreeUpdateBuilder::new();
        for p in &removed {
            update.remove(p);
        }
        update.create_updated(&clone, &start_tree)?
    };
    let head = if tree_id == start_tree.id() {
        start
    } else {
        let tree = clone.find_tree(tree_id)?;
        let sig = git2::Signature::now("git chant", "chant@localhost")?;
        let message = format!(
            "chant: start of {branch}, {} path(s) withheld by file_access\n",
            removed.len()
        );
        clone.commit(
            None,
            &sig,
            &sig,
            &message,
            &tree,
            &[&clone.find_commit(start)?],
        )?
    };
    let refname = format!("refs/heads/{branch}");
    clone.reference(&refname, head, true, "chant: start")?;
    clone.set_head(&refname)?;
    checkout(&clone, path)?;

    // Remember how each file looked right after checkout (outside the clone, in memory).
    for (rel, file) in files.iter_mut() {
        file.stat = scan::stat_key(&path.join(rel));
    }
    Ok(Clone {
        path: path.to_path_buf(),
        files,
        hidden: removed.len(),
    })
}

/// Writes the work tree and index of the fresh clone. git's own checkout is several times
/// faster than libgit2's here; the clone is still ours (no agent has run), its config is
/// the hardened one above, and no hook can run (`core.hooksPath=/dev/null`).
fn checkout(clone: &Repository, path: &Path) -> Result<(), WorkError> {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(clone.path())
        .arg("--work-tree")
        .arg(path)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "read-tree",
            "--reset",
            "-u",
            "HEAD",
        ])
        .current_dir(path)
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        _ => {
            // No usable git on PATH: libgit2 does the same, only slower.
            let mut checkout = CheckoutBuilder::new();
            checkout.force();
            clone.checkout_head(Some(&mut checkout))?;
            Ok(())
        }
    }
}

fn write_alternates(clone: &Repository, main: &Repository) -> Result<(), WorkError> {
    // The common dir: a linked worktree's own git dir has no objects.
    let main_objects = main.commondir().join("objects");
    let info = clone.path().join("objects").join("info");
    std::fs::create_dir_all(&info).map_err(|e| WorkError::io(&info, e))?;
    let mut line = main_objects.to_string_lossy().into_owned();
    line.push('\n');
    std::fs::write(info.join("alternates"), line).map_err(|e| WorkError::io(&info, e))?;
    Ok(())
}

/// The clone's config: no remotes, no hooks, nothing that runs code.
fn harden_config(clone: &Repository) -> Result<(), WorkError> {
    let mut config = clone.config()?;
    config.set_str("core.hooksPath", "/dev/null")?;
    config.set_bool("core.fsmonitor", false)?;
    config.set_str("user.name", "chant agent")?;
    config.set_str("user.email", "agent@chant.invalid")?;
    let hooks = clone.path().join("hooks");
    if hooks.is_dir() {
        let _ = std::fs::remove_dir_all(&hooks);
    }
    Ok(())
}

/// The file mode git records for a base file, as a `FileMode`.
pub fn file_mode(mode: i32) -> FileMode {
    match mode {
        0o100755 => FileMode::BlobExecutable,
        0o120000 => FileMode::Link,
        _ => FileMode::Blob,
    }
}
