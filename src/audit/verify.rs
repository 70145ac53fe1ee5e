//! Verification of the ledger: every hash recomputed, every `prev_hash` link and the single
//! parent of every commit checked, the first entry's `prev_hash` = 64 zeros, and — when
//! asked — every signature checked in-process against git's allowed-signers file.
//!
//! Works on any `&Repository`, bare ones included, so that server hooks can call it. It
//! remembers the last verified head in a checkpoint file (under `<git dir>/chant/audit/`)
//! so that the next run only looks at new entries and notices a head that no longer
//! descends from it. It never prints and never changes the ledger.

use std::path::{Path, PathBuf};
use std::process::Command;

use git2::{Oid, Repository};
use serde_json::Value;
use ssh_key::{PublicKey, SshSig};

use super::chain::{self, ZERO_HASH};
use super::entry::FIELDS;
use super::ledger;
use super::sign::GIT_NAMESPACE;
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
    let Some(head) = git::read_ref(repo, AUDIT_REF)? else {
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

    let mut broken: Option<(Oid, String)> = None;
    let mut note = |commit: Oid, reason: String| broken = Some((commit, reason));
    let mut met_checkpoint = checkpoint.is_none();
    let mut newer: Option<(Oid, String)> = None; // (commit, its prev_hash)
    let mut count = 0usize;
    let mut signatures = 0usize;
    let mut next = Some(head);
    while let Some(oid) = next {
        if checkpoint.as_ref().is_some_and(|c| c.commit == oid) {
            met_checkpoint = true;
            if opts.from.is_none() && stop == Some(oid) {
                // Verified before: its hash is trusted; only the link to it is checked.
                if let (Some((n, prev)), Some(c)) = (&newer, &checkpoint) {
                    if *prev != c.hash {
                        note(*n, link_reason(prev, oid, &c.hash));
                    }
                }
                break;
            }
        }
        let commit = repo.find_commit(oid)?;
        let parents = commit.parent_count();
        next = commit.parent_id(0).ok();
        count += 1;
        if parents > 1 {
            note(
                oid,
                format!("has {parents} parents; the ledger is a single line of commits"),
            );
        }
        let entry = match ledger::parse_message(commit.message_bytes()) {
            Ok(e) => e,
            Err(reason) => {
                note(oid, reason);
                newer = Some((oid, String::new()));
                continue;
            }
        };
        let stored_hash = entry.hash().to_string();
        let prev_hash = entry.prev_hash().to_string();
        if let Some(reason) = shape_problem(&entry.0) {
            note(oid, reason);
        } else {
            let mut map = entry.0;
            map.remove("hash");
            let computed = hex_sha256(chain::canonical(&map).as_bytes());
            if computed != stored_hash {
                note(
                    oid,
                    format!(
                        "hash mismatch: the entry says {stored_hash} but its content hashes \
                         to {computed} (the entry was edited)"
                    ),
                );
            }
        }
        if let Some((n, newer_prev)) = &newer {
            if *newer_prev != stored_hash && !newer_prev.is_empty() {
                note(*n, link_reason(newer_prev, oid, &stored_hash));
            }
        }
        if parents == 0 && prev_hash != ZERO_HASH {
            note(
                oid,
                format!("the first entry's prev_hash is {prev_hash}, not 64 zeros (entries before it were dropped)"),
            );
        }
        if let Some(signers) = &signers {
            match check_signature(repo, oid, &commit, signers) {
                Ok(()) => signatures += 1,
                Err(reason) => note(oid, reason),
            }
        }
        if opts.from == Some(oid) {
            break;
        }
        newer = Some((oid, prev_hash));
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

fn walked_through(repo: &Repository, head: Oid, target: Oid) -> Result<bool, AuditError> {
    Ok(head == target || repo.graph_descendant_of(head, target)?)
}

fn link_reason(prev: &str, parent: Oid, parent_hash: &str) -> String {
    format!(
        "prev_hash {prev} does not match the hash {parent_hash} of the entry before it \
         (commit {parent}): an entry was dropped, inserted or reordered"
    )
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
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

/// git's allowed-signers file: who may sign, with which key.
pub struct AllowedSigners {
    path: PathBuf,
    entries: Vec<(Vec<String>, PublicKey)>,
}

impl AllowedSigners {
    /// Loads `path`, or git config `gpg.ssh.allowedSignersFile` when `None`.
    pub fn load(repo: &Repository, path: Option<&Path>) -> Result<AllowedSigners, AuditError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let config = repo.config()?;
                match config.get_path("gpg.ssh.allowedSignersFile") {
                    Ok(p) => p,
                    Err(_) => {
                        return Err(AuditError::Invalid(
                            "--require-signatures needs an allowed-signers file: pass \
                             --allowed-signers FILE or set git config gpg.ssh.allowedSignersFile"
                                .into(),
                        ))
                    }
                }
            }
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| AuditError::Invalid(format!("allowed signers {}: {e}", path.display())))?;
        Ok(AllowedSigners {
            entries: parse_allowed_signers(&text),
            path,
        })
    }

    fn allows(&self, email: &str, key: &ssh_key::public::KeyData) -> bool {
        self.entries.iter().any(|(principals, pk)| {
            pk.key_data() == key && principals.iter().any(|p| glob_match(p, email))
        })
    }
}

