//! `git chant approve`: a person's review approval of a spec branch head.

use crate::audit::{Event, NewEntry};
use crate::error::{Error, Result};
use crate::hooks::protection;
use crate::identity::Identity;
use crate::project::Project;
use crate::spec::SpecStore;

/// Record your review approval of a spec's branch head (spec_approved)
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git log -p main..chant/2026-01-22-001-x7m       review first
  git chant approve x7m --comment \"looks good\"
  git push origin refs/chant/audit main           the approval travels with the ledger

The approval is bound to the branch's current head: a commit added afterwards needs a
new approval before the server accepts a merge into a protected branch. Agents (inside a
chant session, or matching protection.agents) cannot approve.")]
pub struct Args {
    /// Spec id (any unique form)
    id: String,
    /// A note for the record
    #[arg(long)]
    comment: Option<String>,
}

pub fn run(args: Args) -> Result<u8> {
    let project = Project::discover()?;
    project.require_initialised()?;
    let config = project.config()?;
    let id = SpecStore::new(project.specs_dir()).resolve(&args.id)?;
    let identity = Identity::resolve(Some(&project.repo))?;
    if crate::hooks::client::in_agent_session(&config, &identity.actor) {
        return Err(Error::Refused(format!(
            "{} is an agent (chant session or protection.agents); approvals must come from a person",
            identity.actor
        )));
    }
    let branch = format!("{}{id}", config.chant.branch_prefix);
    let head = project
        .repo
        .refname_to_id(&format!("refs/heads/{branch}"))
        .map_err(|_| {
            Error::Refused(format!(
                "spec {id} has no branch {branch} yet; run `git chant work {id}` first"
            ))
        })?;
    let mut entry = NewEntry::new(Event::SpecApproved)
        .spec(id.as_str())
        .detail("commit", head.to_string())
        .detail("branch", branch.clone());
    if let Some(c) = &args.comment {
        entry = entry.detail("comment", c.clone());
    }
    crate::audit::record(&project, &config, &identity, entry)?;
    outln!(
        "Approved {branch} at {} as {}",
        protection::short(head),
        identity.actor
    );
    Ok(0)
}
