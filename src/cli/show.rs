//! `git chant show`: one spec, with its metadata.

use crate::error::Result;
use crate::project::Project;
use crate::spec::{status, SpecStore};

/// Show one spec
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant show 2026-01-22-001-x7m
  git chant show x7m        a unique suffix
  git chant show 001        today's spec number 001
  git chant show 22-001     a unique part of the id")]
pub struct Args {
    /// Spec id: full, unique suffix, today's sequence (3 characters) or unique substring
    id: String,
}

pub fn run(args: Args) -> Result<u8> {
    let project = Project::discover()?;
    project.require_initialised()?;
    let store = SpecStore::new(project.specs_dir());
    let id = store.resolve(&args.id)?;
    let spec = store.load(&id)?;
    outln!("id:       {}", spec.id);
    outln!("title:    {}", spec.title());
    let ledger = status::of_repository(&project.repo);
    outln!("status:   {}", status::effective(&spec, &ledger));
    outln!("type:     {}", spec.kind());
    let targets = spec.target_files();
    if !targets.is_empty() {
        outln!("targets:  {}", targets.join(", "));
    }
    let deps = spec.depends_on();
    if !deps.is_empty() {
        outln!("depends:  {}", deps.join(", "));
    }
    outln!("file:     .chant/specs/{}.md", spec.id);
    outln!();
    out!("{}", spec.body);
    if !spec.body.ends_with('\n') {
        outln!();
    }
    Ok(0)
}
