//! Verification of the ledger: every hash recomputed, every `prev_hash` link and the single
//! parent of every commit checked, the first entry's `prev_hash` = 64 zeros, the commit's
//! plain-git view (subject, author, committer, date, tree) in agreement with its entry
//! (`form`), and — when asked — every signature checked in-process against git's
//! allowed-signers file.
//!
//! Works on any `&Repository`, bare ones included, so that server hooks can call it. It
//! remembers the last verified head in a checkpoint file (under `<git dir>/chant/audit/`)
//! so that the next run only looks at new entries and notices a head that no longer
//! descends from it. It never prints and never changes the ledger.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use serde_json::Value;

use super::chain::{self, ZERO_HASH};
use super::entry::FIELDS;
use super::fastcheck;
use super::form;
use super::ledger;
use super::objects::{self, Read, Step};
use super::signers::{check_signature, AllowedSigners};
use super::{AuditError, AUDIT_REF};
use crate::git;

/// What to verify.
#[derive(Debug, Default, Clone)]
pub struct VerifyOptions {
    /// Check every entry's signature.
    pub require_signatures: bool,
    /// The allowed-signers file (default: git config `gpg.ssh.allowedSignersFile`).
    pub allowed_signers: Option<PathBuf>,
    /// Verify from this commit (inclusive) instead of from the checkpoint or the start.
    pub from: Option<Oid>,
    /// Where the last verified head is remembered (`None`: verify everything, remember
    /// nothing).
    pub checkpoint: Option<PathBuf>,
    /// Verify this commit as the head instead of the ref's value (a pushed ledger the
    /// server hook judges before the ref moves).
    pub head: Option<Oid>,
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries checked in this run.
    pub entries: usize,
    /// The head verified.
    pub head: Oid,
    /// The checkpoint this run started after (incremental run), if any.
    pub since: Option<Oid>,
    /// Entries whose signature was checked.
    pub signatures: usize,
}

/// The default checkpoint file of `repo`.
pub fn default_checkpoint(repo: &Repository) -> PathBuf {
    repo.path().join("chant").join("audit").join("verified")
}

struct Checkpoint {
    commit: Oid,
    hash: String,
    signed: bool,
}

fn read_checkpoint(path: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    let commit = Oid::from_str(parts.next()?).ok()?;
    let hash = parts.next()?.to_string();
    let signed = parts.next() == Some("signed");
    chain::is_hash(&hash).then_some(Checkpoint {
        commit,
        hash,
        signed,
    })
}

