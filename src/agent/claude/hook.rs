//! What Claude Code's hooks hand chant's gate: the PostToolUse and PostToolUseFailure
//! events of a Bash call, read into a `command_run` completion.
//!
//! Facts checked against the real CLI (2.1.x, docs/agents.md): both events carry
//! `tool_use_id` (the same as the call's PreToolUse event), `tool_input.command` and
//! `duration_ms`; PostToolUse comes only for a command that exited 0 (`tool_response` has
//! `stdout`, `stderr`, `interrupted`, no exit code); a non-zero exit comes as
//! PostToolUseFailure with `error: "Exit code N\n…"` and `is_interrupt`. The command's
//! output is never recorded (it may hold a secret the ledger must not).
//!
//! The event is the agent's: everything read here is data, checked for shape.

use serde_json::Value;

use crate::audit::NewEntry;

/// The exit code recorded for a command that was interrupted or whose code is unknown.
pub const NO_EXIT_CODE: i64 = -1;

/// `base` (a `command_run` entry of the run) completed from a PostToolUse or
/// PostToolUseFailure event: `command`, `exit_code`, `duration_ms`, `tool_use_id`,
/// `phase: completed`, `via: claude-hook`. An event of another kind is an error.
pub fn result_entry(base: NewEntry, event: &Value) -> Result<NewEntry, String> {
    let kind = event["hook_event_name"].as_str().unwrap_or_default();
    let exit_code = match kind {
        "PostToolUse" if event["tool_response"]["interrupted"] == Value::Bool(true) => NO_EXIT_CODE,
        "PostToolUse" => 0,
        "PostToolUseFailure" if event["is_interrupt"] == Value::Bool(true) => NO_EXIT_CODE,
        "PostToolUseFailure" => failure_code(event["error"].as_str().unwrap_or_default()),
        other => {
            return Err(format!(
                "not a PostToolUse event (hook_event_name {other:?})"
            ))
        }
    };
    let command = event["tool_input"]["command"].as_str().unwrap_or_default();
    let mut entry = base
        .detail("command", command)
        .detail("exit_code", exit_code)
        .detail("duration_ms", event["duration_ms"].as_u64().unwrap_or(0))
        .detail("phase", "completed")
        .detail("via", "claude-hook");
    if let Some(id) = event["tool_use_id"].as_str() {
        entry = entry.detail("tool_use_id", id);
    }
    Ok(entry)
}

/// N of the first line `Exit code N` of a failure's `error`; [`NO_EXIT_CODE`] otherwise.
fn failure_code(error: &str) -> i64 {
    error
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("Exit code "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(NO_EXIT_CODE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;
    use serde_json::json;

    fn details(event: Value) -> serde_json::Map<String, Value> {
        result_entry(NewEntry::new(Event::CommandRun), &event)
            .expect("an entry")
            .details
    }

    #[test]
    fn a_command_that_exited_0_is_recorded_with_its_duration_and_call_id() {
        let d = details(
            json!({"hook_event_name": "PostToolUse", "tool_use_id": "toolu_0_0",
            "tool_input": {"command": "echo ran"}, "duration_ms": 395,
            "tool_response": {"stdout": "ran", "stderr": "", "interrupted": false}}),
        );
        assert_eq!(d["exit_code"], 0);
        assert_eq!(d["duration_ms"], 395);
        assert_eq!(d["tool_use_id"], "toolu_0_0");
        assert_eq!(d["command"], "echo ran");
        assert_eq!(d["phase"], "completed");
        assert!(!d.contains_key("stdout"), "output is never recorded: {d:?}");
    }

    #[test]
    fn a_failure_gives_its_exit_code_and_an_interrupt_or_an_odd_error_none() {
        let failed = |error: &str, interrupt: bool| {
            details(
                json!({"hook_event_name": "PostToolUseFailure", "tool_use_id": "t",
                "tool_input": {"command": "exit 3"}, "duration_ms": 12,
                "error": error, "is_interrupt": interrupt}),
            )["exit_code"]
                .clone()
        };
        assert_eq!(failed("Exit code 3\nbad", false), 3);
        assert_eq!(failed("Exit code 3", true), NO_EXIT_CODE);
        assert_eq!(failed("Command timed out", false), NO_EXIT_CODE);
        assert_eq!(failed("Exit code lots", false), NO_EXIT_CODE);
    }

    #[test]
    fn an_event_of_another_kind_is_refused() {
        let e = result_entry(
            NewEntry::new(Event::CommandRun),
            &json!({"hook_event_name": "PreToolUse", "tool_input": {"command": "x"}}),
        );
        assert!(e.is_err());
    }
}
