//! What the agent's hooks could not hand chant's gate ([`crate::agent::HOOK_ERRORS`] in the
//! run's private HOME), read once the agent has ended.
//!
//! The agent could write that file too: it is hostile data. It is opened without following
//! a symlink and without blocking on a FIFO, read only when it is a regular file, and at
//! most [`MAX_READ`] bytes of it; a file that cannot be read counts as none.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// At most this much of the file is read.
const MAX_READ: u64 = 64 * 1024;

/// The non-empty lines of `home`'s hook error file.
pub(super) fn read(home: &Path) -> Vec<String> {
    let path = home.join(crate::agent::HOOK_ERRORS);
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    else {
        return Vec::new();
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(MAX_READ).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_from_a_regular_file_and_never_through_a_link_or_a_fifo() {
        let home = tempfile::tempdir().expect("tempdir");
        assert!(read(home.path()).is_empty());
        let path = home.path().join(crate::agent::HOOK_ERRORS);
        std::fs::write(&path, "chant: one\n\nchant: two\n").expect("write");
        assert_eq!(read(home.path()), ["chant: one", "chant: two"]);
        std::fs::remove_file(&path).expect("rm");
        let outside = home.path().join("outside");
        std::fs::write(&outside, "not the hooks'\n").expect("write");
        std::os::unix::fs::symlink(&outside, &path).expect("link");
        assert!(read(home.path()).is_empty());
        std::fs::remove_file(&path).expect("rm");
        let fifo = std::ffi::CString::new(path.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(
            read(home.path()).is_empty(),
            "a FIFO with no writer must not block"
        );
    }
}
