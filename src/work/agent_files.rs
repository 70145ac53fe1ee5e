//! Writing the agent adapter's files (its settings in the clone, its trust state in the
//! run's private HOME) before the agent starts.
//!
//! The clone's tree comes from the repository, so any directory on the way may be a
//! symlink the base tree placed: no component is followed through a symlink; such a run is
//! refused rather than written elsewhere. Never called once the agent has started.

use std::path::Path;

use super::WorkError;

/// Writes each (relative path, text) under `root` through [`crate::confined::write_in_tree`]
/// (no component followed through a symlink; a link or file at the name itself is replaced,
/// never written through); returns the relative paths written.
pub(super) fn write_under(
    root: &Path,
    files: &[(String, String)],
) -> Result<Vec<String>, WorkError> {
    let mut written = Vec::new();
    for (rel, text) in files {
        crate::confined::write_in_tree(root, rel, text.as_bytes(), 0o644)
            .map_err(|e| WorkError::io(&root.join(rel), std::io::Error::other(e.to_string())))?;
        written.push(rel.clone());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_and_a_symlinked_directory_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let files = vec![(".claude/settings.json".to_string(), "{}".to_string())];
        assert_eq!(
            write_under(tmp.path(), &files).expect("written"),
            [".claude/settings.json"]
        );
        // Written again over the file.
        write_under(tmp.path(), &files).expect("rewritten");

        let other = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("outside");
        std::os::unix::fs::symlink(outside.path(), other.path().join(".claude")).expect("link");
        let err = write_under(other.path(), &files).expect_err("refused");
        assert!(
            err.to_string().contains("symbolic link") || err.to_string().contains("symlink"),
            "{err}"
        );
        assert!(!outside.path().join("settings.json").exists());
    }
}
