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

/// Appends several entries with one ref update (interim: unsigned, no sinks).
pub fn record_batch(
    project: &Project,
    _config: &Config,
    identity: &Identity,
    entries: Vec<NewEntry>,
) -> Result<Vec<Entry>, AuditError> {
    use sha2::Digest;
    let repo = &project.repo;
    loop {
        let head = repo.refname_to_id(AUDIT_REF).ok();
        let mut prev_hash = match head {
            Some(oid) => {
                let msg = repo
                    .find_commit(oid)?
                    .message()
                    .unwrap_or_default()
                    .to_string();
                let json = msg.lines().last().unwrap_or_default();
                let v: serde_json::Value =
                    serde_json::from_str(json).map_err(|e| AuditError::Invalid(e.to_string()))?;
                v["hash"].as_str().unwrap_or_default().to_string()
            }
            None => "0".repeat(64),
        };
        let tree = repo.find_tree(repo.treebuilder(None)?.write()?)?;
        let mut parent = head;
        let mut out = Vec::new();
        for e in &entries {
            let mut map = serde_json::Map::new();
            map.insert(
                "ts".into(),
                crate::clock::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    .into(),
            );
            map.insert("event".into(), e.event.as_str().into());
            map.insert("spec_id".into(), e.spec_id.clone().into());
            map.insert("actor".into(), identity.actor.clone().into());
            map.insert("agent".into(), e.agent.clone().into());
            map.insert("sandbox".into(), e.sandbox.clone().into());
            map.insert("host".into(), identity.host.clone().into());
            map.insert("session".into(), identity.session.clone().into());
            map.insert(
                "details".into(),
                serde_json::Value::Object(e.details.clone()),
            );
            map.insert("prev_hash".into(), prev_hash.clone().into());
            let canonical =
                serde_json::to_string(&map).map_err(|e| AuditError::Invalid(e.to_string()))?;
            let hash = hex(&sha2::Sha256::digest(canonical.as_bytes()));
            map.insert("hash".into(), hash.clone().into());
            let body =
                serde_json::to_string(&map).map_err(|e| AuditError::Invalid(e.to_string()))?;
            let message = format!(
                "{} {} by {}\n\n{body}\n",
                e.event.as_str(),
                e.spec_id.as_deref().unwrap_or("-"),
                identity.actor
            );
            let sig = git2::Signature::now(&identity.actor, &identity.email)?;
            let parents: Vec<git2::Commit<'_>> = parent
                .map(|p| repo.find_commit(p))
                .transpose()?
                .into_iter()
                .collect();
            let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
            parent = Some(repo.commit(None, &sig, &sig, &message, &tree, &refs)?);
            prev_hash = hash;
            out.push(Entry(map));
        }
        let Some(new) = parent else { return Ok(out) };
        match crate::git::update_ref(repo, AUDIT_REF, new, head, "chant: audit") {
            Ok(()) => return Ok(out),
            Err(e)
                if matches!(
                    e.code(),
                    git2::ErrorCode::Modified | git2::ErrorCode::Exists | git2::ErrorCode::Locked
                ) =>
            {
                continue
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
