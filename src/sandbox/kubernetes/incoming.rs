//! The repository side of a run: publish the start of `chant/<id>` for the pod to clone,
//! fetch the pod's result from `refs/chant/incoming/<id>/<session>`, write its tree into the
//! sandboxed clone, and delete the incoming ref.
//!
//! The fetched commit is HOSTILE DATA. It is fetched into the sandboxed clone (chant's own,
//! hardened: no hooks, no fsmonitor; the agent never ran in it at this level) and never
//! checked out by git: its tree is written here file by file, refusing names git itself
//! would refuse (`..`, `.git`) and never following a symlink, so that the same collect and
//! policy check (step 8) as at every other level judge exactly what the agent produced.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use crate::sandbox::SandboxError;

/// The incoming ref of a run.
pub fn incoming_ref(spec_id: &str, session: &str) -> String {
    format!("refs/chant/incoming/{spec_id}/{session}")
}

/// Runs git on the sandboxed clone's repository with nothing of the user's config that
/// could run code, and no prompts.
fn git(clone: &Path, args: &[&str]) -> Result<String, SandboxError> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(clone.join(".git"))
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env("GIT_TERMINAL_PROMPT", "0")
        .current_dir(clone)
        .output()
        .map_err(|e| SandboxError::Spawn {
            program: "git".into(),
            source: e,
        })?;
    if !out.status.success() {
        return Err(SandboxError::Kubernetes(format!(
            "git {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Makes `chant/<id>` on the repository the clone's start, so the pod clones exactly it.
pub fn publish_start(clone: &Path, url: &str, spec_id: &str) -> Result<(), SandboxError> {
    push(clone, url, &format!("HEAD:refs/heads/chant/{spec_id}")).map_err(|e| {
        SandboxError::Kubernetes(format!(
            "cannot publish chant/{spec_id} to agent.kubernetes.repo_url {url} for the pod to clone \
             ({e}); if the repository's chant/{spec_id} has moved, fetch and merge it first"
        ))
    })?;
    Ok(())
}

/// Fetches the pod's result into the clone; None when the pod pushed nothing.
pub fn fetch(
    clone: &Path,
    url: &str,
    spec_id: &str,
    session: &str,
) -> Result<Option<Oid>, SandboxError> {
    let remote = incoming_ref(spec_id, session);
    let listed = git(clone, &["ls-remote", "--refs", url, &remote])?;
    if listed.is_empty() {
        return Ok(None);
    }
    git(
        clone,
        &[
            // Malformed objects (tree names such as `..` or `.git`, bad modes) are refused
            // before anything is stored.
            "-c",
            "fetch.fsckObjects=true",
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-recurse-submodules",
            url,
            &format!("+{remote}:refs/chant/incoming"),
        ],
    )?;
    let repo = Repository::open(clone).map_err(git2_error)?;
    let oid = repo
        .refname_to_id("refs/chant/incoming")
        .map_err(git2_error)?;
    Ok(Some(oid))
}

/// Deletes the run's incoming ref on the repository.
pub fn delete_remote(
    clone: &Path,
    url: &str,
    spec_id: &str,
    session: &str,
) -> Result<(), SandboxError> {
    push(clone, url, &format!(":{}", incoming_ref(spec_id, session)))
}

/// Pushes `refspec` to `url` (the clone's own hooks never run).
fn push(clone: &Path, url: &str, refspec: &str) -> Result<(), SandboxError> {
    git(clone, &["push", "--quiet", "--no-verify", url, refspec]).map(|_| ())
}

fn git2_error(e: git2::Error) -> SandboxError {
    SandboxError::Kubernetes(format!("reading the pod's result: {e}"))
}

/// One entry of a tree: path, blob, mode.
type Entries = std::collections::BTreeMap<String, (Oid, i32)>;

fn entries(repo: &Repository, tree: Oid) -> Result<Entries, SandboxError> {
    let tree = repo.find_tree(tree).map_err(git2_error)?;
    let mut out = Entries::new();
    let mut bad: Option<String> = None;
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let name = entry.name().unwrap_or("");
        let path = format!("{dir}{name}");
        if !safe_name(name) {
            bad = Some(format!("the path '{path}' cannot be written safely"));
            return TreeWalkResult::Abort;
        }
        match entry.kind() {
            Some(ObjectType::Tree) => {}
            Some(ObjectType::Blob) => {
                out.insert(path, (entry.id(), entry.filemode()));
            }
            _ => {
                bad = Some(format!(
                    "'{path}' is a submodule (gitlink), which never lands"
                ));
                return TreeWalkResult::Abort;
            }
        }
        TreeWalkResult::Ok
    })
    .or_else(|e| if bad.is_some() { Ok(()) } else { Err(e) })
    .map_err(git2_error)?;
    match bad {
        Some(why) => Err(SandboxError::Kubernetes(format!(
            "the pod's result is refused: {why}; nothing landed"
        ))),
        None => Ok(out),
    }
}

fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.eq_ignore_ascii_case(".git")
        && !name.contains(['/', '\\', '\0'])
}

/// Writes the tree of `commit` over the clone's work tree (which holds the checkout of its
/// HEAD): files that differ are rewritten, files that are gone removed; untouched files
/// keep their checkout stat, so collect skips them as at every level. A blob larger than
/// `max_file_size` is written as a sparse file of its size, so the size rule sees it
/// without the disk holding it.
pub fn materialise(clone: &Path, commit: Oid, max_file_size: u64) -> Result<(), SandboxError> {
    let repo = Repository::open(clone).map_err(git2_error)?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_tree())
        .map_err(git2_error)?;
    let new_tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(git2_error)?;
    let old = entries(&repo, head.id())?;
    let new = entries(&repo, new_tree.id())?;
    for (path, was) in &old {
        if new.get(path) != Some(was) {
            remove(&clone.join(path))?;
        }
    }
    for (path, (oid, mode)) in &new {
        if old.get(path) == Some(&(*oid, *mode)) {
            continue;
        }
        let target = inside(clone, path)?;
        let (size, _) = repo
            .odb()
            .and_then(|db| db.read_header(*oid))
            .map_err(git2_error)?;
        if *mode != 0o120000 && size as u64 > max_file_size {
            make_parents(clone, path)?;
            remove(&target)?;
            std::fs::File::create(&target)
                .and_then(|f| f.set_len(size as u64))
                .map_err(|e| {
                    SandboxError::Workspace(format!("writing {}: {e}", target.display()))
                })?;
            continue;
        }
        let blob = repo.find_blob(*oid).map_err(git2_error)?;
        make_parents(clone, path)?;
        remove(&target)?;
        let io = |e: std::io::Error| {
            SandboxError::Workspace(format!("writing {}: {e}", target.display()))
        };
        match *mode {
            0o120000 => {
                let link = String::from_utf8_lossy(blob.content()).into_owned();
                std::os::unix::fs::symlink(link, &target).map_err(io)?;
            }
            m => {
                std::fs::write(&target, blob.content()).map_err(io)?;
                use std::os::unix::fs::PermissionsExt;
                let perm = if m == 0o100755 { 0o755 } else { 0o644 };
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(perm))
                    .map_err(io)?;
            }
        }
    }
    Ok(())
}

