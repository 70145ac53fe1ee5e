//! The few git operations everything shares. Every update of a ref chant owns goes through
//! [`update_ref`], a compare-and-swap: nobody writes those refs any other way.

use git2::{Oid, Repository};

/// Moves `name` from `expected` (None: the ref must not exist) to `new`, atomically.
/// Fails with `git2::ErrorCode::Modified`/`Exists` when someone else moved it first.
pub fn update_ref(
    repo: &Repository,
    name: &str,
    new: Oid,
    expected: Option<Oid>,
    message: &str,
) -> Result<(), git2::Error> {
    match expected {
        // `force = true` is required for libgit2's compare-and-swap; the expected old
        // value is what makes it safe.
        Some(old) => repo
            .reference_matching(name, new, true, old, message)
            .map(|_| ()),
        None => repo.reference(name, new, false, message).map(|_| ()),
    }
}

/// Writes a commit object (signed the way git would when the repository's git config
/// asks for it — see `audit::sign`) without moving any ref.
pub fn create_commit(
    repo: &Repository,
    sig: &git2::Signature<'_>,
    message: &str,
    tree: &git2::Tree<'_>,
    parents: &[&git2::Commit<'_>],
) -> Result<Oid, git2::Error> {
    repo.commit(None, sig, sig, message, tree, parents)
}
