//! Whether the agent program is in an image, for `git chant doctor`: a container is created
//! (never started), the program's path looked up in it through the engine's archive API
//! (as `PATH` inside would find it), and the container removed. Nothing of the image runs.

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
    let mut found = None;
    for path in &candidates {
        let options = ContainerArchiveInfoOptionsBuilder::default()
            .path(path)
            .build();
        if docker
            .get_container_archive_info(&id, Some(options))
            .await
            .is_ok()
        {
            found = Some(path.clone());
            break;
        }
    }
    let _ = engine::remove(docker, &id).await;
    found.ok_or_else(|| SandboxError::NotInDockerImage {
        program: program.to_string(),
        image: image.to_string(),
    })
}
