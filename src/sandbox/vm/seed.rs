//! Where the job's files go in the guest's initramfs: those under the files directory
//! (`/run/chant`: the prompt, the run CA's bundle) where they are, and the run's private
//! HOME files (an adapter's settings, hooks, plugin, trust state) under [`SEED`], which
//! chant's `/init` copies into the agent's tmpfs HOME and gives to the agent's account
//! before the agent starts (the HOME is a tmpfs mounted over the initramfs's
//! `/home/agent`, so files put there directly would be hidden).
//!
//! A path anywhere else, the HOME or files directory itself, or one with a component other
//! than a plain name (`..`, `.`) is refused before anything boots: nothing the job carries
//! lands over chant's init, busybox, `$CHANT_EXEC` or the image.

use std::path::{Component, Path};

use super::SandboxError;

/// Where the HOME files wait in the initramfs (under chant's root-only `/chant`).
pub(super) const SEED: &str = "chant/home";

/// One entry for the initramfs: a directory to create, or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry<'a> {
    Dir(String),
    File(String, &'a [u8]),
}

/// The initramfs entries for `files` (guest path, bytes): each file's parent directories
/// first (the kernel does not create missing ones), below `files_dir` as they are and below
/// `home` moved to [`SEED`].
pub(super) fn entries<'a>(
    files: &'a [(std::path::PathBuf, Vec<u8>)],
    home: &Path,
    files_dir: &Path,
) -> Result<Vec<Entry<'a>>, SandboxError> {
    let mut out = Vec::new();
    let mut made = std::collections::HashSet::new();
    for (guest, bytes) in files {
        let (base, rel) = if let Ok(rel) = guest.strip_prefix(files_dir) {
            (files_dir.strip_prefix("/").unwrap_or(files_dir), rel)
        } else if let Ok(rel) = guest.strip_prefix(home) {
            (Path::new(SEED), rel)
        } else {
            return Err(SandboxError::Workspace(format!(
                "{} is outside {} and {}, the only places the vm gets files",
                guest.display(),
                files_dir.display(),
                home.display()
            )));
        };
        if rel.as_os_str().is_empty()
            || rel.components().any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(SandboxError::Workspace(format!(
                "{} is not a file name",
                guest.display()
            )));
        }
        let mut dir = base.to_path_buf();
        let parents: Vec<_> = rel.components().collect();
        for part in &parents[..parents.len() - 1] {
            dir.push(part);
            let name = dir.to_string_lossy().into_owned();
            if made.insert(name.clone()) {
                out.push(Entry::Dir(name));
            }
        }
        if base == Path::new(SEED) && made.insert(SEED.to_string()) {
            out.insert(0, Entry::Dir(SEED.to_string()));
        }
        out.push(Entry::File(
            base.join(rel).to_string_lossy().into_owned(),
            bytes,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(paths: &[&str]) -> Result<Vec<String>, SandboxError> {
        let files: Vec<_> = paths
            .iter()
            .map(|p| (std::path::PathBuf::from(p), b"x".to_vec()))
            .collect();
        Ok(
            entries(&files, Path::new("/home/agent"), Path::new("/run/chant"))?
                .into_iter()
                .map(|e| match e {
                    Entry::Dir(d) => format!("{d}/"),
                    Entry::File(f, _) => f,
                })
                .collect(),
        )
    }

    #[test]
    fn home_files_wait_under_the_seed_with_their_directories_first() {
        assert_eq!(
            place(&[
                "/run/chant/prompt.md",
                "/home/agent/.codex/config.toml",
                "/home/agent/.codex/rules/chant.rules",
                "/home/agent/.top",
            ])
            .expect("placed"),
            [
                "chant/home/",
                "run/chant/prompt.md",
                "chant/home/.codex/",
                "chant/home/.codex/config.toml",
                "chant/home/.codex/rules/",
                "chant/home/.codex/rules/chant.rules",
                "chant/home/.top",
            ]
        );
    }

    #[test]
    fn paths_outside_home_and_the_files_dir_or_with_dot_dot_are_refused() {
        for bad in [
            "/home/agent/../../init",
            "/home/agent/.codex/../../../bin/chant-exec",
            "/home/agent",
            "/home/agent/",
            "/home/agentx/f",
            "/bin/chant-exec",
            "/init",
            "/chant/job.sh",
            "/run/chant/../../init",
            "/run/chant",
            "relative/file",
        ] {
            assert!(place(&[bad]).is_err(), "{bad} accepted");
        }
    }
}
