//! Writing the agent adapter's files (its settings in the clone, its trust state in the
//! run's private HOME) before the agent starts.
//!
//! The clone's tree comes from the repository, so any directory on the way may be a
//! symlink the base tree placed: no component is followed through a symlink; such a run is
//! refused rather than written elsewhere. Never called once the agent has started.

use std::path::Path;

use super::WorkError;

/// Writes each (relative path, text) under `root`, replacing a regular file of that name;
/// returns the relative paths written.
pub(super) fn write_under(
    root: &Path,
    files: &[(String, String)],
) -> Result<Vec<String>, WorkError> {
    let mut written = Vec::new();
    for (rel, text) in files {
        let mut dir = root.to_path_buf();
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let Some((name, dirs)) = parts.split_last() else {
            continue;
        };
        for part in dirs {
            dir.push(part);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => return Err(refused(&dir, rel)),
                Err(_) => std::fs::create_dir(&dir).map_err(|e| WorkError::io(&dir, e))?,
            }
        }
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_file() => {
                std::fs::remove_file(&path).map_err(|e| WorkError::io(&path, e))?
            }
            Ok(_) => return Err(refused(&path, rel)),
            Err(_) => {}
        }
        // No-clobber: a name that appeared since the check is never replaced or followed.
        crate::atomic::write_new(&path, text.as_bytes()).map_err(|e| WorkError::io(&path, e))?;
        written.push(rel.clone());
    }
    Ok(written)
}

fn refused(at: &Path, rel: &str) -> WorkError {
    WorkError::io(
        at,
        std::io::Error::other(format!(
            "is a symlink or special file in the base tree; chant will not write the agent's {rel} through it (remove it from the branch)"
        )),
    )
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
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outside.path().join("settings.json").exists());
    }
}
