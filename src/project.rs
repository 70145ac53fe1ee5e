//! The repository git-chant works in: where its work tree, `.chant/` and local state are.

use std::path::{Path, PathBuf};

use git2::Repository;

use crate::config::{self, Config};

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("not inside a git repository ({}); run `git init` first, or cd into a repository", .cwd.display())]
    NotARepository { cwd: PathBuf },
    #[error("{} is a bare repository; this command needs a work tree (clone it first)", .git_dir.display())]
    Bare { git_dir: PathBuf },
    #[error("git chant is not initialised in {}; run `git chant init`", .root.display())]
    NotInitialised { root: PathBuf },
    #[error("cannot open the repository: {0}")]
    Open(#[source] git2::Error),
    #[error("no cache directory for sandboxed clones: {why}; set XDG_CACHE_HOME (or HOME) to an absolute directory outside any .git")]
    NoCacheDir { why: String },
}

impl ProjectError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ProjectError::Open(_) => 1,
            ProjectError::NoCacheDir { .. } => 2,
            _ => 2,
        }
    }
}

/// An opened repository with a work tree, and its chant paths.
pub struct Project {
    pub repo: Repository,
    root: PathBuf,
}

impl Project {
    /// Finds the repository containing the current directory.
    pub fn discover() -> Result<Project, ProjectError> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Project::discover_from(&cwd)
    }

    /// Finds the repository containing `dir`, and its work tree, as git itself does.
    ///
    /// git decides: `git rev-parse` in `dir` honours `GIT_DIR`/`GIT_WORK_TREE`,
    /// `core.worktree`, `.git` files (`--separate-git-dir`, submodules) and linked worktrees
    /// (`git worktree add`), where libgit2's discovery alone misplaces the work tree. Without
    /// a usable `git` on PATH, libgit2's discovery is the fallback.
    pub fn discover_from(dir: &Path) -> Result<Project, ProjectError> {
        let repo = open_repository(dir)?;
        let Some(root) = repo.workdir().map(Path::to_path_buf) else {
            return Err(ProjectError::Bare {
                git_dir: repo.path().to_path_buf(),
            });
        };
        Ok(Project { repo, root })
    }

    /// The repository whose git dir and work tree are already known (chant found them
    /// itself and handed them to a process it started): no discovery, no `git rev-parse`.
    pub fn open_known(git_dir: &Path, root: &Path) -> Result<Project, ProjectError> {
        Ok(Project {
            repo: open_at(git_dir, Some(root))?,
            root: root.to_path_buf(),
        })
    }

    /// The work tree root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `.chant/` in the work tree.
    pub fn chant_dir(&self) -> PathBuf {
        self.root.join(".chant")
    }

    /// `.chant/specs/`.
    pub fn specs_dir(&self) -> PathBuf {
        self.chant_dir().join("specs")
    }

    /// `.git/chant/`: local-only state (clones, logs, caches, indexes, checkpoints).
    pub fn state_dir(&self) -> PathBuf {
        self.repo.path().join("chant")
    }

    /// Where this repository's sandboxed clones live:
    /// `$XDG_CACHE_HOME/git-chant/clones/<repo name>-<hash of the git dir>/` (or
    /// `$HOME/.cache/…`). Never under `.git`: agents treat every path with a `.git`
    /// component as sensitive and refuse to edit it (Claude Code does, in every mode).
    pub fn clones_dir(&self) -> Result<PathBuf, ProjectError> {
        let cache = cache_home(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))?;
        let git_dir = self
            .repo
            .path()
            .canonicalize()
            .unwrap_or_else(|_| self.repo.path().to_path_buf());
        let name: String = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
                _ => '_',
            })
            .take(40)
            .collect();
        let name = if name.is_empty() { "repo".into() } else { name };
        use sha2::Digest;
        let hash = sha2::Sha256::digest(git_dir.as_os_str().as_encoded_bytes());
        Ok(cache
            .join("git-chant")
            .join("clones")
            .join(format!("{name}-{}", &hex::encode(hash)[..12])))
    }

    /// Where clones lived before they moved to the cache dir (`.git/chant/clones/`): clones
    /// kept by older versions are still there.
    pub fn legacy_clones_dir(&self) -> PathBuf {
        self.state_dir().join("clones")
    }

    pub fn is_initialised(&self) -> bool {
        self.root.join(config::CONFIG_PATH).is_file()
    }

    /// Refuses unless `git chant init` has run here.
    pub fn require_initialised(&self) -> Result<(), ProjectError> {
        if self.is_initialised() {
            Ok(())
        } else {
            Err(ProjectError::NotInitialised {
                root: self.root.clone(),
            })
        }
    }

    /// Loads `.chant/config.md` (defaults when absent).
    pub fn config(&self) -> Result<Config, config::ConfigError> {
        config::load(&self.root).map(|l| l.config)
    }
}