/// Verifies the ledger of `repo`; see the module docs. Failures are errors naming the first
/// (oldest) broken entry's commit and the reason (exit code 1).
pub fn verify(repo: &Repository, opts: &VerifyOptions) -> Result<Verified, AuditError> {
    if repo.is_shallow() {
        return Err(AuditError::Shallow);
    }
    let checkpoint = opts.checkpoint.as_deref().and_then(read_checkpoint);
    let Some(head) = (match opts.head {
        Some(h) => Some(h),
        None => git::read_ref(repo, AUDIT_REF)?,
    }) else {
        return Err(AuditError::Missing(match &checkpoint {
            Some(c) => format!(
                "{AUDIT_REF} does not exist, but it was verified before at commit {}: \
                 the ledger was deleted",
                c.commit
            ),
            None => format!("{AUDIT_REF} does not exist; `git chant init` creates it"),
        }));
    };
    let signers = if opts.require_signatures {
        Some(AllowedSigners::load(repo, opts.allowed_signers.as_deref())?)
    } else {
        None
    };
    // Where the walk may stop: --from, else a checkpoint good enough for this run.
    let stop = match (opts.from, &checkpoint) {
        (Some(from), _) => Some(from),
        (None, Some(c)) if c.signed || !opts.require_signatures => Some(c.commit),
        _ => None,
    };
    if let Some(from) = opts.from {
        if !walked_through(repo, head, from)? {
            return Err(AuditError::Invalid(format!(
                "--from {from} is not an entry of {AUDIT_REF}"
            )));
        }
    }
    let since = if opts.from.is_none() { stop } else { None };
    if Some(head) == checkpoint.as_ref().map(|c| c.commit) && stop == Some(head) {
        return Ok(Verified {
            entries: 0,
            head,
            since: Some(head),
            signatures: 0,
        });
    }

    // Reading is sequential (each commit names its parent); checking is not, so the walk
    // hands commits to worker threads and the links are checked at the end.
    let git_dir = repo.path().to_path_buf();
    let mut met_checkpoint = checkpoint.is_none();
    let mut stopped_at_checkpoint = false;
    let step = |oid: Oid| {
        if checkpoint.as_ref().is_some_and(|c| c.commit == oid) {
            met_checkpoint = true;
            if opts.from.is_none() && stop == Some(oid) {
                stopped_at_checkpoint = true;
                return Step::Stop;
            }
        }
        if opts.from == Some(oid) {
            Step::TakeLast
        } else {
            Step::Take
        }
    };
    let want_signature = signers.is_some();
    let checked = objects::walk(repo, head, step, |read| {
        check(split(read, want_signature), signers.as_ref(), &git_dir)
    })?;

    // Newest first: a later note is an older entry, so the last one noted is the first
    // broken entry of the ledger.
    let mut broken: Option<(Oid, String)> = None;
    let mut note = |commit: Oid, reason: String| broken = Some((commit, reason));
    let mut signatures = 0usize;
    let count = checked.len();
    for i in 0..count {
        let c = &checked[i];
        if i > 0 {
            let newer = &checked[i - 1];
            if newer.parsed && c.parsed && newer.prev_hash != c.stored_hash {
                note(
                    newer.commit,
                    link_reason(&newer.prev_hash, c.commit, &c.stored_hash),
                );
            }
        }
        if c.signed {
            signatures += 1;
        }
        if c.parents > 1 {
            note(
                c.commit,
                format!(
                    "has {} parents; the ledger is a single line of commits",
                    c.parents
                ),
            );
        }
        if c.parents == 0 && c.parsed && c.prev_hash != ZERO_HASH {
            note(
                c.commit,
                format!(
                    "the first entry's prev_hash is {}, not 64 zeros (entries before it were dropped)",
                    c.prev_hash
                ),
            );
        }
        if let Some(problem) = &c.problem {
            note(c.commit, problem.clone());
        }
    }
    if stopped_at_checkpoint {
        // Verified before: its hash is trusted; only the link to it is checked.
        if let (Some(oldest), Some(cp)) = (checked.last(), &checkpoint) {
            if oldest.parsed && oldest.prev_hash != cp.hash {
                note(
                    oldest.commit,
                    link_reason(&oldest.prev_hash, cp.commit, &cp.hash),
                );
            }
        }
    }
    if !met_checkpoint {
        // A --from walk may stop before reaching the checkpoint: ask git about descent.
        if let (Some(_), Some(c)) = (opts.from, &checkpoint) {
            met_checkpoint = walked_through(repo, head, c.commit)?;
        }
    }
    if !met_checkpoint {
        if let Some(c) = &checkpoint {
            return Err(AuditError::Rewritten {
                head: head.to_string(),
                checkpoint: c.commit.to_string(),
                first_broken: broken.map(|(c, r)| format!("{c}: {r}")),
            });
        }
    }
    if let Some((commit, reason)) = broken {
        return Err(AuditError::Broken {
            commit: commit.to_string(),
            reason,
        });
    }
    if let (Some(path), None) = (&opts.checkpoint, opts.from) {
        let head_entry = ledger::read(repo, head)?;
        let text = format!(
            "{head} {} {}\n",
            head_entry.entry.hash(),
            if signers.is_some() {
                "signed"
            } else {
                "unsigned"
            }
        );
        // The checkpoint is a cache: failing to write it only costs a full run next time.
        let _ = crate::atomic::replace(path, text.as_bytes());
    }
    Ok(Verified {
        entries: count,
        head,
        since,
        signatures,
    })
}

