//! `git chant init`: set up `.chant/` in the current repository.

use std::path::Path;

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
        println!(
            "git chant is already initialised in {}; nothing changed.",
            project.root().display()
        );
    } else {
        for change in &changes {
            println!("  {change}");
        }
        println!(
            "Initialised git chant ({} tier). Next: git chant add \"<what to do>\"",
            args.tier
        );
    }
    Ok(0)
}

/// Creates what is missing; returns a line per change (empty when nothing changed).
pub fn init_project(project: &Project, tier: Tier) -> Result<Vec<String>> {
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
    Ok(changes)
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    crate::atomic::write_new(path, text.as_bytes()).map_err(|e| Error::io(path, e))
}

fn replace_file(path: &Path, text: &str) -> Result<()> {
    crate::atomic::replace(path, text.as_bytes()).map_err(|e| Error::io(path, e))
}
