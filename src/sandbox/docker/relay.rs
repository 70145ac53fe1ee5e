//! The relay sidecar of a docker run with `agent.network.enabled`: a container of its own
//! whose network namespace holds only `lo`, running `git chant relay` (this very program,
//! see `selfmount`). The agent's container joins that namespace, so its only
//! peer is the relay on 127.0.0.1:3128, which hands each connection (its descriptor) to
//! chant's proxy on the host through a bind-mounted Unix socket. No route, no gateway, no DNS: a direct
//! connection to any address fails in the kernel.
//!
//! Order, and why it is fail-closed: both containers are created at once (the agent's names
//! the relay's namespace by the relay's name, which is chosen here, so neither waits for
//! the other's id), the relay is started and the agent is attached to meanwhile, and the
//! agent's container is started only once the relay said it listens. The engine itself
//! refuses to start a container whose namespace owner is not running, and a relay that stops
//! during the run takes the agent's only peer with it: its connections are refused, and the
//! docker level stops the agent and fails the run. The libraries of this program are listed
//! (`ldd`) once per process, not once per run.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, WaitContainerOptionsBuilder};
use futures_util::StreamExt;

use super::{engine, PIDS_LIMIT};
use crate::net::relay::READY;
use crate::net::RELAY_PORT;
use crate::sandbox::{Egress, SandboxError};

/// Where the relay's files appear in its container.
const DIR: &str = "/chant-relay";
/// An unprivileged user of no image in particular (`nobody`).
const USER: &str = "65534:65534";
/// How long the relay may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The proxy URL inside the agent's container.
pub fn proxy_url() -> String {
    format!("http://127.0.0.1:{RELAY_PORT}")
}

/// The program and its libraries, as bind mounts and the command that starts it.
struct Files {
    binds: Vec<String>,
    entrypoint: Vec<String>,
}

fn files(handoff: &Path) -> Result<Files, SandboxError> {
    let mut mounted = super::selfmount::at(DIR)?;
    mounted.binds.push(format!(
        "{}:{DIR}/handoff.sock:rw",
        super::mounts::host_path(handoff)?
    ));
    let mut entrypoint = mounted.command;
    entrypoint.extend([
        "relay".to_string(),
        "--socket".into(),
        format!("{DIR}/handoff.sock"),
        "--listen".into(),
        format!("127.0.0.1:{RELAY_PORT}"),
    ]);
    Ok(Files {
        binds: mounted.binds,
        entrypoint,
    })
}

/// A fresh name for a relay container: the agent's container is created naming the relay's
/// namespace by it (`container:NAME`) before the relay exists.
pub fn name() -> String {
    format!("chant-relay-{}", crate::clock::random_base36(16))
}

/// Creates (does not start) the relay for `egress`, named `name`; returns its id.
pub async fn create(
    docker: &bollard::Docker,
    name: &str,
    image: &str,
    egress: &Egress,
    labels: HashMap<String, String>,
) -> Result<String, SandboxError> {
    let host = engine::host();
    let files = files(&egress.handoff)?;
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(files.entrypoint),
        cmd: Some(Vec::new()),
        env: Some(Vec::new()),
        working_dir: Some("/".into()),
        user: Some(USER.into()),
        labels: Some(labels),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        host_config: Some(HostConfig {
            binds: Some(files.binds),
            readonly_rootfs: Some(true),
            // A namespace of its own with only `lo`, which the agent's container joins.
            network_mode: Some("none".into()),
            memory: Some(128 << 20),
            memory_swap: Some(128 << 20),
            pids_limit: Some(PIDS_LIMIT),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            privileged: Some(false),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    Ok(docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| engine::classify(&host, e))?
        .id)
}

/// Starts the created relay `id` and returns once it listens (the agent may start then).
pub async fn start(docker: &bollard::Docker, id: &str) -> Result<(), SandboxError> {
    let mut output = engine::attach_and_start(docker, id)
        .await
        .map_err(|e| SandboxError::Engine(format!("the network relay did not start: {e}")))?;
    let mut said = Vec::new();
    let ready = tokio::time::timeout(READY_TIMEOUT, async {
        while let Some(Ok(chunk)) = output.next().await {
            if let LogOutput::StdOut { message } | LogOutput::StdErr { message } = chunk {
                said.extend_from_slice(&message);
                if String::from_utf8_lossy(&said).contains(READY) {
                    return true;
                }
            }
        }
        false
    })
    .await;
    match ready {
        Ok(true) => Ok(()),
        _ => Err(SandboxError::Engine(format!(
            "the network relay did not start in its container: {}",
            String::from_utf8_lossy(&said).trim()
        ))),
    }
}

/// Resolves when the relay `id` is no longer running (it died, or was killed).
pub async fn stopped(docker: &bollard::Docker, id: &str) {
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut wait = docker.wait_container(id, Some(options));
    let _ = wait.next().await;
}