fn inside(root: &Path, rel: &str) -> Result<PathBuf, SandboxError> {
    let p = Path::new(rel);
    if p.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(root.join(p))
    } else {
        Err(SandboxError::Kubernetes(format!(
            "the pod's result names '{rel}', outside the workspace; nothing landed"
        )))
    }
}

/// Creates the directories above `rel`, replacing a file or symlink in the way (never
/// following one).
fn make_parents(root: &Path, rel: &str) -> Result<(), SandboxError> {
    let mut dir = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => remove(&dir)?,
            Err(_) => {}
        }
        std::fs::create_dir(&dir)
            .map_err(|e| SandboxError::Workspace(format!("creating {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Removes a file, symlink or directory tree at `path` (never following a symlink).
fn remove(path: &Path) -> Result<(), SandboxError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    };
    result.map_err(|e| SandboxError::Workspace(format!("removing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(repo: &Repository, files: &[(&str, &[u8], i32)], parent: Option<Oid>) -> Oid {
        let mut idx = git2::build::TreeUpdateBuilder::new();
        for (p, content, mode) in files {
            let blob = repo.blob(content).expect("blob");
            idx.upsert(p, blob, mode_of(*mode));
        }
        let empty = repo
            .find_tree(
                repo.treebuilder(None)
                    .and_then(|t| t.write())
                    .expect("empty"),
            )
            .expect("tree");
        let tree = idx.create_updated(repo, &empty).expect("tree");
        let tree = repo.find_tree(tree).expect("tree");
        let sig = git2::Signature::now("t", "t@t").expect("sig");
        let parents: Vec<git2::Commit> = parent
            .map(|p| repo.find_commit(p).expect("parent"))
            .into_iter()
            .collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(None, &sig, &sig, "m", &tree, &refs)
            .expect("commit")
    }

    fn mode_of(mode: i32) -> git2::FileMode {
        match mode {
            0o100755 => git2::FileMode::BlobExecutable,
            0o120000 => git2::FileMode::Link,
            _ => git2::FileMode::Blob,
        }
    }

    #[test]
    fn writes_changes_and_removes_deletions_without_following_links() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo = Repository::init(dir.path()).expect("init");
        let start = commit(
            &repo,
            &[
                ("keep.txt", b"same\n", 0o100644),
                ("gone.txt", b"bye\n", 0o100644),
                ("d/link", b"/etc", 0o120000),
            ],
            None,
        );
        repo.reference("refs/heads/main", start, true, "t")
            .expect("ref");
        repo.set_head("refs/heads/main").expect("head");
        let mut co = git2::build::CheckoutBuilder::new();
        co.force();
        repo.checkout_head(Some(&mut co)).expect("checkout");
        let result = commit(
            &repo,
            &[
                ("keep.txt", b"same\n", 0o100644),
                ("new/run.sh", b"#!/bin/sh\n", 0o100755),
                ("d/link/passwd", b"pwned\n", 0o100644),
            ],
            Some(start),
        );
        materialise(dir.path(), result, 1024).expect("materialise");
        assert!(!dir.path().join("gone.txt").exists());
        assert_eq!(
            std::fs::read(dir.path().join("new/run.sh")).expect("written"),
            b"#!/bin/sh\n"
        );
        let link = std::fs::symlink_metadata(dir.path().join("d/link")).expect("d/link");
        assert!(link.is_dir(), "the symlink was replaced by a directory");
        assert_eq!(
            std::fs::read(dir.path().join("d/link/passwd")).expect("inside"),
            b"pwned\n"
        );
    }
}
