//! The server-side `pre-receive` hook: the enforcement point for branch protection and the
//! append-only ledger, run by the git server for every push into a bare repository.
//!
//! Policy comes from the protected branch's current tip on the server (HEAD's branch),
//! never from the pushed commits. Pushed objects are only visible through the quarantine
//! environment git sets, so the caller opens the repository from the environment.

use git2::{Oid, Repository};

use super::protection::{self, short, PolicyError};
use crate::audit::{AuditError, Event, NewEntry, AUDIT_REF};
use crate::config::{Config, SignMode};
use crate::identity::Identity;

/// One line of `pre-receive` input: `<old> <new> <ref>`.
#[derive(Debug, Clone)]
pub struct RefUpdate {
    pub old: Oid,
    pub new: Oid,
    pub name: String,
}

/// Parses `pre-receive` standard input.
pub fn parse_input(input: &str) -> Vec<RefUpdate> {
    input
        .lines()
        .filter_map(|line| {
            let mut p = line.split_whitespace();
            Some(RefUpdate {
                old: Oid::from_str(p.next()?).ok()?,
                new: Oid::from_str(p.next()?).ok()?,
                name: p.next()?.to_string(),
            })
        })
        .collect()
}

/// The server's policy: the config on the tip of the branch HEAD names.
pub fn server_config(repo: &Repository) -> Result<Config, PolicyError> {
    protection::config_at(repo, policy_tip(repo))
}

/// The branch the policy is read from (HEAD's), and its tip when it exists.
fn policy_branch(repo: &Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    head.symbolic_target().map(str::to_string)
}

fn policy_tip(repo: &Repository) -> Option<Oid> {
    repo.head().ok().and_then(|h| h.target())
}

/// Every reason to refuse `updates` pushed by `pusher` (empty: accept). An agent
/// (`protection.agents`) may push only `refs/chant/incoming/<id>/<session>`.
pub fn check(
    repo: &Repository,
    config: &Config,
    pusher: &str,
    updates: &[RefUpdate],
) -> Vec<String> {
    // An agent's result goes to its incoming ref and nowhere else: chant fetches it from
    // there, judges it and lands it itself (DESIGN.md, "Kubernetes backend").
    if protection::is_agent(config, pusher) {
        return updates
            .iter()
            .filter(|u| !is_incoming_ref(&u.name))
            .map(|u| match u.name.strip_prefix("refs/heads/") {
                Some(branch) if protection::is_protected(config, branch) => format!(
                    "{pusher} is an agent (protection.agents) and may not update protected branch '{branch}'"
                ),
                _ => format!(
                    "{pusher} is an agent (protection.agents) and may push only to \
                     refs/chant/incoming/<id>/<session>, not {}",
                    u.name
                ),
            })
            .collect();
    }
    let mut refusals = Vec::new();
    let current_ledger = repo.refname_to_id(AUDIT_REF).ok();
    let mut ledger_tip = current_ledger;
    for u in updates.iter().filter(|u| u.name == AUDIT_REF) {
        if u.new.is_zero() {
            refusals
                .push("refs/chant/audit may not be deleted; the ledger is append-only".to_string());
            continue;
        }
        if !u.old.is_zero()
            && u.old != u.new
            && !repo.graph_descendant_of(u.new, u.old).unwrap_or(false)
        {
            refusals.push(format!(
                "refs/chant/audit may only be fast-forwarded ({} -> {} rewrites history)",
                short(u.old),
                short(u.new)
            ));
            continue;
        }
        let from = (!u.old.is_zero()).then_some(u.old);
        match crate::audit::verify_range(repo, from, u.new, config.protection.require_signed_audit)
        {
            Ok(()) => ledger_tip = Some(u.new),
            Err(why) => refusals.push(format!("refs/chant/audit: {why}")),
        }
    }
    let ledger = protection::ledger_at(repo, ledger_tip);
    // The server's protected branches as they stand before this push. Commits on any other
    // branch prove nothing: anyone may push a spec branch, or a copy of it under any name.
    let protected_tips: Vec<(String, Oid)> = repo
        .references_glob("refs/heads/*")
        .map(|refs| {
            refs.flatten()
                .filter_map(|r| {
                    Some((
                        r.name()?.strip_prefix("refs/heads/")?.to_string(),
                        r.target()?,
                    ))
                })
                .filter(|(name, _)| protection::is_protected(config, name))
                .collect()
        })
        .unwrap_or_default();
    let policy_branch = policy_branch(repo);
    for u in updates {
        let Some(branch) = u.name.strip_prefix("refs/heads/") else {
            continue;
        };
        if policy_branch.as_deref() == Some(u.name.as_str()) && u.new.is_zero() {
            // Without it the server would read no policy at all: defaults, no agents.
            refusals.push(format!(
                "{branch} may not be deleted: the server reads its policy ({}) from it",
                crate::config::CONFIG_PATH
            ));
            continue;
        }
        if policy_branch.as_deref() == Some(u.name.as_str()) {
            // The policy branch may not be moved to a configuration that does not load:
            // every later push would be judged by it, and refused.
            if let Err(e) = protection::config_at(repo, Some(u.new)) {
                refusals.push(format!(
                    "{branch}: the pushed {} does not load, and the server reads its policy from this branch: {}",
                    crate::config::CONFIG_PATH,
                    policy_reason(&e)
                ));
                continue;
            }
        }
        if !protection::is_protected(config, branch) {
            continue;
        }
        if u.new.is_zero() {
            continue; // deleting a branch is git's own denyDeletes business
        }
        // Judge every commit the branch does not have yet, unless another protected branch
        // already holds it.
        let mut hide: Vec<Oid> = protected_tips
            .iter()
            .filter(|(name, _)| name != branch)
            .map(|(_, tip)| *tip)
            .collect();
        if !u.old.is_zero() {
            hide.push(u.old);
        }
        match protection::unapproved_update(repo, config, branch, u.new, &hide, &ledger) {
            Ok(reasons) => refusals.extend(reasons),
            Err(e) => refusals.push(format!("{branch}: cannot read the pushed commits: {e}")),
        }
    }
    refusals
}

