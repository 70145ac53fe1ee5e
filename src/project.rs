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
}

impl ProjectError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ProjectError::Open(_) => 1,
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

    /// Finds the repository containing `dir`.
    pub fn discover_from(dir: &Path) -> Result<Project, ProjectError> {
        let repo = Repository::discover(dir).map_err(|e| match e.code() {
            git2::ErrorCode::NotFound => ProjectError::NotARepository {
                cwd: dir.to_path_buf(),
            },
            _ => ProjectError::Open(e),
        })?;
        let Some(root) = repo.workdir().map(Path::to_path_buf) else {
            return Err(ProjectError::Bare {
                git_dir: repo.path().to_path_buf(),
            });
        };
        Ok(Project { repo, root })
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
