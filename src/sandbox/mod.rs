//! Sandbox levels: where and how the agent program runs.
//!
//! `work` hands a prepared [`Job`] to a [`Sandbox`] and gets an [`Outcome`] back; it never
//! knows which level ran it. Every level is followed by the same untrusted-result check
//! (`work::policy`), so a level only has to contain the agent, not judge its output.

pub mod docker;
mod local;
pub mod process;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub use local::Local;

use crate::config::{Config, SandboxLevel};

/// Everything a level needs to run one program for one spec.
#[derive(Debug, Clone)]
pub struct Job {
    /// The program and its arguments, placeholders already substituted.
    pub argv: Vec<String>,
    /// The complete environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// The sandboxed clone: the program's working directory.
    pub workspace: PathBuf,
    /// Kill the program after this long.
    pub timeout: Duration,
    /// The prompt file on this machine (outside the workspace), for levels that must make
    /// it visible to the program themselves.
    pub prompt_file: Option<PathBuf>,
    /// The spec and session this job belongs to (levels label what they create with them).
    pub spec_id: String,
    pub session: String,
}

/// The run's paths as the program sees them, and the PATH it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPaths {
    /// The workspace (`{workspace}`, `CHANT_CLONE`).
    pub workspace: PathBuf,
    /// The private home directory (`HOME`).
    pub home: PathBuf,
    /// The prompt file (`{prompt_file}`).
    pub prompt_file: PathBuf,
    /// The command gate (`CHANT_EXEC`); None where the level cannot offer it.
    pub exec: Option<PathBuf>,
    /// `PATH`; None: the host's (see `secrets::AgentContext::path`).
    pub path_var: Option<String>,
}

/// How the program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It exited by itself with this code (signals map to 128 + n).
    Exited(i32),
    /// It ran past the timeout and was killed.
    TimedOut,
    /// Chant was interrupted or the run was cancelled; the program was killed.
    Interrupted,
}

impl Outcome {
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }
}

/// Receives the program's output as it arrives (already redacted by the caller's sink).
pub trait OutputSink: Send {
    fn output(&mut self, stream: Stream, bytes: &[u8]);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("agent program '{program}' not found on PATH; install it or set agent.command in .chant/config.md")]
    ProgramNotFound { program: String },
    #[error(
        "sandbox level '{0}' is not available yet in this build; use --sandbox none or permissions"
    )]
    Unavailable(SandboxLevel),
    #[error("cannot start '{program}': {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the Docker engine at {host}: {detail}\n  start it (e.g. `sudo systemctl start docker`, or `dockerd &` as root) or point DOCKER_HOST at a running one; `git chant doctor` checks again")]
    EngineUnreachable { host: String, detail: String },
    #[error("permission denied on the Docker socket {host}\n  add your user to the `docker` group (`sudo usermod -aG docker $USER`, then log in again) or point DOCKER_HOST at an engine you may use")]
    EnginePermission { host: String },
    #[error("Docker image '{image}' not found in the engine\n  build it with `docker build -t {image} .` from the Dockerfile in docs/sandbox.md, or set agent.docker.image")]
    ImageNotFound { image: String },
    #[error("agent.docker: {0}")]
    DockerConfig(String),
    #[error("Docker engine: {0}")]
    Engine(String),
    #[error("cannot prepare the workspace for the sandbox: {0}")]
    Workspace(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl SandboxError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SandboxError::ProgramNotFound { .. }
            | SandboxError::Unavailable(_)
            | SandboxError::EngineUnreachable { .. }
            | SandboxError::EnginePermission { .. }
            | SandboxError::ImageNotFound { .. }
            | SandboxError::DockerConfig(_) => 2,
            _ => 1,
        }
    }
}

/// One sandbox level.
pub trait Sandbox {
    /// The level's name, recorded in the ledger (`sandbox` field).
    fn level(&self) -> SandboxLevel;

    /// Checks, before anything is created, that the job's program can be started.
    fn preflight(&self, argv: &[String]) -> Result<(), SandboxError>;

    /// Prepares the workspace (e.g. the agent's native permission config) before the run.
    fn prepare(&self, _workspace: &Path) -> Result<Vec<String>, SandboxError> {
        Ok(Vec::new())
    }

    /// Whether the program is one of this machine's (so a relative `agent.command` path is
    /// resolved against the repository); false where it comes from an image.
    fn runs_host_programs(&self) -> bool {
        true
    }

    /// Where the program sees the run's host paths. Levels that run the program on this
    /// machine see them as they are.
    fn agent_paths(&self, host: &AgentPaths) -> AgentPaths {
        host.clone()
    }

    /// Runs the job to completion, streaming output to `sink`; `stop` asks for an early end.
    fn run(
        &self,
        job: &Job,
        sink: &mut dyn OutputSink,
        stop: &Arc<AtomicBool>,
    ) -> Result<Outcome, SandboxError>;
}

/// The sandbox for `level`.
pub fn for_level(level: SandboxLevel, config: &Config) -> Result<Box<dyn Sandbox>, SandboxError> {
    match level {
        SandboxLevel::None => Ok(Box::new(Local::none())),
        SandboxLevel::Permissions => Ok(Box::new(Local::permissions(config))),
        SandboxLevel::Docker => Ok(Box::new(docker::Docker::new(config)?)),
        other => Err(SandboxError::Unavailable(other)),
    }
}