/// A ledger commit split the way git splits it (on a worker thread).
struct Split {
    commit: Oid,
    parents: usize,
    /// Read only when signatures are checked.
    committer_email: String,
    /// The whole commit; its message (subject, blank line, JSON) starts at `message`.
    data: Vec<u8>,
    message: usize,
    /// The `gpgsig` header and the payload it signs (the commit without that header),
    /// read only when signatures are checked.
    signature: Option<(String, Vec<u8>)>,
    /// Something wrong with the object itself, found before the entry is looked at.
    problem: Option<String>,
}

/// What a worker found about one commit.
struct Checked {
    commit: Oid,
    parents: usize,
    parsed: bool,
    stored_hash: String,
    prev_hash: String,
    signed: bool,
    problem: Option<String>,
}

/// Splits a commit's headers from its message and picks out what the checks need.
fn split(raw: Read, want_signature: bool) -> Split {
    let data = &raw.data[..];
    let mut problem = None;
    if !objects::hashes_to(raw.commit, data) {
        problem = Some(objects::NOT_ITS_ID.to_string());
    }
    let split = objects::blank_line(data).unwrap_or(data.len());
    let headers = &data[..split];
    let mut parents = 0;
    let mut first_parent = None;
    let mut committer_email = String::new();
    let mut sig = String::new();
    let mut payload = Vec::new();
    let mut in_sig = false;
    for line in headers.split(|b| *b == b'\n') {
        if in_sig && line.first() == Some(&b' ') {
            sig.push_str(&String::from_utf8_lossy(&line[1..]));
            sig.push('\n');
            continue;
        }
        in_sig = false;
        if let Some(p) = line.strip_prefix(b"parent ") {
            parents += 1;
            if first_parent.is_none() {
                first_parent = std::str::from_utf8(p)
                    .ok()
                    .and_then(|p| Oid::from_str(p).ok());
            }
        } else if let Some(c) = line.strip_prefix(b"committer ").filter(|_| want_signature) {
            let text = String::from_utf8_lossy(c);
            if let (Some(a), Some(b)) = (text.find('<'), text.find('>')) {
                committer_email = text[a + 1..b.max(a + 1)].to_string();
            }
        } else if let Some(first) = line.strip_prefix(b"gpgsig ") {
            in_sig = true;
            sig.push_str(&String::from_utf8_lossy(first));
            sig.push('\n');
            continue;
        } else if line.starts_with(b"gpgsig-sha256 ") {
            in_sig = true;
            continue;
        }
        if want_signature {
            payload.extend_from_slice(line);
            payload.push(b'\n');
        }
    }
    if problem.is_none() && first_parent != raw.parent {
        problem = Some(
            "its headers are not in git's order (tree, then parents), so tools disagree \
             about which commit comes before it"
                .to_string(),
        );
    }
    let signature = if want_signature && !sig.is_empty() {
        payload.extend_from_slice(&data[split + 1..]);
        Some((sig, payload))
    } else {
        None
    };
    Split {
        commit: raw.commit,
        parents,
        committer_email,
        message: (split + 2).min(raw.data.len()),
        data: raw.data,
        signature,
        problem,
    }
}

