//! Writing a file below a directory without ever leaving it.
//!
//! Chant writes into trees it does not fully control: a sandboxed clone holds whatever the
//! base branch committed (symlinks included) and, after a run, whatever the agent left.
//! [`write_in_tree`] walks the relative path one component at a time with `openat`, each
//! directory opened with `O_NOFOLLOW`, so a symlink anywhere on the way (absolute,
//! relative, a chain, dangling) can never redirect the write outside the root. The file
//! itself is written to a fresh temporary name (`O_CREAT|O_EXCL|O_NOFOLLOW`) and renamed
//! over the final name: an existing symlink or hard link there is replaced, never written
//! through, and a reader never sees half a file.
//!
//! This module never follows a link below `root`, never creates anything outside it, and
//! never prints.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

#[derive(Debug, thiserror::Error)]
pub enum ConfinedError {
    #[error("{rel}: not a plain relative path (no '..', no leading '/'); chant writes only below {}", .root.display())]
    BadPath { root: PathBuf, rel: String },
    #[error("refusing to write {rel} in {}: {at} is {what}, which could lead outside the tree; remove it from the branch (or commit a real directory there) and run again", .root.display())]
    NotADirectory {
        root: PathBuf,
        rel: String,
        at: String,
        what: &'static str,
    },
    #[error("refusing to write {rel} in {}: it is a directory", .root.display())]
    IsADirectory { root: PathBuf, rel: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `bytes` to `root/rel` with permission bits `mode`, creating missing directories
/// (0755) below `root`. Refuses when a component of `rel` before the last is a symlink or
/// anything but a directory; replaces (never follows) whatever is at the last component
/// unless it is a directory. `root` itself is trusted and may be reached through links.
pub fn write_in_tree(root: &Path, rel: &str, bytes: &[u8], mode: u32) -> Result<(), ConfinedError> {
    let parts = components(root, rel)?;
    let Some((name, dirs)) = parts.split_last() else {
        return Err(ConfinedError::BadPath {
            root: root.to_path_buf(),
            rel: rel.to_string(),
        });
    };
    let io = |path: PathBuf| {
        move |e: Errno| ConfinedError::Io {
            path,
            source: e.into(),
        }
    };
    let mut dir = rustix::fs::openat(CWD, root, dir_flags() & !OFlags::NOFOLLOW, Mode::empty())
        .map_err(io(root.to_path_buf()))?;
    let mut walked = PathBuf::new();
    for part in dirs {
        walked.push(part);
        dir = open_or_create_dir(&dir, part, root, rel, &walked)?;
    }
    let target = root.join(rel);
    if let Ok(st) = rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(ConfinedError::IsADirectory {
                root: root.to_path_buf(),
                rel: rel.to_string(),
            });
        }
    }
    let tmp = temporary_name(name);
    let file = rustix::fs::openat(
        &dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(io(target.clone()))?;
    let written = fill(file, bytes, mode).and_then(|()| {
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, *name).map_err(std::io::Error::from)
    });
    if let Err(source) = written {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        return Err(ConfinedError::Io {
            path: target,
            source,
        });
    }
    Ok(())
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The normal components of `rel`; anything else (`..`, `/`, `.`, empty) is refused.
fn components<'r>(root: &Path, rel: &'r str) -> Result<Vec<&'r str>, ConfinedError> {
    let bad = || ConfinedError::BadPath {
        root: root.to_path_buf(),
        rel: rel.to_string(),
    };
    if rel.contains('\0') {
        return Err(bad());
    }
    rel.split('/')
        .map(|part| match part {
            "" | "." | ".." => Err(bad()),
            _ => Ok(part),
        })
        .collect()
}

/// Opens the directory `part` of `dir` without following a link, creating it when absent.
fn open_or_create_dir(
    dir: &OwnedFd,
    part: &str,
    root: &Path,
    rel: &str,
    walked: &Path,
) -> Result<OwnedFd, ConfinedError> {
    let io = |e: Errno| ConfinedError::Io {
        path: root.join(walked),
        source: e.into(),
    };
    match rustix::fs::openat(dir, part, dir_flags(), Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(Errno::LOOP | Errno::NOTDIR) => return Err(not_a_dir(dir, part, root, rel, walked)),
        Err(e) => return Err(io(e)),
    }
    match rustix::fs::mkdirat(dir, part, Mode::from_raw_mode(0o755)) {
        // EEXIST: a dangling link (or something made meanwhile) holds the name.
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(io(e)),
    }
    match rustix::fs::openat(dir, part, dir_flags(), Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT) => {
            Err(not_a_dir(dir, part, root, rel, walked))
        }
        Err(e) => Err(io(e)),
    }
}

fn not_a_dir(dir: &OwnedFd, part: &str, root: &Path, rel: &str, walked: &Path) -> ConfinedError {
    let what = match rustix::fs::statat(dir, part, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => "a symlink",
        Ok(_) => "not a directory",
        Err(_) => "a dangling symlink",
    };
    ConfinedError::NotADirectory {
        root: root.to_path_buf(),
        rel: rel.to_string(),
        at: walked.to_string_lossy().into_owned(),
        what,
    }
}

/// A name beside `name` that no one else picks (`O_EXCL` refuses it otherwise).
fn temporary_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let short: String = name.chars().take(32).collect();
    format!(".{short}.chant-{}-{n}.tmp", std::process::id())
}

