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
    /// Only specs with this status (pending, in_progress, completed, unchanged, failed, cancelled, unreadable)
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

/// The status shown for a spec file that cannot be read or parsed.
const UNREADABLE: &str = "unreadable";

pub fn run(args: Args) -> Result<u8> {
    let project = Project::discover()?;
    project.require_initialised()?;
    let mut specs = Vec::new();
    let mut unreadable = Vec::new();
    for (id, spec) in SpecStore::new(project.specs_dir()).each()? {
        match spec {
            Ok(s) => specs.push(s),
            Err(e) => unreadable.push((id, e.to_string())),
        }
    }
    let ledger = status::of_repository(&project.repo);
    let specs: Vec<_> = specs
        .into_iter()
        .filter(|s| {
            args.status
                .as_deref()
                .is_none_or(|want| status::effective(s, &ledger) == want)
        })
        .collect();
    // Unreadable specs are listed with the status `unreadable` (and filtered as such),
    // and each is named on stderr with what is wrong.
    if args
        .status
        .as_deref()
        .is_some_and(|want| want != UNREADABLE)
    {
        unreadable.clear();
    }
    for (_, error) in &unreadable {
        errln!("chant: cannot read a spec: {error}");
    }
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
                .chain(unreadable.iter().map(|(id, error)| {
                    json!({
                        "id": id.as_str(),
                        "status": UNREADABLE,
                        "error": error,
                        "path": format!(".chant/specs/{id}.md"),
                    })
                }))
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into())
            );
        }
        Format::Text => {
            if specs.is_empty() && unreadable.is_empty() {
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
                for (id, _) in &unreadable {
                    outln!(
                        "{:<22} {:<12} (see the error above)",
                        id.as_str(),
                        UNREADABLE
                    );
                }
            }
        }
    }
    Ok(0)
}
