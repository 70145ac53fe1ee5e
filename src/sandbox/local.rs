//! Levels `none` and `permissions`: the agent runs as the user, in the clone, with the
//! filtered environment. At `permissions` the agent's own permission settings (written by
//! its adapter, `crate::agent`) are what restrains it. Neither level contains the agent;
//! the policy check after the run is what keeps a misbehaving agent's work from landing.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use std::path::Path;

use super::{process, Check, Checkup, Job, Outcome, OutputSink, Sandbox, SandboxError};
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

    fn checkup(&self, template: &[String], root: &Path) -> Checkup {
        let program = template.first().map(String::as_str).unwrap_or_default();
        let resolved = if program.contains('/') && !program.starts_with('/') {
            root.join(program).to_string_lossy().into_owned()
        } else {
            program.to_string()
        };
        let path = std::env::var("PATH").unwrap_or_default();
        match process::find_program(&resolved, &path) {
            Some(p) => Checkup::usable(Check::ok(format!(
                "agent program {program} at {}",
                p.display()
            ))),
            None => Checkup::failed(Check::missing(format!(
                "agent program '{program}' not found on PATH; install it or set agent.command"
            ))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_checkup_finds_a_relative_agent_under_the_repository_root_and_names_a_missing_one() {
        let root = tempfile::tempdir().expect("tempdir");
        let agent = root.path().join("agents/run.sh");
        std::fs::create_dir_all(agent.parent().expect("parent")).expect("mkdir");
        std::fs::write(&agent, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let found = Local::permissions().checkup(&["agents/run.sh".into()], root.path());
        assert!(found.usable);
        assert_eq!(found.lines[0].status, "ok");
        assert!(
            found.lines[0].text.contains(&agent.display().to_string()),
            "{found:?}"
        );
        let missing = Local::none().checkup(&["agents/absent.sh".into()], root.path());
        assert!(!missing.usable);
        assert_eq!(missing.lines[0].status, "missing");
        assert!(
            missing.lines[0]
                .text
                .contains("agent program 'agents/absent.sh' not found on PATH"),
            "{missing:?}"
        );
    }
}
