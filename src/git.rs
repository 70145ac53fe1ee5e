//! The few git operations everything shares: the one compare-and-swap helper through which
//! every update of `refs/chant/*` goes, and the reflog those refs keep.
//!
//! Nothing else in the crate writes a `refs/chant/*` ref. This module never prints and never
//! takes a lock file of its own: libgit2's ref lock is held only for the instant of the swap,
//! so a crash at any point leaves the ref at either its old or its new value.
//!
//! It also lays out the private repositories chant makes for itself ([`init_private`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{ErrorCode, Oid, Repository};

/// Why a compare-and-swap did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CasError<E> {
    /// Another writer kept winning; the caller may try again later.
    #[error("{name}: gave up after {attempts} attempts: another writer kept updating it")]
    Contended { name: String, attempts: u32 },
    /// The caller's build step failed.
    #[error(transparent)]
    Build(E),
    #[error("git: {0}")]
    Git(git2::Error),
}

/// How often [`update_ref`] rebuilds and retries before giving up.
pub const MAX_ATTEMPTS: u32 = 200;

/// Reads the current value of `name` (`None` when the ref does not exist).
pub fn read_ref(repo: &Repository, name: &str) -> Result<Option<Oid>, git2::Error> {
    match repo.refname_to_id(name) {
        Ok(oid) => Ok(Some(oid)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets `name` to `new` only if it still points at `expected` (`None`: only if it does not
/// exist). Returns `Ok(false)` when another writer got there first.
pub fn compare_and_swap(
    repo: &Repository,
    name: &str,
    new: Oid,
    expected: Option<Oid>,
    message: &str,
) -> Result<bool, git2::Error> {
    ensure_reflog(repo, name);
    // libgit2 treats `force = false` as "must not exist", so a real compare-and-swap needs
    // `force = true` with the expected old value; the zero id means "create only".
    let old = expected.unwrap_or_else(Oid::zero);
    match repo.reference_matching(name, new, true, old, message) {
        Ok(_) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads `name`, lets `build` make the new value from the value read, and swaps it in;
/// on a conflict it reads again, rebuilds and retries with jittered backoff.
/// `build` returns `None` when there is nothing to change.
pub fn update_ref<T, E>(
    repo: &Repository,
    name: &str,
    message: &str,
    mut build: impl FnMut(Option<Oid>) -> Result<Option<(Oid, T)>, E>,
) -> Result<Option<T>, CasError<E>> {
    for attempt in 0..MAX_ATTEMPTS {
        let current = read_ref(repo, name).map_err(CasError::Git)?;
        let Some((new, value)) = build(current).map_err(CasError::Build)? else {
            return Ok(None);
        };
        if compare_and_swap(repo, name, new, current, message).map_err(CasError::Git)? {
            return Ok(Some(value));
        }
        clear_stale_lock(repo, name);
        std::thread::sleep(backoff(attempt));
    }
    Err(CasError::Contended {
        name: name.to_string(),
        attempts: MAX_ATTEMPTS,
    })
}

/// How old a ref's `.lock` file must be to count as left behind by a killed writer: a
/// live writer holds it for the instant of a rename.
const STALE_LOCK: Duration = Duration::from_secs(2);

/// Removes `<ref>.lock` when it is older than [`STALE_LOCK`]. libgit2 (like git) takes
/// that lock for the instant of the swap; a writer killed in that instant leaves it, and
/// every later update would fail. The ref itself still holds the old, complete value.
fn clear_stale_lock(repo: &Repository, name: &str) {
    // Shared refs (all chant writes) live in the common dir, also from a linked worktree.
    let lock = repo.commondir().join(format!("{name}.lock"));
    let stale = std::fs::metadata(&lock)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_LOCK);
    if stale {
        let _ = std::fs::remove_file(&lock);
    }
}

fn is_conflict(e: &git2::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::Modified | ErrorCode::Locked | ErrorCode::Exists
    )
}

/// Exponential backoff with full jitter, capped at ~50 ms: writers that collided spread out
/// instead of colliding again in lock step.
fn backoff(attempt: u32) -> Duration {
    let cap_us: u64 = (200u64 << attempt.min(8)).min(50_000);
    // Mixing in the pid keeps writer processes apart even when tests seed the randomness.
    let r = crate::clock::random_u64() ^ u64::from(std::process::id()).wrapping_mul(0x9E37_79B9);
    Duration::from_micros(r % cap_us + 50)
}

/// Makes sure `name` keeps a reflog: libgit2 only appends to a reflog that exists (unless
/// `core.logAllRefUpdates=always`), and refs outside `refs/heads` get none by default.
/// Best effort: a missing reflog loses only the local forensic trail, never an entry.
pub fn ensure_reflog(repo: &Repository, name: &str) {
    let path: PathBuf = repo.commondir().join("logs").join(name);
    if path.exists() {
        return;
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path);
}

/// Writes a commit object without moving any ref, signed the way git itself would sign it
/// when the repository's git config asks for signing (`commit.gpgSign` with a key).
pub fn create_commit(
    repo: &Repository,
    sig: &git2::Signature<'_>,
    message: &str,
    tree: &git2::Tree<'_>,
    parents: &[&git2::Commit<'_>],
) -> Result<Oid, crate::audit::AuditError> {
    let wants_signature = repo
        .config()
        .and_then(|c| c.get_bool("commit.gpgSign"))
        .unwrap_or(false);
    if !wants_signature {
        return Ok(repo.commit(None, sig, sig, message, tree, parents)?);
    }
    let signer = crate::audit::Signer::from_config(repo, crate::config::SignMode::Always)?;
    let buffer = repo.commit_create_buffer(sig, sig, message, tree, parents)?;
    let text = std::str::from_utf8(&buffer)
        .map_err(|_| crate::audit::AuditError::Invalid("commit buffer is not UTF-8".into()))?;
    match signer.sign(&buffer)? {
        Some(signature) => Ok(repo.commit_signed(text, &signature, None)?),
        None => Ok(repo.commit(None, sig, sig, message, tree, parents)?),
    }
}

/// Creates an empty repository at `git_dir` for chant's own use (a sandboxed clone's `.git`,
/// a quarantine), written directly: git's layout, `HEAD` on `refs/heads/main` and a config of
/// `core` plus `extra_config` (config-file text). Unlike `git init` (or libgit2's), no
/// template is copied and the file system is not probed with test files, which costs most
/// of an init; `filemode` is true and `symlinks` left to git's default (true), as on the
/// Linux file systems chant runs on. `git_dir` must not exist yet.
pub fn init_private(
    git_dir: &Path,
    bare: bool,
    extra_config: &str,
) -> Result<Repository, std::io::Error> {
    std::fs::create_dir(git_dir)?;
    for dir in [
        "info",
        "objects/info",
        "objects/pack",
        "refs/heads",
        "refs/tags",
    ] {
        std::fs::create_dir_all(git_dir.join(dir))?;
    }
    std::fs::write(git_dir.join("HEAD"), "ref: refs/heads/main\n")?;
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = {bare}\n\tlogallrefupdates = true\n{extra_config}"
    );
    std::fs::write(git_dir.join("config"), config)?;
    Repository::open(git_dir).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_repository_is_one_git_itself_reads_with_our_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let git_dir = dir.path().join(".git");
        let repo = init_private(&git_dir, false, "\thooksPath = /dev/null\n").expect("init");
        assert_eq!(repo.workdir(), Some(dir.path().join("").as_path()));
        let config = repo.config().expect("config");
        assert_eq!(
            config.get_string("core.hooksPath").ok().as_deref(),
            Some("/dev/null")
        );
        // The git CLI agrees: a work tree, on main, nothing committed yet.
        let out = std::process::Command::new("git")
            .args(["status", "--porcelain=v2", "--branch"])
            .current_dir(dir.path())
            .env_remove("GIT_DIR")
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("# branch.head main"));
        // It never reuses a directory that exists.
        assert!(init_private(&git_dir, false, "").is_err());
        let bare = init_private(&dir.path().join("q"), true, "").expect("bare");
        assert!(bare.is_bare());
    }
}
