//! Whole-or-nothing file writes: content goes to a sibling temporary file that is synced
//! and then renamed into place, so a crash or Ctrl-C never leaves a half-written file.

use std::io::Write;
use std::path::Path;

/// Creates `path` with `bytes`; fails with `AlreadyExists` if it exists.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = staged(path, bytes)?;
    tmp.persist_noclobber(path).map(|_| ()).map_err(|e| e.error)
}

/// Replaces (or creates) `path` with `bytes`.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = staged(path, bytes)?;
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}

fn staged(path: &Path, bytes: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}
