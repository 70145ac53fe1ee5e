//! Guest images (directories) holding the real agent CLIs for the vm level: each CLI's
//! program with the libraries it loads at their host paths, git and bash for the commands
//! it runs, linked from /usr/local/bin; chant adds busybox and its own init. Each is written
//! into a directory of the test's (the vm level copies it into the guest's initramfs).
//! A CLI that is not installed is an error naming it (the test's own skip rule, from
//! `netns_for`, runs first).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::image::with_libraries;

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
    ["/usr/bin/git", "/bin/bash"]
        .iter()
        .map(Path::new)
        .filter(|t| t.exists())
        .flat_map(with_libraries)
        .collect()
}

/// Copies `files` (host paths) into `dir` at the same paths and adds `links` (path inside
/// without the leading `/` → target).
fn lay_out(dir: &Path, files: &[PathBuf], links: &[(String, String)]) -> Result<(), String> {
    for host in files {
        let rel = host.strip_prefix("/").map_err(|e| e.to_string())?;
        let inside = dir.join(rel);
        if inside.exists() {
            continue;
        }
        if let Some(parent) = inside.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::copy(host, &inside).map_err(|e| format!("{}: {e}", host.display()))?;
    }
    for (path, target) in links {
        let inside = dir.join(path);
        if let Some(parent) = inside.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let _ = std::fs::remove_file(&inside);
        std::os::unix::fs::symlink(target, &inside).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The Codex CLI's native (static musl) binary from its npm package, with its `rg`.
pub fn codex(dir: &Path) -> Result<(), String> {
    let launcher = resolved("codex")?;
    let package = launcher
        .parent()
        .and_then(Path::parent)
        .ok_or("the codex launcher has no package directory")?;
    let vendor = std::fs::read_dir(package.join("node_modules/@openai"))
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path().join("vendor/x86_64-unknown-linux-musl"))
        .find(|v| v.join("bin/codex").is_file())
        .ok_or_else(|| format!("no native codex binary under {}", package.display()))?;
    let native = vendor.join("bin/codex");
    let mut files = with_libraries(&native);
    let rg = vendor.join("codex-path/rg");
    if rg.is_file() {
        files.push(rg);
    }
    files.extend(tools());
    lay_out(
        dir,
        &files,
        &[(
            "usr/local/bin/codex".into(),
            native.to_string_lossy().into_owned(),
        )],
    )
}

/// opencode's native binary with the libraries it loads.
pub fn opencode(dir: &Path) -> Result<(), String> {
    let native = resolved("opencode")?;
    let mut files = with_libraries(&native);
    files.extend(tools());
    lay_out(
        dir,
        &files,
        &[(
            "usr/local/bin/opencode".into(),
            native.to_string_lossy().into_owned(),
        )],
    )
}

/// Whether the vm level can run here (qemu and a `/boot/vmlinuz-*`); says so loudly when
/// not, and fails instead under `CHANT_REQUIRE_VM`.
pub fn vm_ready(test: &str) -> bool {
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let kernel = std::fs::read_dir("/boot").is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
    });
    if qemu && kernel {
        return true;
    }
    let why = format!("qemu ({qemu}) or a /boot/vmlinuz-* kernel ({kernel}) is missing");
    assert!(
        std::env::var_os("CHANT_REQUIRE_VM").is_none(),
        "{test}: {why} (CHANT_REQUIRE_VM is set)"
    );
    eprintln!("\n!!! SKIPPED {test}: {why}; install qemu-system-x86 and a kernel (CHANT_REQUIRE_VM=1 makes this fail)\n");
    false
}

/// [`vm_ready`] for an agent CLI whose run in a TCG guest takes minutes (aider: a Python
/// runtime emulated instruction by instruction, 143 s on an idle 2-core machine, more than
/// CI's time budget allows): it runs only with `CHANT_SLOW_VM_TESTS=1`, and says so loudly
/// otherwise.
pub fn slow_vm_ready(test: &str) -> bool {
    if std::env::var_os("CHANT_SLOW_VM_TESTS").is_none() {
        eprintln!("\n!!! SKIPPED {test}: a run of this CLI in a TCG guest takes minutes; set CHANT_SLOW_VM_TESTS=1 to run it\n");
        return false;
    }
    vm_ready(test)
}

/// `agent:` lines for the vm level with the guest image `image`, TCG, the network on
/// through the allowlist (the adapter allows the fake API's host) and `extra`.
pub fn at_vm(image: &Path, extra: &str) -> String {
    format!(
        "  sandbox: vm\n  timeout: 8m\n  vm:\n    image: {}\n    memory: 3G\n    accel: tcg\n    network: allowlist\n  network:\n    enabled: true\n{extra}",
        image.display()
    )
}

/// Gemini CLI: the host's node with its libraries and the npm package's directory at its
/// host path (links kept as links), linked from /usr/local/bin/gemini (its
/// `#!/usr/bin/env node` finds node on PATH; `env` is chant's busybox).
pub fn gemini(dir: &Path) -> Result<(), String> {
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
    lay_out(dir, &files, &links)
}

/// Every file and symbolic link under `dir` (links as path inside → target), skipping
/// directories named in `skip`.
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

/// Where aider's venv goes in the guest: its host path is under /tmp, which the guest
/// covers with a tmpfs.
pub const AIDER_VENV: &str = "/opt/chant-aider";

/// aider: the venv `CHANT_AIDER` (or `aider` on PATH) belongs to, copied to [`AIDER_VENV`]
/// (links kept), the Python it was made from at its host path (its standard library
/// without tests, IDLE, Tk and its own site-packages), the libraries every extension module
/// loads, and /usr/local/bin/aider running `python3 -m aider` from the venv.
pub fn aider(dir: &Path) -> Result<(), String> {
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
    let version = cfg
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .and_then(|v| {
            let mut parts = v.trim().split('.');
            Some(format!("{}.{}", parts.next()?, parts.next()?))
        })
        .ok_or("pyvenv.cfg names no version")?;
    let stdlib = prefix.join("lib").join(format!("python{version}"));
    let skip = [
        "site-packages",
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
    ];
    tree(&stdlib, &skip, &mut files, &mut links);
    let mut venv_files = Vec::new();
    let mut venv_links = Vec::new();
    tree(&venv, &[], &mut venv_files, &mut venv_links);
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
    lay_out(dir, &files, &links)?;
    // The venv, moved (a venv finds its pyvenv.cfg beside the bin/ it is started from).
    let inside = dir.join(AIDER_VENV.trim_start_matches('/'));
    for file in &venv_files {
        let rel = file.strip_prefix(&venv).map_err(|e| e.to_string())?;
        let to = inside.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::copy(file, &to).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    let venv_prefix = venv.to_string_lossy().trim_start_matches('/').to_string();
    for (path, target) in venv_links {
        if let Some(rel) = path.strip_prefix(&venv_prefix) {
            let to = inside.join(rel.trim_start_matches('/'));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::os::unix::fs::symlink(&target, &to).map_err(|e| e.to_string())?;
        }
    }
    let wrapper = dir.join("usr/local/bin/aider");
    std::fs::create_dir_all(dir.join("usr/local/bin")).map_err(|e| e.to_string())?;
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {AIDER_VENV}/bin/python3 -m aider \"$@\"\n"),
    )
    .map_err(|e| e.to_string())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())
}
