//! What each real agent CLI needs inside a sandbox, as data: the host files it runs from
//! (at their own paths, with the libraries they load), the links that name them, the files
//! moved elsewhere and the files of the test's own. One description per CLI, two sinks: the
//! docker level's image (tests/common/agent_images.rs, `docker import`) and the vm level's
//! guest directory (tests/common/vm_images.rs, copied into the initramfs) — so both levels
//! run the same payload. Building one only reads the host; a CLI that is not installed is an
//! error naming it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::image::with_libraries;

/// Where aider's venv goes inside: its host path is under /tmp, which both the docker level
/// and the guest cover with a tmpfs.
pub const AIDER_VENV: &str = "/opt/chant-aider";

/// One CLI's files, inside paths without the leading `/`.
#[derive(Default)]
pub struct Payload {
    /// Host files copied to the same absolute paths.
    pub files: Vec<PathBuf>,
    /// Symbolic links: path inside → target.
    pub links: Vec<(String, String)>,
    /// Host files copied elsewhere: path inside → host file.
    pub moved: Vec<(String, PathBuf)>,
    /// Files of the test's own: path inside → body (mode 0755).
    pub written: Vec<(String, Vec<u8>)>,
}

impl Payload {
    fn link(&mut self, path: &str, target: impl AsRef<Path>) {
        self.links.push((
            path.to_string(),
            target.as_ref().to_string_lossy().into_owned(),
        ));
    }

    /// git and bash (the agents' shell tools want bash) with their libraries.
    fn with_tools(mut self) -> Self {
        for tool in ["/usr/bin/git", "/bin/bash"].map(Path::new) {
            if tool.exists() {
                self.files.extend(with_libraries(tool));
            }
        }
        self
    }

    /// Copies the payload into `dir` at its inside paths (a host file already there is
    /// kept; a link replaces what is there).
    pub fn lay_out(&self, dir: &Path) -> Result<(), String> {
        let place = |rel: &str| -> Result<PathBuf, String> {
            let inside = dir.join(rel.trim_start_matches('/'));
            if let Some(parent) = inside.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            Ok(inside)
        };
        for host in &self.files {
            let inside = place(&host.to_string_lossy())?;
            if !inside.exists() {
                copy_keeping_mtime(host, &inside)?;
            }
        }
        for (rel, host) in &self.moved {
            copy_keeping_mtime(host, &place(rel)?)?;
        }
        for (rel, target) in &self.links {
            let inside = place(rel)?;
            let _ = std::fs::remove_file(&inside);
            std::os::unix::fs::symlink(target, &inside)
                .map_err(|e| format!("{}: {e}", inside.display()))?;
        }
        for (rel, body) in &self.written {
            use std::os::unix::fs::PermissionsExt;
            let inside = place(rel)?;
            std::fs::write(&inside, body).map_err(|e| format!("{}: {e}", inside.display()))?;
            std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("{}: {e}", inside.display()))?;
        }
        Ok(())
    }
}

/// The program `name` on the host's PATH, resolved through its links.
fn resolved(name: &str) -> Result<PathBuf, String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map_err(|e| e.to_string())?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if found.is_empty() {
        return Err(format!("`{name}` is not on PATH"));
    }
    std::fs::canonicalize(&found).map_err(|e| format!("{found}: {e}"))
}

/// The first file named `name` under `dir` (links not followed), depth first.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_file() && entry.file_name() == name {
            return Some(path);
        }
        if kind.is_dir() {
            if let Some(found) = find(&path, name) {
                return Some(found);
            }
        }
    }
    None
}

/// Every file and symbolic link under `dir` (links kept as links, as path inside →
/// target), skipping directories named in `skip`.
fn tree(dir: &Path, skip: &[&str], files: &mut Vec<PathBuf>, links: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            if let Ok(target) = std::fs::read_link(&path) {
                links.push((
                    path.to_string_lossy().trim_start_matches('/').to_string(),
                    target.to_string_lossy().into_owned(),
                ));
            }
        } else if kind.is_dir() {
            if !skip.iter().any(|s| entry.file_name() == *s) {
                tree(&path, skip, files, links);
            }
        } else if kind.is_file() {
            files.push(path);
        }
    }
}

