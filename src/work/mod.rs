//! `git chant work`: the nine steps of DESIGN.md "Running a spec".
//!
//! resolve → sensitive-target check → lock → branch + sandboxed clone → filtered env →
//! run under the sandbox level → collect the result as data → policy check → land.
//! Every step that matters is recorded through the caller's [`Recorder`] (the audit
//! ledger); nothing here prints — progress and agent output go to the [`Reporter`].

mod clone;
mod collect;
mod land;
pub mod lock;
mod policy;
mod prompt;
mod scan;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

pub use collect::{Change, ChangeKind};
pub use policy::{Notice, Violation};

use crate::audit::{Event, NewEntry};
use crate::config::{Config, SandboxLevel};
use crate::identity::Identity;
use crate::project::Project;
use crate::sandbox::{self, Job, Outcome, OutputSink, SandboxError, Stream};
use crate::secrets::{AgentContext, SecretSource};
use crate::spec::{Spec, SpecId, SpecStore};

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("spec {id} is {status}; only pending or failed specs can be worked (see `git chant show {id}`)")]
    NotWorkable { id: SpecId, status: String },
    #[error(
        "base branch '{branch}' does not exist; create it or set work.base in .chant/config.md"
    )]
    NoBase { branch: String },
    #[error("branch {branch} moved while the agent worked; nothing was landed — run `git chant work` again")]
    BranchMoved { branch: String },
    #[error(
        "spec targets sensitive file(s) {files}; no terminal to confirm: pass --yes to proceed"
    )]
    NeedsConfirmation { files: String },
    #[error("cannot record to the audit ledger ({0}); nothing further was run or landed")]
    Ledger(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

impl WorkError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        WorkError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            WorkError::Spec(e) => e.exit_code(),
            WorkError::Sandbox(e) => e.exit_code(),
            WorkError::Secrets(e) => e.exit_code(),
            WorkError::Config(_)
            | WorkError::NeedsConfirmation { .. }
            | WorkError::NoBase { .. } => 2,
            _ => 1,
        }
    }
}

/// What the caller asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub spec: String,
    pub sandbox: Option<SandboxLevel>,
    pub secrets_from: Vec<String>,
    pub yes: bool,
    pub keep: bool,
    pub dry_run: bool,
}

/// Where progress, warnings, agent output and questions go (the terminal, in the CLI).
pub trait Reporter: Send {
    fn info(&mut self, line: &str);
    fn warn(&mut self, line: &str);
    fn agent_output(&mut self, stream: Stream, bytes: &[u8]);
    /// Asks a yes/no question; None when nobody can answer (no terminal).
    fn confirm(&mut self, question: &str) -> Option<bool>;
}

/// Where ledger entries go (the audit ledger, in the CLI).
pub trait Recorder {
    fn record(&mut self, entries: Vec<NewEntry>) -> Result<(), String>;
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Completed {
        commit: Option<String>,
        files: Vec<String>,
    },
    Failed {
        reason: String,
    },
    Cancelled {
        reason: String,
    },
}

/// The result of `run`.
#[derive(Debug)]
pub struct Report {
    pub id: SpecId,
    pub verdict: Verdict,
    /// The clone, when it was kept (on failure or with `--keep`).
    pub clone: Option<PathBuf>,
    pub log: PathBuf,
    pub violations: Vec<Violation>,
    pub notices: Vec<Notice>,
}

/// What `work` would do, computed without creating or recording anything (`--dry-run`).
#[derive(Debug)]
pub struct Plan {
    pub id: SpecId,
    pub title: String,
    pub level: SandboxLevel,
    pub branch: String,
    /// Where the branch starts: its existing tip, or the base branch.
    pub start: String,
    pub command: Vec<String>,
    /// Names (never values) of the secrets the agent would see.
    pub exposed: Vec<String>,
    pub sensitive_targets: Vec<String>,
    pub validate: Vec<String>,
}

