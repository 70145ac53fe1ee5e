//! Who is acting: actor, session and host, as DESIGN.md defines them.
//!
//! Actor = `CHANT_ACTOR` if set, else git `user.name` (else `user.email`, else the OS user).
//! Session = `CHANT_SESSION` if set, else a fresh `sess_<random>` per command.

use crate::clock;

/// The identity recorded in ledger entries and commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub actor: String,
    /// The e-mail used as commit author/committer address.
    pub email: String,
    pub session: String,
    pub host: String,
}

impl Identity {
    /// Resolves the identity from the environment and `repo`'s git config.
    pub fn resolve(repo: Option<&git2::Repository>) -> Identity {
        let config = repo
            .and_then(|r| r.config().ok())
            .or_else(|| git2::Config::open_default().ok());
        let get = |key: &str| {
            config
                .as_ref()
                .and_then(|c| c.get_string(key).ok())
                .filter(|v| !v.trim().is_empty())
        };
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
        let actor = env("CHANT_ACTOR")
            .or_else(|| get("user.name"))
            .or_else(|| get("user.email"))
            .unwrap_or_else(os_user);
        let email = env("CHANT_ACTOR_EMAIL")
            .or_else(|| get("user.email"))
            .unwrap_or_else(|| format!("{}@{}", sanitize(&actor), "localhost"));
        let session =
            env("CHANT_SESSION").unwrap_or_else(|| format!("sess_{}", clock::random_base36(12)));
        Identity {
            actor,
            email,
            session,
            host: hostname(),
        }
    }
}

/// The OS user running this process.
pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            format!("uid{uid}")
        })
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        if let Ok(name) = std::str::from_utf8(&buf[..end]) {
            if !name.is_empty() {
                return name.to_string();
            }
        }
    }
    "localhost".to_string()
}

fn sanitize(actor: &str) -> String {
    actor
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}
