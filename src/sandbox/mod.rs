//! Sandbox levels: where and how the agent program runs.
//!
//! `work` hands a prepared [`Job`] to a [`Sandbox`] and gets an [`Outcome`] back; it never
//! knows which level ran it. Every level is followed by the same untrusted-result check
//! (`work::policy`), so a level only has to contain the agent, not judge its output.
//!
//! Every decision that depends on the level is a method of [`Sandbox`], answered by the
//! level itself: whether its program can be started ([`Sandbox::preflight`]), whether
//! without `agent.network` it has no network ([`Sandbox::cuts_network`]), whether chant's
//! egress proxy can reach it and so carry secret injection ([`Sandbox::egress_route`]),
//! the paths its program sees ([`Sandbox::guest`]), readying or refusing the clone
//! ([`Sandbox::prepare`], given a typed [`Workspace`]), what `--dry-run` shows
//! ([`Sandbox::describe`]) and what `doctor` says ([`Sandbox::checkup`]). `work` and `cli`
//! never name a level, and must not start to: a question they need answered about a level
//! becomes a method here.
//!
//! Adding a level: a variant of `SandboxLevel` (its spelling, in `config`), a module here
//! implementing [`Sandbox`] (with a `new` that refuses, exit 2 naming the key, any config
//! it cannot honour), one arm in [`for_level`] and, when its program reaches the network
//! only through chant's relay, a line in [`network_notes`]. Nothing outside `src/sandbox/`
//! changes.

pub mod docker;
pub mod image_links;
pub mod kubernetes;
mod local;
pub mod process;
pub mod reaper;
pub mod vm;

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
    /// Files the program must be able to read, at these paths as it sees them (the prompt;
    /// at a level that [`Sandbox::seeds_home`], also the run's private HOME files, under
    /// [`GuestView::home`]).
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// Give the program a standard input that stays open (and silent) until it ends,
    /// instead of `/dev/null`: qemu's console stalls the guest once its stdin hits EOF.
    pub hold_stdin: bool,
    /// The run's egress proxy (`agent.network.enabled`); None: no network at all.
    pub network: Option<Egress>,
    /// The socket on the host where chant serves the run's command gate (`crate::gate`), for
    /// levels with a [`Sandbox::gate_channel`]; None: `$CHANT_EXEC` is a stub there.
    pub gate: Option<PathBuf>,
}

/// The sandboxed clone as `work` made it, handed to [`Sandbox::prepare`] before the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The clone's work tree on the host.
    pub path: PathBuf,
    /// Paths of the start tree kept out of the clone (by `file_access`, and gitlinks):
    /// a level that would hand the agent the whole branch must refuse when any are.
    pub withheld: Vec<String>,
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

/// How a level's program reaches the network when `agent.network.enabled` is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressRoute {
    /// Through the run's egress proxy on this machine (the proxy variables on the host; a
    /// relay, its only route out, in a container or a vm): the proxy allows, refuses and
    /// counts connections, and puts injected secrets in.
    Proxy,
    /// The program runs where chant's proxy cannot be reached: `work` starts none, the
    /// level's own rules (e.g. a NetworkPolicy) are all the allowlist there is, and
    /// `agent.secrets.inject` is refused before anything is created.
    Unreachable {
        /// Why injection is refused and the fix, completing "agent.secrets.inject …".
        inject: &'static str,
        /// The same in a few words, for `git chant doctor`.
        short: &'static str,
    },
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

/// One line of `git chant doctor` about a level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// One word: `ok`, `missing`.
    pub status: &'static str,
    /// What was found, or what is missing and the fix.
    pub text: String,
}

impl Check {
    pub fn ok(text: impl Into<String>) -> Check {
        Check {
            status: "ok",
            text: text.into(),
        }
    }

    pub fn missing(text: impl Into<String>) -> Check {
        Check {
            status: "missing",
            text: text.into(),
        }
    }
}

/// What `git chant doctor` found out about one level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkup {
    /// Its lines, in order.
    pub lines: Vec<Check>,
    /// The level can run the agent here.
    pub usable: bool,
}

impl Checkup {
    pub fn usable(line: Check) -> Checkup {
        Checkup {
            lines: vec![line],
            usable: true,
        }
    }

    pub fn failed(line: Check) -> Checkup {
        Checkup {
            lines: vec![line],
            usable: false,
        }
    }
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
    #[error("agent program '{program}' is not in the Docker image '{image}' (looked where PATH inside finds it)\n  add it to the image (docs/sandbox.md has a Dockerfile with Claude Code) or point agent.docker.image at one that has it")]
    NotInDockerImage { program: String, image: String },
    #[error("agent program missing: {link} → {target} in {image} (a link to nothing there); install the program the link names, or point agent.command at where it is")]
    DanglingInImage {
        link: String,
        target: String,
        image: String,
    },
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
            | SandboxError::NotInDockerImage { .. }
            | SandboxError::DanglingInImage { .. }
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

    /// How the program reaches the network through the run's egress proxy, if it can.
    fn egress_route(&self) -> EgressRoute {
        EgressRoute::Proxy
    }

    /// The hosts (`host` or `host:port`) of the agent's model API. A level whose own rules
    /// are the allowlist (no proxy of chant's on the way) opens them, or refuses the run
    /// (exit 2) when it cannot; where the proxy is the way out it allows them itself.
    fn allow_agent_hosts(&mut self, _hosts: &[String]) -> Result<(), SandboxError> {
        Ok(())
    }

