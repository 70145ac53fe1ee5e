//! Who is acting: actor, session and host, as DESIGN.md defines them.
//!
//! Actor = `CHANT_ACTOR` if set, else git `user.name` (else `user.email`, else the OS user).
//! Session = `CHANT_SESSION` if set, else a fresh `sess_<random>` per command.
//! The pusher of a server hook = `GL_USER`, else `REMOTE_USER`, else `CHANT_PUSHER`, else
//! the OS user.
//!
//! These values come from the environment and from git config, i.e. from whoever started
//! the process, and they reach file names (the session names the run directory, the clone
//! and the run log), ref names, commit author lines and ledger entries. So they are parsed
//! once, here, into types that cannot hold a hostile value ([`Actor`], [`Session`],
//! [`Host`], [`Email`]); a bad one is an [`IdentityError`] (exit 2) naming the variable or
//! key it came from, before anything is written. This module must never fall back silently
//! from a value that was set but is invalid.

use std::fmt;

use crate::clock;

/// An identity value that cannot be used, and where it came from.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}={value} cannot be used as {what}: {reason}; {fix}")]
pub struct IdentityError {
    /// The variable or git config key the value came from (`CHANT_SESSION`, `user.name`).
    pub source_name: String,
    /// The value, escaped and shortened for the terminal.
    pub value: String,
    pub what: &'static str,
    pub reason: String,
    pub fix: &'static str,
}

impl IdentityError {
    /// Bad input: exit 2.
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// Longest actor name, e-mail and host name accepted, in bytes.
const MAX_NAME: usize = 128;
/// Longest session accepted (a Kubernetes label value holds 63).
const MAX_SESSION: usize = 63;

/// Characters that render as (or are normalised to) a path separator.
const SLASH_LOOKALIKES: &[char] = &[
    '/', '\\', '\u{2215}', '\u{2044}', '\u{FF0F}', '\u{29F8}', '\u{2571}', '\u{FF3C}', '\u{29F5}',
    '\u{2216}', '\u{FE68}',
];

/// Invisible characters that change how text reads (bidi controls, zero-width marks).
fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// The value as the terminal should show it: escaped, at most 80 characters.
fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if value.chars().count() > 80 {
        out.push('…');
    }
    format!("\"{out}\"")
}

/// Checks a display name (actor, pusher): printable, no path syntax, no `<`/`>`.
fn check_name(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("it is empty".into());
    }
    if text.len() > MAX_NAME {
        return Err(format!("it is longer than {MAX_NAME} bytes"));
    }
    if text.trim() != text {
        return Err("it starts or ends with white space".into());
    }
    if let Some(c) = text.chars().find(|c| c.is_control() || is_format_char(*c)) {
        return Err(format!(
            "it holds the control or invisible character {}",
            c.escape_unicode()
        ));
    }
    if let Some(c) = text.chars().find(|c| SLASH_LOOKALIKES.contains(c)) {
        return Err(format!(
            "it holds '{c}', a path separator or a look-alike of one"
        ));
    }
    if text.contains("..") {
        return Err("it holds '..'".into());
    }
    if let Some(c) = text.chars().find(|c| matches!(c, '<' | '>')) {
        return Err(format!(
            "it holds '{c}', which git author lines cannot carry"
        ));
    }
    Ok(())
}

/// Who acts: the ledger's `actor` and the author name of chant's commits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor(String);

