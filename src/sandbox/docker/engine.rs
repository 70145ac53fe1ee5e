//! The connection to the Docker Engine: which engine (`DOCKER_HOST` or the default socket),
//! what its failures mean to a user, whether an image is present, and the reaping of
//! containers that dead chant sessions left behind.
//!
//! Async functions here run on the sandbox's own current-thread runtime; nothing here
//! prints or blocks the rest of the crate.

use std::collections::HashMap;

use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::Stream;

use crate::sandbox::SandboxError;

/// Label keys on every container chant creates.
pub const LABEL_SESSION: &str = "chant.session";
pub const LABEL_SPEC: &str = "chant.spec";
pub const LABEL_PID: &str = "chant.pid";
pub const LABEL_HOST: &str = "chant.host";

const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The engine address chant uses: `DOCKER_HOST`, else the default socket.
pub fn host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// A single-threaded runtime for one sandbox call (the rest of the crate is synchronous).
pub fn runtime() -> Result<tokio::runtime::Runtime, SandboxError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SandboxError::Io)
}

/// Connects and agrees on an API version (older engines answer only older versions).
pub async fn connect() -> Result<bollard::Docker, SandboxError> {
    let host = host();
    let docker =
        bollard::Docker::connect_with_host(&host).map_err(|e| SandboxError::EngineUnreachable {
            host: host.clone(),
            detail: e.to_string(),
        })?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| classify(&host, e))
}

/// What a failed request means: no engine, no permission, or something else.
pub fn classify(host: &str, e: bollard::errors::Error) -> SandboxError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    return SandboxError::EnginePermission {
                        host: host.to_string(),
                    }
                }
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    return SandboxError::EngineUnreachable {
                        host: host.to_string(),
                        detail: io.to_string(),
                    }
                }
                _ => {}
            }
        }
        source = err.source();
    }
    let text = e.to_string();
    if text.contains("Permission denied") {
        return SandboxError::EnginePermission {
            host: host.to_string(),
        };
    }
    match e {
        bollard::errors::Error::DockerResponseServerError { .. }
        | bollard::errors::Error::DockerStreamError { .. }
        | bollard::errors::Error::DockerContainerWaitError { .. } => SandboxError::Engine(text),
        _ => SandboxError::EngineUnreachable {
            host: host.to_string(),
            detail: text,
        },
    }
}

/// Fails with [`SandboxError::ImageNotFound`] unless `image` is in the engine.
pub async fn require_image(docker: &bollard::Docker, image: &str) -> Result<(), SandboxError> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(SandboxError::ImageNotFound {
            image: image.to_string(),
        }),
        Err(e) => Err(classify(&host(), e)),
    }
}

/// This machine's name, as written into the `chant.host` label.
pub fn this_host() -> String {
    crate::identity::hostname()
}

/// Removes containers of chant sessions on this host whose process is gone (chant was
/// killed before it could clean up). Containers of live sessions are left alone.
pub async fn reap_dead(docker: &bollard::Docker) -> Result<usize, SandboxError> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![LABEL_SESSION.to_string()]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| classify(&host(), e))?;
    let me = this_host();
    let mut reaped = 0;
    for c in list {
        let labels = c.labels.unwrap_or_default();
        let same_host = labels.get(LABEL_HOST).is_some_and(|h| *h == me);
        let pid = labels.get(LABEL_PID).and_then(|p| p.parse::<i32>().ok());
        let dead = match pid {
            Some(pid) if same_host => !process_alive(pid),
            _ => false,
        };
        if let (true, Some(id)) = (dead, c.id) {
            if remove(docker, &id).await.is_ok() {
                reaped += 1;
            }
        }
    }
    Ok(reaped)
}

/// Kills (if running) and removes a container with its anonymous volumes.
pub async fn remove(docker: &bollard::Docker, id: &str) -> Result<(), bollard::errors::Error> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks whether the process exists; nothing is delivered.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A container's output as it arrives.
pub type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// Attaches to the created container's stdout and stderr, then starts it: nothing it says
/// is missed.
pub async fn attach_and_start(docker: &bollard::Docker, id: &str) -> Result<Output, SandboxError> {
    let output = attach(docker, id).await?;
    start(docker, id).await?;
    Ok(output)
}

/// The created container's stdout and stderr, from its start on (attach before starting).
pub async fn attach(docker: &bollard::Docker, id: &str) -> Result<Output, SandboxError> {
    let attach = AttachContainerOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .stream(true)
        .build();
    Ok(docker
        .attach_container(id, Some(attach))
        .await
        .map_err(|e| classify(&host(), e))?
        .output)
}

/// Starts the created container `id`.
pub async fn start(docker: &bollard::Docker, id: &str) -> Result<(), SandboxError> {
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(|e| classify(&host(), e))
}