    /// True when `$CHANT_EXEC` inside reaches chant on the host through [`Job::gate`] (the
    /// levels that run on the host use the host's `git chant exec` directly).
    fn gate_channel(&self) -> bool {
        false
    }

    /// How the program sees paths; None: as the host does (it runs on the host).
    fn guest(&self) -> Option<GuestView> {
        None
    }

    /// True when files of [`Job::files`] under [`GuestView::home`] start the program's own
    /// HOME (copied into it before the program starts, owned by the program's user): how the
    /// run's private HOME (the adapter's settings, trust state, hooks) reaches a program
    /// whose HOME is not the host's. False: the level gets no such files.
    fn seeds_home(&self) -> bool {
        false
    }

    /// True when the program's working copy is not the host's clone but one the level
    /// makes itself from the branch (kubernetes: the pod clones it): the adapter's files
    /// for the clone (its settings, the project config it neutralises) then reach the
    /// program as [`Job::files`] under [`GuestView::workspace`], written over that copy
    /// before the program starts. False: the program works in the host's clone, which
    /// already holds them.
    fn seeds_workspace(&self) -> bool {
        false
    }

    /// Readies the clone for this level before anything is recorded, or refuses the run
    /// when the level cannot keep the clone's promises (e.g. withheld paths); returns the
    /// paths it wrote into the clone (never landed).
    fn prepare(&self, _workspace: &Workspace) -> Result<Vec<String>, SandboxError> {
        Ok(Vec::new())
    }

    /// What `work --dry-run` prints instead of the plan at this level: the objects `run`
    /// would create for `job`, as documents a tool can apply (secret values withheld);
    /// None when the plan's lines say it all. Contacts nothing and creates nothing.
    fn describe(&self, _job: &Job) -> Result<Option<String>, SandboxError> {
        Ok(None)
    }

    /// `git chant doctor`'s findings: whether the agent command `template` can run at this
    /// level here (a program with a `/` is relative to the repository `root`), in lines
    /// that name what is missing and the fix. May ask the level's engine or cluster;
    /// creates nothing.
    fn checkup(&self, template: &[String], root: &Path) -> Checkup;

    /// Runs the job to completion, streaming output to `sink`; `stop` asks for an early end.
    fn run(
        &self,
        job: &Job,
        sink: &mut dyn OutputSink,
        stop: &Arc<AtomicBool>,
    ) -> Result<Outcome, SandboxError>;
}

/// Every level, in the order the docs list them.
pub fn levels() -> impl Iterator<Item = SandboxLevel> {
    SandboxLevel::OPTIONS.iter().map(|(_, level)| *level)
}

/// For `git chant doctor`'s network line: the levels whose program has no network but
/// through chant's relay, each with what `agent.network` gives it here. Read from the config
/// alone, so that a level that cannot be set up still says what to change.
pub fn network_notes(config: &Config) -> Vec<(SandboxLevel, String)> {
    vec![
        (SandboxLevel::Docker, docker::network_note()),
        (SandboxLevel::Vm, vm::network_note(&config.agent.vm)),
    ]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        crate::config::parse(".chant/config.md", &format!("---\n{yaml}---\n"))
            .expect("config parses")
    }

    #[test]
    fn only_a_level_whose_program_runs_beyond_chants_proxy_says_it_is_unreachable() {
        let config = config(
            "agent:\n  network:\n    enabled: true\n  kubernetes:\n    image: w\n    repo_url: https://h/r.git\n",
        );
        for level in [
            SandboxLevel::None,
            SandboxLevel::Permissions,
            SandboxLevel::Docker,
        ] {
            let sandbox = for_level(level, &config).expect("builds");
            assert_eq!(sandbox.egress_route(), EgressRoute::Proxy, "{level}");
        }
        let k8s = for_level(SandboxLevel::Kubernetes, &config).expect("builds");
        let EgressRoute::Unreachable { inject, short } = k8s.egress_route() else {
            panic!("a pod reaches chant's proxy")
        };
        assert!(inject.contains("expose the secret instead"), "{inject}");
        assert!(short.contains("kubernetes"), "{short}");
    }

    #[test]
    fn dry_run_documents_come_from_levels_that_create_objects_and_hold_no_secret_value() {
        let config = config("agent:\n  kubernetes:\n    image: w\n    repo_url: https://h/r.git\n");
        let job = Job {
            argv: vec!["agent".into()],
            env: vec![
                ("CHANT_SPEC_ID".into(), "2026-01-22-001-x7m".into()),
                ("CHANT_SESSION".into(), "sess_1".into()),
                ("AGENT_API_KEY".into(), "sk-dry-run-4242".into()),
            ],
            workspace: "/workspace/repo".into(),
            timeout: Duration::from_secs(60),
            files: Vec::new(),
            hold_stdin: false,
            network: None,
            gate: None,
        };
        for level in [SandboxLevel::None, SandboxLevel::Permissions] {
            let described = for_level(level, &config).and_then(|s| s.describe(&job));
            assert!(matches!(described, Ok(None)), "{level}: {described:?}");
        }
        let k8s = for_level(SandboxLevel::Kubernetes, &config).expect("builds");
        let yaml = k8s.describe(&job).expect("renders").expect("documents");
        assert!(yaml.contains("kind: Job"), "{yaml}");
        assert!(yaml.contains("AGENT_API_KEY"), "{yaml}");
        assert!(!yaml.contains("sk-dry-run-4242"), "{yaml}");
    }
}
