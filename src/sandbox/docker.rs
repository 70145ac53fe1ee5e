//! Level `docker`: the kernel contains the agent. One container per job, created through
//! the Docker Engine API (bollard, no `docker` CLI), from `agent.docker.image`.
//!
//! The container gets the clone bind-mounted writable at `/workspace` and nothing else of
//! the host but what `agent.docker.volumes` names (read-only unless `:rw`) and a private
//! directory with the job's files (the prompt) at `/run/chant` (read-only); a read-only
//! root with private tmpfs `/tmp` and `/home/agent`, the latter started with the run's
//! private HOME files (the adapter's settings: mounted read-only at `/run/chant-home` and
//! copied in by `/bin/sh` as the container user before the program is exec'd); no network
//! (with `agent.network` enabled: the relay as the container's first process, see
//! `relay`); memory, cpu and pids limits; all capabilities dropped; no-new-privileges; a
//! non-root user owning the clone (with the network, the relay starts as root with three
//! capabilities and drops them all before the agent runs); exactly the job's environment.
//! With the run's command
//! gate (`Job::gate`), git-chant itself read-only at `/chant-gate` (see `selfmount`) beside
//! the gate's socket, handed to the container user for the run: `$CHANT_EXEC` asks chant on
//! the host through it (`crate::gate`) and runs what is allowed inside the container.
//! Its output is streamed to the sink and never stored by the engine (log driver `none`).
//!
//! It must never leave a container behind: every exit path removes it, and containers of
//! chant sessions that died (labels `chant.session`, `chant.spec`, `chant.pid`) are
//! reaped at the start of the next run. It never mounts the Docker socket, never runs the
//! agent as root, never chmods anything open.

mod checkup;
mod engine;
mod mounts;
mod objects;
mod ownership;
mod program;
mod relay;
mod selfmount;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::WaitContainerOptionsBuilder;
use futures_util::StreamExt;

pub use checkup::network_note;
pub use mounts::volumes;

use super::{GuestView, Job, Outcome, OutputSink, Sandbox, SandboxError, Stream, Workspace};
use crate::config::{Config, DockerConfig, SandboxLevel};

/// Where the clone appears inside the container.
pub const WORKSPACE: &str = "/workspace";
/// The agent's private, writable home (a tmpfs).
pub const HOME: &str = "/home/agent";
/// Where the job's files (the prompt) and the command-gate stub are mounted (read-only).
pub const FILES_DIR: &str = "/run/chant";
/// `$CHANT_EXEC` inside: the gate's client, or a stub saying the gate is not available
/// when the run has no gate channel.
pub const EXEC_STUB: &str = "/run/chant/chant-exec";
/// Where git-chant and the gate's socket are inside, when the run has a gate channel.
pub const GATE_DIR: &str = "/chant-gate";
/// `PATH` inside the container: the usual directories of a Linux image.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// At most this many processes in the container (a fork bomb stops here).
pub const PIDS_LIMIT: i64 = 512;
/// Size cap of each tmpfs (`/tmp`, the home); it also counts against the memory limit.
const TMPFS_SIZE: &str = "size=256m";

/// The `docker` level.
pub struct Docker {
    config: DockerConfig,
}

impl Docker {
    /// Checks the parts of the config this level cannot honour yet, before anything runs.
    pub fn new(config: &Config) -> Result<Self, SandboxError> {
        if config.agent.docker.network != "none" {
            return Err(SandboxError::DockerConfig(format!(
                "network '{}' is not supported: the docker level runs with network 'none'",
                config.agent.docker.network
            )));
        }
        // Bad volumes are refused now, before a clone or a ledger entry exists.
        volumes(&config.agent.docker.volumes, Path::new("/clone"))?;
        Ok(Docker {
            config: config.agent.docker.clone(),
        })
    }
}

/// What `git chant doctor` learns about the engine and the image.
#[derive(Debug)]
pub struct Probe {
    pub host: String,
    pub version: Option<String>,
    pub engine: Result<(), SandboxError>,
    pub image: Option<Result<(), SandboxError>>,
    /// Where the agent program is in the image.
    pub program: Option<Result<String, SandboxError>>,
}

