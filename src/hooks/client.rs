//! Client-side hooks: `pre-commit` and `pre-push`.
//!
//! libgit2 runs no hooks and anyone can skip them with `--no-verify`: these are a
//! convenience that catches mistakes early; the server hook is the enforcement.

use git2::{Oid, Repository};

use super::protection::{self, short};
use super::secrets_scan;
use crate::config::Config;

/// The outcome of a client hook: refusals (exit 1) and warnings (printed, exit 0).
#[derive(Debug, Default)]
pub struct Verdict {
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

/// True when the current process runs inside a chant agent session or as a configured agent.
pub fn in_agent_session(config: &Config, actor: &str) -> bool {
    std::env::var_os("CHANT_SPEC_ID").is_some() || protection::is_agent(config, actor)
}

/// `pre-commit`: agents may not commit on protected branches; staged sensitive files warn;
/// staged content that looks like a secret is refused, naming `file:line`.
pub fn pre_commit(repo: &Repository, config: &Config, actor: &str) -> Result<Verdict, git2::Error> {
    let mut verdict = Verdict::default();
    let head = repo.head().ok();
    let branch = head
        .as_ref()
        .and_then(|h| h.shorthand().map(str::to_string))
        .or_else(|| {
            // An unborn branch: HEAD is symbolic to a ref that does not exist yet.
            repo.find_reference("HEAD").ok().and_then(|r| {
                r.symbolic_target()
                    .map(|t| t.trim_start_matches("refs/heads/").to_string())
            })
        });
    if let Some(branch) = &branch {
        if in_agent_session(config, actor) && protection::is_protected(config, branch) {
            verdict.refusals.push(format!(
                "agents may not commit to protected branch '{branch}'; work on chant/<id>"
            ));
        }
    }
    let head_tree = head.and_then(|h| h.peel_to_tree().ok());
    let index = repo.index()?;
    let diff = repo.diff_tree_to_index(head_tree.as_ref(), Some(&index), None)?;
    for delta in diff.deltas() {
        if let Some(path) = delta.new_file().path().and_then(|p| p.to_str()) {
            if delta.status() != git2::Delta::Deleted
                && config.security.sensitive_patterns.0.is_match(path)
            {
                verdict.warnings.push(format!(
                    "warning: staged file matches security.sensitive_patterns: {path}"
                ));
            }
        }
    }
    diff.foreach(
        &mut |_, _| true,
        None,
        None,
        Some(&mut |delta, _hunk, line| {
            if line.origin() == '+' {
                if let (Some(path), Some(kind)) = (
                    delta.new_file().path().and_then(|p| p.to_str()),
                    secrets_scan::looks_like_secret(line.content()),
                ) {
                    verdict.refusals.push(format!(
                        "{path}:{}: staged content looks like {kind}; remove it (or unstage the file)",
                        line.new_lineno().unwrap_or(0)
                    ));
                }
            }
            true
        }),
    )?;
    Ok(verdict)
}

/// One line of `pre-push` input.
#[derive(Debug, Clone)]
pub struct PushUpdate {
    pub local_ref: String,
    pub local: Oid,
    pub remote_ref: String,
    pub remote: Oid,
}

/// Parses `pre-push` standard input.
pub fn parse_push_input(input: &str) -> Vec<PushUpdate> {
    input
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let local_ref = parts.next()?.to_string();
            let local = Oid::from_str(parts.next()?).ok()?;
            let remote_ref = parts.next()?.to_string();
            let remote = Oid::from_str(parts.next()?).ok()?;
            Some(PushUpdate {
                local_ref,
                local,
                remote_ref,
                remote,
            })
        })
        .collect()
}

/// `pre-push`: refuses moving a protected branch to unapproved spec commits (or by an
/// agent), and deleting or rewinding `refs/chant/audit`.
pub fn pre_push(
    repo: &Repository,
    config: &Config,
    actor: &str,
    remote: &str,
    updates: &[PushUpdate],
) -> Result<Verdict, git2::Error> {
    let mut verdict = Verdict::default();
    let ledger_tip = repo.refname_to_id(crate::audit::AUDIT_REF).ok();
    let ledger = protection::ledger_at(repo, ledger_tip);
    for u in updates {
        if u.remote_ref == crate::audit::AUDIT_REF {
            if u.local.is_zero() {
                verdict.refusals.push(
                    "refusing to delete refs/chant/audit on the remote; the ledger is append-only"
                        .into(),
                );
            } else if !u.remote.is_zero() {
                let known = repo.find_commit(u.remote).is_ok();
                if !known {
                    verdict
                        .refusals
                        .push("the remote ledger has entries you do not have; run `git chant audit sync` first".into());
                } else if u.remote != u.local && !repo.graph_descendant_of(u.local, u.remote)? {
                    verdict.refusals.push(format!(
                        "refusing a non-fast-forward push of refs/chant/audit ({} -> {}); the ledger is append-only",
                        short(u.remote),
                        short(u.local)
                    ));
                }
            }
            continue;
        }
        let Some(branch) = u.remote_ref.strip_prefix("refs/heads/") else {
            continue;
        };
        if u.local.is_zero() || !protection::is_protected(config, branch) {
            continue;
        }
        if in_agent_session(config, actor) {
            verdict.refusals.push(format!(
                "agents may not push to protected branch '{branch}'"
            ));
            continue;
        }
        // What the remote's branch does not have yet is judged, unless the remote's other
        // protected branches (as last fetched) hold it: a spec branch pushed earlier, under
        // any name, proves nothing.
        let mut hide: Vec<Oid> = Vec::new();
        if !u.remote.is_zero() {
            hide.push(u.remote);
        }
        let tracking = format!("refs/remotes/{remote}/");
        for r in repo.references_glob(&format!("{tracking}*"))?.flatten() {
            let other = r.name().and_then(|n| n.strip_prefix(tracking.as_str()));
            if let (Some(other), Some(t)) = (other, r.target()) {
                if other != branch && protection::is_protected(config, other) {
                    hide.push(t);
                }
            }
        }
        verdict.refusals.extend(protection::unapproved_update(
            repo, config, branch, u.local, &hide, &ledger,
        )?);
    }
    Ok(verdict)
}
