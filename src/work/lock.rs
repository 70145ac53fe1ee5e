//! The spec lock: one live `work` per spec, at `.chant/.locks/<id>.lock` (gitignored),
//! holding JSON `{pid, host, user, started}`.
//!
//! Taken by exclusive create, so two processes can never both hold it. A lock whose process
//! is gone (same host, pid not alive) is stale and is recovered; a live one is a refusal that
//! names who holds it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::SpecId;

/// What a lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub pid: u32,
    pub host: String,
    pub user: String,
    pub started: String,
}

impl LockInfo {
    /// Stands for a lock file that exists but cannot be read (being written, or damaged).
    fn unreadable() -> LockInfo {
        LockInfo {
            pid: 0,
            host: "?".into(),
            user: "?".into(),
            started: "?".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("spec {id} is already being worked on by pid {} on {} (user {}, since {}); wait for it or run `git chant cancel {id} --reason …`", .holder.pid, .holder.host, .holder.user, .holder.started)]
    Held { id: SpecId, holder: LockInfo },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct SpecLock {
    path: PathBuf,
    pub info: LockInfo,
    /// Set when a stale lock was taken over (for the caller to report).
    pub recovered: Option<LockInfo>,
    released: bool,
}

/// The lock file of `id` under `locks_dir`.
pub fn lock_path(locks_dir: &Path, id: &SpecId) -> PathBuf {
    locks_dir.join(format!("{id}.lock"))
}

/// Reads a lock file, if there is one.
pub fn read(path: &Path) -> Option<LockInfo> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// True when `info`'s process is known to be gone.
pub fn is_stale(info: &LockInfo) -> bool {
    if info.host != crate::identity::hostname() {
        return false; // cannot tell for another host: treat as live
    }
    !pid_alive(info.pid)
}

/// True when a process with `pid` exists.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl SpecLock {
    /// Takes the lock of `id`, recovering a stale one.
    pub fn acquire(locks_dir: &Path, id: &SpecId, info: LockInfo) -> Result<SpecLock, LockError> {
        let io = |source| LockError::Io {
            path: locks_dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(locks_dir).map_err(io)?;
        let path = lock_path(locks_dir, id);
        let text = serde_json::to_string(&info).unwrap_or_default();
        let mut recovered = None;
        for _ in 0..3 {
            match crate::atomic::write_new(&path, text.as_bytes()) {
                Ok(()) => {
                    return Ok(SpecLock {
                        path,
                        info,
                        recovered,
                        released: false,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let Some(holder) = read(&path) else {
                        // Unreadable (being written, or garbage): garbage from a crash is
                        // replaced only if it is older than a minute.
                        if is_old_garbage(&path) {
                            let _ = std::fs::remove_file(&path);
                            continue;
                        }
                        return Err(LockError::Held {
                            id: id.clone(),
                            holder: LockInfo::unreadable(),
                        });
                    };
                    if !is_stale(&holder) {
                        return Err(LockError::Held {
                            id: id.clone(),
                            holder,
                        });
                    }
                    // Rename away before deleting so that two recoverers cannot both win:
                    // only one rename of the same file succeeds.
                    let grave = path.with_extension(format!("stale.{}", std::process::id()));
                    if std::fs::rename(&path, &grave).is_ok() {
                        let _ = std::fs::remove_file(&grave);
                        recovered = Some(holder);
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(LockError::Held {
            id: id.clone(),
            holder: read(&path).unwrap_or(LockInfo::unreadable()),
        })
    }

    /// Releases the lock (also done on drop).
    pub fn release(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        if !self.released {
            // Only remove the file if it is still ours.
            if read(&self.path).is_some_and(|i| i == self.info) {
                let _ = std::fs::remove_file(&self.path);
            }
            self.released = true;
        }
    }
}

impl Drop for SpecLock {
    fn drop(&mut self) {
        self.remove();
    }
}

fn is_old_garbage(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: u32) -> LockInfo {
        LockInfo {
            pid,
            host: crate::identity::hostname(),
            user: "me".into(),
            started: "2026-01-22T15:30:00Z".into(),
        }
    }

    #[test]
    fn exclusive_then_released() {
        let dir = tempfile::tempdir().expect("tmp");
        let id = SpecId::parse("2026-01-22-001-x7m").expect("id");
        let lock = SpecLock::acquire(dir.path(), &id, info(std::process::id())).expect("first");
        let again = SpecLock::acquire(dir.path(), &id, info(std::process::id()));
        assert!(matches!(again, Err(LockError::Held { .. })));
        lock.release();
        assert!(SpecLock::acquire(dir.path(), &id, info(std::process::id())).is_ok());
    }

    #[test]
    fn stale_locks_are_recovered() {
        let dir = tempfile::tempdir().expect("tmp");
        let id = SpecId::parse("2026-01-22-001-x7m").expect("id");
        // A pid that cannot be alive: beyond the kernel's pid_max.
        let dead = info(4_000_000);
        std::fs::write(
            lock_path(dir.path(), &id),
            serde_json::to_string(&dead).expect("json"),
        )
        .expect("write");
        let lock = SpecLock::acquire(dir.path(), &id, info(std::process::id())).expect("recovered");
        assert_eq!(lock.recovered, Some(dead));
    }
}
