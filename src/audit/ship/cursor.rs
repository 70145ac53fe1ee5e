//! The shipping cursor: the last ledger entry a target acknowledged, in
//! `.git/chant/ship-cursor.json`. Written whole (temporary file + rename), so a crash leaves
//! the old cursor or the new one, never half of one: at worst a batch is sent again.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ShipError;

/// Where shipping to one target stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The target it is for ([`super::describe`]); another target starts from the start.
    pub target: String,
    /// The ledger commit of the last acknowledged entry.
    pub commit: String,
    /// That entry's hash.
    pub hash: String,
    /// How many entries were shipped to this target in all.
    pub shipped: usize,
}

impl Cursor {
    /// The cursor for `target`, if `path` holds one for it.
    pub fn load(path: &Path, target: &str) -> Result<Option<Cursor>, ShipError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ShipError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|e| ShipError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a shipping cursor ({e}); remove it to ship everything again"),
            ),
        })?;
        Ok((cursor.target == target).then_some(cursor))
    }

    /// Replaces the cursor file with this cursor.
    pub fn save(&self, path: &Path) -> Result<(), ShipError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| ShipError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        text.push('\n');
        crate::atomic::replace(path, text.as_bytes()).map_err(|source| ShipError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
