//! `git chant exec`: the command gate. Checks a command against `agent.commands` (and
//! `permissions.deny_bash`) of the main repository, runs it when allowed, and records
//! `command_run` or `policy_violation`.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::audit::{Event, NewEntry};
use crate::error::{Error, Result};
use crate::exec::{CommandPolicy, Decision};
use crate::gate::client::{self, Ask, Done};
use crate::identity::Identity;
use crate::project::Project;

/// Check a command against agent.commands, run it, and record it
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant exec -- cargo test
  git chant exec -- 'npm test && npm run lint'     a command line, each part checked
  \"$CHANT_EXEC\" cargo test                         how an agent calls it during `work`

Denied commands are not run: exit 1 and a policy_violation entry. Allowed ones run with
your terminal and exit with the command's own code; a command_run entry records the
command, exit code and duration. The gate resists easy bypasses (paths, quoting, sh -c,
&&/;/| chains, env prefixes), but it is a gate for cooperative agents: use the docker or
vm level for kernel- or hypervisor-enforced containment.")]
pub struct Args {
    /// The main repository (set by the $CHANT_EXEC wrapper; default: the current one)
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// With --repo: its git dir, as chant found it (set by the $CHANT_EXEC wrapper, so that
    /// every gated command does not look for the repository again)
    #[arg(long, value_name = "DIR", hide = true, requires = "repo")]
    git_dir: Option<PathBuf>,
    /// Read a Claude Code PreToolUse hook event on stdin and answer allow (0) or block (2)
    #[arg(long, conflicts_with = "command")]
    claude_hook: bool,
    /// Read a Claude Code PostToolUse/PostToolUseFailure hook event on stdin and record the
    /// command's exit code and duration (a command_run with details.phase: completed)
    #[arg(long, conflicts_with_all = ["command", "claude_hook"])]
    claude_hook_result: bool,
    /// Read a PreToolUse hook event for a Codex apply_patch on stdin and answer allow (0) or
    /// block (2) by chant's edit path rules
    #[arg(long, conflicts_with_all = ["command", "claude_hook", "claude_hook_result"])]
    edit_hook: bool,
    /// Inside a sandbox: ask chant on the host through this socket instead of deciding here
    /// (set by $CHANT_EXEC at levels with a gate channel)
    #[arg(long, value_name = "SOCKET", hide = true, conflicts_with = "repo")]
    gate: Option<PathBuf>,
    /// With --gate, on the host: carry one connection between standard input/output and
    /// the gate's socket (qemu starts it for each guest connection at the vm level)
    #[arg(long, hide = true, requires = "gate", conflicts_with_all = ["command", "claude_hook", "claude_hook_result", "edit_hook"])]
    bridge: bool,
    /// The command and its arguments
    #[arg(last = true, value_name = "CMD", value_parser = clap::value_parser!(OsString))]
    command: Vec<OsString>,
}

/// Client mode (`--gate`): the host decides and records; an allowed command runs here.
fn through_gate(socket: &std::path::Path, args: Args) -> Result<u8> {
    let ask = if args.claude_hook {
        Ask::ClaudeHook(client::read_event(&mut std::io::stdin()))
    } else if args.claude_hook_result {
        Ask::ClaudeHookResult(client::read_event(&mut std::io::stdin()))
    } else if args.command.is_empty() {
        return Err(Error::Usage(
            "no command given; usage: \"$CHANT_EXEC\" <cmd> [args...]".into(),
        ));
    } else {
        Ask::Run(args.command)
    };
    match client::ask(socket, ask) {
        Done::Refused(reason) => {
            errln!("{reason}");
            Ok(if args.claude_hook { 2 } else { 1 })
        }
        Done::HookAllowed if args.claude_hook_result => Ok(0),
        Done::HookAllowed => {
            outln!("{}", hook_allowed());
            Ok(0)
        }
        Done::Ran(code) => Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
    }
}

/// What tells Claude Code the gate allowed the call, so its own prompt for commands no
/// allow rule lists does not refuse it in a non-interactive run.
fn hook_allowed() -> serde_json::Value {
    serde_json::json!({"hookSpecificOutput": {
        "hookEventName": "PreToolUse",
        "permissionDecision": "allow",
        "permissionDecisionReason": "allowed by chant's command gate (agent.commands)"
    }})
}