/// Asks the engine whether it answers, whether `image` is present and has `program`.
pub fn probe(image: &str, program: &str) -> Probe {
    let host = engine::host();
    let rt = match engine::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            return Probe {
                host,
                version: None,
                engine: Err(e),
                image: None,
                program: None,
            }
        }
    };
    rt.block_on(async {
        let docker = match engine::connect().await {
            Ok(d) => d,
            Err(e) => {
                return Probe {
                    host: host.clone(),
                    version: None,
                    engine: Err(e),
                    image: None,
                    program: None,
                }
            }
        };
        let version = docker.version().await.ok().and_then(|v| v.version);
        let found = engine::require_image(&docker, image).await;
        let program = match &found {
            Ok(()) => Some(program::find(&docker, image, program).await),
            Err(_) => None,
        };
        Probe {
            host: host.clone(),
            version,
            engine: Ok(()),
            image: Some(found),
            program,
        }
    })
}

impl Sandbox for Docker {
    fn level(&self) -> SandboxLevel {
        SandboxLevel::Docker
    }

    /// The engine answers and the image is there (the program itself is the image's).
    fn preflight(&self, _argv: &[String]) -> Result<(), SandboxError> {
        engine::runtime()?.block_on(async {
            let docker = engine::connect().await?;
            engine::require_image(&docker, &self.config.image).await
        })
    }

    fn cuts_network(&self) -> bool {
        true
    }

    fn checkup(&self, template: &[String], _root: &Path) -> super::Checkup {
        let program = template.first().map(String::as_str).unwrap_or_default();
        checkup::checkup(&self.config.image, program)
    }

    fn gate_channel(&self) -> bool {
        true
    }

    /// The clone's git must work without the main repository, which is not mounted.
    fn prepare(&self, workspace: &Workspace) -> Result<Vec<String>, SandboxError> {
        objects::make_self_contained(&workspace.path)?;
        Ok(Vec::new())
    }

    /// Copied from a read-only mount into the tmpfs HOME by the container's start script.
    fn seeds_home(&self) -> bool {
        true
    }

    fn guest(&self) -> Option<GuestView> {
        Some(GuestView {
            workspace: WORKSPACE.into(),
            home: HOME.into(),
            path: PATH.into(),
            files_dir: FILES_DIR.into(),
            // A script that asks chant on the host through the gate's socket (or the stub).
            exec: EXEC_STUB.into(),
        })
    }

    fn run(
        &self,
        job: &Job,
        sink: &mut dyn OutputSink,
        stop: &Arc<AtomicBool>,
    ) -> Result<Outcome, SandboxError> {
        let owner = ownership::Owner::for_workspace(&job.workspace)?;
        let gate = match &job.gate {
            Some(socket) => Some(gate_mounts(socket)?),
            None => None,
        };
        let exec = gate
            .as_ref()
            .map_or(mounts::STUB, |(_, script)| script.as_str());
        let staged = mounts::stage_files(&job.files, exec)?;
        let mut handed: Vec<&Path> = vec![job.workspace.as_path(), staged.files.path()];
        handed.extend(staged.home.as_ref().map(tempfile::TempDir::path));
        // The gate's socket is the container user's alone for the run (mode 0600).
        handed.extend(job.gate.as_deref());
        let gate_binds = gate.map(|(binds, _)| binds).unwrap_or_default();
        // Given back whatever happens, also when handing over stopped half-way.
        let result = owner
            .hand_over(&handed)
            .map_err(SandboxError::Io)
            .and_then(|()| engine::runtime())
            .and_then(|rt| {
                rt.block_on(async {
                    let docker = engine::connect().await?;
                    // Leftovers of killed sessions go first; failing to list them is no reason
                    // not to run.
                    let _ = engine::reap_dead(&docker).await;
                    let body = self.container(job, &owner, &staged, &gate_binds)?;
                    run_container(&docker, body, job, sink, stop).await
                })
            });
        let given_back = owner.give_back(&handed);
        let outcome = result?;
        given_back?;
        Ok(outcome)
    }
}

