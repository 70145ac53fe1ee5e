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

/// `agent:` lines for the vm level with the guest image `image`, TCG, the network on
/// through the allowlist (the adapter allows the fake API's host) and `extra`.
pub fn at_vm(image: &Path, extra: &str) -> String {
    format!(
        "  sandbox: vm\n  timeout: 8m\n  vm:\n    image: {}\n    memory: 3G\n    accel: tcg\n    network: allowlist\n  network:\n    enabled: true\n{extra}",
        image.display()
    )
}
