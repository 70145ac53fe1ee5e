//! Claude Code's `--output-format stream-json --verbose` output: one JSON event per line
//! (`system` init and `permission_denied`, `assistant` turns with text and `tool_use`,
//! `user` turns with `tool_result`, and a last `result`). Read for a compact view on the
//! terminal (one plain line per turn, tool, refusal) and for the run's summary: session id,
//! turns, tokens, cost, refusals, and whether Claude Code reported an error.
//!
//! The bytes reaching it are already masked; lines that are not JSON pass through as they are.

use serde_json::{Map, Value};

use crate::agent::lines::{first_line, Lines};
use crate::agent::{Observer, Summary};
use crate::sandbox::Stream;

/// What Claude Code prints when it has no credentials.
const NOT_LOGGED_IN: &str = "Not logged in";

/// The reason recorded when Claude Code has no credentials.
pub const NOT_LOGGED_IN_FIX: &str = "Claude Code says it is not logged in: set ANTHROPIC_API_KEY \
(or ANTHROPIC_AUTH_TOKEN; ANTHROPIC_BASE_URL for a gateway) in the environment, .env or a \
--secrets-from source; chant passes them to Claude Code when set, masked, unless \
agent.secrets.hide names them";

/// The stream-json reader of one run.
#[derive(Debug, Default)]
pub struct StreamJson {
    out: Lines,
    session: Option<String>,
    result: Option<Value>,
    /// Tool calls refused (by Claude Code's rules or chant's gate hook), by tool_use id:
    /// the same refusal shows up as an event, a tool_result and in `permission_denials`.
    refused: std::collections::BTreeSet<String>,
    not_logged_in: bool,
    turns_seen: u64,
}

impl StreamJson {
    /// One whole line of stdout: what to show for it (None: nothing).
    fn line(&mut self, line: &str) -> Option<String> {
        if line.contains(NOT_LOGGED_IN) {
            self.not_logged_in = true;
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            return Some(line.to_string());
        };
        match (event["type"].as_str(), event["subtype"].as_str()) {
            (Some("system"), Some("init")) => {
                self.session = event["session_id"].as_str().map(str::to_string);
                Some(format!(
                    "claude: session {} (Claude Code {}, model {})",
                    self.session.as_deref().unwrap_or("?"),
                    event["claude_code_version"].as_str().unwrap_or("?"),
                    event["model"].as_str().unwrap_or("?")
                ))
            }
            (Some("system"), Some("permission_denied")) => {
                self.refuse(&event["tool_use_id"]);
                Some(format!(
                    "claude: refused {}: {}",
                    event["tool_name"].as_str().unwrap_or("a tool"),
                    first_line(event["message"].as_str().unwrap_or(""))
                ))
            }
            (Some("assistant"), _) => {
                self.turns_seen += 1;
                let lines: Vec<String> = blocks(&event)
                    .filter_map(|b| match b["type"].as_str() {
                        Some("text") => {
                            let text = first_line(b["text"].as_str().unwrap_or(""));
                            (!text.is_empty()).then(|| format!("claude: {text}"))
                        }
                        Some("tool_use") => Some(format!(
                            "claude: [turn {}] {} {}",
                            self.turns_seen,
                            b["name"].as_str().unwrap_or("?"),
                            tool_target(&b["input"])
                        )),
                        _ => None,
                    })
                    .collect();
                (!lines.is_empty()).then(|| lines.join("\n"))
            }
            (Some("user"), _) => {
                let mut lines = Vec::new();
                for b in blocks(&event).filter(|b| b["type"] == "tool_result") {
                    if b["is_error"] != true {
                        continue;
                    }
                    let text = result_text(&b["content"]);
                    if text.contains("chant: command refused") {
                        self.refuse(&b["tool_use_id"]);
                        lines.push(format!(
                            "claude: the command gate refused: {}",
                            gate_reason(&text)
                        ));
                    } else if !text.is_empty() {
                        lines.push(format!("claude: tool error: {}", first_line(&text)));
                    }
                }
                (!lines.is_empty()).then(|| lines.join("\n"))
            }
            (Some("result"), _) => {
                for denial in event["permission_denials"].as_array().into_iter().flatten() {
                    self.refuse(&denial["tool_use_id"]);
                }
                let line = self.result_line(&event);
                self.result = Some(event);
                Some(line)
            }
            _ => None,
        }
    }

    fn refuse(&mut self, tool_use_id: &Value) {
        let id = tool_use_id.as_str().unwrap_or("(no id)");
        self.refused.insert(id.to_string());
    }

    fn result_line(&self, r: &Value) -> String {
        let state = if r["is_error"] == true {
            "ended with an error"
        } else {
            "finished"
        };
        format!(
            "claude: {state}: {} turn(s), {} input / {} output tokens, ${}, {} refusal(s)",
            r["num_turns"].as_u64().unwrap_or(0),
            r["usage"]["input_tokens"].as_u64().unwrap_or(0),
            r["usage"]["output_tokens"].as_u64().unwrap_or(0),
            r["total_cost_usd"]
                .as_f64()
                .map_or("?".into(), |c| format!("{c:.4}")),
            self.refused.len()
        )
    }
}

