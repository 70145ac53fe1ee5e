//! `work --dry-run` at the kubernetes level: the run's manifests, built exactly as `run`
//! would send them (same prompt, placeholders, environment and Secret keys), without a
//! clone, a branch, a ledger entry or any contact with a cluster.

use super::seen::Seen;
use super::{prepare, prompt, Options, WorkError};
use crate::identity::Identity;
use crate::project::Project;
use crate::sandbox::kubernetes::{manifests, Kubernetes};
use crate::sandbox::Job;

/// The YAML documents `run` would create for this spec (the Secret's values withheld).
pub fn kubernetes_manifests(
    project: &Project,
    identity: &Identity,
    options: &Options,
) -> Result<String, WorkError> {
    let prepared = prepare(project, options)?;
    let config = &prepared.config;
    let level = Kubernetes::new(config)?;
    let guest = crate::sandbox::Sandbox::guest(&level).ok_or_else(|| {
        WorkError::Sandbox(crate::sandbox::SandboxError::Kubernetes(
            "no pod paths".into(),
        ))
    })?;
    let prompt_text = prompt::build(
        &prepared.spec,
        config,
        prepared.agent.commands_rule(prepared.level),
    );
    let seen = Seen::guest(&guest);
    let exposed = prepared.secrets.filtered(&config.agent.secrets);
    let env = seen.env(prepared.id.as_str(), &identity.session, &exposed)?;
    let argv = seen.argv(&prepared.template, &prompt_text, prepared.id.as_str());
    let job = Job {
        argv,
        env,
        workspace: guest.workspace.clone(),
        timeout: config.agent.timeout.duration(),
        files: vec![(seen.prompt, prompt_text.into_bytes())],
        hold_stdin: false,
        network: None,
        gate: None,
    };
    let m = level.manifests(&Kubernetes::run_spec(&job));
    manifests::to_yaml(&m).map_err(|e| {
        WorkError::Sandbox(crate::sandbox::SandboxError::Kubernetes(format!(
            "cannot write the manifests as YAML: {e}"
        )))
    })
}
