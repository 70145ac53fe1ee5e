//! The sandboxed clone: a fresh repository outside the user's work tree that borrows the
//! main repository's objects (alternates), so creating it costs a checkout, not a copy of
//! history.
//!
//! The clone holds no remote, no credentials and no hooks; its git config is chant's own.
//! `file_access.denied_paths` never reach its work tree and `allowed_paths`, when set,
//! limit what is checked out. Once the agent has run, the clone is hostile: nothing here
//! reads it again — `collect` reads its work tree as data.
//!
//! A clone kept after the run (a failure, or `--keep`) is first disarmed: the `.git` the
//! agent could write (config with fsmonitor, hooksPath, aliases, pager, includes; hooks;
//! `commondir`; `.git` swapped for a file or a symlink) is removed without following any
//! link and replaced by a fresh one chant writes, so the user's next `git status`,
//! `git diff` or `git log` there shows the agent's changes and runs nothing of the agent's.

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
    /// Paths of the start tree that were withheld (denied, not allowed, gitlinks).
    pub withheld: Vec<String>,
    /// The commit the clone starts from (in the main repository) and its branch: with
    /// the withheld paths, what a fresh `.git` needs (see [`disarm`]).
    start: Oid,
    branch: String,
}

/// Creates the clone of `start` at `path` (which must not exist).
pub fn create(
    main: &Repository,
    start: Oid,
    branch: &str,
    path: &Path,
    visibility: &Visibility<'_>,
) -> Result<Clone, WorkError> {
    let start_tree = main.find_commit(start)?.tree()?;

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

    if std::fs::symlink_metadata(path).is_ok() {
        return Err(WorkError::CloneExists {
            path: path.to_path_buf(),
        });
    }
    std::fs::create_dir_all(path).map_err(|e| WorkError::io(path, e))?;
    let clone = init_git(main, start, branch, path, &removed)?;
    checkout(&clone, path)?;

    // Remember how each file looked right after checkout (outside the clone, in memory).
    for (rel, file) in files.iter_mut() {
        file.stat = scan::stat_key(&path.join(rel));
    }
    Ok(Clone {
        path: path.to_path_buf(),
        files,
        withheld: removed,
        start,
        branch: branch.to_string(),
    })
}

/// A fresh `.git` in `path` (which has none): alternates to the main repository's objects,
/// chant's hardened config, `branch` at the start tree without the `withheld` paths.
fn init_git(
    main: &Repository,
    start: Oid,
    branch: &str,
    path: &Path,
    withheld: &[String],
) -> Result<Repository, WorkError> {
    let start_tree = main.find_commit(start)?.tree()?;
    // chant's hardened config: no hooks, no fsmonitor, its own identity; and nothing of the
    // user's git templates.
    let clone = crate::git::init_private(&path.join(".git"), false, CLONE_CONFIG)
        .map_err(|e| WorkError::io(&path.join(".git"), e))?;
    write_alternates(&clone, main)?;

    // The tree the agent sees: the start tree without withheld paths, written into the
    // clone's own object store (the main repository is not touched).
    let tree_id = if withheld.is_empty() {
        start_tree.id()
    } else {
        let mut update = git2::build::TreeUpdateBuilder::new();
        for p in withheld {
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
            withheld.len()
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
    Ok(clone)
}

impl Clone {
    /// The clone as a sandbox level is handed it to prepare.
    pub fn workspace(&self) -> crate::sandbox::Workspace {
        crate::sandbox::Workspace {
            path: self.path.clone(),
            withheld: self.withheld.clone(),
        }
    }
}

/// Makes a clone the agent has used safe to keep: its `.git` (agent-writable, perhaps a
/// file or a symlink by now) is removed without following links and replaced by a fresh
/// one, HEAD at the start and the index of the start tree, so `git status` and `git diff`
/// there show the agent's changes. Nothing in the work tree is read or changed.
pub fn disarm(main: &Repository, clone: &Clone) -> Result<(), WorkError> {
    let git_dir = clone.path.join(".git");
    remove_entry(&git_dir).map_err(|e| WorkError::Disarm {
        path: git_dir.clone(),
        source: e,
    })?;
    let repo = init_git(
        main,
        clone.start,
        &clone.branch,
        &clone.path,
        &clone.withheld,
    )?;
    let tree = repo.head()?.peel_to_tree()?;
    let mut index = repo.index()?;
    index.read_tree(&tree)?;
    index.write()?;
    Ok(())
}

/// Removes a clone for good, even where the agent took the write permission away from
/// its own directories; never follows a symlink.
pub fn discard(path: &Path) -> std::io::Result<()> {
    remove_entry(path)
}

/// Removes `path` whatever it is: a symlink or a file is unlinked (its target is never
/// touched), a directory removed with everything below it.
fn remove_entry(path: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    // std's remove_dir_all never follows links (it works with openat/unlinkat).
    if std::fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    // The agent may have taken the permission away from its own directories; they are
    // the user's, who may give it back.
    grant_owner_access(path);
    std::fs::remove_dir_all(path)
}

/// `u+rwx` on every directory at or below `path`, reached without following links.
fn grant_owner_access(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {
                let mode = m.permissions().mode() | 0o700;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
            }
            _ => continue,
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
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
const CLONE_CONFIG: &str = "\thooksPath = /dev/null\n\tfsmonitor = false\n\
[user]\n\tname = chant agent\n\temail = agent@chant.invalid\n";

/// The file mode git records for a base file, as a `FileMode`.
pub fn file_mode(mode: i32) -> FileMode {
    match mode {
        0o100755 => FileMode::BlobExecutable,
        0o120000 => FileMode::Link,
        _ => FileMode::Blob,
    }
}