/// Checks everything `run` checks before it creates anything, and describes the run.
pub fn plan(project: &Project, options: &Options) -> Result<Plan, WorkError> {
    let Prepared {
        config,
        id,
        spec,
        level,
        template,
        secrets,
        ..
    } = prepare(project, options)?;
    let branch = format!("{}{id}", config.chant.branch_prefix);
    let start = match project.repo.refname_to_id(&format!("refs/heads/{branch}")) {
        Ok(tip) => format!("{branch} at {}", &tip.to_string()[..12]),
        Err(_) => {
            let base = config.base_branch();
            project
                .repo
                .refname_to_id(&format!("refs/heads/{base}"))
                .map_err(|_| WorkError::NoBase {
                    branch: base.to_string(),
                })?;
            format!("a new branch from {base}")
        }
    };
    Ok(Plan {
        title: spec.title().to_string(),
        level,
        branch,
        start,
        command: template,
        exposed: secrets
            .filtered(&config.agent.secrets)
            .into_iter()
            .map(|(k, _)| k)
            .collect(),
        sensitive_targets: spec
            .target_files()
            .into_iter()
            .filter(|t| config.security.sensitive_patterns.0.is_match(t))
            .collect(),
        validate: config.work.validate.clone(),
        id,
    })
}

/// Step 1, shared by `run` and `plan`: everything checked before anything is created.
struct Prepared {
    config: Config,
    id: SpecId,
    spec: Spec,
    level: SandboxLevel,
    sandbox: Box<dyn sandbox::Sandbox>,
    template: Vec<String>,
    secrets: crate::secrets::Secrets,
}

fn prepare(project: &Project, options: &Options) -> Result<Prepared, WorkError> {
    let config = project.config()?;
    let store = SpecStore::new(project.specs_dir());
    let id = store.resolve(&options.spec)?;
    let spec = store.load(&id)?;
    let ledger = crate::spec::status::of_repository(&project.repo);
    let status = crate::spec::status::effective(&spec, &ledger).to_string();
    if matches!(status.as_str(), "completed" | "cancelled") {
        return Err(WorkError::NotWorkable { id, status });
    }
    let level = options.sandbox.unwrap_or(config.agent.sandbox);
    let sandbox = sandbox::for_level(level, &config)?;
    let template = config.agent_command();
    if sandbox.guest().is_some() {
        sandbox.preflight(&template)?;
    } else {
        sandbox.preflight(&resolve_program(&template, project.root()))?;
    }
    let sources = options
        .secrets_from
        .iter()
        .map(|uri| SecretSource::parse(uri))
        .collect::<Result<Vec<_>, _>>()?;
    let secrets = crate::secrets::collect(&sources, project.root())?;
    Ok(Prepared {
        config,
        id,
        spec,
        level,
        sandbox,
        template,
        secrets,
    })
}

/// Runs a spec. `stop` is set by Ctrl-C/SIGTERM handlers (and `cancel`).
pub fn run(
    project: &Project,
    identity: &Identity,
    options: &Options,
    reporter: &mut dyn Reporter,
    recorder: &mut dyn Recorder,
    stop: &Arc<AtomicBool>,
) -> Result<Report, WorkError> {
    let prepared = prepare(project, options)?;
    // Every entry passes through the redactor: file names and reasons come from the agent.
    let mut masked = Masked {
        inner: recorder,
        redactor: prepared.secrets.redactor(),
    };
    run_prepared(
        project,
        identity,
        options,
        reporter,
        &mut masked,
        stop,
        prepared,
    )
}

/// A recorder that masks every secret value in the entries it passes on.
struct Masked<'r> {
    inner: &'r mut dyn Recorder,
    redactor: crate::secrets::Redactor,
}

impl Recorder for Masked<'_> {
    fn record(&mut self, entries: Vec<NewEntry>) -> Result<(), String> {
        let entries = entries
            .into_iter()
            .map(|mut e| {
                if let Value::Object(details) = self.redactor.redact_json(&Value::Object(e.details))
                {
                    e.details = details;
                } else {
                    e.details = serde_json::Map::new();
                }
                e
            })
            .collect();
        self.inner.record(entries)
    }
}