/// Parses the `principals [options] keytype base64 [comment]` lines of an allowed-signers
/// file. Lines restricted by `namespaces=` to other namespaces are left out.
fn parse_allowed_signers(text: &str) -> Vec<(Vec<String>, PublicKey)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(key_at) = tokens
            .iter()
            .position(|t| t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-"))
        else {
            continue;
        };
        if key_at == 0 || key_at + 1 >= tokens.len() {
            continue;
        }
        let options = tokens[1..key_at].join(" ");
        if let Some(ns) = options.split("namespaces=\"").nth(1) {
            let list = ns.split('"').next().unwrap_or("");
            if !list.split(',').any(|n| n.trim() == GIT_NAMESPACE) {
                continue;
            }
        }
        let Ok(key) =
            PublicKey::from_openssh(&format!("{} {}", tokens[key_at], tokens[key_at + 1]))
        else {
            continue;
        };
        let principals = tokens[0]
            .trim_matches('"')
            .split(',')
            .map(str::to_string)
            .collect();
        out.push((principals, key));
    }
    out
}

/// `*` and `?` patterns, as in ssh's allowed-signers principals.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

fn check_signature(
    repo: &Repository,
    oid: Oid,
    commit: &git2::Commit<'_>,
    signers: &AllowedSigners,
) -> Result<(), String> {
    let (sig, data) = match repo.extract_signature(&oid, None) {
        Ok(pair) => pair,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            return Err("the entry is not signed (--require-signatures)".into())
        }
        Err(e) => return Err(format!("cannot read its signature: {e}")),
    };
    let sig_text = String::from_utf8_lossy(&sig);
    let email = commit.committer().email().unwrap_or("").to_string();
    if sig_text.starts_with("-----BEGIN SSH SIGNATURE-----") {
        let sshsig = SshSig::from_pem(sig_text.as_bytes())
            .map_err(|e| format!("malformed SSH signature: {e}"))?;
        if sshsig.namespace() != GIT_NAMESPACE {
            return Err(format!(
                "signed for namespace '{}', not 'git'",
                sshsig.namespace()
            ));
        }
        if !signers.allows(&email, sshsig.public_key()) {
            let fp =
                PublicKey::new(sshsig.public_key().clone(), "").fingerprint(Default::default());
            return Err(format!(
                "signed by key {fp}, which {} does not allow for {email}",
                signers.path.display()
            ));
        }
        PublicKey::new(sshsig.public_key().clone(), "")
            .verify(GIT_NAMESPACE, &data, &sshsig)
            .map_err(|_| "the signature does not match the commit (bad signature)".to_string())
    } else {
        // OpenPGP / X.509: let git and gpg judge, with the user's keyring.
        let status = Command::new("git")
            .arg("--git-dir")
            .arg(repo.path())
            .args(["verify-commit", &oid.to_string()])
            .output()
            .map_err(|e| format!("cannot run git verify-commit: {e}"))?;
        if status.status.success() {
            Ok(())
        } else {
            Err(format!(
                "git verify-commit refused the signature: {}",
                String::from_utf8_lossy(&status.stderr).trim()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_glob() {
        assert!(glob_match("*@example.com", "a@example.com"));
        assert!(glob_match("a@example.com", "A@example.com"));
        assert!(!glob_match("b@example.com", "a@example.com"));
    }
}
