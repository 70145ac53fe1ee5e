//! `codex exec --json` output: one JSON event per line (`thread.started` with the thread id,
//! `turn.started`, `item.started`/`item.completed` for messages, commands and file changes,
//! `turn.completed` with token usage, `turn.failed`, `error`). Read for a compact view on
//! the terminal and for the run's summary: session (thread) id, turns, tokens, commands,
//! refusals, and whether Codex reported an error. Codex reports no cost.
//!
//! The bytes reaching it are already masked; lines that are not JSON pass through as they are.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::agent::lines::{first_line, Lines};
use crate::agent::{Observer, Summary};
use crate::sandbox::Stream;

/// The reason recorded when Codex has no usable credentials.
pub const NOT_LOGGED_IN_FIX: &str = "Codex has no usable API key: set OPENAI_API_KEY \
(OPENAI_BASE_URL for a gateway or another endpoint; CODEX_API_KEY also works) in the \
environment, .env or a --secrets-from source; chant passes them to Codex when set, masked, \
unless agent.secrets.hide names them";

/// What Codex says when the key is missing or refused.
const AUTH_ERRORS: &[&str] = &[
    "401 Unauthorized",
    "Missing environment variable",
    "OPENAI_API_KEY",
    "Not logged in",
    "not logged in",
    "invalid_api_key",
];

/// What a refused command or edit looks like in an item (the gate hook's reason, Codex's
/// own rules, its sandbox declining).
const REFUSED: &[&str] = &[
    "chant: command refused",
    "forbidden by",
    "blocked by",
    "rejected by",
    "declined",
];

/// How Codex logs a call a `PreToolUse` hook blocked (on stderr; no JSON event).
const HOOK_BLOCKED: &str = "blocked by PreToolUse hook";

/// Codex's warning about the flag chant itself passes; not shown on the terminal.
const HOOK_TRUST_WARNING: &str = "--dangerously-bypass-hook-trust";

/// The `--json` reader of one run.
#[derive(Debug, Default)]
pub struct ExecJson {
    out: Lines,
    err: Lines,
    /// Calls the gate hook blocked (Codex logs each on stderr).
    hook_refusals: u64,
    thread: Option<String>,
    turns: u64,
    input_tokens: u64,
    cached_input_tokens: u64,
    output_tokens: u64,
    commands: u64,
    /// Items refused, by item id (an item is seen started and completed).
    refused: BTreeSet<String>,
    failed: Option<String>,
    auth_error: bool,
    completed: bool,
}

impl ExecJson {
    /// One whole line of stdout: what to show for it (None: nothing).
    fn line(&mut self, line: &str) -> Option<String> {
        if line.trim().is_empty() {
            return None;
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            self.note_auth(line);
            return Some(line.to_string());
        };
        match event["type"].as_str().unwrap_or("") {
            "thread.started" => {
                self.thread = event["thread_id"].as_str().map(str::to_string);
                Some(format!(
                    "codex: session {}",
                    self.thread.as_deref().unwrap_or("?")
                ))
            }
            "turn.started" => {
                self.turns += 1;
                None
            }
            "turn.completed" => {
                self.completed = true;
                let usage = &event["usage"];
                self.input_tokens += usage["input_tokens"].as_u64().unwrap_or(0);
                self.cached_input_tokens += usage["cached_input_tokens"].as_u64().unwrap_or(0);
                self.output_tokens += usage["output_tokens"].as_u64().unwrap_or(0);
                Some(format!(
                    "codex: turn {} done: {} input / {} output tokens, {} refusal(s)",
                    self.turns,
                    self.input_tokens,
                    self.output_tokens,
                    self.refused.len()
                ))
            }
            "turn.failed" => {
                let message = event["error"]["message"]
                    .as_str()
                    .unwrap_or("no reason given");
                self.note_auth(message);
                self.failed = Some(first_line(message));
                Some(format!("codex: the turn failed: {}", first_line(message)))
            }
            "error" => {
                // Retries ("Reconnecting…") come as errors too; the last one that ends the
                // run is followed by `turn.failed`.
                let message = event["message"].as_str().unwrap_or("");
                self.note_auth(message);
                Some(format!("codex: {}", first_line(message)))
            }
            "item.started" | "item.completed" => {
                self.item(&event["item"], event["type"] == "item.completed")
            }
            _ => None,
        }
    }