impl Observer for StreamJson {
    fn observe(&mut self, stream: Stream, bytes: &[u8]) -> Option<Vec<u8>> {
        if stream == Stream::Stderr {
            if String::from_utf8_lossy(bytes).contains(NOT_LOGGED_IN) {
                self.not_logged_in = true;
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
        let mut details = Map::new();
        let refusals = self.refused.len() as u64;
        let mut error = None;
        if let Some(session) = &self.session {
            details.insert("agent_session_id".into(), session.clone().into());
        }
        match &self.result {
            Some(r) => {
                if let Some(s) = r["session_id"].as_str() {
                    details.insert("agent_session_id".into(), s.into());
                }
                for (key, value) in [
                    ("agent_turns", r["num_turns"].as_u64()),
                    ("agent_input_tokens", r["usage"]["input_tokens"].as_u64()),
                    ("agent_output_tokens", r["usage"]["output_tokens"].as_u64()),
                    // Entries hold no floats: the cost in millionths of a dollar.
                    (
                        "agent_cost_micro_usd",
                        r["total_cost_usd"]
                            .as_f64()
                            .map(|c| (c * 1e6).round() as u64),
                    ),
                ] {
                    if let Some(v) = value {
                        details.insert(key.into(), v.into());
                    }
                }
                let is_error = r["is_error"] == true;
                details.insert("agent_is_error".into(), is_error.into());
                if is_error {
                    let text = r["result"]
                        .as_str()
                        .or(r["subtype"].as_str())
                        .unwrap_or("no reason given");
                    error = Some(format!(
                        "Claude Code reported an error: {}",
                        first_line(text)
                    ));
                }
            }
            None => {
                error = Some(
                    "Claude Code ended without its final result event (see the run log)".into(),
                );
            }
        }
        if self.not_logged_in {
            error = Some(NOT_LOGGED_IN_FIX.into());
        }
        details.insert("agent_refusals".into(), refusals.into());
        Summary {
            details,
            error,
            refusals,
        }
    }
}

fn blocks(event: &Value) -> impl Iterator<Item = &Value> {
    event["message"]["content"].as_array().into_iter().flatten()
}

fn result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The gate's own line out of Claude Code's hook error text.
fn gate_reason(text: &str) -> String {
    text.lines()
        .find_map(|l| l.split_once("chant: command refused: ").map(|(_, r)| r))
        .map_or_else(|| first_line(text), |r| r.trim().to_string())
}

/// What a tool call acts on: its file, command or pattern.
fn tool_target(input: &Value) -> String {
    for key in ["file_path", "command", "pattern", "path", "url"] {
        if let Some(s) = input[key].as_str() {
            return first_line(s);
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> (String, Summary) {
        let mut s = StreamJson::default();
        let mut shown = Vec::new();
        for l in lines {
            // Split each line in two to check buffering.
            let bytes = format!("{l}\n").into_bytes();
            let (a, b) = bytes.split_at(bytes.len() / 2);
            shown.extend(s.observe(Stream::Stdout, a).unwrap_or_default());
            shown.extend(s.observe(Stream::Stdout, b).unwrap_or_default());
        }
        (String::from_utf8_lossy(&shown).into_owned(), s.summary())
    }

    #[test]
    fn the_result_event_becomes_the_runs_details() {
        let (shown, summary) = feed(&[
            r#"{"type":"system","subtype":"init","session_id":"s-1","model":"m","claude_code_version":"2.1.332"}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Write","input":{"file_path":"/c/a.txt"}}]}}"#,
            r#"{"type":"system","subtype":"permission_denied","tool_name":"Write","tool_use_id":"t1","message":"no"}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t2","is_error":true,"content":"PreToolUse:Bash hook error: chant: command refused: 'curl x' (curl *)"}]}}"#,
            r#"{"type":"result","session_id":"s-1","is_error":false,"num_turns":3,"usage":{"input_tokens":30,"output_tokens":15},"total_cost_usd":0.00042,"permission_denials":[{"tool_name":"Write","tool_use_id":"t1"},{"tool_name":"Bash","tool_use_id":"t2"}]}"#,
        ]);
        assert!(shown.contains("claude: [turn 1] Write /c/a.txt"), "{shown}");
        assert!(shown.contains("claude: refused Write: no"), "{shown}");
        assert!(
            shown.contains("the command gate refused: 'curl x' (curl *)"),
            "{shown}"
        );
        assert_eq!(summary.error, None);
        // Each refusal once, however many times the stream mentions it.
        assert_eq!(summary.refusals, 2);
        assert_eq!(summary.details["agent_session_id"], "s-1");
        assert_eq!(summary.details["agent_turns"], 3);
        assert_eq!(summary.details["agent_input_tokens"], 30);
        assert_eq!(summary.details["agent_cost_micro_usd"], 420);
        assert_eq!(summary.details["agent_refusals"], 2);
    }

    #[test]
    fn is_error_a_missing_result_and_not_logged_in_are_errors() {
        let (_, s) = feed(&[r#"{"type":"result","is_error":true,"result":"API Error: 500"}"#]);
        assert_eq!(
            s.error.as_deref(),
            Some("Claude Code reported an error: API Error: 500")
        );
        let (_, s) = feed(&[r#"{"type":"system","subtype":"init","session_id":"x"}"#]);
        assert!(s
            .error
            .is_some_and(|e| e.contains("without its final result")));
        let (_, s) = feed(&[
            r#"{"type":"result","is_error":true,"result":"Not logged in · Please run /login"}"#,
        ]);
        assert!(s.error.is_some_and(|e| e.contains("ANTHROPIC_API_KEY")));
    }
}
