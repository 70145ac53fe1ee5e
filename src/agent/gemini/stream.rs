//! Gemini CLI's `--output-format stream-json` output: one JSON event per line (`init` with
//! the session id and model, `message` deltas, `tool_use`, `tool_result` with `status` and
//! an `error.type` such as `policy_violation`, `error` warnings, and a last `result` with
//! `status` and `stats`: tokens and tool calls; Gemini CLI reports no cost). Refusals are
//! calls its policy refused (chant's rules), calls refused as outside the workspace, and
//! commands chant's gate refused. Read for a
//! compact view on the terminal and for the run's summary.
//!
//! Turns are counted here (Gemini CLI does not report them): a turn is one model answer,
//! i.e. the events from the first `message`/`tool_use` after the start or after tool
//! results, up to the next tool results.
//!
//! The bytes reaching it are already masked; lines that are not JSON pass through.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::agent::lines::{first_line, Lines};
use crate::agent::{Observer, Summary};
use crate::sandbox::Stream;

/// What Gemini CLI prints when it has no API key.
const NO_KEY: &str = "GEMINI_API_KEY environment variable";
/// What it prints when no auth type could be chosen.
const BAD_AUTH: &str = "Invalid auth method selected";

/// The reason recorded when Gemini CLI has no credentials.
pub const NO_KEY_FIX: &str = "Gemini CLI has no API key: set GEMINI_API_KEY (and \
GOOGLE_GEMINI_BASE_URL for a gateway) in the environment, .env or a --secrets-from source; \
chant passes them to Gemini CLI when set, masked, unless agent.secrets.hide names them";

/// The stream-json reader of one run.
#[derive(Debug, Default)]
pub struct StreamJson {
    out: Lines,
    session: Option<String>,
    model: Option<String>,
    result: Option<Value>,
    /// Tool names by id, for the lines about their results.
    tools: BTreeMap<String, String>,
    refused: BTreeSet<String>,
    /// The model's text of the current turn, shown at its end.
    text: String,
    turns: u64,
    in_turn: bool,
    last_error: Option<String>,
    no_key: bool,
}

impl StreamJson {
    /// One whole line of stdout: what to show for it (None: nothing).
    fn line(&mut self, line: &str) -> Option<String> {
        self.spot_auth(line);
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            return (!line.trim().is_empty()).then(|| line.to_string());
        };
        let mut shown = Vec::new();
        let kind = event["type"].as_str().unwrap_or("");
        if kind != "message" {
            if let Some(text) = self.flush_text() {
                shown.push(text);
            }
        }
        match kind {
            "init" => {
                self.session = event["session_id"].as_str().map(str::to_string);
                self.model = event["model"].as_str().map(str::to_string);
                shown.push(format!(
                    "gemini: session {} (model {})",
                    self.session.as_deref().unwrap_or("?"),
                    self.model.as_deref().unwrap_or("?")
                ));
            }
            "message" if event["role"] == "assistant" => {
                self.start_turn();
                self.text.push_str(event["content"].as_str().unwrap_or(""));
            }
            "tool_use" => {
                self.start_turn();
                let name = event["tool_name"].as_str().unwrap_or("?").to_string();
                if let Some(id) = event["tool_id"].as_str() {
                    self.tools.insert(id.to_string(), name.clone());
                }
                shown.push(format!(
                    "gemini: [turn {}] {name} {}",
                    self.turns,
                    tool_target(&event["parameters"])
                ));
            }
            "tool_result" => {
                self.in_turn = false;
                if event["status"] == "error" {
                    let id = event["tool_id"].as_str().unwrap_or("(no id)").to_string();
                    let tool = self
                        .tools
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| "a tool".into());
                    let message = event["error"]["message"].as_str().unwrap_or("");
                    if message.contains("chant: command refused") {
                        self.refused.insert(id);
                        shown.push(format!(
                            "gemini: the command gate refused: {}",
                            gate_reason(message)
                        ));
                    } else if refused_by_gemini(&event["error"]) {
                        self.refused.insert(id);
                        shown.push(format!("gemini: refused {tool}: {}", first_line(message)));
                    } else {
                        shown.push(format!("gemini: tool error: {}", first_line(message)));
                    }
                }
            }
            "error" => {
                let message = first_line(event["message"].as_str().unwrap_or(""));
                if event["severity"] == "error" {
                    self.last_error = Some(message.clone());
                }
                shown.push(format!(
                    "gemini: {}: {message}",
                    event["severity"].as_str().unwrap_or("error")
                ));
            }
            "result" => {
                shown.push(self.result_line(&event));
                self.result = Some(event);
            }
            _ => {}
        }
        (!shown.is_empty()).then(|| shown.join("\n"))
    }

    fn start_turn(&mut self) {
        if !self.in_turn {
            self.in_turn = true;
            self.turns += 1;
        }
    }

    fn flush_text(&mut self) -> Option<String> {
        let text = first_line(&std::mem::take(&mut self.text));
        (!text.is_empty()).then(|| format!("gemini: {text}"))
    }

    fn spot_auth(&mut self, text: &str) {
        if text.contains(NO_KEY) || text.contains(BAD_AUTH) {
            self.no_key = true;
        }
    }

    fn result_line(&self, r: &Value) -> String {
        let state = if r["status"] == "success" {
            "finished"
        } else {
            "ended with an error"
        };
        format!(
            "gemini: {state}: {} turn(s), {} input / {} output tokens, {} tool call(s), {} refusal(s)",
            self.turns,
            r["stats"]["input_tokens"].as_u64().unwrap_or(0),
            r["stats"]["output_tokens"].as_u64().unwrap_or(0),
            r["stats"]["tool_calls"].as_u64().unwrap_or(0),
            self.refused.len()
        )
    }
}

