//! Compiled matchers for the patterns users write in `.chant/config.md`: repository paths,
//! network hosts, environment variable names, identities and branch names; and
//! [`lookalike`], the names other file systems treat as another name (`.GIT`, `git~1`, `.env.`).
//!
//! Patterns are parsed once, when the configuration loads, so the rest of the program only
//! ever sees valid, compiled matchers ("parse, don't validate").

mod host;
mod ident;
pub mod lookalike;
mod name;
mod path;

pub use host::{HostPattern, HostRules};
pub use ident::IdentityRules;
pub use name::NameRules;
pub use path::{Anchoring, PathRules};

/// Why a pattern was refused; the config loader adds the file and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{pattern}' {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl PatternError {
    fn new(pattern: &str, reason: impl Into<String>) -> Self {
        PatternError {
            pattern: pattern.to_string(),
            reason: reason.into(),
        }
    }
}
