//! aider (`agent.kind: aider`, or `aider` in `agent.command`).
//!
//! aider has no permission system of its own: with `--yes-always` it applies every edit the
//! model writes, to any file (`--read` files and `.aiderignore` do not stop an edit of a file
//! the model names: checked in aider 0.86.2's `allowed_to_edit`), so at `none` and
//! `permissions` only chant's post-run policy check contains its edits; `docker`/`vm`
//! contain the rest. It never runs a shell command by itself: it only *offers* to run those
//! the model suggests, which needs an explicit yes that `--yes-always` does not give (and
//! chant adds `--no-suggest-shell-commands`, so it does not even offer).
//!
//! What chant does for it:
//! - argv: the template plus `--message-file {prompt_file}` when it has no message, and the
//!   flags that keep a run to the model's edits (each unless the template sets it or its
//!   `--no-` form): `--yes-always`, `--no-git` (chant owns the branch; aider would otherwise
//!   stage files and offer to edit `.gitignore`), `--no-auto-commits`, `--no-dirty-commits`,
//!   `--no-auto-lint` and `--no-auto-test` (aider would run linters and test commands itself,
//!   outside chant's gate), `--no-suggest-shell-commands`, `--no-detect-urls` (it would fetch
//!   URLs named in the prompt), `--no-check-update`, `--analytics-disable`,
//!   `--no-show-release-notes`, `--no-pretty`, `--no-fancy-input`, and its chat and input
//!   histories in `/dev/null` (they would be written into the clone).
//! - a committed `.aider.conf.yml` (aider reads it from the working directory) is replaced
//!   for the run by a copy holding only the keys in [`CONF_KEYS`] (model and edit-format
//!   choices; nothing that runs a command, loads a file of commands, sets variables or
//!   moves the API endpoint); a committed `.aider.model.settings.yml` or
//!   `.aider.model.metadata.json` (which can set a model's API base) is emptied for the run,
//!   and a committed `.env` (aider loads it over the environment: `AIDER_LOAD` there runs a
//!   file of `/run` commands at launch) is replaced by one that sets nothing. At kubernetes
//!   the pod's script writes these over its own clone.
//! - credentials: the variables of the providers aider (through litellm) talks to, when set.
//!   litellm reads `OPENAI_BASE_URL` itself (before `OPENAI_API_BASE`, which
//!   `--openai-api-base` sets), so the conventional variable needs no translation.
//! - environment: `LITELLM_LOCAL_MODEL_COST_MAP=True` (litellm would otherwise fetch its
//!   price list from raw.githubusercontent.com at every start).
//! - output: [`AiderOutput`] reads its plain-text lines (model, edits applied, tokens, cost,
//!   errors).

use std::path::Path;

use serde_json::Map;

use super::{Agent, AgentError, Observer, Summary};
use crate::agent::lines::{first_line, Lines};
use crate::config::{AgentKind, Config, SandboxLevel};
use crate::sandbox::Stream;

/// The variables of the model APIs aider talks to, passed to it when set (and masked).
pub const CREDENTIALS: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "DEEPSEEK_API_KEY",
    "OPENROUTER_API_KEY",
    "AIDER_MODEL",
];

/// The settings among [`CREDENTIALS`] (endpoints, model): masked in output but not searched
/// for in the agent's change; the rest are secrets.
pub const SETTING_VARS: &[&str] = &[
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "ANTHROPIC_BASE_URL",
    "AIDER_MODEL",
];

/// Keys of a committed `.aider.conf.yml` kept for the run (see the module docs).
pub const CONF_KEYS: &[&str] = &[
    "model",
    "weak-model",
    "editor-model",
    "edit-format",
    "editor-edit-format",
    "architect",
    "map-tokens",
    "map-refresh",
    "max-chat-history-tokens",
    "cache-prompts",
    "reasoning-effort",
    "thinking-tokens",
    "encoding",
    "line-endings",
    "show-diffs",
    "stream",
];

/// aider's project config file, read from its working directory.
pub const CONF: &str = ".aider.conf.yml";
const MODEL_SETTINGS: &str = ".aider.model.settings.yml";
const MODEL_METADATA: &str = ".aider.model.metadata.json";
/// The `.env` aider loads from its working directory (and the git root) over the
/// environment, before parsing its arguments again: any `AIDER_*` there is an option (such
/// as `AIDER_LOAD`, a file of `/run` commands executed at launch), any other variable its
/// own (an API base). Replaced for the run by one that sets nothing.
pub const ENV: &str = ".env";
const ENV_TEXT: &str = "# Written by git chant for this run: aider reads no .env of the project.\n";