    fn stderr_line(&mut self, line: &str) {
        self.note_auth(line);
        if line.contains(HOOK_BLOCKED) {
            self.hook_refusals += 1;
            self.refused
                .insert(format!("(hook) {}", self.hook_refusals));
        }
    }

    fn note_auth(&mut self, text: &str) {
        if AUTH_ERRORS.iter().any(|e| text.contains(e)) {
            self.auth_error = true;
        }
    }

    fn item(&mut self, item: &Value, done: bool) -> Option<String> {
        let id = item["id"].as_str().unwrap_or("").to_string();
        let status = item["status"].as_str().unwrap_or("");
        match item["type"].as_str().unwrap_or("") {
            "command_execution" => {
                let command = first_line(item["command"].as_str().unwrap_or(""));
                if !done {
                    self.commands += 1;
                    return Some(format!("codex: [turn {}] $ {command}", self.turns));
                }
                let output = item["aggregated_output"].as_str().unwrap_or("");
                if status == "declined" || REFUSED.iter().any(|r| output.contains(r)) {
                    self.refused.insert(id);
                    return Some(format!("codex: refused: {command}: {}", reason(output)));
                }
                match item["exit_code"].as_i64() {
                    Some(0) | None => None,
                    Some(code) => Some(format!("codex: exit {code}: {command}")),
                }
            }
            "file_change" if done => {
                let paths: Vec<String> = item["changes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{} {}",
                            c["kind"].as_str().unwrap_or("?"),
                            c["path"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                if status == "failed" || status == "declined" {
                    self.refused.insert(id);
                    return Some(format!("codex: edit refused: {}", paths.join(", ")));
                }
                Some(format!(
                    "codex: [turn {}] edit {}",
                    self.turns,
                    paths.join(", ")
                ))
            }
            "agent_message" if done => {
                let text = first_line(item["text"].as_str().unwrap_or(""));
                (!text.is_empty()).then(|| format!("codex: {text}"))
            }
            "error" if done => {
                let message = item["message"].as_str().unwrap_or("");
                self.note_auth(message);
                if message.contains(HOOK_TRUST_WARNING) {
                    return None;
                }
                Some(format!("codex: warning: {}", first_line(message)))
            }
            _ => None,
        }
    }
}

impl Observer for ExecJson {
    fn observe(&mut self, stream: Stream, bytes: &[u8]) -> Option<Vec<u8>> {
        if stream == Stream::Stderr {
            // A call the hook blocked leaves no JSON event: Codex logs it here.
            for line in self.err.feed(bytes) {
                self.stderr_line(&line);
            }
            return None;
        }
        let mut shown = String::new();
        for line in self.out.feed(bytes) {
            if let Some(s) = self.line(&line) {
                shown.push_str(&s);
                shown.push('\n');
            }
        }
        Some(shown.into_bytes())
    }

    fn summary(&mut self) -> Summary {
        if let Some(rest) = self.out.rest() {
            self.line(&rest);
        }
        if let Some(rest) = self.err.rest() {
            self.stderr_line(&rest);
        }
        let refusals = self.refused.len() as u64;
        let mut details = Map::new();
        if let Some(thread) = &self.thread {
            details.insert("agent_session_id".into(), thread.clone().into());
        }
        for (key, value) in [
            ("agent_turns", self.turns),
            ("agent_input_tokens", self.input_tokens),
            ("agent_cached_input_tokens", self.cached_input_tokens),
            ("agent_output_tokens", self.output_tokens),
            ("agent_commands", self.commands),
            ("agent_refusals", refusals),
        ] {
            details.insert(key.into(), value.into());
        }
        let is_error = self.failed.is_some() || !self.completed;
        details.insert("agent_is_error".into(), is_error.into());
        let error = if self.auth_error && is_error {
            Some(NOT_LOGGED_IN_FIX.to_string())
        } else if let Some(failed) = &self.failed {
            Some(format!("Codex reported an error: {failed}"))
        } else if !self.completed {
            Some("Codex ended without completing its turn (see the run log)".to_string())
        } else {
            None
        };
        Summary {
            details,
            error,
            refusals,
        }
    }
}

/// The refusal's own line out of a command's output.
fn reason(output: &str) -> String {
    output
        .lines()
        .find_map(|l| {
            l.split_once("chant: command refused: ")
                .map(|(_, r)| r.trim().to_string())
        })
        .unwrap_or_else(|| first_line(output))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> (String, Summary) {
        let mut s = ExecJson::default();
        let mut shown = Vec::new();
        for l in lines {
            let bytes = format!("{l}\n").into_bytes();
            let (a, b) = bytes.split_at(bytes.len() / 2);
            shown.extend(s.observe(Stream::Stdout, a).unwrap_or_default());
            shown.extend(s.observe(Stream::Stdout, b).unwrap_or_default());
        }
        (String::from_utf8_lossy(&shown).into_owned(), s.summary())
    }

    #[test]
    fn a_finished_turn_becomes_the_runs_details() {
        let (shown, summary) = feed(&[
            r#"{"type":"thread.started","thread_id":"t-1"}"#,
            r#"{"type":"turn.started"}"#,
            r#"{"type":"item.started","item":{"id":"i1","type":"command_execution","command":"bash -lc 'touch x'","status":"in_progress"}}"#,
            r#"{"type":"item.completed","item":{"id":"i1","type":"command_execution","command":"bash -lc 'touch x'","aggregated_output":"chant: command refused: 'touch x' (touch *)","status":"failed"}}"#,
            r#"{"type":"item.completed","item":{"id":"i2","type":"file_change","changes":[{"path":"/c/a.txt","kind":"add"}],"status":"completed"}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":300,"cached_input_tokens":10,"output_tokens":60}}"#,
        ]);
        assert!(shown.contains("codex: session t-1"), "{shown}");
        assert!(
            shown.contains("codex: [turn 1] $ bash -lc 'touch x'"),
            "{shown}"
        );
        assert!(
            shown.contains("codex: refused: bash -lc 'touch x': 'touch x' (touch *)"),
            "{shown}"
        );
        assert!(shown.contains("edit add /c/a.txt"), "{shown}");
        assert_eq!(summary.error, None);
        assert_eq!(summary.refusals, 1);
        assert_eq!(summary.details["agent_session_id"], "t-1");
        assert_eq!(summary.details["agent_input_tokens"], 300);
        assert_eq!(summary.details["agent_output_tokens"], 60);
        assert_eq!(summary.details["agent_commands"], 1);
        assert_eq!(summary.details["agent_is_error"], false);
    }

    #[test]
    fn calls_the_hook_blocked_are_counted_from_stderr() {
        let mut s = ExecJson::default();
        let line = "2026-12-02T16:42:31Z ERROR codex_core::tools::router: error=Command blocked by PreToolUse hook: chant: command refused: 'touch x' (touch *). Command: touch x\n";
        let (a, b) = line.as_bytes().split_at(40);
        assert_eq!(s.observe(Stream::Stderr, a), None);
        s.observe(Stream::Stderr, b);
        s.observe(Stream::Stderr, line.as_bytes());
        s.observe(
            Stream::Stdout,
            b"{\"type\":\"turn.completed\",\"usage\":{}}\n",
        );
        assert_eq!(s.summary().refusals, 2);
    }

    #[test]
    fn a_failed_turn_no_turn_and_a_missing_key_are_errors() {
        let (_, s) = feed(&[
            r#"{"type":"turn.started"}"#,
            r#"{"type":"turn.failed","error":{"message":"stream error: 500"}}"#,
        ]);
        assert_eq!(
            s.error.as_deref(),
            Some("Codex reported an error: stream error: 500")
        );
        let (_, s) = feed(&[r#"{"type":"thread.started","thread_id":"x"}"#]);
        assert!(s.error.is_some_and(|e| e.contains("without completing")));
        let (_, s) = feed(&[
            r#"{"type":"turn.started"}"#,
            r#"{"type":"error","message":"unexpected status 401 Unauthorized: Missing bearer"}"#,
            r#"{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized"}}"#,
        ]);
        assert!(s.error.is_some_and(|e| e.contains("OPENAI_API_KEY")));
    }
}
