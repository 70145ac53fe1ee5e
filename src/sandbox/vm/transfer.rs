//! Moving the workspace in and out of the guest as tar archives on raw virtual disks. What
//! comes back was written by the guest: it is read here as untrusted data — no path may
//! leave the workspace, nothing is written through a symlink, sizes are capped, and entries
//! that are not files, directories or symlinks become FIFOs for the policy check to refuse.
//! Nothing from the guest is ever written into the clone's `.git` (the guest never saw it:
//! a `workspace/.git/…` entry in the archive is the agent's attempt at the host's git
//! metadata, and is dropped).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::SandboxError;

/// The workspace (without its `.git`) as a tar archive; the clone is still ours here.
pub(super) fn pack_workspace(workspace: &Path, archive: &Path) -> Result<(), SandboxError> {
    let mut builder = tar::Builder::new(std::fs::File::create(archive)?);
    builder.follow_symlinks(false);
    for entry in std::fs::read_dir(workspace)? {
        let entry = entry?;
        if entry.file_name() == ".git" {
            continue;
        }
        let name = PathBuf::from(entry.file_name());
        if entry.file_type()?.is_dir() {
            builder.append_dir_all(&name, entry.path())?;
        } else {
            builder.append_path_with_name(entry.path(), &name)?;
        }
    }
    builder.into_inner()?.flush()?;
    Ok(())
}

/// What the guest's init reported besides the workspace.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct GuestReport {
    /// The agent's exit code, when the guest recorded one.
    pub code: Option<i32>,
    /// Why the guest could not start the agent at all (chant's init says so).
    pub error: Option<String>,
}

