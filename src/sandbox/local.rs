//! Levels `none` and `permissions`: the agent runs as the user, in the clone, with the
//! filtered environment. At `permissions` the agent's own permission settings (written by
//! its adapter, `crate::agent`) are what restrains it. Neither level contains the agent;
//! the policy check after the run is what keeps a misbehaving agent's work from landing.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{process, Job, Outcome, OutputSink, Sandbox, SandboxError};
use crate::config::SandboxLevel;

/// A sandbox that runs the agent on this machine as the current user.
pub struct Local {
    level: SandboxLevel,
}

impl Local {
    pub fn none() -> Self {
        Local {
            level: SandboxLevel::None,
        }
    }

    pub fn permissions() -> Self {
        Local {
            level: SandboxLevel::Permissions,
        }
    }
}

impl Sandbox for Local {
    fn level(&self) -> SandboxLevel {
        self.level
    }

    fn preflight(&self, argv: &[String]) -> Result<(), SandboxError> {
        let program = argv.first().cloned().unwrap_or_default();
        let path = std::env::var("PATH").unwrap_or_default();
        match process::find_program(&program, &path) {
            Some(_) => Ok(()),
            None => Err(SandboxError::ProgramNotFound { program }),
        }
    }

    fn run(
        &self,
        job: &Job,
        sink: &mut dyn OutputSink,
        stop: &Arc<AtomicBool>,
    ) -> Result<Outcome, SandboxError> {
        match &job.network {
            // The proxy variables are all that steers the program here: honour system.
            Some(egress) => {
                let mut job = job.clone();
                job.env.extend(crate::net::proxy_env(&egress.url));
                process::run(&job, sink, stop)
            }
            None => process::run(job, sink, stop),
        }
    }
}