pub fn run(args: Args) -> Result<u8> {
    if let (true, Some(socket)) = (args.bridge, &args.gate) {
        // Silent whatever happens: its standard error is the guest's connection too. The
        // guest's client refuses when the connection ends without an answer.
        return Ok(match crate::gate::bridge::stdio(socket) {
            Ok(()) => 0,
            Err(_) => 1,
        });
    }
    if let Some(socket) = args.gate.clone() {
        return through_gate(&socket, args);
    }
    let project = match (&args.repo, &args.git_dir) {
        (Some(root), Some(git_dir)) => Project::open_known(git_dir, root)?,
        (Some(dir), None) => Project::discover_from(dir)?,
        (None, _) => Project::discover()?,
    };
    let config = project.config()?;
    let identity = Identity::resolve(Some(&project.repo))?;
    let policy = CommandPolicy::for_agent(&config.agent);
    let spec = std::env::var("CHANT_SPEC_ID")
        .ok()
        .filter(|s| crate::spec::SpecId::parse(s).is_some());
    let entry = |event: Event| {
        let mut e = NewEntry::new(event);
        e.spec_id = spec.clone();
        e
    };

    if args.edit_hook {
        return edit_hook(&project, &config, &identity, spec.clone());
    }

    if args.claude_hook_result {
        let event = read_hook_event("--claude-hook-result")?;
        let completed = crate::agent::claude::hook::result_entry(entry(Event::CommandRun), &event)
            .map_err(|e| Error::Usage(format!("--claude-hook-result: {e}")))?;
        crate::audit::record(&project, &config, &identity, completed)?;
        return Ok(0);
    }
    // Claude Code's id of the tool call, which links the decision to its result.
    let mut tool_use_id = None;
    let mut via = "claude-hook";
    let (decision, shown, argv) = if args.claude_hook {
        let event = read_hook_event("--claude-hook")?;
        tool_use_id = event["tool_use_id"].as_str().map(str::to_string);
        let line = event["tool_input"]["command"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Gemini CLI's BeforeTool hooks send the same shape as Claude Code's PreToolUse.
        if event["hook_event_name"] == "BeforeTool" {
            via = "gemini-hook";
        }
        (policy.check_line(&line), line, None)
    } else {
        if args.command.is_empty() {
            return Err(Error::Usage(
                "no command given; usage: git chant exec -- <cmd> [args...]".into(),
            ));
        }
        let command = args
            .command
            .iter()
            .map(|a| {
                a.to_str().map(str::to_string).ok_or_else(|| {
                    Error::Usage(format!(
                        "the argument {} is not UTF-8; the gate reads UTF-8 commands only",
                        a.to_string_lossy()
                    ))
                })
            })
            .collect::<Result<Vec<String>>>()?;
        let shown = command.join(" ");
        (policy.check(&command), shown, Some(command))
    };

    let record = |e: NewEntry| crate::audit::record(&project, &config, &identity, e);
    // Every decision is a command_run entry, whether the command then ran or not.
    let command_run = |decision: &str| {
        let e = entry(Event::CommandRun)
            .detail("command", shown.clone())
            .detail("decision", decision);
        match &tool_use_id {
            Some(id) => e.detail("tool_use_id", id.clone()),
            None => e,
        }
    };
    if let Decision::Denied { rule, segment } = &decision {
        record(
            entry(Event::PolicyViolation)
                .detail("rule", "agent.commands")
                .detail("pattern", rule.clone())
                .detail("command", shown.clone())
                .detail("segment", segment.clone()),
        )?;
        if args.claude_hook {
            // The agent asked to run it: a command_run that never ran.
            record(
                command_run("refused")
                    .detail("rule", rule.clone())
                    .detail("via", via),
            )?;
        }
        errln!("chant: command refused: '{segment}' ({rule})");
        return Ok(if args.claude_hook { 2 } else { 1 });
    }
    let Some(argv) = argv else {
        // Hook mode: allowed; the agent runs it itself. Recorded now (its exit code is the
        // agent's to see), and Claude Code is told the gate allowed it.
        record(command_run("allowed").detail("via", via))?;
        outln!("{}", hook_allowed());
        return Ok(0);
    };
    let started = Instant::now();
    let mut cmd = if argv.len() == 1 && argv[0].contains(char::is_whitespace) {
        let mut c = Command::new("sh");
        c.arg("-c").arg(&argv[0]);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    let status = cmd.status();
    let duration_ms = started.elapsed().as_millis() as u64;
    let code = match &status {
        Ok(s) => s.code().unwrap_or(128),
        Err(_) => 127,
    };
    record(
        command_run("allowed")
            .detail("exit_code", code)
            .detail("duration_ms", duration_ms),
    )?;
    if let Err(e) = status {
        errln!("chant: cannot run '{}': {e}", argv[0]);
    }
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

/// The hook event on stdin, as JSON (`flag` names the mode in the error).
fn read_hook_event(flag: &str) -> Result<serde_json::Value> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Error::io("(stdin)", e))?;
    serde_json::from_str(&input)
        .map_err(|e| Error::Usage(format!("{flag}: stdin is not a hook event: {e}")))
}

/// `--edit-hook`: the paths of the patch on stdin against chant's edit rules; a refused one
/// is a `policy_violation` and exit 2 (the hook's refusal), with the reason on stderr for
/// the agent's model.
fn edit_hook(
    project: &Project,
    config: &crate::config::Config,
    identity: &Identity,
    spec: Option<String>,
) -> Result<u8> {
    let event = read_hook_event("--edit-hook")?;
    let patch = event["tool_input"]["command"].as_str().unwrap_or_default();
    let Some(clone) = std::env::var_os("CHANT_CLONE").map(PathBuf::from) else {
        errln!("chant: edit refused: CHANT_CLONE is unset, so the edit cannot be checked");
        return Ok(2);
    };
    for path in crate::agent::codex::patch::paths(patch) {
        if let Some((rule, detail)) = crate::exec::edit::refusal(&config.agent, &clone, &path) {
            let mut e = NewEntry::new(Event::PolicyViolation)
                .detail("rule", rule.clone())
                .detail("path", path.clone())
                .detail("detail", detail.clone())
                .detail("via", "edit-hook");
            e.spec_id = spec;
            crate::audit::record(project, config, identity, e)?;
            errln!("chant: edit refused: {detail} ({rule})");
            return Ok(2);
        }
    }
    Ok(0)
}
