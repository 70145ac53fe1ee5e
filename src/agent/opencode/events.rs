//! `opencode run --format json` output: one JSON event per line, each with `sessionID` and a
//! `part` (`step_start`, `tool_use` with the tool's state, `text`, `step_finish` with tokens
//! and cost, `error`). Read for a compact view on the terminal and for the run's summary:
//! session id, steps, tokens, cost, refusals, and whether opencode reported an error.
//!
//! The bytes reaching it are already masked; lines that are not JSON pass through as they are.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::agent::lines::{first_line, Lines};
use crate::agent::{Observer, Summary};
use crate::sandbox::Stream;

/// The reason recorded when opencode has no usable credentials.
pub const NOT_LOGGED_IN_FIX: &str = "opencode has no usable API key: set OPENAI_API_KEY \
(OPENAI_BASE_URL for a gateway or another endpoint) in the environment, .env or a \
--secrets-from source; chant passes them to opencode when set, masked, unless \
agent.secrets.hide names them";

/// The fix, when opencode fails in a way that may be a missing key.
const NOT_LOGGED_IN_HINT: &str = "set OPENAI_API_KEY (OPENAI_BASE_URL for another endpoint), \
which chant passes to opencode when set, masked, unless agent.secrets.hide names them";

/// What opencode says when the key is missing or refused.
const AUTH_ERRORS: &[&str] = &[
    "API key",
    "api key",
    "apiKey",
    "401",
    "Unauthorized",
    "ProviderAuthError",
];

/// What a refused tool call's error looks like (opencode's permission rules, chant's gate
/// plugin).
const REFUSED: &[&str] = &["chant: command refused", "permission", "rejected", "denied"];

/// The `--format json` reader of one run.
#[derive(Debug, Default)]
pub struct RunJson {
    out: Lines,
    session: Option<String>,
    steps: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost: f64,
    cost_seen: bool,
    tool_calls: u64,
    refused: BTreeSet<String>,
    error: Option<String>,
    /// The first `Error: …` line on stderr (a config or start-up failure).
    startup_error: Option<String>,
    auth_error: bool,
    finished: bool,
}

impl RunJson {
    fn line(&mut self, line: &str) -> Option<String> {
        if line.trim().is_empty() {
            return None;
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            return Some(line.to_string());
        };
        let mut shown = None;
        if self.session.is_none() {
            if let Some(s) = event["sessionID"].as_str() {
                self.session = Some(s.to_string());
                shown = Some(format!("opencode: session {s}"));
            }
        }
        let part = &event["part"];
        let this = match event["type"].as_str().unwrap_or("") {
            "step_start" => {
                self.steps += 1;
                None
            }
            "step_finish" => {
                self.finished = true;
                let tokens = &part["tokens"];
                self.input_tokens += tokens["input"].as_u64().unwrap_or(0);
                self.output_tokens += tokens["output"].as_u64().unwrap_or(0);
                if let Some(c) = part["cost"].as_f64() {
                    self.cost += c;
                    self.cost_seen = true;
                }
                None
            }
            "tool_use" => self.tool(part),
            "text" => {
                let text = first_line(part["text"].as_str().unwrap_or(""));
                (!text.is_empty()).then(|| format!("opencode: {text}"))
            }
            "error" => {
                let e = &event["error"];
                let message = e["data"]["message"]
                    .as_str()
                    .or(e["message"].as_str())
                    .map_or_else(|| e.to_string(), str::to_string);
                let name = e["name"].as_str().unwrap_or("error");
                let text = format!("{name}: {}", first_line(&message));
                if AUTH_ERRORS.iter().any(|a| text.contains(a)) {
                    self.auth_error = true;
                }
                self.error = Some(text.clone());
                Some(format!("opencode: error: {text}"))
            }
            _ => None,
        };
        match (shown, this) {
            (Some(a), Some(b)) => Some(format!("{a}\n{b}")),
            (a, b) => a.or(b),
        }
    }

    fn tool(&mut self, part: &Value) -> Option<String> {
        let tool = part["tool"].as_str().unwrap_or("?");
        let state = &part["state"];
        let id = part["callID"]
            .as_str()
            .or(part["id"].as_str())
            .unwrap_or("")
            .to_string();
        self.tool_calls += 1;
        let target = tool_target(&state["input"]);
        match state["status"].as_str().unwrap_or("") {
            "error" => {
                let error = state["error"].as_str().unwrap_or("");
                if REFUSED.iter().any(|r| error.contains(r)) {
                    self.refused.insert(id);
                    Some(format!(
                        "opencode: refused {tool} {target}: {}",
                        gate_reason(error)
                    ))
                } else {
                    Some(format!("opencode: {tool} failed: {}", first_line(error)))
                }
            }
            _ => Some(format!("opencode: [step {}] {tool} {target}", self.steps)),
        }
    }
}

