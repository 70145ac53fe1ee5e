//! `git chant list`: the specs and their status.

use serde_json::json;

use crate::error::Result;
use crate::project::Project;
use crate::spec::{status, SpecStore};

/// List specs
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant list
  git chant list --status pending
  git chant list --format json | jq -r '.[].id'")]
pub struct Args {
    /// Only specs with this status (pending, in_progress, completed, failed, cancelled, …)
    #[arg(long, value_name = "S")]
    status: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn run(args: Args) -> Result<u8> {
    let project = Project::discover()?;
    project.require_initialised()?;
    let specs = SpecStore::new(project.specs_dir()).all()?;
    let ledger = status::of_repository(&project.repo);
    let specs: Vec<_> = specs
        .into_iter()
        .filter(|s| {
            args.status
                .as_deref()
                .is_none_or(|want| status::effective(s, &ledger) == want)
        })
        .collect();
    match args.format {
        Format::Json => {
            let items: Vec<_> = specs
                .iter()
                .map(|s| {
                    json!({
                        "id": s.id.as_str(),
                        "title": s.title(),
                        "status": status::effective(s, &ledger),
                        "type": s.kind(),
                        "target_files": s.target_files(),
                        "depends_on": s.depends_on(),
                        "labels": s.labels(),
                        "path": format!(".chant/specs/{}.md", s.id),
                    })
                })
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into())
            );
        }
        Format::Text => {
            if specs.is_empty() {
                errln!(
                    "No specs{}. Create one with: git chant add \"<title>\"",
                    match &args.status {
                        Some(s) => format!(" with status {s}"),
                        None => String::new(),
                    }
                );
            } else {
                outln!("{:<22} {:<12} TITLE", "ID", "STATUS");
                for s in &specs {
                    outln!(
                        "{:<22} {:<12} {}",
                        s.id.as_str(),
                        status::effective(s, &ledger),
                        s.title()
                    );
                }
            }
        }
    }
    Ok(0)
}
