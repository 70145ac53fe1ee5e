//! `git chant cancel` asking a running `work` to stop: a request file beside the lock, read
//! by the run when its agent was stopped, so the run records `spec_cancelled` with the reason.

use std::path::PathBuf;

use crate::project::Project;
use crate::spec::SpecId;

/// A `git chant cancel` request left for the running `work` process.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CancelRequest {
    pub reason: String,
    pub actor: String,
}

/// The cancel request file of `id`.
pub fn cancel_path(project: &Project, id: &SpecId) -> PathBuf {
    project
        .chant_dir()
        .join(".locks")
        .join(format!("{id}.cancel"))
}

pub(super) fn take_cancel_request(project: &Project, id: &SpecId) -> Option<CancelRequest> {
    let path = cancel_path(project, id);
    let text = std::fs::read_to_string(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    serde_json::from_str(&text).ok()
}
