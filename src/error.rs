//! The crate-wide error and its one mapping to exit codes.
//!
//! Exit codes are a contract (DESIGN.md): 0 success, 1 the operation ran and said no
//! (verification failed, policy violation, spec failed), 2 usage or input error (bad flag,
//! bad config, unknown id). Each module has its own error type whose messages name the
//! file, key or id at fault and the fix; this enum only gathers them.

use std::path::PathBuf;

use crate::audit::AuditError;
use crate::config::ConfigError;
use crate::project::ProjectError;
use crate::spec::SpecError;

/// Convenience alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Work(#[from] crate::work::WorkError),
    #[error(transparent)]
    Ship(#[from] crate::audit::ship::ShipError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// stdout was closed by its reader (`git chant audit | head`): the command stops
    /// quietly with exit 0, as git and ripgrep do.
    #[error("stdout was closed")]
    ClosedPipe,
    #[error(transparent)]
    Policy(#[from] crate::hooks::protection::PolicyError),
    /// Bad input that no module owns (a flag combination, a malformed argument).
    #[error("{0}")]
    Usage(String),
    /// The operation ran and said no.
    #[error("{0}")]
    Refused(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

impl Error {
    /// The process exit code for this error (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => 2,
            Error::Spec(e) => e.exit_code(),
            Error::Audit(e) => e.exit_code(),
            Error::Project(e) => e.exit_code(),
            Error::Work(e) => e.exit_code(),
            Error::Ship(e) => e.exit_code(),
            Error::Identity(e) => e.exit_code(),
            Error::ClosedPipe => 0,
            Error::Policy(e) => e.exit_code(),
            Error::Refused(_) | Error::Io { .. } | Error::Git(_) => 1,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
