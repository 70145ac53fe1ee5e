//! Moving the workspace in and out of the guest as tar archives on raw virtual disks. What
//! comes back was written by the guest: it is read here as untrusted data — no path may
//! leave the workspace, nothing is written through a symlink, sizes are capped, and entries
//! that are not files, directories or symlinks become FIFOs for the policy check to refuse.

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

/// Reads the guest's result archive (untrusted) and rebuilds the workspace from it; returns
/// the agent's exit code when the guest recorded one.
pub(super) fn unpack_result(
    disk: &Path,
    workspace: &Path,
    max_file: u64,
) -> Result<Option<i32>, SandboxError> {
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
    let mut code = None;
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
            code = text.trim().parse::<i32>().ok();
            continue;
        }
        let Ok(inner) = rel.strip_prefix("workspace") else {
            continue;
        };
        if inner.as_os_str().is_empty() || links.iter().any(|l| inner.starts_with(l)) {
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
    Ok(code)
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
