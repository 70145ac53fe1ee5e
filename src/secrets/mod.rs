//! Secrets: where their values come from, which of them the agent may see, and masking
//! them in everything chant prints or records.
//!
//! This module owns:
//! - [`SecretSource`]: the `--secrets-from` URIs (`env:`, `dotenv:PATH`, `dir:PATH`,
//!   `vault://MOUNT/PATH` in `vault.rs`, `k8s://NAMESPACE/SECRET` in `k8s.rs`) and
//!   [`collect`], which reads them in order (later wins) into [`Secrets`];
//! - [`Secrets::filtered`]: `agent.secrets.expose` / `hide` (hide always wins);
//! - [`agent_env`]: the agent's whole environment, built from nothing;
//! - [`Placeholder`]: the stand-in an injected secret (`agent.secrets.inject`) becomes;
//! - [`Redactor`] / [`StreamRedactor`]: masking every known secret value as `***`;
//! - [`SecretFinder`]: finding values (raw, hex, base64, URL-encoded) in what an agent wrote.
//!
//! It must never print, never log, and never put a secret value into an error message or a
//! `Debug` rendering: errors name the file, line and variable, not the value.

mod dotenv;
mod env;
mod find;
mod k8s;
mod placeholder;
mod redact;
mod source;
mod vault;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::config::SecretsConfig;

pub use dotenv::parse_dotenv;
pub use env::{agent_env, AgentContext, RESERVED_NAMES};
pub use find::{Form, Hit, SecretFinder, SecretStream, MIN_FIND_LEN};
pub use placeholder::{Placeholder, PlaceholderError, MIN_RANDOM_CHARS};
pub use redact::{Redactor, StreamRedactor, MASK, MIN_REDACT_LEN};
pub use source::{collect, collect_with_env, SecretSource, SUPPORTED_SCHEMES};

/// Why secrets could not be read or used. No variant ever holds a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A `--secrets-from` URI with a scheme chant does not know.
    #[error("unknown secret source '{uri}'; supported: {SUPPORTED_SCHEMES}")]
    UnknownScheme { uri: String },
    /// A remote source (Vault, Kubernetes) that is set up wrong or has no such secret: bad
    /// settings, HTTP 404, a value that is not a string. Never holds a value.
    #[error("secret source '{uri}': {reason}")]
    SourceInput { uri: String, reason: String },
    /// A remote source that could not be read: unreachable, HTTP 403, a server error.
    #[error("secret source '{uri}': {reason}")]
    Unavailable { uri: String, reason: String },
    /// A known scheme with a bad argument (`dotenv:` without a path, …).
    #[error("secret source '{uri}': {reason}")]
    BadUri { uri: String, reason: String },
    /// A `.env` line that is not `NAME=VALUE`. The line's content is never shown.
    #[error("{}:{line}: {reason}", file.display())]
    Malformed {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    /// A secrets file that is not UTF-8 text.
    #[error("{}: is not UTF-8 text", file.display())]
    NotText { file: PathBuf },
    /// A secret whose name cannot be an environment variable name.
    #[error("{}: '{name}' is not a valid secret name (letters, digits, '_', '.', '-')", origin.display())]
    InvalidName { origin: PathBuf, name: String },
    /// A secret value that is not UTF-8 text.
    #[error("{}: the value of '{name}' is not UTF-8 text", origin.display())]
    NotUtf8 { origin: PathBuf, name: String },
    /// `agent.secrets.expose` lets through a name chant sets itself.
    #[error("agent.secrets.expose lets through '{name}', which chant sets itself; add it to agent.secrets.hide or narrow expose")]
    Reserved { name: String },
    /// `agent.secrets.inject` names a secret no source holds.
    #[error("agent.secrets.inject: no secret source holds '{name}'; set it in the environment, .env or a --secrets-from source, or remove it from inject")]
    InjectMissing { name: String },
    /// A secret that cannot be injected (too short, not header-safe).
    #[error("agent.secrets.inject: {0}")]
    Placeholder(#[from] PlaceholderError),
    /// A secrets file or directory that could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SecretsError {
    /// The process exit code: 2 for bad input (URIs, files, names, config), 1 when the file
    /// system failed on a path that exists.
    pub fn exit_code(&self) -> u8 {
        match self {
            SecretsError::Io { source, .. } if source.kind() != std::io::ErrorKind::NotFound => 1,
            SecretsError::Unavailable { .. } => 1,
            _ => 2,
        }
    }

    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SecretsError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Where a secret's value was read from.
#[derive(Clone, PartialEq, Eq)]
pub enum Origin {
    /// The process environment (`env:`).
    Env,
    /// A `.env` file.
    Dotenv(PathBuf),
    /// A mounted Secret volume directory.
    Dir(PathBuf),
    /// A remote source, by its URI (`vault://…`, `k8s://…`).
    Remote(String),
    /// Given directly by the caller (tests, other sources).
    Other(String),
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env => f.write_str("env:"),
            Origin::Dotenv(p) => write!(f, "dotenv:{}", p.display()),
            Origin::Dir(p) => write!(f, "dir:{}", p.display()),
            Origin::Remote(s) | Origin::Other(s) => f.write_str(s),
        }
    }
}

