//! The ledger's storage on `refs/chant/audit`: one commit per entry, appended by
//! compare-and-swap, and read back.
//!
//! A commit is built by hand (the object format is five header lines), which spares a
//! parent lookup per entry so a batch of thousands stays fast; it carries the empty tree,
//! because the entry lives in the message and a tree would add an object per entry for
//! nothing. Author and committer are the actor with the entry's `ts` as date.
//!
//! Appends write every new object first and then swap the ref in one step, so a crash at
//! any instant leaves the ref on a complete chain (at worst some unreachable objects that
//! `git gc` collects). This module never prints and takes no lock file.

use git2::{ObjectType, Oid, Repository};
use serde_json::{Map, Value};

use super::chain::{self, ZERO_HASH};
use super::form;
use super::objects::{self, Objects};
use super::pack;
use super::sign::Signer;
use super::{AuditError, Entry, AUDIT_REF};
use crate::git::{self, CasError};

/// An entry ready to be chained: every field but `prev_hash`/`hash`, and the e-mail that
/// goes with its actor in the commit's author line.
#[derive(Debug, Clone)]
pub struct Draft {
    pub fields: Map<String, Value>,
    pub email: String,
}

/// An entry as stored: its commit and its JSON.
#[derive(Debug, Clone)]
pub struct Stored {
    pub commit: Oid,
    pub entry: Entry,
}

/// Appends `drafts` on top of the current head with one compare-and-swap, rebuilding on
/// top of a newer head when another writer got there first.
pub fn append(
    repo: &Repository,
    signer: &Signer,
    drafts: &[Draft],
) -> Result<Vec<Stored>, AuditError> {
    append_to(repo, AUDIT_REF, signer, drafts)
}

/// [`append`] to another ref (sync re-chains on a scratch ref first).
pub fn append_to(
    repo: &Repository,
    refname: &str,
    signer: &Signer,
    drafts: &[Draft],
) -> Result<Vec<Stored>, AuditError> {
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let tree = repo.treebuilder(None)?.write()?;
    let message = format!("chant audit: append {} entries", drafts.len());
    let result = git::update_ref(repo, refname, &message, |head| {
        let prev = match head {
            Some(oid) => Some((oid, read(repo, oid)?.entry.hash().to_string())),
            None => None,
        };
        let stored = build_chain(repo, signer, tree, prev, drafts)?;
        let tip = stored.last().map(|s| s.commit).unwrap_or_else(Oid::zero);
        Ok::<_, AuditError>(Some((tip, stored)))
    });
    match result {
        Ok(Some(stored)) => Ok(stored),
        Ok(None) => Ok(Vec::new()),
        Err(CasError::Build(e)) => Err(e),
        Err(CasError::Git(e)) => Err(AuditError::Git(e)),
        Err(e @ CasError::Contended { .. }) => Err(AuditError::Contended(e.to_string())),
    }
}

/// From this many entries on, a batch is written as one pack file instead of one loose
/// object per entry (thousands of small files cost more than the entries themselves).
const PACK_THRESHOLD: usize = 256;

/// Writes the commits for `drafts` chained after `prev` (commit and hash), without moving
/// any ref. Returns them oldest first.
pub fn build_chain(
    repo: &Repository,
    signer: &Signer,
    tree: Oid,
    prev: Option<(Oid, String)>,
    drafts: &[Draft],
) -> Result<Vec<Stored>, AuditError> {
    if drafts.len() < PACK_THRESHOLD {
        let odb = repo.odb()?;
        return build_with(signer, tree, prev, drafts, |bytes| {
            Ok(odb.write(ObjectType::Commit, bytes)?)
        });
    }
    // One pack file for the whole batch, handed to git's indexer: the objects are complete
    // on disk before any ref points at them.
    let mut pack = pack::Writer::new(drafts.len());
    let stored = build_with(signer, tree, prev, drafts, |bytes| {
        pack.add_commit(bytes).map_err(|e| AuditError::Io {
            path: repo.path().join("objects").join("pack"),
            source: e,
        })
    })?;
    let bytes = pack.finish();
    let odb = repo.odb()?;
    let mut writer = odb.packwriter()?;
    std::io::Write::write_all(&mut writer, &bytes).map_err(|e| AuditError::Io {
        path: repo.path().join("objects").join("pack"),
        source: e,
    })?;
    writer.commit()?;
    Ok(stored)
}

fn build_with(
    signer: &Signer,
    tree: Oid,
    prev: Option<(Oid, String)>,
    drafts: &[Draft],
    mut write: impl FnMut(&[u8]) -> Result<Oid, AuditError>,
) -> Result<Vec<Stored>, AuditError> {
    let (mut parent, mut prev_hash) = match prev {
        Some((oid, hash)) => (Some(oid), hash),
        None => (None, ZERO_HASH.to_string()),
    };
    let mut out = Vec::with_capacity(drafts.len());
    for draft in drafts {
        let mut fields = draft.fields.clone();
        chain::seal(&mut fields, &prev_hash);
        let entry = Entry(fields);
        let payload = commit_payload(tree, parent, &entry, &draft.email)?;
        let bytes = match signer.sign(payload.as_bytes())? {
            None => payload,
            Some(sig) => insert_signature(&payload, &sig),
        };
        let oid = write(bytes.as_bytes())?;
        prev_hash = entry.hash().to_string();
        parent = Some(oid);
        out.push(Stored { commit: oid, entry });
    }
    Ok(out)
}