/// Reads the guest's result archive (untrusted) and rebuilds the workspace from it.
pub(super) fn unpack_result(
    disk: &Path,
    workspace: &Path,
    max_file: u64,
) -> Result<GuestReport, SandboxError> {
    // Start from an empty work tree (the clone's .git stays).
    for entry in std::fs::read_dir(workspace)? {
        let entry = entry?;
        if entry.file_name() != ".git" {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    }
    let mut archive = tar::Archive::new(std::fs::File::open(disk)?);
    let mut report = GuestReport::default();
    let mut links: Vec<PathBuf> = Vec::new();
    let mut count = 0usize;
    for entry in archive.entries()? {
        let mut entry = entry?;
        count += 1;
        if count > 2_000_000 {
            break;
        }
        let raw = entry.path()?.into_owned();
        let Some(rel) = clean_relative(&raw) else {
            continue;
        };
        if rel == Path::new("chant-result/exit_code") {
            let mut text = String::new();
            entry.by_ref().take(32).read_to_string(&mut text)?;
            report.code = text.trim().parse::<i32>().ok();
            continue;
        }
        if rel == Path::new("chant-result/error") {
            let mut bytes = Vec::new();
            entry.by_ref().take(4096).read_to_end(&mut bytes)?;
            report.error = Some(String::from_utf8_lossy(&bytes).trim().to_string());
            continue;
        }
        let Ok(inner) = rel.strip_prefix("workspace") else {
            continue;
        };
        if inner.as_os_str().is_empty()
            || inner.starts_with(".git")
            || links.iter().any(|l| inner.starts_with(l))
        {
            continue;
        }
        let dest = workspace.join(inner);
        if let Some(parent) = dest.parent() {
            ensure_real_dirs(workspace, parent)?;
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            ensure_real_dirs(workspace, &dest)?;
        } else if kind.is_symlink() {
            if let Some(target) = entry.link_name()? {
                std::os::unix::fs::symlink(target.as_ref(), &dest)?;
                links.push(inner.to_path_buf());
            }
        } else if kind.is_file() {
            let mode = entry.header().mode().unwrap_or(0o644);
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags_nofollow()
                .open(&dest)?;
            // Over the limit: keep one byte more than allowed so the policy check refuses it.
            std::io::copy(&mut entry.by_ref().take(max_file + 1), &mut out)?;
            std::fs::set_permissions(
                &dest,
                std::fs::Permissions::from_mode(if mode & 0o100 != 0 { 0o755 } else { 0o644 }),
            )?;
        } else {
            // Devices, FIFOs, hard links: left as a FIFO so the policy check reports them.
            let c = std::ffi::CString::new(dest.as_os_str().as_encoded_bytes())
                .map_err(std::io::Error::other)?;
            // SAFETY: c is a valid NUL-terminated path.
            unsafe {
                libc::mkfifo(c.as_ptr(), 0o600);
            }
        }
    }
    Ok(report)
}

/// `path` without `.`/`..`/root components; None when it tries to leave.
pub(super) fn clean_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Creates `dir` below `root`, refusing to pass through anything that is not a directory.
fn ensure_real_dirs(root: &Path, dir: &Path) -> std::io::Result<()> {
    let rel = dir.strip_prefix(root).map_err(std::io::Error::other)?;
    let mut at = root.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is not a directory",
                    at.display()
                )))
            }
            Err(_) => std::fs::create_dir(&at)?,
        }
    }
    Ok(())
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOFOLLOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guest's result archive: `files` (path, bytes) and `links` (path, target).
    fn archive(dir: &Path, files: &[(&str, &[u8])], links: &[(&str, &str)]) -> PathBuf {
        let path = dir.join("result.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&path).expect("tar"));
        for (name, bytes) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o755);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *bytes).expect("file");
        }
        for (name, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).expect("link");
        }
        b.into_inner().expect("finish");
        path
    }

    /// Every file below `dir` with its content, links as `-> target`.
    fn snapshot(dir: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("dir").flatten() {
                let p = e.path();
                let meta = std::fs::symlink_metadata(&p).expect("meta");
                let name = p.strip_prefix(dir).expect("below").display().to_string();
                if meta.is_dir() {
                    stack.push(p);
                    out.push((name, "/".into()));
                } else if meta.file_type().is_symlink() {
                    let t = std::fs::read_link(&p).expect("link");
                    out.push((name, format!("-> {}", t.display())));
                } else {
                    out.push((name, std::fs::read_to_string(&p).unwrap_or_default()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn nothing_the_guest_sends_reaches_the_clones_git_metadata() {
        let tmp = tempfile::tempdir().expect("tmp");
        let workspace = tmp.path().join("clone");
        std::fs::create_dir_all(workspace.join(".git/objects")).expect("git");
        std::fs::write(workspace.join(".git/config"), "[core]\n\tbare = false\n").expect("cfg");
        std::fs::write(workspace.join(".git/HEAD"), "ref: refs/heads/x\n").expect("head");
        let before = snapshot(&workspace.join(".git"));
        let hook: &[u8] = b"#!/bin/sh\ntouch /tmp/pwned\n";
        let disk = archive(
            tmp.path(),
            &[
                (
                    "workspace/.git/config",
                    b"[core]\n\tfsmonitor = /tmp/evil\n",
                ),
                ("workspace/.git/hooks/post-checkout", hook),
                ("workspace/.git/info/attributes", b"* filter=evil\n"),
                ("workspace/./.git/commondir", b"/tmp/evil\n"),
                ("./workspace/.git/objects/info/alternates", b"/tmp/evil\n"),
                ("workspace/.github/workflow.yml", b"on: push\n"),
                ("workspace/ok.txt", b"fine\n"),
                ("chant-result/exit_code", b"0\n"),
            ],
            &[
                ("workspace/.git", "/tmp"),
                ("workspace/.git/HEAD", "/etc/passwd"),
            ],
        );
        let report = unpack_result(&disk, &workspace, 1 << 20).expect("unpack");
        assert_eq!(report.code, Some(0));
        assert_eq!(
            snapshot(&workspace.join(".git")),
            before,
            "the clone's .git changed"
        );
        assert_eq!(
            std::fs::read_to_string(workspace.join("ok.txt")).expect("ok"),
            "fine\n"
        );
        assert!(
            workspace.join(".github/workflow.yml").is_file(),
            "lookalikes are data"
        );
    }

    #[test]
    fn the_guests_reason_for_not_starting_the_agent_is_read_and_bounded() {
        let tmp = tempfile::tempdir().expect("tmp");
        let workspace = tmp.path().join("clone");
        std::fs::create_dir_all(&workspace).expect("ws");
        let long = "x".repeat(10_000);
        let disk = archive(
            tmp.path(),
            &[
                ("chant-result/exit_code", b"125\n"),
                ("chant-result/error", long.as_bytes()),
            ],
            &[],
        );
        let report = unpack_result(&disk, &workspace, 1 << 20).expect("unpack");
        assert_eq!(report.code, Some(125));
        assert_eq!(report.error.map(|e| e.len()), Some(4096));
    }
}
