//! The agent's environment, built from nothing (DESIGN.md "Running a spec", step 5).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use super::SecretsError;

/// Names chant sets itself; an exposed secret may not replace them.
pub const RESERVED_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "CHANT_SPEC_ID",
    "CHANT_SESSION",
    "CHANT_CLONE",
    "CHANT_EXEC",
];

/// PATH when the host has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What chant tells the agent about its run.
#[derive(Debug, Clone)]
pub struct AgentContext<'a> {
    /// `CHANT_SPEC_ID`.
    pub spec_id: &'a str,
    /// `CHANT_SESSION`.
    pub session: &'a str,
    /// The sandboxed clone, as the agent sees it.
    pub clone: &'a Path,
    /// A private, empty home directory for this run (never the user's).
    pub home: &'a Path,
    /// The command gate program (`git-chant exec` wrapper) the agent should run commands
    /// through.
    pub exec: &'a Path,
    /// PATH for the agent. None: the host's PATH, else `/usr/local/bin:/usr/bin:/bin`. The
    /// host's PATH is used because the agent needs the toolchain the user installed
    /// (node, cargo, …); it names directories, not credentials.
    pub path: Option<OsString>,
    /// LANG. None: the host's, else `C.UTF-8`.
    pub lang: Option<OsString>,
    /// TERM. None: the host's, else `dumb`.
    pub term: Option<OsString>,
}

/// The agent's complete environment: PATH, HOME, LANG, TERM, `CHANT_SPEC_ID`,
/// `CHANT_SESSION`, `CHANT_CLONE`, `CHANT_EXEC`, plus `exposed` (from
/// [`super::Secrets::filtered`]) — nothing else. An exposed name in [`RESERVED_NAMES`] is
/// refused; an exposed `LANG` or `TERM` replaces the default. Use it with
/// `Command::env_clear().envs(…)`.
pub fn agent_env(
    ctx: &AgentContext<'_>,
    exposed: &[(String, String)],
) -> Result<BTreeMap<String, OsString>, SecretsError> {
    let host = |name: &str, given: &Option<OsString>, default: &str| -> OsString {
        given
            .clone()
            .or_else(|| std::env::var_os(name).filter(|v| !v.is_empty()))
            .unwrap_or_else(|| OsString::from(default))
    };
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), host("PATH", &ctx.path, DEFAULT_PATH));
    env.insert("HOME".to_string(), ctx.home.as_os_str().to_owned());
    env.insert("LANG".to_string(), host("LANG", &ctx.lang, "C.UTF-8"));
    env.insert("TERM".to_string(), host("TERM", &ctx.term, "dumb"));
    env.insert("CHANT_SPEC_ID".to_string(), ctx.spec_id.into());
    env.insert("CHANT_SESSION".to_string(), ctx.session.into());
    env.insert("CHANT_CLONE".to_string(), ctx.clone.as_os_str().to_owned());
    env.insert("CHANT_EXEC".to_string(), ctx.exec.as_os_str().to_owned());
    for (name, value) in exposed {
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err(SecretsError::Reserved { name: name.clone() });
        }
        env.insert(name.clone(), value.into());
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(home: &'a Path) -> AgentContext<'a> {
        AgentContext {
            spec_id: "2026-01-22-001-x7m",
            session: "sess_abc",
            clone: Path::new("/tmp/clone"),
            home,
            exec: Path::new("/usr/local/bin/chant-exec"),
            path: Some("/usr/bin:/bin".into()),
            lang: None,
            term: Some("xterm".into()),
        }
    }

    #[test]
    fn only_the_fixed_names_and_exposed_secrets() {
        let home = Path::new("/tmp/home");
        let env =
            agent_env(&ctx(home), &[("AGENT_API_KEY".into(), "sk-1".into())]).expect("builds");
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "AGENT_API_KEY",
                "CHANT_CLONE",
                "CHANT_EXEC",
                "CHANT_SESSION",
                "CHANT_SPEC_ID",
                "HOME",
                "LANG",
                "PATH",
                "TERM"
            ]
        );
        assert_eq!(env["HOME"], OsString::from("/tmp/home"));
        assert_eq!(env["PATH"], OsString::from("/usr/bin:/bin"));
        assert_eq!(
            env["CHANT_EXEC"],
            OsString::from("/usr/local/bin/chant-exec")
        );
        assert_eq!(env["AGENT_API_KEY"], OsString::from("sk-1"));
    }

    #[test]
    fn reserved_names_are_refused() {
        let home = Path::new("/tmp/home");
        for name in RESERVED_NAMES {
            let e = agent_env(&ctx(home), &[(name.to_string(), "x".into())]).expect_err(name);
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(name));
        }
        let env = agent_env(&ctx(home), &[("TERM".into(), "vt100".into())]).expect("TERM ok");
        assert_eq!(env["TERM"], OsString::from("vt100"));
    }
}