/// The unsigned commit object text for `entry` (its format: `form`).
fn commit_payload(
    tree: Oid,
    parent: Option<Oid>,
    entry: &Entry,
    email: &str,
) -> Result<String, AuditError> {
    let ident = form::ident(entry.actor(), email, entry.ts()).map_err(AuditError::Invalid)?;
    let mut text = String::with_capacity(512);
    text.push_str("tree ");
    text.push_str(&tree.to_string());
    text.push('\n');
    if let Some(p) = parent {
        text.push_str("parent ");
        text.push_str(&p.to_string());
        text.push('\n');
    }
    text.push_str("author ");
    text.push_str(&ident);
    text.push_str("\ncommitter ");
    text.push_str(&ident);
    text.push_str("\n\n");
    text.push_str(&entry.subject());
    text.push_str("\n\n");
    // No newline after the JSON: `git log --format=%b` then prints exactly one JSON
    // line per entry, with no blank lines between them.
    text.push_str(&chain::canonical(&entry.0));
    Ok(text)
}

/// Adds a `gpgsig` header (continuation lines start with a space), as `git commit -S` does.
fn insert_signature(payload: &str, signature: &str) -> String {
    let split = payload.find("\n\n").unwrap_or(payload.len());
    let (headers, rest) = payload.split_at(split);
    let sig = signature.trim_end_matches('\n').replace('\n', "\n ");
    format!("{headers}\ngpgsig {sig}{rest}")
}

/// Reads and parses the entry stored in `commit`.
pub fn read(repo: &Repository, commit: Oid) -> Result<Stored, AuditError> {
    read_linked(&mut Objects::open(repo)?, commit).map(|(stored, _)| stored)
}

/// [`read`] through `objects` (for many reads), with the commit's parent (`None` for the
/// first entry).
pub fn read_linked(
    objects: &mut Objects<'_>,
    commit: Oid,
) -> Result<(Stored, Option<Oid>), AuditError> {
    let mut data = Vec::new();
    let broken = |reason: String| AuditError::Broken {
        commit: commit.to_string(),
        reason,
    };
    let kind = objects.read(commit, &mut data)?;
    if kind != ObjectType::Commit {
        return Err(objects::not_a_commit(commit, kind));
    }
    if !objects::hashes_to(commit, &data) {
        return Err(broken(objects::NOT_ITS_ID.into()));
    }
    let entry = parse_message(objects::message(&data)).map_err(broken)?;
    Ok((Stored { commit, entry }, objects::first_parent(&data)))
}

/// The entry in a ledger commit message: the JSON object after the subject's blank line.
pub fn parse_message(message: &[u8]) -> Result<Entry, String> {
    let body = match objects::blank_line(message) {
        Some(i) => &message[i + 2..],
        None => return Err("the commit message has no JSON body".into()),
    };
    let body = std::str::from_utf8(body).map_err(|_| "the entry is not UTF-8".to_string())?;
    let body = body.trim_end_matches('\n');
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => Ok(Entry(map)),
        Ok(_) => Err("the commit body is not a JSON object".into()),
        Err(e) => Err(format!("the commit body is not valid JSON: {e}")),
    }
}

/// The current head of the ledger, if any.
pub fn head(repo: &Repository) -> Result<Option<Oid>, AuditError> {
    Ok(git::read_ref(repo, AUDIT_REF)?)
}

/// Walks the ledger newest first from `from`, following the single parent.
pub struct Walk<'r> {
    repo: &'r Repository,
    next: Option<Oid>,
    loops: objects::LoopCheck,
}

impl<'r> Walk<'r> {
    pub fn new(repo: &'r Repository, from: Option<Oid>) -> Self {
        Walk {
            repo,
            next: from,
            loops: objects::LoopCheck::default(),
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<Stored, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        let oid = self.next.take()?;
        if let Err(e) = self.loops.visit(oid) {
            return Some(Err(e));
        }
        let commit = match self.repo.find_commit(oid) {
            Ok(c) => c,
            Err(e) => return Some(Err(e.into())),
        };
        self.next = commit.parent_id(0).ok();
        Some(
            parse_message(commit.message_bytes())
                .map(|entry| Stored { commit: oid, entry })
                .map_err(|reason| AuditError::Broken {
                    commit: oid.to_string(),
                    reason,
                }),
        )
    }
}

/// The author e-mail of a ledger commit (kept when sync re-chains it).
pub fn author_email(repo: &Repository, commit: Oid) -> Result<String, AuditError> {
    let c = repo.find_commit(commit)?;
    let email = c.author().email().unwrap_or("unknown").to_string();
    Ok(email)
}