#[derive(Clone)]
struct Secret {
    value: String,
    origin: Origin,
}

/// Every secret chant collected, by name (later sources replaced earlier ones).
///
/// `Debug` shows names and origins only, never values.
#[derive(Clone, Default)]
pub struct Secrets {
    entries: BTreeMap<String, Secret>,
}

/// Process-environment names that describe the machine, not credentials. Their values
/// (`/home/alex`, `en_US.UTF-8`, `alex`) are everywhere in normal output, so masking them
/// would make output unreadable without protecting anything; [`Secrets::redactor`] skips
/// them when they come from `env:`. A trailing `*` is a prefix.
pub const PLAIN_ENV_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "PWD",
    "OLDPWD",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TERM",
    "TERM_*",
    "COLORTERM",
    "TZ",
    "SHLVL",
    "HOSTNAME",
    "HOSTTYPE",
    "OSTYPE",
    "MACHTYPE",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "DISPLAY",
    "XDG_*",
    "TMPDIR",
    "TMP",
    "TEMP",
    "MAIL",
    "_",
    "CHANT_*",
];

fn is_plain_env_name(name: &str) -> bool {
    PLAIN_ENV_NAMES.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *p,
    })
}

impl Secrets {
    /// An empty set.
    pub fn new() -> Self {
        Secrets::default()
    }

    /// Adds or replaces `name` (later wins).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>, origin: Origin) {
        self.entries.insert(
            name.into(),
            Secret {
                value: value.into(),
                origin,
            },
        );
    }

    /// The value of `name`, if collected.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|s| s.value.as_str())
    }

    /// Where `name` was read from.
    pub fn origin(&self, name: &str) -> Option<&Origin> {
        self.entries.get(name).map(|s| &s.origin)
    }

    /// Every collected name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// How many secrets were collected.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The secrets the agent may see: names matching `expose` and not matching `hide`
    /// (hide always wins; an empty `expose` exposes nothing), sorted by name.
    pub fn filtered(&self, config: &SecretsConfig) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter(|(name, _)| config.expose.0.is_match(name) && !config.hide.0.is_match(name))
            // An injected secret reaches the agent only as its placeholder.
            .filter(|(name, _)| !config.inject.contains_key(*name))
            .map(|(name, s)| (name.clone(), s.value.clone()))
            .collect()
    }

    /// A fresh placeholder for each secret of `agent.secrets.inject` (the agent gets these
    /// under the secrets' names; the proxy puts the values back in). Every injected secret
    /// must be held by some source.
    pub fn placeholders(&self, config: &SecretsConfig) -> Result<Vec<Placeholder>, SecretsError> {
        config
            .inject
            .keys()
            .map(|name| {
                let value = self
                    .get(name)
                    .ok_or_else(|| SecretsError::InjectMissing { name: name.clone() })?;
                Ok(Placeholder::new(name, value)?)
            })
            .collect()
    }

    /// A redactor for the values that are secrets: every value the agent is given
    /// ([`Secrets::filtered`]), and every value read from a secrets source (`.env`, `dir:`,
    /// Vault, Kubernetes), exposed or not. Process-environment values the agent never sees
    /// are not secrets of this run: masking them would turn ports, paths and words like
    /// `noninteractive` into `***` wherever they appear, hiding nothing. Machine names
    /// ([`PLAIN_ENV_NAMES`]) from the environment are never masked.
    pub fn redactor(&self, config: &SecretsConfig) -> Redactor {
        self.redactor_with(config, &[])
    }

    /// [`Secrets::redactor`], also masking the values of `credentials` (an agent adapter's
    /// own variables, such as `ANTHROPIC_API_KEY`, which reach the agent without being in
    /// `expose`) wherever they were read from.
    pub fn redactor_with(&self, config: &SecretsConfig, credentials: &[&str]) -> Redactor {
        let exposed = |name: &str| config.expose.0.is_match(name) && !config.hide.0.is_match(name);
        Redactor::new(
            self.entries
                .iter()
                .filter(|(name, s)| match s.origin {
                    _ if config.inject.contains_key(*name) => true,
                    _ if credentials.contains(&name.as_str()) => true,
                    Origin::Env => exposed(name) && !is_plain_env_name(name),
                    _ => true,
                })
                .map(|(_, s)| s.value.as_str()),
        )
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, s)| (k, &s.origin)))
            .finish()
    }
}

/// True when `name` can be a secret's name: ASCII letters, digits, `_`, `.` and `-` (the
/// characters of Kubernetes Secret keys), not empty.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