/// Appends a `push_rejected` entry for `refusals` to the server's own ledger in `real` (a
/// handle on the real object store, not the push's quarantine).
///
/// The entry's actor is the pusher it is about; its author/committer e-mail is the
/// server's own (`user.email` of the repository's git config, else `chant@<host>`), and it
/// is signed with the repository's git signing config (`gpg.format`, `user.signingkey`). With
/// `protection.require_signed_audit` signing is required: without a key nothing is
/// recorded (an unsigned entry would make every clone's `verify --require-signatures`
/// fail) and the error says what to configure. The push is refused either way.
pub fn record_rejection(
    real: &Repository,
    config: &Config,
    pusher: &crate::identity::Actor,
    refusals: &[String],
    updates: &[RefUpdate],
) -> Result<(), AuditError> {
    let invalid = |e: crate::identity::IdentityError| AuditError::Invalid(e.to_string());
    let mut identity = Identity::resolve(Some(real)).map_err(invalid)?;
    identity.actor = pusher.clone();
    let email = real
        .config()
        .and_then(|c| c.get_string("user.email"))
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| format!("chant@{}", identity.host.as_str()));
    identity.email = crate::identity::Email::parse("user.email", &email).map_err(invalid)?;
    let mode = if config.protection.require_signed_audit {
        SignMode::Always
    } else {
        config.audit.sign
    };
    let entry = NewEntry::new(Event::PushRejected)
        .detail("pusher", pusher.as_str())
        .detail("reasons", refusals.to_vec())
        .detail(
            "refs",
            updates
                .iter()
                .map(|u| format!("{} {} {}", u.old, u.new, u.name))
                .collect::<Vec<_>>(),
        );
    match crate::audit::append_to_repo(real, mode, &identity, vec![entry]) {
        Ok(_) => Ok(()),
        Err(AuditError::SignConfig(why)) if config.protection.require_signed_audit => {
            Err(AuditError::SignConfig(format!(
                "protection.require_signed_audit is set, so the server signs its own entries, \
                 and it cannot: {why}. Configure a key in the bare repository {} (git config \
                 gpg.format ssh; git config user.signingkey KEY; git config user.email \
                 SERVER-EMAIL) and list SERVER-EMAIL with its public key in every allowed-signers \
                 file",
                real.path().display()
            )))
        }
        Err(e) => Err(e),
    }
}

/// What is wrong with a configuration, without the advice meant for the server's own one.
fn policy_reason(e: &PolicyError) -> String {
    match e {
        PolicyError::Invalid { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// True for `refs/chant/incoming/<id>/<session>`: exactly two plain components.
pub fn is_incoming_ref(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(INCOMING_PREFIX) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

/// Where agents push their results.
pub const INCOMING_PREFIX: &str = "refs/chant/incoming/";

#[cfg(test)]
mod tests {
    use super::is_incoming_ref;

    #[test]
    fn incoming_refs_have_exactly_a_spec_and_a_session() {
        assert!(is_incoming_ref(
            "refs/chant/incoming/2026-01-22-001-x7m/sess_abc123"
        ));
        for bad in [
            "refs/heads/main",
            "refs/chant/audit",
            "refs/chant/incoming/x7m",
            "refs/chant/incoming/x7m/sess/extra",
            "refs/chant/incoming//sess",
            "refs/chant/incoming/x7m/..",
            "refs/chant/incomingx/a/b",
        ] {
            assert!(!is_incoming_ref(bad), "{bad}");
        }
    }
}
