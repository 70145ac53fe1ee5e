//! `git chant add`: write a new spec and print its id.

use std::path::PathBuf;

use crate::audit::{self, Event, NewEntry};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::project::Project;
use crate::spec::SpecStore;

/// Create a spec; prints the new id alone on stdout
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant add \"Fix login redirect\"
  git chant add \"Rotate API client\" --target src/client.rs --target tests/client.rs
  id=$(git chant add \"Write docs\" --body-file notes.md) && git chant show \"$id\"

The spec is written to .chant/specs/<id>.md with chant's front matter and an
'## Acceptance Criteria' checklist; edit it before running `git chant work <id>`.")]
pub struct Args {
    /// One-line title (becomes the spec's first '# ' heading)
    title: String,
    /// A file the agent is expected to change (repeatable)
    #[arg(long = "target", value_name = "PATH")]
    targets: Vec<String>,
    /// Markdown to use as the spec body ('-' reads stdin)
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<u8> {
    let project = Project::discover()?;
    project.require_initialised()?;
    project.config()?;
    let identity = Identity::resolve(Some(&project.repo))?;
    for target in &args.targets {
        crate::spec::check_target(target).map_err(Error::Usage)?;
    }
    let body = match &args.body_file {
        None => None,
        Some(path) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| Error::io("(stdin)", e))?;
            Some(text)
        }
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| Error::Usage(format!("--body-file {}: {e}", path.display())))?,
        ),
    };
    let store = SpecStore::new(project.specs_dir());
    let spec = store.create(&args.title, &args.targets, body.as_deref())?;
    let path = store.path_of(&spec.id);
    let content = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&content));
    let entry = NewEntry::new(Event::SpecCreated)
        .spec(spec.id.as_str())
        .detail("content_sha256", sha)
        .detail("title", spec.title())
        .detail("path", format!(".chant/specs/{}.md", spec.id));
    let appended = audit::append(&project, &project.config()?, &identity, vec![entry])?;
    for w in &appended.warnings {
        errln!("warning: {w}");
    }
    outln!("{}", spec.id);
    Ok(0)
}
