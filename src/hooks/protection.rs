//! Branch protection rules shared by the client and server hooks: which branches are
//! protected, who is an agent, which commits an update of a protected branch brings in,
//! and whether the spec commits among them are approved.
//!
//! The patterns themselves are compiled when the configuration loads (an invalid one never
//! gets this far); this module only asks the typed [`Config`]. It never prints.

use std::collections::{BTreeMap, HashMap, HashSet};

use git2::{Oid, Repository};
use serde_json::Value;

use crate::config::{self, Config, ConfigError};

/// Why the policy (`.chant/config.md` on a branch tip) cannot be read. The hooks refuse
/// rather than fall back to defaults, which would protect nothing.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy at commit {commit} is invalid: {source}; until {file} loads, every push is refused (fix it on the server: pushes are judged by this file)", file = config::CONFIG_PATH)]
    Invalid {
        commit: String,
        #[source]
        source: ConfigError,
    },
    #[error("the policy at commit {commit} is invalid: {file} is not UTF-8; until it loads, every push is refused", file = config::CONFIG_PATH)]
    NotUtf8 { commit: String },
    #[error("cannot read the policy at commit {commit}: {source}")]
    Git {
        commit: String,
        #[source]
        source: git2::Error,
    },
}

impl PolicyError {
    /// A configuration that does not load is bad input (2); an unreadable object is 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            PolicyError::Invalid { .. } | PolicyError::NotUtf8 { .. } => 2,
            PolicyError::Git { .. } => 1,
        }
    }
}

/// The configuration as committed at `commit` (defaults when the file is absent).
///
/// Hooks read policy from the protected branch's current tip, never from pushed commits.
pub fn config_at(repo: &Repository, commit: Option<Oid>) -> Result<Config, PolicyError> {
    let Some(commit) = commit else {
        return Ok(Config::defaults());
    };
    let git = |source| PolicyError::Git {
        commit: commit.to_string(),
        source,
    };
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(git)?;
    let Ok(entry) = tree.get_path(std::path::Path::new(config::CONFIG_PATH)) else {
        return Ok(Config::defaults());
    };
    let blob = repo.find_blob(entry.id()).map_err(git)?;
    let text = std::str::from_utf8(blob.content()).map_err(|_| PolicyError::NotUtf8 {
        commit: commit.to_string(),
    })?;
    config::parse(config::CONFIG_PATH, text).map_err(|source| PolicyError::Invalid {
        commit: commit.to_string(),
        source,
    })
}

/// True when `branch` (short name, e.g. `main`) is protected.
pub fn is_protected(config: &Config, branch: &str) -> bool {
    config.is_protected_branch(branch)
}

/// True when `identity` matches `protection.agents`.
pub fn is_agent(config: &Config, identity: &str) -> bool {
    config.is_agent(identity)
}

/// The spec id a commit message carries in a `Chant-Spec:` trailer.
pub fn spec_trailer(message: &str) -> Option<String> {
    message
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Chant-Spec:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Commits reachable from `new` but from none of `hide`, with their spec trailers.
fn spec_commits(
    repo: &Repository,
    new: Oid,
    hide: &[Oid],
) -> Result<Vec<(Oid, String)>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.push(new)?;
    for h in hide {
        if repo.find_commit(*h).is_ok() {
            walk.hide(*h)?;
        }
    }
    let mut out = Vec::new();
    for oid in walk {
        let oid = oid?;
        let commit = repo.find_commit(oid)?;
        if let Some(spec) = spec_trailer(commit.message().unwrap_or_default()) {
            out.push((oid, spec));
        }
    }
    Ok(out)
}

