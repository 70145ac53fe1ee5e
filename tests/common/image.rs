//! Test images without a registry: Debian's static busybox (every applet linked into
//! `/bin`), host files at their own paths (programs and the libraries they load), the
//! fixture agents at /opt/chant/agents, imported through the engine's image API under a tag
//! that hashes all of it — built once, reused while nothing changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use futures_util::StreamExt;
use sha2::Digest;

/// Where the fixture agents are in every test image.
pub const AGENTS: &str = "/opt/chant/agents";

/// What goes into an image besides busybox and the agents.
pub struct Layout<'a> {
    /// The image's name (the tag is a content hash).
    pub name: &'a str,
    /// Host files copied to the same absolute paths (mode 0755).
    pub files: Vec<PathBuf>,
    /// Directories and their modes, besides `bin`, `etc`, `tmp` and the agents' (and the
    /// parents of `files`, 0755).
    pub dirs: &'a [(&'a str, u32)],
    /// Symbolic links: path → target.
    pub links: &'a [(&'a str, &'a str)],
}

/// `program` and the host files it loads (from `ldd`), absolute, itself first.
pub fn with_libraries(program: &Path) -> Vec<PathBuf> {
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

/// Builds (or finds) the image of `layout`; its `name:tag`, or why it cannot be had.
pub fn build(layout: &Layout) -> Result<String, String> {
    build_with(layout, Vec::new())
}

/// A file of an image: its path inside (no leading `/`), its body and its modification time
/// (seconds; a host file keeps its own, so that e.g. Python's cached bytecode, which names
/// its source's mtime, stays valid in a read-only image instead of being recompiled at every
/// start).
pub type Placed = (String, Vec<u8>, u64);

/// The modification time of `host`, in seconds (0 when it cannot be read).
pub fn mtime_of(host: &Path) -> u64 {
    std::fs::metadata(host)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// [`build`], with `placed` files besides (mode 0755): host files moved elsewhere, or files
/// of the test's own.
pub fn build_with(layout: &Layout, placed: Vec<Placed>) -> Result<String, String> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no busybox found (apt-get install busybox-static)")?;
    let mut files: Vec<Placed> = Vec::new();
    for host in &layout.files {
        let body = std::fs::read(host).map_err(|e| format!("{}: {e}", host.display()))?;
        let inside = host.to_string_lossy().trim_start_matches('/').to_string();
        files.push((inside, body, mtime_of(host)));
    }
    files.extend(placed);
    files.sort();
    files.dedup();
    let agents_dir = super::crate_path("fixtures/agents");
    let mut agents: Vec<Placed> = std::fs::read_dir(&agents_dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap_or_default(), 0)
        })
        .collect();
    agents.sort();
    let mut hash = sha2::Sha256::new();
    // The layout `rootfs` writes; bump when it changes.
    hash.update(b"common image layout 2");
    hash.update(&busybox);
    for (path, body, mtime) in files.iter().chain(agents.iter()) {
        hash.update(path.as_bytes());
        hash.update(body);
        hash.update(mtime.to_le_bytes());
    }
    for (d, mode) in layout.dirs {
        hash.update(format!("dir {d} {mode:o}"));
    }
    for (path, target) in layout.links {
        hash.update(format!("link {path} {target}"));
    }
    let tag: String = hash
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let image = format!("{}:{tag}", layout.name);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let docker = bollard::Docker::connect_with_defaults().map_err(|e| e.to_string())?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| format!("no Docker engine answers ({e})"))?;
        docker
            .ping()
            .await
            .map_err(|e| format!("no Docker engine answers ({e})"))?;
        if docker.inspect_image(&image).await.is_ok() {
            return Ok(image.clone());
        }
        let tar = rootfs(&busybox, &files, &agents, layout).map_err(|e| e.to_string())?;
        let options = bollard::query_parameters::CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(layout.name)
            .tag(&tag)
            .build();
        let mut progress =
            docker.create_image(Some(options), Some(bollard::body_full(tar.into())), None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| format!("image import failed: {e}"))?;
        }
        Ok(image.clone())
    })
}

