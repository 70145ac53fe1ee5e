//! Shipping the ledger to a remote store (`audit.ship_to`): S3 and GCS objects
//! ([`object`]), Elasticsearch's `_bulk` API ([`elasticsearch`]) and Splunk's HTTP Event
//! Collector ([`splunk`]).
//!
//! Entries go oldest first, in batches, at least once: a cursor file under `.git/chant/`
//! (written whole, [`crate::atomic::replace`]) holds the last entry a target acknowledged,
//! and moves only after a batch is acknowledged. A batch that fails after its retries stops
//! the run with the cursor at the last acknowledged batch, so the next run resends exactly
//! what was not acknowledged. Ids come from the entry hash (object key, `_id`, a `hash`
//! field), so a resent entry overwrites itself where the target can (S3, GCS, Elasticsearch);
//! Splunk HEC keeps every event it is sent, so a batch resent after a lost acknowledgement
//! shows twice there, with the same `hash`.
//!
//! The ledger ref is never touched here: shipping failing loses nothing. Nothing prints.

mod cursor;
pub mod elasticsearch;
pub mod object;
pub mod splunk;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{Oid, Repository};

use super::ledger::{self, Stored};
use super::AuditError;
use crate::config::{ShipTo, ShipType};

pub use cursor::Cursor;

/// Why shipping did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// `audit.ship_to` is absent.
    #[error("audit.ship_to is not set in .chant/config.md; nothing to ship to (see docs/team.md)")]
    NotConfigured,
    /// The target is set up wrong (a missing variable, a bad URL): fix and run again.
    #[error("audit.ship_to ({target}): {reason}")]
    Setup { target: String, reason: String },
    /// The target failed or refused a batch after the retries. The cursor stays at the last
    /// acknowledged entry; `git chant audit ship` sends the rest later.
    #[error("shipping to {target} failed after {sent} of {pending} pending entries: {reason}; nothing is lost: the ledger is whole and `git chant audit ship` resumes from entry {resume}")]
    Target {
        target: String,
        reason: String,
        sent: usize,
        pending: usize,
        resume: usize,
    },
    /// The ledger no longer holds the last shipped entry (its history was rewritten).
    #[error("{} was rewritten: the last entry shipped to {target} (commit {commit}) is no longer in its history; check the ledger with `git chant audit verify`, then remove {} to ship everything again", super::AUDIT_REF, .cursor.display())]
    Rewritten {
        target: String,
        commit: String,
        cursor: PathBuf,
    },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl ShipError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ShipError::NotConfigured | ShipError::Setup { .. } => 2,
            ShipError::Audit(e) => e.exit_code(),
            _ => 1,
        }
    }
}

/// How to ship: batch size and retries (defaults for the CLI; tests make them small).
#[derive(Debug, Clone)]
pub struct Options {
    /// Entries per request (S3/GCS: objects put concurrently per batch).
    pub batch: usize,
    /// Attempts per batch before giving up (at least 1).
    pub attempts: u32,
    /// The first retry waits about this long, doubling after, with ±50% jitter.
    pub backoff: Duration,
    /// Count what is pending and send nothing.
    pub dry_run: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch: 100,
            attempts: 4,
            backoff: Duration::from_millis(250),
            dry_run: false,
        }
    }
}

/// What a run shipped (or, dry, would ship).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipped {
    /// The target, as people read it: `s3://bucket/prefix`, `elasticsearch https://…/index`.
    pub target: String,
    /// Entries sent (or pending, on a dry run).
    pub count: usize,
    /// Requests (batches) sent.
    pub batches: usize,
    /// The hash of the last entry sent (or pending).
    pub last_hash: Option<String>,
}

/// An entry to send and its position in the ledger (1 for the first entry ever).
pub(crate) struct Item<'a> {
    pub seq: usize,
    pub stored: &'a Stored,
}

/// A failed send: why, and whether trying again may help.
#[derive(Debug)]
pub(crate) struct Failure {
    pub reason: String,
    pub retry: bool,
}

impl Failure {
    pub fn retry(reason: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            retry: true,
        }
    }
    pub fn fatal(reason: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            retry: false,
        }
    }
    /// From an HTTP status: 408, 429 and 5xx are worth retrying, other refusals are not.
    pub fn http(status: u16, reason: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            retry: status == 408 || status == 429 || status >= 500,
        }
    }
}

/// One configured target, ready to send.
enum Target {
    Object(object::ObjectTarget),
    Elasticsearch(elasticsearch::Elasticsearch),
    Splunk(splunk::Splunk),
}

