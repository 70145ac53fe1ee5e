//! `work --dry-run`: what a run would do, checked as `run` checks it, without a clone, a
//! branch, a ledger entry or any contact with an engine or a cluster.
//!
//! The level is handed the job `run` would give it (same prompt, placeholders, environment
//! and secret names, at the paths the program would see) and says whether it has objects
//! worth showing ([`crate::sandbox::Sandbox::describe`]); otherwise the plan's lines say it
//! all. Which level it is, this module never asks.

use super::seen::Seen;
use super::{clone_path, prepare, prompt, run_dir, Options, Plan, Prepared, WorkError};
use crate::identity::Identity;
use crate::project::Project;
use crate::sandbox::Job;

/// What `work --dry-run` shows.
#[derive(Debug)]
pub enum DryRun {
    /// The objects the level would create, as documents a tool can apply (e.g. Kubernetes
    /// manifests as YAML), secret values withheld: printed alone on stdout.
    Documents(String),
    /// What would run, for a person to read.
    Plan(Plan),
}

/// Checks everything `run` checks before it creates anything, and describes the run.
pub fn dry_run(
    project: &Project,
    identity: &Identity,
    options: &Options,
) -> Result<DryRun, WorkError> {
    let prepared = prepare(project, options)?;
    let job = would_run(project, identity, &prepared)?;
    match prepared.sandbox.describe(&job)? {
        Some(documents) => Ok(DryRun::Documents(documents)),
        None => super::plan(project, prepared).map(DryRun::Plan),
    }
}

/// The job `run` would hand the level (no file is written).
fn would_run(
    project: &Project,
    identity: &Identity,
    prepared: &Prepared,
) -> Result<Job, WorkError> {
    let config = &prepared.config;
    let id = prepared.id.as_str();
    let prompt_text = prompt::build(
        &prepared.spec,
        config,
        prepared.agent.commands_rule(prepared.level),
    );
    let guest = prepared.sandbox.guest();
    let seen = match &guest {
        Some(g) => Seen::guest(g),
        None => Seen::host(
            clone_path(project, &prepared.id, &identity.session)?,
            &run_dir(project, &identity.session),
        ),
    };
    let exposed = prepared.secrets.filtered(&config.agent.secrets);
    let env = seen.env(id, &identity.session, &exposed)?;
    let argv = seen.argv(&prepared.template, &prompt_text, id);
    Ok(Job {
        argv,
        env,
        workspace: seen.clone.clone(),
        timeout: config.agent.timeout.duration(),
        files: vec![(seen.prompt, prompt_text.into_bytes())],
        hold_stdin: false,
        network: None,
        gate: None,
    })
}