impl Docker {
    /// The container for `job`.
    fn container(
        &self,
        job: &Job,
        owner: &ownership::Owner,
        staged: &mounts::Staged,
        gate_binds: &[String],
    ) -> Result<ContainerCreateBody, SandboxError> {
        let Some((program, args)) = job.argv.split_first() else {
            return Err(SandboxError::ProgramNotFound {
                program: String::new(),
            });
        };
        let mut binds = vec![format!(
            "{}:{WORKSPACE}:rw",
            mounts::host_path(&job.workspace)?
        )];
        binds.extend(volumes(&self.config.volumes, &job.workspace)?);
        binds.push(format!(
            "{}:{FILES_DIR}:ro",
            mounts::host_path(staged.files.path())?
        ));
        // The run's HOME files, copied into the tmpfs HOME by a start script before the
        // program is exec'd (its argv unchanged after it).
        let (entrypoint, cmd) = match &staged.home {
            Some(seed) => {
                binds.push(format!(
                    "{}:{}:ro",
                    mounts::host_path(seed.path())?,
                    mounts::HOME_SEED
                ));
                (
                    vec!["/bin/sh".into(), "-c".into(), mounts::start_script()],
                    std::iter::once("chant-start".to_string())
                        .chain(job.argv.iter().cloned())
                        .collect(),
                )
            }
            None => (vec![program.clone()], args.to_vec()),
        };
        binds.extend(gate_binds.iter().cloned());
        // There is no network inside (chant's relay, when there is one, listens on `lo`),
        // and no engine-written hosts file: `localhost` must still resolve.
        binds.push(format!(
            "{}:/etc/hosts:ro",
            mounts::host_path(&staged.hosts.path().join(mounts::HOSTS_FILE))?
        ));
        let mut tmpfs = HashMap::new();
        tmpfs.insert("/tmp".to_string(), format!("rw,nosuid,nodev,{TMPFS_SIZE}"));
        tmpfs.insert(
            HOME.to_string(),
            format!(
                "rw,nosuid,nodev,{TMPFS_SIZE},uid={},gid={},mode=0700",
                owner.uid, owner.gid
            ),
        );
        let memory = i64::try_from(self.config.memory.bytes()).unwrap_or(i64::MAX);
        let nano_cpus =
            i64::try_from(self.config.cpu.millis().saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        let env: Vec<String> = job.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut body = ContainerCreateBody {
            image: Some(self.config.image.clone()),
            entrypoint: Some(entrypoint),
            cmd: Some(cmd),
            env: Some(env),
            working_dir: Some(WORKSPACE.into()),
            user: Some(owner.user()),
            labels: Some(labels(job)),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            attach_stdin: Some(false),
            open_stdin: Some(false),
            tty: Some(false),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                binds: Some(binds),
                tmpfs: Some(tmpfs),
                readonly_rootfs: Some(self.config.read_only),
                network_mode: Some("none".into()),
                memory: (memory > 0).then_some(memory),
                // The same as memory: no swap on top of the limit.
                memory_swap: (memory > 0).then_some(memory),
                nano_cpus: (nano_cpus > 0).then_some(nano_cpus),
                pids_limit: Some(PIDS_LIMIT),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                privileged: Some(false),
                ipc_mode: Some("private".into()),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("none".into()),
                    config: None,
                }),
                auto_remove: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        // With the network enabled, the relay starts first and the agent from it.
        if let Some(egress) = &job.network {
            relay::wrap(&mut body, egress, owner.uid, owner.gid)?;
        }
        Ok(body)
    }
}

/// The binds that put git-chant and the gate's `socket` under [`GATE_DIR`], and the
/// `$CHANT_EXEC` script that runs git-chant there as the gate's client.
fn gate_mounts(socket: &Path) -> Result<(Vec<String>, String), SandboxError> {
    let mounted = selfmount::at(GATE_DIR)?;
    let mut binds = mounted.binds;
    binds.push(format!(
        "{}:{GATE_DIR}/gate.sock:rw",
        mounts::host_path(socket)?
    ));
    let quote = |s: &String| crate::exec::shell::quote(s);
    let client = mounted
        .command
        .iter()
        .map(quote)
        .chain([
            "exec".into(),
            "--gate".into(),
            format!("{GATE_DIR}/gate.sock"),
        ])
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "#!/bin/sh\n# The command gate: chant on the host decides and records; allowed commands run here.\n\
         case \"$1\" in --claude-hook|--claude-hook-result) exec {client} \"$1\";; esac\n\
         exec {client} -- \"$@\"\n"
    );
    Ok((binds, script))
}

