//! What of the host the container sees: the host-path side of its bind mounts, and the
//! user's `agent.docker.volumes` checked so that none opens the host wider than asked
//! (never the Docker socket, never a named volume that would outlive the run).

use std::path::Path;

use super::{EXEC_STUB, FILES_DIR, WORKSPACE};
use crate::sandbox::SandboxError;

/// What `$CHANT_EXEC` runs inside the container when the run has no gate channel.
pub const STUB: &str = "#!/bin/sh\n\
echo \"chant: the command gate (\\$CHANT_EXEC) is not available at sandbox level docker; run the command directly\" >&2\n\
exit 126\n";

/// Writes the job's files (guest paths under `/run/chant`) and `$CHANT_EXEC` (the script
/// `exec`) into a fresh private directory, to be mounted read-only at `/run/chant`.
/// Removed when dropped.
pub fn stage_files(
    files: &[(std::path::PathBuf, Vec<u8>)],
    exec: &str,
) -> Result<tempfile::TempDir, SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("chant-docker-").tempdir()?;
    let write = |rel: &Path, bytes: &[u8], mode: u32| -> Result<(), SandboxError> {
        let path = dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    for (guest, bytes) in files {
        let rel = guest.strip_prefix(FILES_DIR).map_err(|_| {
            SandboxError::Workspace(format!(
                "{} is outside {FILES_DIR}, the only place the container gets files",
                guest.display()
            ))
        })?;
        if rel.as_os_str().is_empty()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(SandboxError::Workspace(format!(
                "{} is not a file name",
                guest.display()
            )));
        }
        write(rel, bytes, 0o644)?;
    }
    let stub = Path::new(EXEC_STUB)
        .strip_prefix(FILES_DIR)
        .unwrap_or(Path::new("chant-exec"));
    write(stub, exec.as_bytes(), 0o755)?;
    Ok(dir)
}

pub fn host_path(path: &Path) -> Result<String, SandboxError> {
    let text = path.to_str().ok_or_else(|| {
        SandboxError::DockerConfig(format!(
            "the path {} is not UTF-8 and cannot be mounted",
            path.display()
        ))
    })?;
    if text.contains(':') {
        return Err(SandboxError::DockerConfig(format!(
            "the path {text} contains ':' and cannot be mounted"
        )));
    }
    Ok(text.to_string())
}

/// `agent.docker.volumes` as bind specs: `${CLONE_PATH}` is the clone (already mounted at
/// `/workspace`, the only place it may go); any other volume is an absolute host path,
/// read-only unless marked `:rw`, and never the Docker socket.
pub fn volumes(config: &[String], clone: &Path) -> Result<Vec<String>, SandboxError> {
    let clone_text = host_path(clone)?;
    let mut out = Vec::new();
    for volume in config {
        let bad = |why: &str| SandboxError::DockerConfig(format!("volume '{volume}': {why}"));
        let parts: Vec<&str> = volume.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [s, t] => (*s, *t, "ro"),
            [s, t, m] => (*s, *t, *m),
            _ => return Err(bad("write SOURCE:TARGET[:ro|rw]")),
        };
        let mode = match mode {
            "ro" | "rw" => mode,
            _ => return Err(bad("the mode must be ro or rw")),
        };
        if source == "${CLONE_PATH}" || source == clone_text {
            if target.trim_end_matches('/') != WORKSPACE {
                return Err(bad("the clone can only be mounted at /workspace"));
            }
            continue;
        }
        let source = source.replace("${CLONE_PATH}", &clone_text);
        if !source.starts_with('/') {
            return Err(bad(
                "the source must be an absolute host path (named volumes would outlive the run)",
            ));
        }
        if source.ends_with("docker.sock") {
            return Err(bad("the Docker socket would give the agent the whole host"));
        }
        if !target.starts_with('/') || target.trim_end_matches('/') == WORKSPACE {
            return Err(bad(
                "the target must be an absolute path other than /workspace",
            ));
        }
        out.push(format!("{source}:{target}:{mode}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clone_volume_is_the_workspace_and_others_are_read_only() {
        let clone = Path::new("/state/clones/x7m");
        let got = volumes(
            &[
                "${CLONE_PATH}:/workspace".into(),
                "/opt/cache:/cache".into(),
                "/opt/out:/out:rw".into(),
            ],
            clone,
        )
        .expect("valid");
        assert_eq!(got, ["/opt/cache:/cache:ro", "/opt/out:/out:rw"]);
    }

    #[test]
    fn volumes_that_would_open_the_host_are_refused() {
        let clone = Path::new("/c");
        for bad in [
            "/var/run/docker.sock:/var/run/docker.sock",
            "cache:/cache",
            "${CLONE_PATH}:/src",
            "/etc:/workspace",
            "/etc:/etc:rx",
        ] {
            assert!(
                volumes(&[bad.to_string()], clone).is_err(),
                "{bad} accepted"
            );
        }
    }
}