impl Target {
    fn new(to: &ShipTo, env: &HashMap<String, String>) -> Result<Target, String> {
        Ok(match to.kind {
            ShipType::S3 | ShipType::Gcs => Target::Object(object::ObjectTarget::new(to, env)?),
            ShipType::Elasticsearch => {
                Target::Elasticsearch(elasticsearch::Elasticsearch::new(to, env)?)
            }
            ShipType::Splunk => Target::Splunk(splunk::Splunk::new(to, env)?),
        })
    }

    async fn send(&self, batch: &[Item<'_>]) -> Result<(), Failure> {
        match self {
            Target::Object(t) => t.send(batch).await,
            Target::Elasticsearch(t) => t.send(batch).await,
            Target::Splunk(t) => t.send(batch).await,
        }
    }
}

/// The target as people read it (also the cursor's key: a new target starts from the
/// first entry).
pub fn describe(to: &ShipTo) -> String {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    match to.kind {
        ShipType::S3 | ShipType::Gcs => {
            let prefix = object::prefix(to);
            let sep = if prefix.is_empty() { "" } else { "/" };
            format!("{}://{}{sep}{prefix}", to.kind, opt(&to.bucket))
        }
        ShipType::Elasticsearch => format!(
            "elasticsearch {}/{}",
            opt(&to.url).trim_end_matches('/'),
            elasticsearch::index(to)
        ),
        ShipType::Splunk => format!("splunk {}", opt(&to.url).trim_end_matches('/')),
    }
}

/// The cursor file of a repository (`.git/chant/ship-cursor.json`).
pub fn cursor_path(repo: &Repository) -> PathBuf {
    repo.path().join("chant").join("ship-cursor.json")
}

/// Ships what is pending in `repo`'s ledger to `to`. `env` holds the platform variables
/// (the process environment, in the CLI).
pub fn ship(
    repo: &Repository,
    to: &ShipTo,
    env: &HashMap<String, String>,
    options: &Options,
) -> Result<Shipped, ShipError> {
    let target_name = describe(to);
    let cursor_file = cursor_path(repo);
    let cursor = Cursor::load(&cursor_file, &target_name)?;
    let pending = pending(repo, cursor.as_ref(), &target_name, &cursor_file)?;
    let mut shipped = Shipped {
        target: target_name.clone(),
        count: 0,
        batches: 0,
        last_hash: None,
    };
    if options.dry_run || pending.is_empty() {
        shipped.count = pending.len();
        shipped.last_hash = pending.last().map(|s| s.entry.hash().to_string());
        return Ok(shipped);
    }
    let target = Target::new(to, env).map_err(|reason| ShipError::Setup {
        target: target_name.clone(),
        reason,
    })?;
    let already = cursor.as_ref().map_or(0, |c| c.shipped);
    let total = pending.len();
    let batch = options.batch.max(1);
    let items: Vec<Item<'_>> = pending
        .iter()
        .enumerate()
        .map(|(i, stored)| Item {
            seq: already + i + 1,
            stored,
        })
        .collect();
    let run = async {
        for chunk in items.chunks(batch) {
            send_with_retry(&target, chunk, options)
                .await
                .map_err(|reason| ShipError::Target {
                    target: target_name.clone(),
                    reason,
                    sent: shipped.count,
                    pending: total,
                    resume: already + shipped.count + 1,
                })?;
            let Some(last) = chunk.last().map(|i| i.stored) else {
                continue;
            };
            shipped.count += chunk.len();
            shipped.batches += 1;
            shipped.last_hash = Some(last.entry.hash().to_string());
            Cursor {
                target: target_name.clone(),
                commit: last.commit.to_string(),
                hash: last.entry.hash().to_string(),
                shipped: already + shipped.count,
            }
            .save(&cursor_file)?;
        }
        Ok::<_, ShipError>(())
    };
    crate::net::block_on(run).map_err(|reason| ShipError::Setup {
        target: target_name.clone(),
        reason,
    })??;
    Ok(shipped)
}

/// Sends one batch, retrying what may pass later with jittered exponential backoff.
async fn send_with_retry(
    target: &Target,
    batch: &[Item<'_>],
    options: &Options,
) -> Result<(), String> {
    let attempts = options.attempts.max(1);
    let mut wait = options.backoff;
    let mut attempt = 1;
    loop {
        match target.send(batch).await {
            Ok(()) => return Ok(()),
            Err(f) if !f.retry || attempt >= attempts => {
                return Err(if attempt > 1 {
                    format!("{} (after {attempt} attempts)", f.reason)
                } else {
                    f.reason
                })
            }
            Err(_) => {
                tokio::time::sleep(jitter(wait)).await;
                wait = wait.saturating_mul(2);
                attempt += 1;
            }
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.5), so many clients do not retry in step.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b) as f64 / 65536.0
    } else {
        0.5
    };
    d.mul_f64(0.5 + r)
}

/// The entries after the cursor, oldest first.
fn pending(
    repo: &Repository,
    cursor: Option<&Cursor>,
    target: &str,
    cursor_file: &Path,
) -> Result<Vec<Stored>, ShipError> {
    let head = ledger::head(repo)?;
    let stop = match cursor {
        None => None,
        Some(c) => Some(Oid::from_str(&c.commit).map_err(|_| ShipError::Rewritten {
            target: target.to_string(),
            commit: c.commit.clone(),
            cursor: cursor_file.to_path_buf(),
        })?),
    };
    let mut out = Vec::new();
    let mut found = stop.is_none();
    for stored in ledger::Walk::new(repo, head) {
        let stored = stored?;
        if Some(stored.commit) == stop {
            found = true;
            break;
        }
        out.push(stored);
    }
    if !found {
        return Err(ShipError::Rewritten {
            target: target.to_string(),
            commit: cursor.map(|c| c.commit.clone()).unwrap_or_default(),
            cursor: cursor_file.to_path_buf(),
        });
    }
    out.reverse();
    Ok(out)
}

/// The entry as a target receives it: the ledger's JSON object plus the ledger commit and
/// the entry's position in the ledger.
pub(crate) fn document(item: &Item<'_>) -> serde_json::Value {
    let mut map = item.stored.entry.0.clone();
    map.insert(
        "ledger_commit".into(),
        serde_json::Value::String(item.stored.commit.to_string()),
    );
    map.insert(
        "ledger_seq".into(),
        serde_json::Value::from(item.seq as u64),
    );
    serde_json::Value::Object(map)
}

/// The value of the variable `token_env` names, required when it is set.
pub(crate) fn token(to: &ShipTo, env: &HashMap<String, String>) -> Result<Option<String>, String> {
    match &to.token_env {
        None => Ok(None),
        Some(name) => match env.get(name).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Some(v.clone())),
            None => Err(format!(
                "the variable {name} (audit.ship_to.token_env) is not set; export it with the token"
            )),
        },
    }
}