fn run_prepared(
    project: &Project,
    identity: &Identity,
    options: &Options,
    reporter: &mut dyn Reporter,
    recorder: &mut dyn Recorder,
    stop: &Arc<AtomicBool>,
    prepared: Prepared,
) -> Result<Report, WorkError> {
    // 1. Resolve, check status, load config, pick the level, check the program exists.
    let Prepared {
        config,
        id,
        spec,
        level,
        sandbox,
        template,
        secrets,
    } = prepared;

    let entry = |event: Event| run_entry(event, &id, level, &template);

    // 2. Sensitive targets.
    let sensitive: Vec<String> = spec
        .target_files()
        .into_iter()
        .filter(|t| config.security.sensitive_patterns.0.is_match(t))
        .collect();
    let mut confirmed_by = Value::Null;
    if !sensitive.is_empty() {
        for file in &sensitive {
            reporter.warn(&format!("Warning: Spec targets sensitive file: {file}"));
        }
        let answer = if options.yes {
            Some(true)
        } else {
            reporter.confirm("Continue? [y/N]")
        };
        match answer {
            Some(true) => confirmed_by = json!(if options.yes { "--yes" } else { "prompt" }),
            Some(false) => {
                let reason = format!(
                    "declined: spec targets sensitive file(s) {}",
                    sensitive.join(", ")
                );
                recorder
                    .record(vec![entry(Event::SpecCancelled)
                        .detail("reason", reason.clone())
                        .detail("sensitive_targets", sensitive.clone())])
                    .map_err(WorkError::Ledger)?;
                return Ok(Report {
                    id,
                    verdict: Verdict::Cancelled { reason },
                    clone: None,
                    log: PathBuf::new(),
                    violations: Vec::new(),
                    notices: Vec::new(),
                });
            }
            None => {
                recorder
                    .record(vec![entry(Event::PolicyViolation)
                        .detail("rule", "security.sensitive_patterns")
                        .detail("paths", sensitive.clone())
                        .detail("decision", "refused: no terminal and no --yes")])
                    .map_err(WorkError::Ledger)?;
                return Err(WorkError::NeedsConfirmation {
                    files: sensitive.join(", "),
                });
            }
        }
    }

    // 3. Lock.
    let started_at = Instant::now();
    let info = lock::LockInfo {
        pid: std::process::id(),
        host: identity.host.clone(),
        user: crate::identity::os_user(),
        started: crate::clock::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let held = lock::SpecLock::acquire(&project.chant_dir().join(".locks"), &id, info)?;
    if let Some(old) = &held.recovered {
        reporter.warn(&format!(
            "Recovered a stale lock of spec {id} (pid {} on {} is gone)",
            old.pid, old.host
        ));
    }
    let mut acquired = entry(Event::LockAcquired).detail("pid", std::process::id());
    if let Some(old) = &held.recovered {
        acquired = acquired.detail("recovered_from_pid", old.pid);
    }
    recorder.record(vec![acquired]).map_err(WorkError::Ledger)?;

    let mut ctx = Run {
        project,
        identity,
        config: &config,
        spec: &spec,
        id: id.clone(),
        level,
        sandbox: sandbox.as_ref(),
        template: &template,
        secrets: &secrets,
        stop,
        log: project
            .state_dir()
            .join("logs")
            .join(format!("{id}-{}.log", identity.session)),
    };
    let result = ctx.steps(options, reporter, recorder, confirmed_by);

    // Always: release the lock and record it, whatever happened above.
    let release = entry(Event::LockReleased)
        .detail("pid", std::process::id())
        .detail("duration_ms", started_at.elapsed().as_millis() as u64);
    held.release();
    let recorded = recorder.record(vec![release]);
    let report = result?;
    recorded.map_err(WorkError::Ledger)?;
    Ok(report)
}

struct Run<'a> {
    project: &'a Project,
    identity: &'a Identity,
    config: &'a Config,
    spec: &'a Spec,
    id: SpecId,
    level: SandboxLevel,
    sandbox: &'a dyn sandbox::Sandbox,
    template: &'a [String],
    secrets: &'a crate::secrets::Secrets,
    stop: &'a Arc<AtomicBool>,
    log: PathBuf,
}

