//! The audit ledger on `refs/chant/audit`: entries, canonical JSON and hash chain,
//! append (compare-and-swap), signing, verification, queries and sinks.
//!
//! The ref is the source of truth. Nothing here prints; callers report.

mod entry;

pub use entry::{Entry, Event, NewEntry};

use crate::config::Config;
use crate::identity::Identity;
use crate::project::Project;

/// The ledger's ref.
pub const AUDIT_REF: &str = "refs/chant/audit";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Invalid(String),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

impl AuditError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AuditError::Invalid(_) => 2,
            AuditError::Git(_) => 1,
        }
    }
}

/// Appends one entry to the ledger of `project` (and mirrors it to the configured sinks).
pub fn record(
    project: &Project,
    config: &Config,
    identity: &Identity,
    entry: NewEntry,
) -> Result<Entry, AuditError> {
    record_batch(project, config, identity, vec![entry]).map(|mut v| v.remove(0))
}

/// Appends several entries with one ref update.
pub fn record_batch(
    _project: &Project,
    _config: &Config,
    _identity: &Identity,
    _entries: Vec<NewEntry>,
) -> Result<Vec<Entry>, AuditError> {
    Err(AuditError::Invalid(
        "the audit ledger is not built yet".into(),
    ))
}
