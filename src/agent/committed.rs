//! Reading a config file the project committed, from the fresh clone before the agent
//! starts (chant's own checkout of the base tree), so an adapter can merge it with chant's
//! rules: only regular files, never followed through a symlink, at most 1 MiB.

use std::path::Path;

use super::AgentError;

const MAX_SIZE: u64 = 1 << 20;

/// The text of `rel` in `clone` when it is a regular file; None when absent or not a
/// regular file (the adapter writes its own in its place).
pub fn read(clone: &Path, rel: &str) -> Result<Option<String>, AgentError> {
    let path = clone.join(rel);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return Ok(None);
    };
    if !meta.file_type().is_file() {
        return Ok(None);
    }
    let bad = |reason: String| AgentError::ProjectSettings {
        path: rel.to_string(),
        reason,
    };
    if meta.len() > MAX_SIZE {
        return Err(bad(format!("is larger than {MAX_SIZE} bytes")));
    }
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| bad(format!("cannot be read: {e}")))
}