impl Run<'_> {
    fn entry(&self, event: Event) -> NewEntry {
        run_entry(event, &self.id, self.level, self.template)
    }

    fn steps(
        &mut self,
        options: &Options,
        reporter: &mut dyn Reporter,
        recorder: &mut dyn Recorder,
        confirmed_by: Value,
    ) -> Result<Report, WorkError> {
        let repo = &self.project.repo;
        let prefix = &self.config.chant.branch_prefix;
        let branch = format!("{prefix}{}", self.id);
        let branch_ref = format!("refs/heads/{branch}");
        let base = self.config.base_branch().to_string();

        // 4. Branch and sandboxed clone.
        let existing = repo.refname_to_id(&branch_ref).ok();
        let start = match existing {
            Some(tip) => tip,
            None => repo
                .refname_to_id(&format!("refs/heads/{base}"))
                .map_err(|_| WorkError::NoBase {
                    branch: base.clone(),
                })?,
        };
        if existing.is_none()
            && !crate::git::compare_and_swap(repo, &branch_ref, start, None, "chant: start")?
        {
            return Err(WorkError::BranchMoved { branch });
        }
        let run_dir = self
            .project
            .state_dir()
            .join("runs")
            .join(&self.identity.session);
        let clone_path = self
            .project
            .state_dir()
            .join("clones")
            .join(format!("{}-{}", self.id, self.identity.session));
        reporter.info(&format!(
            "Preparing a sandboxed clone of {branch} at {}",
            clone_path.display()
        ));
        let fa = &self.config.agent.file_access;
        let visibility = clone::Visibility {
            allow: vec![&fa.allowed_paths.0, &self.config.agent.allowed_paths.0],
            deny: vec![&fa.denied_paths.0, &self.config.agent.denied_paths.0],
        };
        let clone = clone::create(repo, start, &branch, &clone_path, &visibility)?;
        let generated: HashSet<String> = self.sandbox.prepare(&clone.path)?.into_iter().collect();

        // 5. Environment and prompt.
        let home = run_dir.join("home");
        std::fs::create_dir_all(&home).map_err(|e| WorkError::io(&home, e))?;
        let prompt_text = prompt::build(self.spec, self.config);
        let prompt_file = run_dir.join("prompt.md");
        crate::atomic::replace(&prompt_file, prompt_text.as_bytes())
            .map_err(|e| WorkError::io(&prompt_file, e))?;
        let exec_wrapper = write_exec_wrapper(&run_dir, self.project.root())?;
        let exposed = self.secrets.filtered(&self.config.agent.secrets);
        // Paths as the agent sees them: the host's, or the guest's for vm (and docker).
        let guest = self.sandbox.guest();
        let (seen_clone, seen_home, seen_exec, seen_prompt, seen_path) = match &guest {
            Some(g) => (
                g.workspace.clone(),
                g.home.clone(),
                g.exec.clone(),
                g.files_dir.join("prompt.md"),
                Some(std::ffi::OsString::from(&g.path)),
            ),
            None => (
                clone.path.clone(),
                home.clone(),
                exec_wrapper.clone(),
                prompt_file.clone(),
                None,
            ),
        };
        let env: Vec<(String, String)> = crate::secrets::agent_env(
            &AgentContext {
                spec_id: self.id.as_str(),
                session: &self.identity.session,
                clone: &seen_clone,
                home: &seen_home,
                exec: &seen_exec,
                path: seen_path,
                lang: None,
                term: None,
            },
            &exposed,
        )?
        .into_iter()
        .map(|(k, v)| (k, v.to_string_lossy().into_owned()))
        .collect();
        let program = match guest {
            Some(_) => self.template.to_vec(),
            None => resolve_program(self.template, self.project.root()),
        };
        let argv = prompt::substitute(
            &program,
            &prompt::Placeholders {
                prompt: &prompt_text,
                prompt_file: &seen_prompt.to_string_lossy(),
                spec_id: self.id.as_str(),
                workspace: &seen_clone.to_string_lossy(),
            },
        );
        let files = vec![(seen_prompt.clone(), prompt_text.clone().into_bytes())];
        let redactor = self.secrets.redactor();
        recorder
            .record(vec![self
                .entry(Event::SpecStarted)
                .detail("prompt", "standard")
                .detail("target_files", self.spec.target_files())
                .detail("command", json!(self.template))
                .detail("base", base.clone())
                .detail("branch", branch.clone())
                .detail("start_commit", start.to_string())
                .detail("withheld_paths", clone.hidden as u64)
                .detail(
                    "generated_files",
                    generated.iter().cloned().collect::<Vec<_>>(),
                )
                .detail("sensitive_confirmed", confirmed_by)
                .detail(
                    "timeout_ms",
                    self.config.agent.timeout.duration().as_millis() as u64,
                )])
            .map_err(WorkError::Ledger)?;

        // 6. Run the agent.
        reporter.info(&format!("Running the agent ({} sandbox)", self.level));
        let job = Job {
            argv,
            env: env.clone(),
            workspace: clone.path.clone(),
            timeout: self.config.agent.timeout.duration(),
            files: files.clone(),
            hold_stdin: false,
        };
        let agent_started = Instant::now();
        let outcome = self.run_job(&job, reporter, &redactor)?;
        let agent_ms = agent_started.elapsed().as_millis() as u64;
        let failure = match &outcome {
            Outcome::Exited(0) => None,
            Outcome::Exited(code) => Some(format!("the agent exited with code {code}")),
            Outcome::TimedOut => Some(format!(
                "the agent ran past agent.timeout ({})",
                self.config.agent.timeout
            )),
            Outcome::Interrupted => Some("interrupted".to_string()),
        };
        if let Some(reason) = failure {
            return self.fail(reason, &clone.path, recorder, agent_ms);
        }

        // Validation commands, in the same sandbox.
        for command in &self.config.work.validate {
            reporter.info(&format!("Validating: {command}"));
            let job = Job {
                argv: vec!["sh".into(), "-c".into(), command.clone()],
                env: env.clone(),
                workspace: clone.path.clone(),
                timeout: self.config.agent.timeout.duration(),
                files: files.clone(),
                hold_stdin: false,
            };
            let started = Instant::now();
            let outcome = self.run_job(&job, reporter, &redactor)?;
            let code = match outcome {
                Outcome::Exited(c) => c,
                Outcome::TimedOut | Outcome::Interrupted => -1,
            };
            recorder
                .record(vec![self
                    .entry(Event::CommandRun)
                    .detail("command", command.clone())
                    .detail("exit_code", code)
                    .detail("duration_ms", started.elapsed().as_millis() as u64)
                    .detail("phase", "validate")])
                .map_err(WorkError::Ledger)?;
            if code != 0 {
                let reason = format!("validation `{command}` failed (exit {code})");
                return self.fail(reason, &clone.path, recorder, agent_ms);
            }
        }

        // 7 + 8. Collect as data, then judge.
        reporter.info("Checking what the agent changed");
        let collected = collect::collect(
            repo,
            &clone,
            &generated,
            self.config.agent.file_access.max_file_size.bytes(),
            &self.config.agent.file_access.sensitive_patterns,
        )?;
        let (violations, notices) =
            policy::check(&collected.changes, &collected.oddities, self.config);
        for n in &notices {
            reporter.warn(&format!("Notice: {} {}", n.path, n.detail));
        }
        if !violations.is_empty() {
            let entries = violations
                .iter()
                .map(|v| {
                    self.entry(Event::PolicyViolation)
                        .detail("rule", v.rule.clone())
                        .detail("path", v.path.clone())
                        .detail("detail", v.detail.clone())
                })
                .collect();
            recorder.record(entries).map_err(WorkError::Ledger)?;
            let reason = format!("{} policy violation(s); nothing landed", violations.len());
            let mut report = self.fail(reason, &clone.path, recorder, agent_ms)?;
            report.violations = violations;
            report.notices = notices;
            return Ok(report);
        }

        // 9. Land.
        let files: Vec<String> = collected.changes.iter().map(|c| c.path.clone()).collect();
        if repo.refname_to_id(&branch_ref)? != start {
            let reason = format!("branch {branch} moved while the agent worked; nothing landed");
            return self.fail(reason, &clone.path, recorder, agent_ms);
        }
        let commit = if collected.changes.is_empty() {
            reporter.warn("The agent changed nothing; nothing to land.");
            None
        } else {
            let message = land::CommitMessage {
                spec_id: self.id.as_str(),
                title: self.spec.title(),
                session: &self.identity.session,
                sandbox: self.level.as_str(),
            };
            Some(land::commit(
                repo,
                start,
                &collected.changes,
                &message,
                self.identity,
            )?)
        };
        let mut entries: Vec<NewEntry> = collected
            .changes
            .iter()
            .map(|c| {
                let mut e = self
                    .entry(Event::FileModified)
                    .detail("path", c.path.clone())
                    .detail("change", c.kind.as_str());
                if let Some((_, mode)) = c.new {
                    e = e.detail("mode", format!("{mode:o}"));
                }
                e
            })
            .collect();
        entries.push(
            self.entry(Event::SpecCompleted)
                .detail("commit", commit.map(|c| c.to_string()))
                .detail("branch", branch.clone())
                .detail("files_changed", files.clone())
                .detail("agent_duration_ms", agent_ms)
                .detail(
                    "notices",
                    notices
                        .iter()
                        .map(|n| format!("{} {}", n.path, n.detail))
                        .collect::<Vec<_>>(),
                ),
        );
        // Recorded first, then published: nothing lands without its ledger entries.
        recorder.record(entries).map_err(WorkError::Ledger)?;
        if let Some(commit) = commit {
            if let Err(e) = land::publish(repo, &branch_ref, start, commit) {
                return self.fail(e.to_string(), &clone.path, recorder, agent_ms);
            }
        }
        let kept = if options.keep {
            Some(clone.path.clone())
        } else {
            remove_dir(&clone.path);
            None
        };
        remove_dir(&run_dir);
        Ok(Report {
            id: self.id.clone(),
            verdict: Verdict::Completed {
                commit: commit.map(|c| c.to_string()),
                files,
            },
            clone: kept,
            log: self.log.clone(),
            violations: Vec::new(),
            notices,
        })
    }

    /// Runs one program under the level, its output masked on the way to the reporter and
    /// the run log.
    fn run_job(
        &self,
        job: &Job,
        reporter: &mut dyn Reporter,
        redactor: &crate::secrets::Redactor,
    ) -> Result<Outcome, WorkError> {
        let log = open_log(&self.log)?;
        let mut sink = RedactingSink::new(reporter, log, redactor);
        let outcome = self.sandbox.run(job, &mut sink, self.stop);
        sink.finish();
        Ok(outcome?)
    }

    /// Records how the run failed (or that it was cancelled, when `git chant cancel` asked
    /// for it) and keeps the clone for inspection.
    fn fail(
        &self,
        reason: String,
        clone: &Path,
        recorder: &mut dyn Recorder,
        agent_ms: u64,
    ) -> Result<Report, WorkError> {
        let (entry, verdict) = match take_cancel_request(self.project, &self.id) {
            Some(c) => (
                self.entry(Event::SpecCancelled)
                    .detail("reason", c.reason.clone())
                    .detail("cancelled_by", c.actor),
                Verdict::Cancelled { reason: c.reason },
            ),
            None => (
                self.entry(Event::SpecFailed)
                    .detail("reason", reason.clone())
                    .detail("agent_duration_ms", agent_ms)
                    .detail("clone", clone.to_string_lossy().into_owned()),
                Verdict::Failed { reason },
            ),
        };
        recorder.record(vec![entry]).map_err(WorkError::Ledger)?;
        Ok(Report {
            id: self.id.clone(),
            verdict,
            clone: Some(clone.to_path_buf()),
            log: self.log.clone(),
            violations: Vec::new(),
            notices: Vec::new(),
        })
    }
}