/// The process environment as text (entries that are not UTF-8 are skipped).
pub fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Shipping at the end of `work`: None when `audit.ship_to` is unset, else what [`ship`]
/// did with the process environment and two attempts per batch (a target that is down
/// delays the run's end by seconds, not minutes). The caller reports; a failure must not
/// fail the run (the entries stay pending for the next ship).
pub fn after_run(
    repo: &Repository,
    config: &crate::config::Config,
) -> Option<Result<Shipped, ShipError>> {
    let to = config.audit.ship_to.as_ref()?;
    let options = Options {
        attempts: 2,
        ..Options::default()
    };
    Some(ship(repo, to, &process_env(), &options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(kind: ShipType) -> ShipTo {
        ShipTo {
            kind,
            bucket: Some("logs".into()),
            prefix: Some("/chant/".into()),
            url: Some("https://es.example.com:9200/".into()),
            index: None,
            token_env: None,
        }
    }

    #[test]
    fn targets_read_as_people_name_them() {
        assert_eq!(describe(&to(ShipType::S3)), "s3://logs/chant");
        assert_eq!(describe(&to(ShipType::Gcs)), "gcs://logs/chant");
        assert_eq!(
            describe(&to(ShipType::Elasticsearch)),
            "elasticsearch https://es.example.com:9200/chant-audit"
        );
        let mut bare = to(ShipType::S3);
        bare.prefix = None;
        assert_eq!(describe(&bare), "s3://logs");
    }

    #[test]
    fn jitter_stays_within_half_to_one_and_a_half() {
        let d = Duration::from_millis(1000);
        for _ in 0..200 {
            let j = jitter(d);
            assert!(j >= Duration::from_millis(500) && j < Duration::from_millis(1500));
        }
    }

    #[test]
    fn only_transient_http_failures_are_retried() {
        for (status, retry) in [(500, true), (503, true), (429, true), (408, true)] {
            assert_eq!(Failure::http(status, "x").retry, retry, "{status}");
        }
        for status in [400, 401, 403, 404, 413] {
            assert!(!Failure::http(status, "x").retry, "{status}");
        }
    }
}