/// Why the spec commits of an update are not covered by approvals (empty when they are).
///
/// Each commit carrying `Chant-Spec: <id>` must be the approved head of a `spec_approved`
/// entry for that spec, by a non-agent, or an ancestor of one: a commit added after the
/// approval needs a new approval. With `required_checks`, every named check needs a
/// `check_passed` entry for that approved head.
///
/// `hide` are the commits the other side already has (they bound the walks, so the check
/// costs one walk per distinct approved head, not one per commit).
fn unapproved(
    repo: &Repository,
    config: &Config,
    commits: &[(Oid, String)],
    ledger: &[Value],
    hide: &[Oid],
) -> Vec<String> {
    if !config.protection.require_approval && config.protection.required_checks.is_empty() {
        return Vec::new();
    }
    let mut by_spec: BTreeMap<&str, Vec<Oid>> = BTreeMap::new();
    for (oid, spec) in commits {
        by_spec.entry(spec.as_str()).or_default().push(*oid);
    }
    let mut reasons = Vec::new();
    let mut reach: HashMap<Oid, HashSet<Oid>> = HashMap::new();
    for (spec, oids) in by_spec {
        let heads: Vec<Oid> = ledger
            .iter()
            .filter(|e| e["event"] == "spec_approved" && e["spec_id"] == spec)
            .filter(|e| !is_agent(config, e["actor"].as_str().unwrap_or_default()))
            .filter_map(|e| {
                e["details"]["commit"]
                    .as_str()
                    .and_then(|c| Oid::from_str(c).ok())
            })
            .collect();
        for head in &heads {
            if !reach.contains_key(head) {
                reach.insert(*head, reachable(repo, *head, hide));
            }
        }
        let covering = |c: Oid| {
            heads
                .iter()
                .copied()
                .find(|h| reach.get(h).is_some_and(|set| set.contains(&c)))
        };
        let mut approved_heads = Vec::new();
        for oid in &oids {
            match covering(*oid) {
                Some(h) => approved_heads.push(h),
                None if config.protection.require_approval => {
                    reasons.push(if heads.is_empty() {
                        format!("spec {spec} has no recorded approval (run `git chant approve {spec}` as a reviewer)")
                    } else {
                        format!("commit {} of spec {spec} was added after its approval; approve it again", short(*oid))
                    });
                    break;
                }
                None => {}
            }
        }
        for check in &config.protection.required_checks {
            let passed = ledger.iter().any(|e| {
                e["event"] == "check_passed"
                    && e["spec_id"] == spec
                    && e["details"]["check"] == check.as_str()
                    && e["details"]["commit"]
                        .as_str()
                        .and_then(|c| Oid::from_str(c).ok())
                        .is_some_and(|c| approved_heads.contains(&c) || oids.first() == Some(&c))
            });
            if !passed {
                reasons.push(format!(
                    "spec {spec} has no check_passed entry for required check '{check}'"
                ));
            }
        }
    }
    reasons
}

/// Why moving protected `branch` to `new` is refused for unapproved spec commits (reasons
/// prefixed with the branch); `hide` are the commits the other side already has.
pub fn unapproved_update(
    repo: &Repository,
    config: &Config,
    branch: &str,
    new: Oid,
    hide: &[Oid],
    ledger: &[Value],
) -> Result<Vec<String>, git2::Error> {
    let commits = spec_commits(repo, new, hide)?;
    Ok(unapproved(repo, config, &commits, ledger, hide)
        .into_iter()
        .map(|reason| format!("{branch}: {reason}"))
        .collect())
}

/// Commits reachable from `head` (itself included) that none of `hide` reaches.
fn reachable(repo: &Repository, head: Oid, hide: &[Oid]) -> HashSet<Oid> {
    let mut set = HashSet::new();
    let Ok(mut walk) = repo.revwalk() else {
        return set;
    };
    if walk.push(head).is_err() {
        return set;
    }
    for h in hide {
        let _ = walk.hide(*h);
    }
    set.extend(walk.flatten());
    set
}

pub fn short(oid: Oid) -> String {
    oid.to_string()[..12].to_string()
}

/// The ledger entries reachable from `tip`, oldest first (an interim reader for hooks).
pub fn ledger_at(repo: &Repository, tip: Option<Oid>) -> Vec<Value> {
    crate::audit::entries_at(repo, tip).unwrap_or_default()
}