/// Checks one commit on its own: the entry parses, has the seed's shape, hashes to its
/// `hash`, and (when asked) carries a good signature.
fn check(raw: Split, signers: Option<&AllowedSigners>, git_dir: &Path) -> Checked {
    let mut out = Checked {
        commit: raw.commit,
        parents: raw.parents,
        parsed: false,
        stored_hash: String::new(),
        prev_hash: String::new(),
        signed: false,
        problem: None,
    };
    if let Some(problem) = raw.problem {
        out.problem = Some(problem);
        return out;
    }
    // Fast path: canonical text hashes as it stands; anything else takes the slow path,
    // which names the problem.
    let message = &raw.data[raw.message..];
    let body = objects::body(message);
    if let Some(fast) = body.and_then(fastcheck::check) {
        if let (true, Some(claims)) = (fast.hash_matches(), fast.claims) {
            out.parsed = true;
            out.stored_hash = fast.hash.to_string();
            out.prev_hash = fast.prev_hash.to_string();
            out.problem = form::disagreement(&raw.data, raw.message, &claims);
            if let (Some(signers), None) = (signers, &out.problem) {
                match check_signature(
                    raw.commit,
                    raw.signature.as_ref(),
                    &raw.committer_email,
                    signers,
                    git_dir,
                ) {
                    Ok(()) => out.signed = true,
                    Err(reason) => out.problem = Some(reason),
                }
            }
            return out;
        }
    }
    match ledger::parse_message(message) {
        Err(reason) => out.problem = Some(reason),
        Ok(entry) => {
            out.parsed = true;
            out.stored_hash = entry.hash().to_string();
            out.prev_hash = entry.prev_hash().to_string();
            if let Some(reason) = shape_problem(&entry.0) {
                out.problem = Some(reason);
            } else {
                let mut map = entry.0;
                map.remove("hash");
                let computed = chain::entry_hash(&map);
                if computed != out.stored_hash {
                    out.problem = Some(format!(
                        "hash mismatch: the entry says {} but its content hashes to {computed} \
                         (the entry was edited)",
                        out.stored_hash
                    ));
                } else if body.is_some_and(|b| !is_canonical_text(b, &map, &out.stored_hash)) {
                    out.problem = Some(
                        "the entry's JSON is not in canonical form (sorted keys, no whitespace, \
                         minimal escaping), so other tools would compute a different hash"
                            .into(),
                    );
                } else {
                    let text = |key: &str| map.get(key).and_then(Value::as_str);
                    let claims = form::Claims {
                        ts: text("ts").unwrap_or_default(),
                        event: text("event").unwrap_or_default(),
                        spec_id: text("spec_id"),
                        actor: text("actor").unwrap_or_default(),
                    };
                    out.problem = form::disagreement(&raw.data, raw.message, &claims);
                }
            }
        }
    }
    if let Some(signers) = signers {
        match check_signature(
            raw.commit,
            raw.signature.as_ref(),
            &raw.committer_email,
            signers,
            git_dir,
        ) {
            Ok(()) => out.signed = true,
            Err(reason) => {
                if out.problem.is_none() {
                    out.problem = Some(reason);
                }
            }
        }
    }
    out
}

/// Whether `body` is exactly the canonical text of `map` plus its `hash`.
fn is_canonical_text(body: &str, map: &serde_json::Map<String, Value>, hash: &str) -> bool {
    let mut full = map.clone();
    full.insert("hash".into(), Value::String(hash.to_string()));
    chain::canonical(&full) == body
}

fn walked_through(repo: &Repository, head: Oid, target: Oid) -> Result<bool, AuditError> {
    Ok(head == target || repo.graph_descendant_of(head, target)?)
}

fn link_reason(prev: &str, parent: Oid, parent_hash: &str) -> String {
    format!(
        "prev_hash {prev} does not match the hash {parent_hash} of the entry before it \
         (commit {parent}): an entry was dropped, inserted or reordered"
    )
}

/// Whether the entry has the seed's shape: every key, strings where strings belong,
/// `details` an object, no floats.
fn shape_problem(map: &serde_json::Map<String, Value>) -> Option<String> {
    for key in FIELDS {
        let Some(value) = map.get(*key) else {
            return Some(format!("the entry has no '{key}' field"));
        };
        let ok = match *key {
            "details" => value.is_object(),
            "spec_id" | "agent" | "sandbox" => value.is_string() || value.is_null(),
            "hash" | "prev_hash" => value.as_str().is_some_and(chain::is_hash),
            _ => value.is_string(),
        };
        if !ok {
            return Some(format!("the entry's '{key}' field has the wrong type"));
        }
    }
    map.iter()
        .find_map(|(k, v)| chain::find_float(v).map(|p| format!(".{k}{p}")))
        .map(|path| format!("the entry holds a floating-point number at {path}"))
}
