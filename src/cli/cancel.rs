//! `git chant cancel`: stop a running spec, or mark an idle one cancelled.

use std::time::{Duration, Instant};

use crate::audit::{Event, NewEntry};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::project::Project;
use crate::spec::SpecStore;
use crate::work::{self, lock, CancelRequest};

/// Cancel a spec: stop its running agent, record spec_cancelled
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant cancel x7m --reason \"wrong approach\"

A running `git chant work` for the spec is asked to stop (SIGTERM); it kills the
agent's whole process group, keeps the clone for inspection and records
spec_cancelled with your reason. A spec that is not running is recorded as cancelled.")]
pub struct Args {
    /// Spec id (any unique form)
    id: String,
    /// Why (recorded in the ledger)
    #[arg(long)]
    reason: String,
}

pub fn run(args: Args) -> Result<u8> {
    let project = Project::discover()?;
    project.require_initialised()?;
    let config = project.config()?;
    if args.reason.trim().is_empty() {
        return Err(Error::Usage("--reason must not be empty".into()));
    }
    let id = SpecStore::new(project.specs_dir()).resolve(&args.id)?;
    let identity = Identity::resolve(Some(&project.repo))?;
    let lock_path = lock::lock_path(&project.chant_dir().join(".locks"), &id);
    match lock::read(&lock_path) {
        Some(holder) if !lock::is_stale(&holder) => {
            if holder.host != identity.host.as_str() {
                return Err(Error::Refused(format!(
                    "spec {id} runs on host {} (pid {}); cancel it there",
                    holder.host, holder.pid
                )));
            }
            let request = CancelRequest {
                reason: args.reason.clone(),
                actor: identity.actor.to_string(),
            };
            let path = work::cancel_path(&project, &id);
            let text = serde_json::to_string(&request).map_err(|e| Error::Usage(e.to_string()))?;
            crate::atomic::replace(&path, text.as_bytes()).map_err(|e| Error::io(&path, e))?;
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(holder.pid as libc::pid_t, libc::SIGTERM);
            }
            let until = Instant::now() + Duration::from_secs(15);
            while Instant::now() < until && lock_path.exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
            if lock_path.exists() {
                return Err(Error::Refused(format!(
                    "asked pid {} to stop spec {id}, but it still holds the lock",
                    holder.pid
                )));
            }
            outln!("Cancelled spec {id} (stopped pid {}).", holder.pid);
        }
        _ => {
            crate::audit::record(
                &project,
                &config,
                &identity,
                NewEntry::new(Event::SpecCancelled)
                    .spec(id.as_str())
                    .detail("reason", args.reason.clone())
                    .detail("cancelled_by", identity.actor.to_string()),
            )?;
            outln!("Spec {id} was not running; recorded as cancelled.");
        }
    }
    Ok(0)
}