/// Flags chant adds (see the module docs), with the values some take.
const FLAGS: &[(&str, Option<&str>)] = &[
    ("--yes-always", None),
    ("--no-git", None),
    ("--no-auto-commits", None),
    ("--no-dirty-commits", None),
    ("--no-auto-lint", None),
    ("--no-auto-test", None),
    ("--no-suggest-shell-commands", None),
    ("--no-detect-urls", None),
    ("--no-check-update", None),
    ("--analytics-disable", None),
    ("--no-show-release-notes", None),
    ("--no-pretty", None),
    ("--no-fancy-input", None),
    ("--chat-history-file", Some("/dev/null")),
    ("--input-history-file", Some("/dev/null")),
];

pub struct Aider;

impl Aider {
    pub fn new(_config: &Config) -> Aider {
        Aider
    }
}

/// The committed `.aider.conf.yml` with only [`CONF_KEYS`] kept.
fn filtered_conf(text: &str) -> Result<String, AgentError> {
    let bad = |reason: String| AgentError::ProjectSettings {
        path: CONF.to_string(),
        reason,
    };
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| bad(format!("is not valid YAML ({e})")))?;
    let mut kept = serde_yaml_ng::Mapping::new();
    let mut dropped = Vec::new();
    match value {
        serde_yaml_ng::Value::Mapping(map) => {
            for (key, value) in map {
                match key.as_str() {
                    Some(k) if CONF_KEYS.contains(&k) => {
                        kept.insert(key, value);
                    }
                    Some(k) => dropped.push(k.to_string()),
                    None => dropped.push("(a key that is not a string)".into()),
                }
            }
        }
        serde_yaml_ng::Value::Null => {}
        _ => return Err(bad("is not a YAML mapping".into())),
    }
    let body = if kept.is_empty() {
        String::new()
    } else {
        serde_yaml_ng::to_string(&kept).map_err(|e| bad(e.to_string()))?
    };
    let note = if dropped.is_empty() {
        String::new()
    } else {
        format!("# dropped for this run: {}\n", dropped.join(", "))
    };
    Ok(format!(
        "# Written by git chant for this run: the committed file, keeping only model and\n\
         # edit-format choices.\n{note}{body}"
    ))
}

impl Agent for Aider {
    fn kind(&self) -> AgentKind {
        AgentKind::Aider
    }

    fn command(&self, template: &[String], _level: SandboxLevel) -> Vec<String> {
        let mut argv = template.to_vec();
        let has = |flag: &str| {
            template
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        let has_message = ["--message", "-m", "--msg", "--message-file", "-f"]
            .iter()
            .any(|f| has(f))
            || super::passes_prompt(template);
        if !has_message {
            argv.extend(["--message-file".into(), "{prompt_file}".into()]);
        }
        for (flag, value) in FLAGS {
            // `--no-git` is kept out by `--git`, `--yes-always` by itself only.
            let positive = flag.strip_prefix("--no-").map(|f| format!("--{f}"));
            if has(flag) || positive.as_deref().is_some_and(has) {
                continue;
            }
            argv.push(flag.to_string());
            if let Some(v) = value {
                argv.push(v.to_string());
            }
        }
        argv
    }

    fn workspace_files(
        &self,
        clone: &Path,
        _level: SandboxLevel,
    ) -> Result<Vec<(String, String)>, AgentError> {
        // A name the branch holds as anything but a regular file (a symlink aider would
        // follow) is replaced as well, by the neutral version.
        let present = |rel: &str| std::fs::symlink_metadata(clone.join(rel)).is_ok();
        let mut files = Vec::new();
        if let Some(text) = super::committed::read(clone, CONF)? {
            files.push((CONF.to_string(), filtered_conf(&text)?));
        } else if present(CONF) {
            files.push((CONF.to_string(), filtered_conf("")?));
        }
        if present(MODEL_SETTINGS) {
            files.push((MODEL_SETTINGS.to_string(), "[]\n".to_string()));
        }
        if present(MODEL_METADATA) {
            files.push((MODEL_METADATA.to_string(), "{}\n".to_string()));
        }
        if present(ENV) {
            files.push((ENV.to_string(), ENV_TEXT.to_string()));
        }
        Ok(files)
    }

    fn home_files(&self, _workspace: &Path, _level: SandboxLevel) -> Vec<(String, String)> {
        Vec::new()
    }

    fn credential_names(&self) -> &'static [&'static str] {
        CREDENTIALS
    }