fn fill(file: OwnedFd, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o7777))?;
    let mut file = std::fs::File::from(file);
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A root to write in and a directory beside it that must stay untouched.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).expect("root");
        std::fs::create_dir_all(&outside).expect("outside");
        (tmp, root, outside)
    }

    fn untouched(outside: &Path) {
        let left: Vec<_> = std::fs::read_dir(outside)
            .expect("outside")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "written outside: {left:?}");
    }

    fn refused(root: &Path, rel: &str) -> String {
        match write_in_tree(root, rel, b"{}", 0o644) {
            Ok(()) => panic!("{rel} was written"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn missing_directories_are_created_and_the_mode_is_exact() {
        let (_t, root, _) = setup();
        write_in_tree(&root, ".claude/sub/settings.json", b"{}\n", 0o640).expect("write");
        let path = root.join(".claude/sub/settings.json");
        assert_eq!(std::fs::read(&path).expect("read"), b"{}\n");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        write_in_tree(&root, ".claude/sub/settings.json", b"again", 0o644).expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"again");
        let names: Vec<_> = std::fs::read_dir(root.join(".claude/sub"))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }

    #[test]
    fn a_directory_link_to_an_absolute_path_outside_is_refused() {
        let (_t, root, outside) = setup();
        symlink(&outside, root.join(".claude")).expect("link");
        let e = refused(&root, ".claude/settings.json");
        assert!(e.contains(".claude is a symlink"), "{e}");
        untouched(&outside);
    }

    #[test]
    fn a_relative_directory_link_out_of_the_tree_is_refused() {
        let (_t, root, outside) = setup();
        symlink("../outside", root.join(".claude")).expect("link");
        refused(&root, ".claude/settings.json");
        untouched(&outside);
    }

    #[test]
    fn a_chain_of_links_through_the_tree_is_refused() {
        let (_t, root, outside) = setup();
        symlink("b", root.join("a")).expect("a -> b");
        symlink("c/..", root.join("b")).expect("b -> c/..");
        std::fs::create_dir(root.join("c")).expect("c");
        symlink(&outside, root.join("c/x")).expect("c/x");
        symlink("a/c/x", root.join(".claude")).expect(".claude -> a/c/x");
        refused(&root, ".claude/settings.json");
        refused(&root, "a/c/x/settings.json");
        refused(&root, "c/x/settings.json");
        untouched(&outside);
    }

    #[test]
    fn a_link_deeper_in_the_path_is_refused() {
        let (_t, root, outside) = setup();
        std::fs::create_dir_all(root.join("one/two")).expect("dirs");
        symlink(&outside, root.join("one/two/three")).expect("link");
        let e = refused(&root, "one/two/three/four/file");
        assert!(e.contains("one/two/three is a symlink"), "{e}");
        untouched(&outside);
    }

    #[test]
    fn a_dangling_directory_link_is_refused_and_nothing_is_created_where_it_points() {
        let (_t, root, outside) = setup();
        symlink(outside.join("made-by-chant"), root.join(".claude")).expect("link");
        let e = refused(&root, ".claude/settings.json");
        assert!(e.contains("symlink"), "{e}");
        untouched(&outside);
    }

    #[test]
    fn a_file_where_a_directory_should_be_is_refused() {
        let (_t, root, _) = setup();
        std::fs::write(root.join(".claude"), "x").expect("file");
        let e = refused(&root, ".claude/settings.json");
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn a_final_link_to_a_file_outside_is_replaced_not_followed() {
        let (_t, root, outside) = setup();
        std::fs::write(outside.join("victim"), "precious").expect("victim");
        std::fs::create_dir(root.join(".claude")).expect("dir");
        symlink("../../outside/victim", root.join(".claude/settings.json")).expect("link");
        write_in_tree(&root, ".claude/settings.json", b"{}", 0o644).expect("write");
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).expect("victim"),
            "precious"
        );
        let meta = std::fs::symlink_metadata(root.join(".claude/settings.json")).expect("meta");
        assert!(meta.is_file(), "the link was replaced by a file");
    }

    #[test]
    fn a_final_dangling_link_is_replaced_and_its_target_never_created() {
        let (_t, root, outside) = setup();
        symlink(outside.join("new-file"), root.join("settings.json")).expect("link");
        write_in_tree(&root, "settings.json", b"{}", 0o644).expect("write");
        untouched(&outside);
        assert!(std::fs::symlink_metadata(root.join("settings.json"))
            .expect("meta")
            .is_file());
    }

    #[test]
    fn a_final_hard_link_is_replaced_and_its_other_name_keeps_its_content() {
        let (_t, root, outside) = setup();
        std::fs::write(outside.join("victim"), "precious").expect("victim");
        if std::fs::hard_link(outside.join("victim"), root.join("settings.json")).is_err() {
            return; // another file system: nothing to test
        }
        write_in_tree(&root, "settings.json", b"{}", 0o644).expect("write");
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).expect("victim"),
            "precious"
        );
    }

    #[test]
    fn a_directory_at_the_final_name_is_refused() {
        let (_t, root, _) = setup();
        std::fs::create_dir_all(root.join("settings.json/inner")).expect("dir");
        let e = refused(&root, "settings.json");
        assert!(e.contains("is a directory"), "{e}");
    }

    #[test]
    fn paths_that_climb_or_start_at_the_root_are_refused() {
        let (_t, root, outside) = setup();
        for rel in [
            "../outside/x",
            "a/../../outside/x",
            "/tmp/x",
            "",
            "./x",
            "a/./b",
            "a//b",
            "a/",
        ] {
            let e = refused(&root, rel);
            assert!(e.contains("not a plain relative path"), "{rel}: {e}");
        }
        untouched(&outside);
    }
}
