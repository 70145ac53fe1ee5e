//! The sandbox's end of the gate channel (`git chant exec --gate SOCKET …` inside the
//! container): asks the host, then carries out the answer. It fails closed: no socket, no
//! answer or an answer it cannot read is a refusal. It never prints; `cli::exec` does.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use super::server::{connect, read_line, write_line};
use super::{Answer, Report, Request, MAX_REPLY, MAX_REQUEST};

/// What the client does.
#[derive(Debug)]
pub enum Ask {
    /// Run this command here once the host allows it.
    Run(Vec<OsString>),
    /// Answer Claude Code's PreToolUse hook, whose event is this standard input.
    ClaudeHook(Vec<u8>),
    /// Report how a command ended: Claude Code's PostToolUse/PostToolUseFailure event.
    ClaudeHookResult(Vec<u8>),
}

/// How it went.
#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    /// Refused, by the host or because the gate could not be asked; why.
    Refused(String),
    /// The hook's command is allowed (the agent runs it itself), or its result recorded.
    HookAllowed,
    /// The allowed command ran and exited with this code (127: it could not be started).
    Ran(i32),
}

/// Reads a hook event from `input`, at most what the gate accepts (the rest is refused by
/// the host as too long).
pub fn read_event(input: &mut impl Read) -> Vec<u8> {
    let mut event = Vec::new();
    let _ = input.take(MAX_REQUEST as u64 + 1).read_to_end(&mut event);
    event
}

/// Asks the host at `socket` about `ask` and carries out its answer.
pub fn ask(socket: &Path, ask: Ask) -> Done {
    let cwd = std::env::current_dir()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let request = match &ask {
        // Arguments that are not UTF-8 arrive with U+FFFD, which the host refuses.
        Ask::Run(argv) => Request {
            argv: Some(
                argv.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
            ),
            claude_hook: None,
            claude_hook_result: None,
            cwd,
        },
        Ask::ClaudeHook(event) => Request {
            argv: None,
            claude_hook: Some(event_value(event)),
            claude_hook_result: None,
            cwd,
        },
        Ask::ClaudeHookResult(event) => Request {
            argv: None,
            claude_hook: None,
            claude_hook_result: Some(event_value(event)),
            cwd,
        },
    };
    let refused = |why: String| Done::Refused(format!("the command gate {why}; command refused"));
    let mut stream = match connect(socket) {
        Ok(s) => s,
        Err(e) => return refused(format!("is unreachable at {} ({e})", socket.display())),
    };
    if let Err(e) = write_line(&mut stream, &request) {
        return refused(format!("did not take the request ({e})"));
    }
    let answer = match read_line(&mut stream, MAX_REPLY) {
        Ok(line) => match serde_json::from_slice::<Answer>(&line) {
            Ok(a) => a,
            Err(e) => return refused(format!("gave an answer chant cannot read ({e})")),
        },
        Err(e) => return refused(format!("did not answer: {e}")),
    };
    if !answer.allow {
        return Done::Refused(
            answer
                .reason
                .unwrap_or_else(|| "refused by chant's command gate".into()),
        );
    }
    let Ask::Run(argv) = ask else {
        return Done::HookAllowed;
    };
    let code = run_here(&argv);
    // The host records what it is told; nothing to do if it is gone by now.
    let _ = write_line(&mut stream, &Report { exit_code: code });
    Done::Ran(code)
}

/// A hook event as JSON; what is not JSON is sent as a string, which the host refuses (and
/// records).
fn event_value(event: &[u8]) -> serde_json::Value {
    serde_json::from_slice(event)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(event).into_owned()))
}

/// Runs `argv` in this sandbox as `git chant exec` does on the host: one word holding
/// blanks is a command line for `sh -c`.
fn run_here(argv: &[OsString]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        return 127;
    };
    let mut cmd = if args.is_empty() && program.to_string_lossy().contains(char::is_whitespace) {
        let mut c = Command::new("sh");
        c.arg("-c").arg(program);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    };
    match cmd.status() {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code()
                .or_else(|| s.signal().map(|n| 128 + n))
                .unwrap_or(128)
        }
        Err(_) => 127,
    }
}