/// Claude Code's native binary (the npm package's executable) at its host path, linked from
/// /usr/local/bin/claude, with the libraries it loads (its Bash tool wants bash itself: "No
/// suitable shell found" with busybox's sh).
pub fn claude() -> Result<Payload, String> {
    let native = resolved("claude")?;
    let mut payload = Payload {
        files: with_libraries(&native),
        ..Payload::default()
    };
    payload.link("usr/local/bin/claude", &native);
    Ok(payload.with_tools())
}

/// The Codex CLI's native (static musl) binary from its npm package's platform dependency
/// (which the `codex` node launcher execs) at its host path, linked from
/// /usr/local/bin/codex, with its `rg`.
pub fn codex() -> Result<Payload, String> {
    let launcher = resolved("codex")?;
    let package = launcher
        .parent()
        .and_then(Path::parent)
        .ok_or("the codex launcher has no package directory")?;
    let native = find(&package.join("node_modules"), "codex")
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("bin")))
        .ok_or_else(|| format!("no native codex binary under {}", package.display()))?;
    let mut payload = Payload {
        files: with_libraries(&native),
        ..Payload::default()
    };
    if let Some(rg) = native
        .parent()
        .and_then(Path::parent)
        .map(|v| v.join("codex-path/rg"))
        .filter(|rg| rg.is_file())
    {
        payload.files.push(rg);
    }
    payload.link("usr/local/bin/codex", &native);
    Ok(payload.with_tools())
}

/// opencode's native binary (the npm package's `opencode.exe`) at its host path, linked
/// from /usr/local/bin/opencode, with the libraries it loads.
pub fn opencode() -> Result<Payload, String> {
    let native = resolved("opencode")?;
    let mut payload = Payload {
        files: with_libraries(&native),
        ..Payload::default()
    };
    payload.link("usr/local/bin/opencode", &native);
    Ok(payload.with_tools())
}

/// Gemini CLI: the host's node with its libraries and the npm package's directory at its
/// host path (links kept as links), linked from /usr/local/bin/gemini (its
/// `#!/usr/bin/env node` finds node on PATH; `env` is busybox's).
pub fn gemini() -> Result<Payload, String> {
    let script = resolved("gemini")?;
    let node = resolved("node")?;
    let package = script
        .ancestors()
        .find(|d| d.join("package.json").is_file())
        .ok_or_else(|| format!("no package.json above {}", script.display()))?
        .to_path_buf();
    let mut payload = Payload {
        files: with_libraries(&node),
        ..Payload::default()
    };
    payload.link("usr/local/bin/gemini", &script);
    payload.link("usr/bin/env", "/bin/busybox");
    if node != Path::new("/usr/local/bin/node") && node != Path::new("/usr/bin/node") {
        payload.link("usr/local/bin/node", &node);
    }
    tree(&package, &[], &mut payload.files, &mut payload.links);
    Ok(payload.with_tools())
}

