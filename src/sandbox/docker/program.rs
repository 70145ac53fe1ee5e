//! Whether the agent program is in an image, for `git chant doctor`: a container is created
//! (never started), the program's path looked up in it through the engine's archive API
//! (as `PATH` inside would find it) and, when it is a link, its target (the engine resolves
//! links inside the container's root), and the container removed. Nothing of the image runs.

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::ContainerArchiveInfoOptionsBuilder;

use super::{engine, PATH};
use crate::sandbox::SandboxError;

/// Where `program` is in `image` (its path inside), or why it cannot be said.
pub async fn find(
    docker: &bollard::Docker,
    image: &str,
    program: &str,
) -> Result<String, SandboxError> {
    let host = engine::host();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec![program.to_string()]),
        cmd: Some(Vec::new()),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .map_err(|e| engine::classify(&host, e))?
        .id;
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.to_string()]
    } else {
        PATH.split(':').map(|d| format!("{d}/{program}")).collect()
    };
    let stat = |path: String| {
        let options = ContainerArchiveInfoOptionsBuilder::default()
            .path(&path)
            .build();
        let id = id.clone();
        async move {
            docker
                .get_container_archive_info(&id, Some(options))
                .await
                .ok()
        }
    };
    let mut found = None;
    let mut dangling = None;
    for path in &candidates {
        let Some(info) = stat(path.clone()).await else {
            continue;
        };
        if info.file_mode & MODE_SYMLINK == 0 {
            found = Some(path.clone());
            break;
        }
        // The engine gives a link's target resolved inside the container's root (chains,
        // relative and absolute, never onto the host); a loop fails the stat above. The
        // target must itself be there, and not be a link still.
        let target = info.link_target;
        match stat(target.clone()).await {
            Some(t) if t.file_mode & (MODE_SYMLINK | MODE_DIR) == 0 => {
                found = Some(format!("{path}, found (→ {target})"));
                break;
            }
            _ => {
                dangling.get_or_insert((path.clone(), target));
            }
        }
    }
    let _ = engine::remove(docker, &id).await;
    match (found, dangling) {
        (Some(found), _) => Ok(found),
        (None, Some((link, target))) => Err(SandboxError::DanglingInImage {
            link,
            target,
            image: format!("the Docker image '{image}'"),
        }),
        (None, None) => Err(SandboxError::NotInDockerImage {
            program: program.to_string(),
            image: image.to_string(),
        }),
    }
}

/// Go's `os.ModeSymlink` and `os.ModeDir` in the engine's path stat.
const MODE_SYMLINK: u32 = 1 << 27;
const MODE_DIR: u32 = 1 << 31;