/// Opens the repository containing `dir` (bare or not) with the work tree git uses there:
/// see [`Project::discover_from`].
pub fn open_repository(dir: &Path) -> Result<Repository, ProjectError> {
    let (git_dir, work_tree) = match locate(dir) {
        Some(Located::Repository { git_dir, work_tree }) => (git_dir, work_tree),
        Some(Located::NotARepository) => {
            return Err(ProjectError::NotARepository {
                cwd: dir.to_path_buf(),
            })
        }
        None => {
            return Repository::discover(dir).map_err(|e| match e.code() {
                git2::ErrorCode::NotFound => ProjectError::NotARepository {
                    cwd: dir.to_path_buf(),
                },
                _ => ProjectError::Open(e),
            })
        }
    };
    open_at(&git_dir, work_tree.as_deref())
}

/// Opens the repository at `git_dir` with `work_tree` as its work tree: libgit2 keeps its
/// own idea of the work tree, and git's (or chant's, already found) is the one that counts.
fn open_at(git_dir: &Path, work_tree: Option<&Path>) -> Result<Repository, ProjectError> {
    let repo = Repository::open(git_dir).map_err(ProjectError::Open)?;
    if let Some(root) = work_tree {
        if repo.workdir() != Some(root) {
            repo.set_workdir(root, false).map_err(ProjectError::Open)?;
        }
    }
    Ok(repo)
}

/// Where git says the repository of a directory is.
enum Located {
    Repository {
        git_dir: PathBuf,
        /// None: a bare repository (or a directory inside a git dir).
        work_tree: Option<PathBuf>,
    },
    NotARepository,
}

/// Asks `git rev-parse` in `dir`; None when git cannot be run (then libgit2 decides).
fn locate(dir: &Path) -> Option<Located> {
    let rev_parse = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("rev-parse")
            .args(args)
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .output()
            .ok()
    };
    let out = rev_parse(&["--absolute-git-dir", "--show-toplevel"])?;
    if out.status.success() {
        let text = String::from_utf8(out.stdout).ok()?;
        let mut lines = text.lines();
        let git_dir = PathBuf::from(lines.next()?);
        let work_tree = lines.next().filter(|l| !l.is_empty()).map(PathBuf::from);
        return Some(Located::Repository { git_dir, work_tree });
    }
    // No work tree (bare, or inside the git dir), or no repository at all.
    let out = rev_parse(&["--absolute-git-dir"])?;
    if out.status.success() {
        let text = String::from_utf8(out.stdout).ok()?;
        let git_dir = PathBuf::from(text.lines().next()?);
        return Some(Located::Repository {
            git_dir,
            work_tree: None,
        });
    }
    if String::from_utf8_lossy(&out.stderr).contains("not a git repository") {
        return Some(Located::NotARepository);
    }
    None
}

/// The user's cache directory: `$XDG_CACHE_HOME` when absolute, else `$HOME/.cache`; it
/// must have no `.git` component.
fn cache_home(
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf, ProjectError> {
    let xdg = xdg.map(PathBuf::from).filter(|p| p.is_absolute());
    let home = home.map(PathBuf::from).filter(|p| p.is_absolute());
    let dir = match (xdg, home) {
        (Some(x), _) => x,
        (None, Some(h)) => h.join(".cache"),
        (None, None) => {
            return Err(ProjectError::NoCacheDir {
                why: "neither XDG_CACHE_HOME nor HOME is an absolute path".into(),
            })
        }
    };
    if dir.components().any(|c| c.as_os_str() == ".git") {
        return Err(ProjectError::NoCacheDir {
            why: format!("{} has a .git component", dir.display()),
        });
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_dir_is_xdg_cache_home_then_home_dot_cache() {
        let dir = cache_home(Some("/x/cache".into()), Some("/home/u".into()));
        assert_eq!(dir.ok(), Some(PathBuf::from("/x/cache")));
        let dir = cache_home(Some("relative".into()), Some("/home/u".into()));
        assert_eq!(dir.ok(), Some(PathBuf::from("/home/u/.cache")));
        assert!(cache_home(None, None).is_err());
        assert!(cache_home(None, Some("rel".into())).is_err());
    }

    #[test]
    fn a_cache_dir_inside_a_git_dir_is_refused() {
        let err = cache_home(Some("/r/.git/cache".into()), None);
        assert!(
            matches!(err, Err(ProjectError::NoCacheDir { ref why }) if why.contains(".git")),
            "{err:?}"
        );
    }
}
