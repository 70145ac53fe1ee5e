//! The command gate's channel into a sandbox: how `$CHANT_EXEC` inside a container or a vm
//! reaches chant on the host, which decides and records.
//!
//! During a run at a level with a gate channel (docker, vm), chant serves a Unix socket in
//! the run's directory on the host ([`server`]), never in the clone. A container sees it
//! bind-mounted, and there `$CHANT_EXEC` is git-chant itself in client mode ([`client`],
//! `git chant exec --gate SOCKET …`). A vm guest reaches it through qemu's one forward of
//! its user-mode network (`guestfwd`), which starts [`bridge`] per connection to carry the
//! bytes to the socket; there `$CHANT_EXEC` is a busybox script speaking the same lines
//! (`sandbox::vm`). Either way the client sends the request, the host answers, and an
//! allowed command then runs *inside* the sandbox, never on the host.
//!
//! This module owns the wire format, its limits and both ends of the socket. It never
//! decides and never records: the server hands every request to a [`Judge`] (the work flow's,
//! which checks `agent.commands` and writes `command_run`), and the client only carries out
//! the answer. It never trusts the client: the request names nothing about who asks (the
//! host knows the run), unknown fields are refused, and whatever cannot be read is refused.
//!
//! # Wire format
//! One connection per request; each message is one line of JSON (UTF-8, `\n`-terminated).
//! 1. client → host, at most [`MAX_REQUEST`] bytes, exactly one of `argv`, `claude_hook` or
//!    `claude_hook_result`:
//!    - `{"argv":["cargo","test"],"cwd":"/workspace/src"}`: run this command (one
//!      element holding blanks or shell syntax is a command line for `sh -c`);
//!    - `{"claude_hook":{…the PreToolUse event as Claude Code sent it…},"cwd":"/workspace"}`;
//!    - `{"claude_hook_result":{…a PostToolUse or PostToolUseFailure event…},"cwd":"…"}`:
//!      record how a command the hook allowed ended (always answered, never a decision).
//! 2. host → client: `{"allow":true}` or `{"allow":false,"reason":"…"}`.
//! 3. client → host, only after an allowed `argv` request, once the command ended:
//!    `{"exit_code":N}`. The host measures the duration itself.
//!
//! Refused by the host (answered `allow:false` where the connection still works, and shown to
//! the judge): a line longer than the limit, not UTF-8, not JSON, with unknown fields
//! (a client naming its own decision or actor), both or neither request kinds, a NUL byte
//! or U+FFFD (what a client makes of non-UTF-8 arguments) anywhere in the command.
//! Refused by the client (fail closed): no socket, no answer, an answer that is not exactly
//! one of the two above.

pub mod bridge;
pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};

/// The longest request line the host reads (the command, or the hook event with it).
pub const MAX_REQUEST: usize = 64 * 1024;

/// The longest answer or report line either side reads.
pub const MAX_REPLY: usize = 4 * 1024;

/// What the client asks (message 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_hook: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_hook_result: Option<serde_json::Value>,
    /// The working directory as seen inside the sandbox (recorded, never used on the host).
    #[serde(default)]
    pub cwd: String,
}

/// What the host answers (message 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub allow: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How an allowed command ended (message 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub exit_code: i32,
}

/// A request as the host understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// Run `argv` inside the sandbox.
    Run { argv: Vec<String>, cwd: String },
    /// Claude Code's PreToolUse hook (or a hook sending the same shape: Gemini CLI's
    /// BeforeTool, Codex's PreToolUse, opencode's gate plugin) asks about the command line
    /// `line`.
    ClaudeHook {
        line: String,
        cwd: String,
        /// Claude Code's id of the call, which links the decision to its result.
        tool_use_id: Option<String>,
        /// Which hook asked, for the ledger's `via`: `gemini-hook` for Gemini CLI's
        /// BeforeTool events, else `claude-hook` (as `git chant exec --claude-hook` says).
        via: &'static str,
    },
    /// Claude Code's PostToolUse/PostToolUseFailure hook reports how a command ended; the
    /// event as sent (read by `agent::claude::hook`).
    ClaudeHookResult {
        event: serde_json::Value,
        line: String,
        cwd: String,
    },
    /// A request that could not be read; `shown` is a short, printable piece of it.
    Unreadable { why: String, shown: String },
}

