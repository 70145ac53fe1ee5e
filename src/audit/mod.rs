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
    append(&project.repo, identity, entries)
}

/// Appends entries to the ledger of `repo` (bare repositories too).
pub fn append(
    repo: &git2::Repository,
    identity: &Identity,
    entries: Vec<NewEntry>,
) -> Result<Vec<Entry>, AuditError> {
    use sha2::Digest;
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

fn entry_of(commit: &git2::Commit<'_>) -> Result<serde_json::Value, String> {
    let msg = commit.message().unwrap_or_default();
    let line = msg
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("no JSON entry in the message")?;
    serde_json::from_str(line).map_err(|e| e.to_string())
}

/// The entries reachable from `tip`, oldest first.
pub fn entries_at(
    repo: &git2::Repository,
    tip: Option<git2::Oid>,
) -> Result<Vec<serde_json::Value>, AuditError> {
    let mut out = Vec::new();
    let mut next = tip;
    while let Some(oid) = next {
        let commit = repo.find_commit(oid)?;
        out.push(entry_of(&commit).map_err(AuditError::Invalid)?);
        next = commit.parent_ids().next();
    }
    out.reverse();
    Ok(out)
}

/// Checks the entries after `from` up to `to`: single parents, hashes, links.
pub fn verify_range(
    repo: &git2::Repository,
    from: Option<git2::Oid>,
    to: git2::Oid,
    _signed: bool,
) -> Result<(), String> {
    use sha2::Digest;
    let mut chain = Vec::new();
    let mut next = Some(to);
    while let Some(oid) = next {
        if Some(oid) == from {
            break;
        }
        let commit = repo.find_commit(oid).map_err(|e| e.to_string())?;
        if commit.parent_count() > 1 {
            return Err(format!(
                "entry {oid} has {} parents; the ledger is linear",
                commit.parent_count()
            ));
        }
        chain.push((oid, entry_of(&commit)?));
        next = commit.parent_ids().next();
    }
    if next.is_none() && from.is_some() {
        return Err("the new ledger does not contain the old one".into());
    }
    chain.reverse();
    let mut prev = match from {
        Some(f) => entry_of(&repo.find_commit(f).map_err(|e| e.to_string())?)?["hash"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        None => "0".repeat(64),
    };
    for (oid, entry) in chain {
        let mut e = entry.clone();
        let hash = e
            .as_object_mut()
            .and_then(|m| m.remove("hash"))
            .and_then(|h| h.as_str().map(str::to_string))
            .unwrap_or_default();
        let canonical = serde_json::to_string(&e).map_err(|e| e.to_string())?;
        if hex(&sha2::Sha256::digest(canonical.as_bytes())) != hash {
            return Err(format!("entry {oid}: hash does not match its content"));
        }
        if entry["prev_hash"] != prev.as_str() {
            return Err(format!(
                "entry {oid}: prev_hash does not link to the previous entry"
            ));
        }
        prev = hash;
    }
    Ok(())
}