/// aider: the venv `CHANT_AIDER` (or `aider` on PATH) belongs to, moved to [`AIDER_VENV`]
/// (a venv finds its `pyvenv.cfg` beside the `bin/` it is started from; links kept), the
/// Python installation it was made from at its host path (its standard library without
/// tests, IDLE, Tk and its own site-packages), the libraries all of their extension modules
/// load, and /usr/local/bin/aider running `python3 -m aider` from the venv.
pub fn aider() -> Result<Payload, String> {
    let program = std::env::var("CHANT_AIDER").unwrap_or_else(|_| "aider".to_string());
    let script = if program.contains('/') {
        PathBuf::from(&program)
    } else {
        resolved(&program)?
    };
    let venv = script
        .parent()
        .and_then(Path::parent)
        .filter(|v| v.join("pyvenv.cfg").is_file())
        .ok_or_else(|| format!("{} is not in a venv", script.display()))?
        .to_path_buf();
    let cfg_path = venv.join("pyvenv.cfg");
    let cfg =
        std::fs::read_to_string(&cfg_path).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
    let home = cfg
        .lines()
        .find_map(|l| l.strip_prefix("home = "))
        .map(PathBuf::from)
        .ok_or_else(|| format!("{} names no home", cfg_path.display()))?;
    let prefix = home.parent().ok_or("the venv's home has no parent")?;
    let python = std::fs::canonicalize(home.join("python3"))
        .map_err(|e| format!("{}/python3: {e}", home.display()))?;
    let mut payload = Payload {
        files: with_libraries(&python),
        ..Payload::default()
    };
    for name in ["python3", "python"] {
        let link = home.join(name);
        if let Ok(target) = std::fs::read_link(&link) {
            payload.link(link.to_string_lossy().trim_start_matches('/'), target);
        }
    }
    // `version = 3.11.7` → lib/python3.11 (not lib/python3, Debian's dist-packages).
    let version = cfg
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .and_then(|v| {
            let mut parts = v.trim().split('.');
            Some(format!("{}.{}", parts.next()?, parts.next()?))
        })
        .ok_or_else(|| format!("{} names no version", cfg_path.display()))?;
    let stdlib = prefix.join("lib").join(format!("python{version}"));
    if !stdlib.join("os.py").is_file() {
        return Err(format!("no standard library at {}", stdlib.display()));
    }
    let skip = [
        "site-packages",
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
    ];
    tree(&stdlib, &skip, &mut payload.files, &mut payload.links);
    // The venv, moved: its files and links under AIDER_VENV.
    let mut venv_files = Vec::new();
    let mut venv_links = Vec::new();
    tree(&venv, &[], &mut venv_files, &mut venv_links);
    let inside = AIDER_VENV.trim_start_matches('/');
    for file in &venv_files {
        if let Ok(rel) = file.strip_prefix(&venv) {
            payload
                .moved
                .push((format!("{inside}/{}", rel.to_string_lossy()), file.clone()));
        }
    }
    let venv_prefix = venv.to_string_lossy().trim_start_matches('/').to_string();
    for (path, target) in venv_links {
        if let Some(rel) = path.strip_prefix(&venv_prefix) {
            payload.links.push((format!("{inside}{rel}"), target));
        }
    }
    // Every library the extension modules load (the Python's and the venv's).
    let modules: Vec<PathBuf> = payload
        .files
        .iter()
        .chain(venv_files.iter())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".so"))
        })
        .cloned()
        .collect();
    for module in &modules {
        payload.files.extend(
            with_libraries(module)
                .into_iter()
                .skip(1)
                .filter(|lib| !lib.starts_with(&venv)),
        );
    }
    let mut payload = payload.with_tools();
    payload.files.sort();
    payload.files.dedup();
    payload.written.push((
        "usr/local/bin/aider".to_string(),
        format!("#!/bin/sh\nexec {AIDER_VENV}/bin/python3 -m aider \"$@\"\n").into_bytes(),
    ));
    Ok(payload)
}

/// Copies `host` to `to` with its modification time, so that caches keyed by it (Python's
/// bytecode names its source's mtime) stay valid in the guest instead of being redone at
/// every start under emulation.
fn copy_keeping_mtime(host: &Path, to: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", host.display());
    std::fs::copy(host, to).map_err(fail)?;
    let modified = std::fs::metadata(host)
        .and_then(|m| m.modified())
        .map_err(fail)?;
    std::fs::File::options()
        .write(true)
        .open(to)
        .and_then(|f| f.set_modified(modified))
        .map_err(|e| format!("{}: {e}", to.display()))
}