impl Asked {
    /// The command as recorded (the argv joined by spaces, or the hook's line).
    pub fn command(&self) -> String {
        match self {
            Asked::Run { argv, .. } => argv.join(" "),
            Asked::ClaudeHook { line, .. } | Asked::ClaudeHookResult { line, .. } => line.clone(),
            Asked::Unreadable { shown, .. } => shown.clone(),
        }
    }
}

/// The host's side of the decision: the work flow implements it.
pub trait Judge: Send + Sync {
    /// Decides `asked` (an [`Asked::Unreadable`] must be refused) and records what it must
    /// now: every refusal, and an allowed hook request (the agent runs that itself).
    fn decide(&self, asked: &Asked) -> Answer;

    /// An allowed [`Asked::Run`] ended: `exit_code` as the client reported it (None: the
    /// connection ended without a report), after `duration_ms` as the host measured.
    fn ran(&self, asked: &Asked, exit_code: Option<i32>, duration_ms: u64);
}

/// Reads message 1 as the host does; never fails, an unreadable request says why.
pub fn parse_request(line: &[u8]) -> Asked {
    let unreadable = |why: &str| Asked::Unreadable {
        why: why.to_string(),
        shown: shown(line),
    };
    if line.len() > MAX_REQUEST {
        return unreadable("the request is longer than the gate reads");
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return unreadable("the request is not UTF-8");
    };
    let request: Request = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return unreadable(&format!("the request is not one the gate reads ({e})")),
    };
    let bad = |s: &str| s.contains('\0') || s.contains(char::REPLACEMENT_CHARACTER);
    if bad(&request.cwd) {
        return unreadable("the working directory holds a NUL byte or is not UTF-8");
    }
    let line_of = |event: &serde_json::Value| match event["tool_input"]["command"].as_str() {
        Some(line) if bad(line) => Err("the command holds a NUL byte or is not UTF-8"),
        Some(line) => Ok(line.to_string()),
        None => Err("the hook event has no tool_input.command"),
    };
    match (
        request.argv,
        request.claude_hook,
        request.claude_hook_result,
    ) {
        (Some(argv), None, None) => {
            if argv.is_empty() {
                unreadable("empty command")
            } else if argv.iter().any(|a| bad(a)) {
                unreadable("the command holds a NUL byte or is not UTF-8")
            } else {
                Asked::Run {
                    argv,
                    cwd: request.cwd,
                }
            }
        }
        (None, Some(event), None) => match line_of(&event) {
            Ok(line) => Asked::ClaudeHook {
                line,
                cwd: request.cwd,
                tool_use_id: event["tool_use_id"].as_str().map(str::to_string),
                via: if event["hook_event_name"] == "BeforeTool" {
                    "gemini-hook"
                } else {
                    "claude-hook"
                },
            },
            Err(why) => unreadable(why),
        },
        (None, None, Some(event)) => match line_of(&event) {
            Ok(line) => Asked::ClaudeHookResult {
                event,
                line,
                cwd: request.cwd,
            },
            Err(why) => unreadable(why),
        },
        _ => unreadable(
            "the request must hold exactly one of argv, claude_hook and claude_hook_result",
        ),
    }
}

