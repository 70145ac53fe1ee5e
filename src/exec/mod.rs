//! The command gate: deciding whether a command the agent wants to run is allowed by
//! `agent.commands.allowed` / `agent.commands.denied`, plus the mapping of those rules into
//! an agent's native permission settings ([`native`]).
//!
//! This module owns the decision only. It never runs a command, never prints, and never
//! records anything: `git chant exec` (the work flow) runs what is [`Decision::Allowed`] and
//! records `command_run` or `policy_violation` with the rule and segment returned here.
//!
//! # How a command is checked
//! 1. The command line is read like `sh` reads it ([`shell`]): quotes and escapes removed,
//!    split at `;` `&&` `||` `|` `&` `(` `)` and newlines. Every simple command (segment) is
//!    checked on its own; one denied segment denies the whole line.
//! 2. Leading `NAME=value` assignments and reserved words (`if`, `then`, `!`, `{`, …) are
//!    skipped; the program name is reduced to its basename (`/usr/bin/curl` is `curl`).
//! 3. Wrappers are looked through (`env`, `nice`, `nohup`, `timeout`, `xargs`, `command`,
//!    `exec`, `time`, `stdbuf`, `ionice`, `setsid`, `flock`, `busybox`, `sudo`, `doas`,
//!    `su -c`, `eval`, `watch`, and `sh`/`bash`/`zsh`/… `-c STRING`, whose string is
//!    checked as a command line); the commands of `find -exec`/`-ok` are checked too.
//! 4. The normalised form — program, arguments and redirections joined by single spaces,
//!    standard-output redirections written `> target` — is matched against the patterns
//!    (see [`rule`]). A deny pattern is tried on the command and on every wrapped layer;
//!    the allow list is tried on the innermost command reached through wrappers that add no
//!    power (for `sudo x` the allow list must allow `sudo x` itself).
//! 5. Denied wins over allowed (also across segments: `make; curl x` reports the `curl`
//!    rule, not that `make` is not allowed). With a non-empty allow list, a command matching no allow
//!    pattern is denied (`not in agent.commands.allowed`); with an empty one, whatever no
//!    deny pattern matches is allowed.
//! 6. What cannot be checked is refused whenever any rule is set: a program name computed
//!    at run time (`$CMD x`, `c*rl`), a shell reading commands from standard input
//!    (`… | sh`), an unknown wrapper option, an unreadable line (unbalanced quotes). Command
//!    substitutions (`$(…)`, backticks, `<(…)`) are refused outright when an allow list is
//!    set, and checked as command lines of their own when only a deny list is.
//!
//! # Threat model and limits
//! The gate is for cooperative agents and is an audit point: it sees the commands an agent
//! routes through `git chant exec` (`CHANT_EXEC`) and makes the easy bypasses (paths,
//! quoting, wrappers, chains, substitutions) fail. It cannot see what a permitted program
//! does next: `npm test` runs whatever `package.json` says, `python -c …`, `make`, `git -c
//! core.sshCommand=…` or a script file can run anything, and nothing forces an agent at
//! levels `none`/`permissions` to use the gate at all. Writes through programs rather than
//! redirections (`tee /dev/sda`, `dd of=…`) are only caught by patterns naming them, and
//! `* > /dev/*` covers standard output only (`2>/dev/null` stays usable; write
//! `* 2> /dev/*` for more) — a descriptor opened earlier (`exec 3>/dev/sda`, then `>&3`)
//! is not followed. With an allow list, even harmless builtins (`cd`, `echo`) must be listed.
//! Enforcement against a hostile agent is the kernel's job: levels `docker` and `vm`.

pub mod edit;
pub mod native;
pub mod rule;
pub mod shell;
mod wrappers;

use crate::config::CommandsConfig;

use rule::Rule;
use shell::SimpleCommand;
use wrappers::Peel;

/// The rule reported when an allow list exists and nothing in it matches.
pub const NOT_ALLOWED: &str = "not in agent.commands.allowed";

/// Nesting limit for wrappers and substitutions (`sh -c "sh -c '…'"`).
const MAX_DEPTH: usize = 8;

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The command may run.
    Allowed,
    /// `rule`: the pattern as written (or why the command could not be checked);
    /// `segment`: the normalised simple command it concerns.
    Denied { rule: String, segment: String },
}

impl Decision {
    /// True for [`Decision::Allowed`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed)
    }

    fn denied(rule: impl Into<String>, segment: impl Into<String>) -> Decision {
        Decision::Denied {
            rule: rule.into(),
            segment: segment.into(),
        }
    }
}

