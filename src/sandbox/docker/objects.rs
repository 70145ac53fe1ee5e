//! Making the clone's git usable inside the container.
//!
//! The clone borrows its objects from the main repository (alternates), which the
//! container must not see, so `git status` or `git diff` there would fail. Before the run
//! — while the clone is still chant's own, untouched by any agent — the objects of its
//! HEAD (the commit and the tree the agent sees, withheld paths already left out) are
//! packed into the clone, HEAD is marked as a shallow boundary, and the alternates link
//! is dropped. Nothing of the main repository's history or of withheld files goes in.

use std::path::Path;

use crate::sandbox::SandboxError;

/// Packs HEAD's commit and tree into the clone at `workspace` and cuts it off from the
/// main repository's object store.
pub fn make_self_contained(workspace: &Path) -> Result<(), SandboxError> {
    let err = |e: git2::Error| {
        SandboxError::Engine(format!(
            "cannot prepare the clone's git objects for the container: {e}"
        ))
    };
    let repo = git2::Repository::open(workspace).map_err(err)?;
    let head = repo.head().map_err(err)?.peel_to_commit().map_err(err)?;
    let mut pack = repo.packbuilder().map_err(err)?;
    pack.insert_object(head.id(), None).map_err(err)?;
    pack.insert_tree(head.tree_id()).map_err(err)?;
    let objects = repo.path().join("objects");
    pack.write(&objects.join("pack"), 0o644).map_err(err)?;
    drop(pack);
    std::fs::write(repo.path().join("shallow"), format!("{}\n", head.id()))?;
    match std::fs::remove_file(objects.join("info").join("alternates")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}