    fn setting_names(&self) -> &'static [&'static str] {
        SETTING_VARS
    }

    fn api_hosts(&self, secrets: &crate::secrets::Secrets) -> Vec<String> {
        use super::endpoint::host_of;
        let openai = secrets
            .get("OPENAI_BASE_URL")
            .or_else(|| secrets.get("OPENAI_API_BASE"));
        let mut hosts = Vec::new();
        for (key, host) in [
            (
                "ANTHROPIC_API_KEY",
                host_of(secrets.get("ANTHROPIC_BASE_URL"), "api.anthropic.com"),
            ),
            (
                "GEMINI_API_KEY",
                "generativelanguage.googleapis.com".to_string(),
            ),
            ("DEEPSEEK_API_KEY", "api.deepseek.com".to_string()),
            ("OPENROUTER_API_KEY", "openrouter.ai".to_string()),
        ] {
            if secrets.get(key).is_some() {
                hosts.push(host);
            }
        }
        // OpenAI's (or the base URL's) whenever its key is set, or nothing else is.
        if secrets.get("OPENAI_API_KEY").is_some() || openai.is_some() || hosts.is_empty() {
            hosts.insert(0, host_of(openai, "api.openai.com"));
        }
        hosts
    }

    fn fixed_env(&self, _level: SandboxLevel) -> Vec<(String, String)> {
        // litellm would fetch its model price list from raw.githubusercontent.com at start;
        // the copy it ships is enough.
        vec![("LITELLM_LOCAL_MODEL_COST_MAP".into(), "True".into())]
    }

    fn commands_rule(&self, _level: SandboxLevel) -> &'static str {
        "- Make the change by editing files only: shell commands are not run in this session.\n"
    }

    fn observer(&self) -> Box<dyn Observer> {
        Box::new(AiderOutput::default())
    }
}

/// What aider prints when it cannot authenticate or has no key.
const AUTH_SIGNS: &[&str] = &[
    "not able to authenticate you",
    "expects these environment variables",
    "no API keys were provided",
];

/// The reason recorded when aider has no (valid) credentials.
pub const NO_KEY_FIX: &str = "aider could not authenticate to its model API: set the key of \
the provider of your model (OPENAI_API_KEY, with OPENAI_BASE_URL for a gateway; or \
ANTHROPIC_API_KEY, GEMINI_API_KEY, …) in the environment, .env or a --secrets-from source; \
chant passes them to aider when set, masked, unless agent.secrets.hide names them";

/// aider's plain-text output, read line by line (stdout and stderr alike).
#[derive(Debug, Default)]
pub struct AiderOutput {
    out: Lines,
    model: Option<String>,
    requests: u64,
    sent: u64,
    received: u64,
    cost_micro_usd: Option<u64>,
    applied: std::collections::BTreeSet<String>,
    failed_edits: u64,
    auth: bool,
    error: Option<String>,
}