impl Actor {
    /// Parses an actor that came from `source_name` (a variable or git config key).
    pub fn parse(source_name: &str, text: &str) -> Result<Actor, IdentityError> {
        check_name(text).map_err(|reason| IdentityError {
            source_name: source_name.to_string(),
            value: shown(text),
            what: "an actor name",
            reason,
            fix: "use a plain name such as `alex` or `Alex Smith` (set CHANT_ACTOR or git config user.name)",
        })?;
        Ok(Actor(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The e-mail of chant's commits' author lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(source_name: &str, text: &str) -> Result<Email, IdentityError> {
        let reason = if text.is_empty() {
            Some("it is empty".to_string())
        } else if text.len() > MAX_NAME {
            Some(format!("it is longer than {MAX_NAME} bytes"))
        } else {
            text.chars()
                .find(|c| {
                    c.is_control() || c.is_whitespace() || is_format_char(*c) || "<>".contains(*c)
                })
                .map(|c| format!("it holds {}", c.escape_unicode()))
        };
        match reason {
            None => Ok(Email(text.to_string())),
            Some(reason) => Err(IdentityError {
                source_name: source_name.to_string(),
                value: shown(text),
                what: "an e-mail address",
                reason,
                fix: "use an address such as alex@example.com (CHANT_ACTOR_EMAIL or git config user.email)",
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A session id: safe as a file name, a ref name component and a Kubernetes label value.
///
/// 1–63 characters of `A-Z a-z 0-9 . _ -`, beginning and ending with a letter or digit,
/// no `..`, not ending in `.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Session(String);

impl Session {
    pub fn parse(source_name: &str, text: &str) -> Result<Session, IdentityError> {
        let first_last_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        let reason = if text.is_empty() {
            Some("it is empty".to_string())
        } else if text.len() > MAX_SESSION {
            Some(format!("it is longer than {MAX_SESSION} characters"))
        } else if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            Some(format!(
                "'{}' is not allowed (a session uses A-Z, a-z, 0-9, '.', '_' and '-')",
                c.escape_debug()
            ))
        } else if !first_last_ok(text.chars().next()) || !first_last_ok(text.chars().last()) {
            Some("it must begin and end with a letter or digit".to_string())
        } else if text.contains("..") {
            Some("it holds '..'".to_string())
        } else if text.to_ascii_lowercase().ends_with(".lock") {
            Some("it ends in '.lock'".to_string())
        } else {
            None
        };
        match reason {
            None => Ok(Session(text.to_string())),
            Some(reason) => Err(IdentityError {
                source_name: source_name.to_string(),
                value: shown(text),
                what: "a session id",
                reason,
                fix: "use something like `sess_ci_1234` (letters, digits, '.', '_', '-'), or unset it for a fresh one",
            }),
        }
    }

    /// A fresh `sess_<random>`.
    pub fn fresh() -> Session {
        Session(format!("sess_{}", clock::random_base36(12)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// This machine's name as recorded (ledger `host`, lock files, container labels).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host(String);

impl Host {
    /// Parses a host name (letters, digits, `.`, `-`, `_`; at most 128 bytes).
    pub fn parse(source_name: &str, text: &str) -> Result<Host, IdentityError> {
        let ok = !text.is_empty()
            && text.len() <= MAX_NAME
            && !text.contains("..")
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if ok {
            Ok(Host(text.to_string()))
        } else {
            Err(IdentityError {
                source_name: source_name.to_string(),
                value: shown(text),
                what: "a host name",
                reason: "a host name uses letters, digits, '.', '-' and '_' only".into(),
                fix: "set a plain host name (hostname(1))",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<std::path::Path> for $t {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
display_as_str!(Actor, Email, Session, Host);

/// The identity recorded in ledger entries and commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub actor: Actor,
    /// The e-mail used as commit author/committer address.
    pub email: Email,
    pub session: Session,
    pub host: Host,
}

/// A variable that is set: its value, or an error naming it when it is not UTF-8.
fn env_var(key: &str) -> Result<Option<String>, IdentityError> {
    match std::env::var_os(key) {
        None => Ok(None),
        Some(v) => v.into_string().map(Some).map_err(|v| IdentityError {
            source_name: key.to_string(),
            value: shown(&v.to_string_lossy()),
            what: "an identity",
            reason: "it is not valid UTF-8".into(),
            fix: "set it to plain text, or unset it",
        }),
    }
}

impl Identity {
    /// Resolves the identity from the environment and `repo`'s git config; a value that is
    /// set but unusable is an error naming where it came from.
    pub fn resolve(repo: Option<&git2::Repository>) -> Result<Identity, IdentityError> {
        let config = repo
            .and_then(|r| r.config().ok())
            .or_else(|| git2::Config::open_default().ok());
        let get = |key: &str| {
            config
                .as_ref()
                .and_then(|c| c.get_string(key).ok())
                .filter(|v| !v.trim().is_empty())
        };
        let actor = match env_var("CHANT_ACTOR")? {
            Some(v) => Actor::parse("CHANT_ACTOR", &v)?,
            None => match (get("user.name"), get("user.email")) {
                (Some(name), _) => Actor::parse("user.name", &name)?,
                (None, Some(email)) => Actor::parse("user.email", &email)?,
                (None, None) => os_actor()?,
            },
        };
        let email = match env_var("CHANT_ACTOR_EMAIL")? {
            Some(v) => Email::parse("CHANT_ACTOR_EMAIL", &v)?,
            None => match get("user.email") {
                Some(v) => Email::parse("user.email", &v)?,
                None => Email(format!("{}@localhost", sanitize(actor.as_str()))),
            },
        };
        let session = match env_var("CHANT_SESSION")? {
            Some(v) => Session::parse("CHANT_SESSION", &v)?,
            None => Session::fresh(),
        };
        Ok(Identity {
            actor,
            email,
            session,
            host: host()?,
        })
    }
}

/// The pusher a server hook acts for: `GL_USER` (gitolite), else `REMOTE_USER`, else
/// `CHANT_PUSHER`, else the OS user. A variable that is set but empty or hostile is an
/// error naming it (the push is refused), never a fall-through to the next one.
pub fn pusher() -> Result<Actor, IdentityError> {
    for key in ["GL_USER", "REMOTE_USER", "CHANT_PUSHER"] {
        if let Some(v) = env_var(key)? {
            return Actor::parse(key, &v);
        }
    }
    os_actor()
}

/// The OS user as an actor (`USER`, else `LOGNAME`, else `uid<N>`).
fn os_actor() -> Result<Actor, IdentityError> {
    for key in ["USER", "LOGNAME"] {
        if let Some(v) = env_var(key)?.filter(|v| !v.is_empty()) {
            return Actor::parse(key, &v);
        }
    }
    Ok(Actor(os_user()))
}

/// The OS user running this process, as text (lock files); never fails.
pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| check_name(u).is_ok())
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            format!("uid{uid}")
        })
}

/// This machine's host name, parsed.
pub fn host() -> Result<Host, IdentityError> {
    Host::parse("the host name (gethostname)", &hostname())
}

/// This machine's host name as the system reports it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_that_could_name_another_path_or_ref_are_refused() {
        for bad in [
            "",
            "..",
            "../x",
            "/abs",
            "a/b",
            "a\\b",
            "x\ny",
            "x\ty",
            "x\u{1b}[31m",
            "a..b",
            ".hidden",
            "-flag",
            "trailing.",
            "x.lock",
            "X.LOCK",
            "a\u{2215}b",
            "a\u{FF0F}b",
            "sess\u{200B}1",
            "é",
            " sess",
            &"a".repeat(64),
        ] {
            let err = Session::parse("CHANT_SESSION", bad).expect_err(bad);
            assert_eq!(err.source_name, "CHANT_SESSION");
        }
        for good in ["sess_abc123", "ci-1234.5", "A", &"a".repeat(63)] {
            Session::parse("CHANT_SESSION", good).expect(good);
        }
    }

    #[test]
    fn actors_that_could_forge_a_line_or_a_path_are_refused() {
        for bad in [
            "",
            "   ",
            "../x",
            "/abs",
            "..",
            "alex\nspec_approved - by boss",
            "alex\r",
            "a\u{0}b",
            "mallory <evil@x>",
            "a\u{202E}b",
            "a\u{2044}b",
            " alex",
            &"a".repeat(129),
        ] {
            let err = Actor::parse("CHANT_ACTOR", bad).expect_err(bad);
            assert!(err.to_string().contains("CHANT_ACTOR="), "{err}");
        }
        for good in [
            "alex",
            "Alex Smith",
            "José Müller",
            "ci-bot@example.com",
            "O'Brien",
        ] {
            Actor::parse("CHANT_ACTOR", good).expect(good);
        }
    }

    #[test]
    fn emails_with_line_breaks_or_brackets_are_refused() {
        for bad in ["", "a\nb@x", "a b@x", "<a@x>", "a@x\u{0}"] {
            Email::parse("CHANT_ACTOR_EMAIL", bad).expect_err(bad);
        }
        Email::parse("CHANT_ACTOR_EMAIL", "alex@example.com").expect("plain");
    }
}
