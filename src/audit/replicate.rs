//! Replication of the ledger between clones: the fetch refspec that carries `refs/chant/*`
//! (never forced), and `sync`, which re-chains unpublished local entries on top of the
//! published head and pushes.
//!
//! Transport is git's own (`git fetch` / `git push` run as child processes), so the user's
//! credentials, helpers and SSH set-up apply. The ledger is only ever fast-forwarded, here
//! and on the remote: nothing is forced. Re-chained entries keep every field but
//! `prev_hash` and `hash` (their original commits stay in the local reflog). Entries fetched
//! from the remote are verified before they are adopted or built upon. This module never
//! prints.

use std::process::Command;

use git2::{Oid, Repository};

use super::ledger::{self, Draft};
use super::sign::Signer;
use super::{AuditError, AUDIT_REF};
use crate::git;

/// The fetch refspec for `remote` (no `+`: a rewritten remote ledger is refused).
pub fn fetch_refspec(remote: &str) -> String {
    format!("refs/chant/*:refs/remotes/{remote}/chant/*")
}

/// The remote-tracking ref of `remote`'s ledger.
pub fn tracking_ref(remote: &str) -> String {
    format!("refs/remotes/{remote}/chant/audit")
}

/// Adds the ledger fetch refspec to every remote that lacks it. Returns one line per
/// change (empty when nothing changed). `remote.*.push` is left alone on purpose: setting
/// it would stop a plain `git push` from pushing the current branch.
pub fn configure_replication(repo: &Repository) -> Result<Vec<String>, AuditError> {
    let mut changes = Vec::new();
    let remotes = repo.remotes()?;
    for name in remotes.iter().flatten() {
        let spec = fetch_refspec(name);
        let remote = repo.find_remote(name)?;
        let present = remote.fetch_refspecs()?.iter().flatten().any(|s| s == spec);
        if !present {
            repo.remote_add_fetch(name, &spec)?;
            changes.push(format!("remote {name} now fetches {spec}"));
        }
    }
    Ok(changes)
}

/// What `sync` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Local entries re-chained on top of the remote head.
    pub rechained: usize,
    /// The local ledger was fast-forwarded to the remote one.
    pub fast_forwarded: bool,
    /// The local ledger was pushed.
    pub pushed: bool,
    /// The ledger head after sync.
    pub head: Option<Oid>,
}

/// Fetches `remote`'s ledger, re-chains unpublished local entries on top of it when both
/// moved, and pushes (never forced). Retries when another clone pushes in between.
pub fn sync(repo: &Repository, signer: &Signer, remote: &str) -> Result<SyncOutcome, AuditError> {
    let tracking = tracking_ref(remote);
    let mut outcome = SyncOutcome::default();
    for _attempt in 0..5 {
        fetch(repo, remote, &tracking)?;
        let local = git::read_ref(repo, AUDIT_REF)?;
        let published = git::read_ref(repo, &tracking)?;
        if let Some(p) = published {
            take_in(repo, remote, local, p)?;
        }
        let (local, published) = match (local, published) {
            (None, None) => return Ok(outcome),
            (None, Some(p)) => {
                if git::compare_and_swap(repo, AUDIT_REF, p, None, "chant audit sync: adopt")? {
                    outcome.fast_forwarded = true;
                    outcome.head = Some(p);
                    return Ok(outcome);
                }
                continue;
            }
            (Some(l), None) => (l, None),
            (Some(l), Some(p)) => (l, Some(p)),
        };
        outcome.head = Some(local);
        let tip = match published {
            None => local,
            Some(p) if p == local => return Ok(outcome),
            Some(p) if repo.graph_descendant_of(p, local)? => {
                if git::compare_and_swap(
                    repo,
                    AUDIT_REF,
                    p,
                    Some(local),
                    "chant audit sync: fast-forward",
                )? {
                    outcome.fast_forwarded = true;
                    outcome.head = Some(p);
                    return Ok(outcome);
                }
                continue;
            }
            Some(p) if repo.graph_descendant_of(local, p)? => local,
            Some(p) => match rechain(repo, signer, local, p)? {
                Some((tip, n)) => {
                    outcome.rechained += n;
                    tip
                }
                None => continue, // a local append raced us; start over
            },
        };
        outcome.head = Some(tip);
        if push(repo, remote)? {
            outcome.pushed = true;
            return Ok(outcome);
        }
    }
    Err(AuditError::Sync(format!(
        "{remote} kept moving: gave up after 5 attempts; run `git chant audit sync` again"
    )))
}

