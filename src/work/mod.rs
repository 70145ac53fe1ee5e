//! `git chant work`: the nine steps of DESIGN.md "Running a spec".
//!
//! resolve → sensitive-target check → lock → branch + sandboxed clone → filtered env →
//! run under the sandbox level → collect the result as data → policy check → land.
//! Every step that matters is recorded through the caller's [`Recorder`] (the audit
//! ledger); nothing here prints — progress and agent output go to the [`Reporter`].

mod agent_files;
mod cancel;
mod clone;
mod collect;
mod dry_run;
mod egress;
mod gate;
mod hook_errors;
mod land;
pub mod links;
pub mod lock;
mod output;
mod policy;
mod prompt;
mod quarantine;
mod scan;
mod seen;
mod steps;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

pub use cancel::{cancel_path, CancelRequest};
pub use collect::{Change, ChangeKind};
pub use dry_run::{dry_run, DryRun};
pub use policy::{Notice, Violation};

use crate::audit::{Event, NewEntry};
use crate::config::{Config, SandboxLevel};
use crate::identity::Identity;
use crate::project::Project;
use crate::sandbox::{self, SandboxError, Stream};
use crate::secrets::SecretSource;
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
    Project(#[from] crate::project::ProjectError),
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    #[error("the {agent} agent talks to its model API at {hosts}, but level {level} has no network while agent.network.enabled is false; set agent.network.enabled: true (the agent's API host is then allowed automatically), or use --sandbox permissions")]
    AgentNeedsNetwork {
        agent: String,
        level: SandboxLevel,
        hosts: String,
    },
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Inject(#[from] crate::net::InjectError),
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
    #[error("{} already exists (a clone kept from an earlier run with this session); remove it, or run with another CHANT_SESSION", .path.display())]
    CloneExists { path: PathBuf },
    #[error("cannot remove the agent's {} from the kept clone ({source}); do not run git there — delete the clone", .path.display())]
    Disarm {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// Any of the above whose message held a secret value, masked (the value came from a
    /// file name or text the agent wrote); `code` is the original's exit code.
    #[error("{message}")]
    Masked { message: String, code: u8 },
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
            WorkError::Inject(e) => e.exit_code(),
            WorkError::Masked { code, .. } => *code,
            WorkError::Project(e) => e.exit_code(),
            WorkError::Agent(e) => e.exit_code(),
            WorkError::Config(_)
            | WorkError::AgentNeedsNetwork { .. }
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

/// The plan of a prepared run (`--dry-run`, see [`dry_run`]).
fn plan(project: &Project, prepared: Prepared) -> Result<Plan, WorkError> {
    let Prepared {
        config,
        id,
        spec,
        level,
        template,
        secrets,
        ..
    } = prepared;
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
        sensitive_targets: sensitive_targets(&spec, &config),
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
    /// The agent adapter (`agent.kind`, or recognised from `agent.command`).
    agent: Box<dyn crate::agent::Agent>,
    template: Vec<String>,
    secrets: crate::secrets::Secrets,
}

fn prepare(project: &Project, options: &Options) -> Result<Prepared, WorkError> {
    let mut config = project.config()?;
    let store = SpecStore::new(project.specs_dir());
    let id = store.resolve(&options.spec)?;
    let spec = store.load(&id)?;
    let ledger = crate::spec::status::of_repository(&project.repo);
    let status = crate::spec::status::effective(&spec, &ledger).to_string();
    if matches!(status.as_str(), "completed" | "cancelled") {
        return Err(WorkError::NotWorkable { id, status });
    }
    let level = options.sandbox.unwrap_or(config.agent.sandbox);
    let mut sandbox = sandbox::for_level(level, &config)?;
    let agent = crate::agent::for_config(&config);
    let template = config.agent_command();
    let sources = options
        .secrets_from
        .iter()
        .map(|uri| SecretSource::parse(uri))
        .collect::<Result<Vec<_>, _>>()?;
    let secrets = crate::secrets::collect(&sources, project.root())?;
    // Where chant's proxy is the only way out, the adapter's own API keys are injected
    // rather than handed over (`agent.secrets.inject_agent_keys`); from here on they are
    // `inject` entries like the user's.
    let only_way_out = config.agent.network.enabled && sandbox.cuts_network();
    let defaults = crate::agent::keys::default_injection(
        &config.agent.secrets,
        agent.as_ref(),
        &secrets,
        only_way_out,
    );
    config.agent.secrets.inject.extend(defaults);
    // A hosted-model agent cannot work where the level cuts the network off.
    let hosts = agent.api_hosts(&secrets);
    if sandbox.cuts_network() && !config.agent.network.enabled && !hosts.is_empty() {
        return Err(WorkError::AgentNeedsNetwork {
            agent: agent.kind().to_string(),
            level,
            hosts: hosts.join(", "),
        });
    }
    sandbox.allow_agent_hosts(&hosts)?;
    // Injected secrets exist only through the run's proxy: without the network the agent
    // would get neither the value nor a placeholder, and fail somewhere obscure.
    let inject_refused = if config.agent.secrets.inject.is_empty() {
        None
    } else if !config.agent.network.enabled {
        Some("needs agent.network.enabled: true (the run's proxy is what puts the values in); enable the network, or expose the secret instead")
    } else if let sandbox::EgressRoute::Unreachable { inject, .. } = sandbox.egress_route() {
        Some(inject)
    } else {
        None
    };
    if let Some(message) = inject_refused {
        return Err(WorkError::Config(crate::config::ConfigError::Invalid {
            file: crate::config::CONFIG_PATH.to_string(),
            key: "agent.secrets.inject".into(),
            message: message.into(),
        }));
    }
    if sandbox.guest().is_some() {
        sandbox.preflight(&template)?;
    } else {
        sandbox.preflight(&resolve_program(&template, project.root()))?;
    }
    Ok(Prepared {
        config,
        id,
        spec,
        level,
        sandbox,
        agent,
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
    // Everything leaving the run passes through the redactor: entries, lines for the
    // terminal, the report and errors all carry file names and messages (libgit2's, the
    // file system's) that come from what the agent wrote.
    let redactor = prepared.secrets.redactor_with(
        &prepared.config.agent.secrets,
        prepared.agent.credential_names(),
    );
    let mut masked = Masked {
        inner: recorder,
        redactor: redactor.clone(),
    };
    let mut masked_reporter = MaskedReporter {
        inner: reporter,
        redactor: redactor.clone(),
    };
    match run_prepared(
        project,
        identity,
        options,
        &mut masked_reporter,
        &mut masked,
        stop,
        prepared,
    ) {
        Ok(report) => Ok(report.masked(&redactor)),
        Err(e) => {
            let message = e.to_string();
            let masked = redactor.redact(&message);
            if masked == message {
                Err(e)
            } else {
                Err(WorkError::Masked {
                    message: masked,
                    code: e.exit_code(),
                })
            }
        }
    }
}

/// A reporter that masks every secret value in the lines it passes on. (Agent output is
/// masked on its way in, by the run's `RedactingSink`, which keeps a value split across
/// two reads whole.)
struct MaskedReporter<'r> {
    inner: &'r mut dyn Reporter,
    redactor: crate::secrets::Redactor,
}

impl Reporter for MaskedReporter<'_> {
    fn info(&mut self, line: &str) {
        self.inner.info(&self.redactor.redact(line));
    }

    fn warn(&mut self, line: &str) {
        self.inner.warn(&self.redactor.redact(line));
    }

    fn agent_output(&mut self, stream: Stream, bytes: &[u8]) {
        self.inner.agent_output(stream, bytes);
    }

    fn confirm(&mut self, question: &str) -> Option<bool> {
        self.inner.confirm(&self.redactor.redact(question))
    }
}

impl Report {
    /// The report with every secret value masked in what the caller prints.
    fn masked(mut self, redactor: &crate::secrets::Redactor) -> Report {
        self.verdict = match self.verdict {
            Verdict::Completed { commit, files } => Verdict::Completed {
                commit,
                files: files.iter().map(|f| redactor.redact(f)).collect(),
            },
            Verdict::Failed { reason } => Verdict::Failed {
                reason: redactor.redact(&reason),
            },
            Verdict::Cancelled { reason } => Verdict::Cancelled {
                reason: redactor.redact(&reason),
            },
        };
        for v in &mut self.violations {
            v.path = redactor.redact(&v.path);
            v.detail = redactor.redact(&v.detail);
        }
        for n in &mut self.notices {
            n.path = redactor.redact(&n.path);
            n.detail = redactor.redact(&n.detail);
        }
        self
    }
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
        agent,
        template,
        secrets,
    } = prepared;

    let entry = |event: Event| run_entry(event, &id, level, &template);

    // 2. Sensitive targets.
    let sensitive = sensitive_targets(&spec, &config);
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
        host: identity.host.to_string(),
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

    let mut ctx = steps::Run {
        project,
        identity,
        config: &config,
        spec: &spec,
        id: id.clone(),
        level,
        sandbox: sandbox.as_ref(),
        agent: agent.as_ref(),
        summary: crate::agent::Summary::default(),
        template: &template,
        secrets: &secrets,
        stop,
        injected: Default::default(),
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
    // audit.ship_to: ship what the run recorded; a failure is reported, never fatal.
    match crate::audit::ship::after_run(&project.repo, &config) {
        Some(Ok(s)) if s.count > 0 => reporter.info(&format!(
            "Shipped {} audit entries to {}",
            s.count, s.target
        )),
        Some(Err(e)) => reporter.warn(&format!("Warning: audit shipping: {e}")),
        _ => {}
    }
    let report = result?;
    recorded.map_err(WorkError::Ledger)?;
    Ok(report)
}

/// The spec's target files that match `security.sensitive_patterns`.
fn sensitive_targets(spec: &Spec, config: &Config) -> Vec<String> {
    spec.target_files()
        .into_iter()
        .filter(|t| config.security.sensitive_patterns.0.is_match(t))
        .collect()
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

/// Where a run keeps its sandboxed clone (outside any `.git` component, DESIGN step 4).
fn clone_path(project: &Project, id: &SpecId, session: &str) -> Result<PathBuf, WorkError> {
    Ok(project.clones_dir()?.join(format!("{id}-{session}")))
}

/// A run's own directory: private HOME, prompt, gate wrapper. In .git/chant/runs: only
/// chant writes there before the run, and it goes with the repository.
fn run_dir(project: &Project, session: &str) -> PathBuf {
    project.state_dir().join("runs").join(session)
}

/// The file name of the `$CHANT_EXEC` wrapper in the run dir.
const EXEC_WRAPPER: &str = "chant-exec";

/// `$CHANT_EXEC`: a wrapper that runs the command gate against the main repository.
fn write_exec_wrapper(run_dir: &Path, project: &Project) -> Result<PathBuf, WorkError> {
    let exe =
        std::env::current_exe().map_err(|e| WorkError::io(Path::new("(current executable)"), e))?;
    let path = run_dir.join(EXEC_WRAPPER);
    let quote = |p: &Path| crate::exec::shell::quote(&p.to_string_lossy());
    // The repository as this run found it: the gate never looks for it again.
    let repo = format!(
        "--repo {} --git-dir {}",
        quote(project.root()),
        quote(project.repo.path())
    );
    let script = format!(
        "#!/bin/sh\n# The command gate: checks agent.commands and records command_run.\n\
         case \"$1\" in --claude-hook|--claude-hook-result|--edit-hook) exec {exe} exec {repo} \"$1\";; esac\n\
         exec {exe} exec {repo} -- \"$@\"\n",
        exe = quote(&exe),
    );
    crate::atomic::replace(&path, script.as_bytes()).map_err(|e| WorkError::io(&path, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| WorkError::io(&path, e))?;
    Ok(path)
}
