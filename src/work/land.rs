//! Landing an accepted change: one commit on `chant/<id>` built from the start tree and
//! the collected blobs (all in the main repository's object store), then a
//! compare-and-swap of the branch. The user's work tree, index and other branches never
//! change.

use git2::{Oid, Repository};

use super::collect::{Change, ChangeKind};
use super::WorkError;
use crate::identity::Identity;

/// What the commit says.
pub struct CommitMessage<'a> {
    pub spec_id: &'a str,
    pub title: &'a str,
    pub session: &'a str,
    pub sandbox: &'a str,
}

impl CommitMessage<'_> {
    pub fn render(&self) -> String {
        format!(
            "chant({id}): {title}\n\nChant-Spec: {id}\nChant-Session: {session}\nChant-Sandbox: {sandbox}\n",
            id = self.spec_id,
            title = self.title,
            session = self.session,
            sandbox = self.sandbox
        )
    }
}

/// Writes the commit of `changes` on top of `parent`, without moving any ref: the caller
/// records it in the ledger first, then [`publish`]es it, so nothing lands unrecorded.
pub fn commit(
    repo: &Repository,
    parent: Oid,
    changes: &[Change],
    message: &CommitMessage<'_>,
    identity: &Identity,
) -> Result<Oid, WorkError> {
    let parent_commit = repo.find_commit(parent)?;
    let base_tree = parent_commit.tree()?;
    let mut update = git2::build::TreeUpdateBuilder::new();
    for change in changes {
        match (change.kind, change.new) {
            (ChangeKind::Deleted, _) | (_, None) => {
                update.remove(&change.path);
            }
            (_, Some((oid, mode))) => {
                update.upsert(&change.path, oid, super::clone::file_mode(mode));
            }
        }
    }
    let tree_id = update.create_updated(repo, &base_tree)?;
    let tree = repo.find_tree(tree_id)?;
    let now = git2::Time::new(crate::clock::now().timestamp(), 0);
    let sig = git2::Signature::new(&identity.actor, &identity.email, &now)?;
    let text = message.render();
    crate::git::create_commit(repo, &sig, &text, &tree, &[&parent_commit])
        .map_err(|e| WorkError::Ledger(e.to_string()))
}

/// Moves `branch_ref` from `expected` to `commit` (compare-and-swap).
pub fn publish(
    repo: &Repository,
    branch_ref: &str,
    expected: Oid,
    commit: Oid,
) -> Result<(), WorkError> {
    let swapped =
        crate::git::compare_and_swap(repo, branch_ref, commit, Some(expected), "chant: land")?;
    if swapped {
        Ok(())
    } else {
        Err(WorkError::BranchMoved {
            branch: branch_ref.trim_start_matches("refs/heads/").to_string(),
        })
    }
}