/// Verifies the entries of `published` that `local` lacks before any of them is adopted or
/// built upon: hashes, links, and each commit's plain-git view against its entry.
fn take_in(
    repo: &Repository,
    remote: &str,
    local: Option<Oid>,
    published: Oid,
) -> Result<(), AuditError> {
    let base = match local {
        None => None,
        Some(l) => match repo.merge_base(l, published) {
            Ok(b) => Some(b),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) => return Err(e.into()),
        },
    };
    if base == Some(published) {
        return Ok(());
    }
    super::verify_range(repo, base, published, false).map_err(|why| {
        AuditError::Sync(format!(
            "{remote}'s ledger does not verify, so nothing of it was taken in: {why}; \
             tell the remote's admin and run `git chant audit verify` there"
        ))
    })
}

/// Re-chains the entries of `local` that `published` lacks on top of `published` and
/// swaps the local ref. `None` when the local ref moved meanwhile.
fn rechain(
    repo: &Repository,
    signer: &Signer,
    local: Oid,
    published: Oid,
) -> Result<Option<(Oid, usize)>, AuditError> {
    let base = match repo.merge_base(local, published) {
        Ok(b) => Some(b),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let mut unpublished = Vec::new();
    for stored in ledger::Walk::new(repo, Some(local)) {
        let stored = stored?;
        if Some(stored.commit) == base {
            break;
        }
        unpublished.push(stored);
    }
    unpublished.reverse();
    let drafts = unpublished
        .iter()
        .map(|s| {
            let mut fields = s.entry.0.clone();
            fields.remove("prev_hash");
            fields.remove("hash");
            Ok(Draft {
                fields,
                email: ledger::author_email(repo, s.commit)?,
            })
        })
        .collect::<Result<Vec<_>, AuditError>>()?;
    let top = ledger::read(repo, published)?;
    let tree = repo.treebuilder(None)?.write()?;
    let built = ledger::build_chain(
        repo,
        signer,
        tree,
        Some((published, top.entry.hash().to_string())),
        &drafts,
    )?;
    let tip = built.last().map_or(published, |s| s.commit);
    let swapped = git::compare_and_swap(
        repo,
        AUDIT_REF,
        tip,
        Some(local),
        &format!("chant audit sync: re-chain {} entries", drafts.len()),
    )?;
    Ok(swapped.then_some((tip, drafts.len())))
}

fn git_cmd(repo: &Repository) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir").arg(repo.path());
    cmd
}

fn fetch(repo: &Repository, remote: &str, tracking: &str) -> Result<(), AuditError> {
    let out = git_cmd(repo)
        .args(["fetch", remote])
        .arg(format!("{AUDIT_REF}:{tracking}"))
        .output()
        .map_err(|e| AuditError::Sync(format!("cannot run git fetch: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("couldn't find remote ref") {
        return Ok(()); // the remote has no ledger yet
    }
    let hint = if stderr.contains("non-fast-forward") || stderr.contains("rejected") {
        " — the remote ledger is not a continuation of the one fetched before: it was rewritten; \
         do not force it, ask the remote's admin and run `git chant audit verify`"
    } else {
        ""
    };
    Err(AuditError::Sync(format!(
        "git fetch {remote} failed: {}{hint}",
        stderr.trim()
    )))
}

/// Pushes the ledger; `Ok(false)` when the remote moved (non-fast-forward).
fn push(repo: &Repository, remote: &str) -> Result<bool, AuditError> {
    let out = git_cmd(repo)
        .args(["push", "--quiet", "--porcelain", remote])
        .arg(format!("{AUDIT_REF}:{AUDIT_REF}"))
        .output()
        .map_err(|e| AuditError::Sync(format!("cannot run git push: {e}")))?;
    if out.status.success() {
        return Ok(true);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("non-fast-forward") || text.contains("fetch first") {
        return Ok(false);
    }
    Err(AuditError::Sync(format!(
        "git push {remote} {AUDIT_REF} failed: {}",
        text.trim()
    )))
}