/// A ledger entry about this run: the spec, the sandbox level and the agent program.
fn run_entry(event: Event, id: &SpecId, level: SandboxLevel, template: &[String]) -> NewEntry {
    let mut e = NewEntry::new(event).spec(id.as_str());
    e.sandbox = Some(level.to_string());
    e.agent = Some(agent_name(template));
    e
}

/// A program path with a `/` in `agent.command` is relative to the repository root.
fn resolve_program(template: &[String], root: &Path) -> Vec<String> {
    let mut argv = template.to_vec();
    if let Some(first) = argv.first_mut() {
        if first.contains('/') && !first.starts_with('/') {
            *first = root.join(&*first).to_string_lossy().into_owned();
        }
    }
    argv
}

fn agent_name(template: &[String]) -> String {
    template
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .unwrap_or_default()
}

/// `$CHANT_EXEC`: a wrapper that runs the command gate against the main repository.
fn write_exec_wrapper(run_dir: &Path, root: &Path) -> Result<PathBuf, WorkError> {
    let exe =
        std::env::current_exe().map_err(|e| WorkError::io(Path::new("(current executable)"), e))?;
    let path = run_dir.join("chant-exec");
    let script = format!(
        "#!/bin/sh\n# The command gate: checks agent.commands and records command_run.\n\
         if [ \"$1\" = --claude-hook ]; then exec {exe} exec --repo {root} --claude-hook; fi\n\
         exec {exe} exec --repo {root} -- \"$@\"\n",
        exe = shell_quote(&exe.to_string_lossy()),
        root = shell_quote(&root.to_string_lossy())
    );
    crate::atomic::replace(&path, script.as_bytes()).map_err(|e| WorkError::io(&path, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| WorkError::io(&path, e))?;
    Ok(path)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn open_log(path: &Path) -> Result<std::fs::File, WorkError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| WorkError::io(dir, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| WorkError::io(path, e))
}

fn remove_dir(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}

/// Agent output on its way to the terminal and the run log, with secrets masked.
struct RedactingSink<'r> {
    reporter: &'r mut dyn Reporter,
    log: std::fs::File,
    out: crate::secrets::StreamRedactor,
    err: crate::secrets::StreamRedactor,
}

