//! The run's command gate on the host, for levels whose `$CHANT_EXEC` reaches chant through
//! a socket ([`crate::sandbox::Sandbox::gate_channel`]): serves `gate.sock` in the run's
//! directory (never in the clone) for the whole run, decides every request against
//! `agent.commands` (and `permissions.deny_bash`), as `git chant exec` does on the host, and
//! records it in the ledger under the run's own identity and session, whatever the client
//! says. Commands and reasons are masked before they are recorded or answered.
//!
//! Recorded per request: a refusal is a `policy_violation` plus a `command_run` with
//! `decision: refused` (rule, via, cwd); an allowed hook request a `command_run` with
//! `decision: allowed` at once (the agent runs it itself); an allowed `$CHANT_EXEC cmd` a
//! `command_run` with `decision: allowed`, the exit code the sandbox reported and the
//! duration the host measured, once it ended; a Claude Code result event a `command_run`
//! with `phase: completed` (`agent::claude::hook`). An allowed request whose entry cannot
//! be written is refused instead. It never runs a command.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::WorkError;
use crate::audit::{Event, NewEntry};
use crate::config::Config;
use crate::exec::{CommandPolicy, Decision};
use crate::gate::server::GateServer;
use crate::gate::{Answer, Asked, Judge};
use crate::identity::Identity;
use crate::project::Project;
use crate::secrets::Redactor;

/// The socket's name in the run's directory.
pub(super) const SOCKET: &str = "gate.sock";

/// Makes the run's ledger entries (spec, sandbox level, agent).
pub(super) type EntryMaker = Box<dyn Fn(Event) -> NewEntry + Send + Sync>;

/// Serves the gate while alive.
pub(super) struct RunGate {
    server: GateServer,
    failures: Arc<Mutex<Failures>>,
}

/// Hook results the gate was handed but could not record: at levels whose `$HOME` is inside
/// the sandbox the hook's own error file never reaches chant, so the host keeps count.
#[derive(Default, Clone)]
pub(super) struct Failures {
    /// How many.
    pub(super) count: usize,
    /// The last one's reason.
    pub(super) last: Option<String>,
}

impl RunGate {
    /// Serves the gate at `run_dir/gate.sock`, recording into the repository at `root`.
    pub(super) fn start(
        run_dir: &Path,
        root: &Path,
        config: &Config,
        identity: &Identity,
        redactor: Redactor,
        entry: EntryMaker,
    ) -> Result<RunGate, WorkError> {
        let project = Project::discover_from(root)?;
        let failures = Arc::new(Mutex::new(Failures::default()));
        let judge = RunJudge {
            failures: failures.clone(),
            project: Mutex::new(project),
            config: config.clone(),
            identity: identity.clone(),
            policy: CommandPolicy::for_agent(&config.agent),
            redactor,
            entry,
        };
        let socket = run_dir.join(SOCKET);
        let _ = std::fs::remove_file(&socket);
        let server =
            GateServer::start(&socket, Arc::new(judge)).map_err(|e| WorkError::io(&socket, e))?;
        Ok(RunGate { server, failures })
    }

    /// The hook results handed to the gate so far that could not be recorded.
    pub(super) fn failures(&self) -> Failures {
        self.failures
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// The socket on the host, for [`crate::sandbox::Job::gate`].
    pub(super) fn socket(&self) -> &Path {
        self.server.socket()
    }
}

struct RunJudge {
    project: Mutex<Project>,
    config: Config,
    identity: Identity,
    policy: CommandPolicy,
    redactor: Redactor,
    entry: EntryMaker,
    failures: Arc<Mutex<Failures>>,
}

impl RunJudge {
    fn record(&self, entries: Vec<NewEntry>) -> bool {
        let Ok(project) = self.project.lock() else {
            return false;
        };
        crate::audit::record_batch(&project, &self.config, &self.identity, entries).is_ok()
    }

