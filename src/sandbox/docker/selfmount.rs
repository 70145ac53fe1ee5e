//! This very program inside a container: git-chant and the libraries it links, bind-mounted
//! read-only under one directory and started through their own dynamic loader, so that any
//! image will do (none needs chant, nor the host's C library). The network relay and the
//! command gate's client (`$CHANT_EXEC`) run this way. Nothing here is writable by the
//! container.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::sandbox::SandboxError;

/// The bind mounts and the argv prefix that starts git-chant inside.
pub struct SelfMount {
    pub binds: Vec<String>,
    /// The loader and its arguments then git-chant, or git-chant alone when it is static.
    pub command: Vec<String>,
}

/// What `ldd` says this program loads: asked once per process (every docker job with the
/// network or the gate needs it).
struct Listing {
    exe: PathBuf,
    /// (name the program asks for, host path)
    libs: Vec<(String, PathBuf)>,
    loader: Option<PathBuf>,
}

fn listing() -> Result<&'static Listing, SandboxError> {
    static LISTING: OnceLock<Listing> = OnceLock::new();
    if let Some(l) = LISTING.get() {
        return Ok(l);
    }
    let exe = std::env::current_exe()?.canonicalize()?;
    let listed = std::process::Command::new("ldd")
        .arg(&exe)
        .env_clear()
        .output()
        .map_err(|e| {
            SandboxError::Workspace(format!(
                "cannot list the libraries of {} with ldd ({e}); the network relay and the command gate run it inside the container",
                exe.display()
            ))
        })?;
    let text = String::from_utf8_lossy(&listed.stdout);
    let mut libs = Vec::new();
    let mut loader = None;
    for line in text.lines().map(str::trim) {
        let path_of = |s: &str| s.split(" (").next().unwrap_or_default().trim().to_string();
        if let Some((name, rest)) = line.split_once(" => ") {
            let path = path_of(rest);
            if path.starts_with('/') {
                libs.push((name.to_string(), PathBuf::from(path)));
            }
        } else if line.starts_with('/') {
            loader = Some(PathBuf::from(path_of(line)));
        }
    }
    Ok(LISTING.get_or_init(|| Listing { exe, libs, loader }))
}

/// git-chant under `dir` in the container (`dir/git-chant`, `dir/lib/…`, `dir/ld.so`).
pub fn at(dir: &str) -> Result<SelfMount, SandboxError> {
    let listing = listing()?;
    let mut binds = vec![bind(&listing.exe, &format!("{dir}/git-chant"))?];
    for (name, path) in &listing.libs {
        binds.push(bind(path, &format!("{dir}/lib/{name}"))?);
    }
    let command = match &listing.loader {
        Some(ld) => {
            binds.push(bind(ld, &format!("{dir}/ld.so"))?);
            vec![
                format!("{dir}/ld.so"),
                "--library-path".into(),
                format!("{dir}/lib"),
                format!("{dir}/git-chant"),
            ]
        }
        // Statically linked: it starts by itself.
        None => vec![format!("{dir}/git-chant")],
    };
    Ok(SelfMount { binds, command })
}

fn bind(host: &Path, inside: &str) -> Result<String, SandboxError> {
    let host = host.canonicalize()?;
    Ok(format!("{}:{inside}:ro", super::mounts::host_path(&host)?))
}
