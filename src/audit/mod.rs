//! The audit ledger on `refs/chant/audit`: entries, canonical JSON and hash chain,
//! append (compare-and-swap), signing, verification, queries, sinks and replication.
//!
//! The ref is the source of truth: sinks and the query index are derived from it and a
//! failure there never loses a ledger entry. Nothing here prints; callers report.
//! `audit.enabled: false` turns off the sinks only — the ledger itself always records.

mod chain;
mod entry;
mod fastcheck;
pub mod form;
pub mod index;
pub mod ledger;
mod objects;
mod pack;
pub mod query;
pub mod replicate;
pub mod ship;
pub mod sign;
pub mod signers;
pub mod sink;
pub mod verify;

pub use chain::{canonical, entry_hash, find_float, ZERO_HASH};
pub use entry::{Entry, Event, NewEntry, FIELDS};
pub use ledger::{Draft, Stored};
pub use replicate::{configure_replication, sync, SyncOutcome};
pub use sign::Signer;
pub use verify::{verify, Verified, VerifyOptions};

use serde_json::{Map, Value};

use crate::config::Config;
use crate::identity::Identity;
use crate::project::Project;

/// The ledger's ref.
pub const AUDIT_REF: &str = "refs/chant/audit";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Bad input: an unknown event, details that are not an object, a float.
    #[error("{0}")]
    Invalid(String),
    /// The signing set-up is incomplete or wrong.
    #[error("{0}")]
    SignConfig(String),
    /// The signing program or key failed.
    #[error("signing failed: {0}")]
    SignFailed(String),
    /// Verification found a bad entry.
    #[error("audit ledger broken at commit {commit}: {reason}")]
    Broken { commit: String, reason: String },
    /// The ledger's history was rewritten since it was last verified.
    #[error("{AUDIT_REF} was rewritten: head {head} does not descend from the last verified head {checkpoint}{}{}",
        .first_broken.as_ref().map_or("", |_| "; first broken entry: commit "),
        .first_broken.as_deref().unwrap_or(""))]
    Rewritten {
        head: String,
        checkpoint: String,
        first_broken: Option<String>,
    },
    #[error("cannot verify the audit ledger in a shallow repository: its history is cut off; run `git fetch --unshallow` first")]
    Shallow,
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Contended(String),
    #[error("{0}")]
    Sync(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

impl AuditError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AuditError::Invalid(_) | AuditError::SignConfig(_) => 2,
            _ => 1,
        }
    }
}

/// What an append did: the entries, and sink problems that did not stop it.
#[derive(Debug, Clone)]
pub struct Appended {
    pub entries: Vec<Stored>,
    pub warnings: Vec<String>,
}

/// Appends one entry to the ledger of `project` (and mirrors it to the configured sinks).
pub fn record(
    project: &Project,
    config: &Config,
    identity: &Identity,
    entry: NewEntry,
) -> Result<Entry, AuditError> {
    let mut out = record_batch(project, config, identity, vec![entry])?;
    out.pop()
        .ok_or_else(|| AuditError::Invalid("nothing was recorded".into()))
}

/// Appends several entries with one ref update.
pub fn record_batch(
    project: &Project,
    config: &Config,
    identity: &Identity,
    entries: Vec<NewEntry>,
) -> Result<Vec<Entry>, AuditError> {
    append(project, config, identity, entries)
        .map(|a| a.entries.into_iter().map(|s| s.entry).collect())
}

/// [`record_batch`], returning the commits and the sink warnings too.
pub fn append(
    project: &Project,
    config: &Config,
    identity: &Identity,
    entries: Vec<NewEntry>,
) -> Result<Appended, AuditError> {
    let signer = Signer::from_config(&project.repo, config.audit.sign)?;
    let drafts = entries
        .into_iter()
        .map(|e| draft(identity, e))
        .collect::<Result<Vec<_>, _>>()?;
    let stored = ledger::append(&project.repo, &signer, &drafts)?;
    let warnings = if config.audit.enabled {
        sink::mirror(project.root(), &config.audit, &stored)
    } else {
        Vec::new()
    };
    Ok(Appended {
        entries: stored,
        warnings,
    })
}