/// `agent.commands`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPolicy {
    allowed: Vec<Rule>,
    denied: Vec<Rule>,
}

/// Characters that make a single argument a shell command line rather than a program name.
const SHELL_CHARS: &[char] = &[
    ' ', '\t', '\n', ';', '&', '|', '<', '>', '(', ')', '$', '`', '\'', '"', '\\', '*', '?', '[',
    '{', '}', '~', '#',
];

impl CommandPolicy {
    /// Compiles `agent.commands`.
    pub fn new(config: &CommandsConfig) -> CommandPolicy {
        CommandPolicy::from_patterns(&config.allowed, &config.denied)
    }

    /// What the gate applies during a run: `agent.commands`, with `permissions.deny_bash`
    /// denied too.
    pub fn for_agent(agent: &crate::config::AgentConfig) -> CommandPolicy {
        let mut denied = agent.commands.denied.clone();
        denied.extend(agent.permissions.deny_bash.iter().cloned());
        CommandPolicy::from_patterns(&agent.commands.allowed, &denied)
    }

    /// From pattern lists as written in the config.
    pub fn from_patterns<S: AsRef<str>>(allowed: &[S], denied: &[S]) -> CommandPolicy {
        let compile = |list: &[S]| -> Vec<Rule> {
            list.iter()
                .map(|p| Rule::new(p.as_ref()))
                .filter(|r| !r.text.is_empty())
                .collect()
        };
        CommandPolicy {
            allowed: compile(allowed),
            denied: compile(denied),
        }
    }

    /// True when any pattern is configured.
    pub fn has_rules(&self) -> bool {
        !self.allowed.is_empty() || !self.denied.is_empty()
    }

    /// Checks an argv as `git chant exec -- <cmd> [args…]` receives it. The words are taken
    /// literally (no shell reads them), except that a single word holding blanks or shell
    /// syntax is a command line (the gate runs it with `sh -c`) and is checked as one.
    pub fn check(&self, argv: &[String]) -> Decision {
        let Some(first) = argv.first() else {
            return Decision::denied("empty command", "");
        };
        if argv.len() == 1 && first.contains(SHELL_CHARS) {
            return self.check_line(first);
        }
        if !self.has_rules() {
            return Decision::Allowed;
        }
        self.check_words(argv.to_vec(), &[], 0)
    }

    /// Checks a shell command line.
    pub fn check_line(&self, line: &str) -> Decision {
        if line.trim().is_empty() {
            return Decision::denied("empty command", "");
        }
        if !self.has_rules() {
            return Decision::Allowed;
        }
        self.check_line_at(line, 0)
    }

    fn check_line_at(&self, line: &str, depth: usize) -> Decision {
        let segment = || line.split_whitespace().collect::<Vec<_>>().join(" ");
        if depth > MAX_DEPTH {
            return Decision::denied("cannot be checked: nested too deeply", segment());
        }
        let commands = match shell::parse(line) {
            Ok(c) => c,
            Err(e) => return Decision::denied(format!("cannot be checked: {e}"), segment()),
        };
        // Every segment is checked, so that an explicit deny (or an uncheckable segment) is
        // reported in preference to an earlier segment that is merely not allowed.
        let mut not_allowed = None;
        for command in &commands {
            match self.check_simple(command, depth) {
                Decision::Allowed => {}
                Decision::Denied { rule, segment } if rule == NOT_ALLOWED => {
                    not_allowed.get_or_insert(Decision::Denied { rule, segment });
                }
                denied => return denied,
            }
        }
        not_allowed.unwrap_or(Decision::Allowed)
    }

