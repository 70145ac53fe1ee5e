//! The worker image of the kubernetes tests, built without a registry: Debian's static
//! busybox (`sh`), the host's git with its libraries (and the `git-upload-pack` /
//! `git-receive-pack` names git runs for `file://`), the libraries git-chant loads, and the
//! fixture agents at /opt/chant/agents (tests/common/image.rs builds it). And a way to run a
//! command the way the fake API server runs the Job's container.
//!
//! A push over `file://` runs the receiving side — the bare repository's server hook, which
//! is `git chant hook pre-receive` — inside the pod. That hook belongs to the git server,
//! not the pod's image, so the test's git-chant binary is bind-mounted read-only at
//! [`CHANT_IN_POD`] (see [`server_side`]) rather than baked in: the image then stays the
//! same from build to build.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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

/// The worker image with the real Claude Code CLI (at its host path, linked from
/// /usr/local/bin) and bash for its Bash tool; None (after a loud message) when the CLI or
/// the engine is missing, unless `CHANT_REQUIRE_CLAUDE` / `CHANT_REQUIRE_DOCKER=1` is set.
pub fn claude_image() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    let built = IMAGE.get_or_init(|| {
        let claude = common::claude::claude_binary()?;
        let mut files = common::image::with_libraries(&claude);
        files.extend(common::image::with_libraries(Path::new("/bin/bash")));
        let target: &'static str =
            Box::leak(claude.to_string_lossy().into_owned().into_boxed_str());
        let links: &'static [(&'static str, &'static str)] =
            Box::leak(vec![("usr/local/bin/claude", target)].into_boxed_slice());
        build_with("chant-test-k8s-claude", files, links)
    });
    match built {
        Ok(tag) => Some(tag.clone()),
        Err(why) => {
            let required = std::env::var_os("CHANT_REQUIRE_CLAUDE").is_some()
                || std::env::var_os("CHANT_REQUIRE_DOCKER").is_some_and(|v| v == "1");
            if required {
                panic!("the kubernetes test with Claude Code cannot run: {why}");
            }
            eprintln!(
                "\n*** SKIPPING kubernetes test with Claude Code: {why}\n*** (set CHANT_REQUIRE_CLAUDE=1 to make this a failure)\n"
            );
            None
        }
    }
}

/// Busybox, the host's git (with the names git runs for `file://`), the libraries
/// git-chant loads and the fixture agents, with the pod's writable mount points.
fn build() -> Result<String, String> {
    build_with("chant-test-k8s-worker", Vec::new(), &[])
}

/// [`build`] with more host files and links.
fn build_with(
    name: &str,
    extra: Vec<PathBuf>,
    extra_links: &[(&str, &str)],
) -> Result<String, String> {
    let chant = PathBuf::from(env!("CARGO_BIN_EXE_git-chant"));
    let files = common::image::with_libraries(Path::new("/usr/bin/git"))
        .into_iter()
        .chain(common::image::with_libraries(&chant).into_iter().skip(1))
        .chain(extra)
        .collect();
    let mut links = vec![
        ("usr/bin/git-upload-pack", "git"),
        ("usr/bin/git-receive-pack", "git"),
    ];
    links.extend_from_slice(extra_links);
    common::image::build(&common::image::Layout {
        name,
        files,
        // The emptyDirs: docker copies a mount point's mode into its tmpfs.
        dirs: &[
            ("workspace", 0o1777),
            ("home", 0o755),
            ("home/agent", 0o1777),
            ("usr/local/bin", 0o755),
        ],
        links: &links,
    })
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

/// An agent CLI's image (tests/common/agent_images.rs, None when it could not be had: that
/// said why, loudly) with the worker image laid over it — busybox, git with the names git
/// runs for `file://`, the libraries the server hook's git-chant loads, the pod's mount
/// points — tagged `NAME:<agent tag>-<worker tag>`, built once. None (after a loud message)
/// when either is missing, a failure under `CHANT_REQUIRE_DOCKER=1`.
pub fn with_agent(agent: Option<String>, name: &str) -> Option<String> {
    let agent = agent?;
    let worker = image()?;
    let tag = |image: &str| image.rsplit(':').next().unwrap_or_default().to_string();
    let layered = format!("{name}:{}-{}", tag(&agent), tag(&worker));
    let found = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &layered])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(layered);
    }
    let dockerfile = format!("FROM {agent}\nCOPY --from={worker} / /\n");
    let built = Command::new("docker")
        .args(["build", "--quiet", "--tag", &layered, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(dockerfile.as_bytes())?;
            }
            child.wait_with_output()
        });
    match built {
        Ok(out) if out.status.success() => Some(layered),
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            };
            if std::env::var_os("CHANT_REQUIRE_DOCKER").is_some_and(|v| v == "1") {
                panic!("CHANT_REQUIRE_DOCKER=1 but {layered} cannot be built: {why}");
            }
            eprintln!(
                "\n*** SKIPPING kubernetes test: {layered} cannot be built: {why}\n*** (set CHANT_REQUIRE_DOCKER=1 to make this a failure)\n"
            );
            None
        }
    }
}
