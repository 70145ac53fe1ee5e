//! Installing the hook scripts (from the repository's `hooks/`, embedded in the binary)
//! into the hooks folder git actually uses.
//!
//! A hook that is not ours is never overwritten silently: by default it is kept as
//! `<name>.local` and our script runs it after chant's check (chaining); with `--force` it
//! is replaced and a backup `<name>.chant-backup` is kept.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git2::Repository;

/// The marker every script of ours carries.
const MARKER: &str = "git-chant";

/// Client-side hooks and their scripts.
pub const CLIENT: &[(&str, &str)] = &[
    ("pre-commit", include_str!("../../hooks/pre-commit")),
    ("pre-push", include_str!("../../hooks/pre-push")),
];

/// Server-side hooks and their scripts.
pub const SERVER: &[(&str, &str)] = &[("pre-receive", include_str!("../../hooks/pre-receive"))];

/// What `install` did to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    Written,
    Unchanged,
    /// A foreign hook was moved to `<name>.local` and is chained.
    Chained,
    /// A foreign hook was replaced; its backup is at `<name>.chant-backup`.
    Replaced,
}

/// The state of one hook, for `hooks status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Missing,
    Ours { current: bool, chained: bool },
    Foreign,
}

/// The folder git runs hooks from: `core.hooksPath` (relative to the work tree, or to the
/// git dir in a bare repository) or `<git dir>/hooks`.
pub fn hooks_dir(repo: &Repository) -> PathBuf {
    let configured = repo
        .config()
        .ok()
        .and_then(|c| c.get_path("core.hooksPath").ok());
    match configured {
        Some(p) if p.is_absolute() => p,
        Some(p) => repo.workdir().unwrap_or_else(|| repo.path()).join(p),
        // From a linked worktree too: git runs the common dir's hooks.
        None => repo.commondir().join("hooks"),
    }
}

fn is_ours(text: &str) -> bool {
    text.lines()
        .take(3)
        .any(|l| l.starts_with('#') && l.contains(MARKER))
}

/// Installs `scripts` into `dir`.
pub fn install(
    dir: &Path,
    scripts: &[(&str, &str)],
    force: bool,
) -> std::io::Result<Vec<(String, Installed)>> {
    std::fs::create_dir_all(dir)?;
    let mut done = Vec::new();
    for (name, script) in scripts {
        let path = dir.join(name);
        let outcome = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_script(&path, script)?;
                Installed::Written
            }
            Ok(text) if text == *script => Installed::Unchanged,
            Ok(text) if is_ours(&text) => {
                write_script(&path, script)?;
                Installed::Written
            }
            // Foreign (or unreadable as text): keep it.
            _ => {
                if force {
                    std::fs::rename(&path, dir.join(format!("{name}.chant-backup")))?;
                    write_script(&path, script)?;
                    Installed::Replaced
                } else {
                    let local = dir.join(format!("{name}.local"));
                    if local.exists() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            format!(
                                "{} is not a git-chant hook and {} already exists; move one of them away or use --force (keeps a backup)",
                                path.display(),
                                local.display()
                            ),
                        ));
                    }
                    std::fs::rename(&path, &local)?;
                    write_script(&path, script)?;
                    Installed::Chained
                }
            }
        };
        done.push((name.to_string(), outcome));
    }
    Ok(done)
}

/// The state of each of `scripts` in `dir`.
pub fn status(dir: &Path, scripts: &[(&str, &str)]) -> Vec<(String, State)> {
    scripts
        .iter()
        .map(|(name, script)| {
            let state = match std::fs::read_to_string(dir.join(name)) {
                Err(_) if !dir.join(name).exists() => State::Missing,
                Ok(text) if is_ours(&text) => State::Ours {
                    current: text == *script,
                    chained: dir.join(format!("{name}.local")).exists(),
                },
                _ => State::Foreign,
            };
            (name.to_string(), state)
        })
        .collect()
}

fn write_script(path: &Path, script: &str) -> std::io::Result<()> {
    crate::atomic::replace(path, script.as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}