fn rootfs(
    busybox: &[u8],
    files: &[Placed],
    agents: &[Placed],
    layout: &Layout,
) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    // Sorted, so parents come before their children; the layout's modes win.
    let mut dirs: BTreeMap<String, u32> = [
        ("bin", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("opt", 0o755),
        ("opt/chant", 0o755),
        ("opt/chant/agents", 0o755),
    ]
    .iter()
    .chain(layout.dirs.iter())
    .map(|(d, m)| (d.to_string(), *m))
    .collect();
    let placed: Vec<String> = files
        .iter()
        .map(|(p, _, _)| p.clone())
        .chain(layout.dirs.iter().map(|(d, _)| d.to_string()))
        .chain(layout.links.iter().map(|(p, _)| p.to_string()))
        .collect();
    for path in &placed {
        let mut parent = Path::new(path).parent();
        while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.entry(d.to_string_lossy().into_owned())
                .or_insert(0o755);
            parent = d.parent();
        }
    }
    for (d, mode) in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(*mode);
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(&mut h, d, std::io::empty())?;
    }
    let file = |tar: &mut tar::Builder<Vec<u8>>, path: &str, body: &[u8], mtime: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(body.len() as u64);
        h.set_mtime(mtime);
        tar.append_data(&mut h, path, body)
    };
    file(&mut tar, "bin/busybox", busybox, 0)?;
    for (path, body, mtime) in files {
        file(&mut tar, path, body, *mtime)?;
    }
    for (name, body, mtime) in agents {
        file(&mut tar, &format!("opt/chant/agents/{name}"), body, *mtime)?;
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
    for (path, target) in layout.links {
        link(&mut tar, path, target)?;
    }
    tar.into_inner()
}

/// The image `build` makes, built at most once per test binary (`cell` holds it); None,
/// after a loud message, when no engine answers — a panic instead under
/// `CHANT_REQUIRE_DOCKER=1`.
pub fn once(
    cell: &'static std::sync::OnceLock<Result<String, String>>,
    build: fn() -> Result<String, String>,
) -> Option<String> {
    match cell.get_or_init(build) {
        Ok(tag) => Some(tag.clone()),
        Err(why) => {
            if std::env::var_os("CHANT_REQUIRE_DOCKER").is_some_and(|v| v == "1") {
                panic!("CHANT_REQUIRE_DOCKER=1 but the docker test cannot run: {why}");
            }
            eprintln!(
                "\n*** SKIPPING docker test: {why}\n*** (set CHANT_REQUIRE_DOCKER=1 to make this a failure)\n"
            );
            None
        }
    }
}

/// Busybox, the fixture agents and the host's curl with its libraries (for the tests of
/// the network and of injection); None (after saying why, loudly) when it cannot be built,
/// a failure under `CHANT_REQUIRE_DOCKER=1`.
#[allow(dead_code)]
pub fn curl_image(what: &str) -> Option<String> {
    let curl = Path::new("/usr/bin/curl");
    let built = if curl.exists() {
        build(&Layout {
            name: "chant-test-curl",
            files: with_libraries(curl),
            dirs: &[],
            links: &[],
        })
    } else {
        Err("no /usr/bin/curl on the host".to_string())
    };
    match built {
        Ok(tag) => Some(tag),
        Err(why) => {
            if std::env::var_os("CHANT_REQUIRE_DOCKER").is_some_and(|v| v == "1") {
                panic!("CHANT_REQUIRE_DOCKER=1 but the {what} cannot run: {why}");
            }
            eprintln!("\n*** SKIPPING {what}: {why}\n");
            None
        }
    }
}

/// Busybox, the host's git (with its libraries) and the fixture agents, as
/// `chant-test-busybox:<content hash>` (the image tests/docker.rs uses too).
pub fn busybox_with_git() -> Result<String, String> {
    let git = Path::new("/usr/bin/git");
    build(&Layout {
        name: "chant-test-busybox",
        files: if git.exists() {
            with_libraries(git)
        } else {
            Vec::new()
        },
        dirs: &[],
        links: &[],
    })
}
