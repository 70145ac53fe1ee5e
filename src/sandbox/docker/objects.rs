//! Making the clone's git usable inside the container.
//!
//! The clone borrows its objects from the main repository (alternates), which the
//! container must not see, so `git status` or `git diff` there would fail. Before the run
//! — while the clone is still chant's own, untouched by any agent — the objects of its
//! HEAD (the commit and the tree the agent sees, withheld paths already left out) are
//! copied into the clone's own object store, HEAD is marked as a shallow boundary, and the
//! alternates link is dropped. Nothing of the main repository's history or of withheld
//! files goes in.

use std::path::Path;

use crate::sandbox::SandboxError;

/// Copies HEAD's commit and tree into the clone at `workspace` and cuts it off from the
/// main repository's object store.
pub fn make_self_contained(workspace: &Path) -> Result<(), SandboxError> {
    let err =
        |e: git2::Error| SandboxError::Workspace(format!("copying the clone's git objects: {e}"));
    // `borrowed` keeps the main repository as an alternate (loaded when opened) to read
    // from; `own`, opened once the link is gone, writes into the clone's store only (a
    // write is skipped when any store of the handle already has the object).
    let borrowed = git2::Repository::open(workspace).map_err(err)?;
    let from = borrowed.odb().map_err(err)?;
    let alternates = borrowed
        .path()
        .join("objects")
        .join("info")
        .join("alternates");
    match std::fs::remove_file(&alternates) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let own = git2::Repository::open(workspace).map_err(err)?;
    let to = own.odb().map_err(err)?;
    let copy = |id: git2::Oid| -> Result<(), git2::Error> {
        if to.exists(id) {
            return Ok(());
        }
        let object = from.read(id)?;
        to.write(object.kind(), object.data())?;
        Ok(())
    };
    let head = borrowed
        .head()
        .map_err(err)?
        .peel_to_commit()
        .map_err(err)?;
    copy(head.id()).map_err(err)?;
    let tree = head.tree().map_err(err)?;
    copy(tree.id()).map_err(err)?;
    let mut failed = None;
    let walked = tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
        // Gitlinks name commits of other repositories: nothing to copy.
        if entry.kind() == Some(git2::ObjectType::Commit) {
            return git2::TreeWalkResult::Skip;
        }
        match copy(entry.id()) {
            Ok(()) => git2::TreeWalkResult::Ok,
            Err(e) => {
                failed = Some(e);
                git2::TreeWalkResult::Abort
            }
        }
    });
    if let Err(e) = walked {
        return Err(err(failed.unwrap_or(e)));
    }
    std::fs::write(borrowed.path().join("shallow"), format!("{}\n", head.id()))?;
    Ok(())
}
