//! The worker image of the kubernetes tests, built without a registry: Debian's static
//! busybox (`sh`), the host's git with its libraries (and the `git-upload-pack` /
//! `git-receive-pack` names git runs for `file://`), the libraries git-chant loads, and the
//! fixture agents at /opt/chant/agents, imported with `docker import`. And a way to run a
//! command the way the fake API server runs the Job's container.
//!
//! A push over `file://` runs the receiving side — the bare repository's server hook, which
//! is `git chant hook pre-receive` — inside the pod. That hook belongs to the git server,
//! not the pod's image, so the test's git-chant binary is bind-mounted read-only at
//! [`CHANT_IN_POD`] (see [`server_side`]) rather than baked in: the image then stays the
//! same from build to build.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use sha2::Digest;

use super::common;

/// The image tag, or None (after a loud message) when no engine answers.
pub fn image() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    match IMAGE.get_or_init(build) {
        Ok(tag) => Some(tag.clone()),
        Err(why) => {
            if std::env::var_os("CHANT_REQUIRE_DOCKER").is_some_and(|v| v == "1") {
                panic!("CHANT_REQUIRE_DOCKER=1 but the kubernetes tests cannot run: {why}");
            }
            eprintln!(
                "\n*** SKIPPING kubernetes test: {why}\n*** (set CHANT_REQUIRE_DOCKER=1 to make this a failure)\n"
            );
            None
        }
    }
}

/// Where the server hook finds git-chant in the pod (on its `PATH`).
pub const CHANT_IN_POD: &str = "/usr/local/bin/git-chant";

/// The `-v` argument that plays the git server's side: git-chant, read-only.
pub fn server_side() -> String {
    format!("{}:{CHANT_IN_POD}:ro", env!("CARGO_BIN_EXE_git-chant"))
}

/// Host files (absolute) a program loads, itself first.
fn with_libraries(program: &Path) -> Vec<PathBuf> {
    let mut out = vec![program.to_path_buf()];
    if let Ok(ldd) = Command::new("ldd").arg(program).output() {
        for token in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
            if token.starts_with('/') {
                out.push(PathBuf::from(token));
            }
        }
    }
    out
}

fn build() -> Result<String, String> {
    let ping = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map_err(|e| format!("no docker CLI ({e})"))?;
    if !ping.status.success() {
        return Err(format!(
            "no Docker engine answers: {}",
            String::from_utf8_lossy(&ping.stderr).trim()
        ));
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no busybox found (apt-get install busybox-static)")?;
    let chant = PathBuf::from(env!("CARGO_BIN_EXE_git-chant"));
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for host in with_libraries(Path::new("/usr/bin/git"))
        .into_iter()
        .chain(with_libraries(&chant).into_iter().skip(1))
    {
        let inside = host.to_string_lossy().trim_start_matches('/').to_string();
        files.push((inside, host));
    }
    files.sort();
    files.dedup();
    let agents_dir = common::crate_path("fixtures/agents");
    let mut agents: Vec<(String, Vec<u8>)> = std::fs::read_dir(&agents_dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap_or_default())
        })
        .collect();
    agents.sort();
    let mut contents: Vec<(String, Vec<u8>)> = Vec::new();
    for (inside, host) in &files {
        let body = std::fs::read(host).map_err(|e| format!("{}: {e}", host.display()))?;
        contents.push((inside.clone(), body));
    }
    let mut hash = sha2::Sha256::new();
    // The layout below (bump when it changes) and everything put in it.
    hash.update(b"layout 3");
    hash.update(&busybox);
    for (p, body) in contents.iter().chain(agents.iter()) {
        hash.update(p.as_bytes());
        hash.update(body);
    }
    let tag: String = hash
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let image = format!("chant-test-k8s-worker:{tag}");
    let known = Command::new("docker")
        .args(["image", "inspect", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if known.success() {
        return Ok(image);
    }
    let tar = rootfs(&busybox, &contents, &agents).map_err(|e| e.to_string())?;
    let mut child = Command::new("docker")
        .args(["import", "-", &image])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin.write_all(&tar).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(image)
}

fn rootfs(
    busybox: &[u8],
    files: &[(String, Vec<u8>)],
    agents: &[(String, Vec<u8>)],
) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = [
        "bin",
        "etc",
        "tmp",
        "workspace",
        "home",
        "home/agent",
        "usr",
        "usr/bin",
        "usr/local",
        "usr/local/bin",
        "opt",
        "opt/chant",
        "opt/chant/agents",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (path, _) in files {
        let mut parent = Path::new(path).parent();
        while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(d.to_string_lossy().into_owned());
            parent = d.parent();
        }
    }
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        // The emptyDirs: docker copies a mount point's mode into its tmpfs.
        let open = ["tmp", "workspace", "home/agent"].contains(&d.as_str());
        h.set_mode(if open { 0o1777 } else { 0o755 });
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(&mut h, d, std::io::empty())?;
    }
    let file = |tar: &mut tar::Builder<Vec<u8>>, path: &str, body: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(body.len() as u64);
        h.set_mtime(0);
        tar.append_data(&mut h, path, body)
    };
    file(&mut tar, "bin/busybox", busybox)?;
    for (path, body) in files {
        file(&mut tar, path, body)?;
    }
    for (name, body) in agents {
        file(&mut tar, &format!("opt/chant/agents/{name}"), body)?;
    }
    let link = |tar: &mut tar::Builder<Vec<u8>>, path: &str, target: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        tar.append_link(&mut h, path, target)
    };
    let list = Command::new("busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            link(&mut tar, &format!("bin/{applet}"), "busybox")?;
        }
    }
    for name in ["git-upload-pack", "git-receive-pack"] {
        link(&mut tar, &format!("usr/bin/{name}"), "git")?;
    }
    tar.into_inner()
}

/// Runs `command` in `image` as the Job's pod runs: uid 1000, read-only root, all
/// capabilities dropped, no new privileges, tmpfs emptyDirs, `binds` at the same paths,
/// no network but loopback, exactly `env`.
pub fn run_as_pod(image: &str, env: &[(&str, &str)], binds: &[&Path], command: &[&str]) -> Output {
    pod_command(image, None, env, binds, command)
        .output()
        .expect("docker run")
}

/// The `docker run` of a pod (named `name` when given, so it can be removed).
pub fn pod_command(
    image: &str,
    name: Option<&str>,
    env: &[(&str, &str)],
    binds: &[&Path],
    command: &[&str],
) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--user", "1000:1000", "--read-only"])
        .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
        .args(["--network", "none", "--workdir", "/workspace"])
        .args(["--tmpfs", "/workspace:rw,exec,mode=1777"])
        .args(["--tmpfs", "/home/agent:rw,exec,mode=1777"])
        .args(["--tmpfs", "/tmp:rw,exec,mode=1777"]);
    if let Some(n) = name {
        cmd.args(["--name", n]);
    }
    for b in binds {
        cmd.arg("-v")
            .arg(format!("{}:{}", b.display(), b.display()));
    }
    cmd.arg("-v").arg(server_side());
    for (k, v) in env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.arg("--entrypoint").arg(command[0]).arg(image);
    cmd.args(&command[1..]);
    cmd
}
