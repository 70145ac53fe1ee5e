//! Sandbox levels: where and how the agent program runs.
//!
//! `work` hands a prepared [`Job`] to a [`Sandbox`] and gets an [`Outcome`] back; it never
//! knows which level ran it. Every level is followed by the same untrusted-result check
//! (`work::policy`), so a level only has to contain the agent, not judge its output.

pub mod docker;
pub mod kubernetes;
mod local;
pub mod process;
pub mod reaper;
pub mod vm;

use std::path::PathBuf;
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
    /// Files the program must be able to read, at these paths as it sees them (the prompt).
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// Give the program a standard input that stays open (and silent) until it ends,
    /// instead of `/dev/null`: qemu's console stalls the guest once its stdin hits EOF.
    pub hold_stdin: bool,
    /// The run's egress proxy (`agent.network.enabled`); None: no network at all.
    pub network: Option<Egress>,
}

/// Where the run's egress proxy listens on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// Its Unix socket that carries connections as bytes (the vm level's relay).
    pub socket: PathBuf,
    /// Its Unix socket that takes connections handed over as descriptors (the docker
    /// level's relay).
    pub handoff: PathBuf,
    /// `http://127.0.0.1:PORT`, for programs on the host (none, permissions).
    pub url: String,
}

/// Where things are for a program that runs in its own machine or container, when the
/// paths it sees differ from the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestView {
    pub workspace: PathBuf,
    pub home: PathBuf,
    /// `PATH` inside.
    pub path: String,
    /// Where files of [`Job::files`] go.
    pub files_dir: PathBuf,
    /// The command gate as seen inside (a stub saying it is unavailable, where it is).
    pub exec: PathBuf,
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
    #[error("cannot start '{program}': {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("agent program '{program}' is not in the vm image; add it to agent.vm.image or use a busybox command")]
    NotInImage { program: String },
    #[error("{what} not found: {fix}")]
    Missing { what: String, fix: String },
    #[error("vm: {0}")]
    Vm(String),
    #[error("vm: agent.vm.image {image} cannot run the agent: {detail}\n  the image needs a working /bin/sh (chant adds busybox only where the image has none); fix the image or point agent.vm.image at another")]
    VmImage { image: String, detail: String },
    #[error("cannot reach the Docker engine at {host}: {detail}\n  start it (e.g. `sudo systemctl start docker`, or `dockerd &` as root) or point DOCKER_HOST at a running one; `git chant doctor` checks again")]
    EngineUnreachable { host: String, detail: String },
    #[error("permission denied on the Docker socket {host}\n  add your user to the `docker` group (`sudo usermod -aG docker $USER`, then log in again) or point DOCKER_HOST at an engine you may use")]
    EnginePermission { host: String },
    #[error("Docker image '{image}' not found in the engine\n  build it with `docker build -t {image} .` from the Dockerfile in docs/sandbox.md, or set agent.docker.image")]
    ImageNotFound { image: String },
    #[error("agent.docker: {0}")]
    DockerConfig(String),
    #[error("{0}")]
    VmConfig(String),
    #[error("Docker engine: {0}")]
    Engine(String),
    #[error("cannot prepare the workspace for the sandbox: {0}")]
    Workspace(String),
    #[error("agent.kubernetes: {0}")]
    KubernetesConfig(String),
    #[error("Kubernetes: {0}")]
    Kubernetes(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl SandboxError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SandboxError::ProgramNotFound { .. }
            | SandboxError::NotInImage { .. }
            | SandboxError::Missing { .. }
            | SandboxError::EngineUnreachable { .. }
            | SandboxError::EnginePermission { .. }
            | SandboxError::ImageNotFound { .. }
            | SandboxError::DockerConfig(_)
            | SandboxError::VmConfig(_)
            | SandboxError::KubernetesConfig(_) => 2,
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

    /// True when, with `agent.network.enabled: false`, the program has no network at all
    /// here (the kernel or the hypervisor sees to it), so an agent that needs its model API
    /// cannot work.
    fn cuts_network(&self) -> bool {
        false
    }

    /// How the program sees paths; None: as the host does (it runs on the host).
    fn guest(&self) -> Option<GuestView> {
        None
    }

    /// Prepares the workspace (e.g. the agent's native permission config) before the run.
    fn prepare(&self, _workspace: &std::path::Path) -> Result<Vec<String>, SandboxError> {
        Ok(Vec::new())
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
        SandboxLevel::Permissions => Ok(Box::new(Local::permissions())),
        SandboxLevel::Docker => Ok(Box::new(docker::Docker::new(config)?)),
        SandboxLevel::Vm => Ok(Box::new(vm::Vm::new(&config.agent)?)),
        SandboxLevel::Kubernetes => Ok(Box::new(kubernetes::Kubernetes::new(config)?)),
    }
}