impl Observer for StreamJson {
    fn observe(&mut self, stream: Stream, bytes: &[u8]) -> Option<Vec<u8>> {
        if stream == Stream::Stderr {
            self.spot_auth(&String::from_utf8_lossy(bytes));
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
        if let Some(session) = &self.session {
            details.insert("agent_session_id".into(), session.clone().into());
        }
        if let Some(model) = &self.model {
            details.insert("agent_model".into(), model.clone().into());
        }
        details.insert("agent_turns".into(), self.turns.into());
        let mut error = None;
        match &self.result {
            Some(r) => {
                let stats = &r["stats"];
                for (key, value) in [
                    ("agent_input_tokens", stats["input_tokens"].as_u64()),
                    ("agent_output_tokens", stats["output_tokens"].as_u64()),
                    ("agent_cached_tokens", stats["cached"].as_u64()),
                    ("agent_tool_calls", stats["tool_calls"].as_u64()),
                    ("agent_duration_ms", stats["duration_ms"].as_u64()),
                ] {
                    if let Some(v) = value {
                        details.insert(key.into(), v.into());
                    }
                }
                let is_error = r["status"] != "success";
                details.insert("agent_is_error".into(), is_error.into());
                if is_error {
                    let text = r["error"]["message"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| self.last_error.clone())
                        .unwrap_or_else(|| "no reason given".into());
                    error = Some(format!(
                        "Gemini CLI reported an error: {}",
                        first_line(&text)
                    ));
                }
            }
            None => {
                error = Some(
                    "Gemini CLI ended without its final result event (see the run log)".into(),
                );
            }
        }
        if self.no_key {
            error = Some(NO_KEY_FIX.into());
        }
        details.insert("agent_refusals".into(), refusals.into());
        Summary {
            details,
            error,
            refusals,
        }
    }
}

/// Gemini CLI's own refusals: its policy (chant's rules), or a path outside the workspace.
fn refused_by_gemini(error: &Value) -> bool {
    matches!(
        error["type"].as_str(),
        Some("policy_violation" | "path_not_in_workspace")
    ) || error["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("Path not in workspace"))
}

/// The gate's own words out of Gemini CLI's "Tool execution blocked: …" text.
fn gate_reason(text: &str) -> String {
    text.lines()
        .find_map(|l| l.split_once("chant: command refused: ").map(|(_, r)| r))
        .map_or_else(|| first_line(text), |r| r.trim().to_string())
}

/// What a tool call acts on: its file, command or pattern.
fn tool_target(params: &Value) -> String {
    for key in [
        "file_path",
        "command",
        "pattern",
        "dir_path",
        "url",
        "query",
    ] {
        if let Some(s) = params[key].as_str() {
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
            let bytes = format!("{l}\n").into_bytes();
            let (a, b) = bytes.split_at(bytes.len() / 2);
            shown.extend(s.observe(Stream::Stdout, a).unwrap_or_default());
            shown.extend(s.observe(Stream::Stdout, b).unwrap_or_default());
        }
        (String::from_utf8_lossy(&shown).into_owned(), s.summary())
    }

    #[test]
    fn the_events_become_lines_and_the_result_the_runs_details() {
        let (shown, summary) = feed(&[
            r#"{"type":"init","session_id":"s-1","model":"gemini-2.5-pro"}"#,
            r#"{"type":"message","role":"user","content":"Go"}"#,
            r#"{"type":"message","role":"assistant","content":"I will ","delta":true}"#,
            r#"{"type":"message","role":"assistant","content":"write it.","delta":true}"#,
            r#"{"type":"tool_use","tool_name":"write_file","tool_id":"t1","parameters":{"file_path":"secret.txt"}}"#,
            r#"{"type":"tool_result","tool_id":"t1","status":"error","error":{"type":"policy_violation","message":"chant: refused by agent.permissions.deny_edit"}}"#,
            r#"{"type":"tool_use","tool_name":"run_shell_command","tool_id":"t2","parameters":{"command":"touch x"}}"#,
            r#"{"type":"tool_result","tool_id":"t2","status":"error","error":{"type":"execution_failed","message":"Tool execution blocked: chant: command refused: 'touch x' (touch *)"}}"#,
            r#"{"type":"tool_use","tool_name":"write_file","tool_id":"t4","parameters":{"file_path":"../x"}}"#,
            r#"{"type":"tool_result","tool_id":"t4","status":"error","error":{"type":"invalid_tool_params","message":"Path not in workspace: Attempted path /x resolves outside"}}"#,
            r#"{"type":"tool_use","tool_name":"write_file","tool_id":"t3","parameters":{"file_path":"hello.txt"}}"#,
            r#"{"type":"tool_result","tool_id":"t3","status":"success","output":"ok"}"#,
            r#"{"type":"result","status":"success","stats":{"total_tokens":360,"input_tokens":300,"output_tokens":60,"cached":0,"duration_ms":900,"tool_calls":3}}"#,
        ]);
        assert!(
            shown.contains("gemini: session s-1 (model gemini-2.5-pro)"),
            "{shown}"
        );
        assert!(shown.contains("gemini: I will write it."), "{shown}");
        assert!(
            shown.contains("gemini: [turn 1] write_file secret.txt"),
            "{shown}"
        );
        assert!(
            shown.contains("gemini: refused write_file: chant: refused by"),
            "{shown}"
        );
        assert!(
            shown.contains("gemini: [turn 2] run_shell_command touch x"),
            "{shown}"
        );
        assert!(
            shown.contains("the command gate refused: 'touch x' (touch *)"),
            "{shown}"
        );
        assert_eq!(summary.error, None);
        assert!(
            shown.contains("gemini: refused write_file: Path not in workspace"),
            "{shown}"
        );
        assert_eq!(summary.refusals, 3);
        assert_eq!(summary.details["agent_session_id"], "s-1");
        assert_eq!(summary.details["agent_turns"], 4);
        assert_eq!(summary.details["agent_input_tokens"], 300);
        assert_eq!(summary.details["agent_tool_calls"], 3);
        assert_eq!(summary.details["agent_is_error"], false);
    }

    #[test]
    fn an_error_result_a_missing_result_and_no_key_are_errors() {
        let (_, s) = feed(&[
            r#"{"type":"result","status":"error","error":{"type":"Error","message":"[API Error: 500]"},"stats":{}}"#,
        ]);
        assert_eq!(
            s.error.as_deref(),
            Some("Gemini CLI reported an error: [API Error: 500]")
        );
        let (_, s) = feed(&[r#"{"type":"init","session_id":"x","model":"m"}"#]);
        assert!(s
            .error
            .is_some_and(|e| e.contains("without its final result")));
        let mut s = StreamJson::default();
        s.observe(
            Stream::Stderr,
            b"When using Gemini API, you must specify the GEMINI_API_KEY environment variable.\n",
        );
        assert!(s
            .summary()
            .error
            .is_some_and(|e| e.contains("set GEMINI_API_KEY")));
    }
}
