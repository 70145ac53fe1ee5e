//! Specs: ids, the files under `.chant/specs/`, and resolving what the user typed to an id.

mod file;
mod id;
pub mod status;
mod store;

pub use file::Spec;
pub use id::{check_input, to_base36, SpecId};
pub use store::SpecStore;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    BadInput(String),
    #[error("no spec matches '{input}'; `git chant list` shows the specs")]
    NotFound { input: String },
    #[error("'{input}' is ambiguous; it matches: {}", .candidates.join(", "))]
    Ambiguous {
        input: String,
        candidates: Vec<String>,
    },
    #[error("{file}: {message}")]
    Malformed { file: String, message: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl SpecError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SpecError::Io { .. } => 1,
            _ => 2,
        }
    }
}

/// Checks a `--target` path: relative, inside the repository, no NUL or control characters.
pub fn check_target(path: &str) -> Result<(), String> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.split('/').any(|p| p == "..")
        || path.chars().any(char::is_control);
    if bad {
        Err(format!(
            "--target '{}' must be a relative path inside the repository",
            path.escape_debug()
        ))
    } else {
        Ok(())
    }
}