impl<'r> RedactingSink<'r> {
    fn new(
        reporter: &'r mut dyn Reporter,
        log: std::fs::File,
        redactor: &crate::secrets::Redactor,
    ) -> Self {
        RedactingSink {
            reporter,
            log,
            out: redactor.stream(),
            err: redactor.stream(),
        }
    }

    fn emit(&mut self, stream: Stream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        use std::io::Write;
        let _ = self.log.write_all(bytes);
        self.reporter.agent_output(stream, bytes);
    }

    /// Flushes what the redactors held back (end of a program's output).
    fn finish(&mut self) {
        let out = self.out.finish();
        self.emit(Stream::Stdout, &out);
        let err = self.err.finish();
        self.emit(Stream::Stderr, &err);
    }
}

impl OutputSink for RedactingSink<'_> {
    fn output(&mut self, stream: Stream, bytes: &[u8]) {
        let clean = match stream {
            Stream::Stdout => self.out.push(bytes),
            Stream::Stderr => self.err.push(bytes),
        };
        self.emit(stream, &clean);
    }
}

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

fn take_cancel_request(project: &Project, id: &SpecId) -> Option<CancelRequest> {
    let path = cancel_path(project, id);
    let text = std::fs::read_to_string(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    serde_json::from_str(&text).ok()
}

/// Whether `stop` was raised (for callers deciding how to report).
pub fn stopped(stop: &AtomicBool) -> bool {
    stop.load(Ordering::SeqCst)
}

/// The agent's native permission files for level `permissions`: (path in the clone, text).
///
/// Claude Code's `.claude/settings.json`: allow/deny rules from `agent.permissions`, and a
/// PreToolUse hook that sends every shell command through the command gate first.
pub fn native_settings(config: &Config) -> Vec<(String, String)> {
    let mut settings =
        crate::exec::native::ClaudePermissions::from_config(&config.agent).to_settings_json();
    settings["hooks"] = json!({
        "PreToolUse": [{
            "matcher": "Bash",
            "hooks": [{"type": "command", "command": "\"$CHANT_EXEC\" --claude-hook"}]
        }]
    });
    let text = serde_json::to_string_pretty(&settings).unwrap_or_default();
    vec![(".claude/settings.json".to_string(), text + "\n")]
}