/// The labels that say which run a container belongs to (the job's own CHANT_* variables),
/// by which leftovers of killed sessions are found.
fn labels(job: &Job) -> HashMap<String, String> {
    let env = |name: &str| {
        job.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut labels = HashMap::new();
    labels.insert(engine::LABEL_SESSION.to_string(), env("CHANT_SESSION"));
    labels.insert(engine::LABEL_SPEC.to_string(), env("CHANT_SPEC_ID"));
    labels.insert(
        engine::LABEL_PID.to_string(),
        std::process::id().to_string(),
    );
    labels.insert(engine::LABEL_HOST.to_string(), engine::this_host());
    labels
}

/// Creates, starts and follows one container; whatever happens it is removed after.
async fn run_container(
    docker: &bollard::Docker,
    body: ContainerCreateBody,
    job: &Job,
    sink: &mut dyn OutputSink,
    stop: &Arc<AtomicBool>,
) -> Result<Outcome, SandboxError> {
    let host = engine::host();
    let image = body.image.clone().unwrap_or_default();
    let id = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .map(|c| c.id)
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => SandboxError::ImageNotFound { image },
            e => engine::classify(&host, e),
        })?;
    let result = follow(docker, &id, job, sink, stop).await;
    let removed = engine::remove(docker, &id).await;
    let outcome = result?;
    removed.map_err(|e| engine::classify(&host, e))?;
    Ok(outcome)
}

/// Starts the container `id` and follows it to its end.
async fn follow(
    docker: &bollard::Docker,
    id: &str,
    job: &Job,
    sink: &mut dyn OutputSink,
    stop: &Arc<AtomicBool>,
) -> Result<Outcome, SandboxError> {
    let mut output = match engine::attach_and_start(docker, id).await {
        Ok(output) => output,
        // Its first process is the relay: the agent never ran.
        Err(e) if job.network.is_some() => {
            return Err(SandboxError::Engine(format!(
                "the container did not start with its network relay, so the agent did not run: {e}"
            )))
        }
        Err(e) => return Err(e),
    };
    let wait_options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut wait = Box::pin(docker.wait_container(id, Some(wait_options)));
    let deadline = Instant::now() + job.timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut output_open = true;
    let code = loop {
        tokio::select! {
            item = output.next(), if output_open => match item {
                Some(Ok(chunk)) => emit(sink, chunk),
                Some(Err(_)) | None => output_open = false,
            },
            done = wait.next() => break exit_code(done)?,
            _ = tick.tick() => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(Outcome::Interrupted);
                }
                if Instant::now() >= deadline {
                    return Ok(Outcome::TimedOut);
                }
            }
        }
    };
    // The program is gone; what it wrote last may still be on its way.
    if output_open {
        let drain = async {
            while let Some(Ok(chunk)) = output.next().await {
                emit(sink, chunk);
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }
    Ok(Outcome::Exited(code))
}

fn emit(sink: &mut dyn OutputSink, chunk: LogOutput) {
    match chunk {
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            sink.output(Stream::Stdout, &message)
        }
        LogOutput::StdErr { message } => sink.output(Stream::Stderr, &message),
        LogOutput::StdIn { .. } => {}
    }
}

fn exit_code(
    done: Option<Result<bollard::models::ContainerWaitResponse, bollard::errors::Error>>,
) -> Result<i32, SandboxError> {
    match done {
        Some(Ok(r)) => Ok(clamp(r.status_code)),
        // bollard reports a non-zero exit as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(clamp(code)),
        Some(Err(e)) => Err(engine::classify(&engine::host(), e)),
        None => Err(SandboxError::Engine(
            "the engine stopped reporting on the container before it exited".into(),
        )),
    }
}

fn clamp(code: i64) -> i32 {
    i32::try_from(code).unwrap_or(i32::MAX)
}