/// Appends entries to the ledger of any repository, bare ones included (server hooks
/// recording `push_rejected`): no work tree, so no sinks.
pub fn append_to_repo(
    repo: &git2::Repository,
    sign: crate::config::SignMode,
    identity: &Identity,
    entries: Vec<NewEntry>,
) -> Result<Vec<Stored>, AuditError> {
    let signer = Signer::from_config(repo, sign)?;
    let drafts = entries
        .into_iter()
        .map(|e| draft(identity, e))
        .collect::<Result<Vec<_>, _>>()?;
    ledger::append(repo, &signer, &drafts)
}

/// The current time as entries write it: RFC 3339 UTC, whole seconds, `Z`.
pub fn timestamp() -> String {
    crate::clock::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Turns what a caller asks to record into a draft: adds ts, actor, host and session, and
/// refuses floats.
pub fn draft(identity: &Identity, entry: NewEntry) -> Result<Draft, AuditError> {
    let details = Value::Object(entry.details);
    if let Some(path) = find_float(&details) {
        return Err(AuditError::Invalid(format!(
            "details{path} is a floating-point number; the ledger holds integers only \
             (give durations in whole milliseconds)"
        )));
    }
    let opt = |v: Option<String>| v.map_or(Value::Null, Value::String);
    let mut fields = Map::new();
    fields.insert("ts".into(), Value::String(timestamp()));
    fields.insert("event".into(), Value::String(entry.event.as_str().into()));
    fields.insert("spec_id".into(), opt(entry.spec_id));
    fields.insert("actor".into(), Value::String(identity.actor.to_string()));
    fields.insert("agent".into(), opt(entry.agent));
    fields.insert("sandbox".into(), opt(entry.sandbox));
    fields.insert("host".into(), Value::String(identity.host.to_string()));
    fields.insert(
        "session".into(),
        Value::String(identity.session.to_string()),
    );
    fields.insert("details".into(), details);
    Ok(Draft {
        fields,
        email: identity.email.to_string(),
    })
}

/// The entries reachable from `tip`, oldest first, as JSON values.
pub fn entries_at(
    repo: &git2::Repository,
    tip: Option<git2::Oid>,
) -> Result<Vec<Value>, AuditError> {
    let mut out = ledger::Walk::new(repo, tip)
        .map(|s| s.map(|s| Value::Object(s.entry.0)))
        .collect::<Result<Vec<_>, _>>()?;
    out.reverse();
    Ok(out)
}

/// Verifies the entries a push adds to the ledger: those after `old` up to `new` (all of
/// them when `old` is None), with signatures against the repository's allowed signers when
/// `signed`. Returns the reason of the first broken entry.
pub fn verify_range(
    repo: &git2::Repository,
    old: Option<git2::Oid>,
    new: git2::Oid,
    signed: bool,
) -> Result<(), String> {
    // The first new entry: the one whose parent is `old`.
    let mut from = None;
    if let Some(old) = old {
        let mut at = Some(new);
        while let Some(oid) = at {
            let commit = repo.find_commit(oid).map_err(|e| e.to_string())?;
            let parent = commit.parent_id(0).ok();
            if parent == Some(old) {
                from = Some(oid);
                break;
            }
            at = parent;
        }
        if from.is_none() {
            return Err(format!("the pushed ledger {new} does not extend {old}"));
        }
    }
    let opts = VerifyOptions {
        require_signatures: signed,
        allowed_signers: None,
        from,
        checkpoint: None,
        head: Some(new),
    };
    verify(repo, &opts).map_err(|e| e.to_string())?;
    // `from` starts the range, so verify did not check its link to the entry before it.
    if let (Some(old), Some(first)) = (old, from) {
        let before = ledger::read(repo, old).map_err(|e| e.to_string())?;
        let first = ledger::read(repo, first).map_err(|e| e.to_string())?;
        if first.entry.prev_hash() != before.entry.hash() {
            return Err(AuditError::Broken {
                commit: first.commit.to_string(),
                reason: format!(
                    "prev_hash {} does not match the hash {} of the entry before it (commit {old}): \
                     the pushed entries are not chained onto this ledger",
                    first.entry.prev_hash(),
                    before.entry.hash()
                ),
            }
            .to_string());
        }
    }
    Ok(())
}
