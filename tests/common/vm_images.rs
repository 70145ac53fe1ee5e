//! Guest images (directories) holding the real agent CLIs for the vm level: each CLI's
//! payload (tests/common/payload.rs: its program with the libraries it loads at their host
//! paths, git and bash for the commands it runs, linked from /usr/local/bin); chant adds
//! busybox and its own init. Each is written into a directory of the test's (the vm level
//! copies it into the guest's initramfs).
//! A CLI that is not installed is an error naming it (the test's own skip rule, from
//! `netns_for`, runs first).

use std::path::Path;
use std::process::Command;

use super::payload;

/// The Codex CLI ([`payload::codex`]) laid out in `dir`.
pub fn codex(dir: &Path) -> Result<(), String> {
    payload::codex()?.lay_out(dir)
}

/// opencode ([`payload::opencode`]) laid out in `dir`.
pub fn opencode(dir: &Path) -> Result<(), String> {
    payload::opencode()?.lay_out(dir)
}

/// Gemini CLI ([`payload::gemini`]) laid out in `dir`.
pub fn gemini(dir: &Path) -> Result<(), String> {
    payload::gemini()?.lay_out(dir)
}

/// aider ([`payload::aider`]) laid out in `dir`, its venv at [`payload::AIDER_VENV`].
pub fn aider(dir: &Path) -> Result<(), String> {
    payload::aider()?.lay_out(dir)
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