impl AiderOutput {
    fn line(&mut self, line: &str) {
        let line = line.trim();
        if AUTH_SIGNS.iter().any(|s| line.contains(s)) {
            self.auth = true;
        }
        let model = line
            .strip_prefix("Main model: ")
            .or_else(|| line.strip_prefix("Model: "));
        if let Some(rest) = model {
            if self.model.is_none() {
                let name = rest.split(" with ").next().unwrap_or(rest);
                self.model = Some(name.trim().to_string());
            }
        } else if let Some(file) = line.strip_prefix("Applied edit to ") {
            self.applied.insert(file.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("Tokens: ") {
            self.tokens(rest);
        } else if line.contains("SEARCH/REPLACE block failed to match")
            || line.contains("SearchReplaceNoExactMatch")
        {
            self.failed_edits += 1;
        } else if line.starts_with("litellm.") && line.contains("Error") {
            self.error = Some(first_line(line));
        }
    }

    /// `2.5k sent, 45 received. Cost: $0.0054 message, $0.0054 session.`
    fn tokens(&mut self, rest: &str) {
        self.requests += 1;
        let mut parts = rest.split(". Cost: ");
        let counts = parts.next().unwrap_or("");
        for part in counts.split(',') {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Some(n) = count(n) else { continue };
            match what.trim_end_matches('.') {
                "sent" => self.sent += n,
                "received" => self.received += n,
                _ => {}
            }
        }
        if let Some(cost) = parts.next() {
            let session = cost
                .split(',')
                .find(|p| p.contains("session"))
                .and_then(|p| p.trim().strip_prefix('$'))
                .and_then(|p| p.split_whitespace().next())
                .and_then(|p| p.parse::<f64>().ok());
            if let Some(usd) = session {
                self.cost_micro_usd = Some((usd * 1e6).round() as u64);
            }
        }
    }
}

/// A token count as aider prints it (`950`, `2.5k`, `12k`): approximate above 1000.
fn count(text: &str) -> Option<u64> {
    match text.strip_suffix('k') {
        Some(k) => k.parse::<f64>().ok().map(|n| (n * 1000.0).round() as u64),
        None => text.parse().ok(),
    }
}

impl Observer for AiderOutput {
    fn observe(&mut self, _stream: Stream, bytes: &[u8]) -> Option<Vec<u8>> {
        for line in self.out.feed(bytes) {
            self.line(&line);
        }
        None
    }

    fn summary(&mut self) -> Summary {
        if let Some(rest) = self.out.rest() {
            self.line(&rest);
        }
        let mut details = Map::new();
        if let Some(model) = &self.model {
            details.insert("agent_model".into(), model.clone().into());
        }
        details.insert("agent_requests".into(), self.requests.into());
        details.insert("agent_input_tokens".into(), self.sent.into());
        details.insert("agent_output_tokens".into(), self.received.into());
        if let Some(cost) = self.cost_micro_usd {
            details.insert("agent_cost_micro_usd".into(), cost.into());
        }
        details.insert(
            "agent_edits_applied".into(),
            (self.applied.len() as u64).into(),
        );
        details.insert("agent_edits_failed".into(), self.failed_edits.into());
        let error = if self.auth {
            Some(NO_KEY_FIX.to_string())
        } else if let Some(e) = &self.error {
            Some(format!("aider reported an error: {e}"))
        } else if self.applied.is_empty() && self.failed_edits > 0 {
            Some(format!(
                "aider could not apply the model's edits ({} failed, none applied; see the run log)",
                self.failed_edits
            ))
        } else {
            None
        };
        details.insert("agent_is_error".into(), error.is_some().into());
        Summary {
            details,
            error,
            refusals: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(template: &[&str]) -> Vec<String> {
        let t: Vec<String> = template.iter().map(|s| s.to_string()).collect();
        Aider.command(&t, SandboxLevel::Permissions)
    }

    #[test]
    fn the_argv_gets_the_prompt_file_and_the_flags_that_keep_it_to_edits() {
        let a = argv(&["aider", "--model", "openai/gpt-4.1"]);
        assert_eq!(
            &a[..5],
            [
                "aider",
                "--model",
                "openai/gpt-4.1",
                "--message-file",
                "{prompt_file}"
            ]
        );
        for flag in [
            "--yes-always",
            "--no-git",
            "--no-auto-lint",
            "--no-auto-test",
            "--no-suggest-shell-commands",
            "--no-detect-urls",
        ] {
            assert!(a.contains(&flag.to_string()), "{flag}: {a:?}");
        }
        assert!(a
            .windows(2)
            .any(|w| w == ["--chat-history-file", "/dev/null"]));
    }

    #[test]
    fn flags_the_user_wrote_are_kept_and_not_contradicted() {
        let a = argv(&["aider", "--message", "{prompt}", "--git", "--auto-lint"]);
        assert!(!a.contains(&"--message-file".to_string()), "{a:?}");
        assert!(!a.contains(&"--no-git".to_string()), "{a:?}");
        assert!(!a.contains(&"--no-auto-lint".to_string()), "{a:?}");
        assert!(a.contains(&"--no-auto-test".to_string()), "{a:?}");
    }

    #[test]
    fn a_template_naming_the_prompt_or_its_file_anywhere_gets_no_message_file() {
        for template in [
            &["aider", "--read", "{prompt_file}"][..],
            &["aider", "--message={prompt}"][..],
            &["aider", "--model", "x", "--msg", "{prompt}"][..],
        ] {
            let a = argv(template);
            assert!(!a.contains(&"--message-file".to_string()), "{a:?}");
        }
        assert!(argv(&["aider"]).contains(&"--message-file".to_string()));
    }

    #[test]
    fn a_committed_env_and_linked_configs_are_replaced_by_neutral_ones() {
        let tmp = tempfile::tempdir().expect("tmp");
        let c = tmp.path();
        let aider = Aider;
        assert!(aider
            .workspace_files(c, SandboxLevel::Kubernetes)
            .expect("files")
            .is_empty());
        std::fs::write(
            c.join(ENV),
            "AIDER_LOAD=cmds.txt\nOPENAI_API_BASE=http://evil\n",
        )
        .expect("write");
        std::fs::write(c.join("elsewhere.yml"), "load: cmds.txt\n").expect("write");
        std::os::unix::fs::symlink("elsewhere.yml", c.join(CONF)).expect("link");
        std::os::unix::fs::symlink("/nonexistent", c.join(MODEL_SETTINGS)).expect("link");
        let files = aider
            .workspace_files(c, SandboxLevel::Kubernetes)
            .expect("files");
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, [CONF, MODEL_SETTINGS, ENV]);
        for (rel, text) in &files {
            for never in ["load", "AIDER_LOAD", "evil"] {
                assert!(!text.contains(never), "{rel}: {text}");
            }
        }
    }

    #[test]
    fn a_committed_conf_keeps_only_model_choices() {
        let text = "model: openai/gpt-4.1\nedit-format: diff\nload: cmds.txt\n\
                    lint-cmd: sh -c evil\nauto-test: true\nopenai-api-base: http://evil\n\
                    set-env: [OPENAI_BASE_URL=http://evil]\n";
        let out = filtered_conf(text).expect("filters");
        assert!(out.contains("model: openai/gpt-4.1"), "{out}");
        assert!(out.contains("edit-format: diff"), "{out}");
        let kept: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out).expect("yaml");
        for key in [
            "load",
            "lint-cmd",
            "auto-test",
            "openai-api-base",
            "set-env",
        ] {
            assert!(kept.get(key).is_none(), "{key}: {out}");
        }
        assert!(filtered_conf("- a list").is_err());
        assert!(filtered_conf("").expect("empty").starts_with('#'));
    }

    #[test]
    fn the_output_becomes_the_runs_details() {
        let mut o = AiderOutput::default();
        let text = "Aider v0.86.2\nMain model: openai/gpt-4.1 with diff edit format\n\
                    Applied edit to hello.txt\n\
                    Tokens: 2.5k sent, 45 received. Cost: $0.0054 message, $0.0054 session.\n\
                    Tokens: 950 sent, 5 received. Cost: $0.0020 message, $0.0074 session.\n";
        let (a, b) = text.as_bytes().split_at(40);
        assert_eq!(o.observe(Stream::Stdout, a), None);
        o.observe(Stream::Stdout, b);
        let s = o.summary();
        assert_eq!(s.error, None);
        assert_eq!(s.details["agent_model"], "openai/gpt-4.1");
        assert_eq!(s.details["agent_requests"], 2);
        assert_eq!(s.details["agent_input_tokens"], 3450);
        assert_eq!(s.details["agent_output_tokens"], 50);
        assert_eq!(s.details["agent_cost_micro_usd"], 7400);
        assert_eq!(s.details["agent_edits_applied"], 1);
    }

    #[test]
    fn auth_errors_and_edits_that_never_applied_are_errors() {
        let mut o = AiderOutput::default();
        o.observe(
            Stream::Stderr,
            b"The API provider is not able to authenticate you. Check your API key.\n",
        );
        assert!(o
            .summary()
            .error
            .is_some_and(|e| e.contains("OPENAI_API_KEY")));
        let mut o = AiderOutput::default();
        o.observe(
            Stream::Stdout,
            b"# 1 SEARCH/REPLACE block failed to match!\n",
        );
        assert!(o
            .summary()
            .error
            .is_some_and(|e| e.contains("could not apply")));
        let mut o = AiderOutput::default();
        o.observe(
            Stream::Stdout,
            b"litellm.NotFoundError: OpenAIException - model not found\n",
        );
        assert!(o
            .summary()
            .error
            .is_some_and(|e| e.contains("NotFoundError")));
    }

    #[test]
    fn the_api_hosts_follow_the_keys_that_are_set() {
        let none = crate::secrets::Secrets::default();
        assert_eq!(Aider.api_hosts(&none), ["api.openai.com"]);
    }
}