    /// A `command_run` entry for `asked`.
    fn command_run(&self, asked: &Asked, decision: &str) -> NewEntry {
        let (via, cwd, tool_use_id) = match asked {
            Asked::Run { cwd, .. } => ("gate", cwd.as_str(), None),
            Asked::ClaudeHook {
                cwd,
                tool_use_id,
                via,
                ..
            } => (*via, cwd.as_str(), tool_use_id.clone()),
            Asked::ClaudeHookResult { cwd, .. } => ("claude-hook", cwd.as_str(), None),
            Asked::Unreadable { .. } => ("gate", "", None),
        };
        let entry = (self.entry)(Event::CommandRun)
            .detail("command", self.redactor.redact(&asked.command()))
            .detail("decision", decision)
            .detail("via", via)
            .detail("cwd", self.redactor.redact(cwd));
        match tool_use_id {
            Some(id) => entry.detail("tool_use_id", id),
            None => entry,
        }
    }

    /// Records how a command the hook allowed ended; why not when it cannot be read or
    /// written (counted in [`Failures`] too).
    fn record_result(&self, asked: &Asked) -> Result<(), String> {
        let Asked::ClaudeHookResult { event, cwd, .. } = asked else {
            return Err("not a hook result".into());
        };
        let base = (self.entry)(Event::CommandRun);
        let result = match crate::agent::claude::hook::result_entry(base, event) {
            Ok(entry) => {
                if self.record(vec![entry
                    .detail("command", self.redactor.redact(&asked.command()))
                    .detail("cwd", self.redactor.redact(cwd))])
                {
                    Ok(())
                } else {
                    Err("the audit ledger could not be written".to_string())
                }
            }
            Err(why) => Err(self.redactor.redact(&why)),
        };
        if let Err(why) = &result {
            let mut failures = self
                .failures
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            failures.count += 1;
            failures.last = Some(format!(
                "chant: the gate could not record a command's result: {why}"
            ));
        }
        result
    }
}

impl Judge for RunJudge {
    fn decide(&self, asked: &Asked) -> Answer {
        if let Asked::ClaudeHookResult { .. } = asked {
            // Not a decision: the command has run. A result that cannot be recorded is
            // answered so, and the hook reports it.
            return match self.record_result(asked) {
                Ok(()) => Answer {
                    allow: true,
                    reason: None,
                },
                Err(_) => Answer {
                    allow: false,
                    reason: Some("chant: the command's result could not be recorded".into()),
                },
            };
        }
        let decision = match asked {
            Asked::Run { argv, .. } => self.policy.check(argv),
            Asked::ClaudeHookResult { .. } => Decision::Allowed,
            Asked::ClaudeHook { line, .. } => self.policy.check_line(line),
            Asked::Unreadable { why, shown } => Decision::Denied {
                rule: format!("cannot be checked: {why}"),
                segment: shown.clone(),
            },
        };
        match decision {
            Decision::Denied { rule, segment } => {
                let (rule, segment) = (self.redactor.redact(&rule), self.redactor.redact(&segment));
                // Refused whether or not it could be recorded.
                self.record(vec![
                    (self.entry)(Event::PolicyViolation)
                        .detail("rule", "agent.commands")
                        .detail("pattern", rule.clone())
                        .detail("command", self.redactor.redact(&asked.command()))
                        .detail("segment", segment.clone()),
                    self.command_run(asked, "refused")
                        .detail("rule", rule.clone()),
                ]);
                Answer {
                    allow: false,
                    reason: Some(format!("chant: command refused: '{segment}' ({rule})")),
                }
            }
            Decision::Allowed => {
                let recorded = match asked {
                    Asked::ClaudeHook { .. } => {
                        self.record(vec![self.command_run(asked, "allowed")])
                    }
                    // Recorded once it ended, with its exit code (see `ran`).
                    _ => true,
                };
                if recorded {
                    Answer {
                        allow: true,
                        reason: None,
                    }
                } else {
                    Answer {
                        allow: false,
                        reason: Some(
                            "chant: command refused: it could not be recorded in the audit ledger"
                                .into(),
                        ),
                    }
                }
            }
        }
    }

    fn ran(&self, asked: &Asked, exit_code: Option<i32>, duration_ms: u64) {
        let entry = self
            .command_run(asked, "allowed")
            .detail("duration_ms", duration_ms);
        let entry = match exit_code {
            Some(code) => entry.detail("exit_code", code),
            None => entry.detail("ended", "the sandbox reported no exit code"),
        };
        self.record(vec![entry]);
    }
}