impl Observer for RunJson {
    fn observe(&mut self, stream: Stream, bytes: &[u8]) -> Option<Vec<u8>> {
        if stream == Stream::Stderr {
            let text = String::from_utf8_lossy(bytes);
            if text.contains("ProviderAuthError") || text.contains("API key") {
                self.auth_error = true;
            }
            // opencode reports a config or start-up failure on stderr only.
            if self.error.is_none() {
                if let Some((_, rest)) = strip_ansi(&text).split_once("Error: ") {
                    self.startup_error = Some(first_line(rest));
                }
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
        let refusals = self.refused.len() as u64;
        let mut details = Map::new();
        if let Some(s) = &self.session {
            details.insert("agent_session_id".into(), s.clone().into());
        }
        for (key, value) in [
            ("agent_turns", self.steps),
            ("agent_input_tokens", self.input_tokens),
            ("agent_output_tokens", self.output_tokens),
            ("agent_tool_calls", self.tool_calls),
            ("agent_refusals", refusals),
        ] {
            details.insert(key.into(), value.into());
        }
        if self.cost_seen {
            // Entries hold no floats: the cost in millionths of a dollar.
            details.insert(
                "agent_cost_micro_usd".into(),
                ((self.cost * 1e6).round() as u64).into(),
            );
        }
        let is_error = self.error.is_some() || !self.finished;
        details.insert("agent_is_error".into(), is_error.into());
        let error = if self.auth_error && is_error {
            Some(NOT_LOGGED_IN_FIX.to_string())
        } else if let (0, Some(e)) = (self.steps, &self.error) {
            // Without a key opencode fails before its first step with a generic error.
            Some(format!(
                "opencode reported an error before its first step: {e}; if it has no credentials: {}",
                NOT_LOGGED_IN_HINT
            ))
        } else if let Some(e) = &self.error {
            Some(format!("opencode reported an error: {e}"))
        } else if let (false, Some(e)) = (self.finished, &self.startup_error) {
            Some(format!("opencode reported an error: {e}"))
        } else if !self.finished {
            Some("opencode ended without finishing a step (see the run log)".to_string())
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

fn tool_target(input: &Value) -> String {
    for key in ["filePath", "command", "pattern", "path", "url"] {
        if let Some(s) = input[key].as_str() {
            return first_line(s);
        }
    }
    String::new()
}

/// The gate's own line out of the plugin's error, else the error's first line.
fn gate_reason(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.split_once("chant: command refused: ")
                .map(|(_, r)| r.trim().to_string())
        })
        .unwrap_or_else(|| first_line(text))
}

/// `text` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> (String, Summary) {
        let mut s = RunJson::default();
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
    fn steps_become_the_runs_details() {
        let (shown, summary) = feed(&[
            r#"{"type":"step_start","sessionID":"ses_1","part":{"type":"step-start"}}"#,
            r#"{"type":"tool_use","sessionID":"ses_1","part":{"tool":"write","callID":"c1","state":{"status":"completed","input":{"filePath":"/c/a.txt"}}}}"#,
            r#"{"type":"tool_use","sessionID":"ses_1","part":{"tool":"bash","callID":"c2","state":{"status":"error","input":{"command":"touch x"},"error":"Error: chant: command refused: 'touch x' (touch *)"}}}"#,
            r#"{"type":"step_finish","sessionID":"ses_1","part":{"cost":0.0012,"tokens":{"input":100,"output":20}}}"#,
        ]);
        assert!(shown.contains("opencode: session ses_1"), "{shown}");
        assert!(
            shown.contains("opencode: [step 1] write /c/a.txt"),
            "{shown}"
        );
        assert!(
            shown.contains("refused bash touch x: 'touch x' (touch *)"),
            "{shown}"
        );
        assert_eq!(summary.error, None);
        assert_eq!(summary.refusals, 1);
        assert_eq!(summary.details["agent_session_id"], "ses_1");
        assert_eq!(summary.details["agent_input_tokens"], 100);
        assert_eq!(summary.details["agent_cost_micro_usd"], 1200);
    }

    #[test]
    fn an_error_event_and_a_run_without_steps_are_errors() {
        let (_, s) = feed(&[
            r#"{"type":"error","sessionID":"s","error":{"name":"APIError","data":{"message":"boom"}}}"#,
        ]);
        assert!(
            s.error.as_deref().is_some_and(|e| e.starts_with(
                "opencode reported an error before its first step: APIError: boom; if it has no credentials: set OPENAI_API_KEY"
            )),
            "{:?}",
            s.error
        );
        let (_, s) = feed(&[
            r#"{"type":"step_start","sessionID":"s","part":{}}"#,
            r#"{"type":"error","sessionID":"s","error":{"name":"APIError","data":{"message":"boom"}}}"#,
        ]);
        assert_eq!(
            s.error.as_deref(),
            Some("opencode reported an error: APIError: boom")
        );
        let mut s = RunJson::default();
        s.observe(
            Stream::Stderr,
            "\u{1b}[91m\u{1b}[1mError: \u{1b}[0mConfiguration is invalid at X\n".as_bytes(),
        );
        assert_eq!(
            s.summary().error.as_deref(),
            Some("opencode reported an error: Configuration is invalid at X")
        );
        let (_, s) = feed(&["not json"]);
        assert!(s.error.is_some_and(|e| e.contains("without finishing")));
        let (_, s) = feed(&[
            r#"{"type":"error","error":{"name":"ProviderAuthError","data":{"message":"no key"}}}"#,
        ]);
        assert!(s.error.is_some_and(|e| e.contains("OPENAI_API_KEY")));
    }
}