    fn check_simple(&self, command: &SimpleCommand, depth: usize) -> Decision {
        let redirects: Vec<String> = command.redirects.iter().map(|r| r.0.clone()).collect();
        let render = || {
            command
                .words
                .iter()
                .map(|w| w.text.as_str())
                .chain(redirects.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for sub in &command.substitutions {
            if !self.allowed.is_empty() {
                return Decision::denied(
                    "command substitution is refused when agent.commands.allowed is set",
                    render(),
                );
            }
            let d = self.check_line_at(sub, depth + 1);
            if !d.is_allowed() {
                return d;
            }
        }
        if let Some(reason) = &command.opaque {
            return Decision::denied(format!("cannot be checked: {reason}"), render());
        }
        let mut words = command.words.as_slice();
        loop {
            let Some(first) = words.first() else {
                // Only assignments or redirections: nothing runs.
                return Decision::Allowed;
            };
            if first.is_assignment() {
                words = &words[1..];
                continue;
            }
            if !first.is_bare() {
                break;
            }
            match first.text.as_str() {
                "!" | "{" | "}" | "if" | "then" | "else" | "elif" | "fi" | "do" | "done"
                | "while" | "until" | "esac" => words = &words[1..],
                "time" => {
                    words = &words[1..];
                    if words.first().is_some_and(|w| w.text == "-p") {
                        words = &words[1..];
                    }
                }
                // Loop and case headers and function definitions run nothing themselves
                // (their substitutions were checked above).
                "for" | "select" | "case" | "function" => return Decision::Allowed,
                _ => break,
            }
        }
        if let Some(program) = words.first() {
            if program.dynamic || program.pattern {
                return Decision::denied(
                    "cannot be checked: the program name is computed at run time",
                    render(),
                );
            }
        }
        let texts = words.iter().map(|w| w.text.clone()).collect();
        self.check_words(texts, &redirects, depth)
    }

    /// Checks one program invocation, looking through wrappers.
    fn check_words(&self, words: Vec<String>, redirects: &[String], depth: usize) -> Decision {
        if words.is_empty() {
            return Decision::Allowed;
        }
        let outer = normalise(&words, redirects, true);
        let mut layers = vec![words];
        // The layer the allow list is checked on when a wrapper adds power (`sudo …`).
        let mut fixed: Option<usize> = None;
        let mut inner_line = None;
        let mut opaque = None;
        let mut also = Vec::new();
        while let Some(last) = layers.last() {
            if layers.len() > MAX_DEPTH {
                opaque = Some("too many nested wrappers".to_string());
                break;
            }
            match wrappers::peel(last) {
                Peel::None => break,
                Peel::Inner { words, transparent } => {
                    if !transparent && fixed.is_none() {
                        fixed = Some(layers.len() - 1);
                    }
                    layers.push(words);
                }
                Peel::Line { line, transparent } => {
                    if !transparent && fixed.is_none() {
                        fixed = Some(layers.len() - 1);
                    }
                    inner_line = Some(line);
                    break;
                }
                Peel::Also(runs) => {
                    also = runs;
                    break;
                }
                Peel::Opaque(reason) => {
                    opaque = Some(reason);
                    break;
                }
            }
        }
        for layer in &layers {
            if let Some(rule) = self.deny_match(layer, redirects) {
                return Decision::denied(rule.text.clone(), outer);
            }
        }
        if let Some(reason) = opaque {
            return Decision::denied(format!("cannot be checked: {reason}"), outer);
        }
        for run in also {
            let d = self.check_words(run, &[], depth + 1);
            if !d.is_allowed() {
                return d;
            }
        }
        if let Some(line) = inner_line {
            let d = self.check_line_at(&line, depth + 1);
            if !d.is_allowed() || fixed.is_none() {
                return d;
            }
        }
        if self.allowed.is_empty() {
            return Decision::Allowed;
        }
        let layer = match fixed {
            Some(i) => &layers[i],
            None => &layers[layers.len() - 1],
        };
        // A program given by a relative path (`./npm`) is not the `npm` an allow rule
        // names: the agent may have written it. Absolute paths are system programs.
        let base = !layer[0].contains('/') || layer[0].starts_with('/');
        let form = normalise(layer, redirects, base);
        if self.allowed.iter().any(|r| r.matches(&form)) {
            Decision::Allowed
        } else {
            Decision::denied(NOT_ALLOWED, form)
        }
    }

    fn deny_match(&self, words: &[String], redirects: &[String]) -> Option<&Rule> {
        let base = base_words(words);
        let base_form = normalise(&base, redirects, false);
        let written_form = normalise(words, redirects, false);
        self.denied.iter().find(|r| {
            r.matches_deny(&base_form, &base)
                || (words[0].contains('/') && r.matches_deny(&written_form, words))
        })
    }
}

/// `words` with the program reduced to its basename.
fn base_words(words: &[String]) -> Vec<String> {
    let mut out = words.to_vec();
    if let Some(p) = out.first_mut() {
        let trimmed = p.trim_end_matches('/');
        *p = trimmed.rsplit('/').next().unwrap_or(trimmed).to_string();
    }
    out
}

/// Program, arguments and redirections joined by single spaces.
pub fn normalise(words: &[String], redirects: &[String], basename: bool) -> String {
    let words = if basename {
        base_words(words)
    } else {
        words.to_vec()
    };
    words
        .iter()
        .map(String::as_str)
        .chain(redirects.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}
