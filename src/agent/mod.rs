//! Agent adapters: what makes a known agent CLI work natively under `git chant work`.
//!
//! An [`Agent`] answers, for one run at one sandbox level: the argv (non-interactive,
//! machine-readable output, the permission mode right for the level), the files chant writes
//! into the clone for the agent's own permission system (never landed), first-run and trust
//! state in the run's private HOME, the user's variables it needs (credentials, endpoints,
//! passed when set, masked, `agent.secrets.hide` still wins), what the prompt says about
//! running commands, and an [`Observer`] that reads its output (session, turns, tokens, cost,
//! refusals, errors) for the ledger. Which of its variables are API keys ([`Agent::api_keys`])
//! decides what chant injects by default instead of handing over ([`keys`]).
//!
//! The adapter is `agent.kind`, or recognised from the program name of `agent.command`:
//! `claude` → [`claude::Claude`], `codex` → [`codex::Codex`], `gemini` → [`gemini::Gemini`],
//! `aider` → [`aider::Aider`], `opencode` → [`opencode::Opencode`]; anything else →
//! [`custom::Custom`], which runs the argv as given (today's behaviour). Adding an agent
//! touches its own file and [`for_config`].
//!
//! This module never runs a program, never prints and never records: `work` does, with what
//! the adapter returns.

pub mod aider;
pub mod claude;
pub mod codex;
pub mod committed;
pub mod custom;
pub mod endpoint;
pub mod gemini;
pub mod keys;
pub mod lines;
pub mod opencode;
pub mod settings;

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::{AgentKind, Config, SandboxLevel};
use crate::sandbox::Stream;

/// A file in the run's private HOME where an adapter's hooks write what went wrong when
/// they could not reach chant's gate without stopping the agent; `work` reports its lines
/// after the run (a hook's stderr is not shown by every agent).
pub const HOOK_ERRORS: &str = ".chant-hook-errors";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{}: {reason}; fix or remove it (chant merges it into the agent's settings for the run)", .path)]
    ProjectSettings { path: String, reason: String },
}

impl AgentError {
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// One agent CLI's adapter.
pub trait Agent: Send + Sync {
    fn kind(&self) -> AgentKind;

    /// The argv template to run at `level` (placeholders not yet substituted).
    fn command(&self, template: &[String], level: SandboxLevel) -> Vec<String>;

    /// Files written into the clone before the run, as (path in the clone, text); `clone`
    /// is read for a committed project config to merge. They are never landed.
    fn workspace_files(
        &self,
        clone: &Path,
        level: SandboxLevel,
    ) -> Result<Vec<(String, String)>, AgentError>;

    /// Files written into the run's private HOME, as (path in HOME, text); `workspace` is the
    /// clone as the agent sees it.
    fn home_files(&self, workspace: &Path, level: SandboxLevel) -> Vec<(String, String)>;

    /// The user's variables the agent needs when they are set (credentials, endpoints).
    fn credential_names(&self) -> &'static [&'static str];

    /// The variables among [`Agent::credential_names`] that are settings, not secrets:
    /// base URLs, model names, switches, regions, project ids. They reach the agent and are
    /// masked in what chant prints like the rest, but an agent's change may hold them
    /// (see [`Agent::is_setting`]).
    fn setting_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// True when the variable `name` holding `value` is one of the adapter's settings and
    /// carries no credential itself (a URL with `user:pass@` or a key in its query stays a
    /// secret: [`settings::carries_credential`]).
    fn is_setting(&self, name: &str, value: &str) -> bool {
        self.setting_names().contains(&name) && !settings::carries_credential(value)
    }

    /// The hosts (`host` or `host:port`) of the model API the agent talks to, given the
    /// user's variables in `secrets`; empty for an agent chant knows nothing about.
    fn api_hosts(&self, secrets: &crate::secrets::Secrets) -> Vec<String>;

    /// The variables among [`Agent::credential_names`] that are API keys: sent by the agent
    /// to its [`Agent::api_hosts`] in a request header, over HTTPS, and needed for nothing
    /// else, given the user's variables in `secrets`. Chant injects these by default where
    /// its proxy is the only way out ([`keys::default_injection`]): the agent holds a
    /// placeholder, the proxy puts the key in toward the API hosts only.
    ///
    /// By default: the names ending in `_API_KEY` or `_AUTH_TOKEN`, and none when one of the
    /// `*_BASE_URL` variables the user set is plain `http://` (the proxy puts values in
    /// only on TLS connections, so a placeholder sent over plain HTTP would not work). An
    /// adapter overrides this when its keys are named otherwise, or are not plain header
    /// values (a key that signs requests, such as AWS's, cannot be injected).
    fn api_keys(&self, secrets: &crate::secrets::Secrets) -> Vec<&'static str> {
        keys::by_convention(self.credential_names(), secrets)
    }

    /// Variables chant sets for the agent at `level`.
    fn fixed_env(&self, level: SandboxLevel) -> Vec<(String, String)>;

    /// The prompt's line about running shell commands at `level`.
    fn commands_rule(&self, level: SandboxLevel) -> &'static str;

    /// A fresh reader of one run's output.
    fn observer(&self) -> Box<dyn Observer>;

    /// What the adapter adds once the run's paths and the variables the agent gets are
    /// known (config that depends on them: an endpoint, a committed project config).
    fn run_setup(&self, _run: &RunInputs<'_>) -> Result<RunSetup, AgentError> {
        Ok(RunSetup::default())
    }
}

