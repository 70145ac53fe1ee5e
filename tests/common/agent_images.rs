//! Images holding the real agent CLIs for the docker level, built without a registry by
//! `docker import` of host files at their own paths (tests/common/image.rs): each CLI's
//! program with the libraries it loads, git and bash for the commands it runs, busybox for
//! the rest. Each is built once per test binary (and kept by the engine while nothing
//! changes); None after a loud message when it cannot be, a failure under
//! `CHANT_REQUIRE_DOCKER=1`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::image::{build, build_with, once, with_libraries, Layout};

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

/// git and bash (the agents' shell tools want bash) with their libraries.
fn tools() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for tool in ["/usr/bin/git", "/bin/bash"] {
        let tool = Path::new(tool);
        if tool.exists() {
            files.extend(with_libraries(tool));
        }
    }
    files
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

/// Every file and symbolic link under `dir` (links kept as links, as path → target),
/// skipping directories named in `skip`.
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

/// Builds the image `name` of `files` with `links` (path inside without the leading `/` →
/// target).
fn image_of(name: &str, files: Vec<PathBuf>, links: &[(String, String)]) -> Result<String, String> {
    let links: Vec<(&str, &str)> = links
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    build(&Layout {
        name,
        files,
        dirs: &[],
        links: &links,
    })
}

/// The Codex CLI's native binary (from its npm package's platform dependency, which the
/// `codex` node launcher execs) at its host path, linked from /usr/local/bin/codex, with
/// its `rg`.
pub fn codex() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    once(&IMAGE, || {
        let launcher = resolved("codex")?;
        let package = launcher
            .parent()
            .and_then(Path::parent)
            .ok_or("the codex launcher has no package directory")?;
        let native = find(&package.join("node_modules"), "codex")
            .filter(|p| p.parent().is_some_and(|d| d.ends_with("bin")))
            .ok_or_else(|| format!("no native codex binary under {}", package.display()))?;
        let mut files = with_libraries(&native);
        if let Some(rg) = native
            .parent()
            .and_then(Path::parent)
            .map(|v| v.join("codex-path/rg"))
            .filter(|rg| rg.exists())
        {
            files.push(rg.clone());
        }
        files.extend(tools());
        let links = vec![(
            "usr/local/bin/codex".to_string(),
            native.to_string_lossy().into_owned(),
        )];
        image_of("chant-test-codex", files, &links)
    })
}

/// opencode's native binary (the npm package's `opencode.exe`) at its host path, linked
/// from /usr/local/bin/opencode, with the libraries it loads.
pub fn opencode() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    once(&IMAGE, || {
        let native = resolved("opencode")?;
        let mut files = with_libraries(&native);
        files.extend(tools());
        let links = vec![(
            "usr/local/bin/opencode".to_string(),
            native.to_string_lossy().into_owned(),
        )];
        image_of("chant-test-opencode", files, &links)
    })
}

/// Gemini CLI: the host's node with its libraries and the npm package's directory at its
/// host path, linked from /usr/local/bin/gemini (its `#!/usr/bin/env node` finds node on
/// PATH; `env` is busybox's).
pub fn gemini() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    once(&IMAGE, || {
        let script = resolved("gemini")?;
        let node = resolved("node")?;
        let package = script
            .ancestors()
            .find(|d| d.join("package.json").is_file())
            .ok_or_else(|| format!("no package.json above {}", script.display()))?
            .to_path_buf();
        let mut files = with_libraries(&node);
        let mut links = vec![
            (
                "usr/local/bin/gemini".to_string(),
                script.to_string_lossy().into_owned(),
            ),
            ("usr/bin/env".to_string(), "/bin/busybox".to_string()),
        ];
        if node != Path::new("/usr/local/bin/node") && node != Path::new("/usr/bin/node") {
            links.push((
                "usr/local/bin/node".to_string(),
                node.to_string_lossy().into_owned(),
            ));
        }
        tree(&package, &[], &mut files, &mut links);
        files.extend(tools());
        image_of("chant-test-gemini", files, &links)
    })
}

/// Where aider's venv goes in the image: its host path is under /tmp, which the docker
/// level covers with a tmpfs.
pub const AIDER_VENV: &str = "/opt/chant-aider";

/// aider: the venv `CHANT_AIDER` (or `aider` on PATH) belongs to, moved to [`AIDER_VENV`]
/// (a venv finds its `pyvenv.cfg` beside the `bin/` it is started from), with the Python
/// installation it was made from at its host path (without its tests, IDLE, Tk and its own
/// site-packages), the libraries all of their extension modules load, and
/// /usr/local/bin/aider running `python3 -m aider` from the venv.
pub fn aider() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    once(&IMAGE, || {
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
        let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).map_err(|e| e.to_string())?;
        let home = cfg
            .lines()
            .find_map(|l| l.strip_prefix("home = "))
            .map(PathBuf::from)
            .ok_or("pyvenv.cfg names no home")?;
        let prefix = home.parent().ok_or("the venv's home has no parent")?;
        let python = std::fs::canonicalize(home.join("python3")).map_err(|e| e.to_string())?;
        let mut files = with_libraries(&python);
        let mut links = Vec::new();
        for name in ["python3", "python"] {
            let link = home.join(name);
            if let Ok(target) = std::fs::read_link(&link) {
                links.push((
                    link.to_string_lossy().trim_start_matches('/').to_string(),
                    target.to_string_lossy().into_owned(),
                ));
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
            .ok_or("pyvenv.cfg names no version")?;
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
        tree(&stdlib, &skip, &mut files, &mut links);
        // The venv, moved: its files and links under AIDER_VENV.
        let mut venv_files = Vec::new();
        let mut venv_links = Vec::new();
        tree(&venv, &[], &mut venv_files, &mut venv_links);
        let inside = |p: &Path| -> Option<String> {
            let rel = p.strip_prefix(&venv).ok()?;
            Some(format!(
                "{}/{}",
                AIDER_VENV.trim_start_matches('/'),
                rel.to_string_lossy()
            ))
        };
        let mut placed = Vec::new();
        for file in &venv_files {
            if let Some(path) = inside(file) {
                placed.push((path, std::fs::read(file).map_err(|e| e.to_string())?));
            }
        }
        let venv_prefix = venv.to_string_lossy().trim_start_matches('/').to_string();
        for (path, target) in venv_links {
            if let Some(rel) = path.strip_prefix(&venv_prefix) {
                links.push((
                    format!("{}{rel}", AIDER_VENV.trim_start_matches('/')),
                    target,
                ));
            }
        }
        // Every library the extension modules load (the Python's and the venv's).
        let modules: Vec<PathBuf> = files
            .iter()
            .chain(venv_files.iter())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(".so"))
            })
            .cloned()
            .collect();
        for module in &modules {
            files.extend(
                with_libraries(module)
                    .into_iter()
                    .skip(1)
                    .filter(|lib| !lib.starts_with(&venv)),
            );
        }
        files.extend(tools());
        files.sort();
        files.dedup();
        placed.push((
            "usr/local/bin/aider".to_string(),
            format!("#!/bin/sh\nexec {AIDER_VENV}/bin/python3 -m aider \"$@\"\n").into_bytes(),
        ));
        let links: Vec<(&str, &str)> = links
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        build_with(
            &Layout {
                name: "chant-test-aider",
                files,
                dirs: &[],
                links: &links,
            },
            placed,
        )
    })
}
