//! `git chant init`: set up `.chant/` in the current repository.

use std::path::Path;

use crate::audit;
use crate::config::{self, template, Tier};
use crate::error::{Error, Result};
use crate::project::Project;

/// Set up git-chant in this repository (idempotent)
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant init                 solo: agent runs with its own permission system
  git chant init --tier team     docker sandbox, branch protection, approvals
  git chant init --tier scale    one Kubernetes Job per spec

Writes .chant/config.md (the tier's settings plus commented examples of every
section), .chant/specs/ and ignore rules for local state. Running it again changes
nothing that exists and says so.")]
pub struct Args {
    /// Which defaults to start from
    #[arg(long, value_parser = parse_tier, default_value = "solo")]
    tier: Tier,
}

fn parse_tier(s: &str) -> std::result::Result<Tier, String> {
    s.parse()
}

pub fn run(args: Args) -> Result<u8> {
    let project = Project::discover()?;
    let changes = init_project(&project, args.tier)?;
    if changes.is_empty() {
        outln!(
            "git chant is already initialised in {}; nothing changed.",
            project.root().display()
        );
    } else {
        for change in &changes {
            outln!("  {change}");
        }
        outln!(
            "Initialised git chant ({} tier). Next: git chant add \"<what to do>\"",
            args.tier
        );
    }
    Ok(0)
}

/// Creates what is missing; returns a line per change (empty when nothing changed).
pub fn init_project(project: &Project, tier: Tier) -> Result<Vec<String>> {
    // Who acts is settled before anything is written: a bad CHANT_ACTOR touches nothing.
    let identity = crate::identity::Identity::resolve(Some(&project.repo))?;
    let mut changes = Vec::new();
    let root = project.root();
    let config_path = root.join(config::CONFIG_PATH);
    if config_path.exists() {
        // An existing configuration must load; init never overwrites it.
        project.config()?;
    } else {
        let text = template::config_for(tier);
        config::parse(config::CONFIG_PATH, &text)?;
        write_new(&config_path, &text)?;
        changes.push(format!("created {}", config::CONFIG_PATH));
    }
    let specs = project.specs_dir();
    if !specs.is_dir() {
        write_new(&specs.join(".gitkeep"), "")?;
        changes.push("created .chant/specs/".to_string());
    }
    let ignore = project.chant_dir().join(".gitignore");
    let wanted = ["/.locks/", "/audit/"];
    let current = std::fs::read_to_string(&ignore).unwrap_or_default();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !current.lines().any(|l| l.trim() == *w))
        .collect();
    if !missing.is_empty() {
        let mut text = current.clone();
        if text.is_empty() {
            text.push_str("# Local state of git chant: never committed.\n");
        } else if !text.ends_with('\n') {
            text.push('\n');
        }
        for line in &missing {
            text.push_str(line);
            text.push('\n');
        }
        replace_file(&ignore, &text)?;
        changes.push(format!(
            "ignored {} in .chant/.gitignore",
            missing.join(", ")
        ));
    }
    changes.extend(audit::configure_replication(&project.repo)?);
    let hooks_dir = crate::hooks::install::hooks_dir(&project.repo);
    let installed =
        crate::hooks::install::install(&hooks_dir, crate::hooks::install::CLIENT, false).map_err(
            |e| {
                Error::Refused(format!(
                    "installing hooks into {}: {e}",
                    hooks_dir.display()
                ))
            },
        )?;
    for (name, what) in installed {
        match what {
            crate::hooks::install::Installed::Unchanged => {}
            crate::hooks::install::Installed::Chained => changes.push(format!(
                "installed the {name} hook (your existing one runs after it as {name}.local)"
            )),
            _ => changes.push(format!("installed the {name} hook")),
        }
    }
    if let Some(change) = start_ledger(project, &identity)? {
        changes.push(change);
    }
    Ok(changes)
}

/// Starts the ledger when there is none: adopts a remote's published ledger when one was
/// fetched (so clones share one chain), else writes the genesis `ledger_created` entry.
fn start_ledger(project: &Project, identity: &crate::identity::Identity) -> Result<Option<String>> {
    let repo = &project.repo;
    if crate::git::read_ref(repo, audit::AUDIT_REF)?.is_some() {
        return Ok(None);
    }
    let mut names: Vec<String> = repo.remotes()?.iter().flatten().map(String::from).collect();
    names.sort_by_key(|n| n != "origin");
    for name in names {
        let tracking = audit::replicate::tracking_ref(&name);
        if let Some(oid) = crate::git::read_ref(repo, &tracking)? {
            if crate::git::compare_and_swap(repo, audit::AUDIT_REF, oid, None, "chant init: adopt")?
            {
                return Ok(Some(format!(
                    "adopted {name}'s audit ledger ({})",
                    audit::AUDIT_REF
                )));
            }
            return Ok(None);
        }
    }
    let config = project.config()?;
    let entry = audit::NewEntry::new(audit::Event::LedgerCreated)
        .detail("tool", concat!("git-chant ", env!("CARGO_PKG_VERSION")));
    let appended = audit::append(project, &config, identity, vec![entry])?;
    Ok(appended.entries.first().map(|s| {
        format!(
            "started the audit ledger on {} ({})",
            audit::AUDIT_REF,
            s.commit
        )
    }))
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    crate::atomic::write_new(path, text.as_bytes()).map_err(|e| Error::io(path, e))
}

fn replace_file(path: &Path, text: &str) -> Result<()> {
    crate::atomic::replace(path, text.as_bytes()).map_err(|e| Error::io(path, e))
}
