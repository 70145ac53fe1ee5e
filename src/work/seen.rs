//! The run as the agent sees it: where its clone, home, command gate and prompt are, and its
//! `PATH` — the host's paths at levels none and permissions, the guest's inside a container,
//! a vm or a pod. The agent's environment and argv are made from it, the same way for a run
//! and for `--dry-run`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{prompt, WorkError};
use crate::sandbox::GuestView;
use crate::secrets::AgentContext;

pub(super) struct Seen {
    pub(super) clone: PathBuf,
    pub(super) home: PathBuf,
    pub(super) exec: PathBuf,
    pub(super) prompt: PathBuf,
    /// None: the host's own `PATH`.
    pub(super) path: Option<OsString>,
}

impl Seen {
    /// On the host (levels whose program sees the host's paths): the clone, and the run
    /// dir holding the private HOME, the gate wrapper and the prompt.
    pub(super) fn host(clone: PathBuf, run_dir: &Path) -> Seen {
        Seen {
            clone,
            home: run_dir.join("home"),
            exec: run_dir.join(super::EXEC_WRAPPER),
            prompt: run_dir.join("prompt.md"),
            path: None,
        }
    }

    /// Inside a sandbox with paths of its own.
    pub(super) fn guest(g: &GuestView) -> Seen {
        Seen {
            clone: g.workspace.clone(),
            home: g.home.clone(),
            exec: g.exec.clone(),
            prompt: g.files_dir.join("prompt.md"),
            path: Some(OsString::from(&g.path)),
        }
    }

    /// The agent's whole environment: chant's variables for these paths and the exposed
    /// secrets.
    pub(super) fn env(
        &self,
        spec_id: &str,
        session: &str,
        exposed: &[(String, String)],
    ) -> Result<Vec<(String, String)>, WorkError> {
        let env = crate::secrets::agent_env(
            &AgentContext {
                spec_id,
                session,
                clone: &self.clone,
                home: &self.home,
                exec: &self.exec,
                path: self.path.clone(),
                lang: None,
                term: None,
            },
            exposed,
        )?;
        Ok(env
            .into_iter()
            .map(|(k, v)| (k, v.to_string_lossy().into_owned()))
            .collect())
    }

    /// `program` (the command template) with its placeholders filled in for these paths.
    pub(super) fn argv(&self, program: &[String], prompt_text: &str, spec_id: &str) -> Vec<String> {
        prompt::substitute(
            program,
            &prompt::Placeholders {
                prompt: prompt_text,
                prompt_file: &self.prompt.to_string_lossy(),
                spec_id,
                workspace: &self.clone.to_string_lossy(),
            },
        )
    }
}
