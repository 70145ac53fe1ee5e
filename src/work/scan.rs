//! Reading the agent's workspace as untrusted data.
//!
//! The workspace is hostile once the agent has run: this module never follows a symlink,
//! never opens the clone as a repository, never runs anything from it, opens files with
//! `O_NOFOLLOW`, and bounds what it reads (entry count, depth, file size). Anything odd —
//! a device, a FIFO, a socket, a nested `.git`, a name that is not clean UTF-8 — is
//! reported as a finding, not interpreted.

use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Enough of `lstat` to tell that a file was not touched: any write, chmod or rename
/// changes `ctime`, which an unprivileged process cannot set back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatKey {
    dev: u64,
    ino: u64,
    mode: u32,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// The stat key of `path` (not following symlinks).
pub fn stat_key(path: &Path) -> Option<StatKey> {
    std::fs::symlink_metadata(path).ok().map(|m| key_of(&m))
}

fn key_of(m: &std::fs::Metadata) -> StatKey {
    StatKey {
        dev: m.dev(),
        ino: m.ino(),
        mode: m.mode(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    }
}

/// One thing found in the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    File {
        path: String,
        executable: bool,
        size: u64,
        stat: StatKey,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Found {
    pub fn path(&self) -> &str {
        match self {
            Found::File { path, .. } | Found::Symlink { path, .. } => path,
        }
    }
}

/// Something in the workspace that can never land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oddity {
    pub rule: &'static str,
    pub path: String,
    pub detail: String,
}

/// Bounds on what a scan reads.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 2_000_000,
            max_depth: 64,
        }
    }
}

/// Everything found under `root`, except `root/.git` (the clone's own git directory, which
/// is never read).
pub fn scan(root: &Path, limits: Limits) -> std::io::Result<(Vec<Found>, Vec<Oddity>)> {
    let mut found = Vec::new();
    let mut odd = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| clean_name(n)) else {
                odd.push(Oddity {
                    rule: "file_name",
                    path: format!("{rel}{}", name.to_string_lossy().escape_debug()),
                    detail: "the name is not clean UTF-8 (control characters or invalid bytes)"
                        .into(),
                });
                continue;
            };
            let path = format!("{rel}{name}");
            if rel.is_empty() && name == ".git" {
                continue;
            }
            if name.eq_ignore_ascii_case(".git") {
                odd.push(Oddity {
                    rule: "nested_repository",
                    path,
                    detail: "a nested .git (repository or gitlink) is never accepted".into(),
                });
                continue;
            }
            if found.len() + odd.len() >= limits.max_entries {
                odd.push(Oddity {
                    rule: "too_many_files",
                    path,
                    detail: format!(
                        "the workspace holds more than {} entries",
                        limits.max_entries
                    ),
                });
                return Ok((found, odd));
            }
            let meta = std::fs::symlink_metadata(entry.path())?;
            let kind = meta.file_type();
            if kind.is_dir() {
                if depth + 1 >= limits.max_depth {
                    odd.push(Oddity {
                        rule: "too_deep",
                        path,
                        detail: format!("directories nest deeper than {}", limits.max_depth),
                    });
                } else {
                    stack.push((entry.path(), format!("{path}/"), depth + 1));
                }
            } else if kind.is_file() {
                found.push(Found::File {
                    path,
                    executable: meta.permissions().mode() & 0o100 != 0,
                    size: meta.len(),
                    stat: key_of(&meta),
                });
            } else if kind.is_symlink() {
                let target = std::fs::read_link(entry.path())?;
                match target.to_str() {
                    Some(t) => found.push(Found::Symlink {
                        path,
                        target: t.to_string(),
                    }),
                    None => odd.push(Oddity {
                        rule: "symlink",
                        path,
                        detail: "the link target is not UTF-8".into(),
                    }),
                }
            } else {
                let what = if kind.is_fifo() {
                    "a FIFO"
                } else if kind.is_socket() {
                    "a socket"
                } else if kind.is_block_device() || kind.is_char_device() {
                    "a device"
                } else {
                    "a special file"
                };
                odd.push(Oddity {
                    rule: "special_file",
                    path,
                    detail: format!("{what} is never accepted"),
                });
            }
        }
    }
    found.sort_by(|a, b| a.path().cmp(b.path()));
    Ok((found, odd))
}

fn clean_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_control) && !name.contains('\\')
}

/// Opens a regular file without following a symlink swapped in after the scan (and
/// without blocking on a FIFO swapped in); returns it with its size.
pub fn open_file(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((file, meta.len()))
}