/// At most 200 characters of `bytes`, printable, for the ledger.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(800)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreadable(line: &[u8]) -> String {
        match parse_request(line) {
            Asked::Unreadable { why, .. } => why,
            other => panic!("read as {other:?}"),
        }
    }

    #[test]
    fn a_run_request_and_a_hook_request_are_read() {
        assert_eq!(
            parse_request(br#"{"argv":["cargo","test"],"cwd":"/workspace"}"#),
            Asked::Run {
                argv: vec!["cargo".into(), "test".into()],
                cwd: "/workspace".into()
            }
        );
        assert_eq!(
            parse_request(
                br#"{"claude_hook":{"tool_name":"Bash","tool_input":{"command":"ls -l"}},"cwd":"/w"}"#
            ),
            Asked::ClaudeHook {
                line: "ls -l".into(),
                cwd: "/w".into(),
                tool_use_id: None,
                via: "claude-hook",
            }
        );
        // Gemini CLI's BeforeTool hook sends the same shape: recorded as its own.
        assert!(matches!(
            parse_request(
                br#"{"claude_hook":{"hook_event_name":"BeforeTool","tool_input":{"command":"ls"}},"cwd":"/w"}"#
            ),
            Asked::ClaudeHook { via: "gemini-hook", .. }
        ));
        let result = parse_request(
            br#"{"claude_hook_result":{"hook_event_name":"PostToolUse","tool_use_id":"t1","tool_input":{"command":"ls"}},"cwd":"/w"}"#,
        );
        assert!(
            matches!(&result, Asked::ClaudeHookResult { line, .. } if line == "ls"),
            "{result:?}"
        );
    }

    #[test]
    fn a_client_naming_its_own_decision_or_actor_is_refused() {
        for forged in [
            r#"{"argv":["ls"],"cwd":"/","allow":true}"#,
            r#"{"argv":["ls"],"cwd":"/","decision":"allowed"}"#,
            r#"{"argv":["ls"],"cwd":"/","actor":"alex","session":"sess_x"}"#,
        ] {
            assert!(
                unreadable(forged.as_bytes()).contains("unknown field"),
                "{forged}"
            );
        }
    }

    #[test]
    fn nul_bytes_replacement_characters_and_raw_non_utf8_are_refused() {
        assert!(unreadable(br#"{"argv":["rm\u0000","-rf"],"cwd":"/"}"#).contains("NUL"));
        assert!(unreadable("{\"argv\":[\"ls\u{fffd}\"],\"cwd\":\"/\"}".as_bytes()).contains("NUL"));
        assert!(unreadable(br#"{"argv":["ls"],"cwd":"/\u0000"}"#).contains("working directory"));
        assert!(unreadable(
            br#"{"claude_hook":{"tool_input":{"command":"ls\u0000; rm -rf /"}},"cwd":"/"}"#
        )
        .contains("NUL"));
        assert!(unreadable(b"{\"argv\":[\"l\xffs\"],\"cwd\":\"/\"}").contains("not UTF-8"));
    }

    #[test]
    fn garbage_empty_ambiguous_and_oversized_requests_are_refused() {
        assert!(unreadable(b"").contains("not one the gate reads"));
        assert!(unreadable(b"rm -rf /").contains("not one the gate reads"));
        assert!(unreadable(br#"{"argv":[],"cwd":"/"}"#).contains("empty"));
        assert!(unreadable(br#"{"cwd":"/"}"#).contains("exactly one"));
        assert!(unreadable(
            br#"{"argv":["ls"],"claude_hook":{"tool_input":{"command":"ls"}},"cwd":"/"}"#
        )
        .contains("exactly one"));
        // A result smuggled beside a decision request, or without its command.
        assert!(unreadable(
            br#"{"claude_hook":{"tool_input":{"command":"ls"}},"claude_hook_result":{"tool_input":{"command":"ls"}},"cwd":"/"}"#
        )
        .contains("exactly one"));
        assert!(unreadable(
            br#"{"claude_hook_result":{"hook_event_name":"PostToolUse"},"cwd":"/"}"#
        )
        .contains("tool_input.command"));
        assert!(
            unreadable(br#"{"claude_hook":{"tool_input":{}},"cwd":"/"}"#)
                .contains("tool_input.command")
        );
        assert!(unreadable(br#"{"argv":"ls","cwd":"/"}"#).contains("not one the gate reads"));
        let huge = format!(r#"{{"argv":["{}"],"cwd":"/"}}"#, "a".repeat(MAX_REQUEST));
        assert!(unreadable(huge.as_bytes()).contains("longer"));
    }

    #[test]
    fn what_an_unreadable_request_shows_is_short_and_printable() {
        let Asked::Unreadable { shown, .. } = parse_request(b"\x1b[2Jevil\nline\0") else {
            panic!("read");
        };
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        let Asked::Unreadable { shown, .. } = parse_request(&vec![b'x'; 10_000]) else {
            panic!("read");
        };
        assert_eq!(shown.chars().count(), 200);
    }
}