/// What [`Agent::run_setup`] reads.
pub struct RunInputs<'a> {
    /// The clone on this machine (read for a committed project config; chant's own
    /// checkout of the base tree, before the agent starts).
    pub clone: &'a Path,
    /// The agent's HOME as the agent sees it.
    pub home: &'a Path,
    /// The variables the agent gets (exposed and credential variables, `hide` applied).
    pub exposed: &'a [(String, String)],
    pub level: SandboxLevel,
}

/// What [`Agent::run_setup`] adds to the run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunSetup {
    /// Variables for the agent.
    pub env: Vec<(String, String)>,
    /// Files written into the run's private HOME, as (path in HOME, text).
    pub home_files: Vec<(String, String)>,
    /// Lines for the terminal (e.g. that a committed config was merged).
    pub notices: Vec<String>,
}

/// Reads an agent's (already masked) output as it arrives.
pub trait Observer: Send {
    /// Sees `bytes`; returns what the terminal shows instead (None: the bytes themselves).
    /// The run log always gets the bytes as they came.
    fn observe(&mut self, stream: Stream, bytes: &[u8]) -> Option<Vec<u8>>;

    /// What the output said, once the program has ended.
    fn summary(&mut self) -> Summary;
}

/// What an agent's output said about its run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Keys for `spec_completed` / `spec_failed` details (session id, turns, tokens, cost,
    /// refusals), integers and strings only.
    pub details: Map<String, Value>,
    /// The agent said its run failed: why, in one line.
    pub error: Option<String>,
    /// Tool calls the agent's permission system (or chant's gate) refused.
    pub refusals: u64,
}

/// The adapter for `config` (see the module docs for how it is chosen).
pub fn for_config(config: &Config) -> Box<dyn Agent> {
    let kind = config
        .agent
        .kind
        .unwrap_or_else(|| recognise(&config.agent_command()));
    match kind {
        AgentKind::Claude => Box::new(claude::Claude::new(config)),
        AgentKind::Custom => Box::new(custom::Custom::new(config)),
        AgentKind::Gemini => Box::new(gemini::Gemini::new(config)),
        AgentKind::Aider => Box::new(aider::Aider::new(config)),
        AgentKind::Codex => Box::new(codex::Codex::new(config)),
        AgentKind::Opencode => Box::new(opencode::Opencode::new(config)),
    }
}

/// The adapter a program name stands for.
pub fn recognise(template: &[String]) -> AgentKind {
    let program = template.first().map(String::as_str).unwrap_or_default();
    match program.rsplit('/').next().unwrap_or(program) {
        "claude" => AgentKind::Claude,
        "gemini" => AgentKind::Gemini,
        "aider" => AgentKind::Aider,
        "codex" => AgentKind::Codex,
        "opencode" => AgentKind::Opencode,
        _ => AgentKind::Custom,
    }
}

/// Whether an argv template hands the agent its prompt (`{prompt}` or `{prompt_file}` in
/// one of its arguments). An adapter whose CLI needs the prompt as an argument adds
/// `{prompt}` when the user's `agent.command` leaves it out (`[claude]`, `[codex]`), so that
/// naming the program is enough.
pub fn passes_prompt(template: &[String]) -> bool {
    template
        .iter()
        .any(|a| a.contains("{prompt}") || a.contains("{prompt_file}"))
}

/// An observer that reads nothing (agents whose output chant does not parse).
pub struct Silent;

impl Observer for Silent {
    fn observe(&mut self, _stream: Stream, _bytes: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn summary(&mut self) -> Summary {
        Summary::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_adapters_settings_are_among_its_variables_and_no_key_or_token_is_a_setting() {
        for (agent, credentials, settings) in [
            ("claude", claude::CREDENTIALS, claude::SETTING_VARS),
            ("codex", codex::CREDENTIALS, codex::SETTING_VARS),
            ("gemini", gemini::CREDENTIALS, gemini::SETTING_VARS),
            ("aider", aider::CREDENTIALS, aider::SETTING_VARS),
            ("opencode", opencode::CREDENTIALS, opencode::SETTING_VARS),
        ] {
            for name in settings {
                assert!(credentials.contains(name), "{agent}: {name}");
                for secret in ["KEY", "TOKEN", "SECRET", "HEADERS", "CREDENTIALS"] {
                    assert!(!name.contains(secret), "{agent}: {name} is a secret");
                }
            }
        }
    }

    #[test]
    fn claude_is_recognised_by_its_program_name_only() {
        let argv = |s: &str| vec![s.to_string(), "-p".to_string()];
        assert_eq!(recognise(&argv("claude")), AgentKind::Claude);
        assert_eq!(recognise(&argv("/usr/local/bin/claude")), AgentKind::Claude);
        assert_eq!(recognise(&argv("claude-wrapper")), AgentKind::Custom);
        assert_eq!(recognise(&argv("./agent.sh")), AgentKind::Custom);
        assert_eq!(recognise(&[]), AgentKind::Custom);
    }

    #[test]
    fn gemini_and_aider_are_recognised_by_their_program_names() {
        let argv = |s: &str| vec![s.to_string()];
        assert_eq!(recognise(&argv("gemini")), AgentKind::Gemini);
        assert_eq!(recognise(&argv("/usr/bin/gemini")), AgentKind::Gemini);
        assert_eq!(recognise(&argv("aider")), AgentKind::Aider);
        assert_eq!(recognise(&argv("/tmp/venv/bin/aider")), AgentKind::Aider);
        assert_eq!(recognise(&argv("gemini-cli")), AgentKind::Custom);
        assert_eq!(recognise(&argv("aider.sh")), AgentKind::Custom);
    }
}
