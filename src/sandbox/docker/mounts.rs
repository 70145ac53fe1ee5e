//! What of the host the container sees: the host-path side of its bind mounts, and the
//! user's `agent.docker.volumes` checked so that none opens the host wider than asked
//! (never the Docker socket, never a named volume that would outlive the run).

use std::path::Path;

use super::{EXEC_STUB, FILES_DIR, HOME, WORKSPACE};
use crate::sandbox::SandboxError;

/// What `$CHANT_EXEC` runs inside the container when the run has no gate channel.
pub const STUB: &str = "#!/bin/sh\n\
echo \"chant: the command gate (\\$CHANT_EXEC) is not available at sandbox level docker; run the command directly\" >&2\n\
exit 126\n";

/// The job's files staged on the host for the container's read-only mounts; both
/// directories are removed when dropped.
pub struct Staged {
    /// Mounted at `/run/chant`: the files under it, and `$CHANT_EXEC`.
    pub files: tempfile::TempDir,
    /// Mounted at [`HOME_SEED`] when the job has files under the container's HOME: copied
    /// into that HOME (a tmpfs) by [`start_script`] before the program runs.
    pub home: Option<tempfile::TempDir>,
    /// Holds [`HOSTS_FILE`], mounted read-only at `/etc/hosts` (never handed to the
    /// container's user).
    pub hosts: tempfile::TempDir,
}

/// `/etc/hosts` inside: the engine writes none for a container without networking (with
/// or without chant's relay), and programs (test servers, dev tools) expect `localhost`.
pub const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
/// Its name in [`Staged::hosts`].
pub const HOSTS_FILE: &str = "hosts";

/// Where the files for the container's HOME are mounted (read-only), to be copied in.
pub const HOME_SEED: &str = "/run/chant-home";

/// The start script for a job with HOME files: copies them into the empty tmpfs HOME (as
/// the container user, so they are its own) and execs the program (`"$@"`); the program
/// never runs with a HOME chant did not fill.
pub fn start_script() -> String {
    format!(
        "cp -R {HOME_SEED}/. {HOME}/ || {{ echo \"chant: could not copy the agent's settings into its HOME {HOME}; the image needs /bin/sh and cp (busybox has both)\" >&2; exit 125; }}; exec \"$@\""
    )
}

/// Writes the job's files into fresh private directories: those under `/run/chant` (and
/// `$CHANT_EXEC`, the script `exec`) for the mount there, those under the container's HOME
/// for [`HOME_SEED`] (see [`start_script`]). A path anywhere else, or with `..`, is refused.
pub fn stage_files(
    files: &[(std::path::PathBuf, Vec<u8>)],
    exec: &str,
) -> Result<Staged, SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    let private = || tempfile::Builder::new().prefix("chant-docker-").tempdir();
    let dir = private()?;
    let mut home: Option<tempfile::TempDir> = None;
    let write = |root: &Path, rel: &Path, bytes: &[u8], mode: u32| -> Result<(), SandboxError> {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    for (guest, bytes) in files {
        let (rel, root) = if let Ok(rel) = guest.strip_prefix(FILES_DIR) {
            (rel, dir.path().to_path_buf())
        } else if let Ok(rel) = guest.strip_prefix(HOME) {
            let seed = match &home {
                Some(seed) => seed,
                None => home.insert(private()?),
            };
            (rel, seed.path().to_path_buf())
        } else {
            return Err(SandboxError::Workspace(format!(
                "{} is outside {FILES_DIR} and {HOME}, the only places the container gets files",
                guest.display()
            )));
        };
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
        write(&root, rel, bytes, 0o644)?;
    }
    let stub = Path::new(EXEC_STUB)
        .strip_prefix(FILES_DIR)
        .unwrap_or(Path::new("chant-exec"));
    write(dir.path(), stub, exec.as_bytes(), 0o755)?;
    let hosts = private()?;
    write(hosts.path(), Path::new(HOSTS_FILE), HOSTS.as_bytes(), 0o644)?;
    Ok(Staged {
        files: dir,
        home,
        hosts,
    })
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
    fn home_files_are_staged_apart_from_the_files_and_nothing_else_is_accepted() {
        let files = vec![
            (
                Path::new("/run/chant/prompt.md").to_path_buf(),
                b"p".to_vec(),
            ),
            (
                Path::new("/home/agent/.codex/config.toml").to_path_buf(),
                b"model = \"x\"\n".to_vec(),
            ),
        ];
        let staged = stage_files(&files, STUB).expect("staged");
        let seed = staged.home.as_ref().expect("a HOME seed");
        assert_eq!(
            std::fs::read(seed.path().join(".codex/config.toml")).expect("seeded"),
            b"model = \"x\"\n"
        );
        assert!(!staged.files.path().join(".codex").exists());
        assert!(staged.files.path().join("prompt.md").is_file());
        assert!(!seed.path().join("prompt.md").exists());
        // Without HOME files there is no seed (and no start script).
        let plain = stage_files(&files[..1], STUB).expect("staged");
        assert!(plain.home.is_none());
        for bad in [
            "/home/agent/../../etc/passwd",
            "/home/agent",
            "/home/agentx/f",
            "/etc/profile",
            "/run/chant/../x",
        ] {
            let got = stage_files(&[(bad.into(), b"x".to_vec())], STUB);
            assert!(got.is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_start_script_copies_from_the_seed_into_home_and_execs_the_argv() {
        let script = start_script();
        assert!(
            script.starts_with(&format!("cp -R {HOME_SEED}/. {HOME}/ ||")),
            "{script}"
        );
        assert!(script.ends_with("exec \"$@\""), "{script}");
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
