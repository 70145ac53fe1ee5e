//! Which non-root user runs in the container, and handing the clone to it.
//!
//! The container runs as the uid:gid that owns the clone, so what the agent writes is the
//! user's. When chant itself runs as root the clone is root's, and root is never the
//! container user: the clone (and the prompt file) are handed to an unprivileged uid for
//! the run and given back afterwards. Ownership changes use `lchown` and never follow a
//! symlink, since after the run the tree holds whatever the agent left there. Nothing is
//! ever made world-writable.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The uid:gid a root-owned clone is handed to for the run (the "nonroot" user of
/// distroless images; no account on the host is expected to have it).
pub const FALLBACK_ID: u32 = 65532;

/// Who runs in the container, and whose the clone was before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// The clone's owner before the run, when it had to be handed over.
    pub original: Option<(u32, u32)>,
}

impl Owner {
    /// The container user for `workspace`: its owner, or [`FALLBACK_ID`] when that is root.
    pub fn for_workspace(workspace: &Path) -> std::io::Result<Owner> {
        let meta = std::fs::metadata(workspace)?;
        let (uid, gid) = (meta.uid(), meta.gid());
        Ok(if uid == 0 || gid == 0 {
            Owner {
                uid: FALLBACK_ID,
                gid: FALLBACK_ID,
                original: Some((uid, gid)),
            }
        } else {
            Owner {
                uid,
                gid,
                original: None,
            }
        })
    }

    /// `uid:gid` for the container's `User`.
    pub fn user(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }

    /// Hands `paths` (trees, walked without following symlinks) to the container user.
    pub fn hand_over(&self, paths: &[&Path]) -> std::io::Result<()> {
        if self.original.is_none() {
            return Ok(());
        }
        for path in paths {
            chown_tree(path, self.uid, self.gid)?;
        }
        Ok(())
    }

    /// Gives `paths` back to the owner they had before [`Owner::hand_over`].
    pub fn give_back(&self, paths: &[&Path]) -> std::io::Result<()> {
        let Some((uid, gid)) = self.original else {
            return Ok(());
        };
        for path in paths {
            chown_tree(path, uid, gid)?;
        }
        Ok(())
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_owned_clone_is_handed_to_an_unprivileged_user_and_given_back() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("f"), "x").expect("write");
        let owner = Owner::for_workspace(dir.path()).expect("owner");
        assert_ne!(owner.uid, 0);
        assert_ne!(owner.gid, 0);
        if owner.original.is_none() {
            // Not running as root: the container user is simply the clone's owner.
            return;
        }
        owner.hand_over(&[dir.path()]).expect("hand over");
        let meta = std::fs::metadata(dir.path().join("f")).expect("meta");
        assert_eq!((meta.uid(), meta.gid()), (FALLBACK_ID, FALLBACK_ID));
        owner.give_back(&[dir.path()]).expect("give back");
        let meta = std::fs::metadata(dir.path().join("f")).expect("meta");
        assert_eq!(meta.uid(), 0);
    }
}
