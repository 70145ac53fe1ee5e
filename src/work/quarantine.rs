//! The objects of a run held apart until its change is accepted.
//!
//! Collecting writes every new blob into a quarantine: a private object directory inside
//! the main repository's `objects/` (so moving objects out of it is a rename on one file
//! system), named `tmp_objdir-chant-*` as git names its own quarantines, which `git prune`
//! removes if chant ever dies before it does. Objects the main store already has are never
//! written twice (the quarantine reads the main store through `alternates`). Only when the
//! policy check passes are the quarantined objects moved into the main store; a refused run
//! leaves it as it was. This module never reads the agent's clone.

use std::path::{Path, PathBuf};

use git2::Repository;

use super::WorkError;

/// A run's private object store; removed when dropped unless [`Quarantine::accept`]ed.
pub struct Quarantine {
    dir: PathBuf,
    repo: Repository,
    /// The main repository's object directory, where accepted objects go.
    objects: PathBuf,
}

impl Quarantine {
    /// Creates an empty quarantine for `main`, named after `run` (a session id).
    pub fn create(main: &Repository, run: &str) -> Result<Quarantine, WorkError> {
        let objects = main.commondir().join("objects");
        let dir = objects.join(format!("tmp_objdir-chant-{run}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| WorkError::io(&dir, e))?;
        }
        let repo = crate::git::init_private(&dir, true, "").map_err(|e| WorkError::io(&dir, e))?;
        let alternates = dir.join("objects").join("info").join("alternates");
        let mut line = objects.to_string_lossy().into_owned();
        line.push('\n');
        std::fs::write(&alternates, line).map_err(|e| WorkError::io(&alternates, e))?;
        Ok(Quarantine { dir, repo, objects })
    }

    /// Where new objects are written (and every object of the main store can be read).
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Moves every quarantined object into the main store (an object already there is
    /// kept as it is), then removes the quarantine.
    pub fn accept(self) -> Result<(), WorkError> {
        let loose = self.dir.join("objects");
        for fan in read_dir(&loose)? {
            let name = fan.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let target_dir = self.objects.join(name);
            for object in read_dir(&fan.path())? {
                let target = target_dir.join(object.file_name());
                if target.exists() {
                    continue;
                }
                std::fs::create_dir_all(&target_dir).map_err(|e| WorkError::io(&target_dir, e))?;
                move_file(&object.path(), &target)?;
            }
        }
        Ok(())
    }
}

impl Drop for Quarantine {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, WorkError> {
    std::fs::read_dir(dir)
        .and_then(|d| d.collect::<Result<Vec<_>, _>>())
        .map_err(|e| WorkError::io(dir, e))
}

/// Moves `from` to `to` without ever replacing `to`: a hard link then an unlink (as git's
/// `finalize_object_file`), or a copy where links are not allowed.
fn move_file(from: &Path, to: &Path) -> Result<(), WorkError> {
    match std::fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => {
            let tmp = to.with_extension("chant-tmp");
            std::fs::copy(from, &tmp).map_err(|e| WorkError::io(&tmp, e))?;
            std::fs::rename(&tmp, to).map_err(|e| WorkError::io(to, e))?;
        }
    }
    let _ = std::fs::remove_file(from);
    Ok(())
}
