//! chant's rules as a Gemini CLI policy file (TOML `[[rule]]` tables), written for one run
//! into the private HOME's `.gemini/policies/` (Gemini CLI's user tier, above any policy a
//! project commits under `.gemini/policies/`, which is the lower workspace tier).
//!
//! How Gemini CLI 0.61 reads it (checked in its source, `policy-engine.js`, `toml-loader.js`):
//! a rule matches a tool name, optionally an `argsPattern` (a JavaScript regular expression
//! over the call's arguments as stable JSON, each top-level `"key":value` pair wrapped in
//! NUL characters) or a `commandPrefix` for `run_shell_command`; the highest priority wins
//! (`tier + priority/1000`). A pattern with a quantified group holding a quantifier is
//! refused as unsafe, so none is generated.
//!
//! What is mapped (deny rules at priority 900, allow rules at 100):
//! | config | Gemini CLI rule |
//! |---|---|
//! | `permissions.deny_edit` | deny `write_file`, `replace` whose `file_path` matches |
//! | `file_access.denied_paths`, `agent.denied_paths` | deny `write_file`, `replace`, `read_file` whose `file_path` matches |
//! | `permissions.allow_edit` (at `permissions`) | allow `write_file`, `replace` only there, and deny them for a `file_path` with a `..` component; else allow any path |
//! | `commands.allowed`/`denied`, `permissions.allow_bash`/`deny_bash` | none: allow `run_shell_command` (with redirections) at `permissions`, and chant's gate hook decides each command; at `kubernetes` only (no gate there, see [`Policy::with_command_denies`]) each denied pattern that is a plain word prefix (`touch *`, `git push`) becomes a deny rule with that `commandPrefix` |
//! | `allow_network: false` and `network.enabled: false` | deny `web_fetch`, `google_web_search` |
//!
//! Limits: a path rule matches the text of `file_path` the model sent. Deny rules match its
//! last components whatever comes before (so `./x`, `a/../x` and the absolute path are all
//! caught, and a deny is wider rather than narrower), letters in either case, as chant's own
//! deny lists do; allow rules accept the clone's absolute path or a relative one. chant's
//! post-run policy check stays the authority for every path rule.
//!
//! Commands are left to the gate on purpose: Gemini CLI applies its policy before its
//! hooks, so a command refused by a `commandPrefix` rule would never reach the gate and
//! leave no `command_run` entry; and the gate sees through what a prefix does not
//! (`/usr/bin/touch`, `env touch`, `sh -c '…'`). The hook fails closed, so a gate that
//! cannot run refuses every command.

use crate::config::{AgentConfig, PathList};

/// Tools that write files, and the argument naming the file.
const EDIT_TOOLS: &[&str] = &["write_file", "replace"];
const READ_TOOLS: &[&str] = &["read_file"];
const SHELL_TOOL: &str = "run_shell_command";
const WEB_TOOLS: &[&str] = &["web_fetch", "google_web_search"];

/// A `file_path` with a `..` component.
const PARENT: &str = "\\x00\"file_path\":\"(?:[^\"]*/|)\\.\\.(?:/[^\"]*|)\"\\x00";

const DENY: u32 = 900;
const ALLOW: u32 = 100;

/// One `[[rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    tools: Vec<&'static str>,
    decision: &'static str,
    priority: u32,
    args_pattern: Option<String>,
    allow_redirection: bool,
    deny_message: Option<String>,
    /// For `run_shell_command`: the words a command starts with (Gemini CLI matches them
    /// as a whole word, in each part of a compound command).
    command_prefix: Option<String>,
}

impl Rule {
    fn new(tools: &[&'static str], decision: &'static str, priority: u32) -> Rule {
        Rule {
            tools: tools.to_vec(),
            decision,
            priority,
            args_pattern: None,
            allow_redirection: false,
            deny_message: None,
            command_prefix: None,
        }
    }

    fn toml(&self) -> String {
        let tools: Vec<String> = self.tools.iter().map(|t| toml_string(t)).collect();
        let mut out = format!(
            "[[rule]]\ntoolName = [{}]\ndecision = \"{}\"\npriority = {}\n",
            tools.join(", "),
            self.decision,
            self.priority
        );
        if let Some(p) = &self.args_pattern {
            out.push_str(&format!("argsPattern = {}\n", toml_string(p)));
        }
        if let Some(p) = &self.command_prefix {
            out.push_str(&format!("commandPrefix = {}\n", toml_string(p)));
        }
        if self.allow_redirection {
            out.push_str("allowRedirection = true\n");
        }
        if let Some(m) = &self.deny_message {
            out.push_str(&format!("denyMessage = {}\n", toml_string(m)));
        }
        out
    }
}

/// The policy file for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// `agent`'s rules; `workspace` is the clone as the agent sees it; `permissions` adds
    /// the allow rules that level runs on (elsewhere the approval mode allows, and only the
    /// deny rules apply).
    pub fn compile(agent: &AgentConfig, workspace: &str, permissions: bool) -> Policy {
        let mut rules = Vec::new();
        for (list, tools, why) in [
            (
                &agent.permissions.deny_edit,
                EDIT_TOOLS,
                "agent.permissions.deny_edit",
            ),
            (
                &agent.file_access.denied_paths,
                &[EDIT_TOOLS, READ_TOOLS].concat()[..],
                "agent.file_access.denied_paths",
            ),
            (
                &agent.denied_paths,
                &[EDIT_TOOLS, READ_TOOLS].concat()[..],
                "agent.denied_paths",
            ),
        ] {
            for pattern in path_patterns(list, None) {
                let mut rule = Rule::new(tools, "deny", DENY);
                rule.args_pattern = Some(pattern);
                rule.deny_message = Some(format!("chant: refused by {why}"));
                rules.push(rule);
            }
        }
        if !agent.permissions.allow_network && !agent.network.enabled {
            let mut rule = Rule::new(WEB_TOOLS, "deny", DENY);
            rule.deny_message = Some("chant: the agent has no network (agent.network)".into());
            rules.push(rule);
        }
        if permissions {
            if agent.permissions.allow_edit.0.is_empty() {
                rules.push(Rule::new(EDIT_TOOLS, "allow", ALLOW));
            } else {
                // An allowed prefix followed by `..` would lead anywhere (`src/../x`).
                let mut parent = Rule::new(EDIT_TOOLS, "deny", DENY);
                parent.args_pattern = Some(PARENT.to_string());
                parent.deny_message = Some(
                    "chant: agent.permissions.allow_edit is set: name the file without `..`".into(),
                );
                rules.push(parent);
                for pattern in path_patterns(&agent.permissions.allow_edit, Some(workspace)) {
                    let mut rule = Rule::new(EDIT_TOOLS, "allow", ALLOW);
                    rule.args_pattern = Some(pattern);
                    rules.push(rule);
                }
            }
            let mut shell = Rule::new(&[SHELL_TOOL], "allow", ALLOW);
            shell.allow_redirection = true;
            rules.push(shell);
        }
        Policy { rules }
    }

    /// Adds a deny rule for each of `agent.commands.denied` and `permissions.deny_bash`
    /// that is a plain word prefix (`touch *` → `touch`), for a level where chant's gate is
    /// not reachable (a kubernetes pod): Gemini CLI's own policy is then the only thing that
    /// refuses a command. It sees less than the gate would (`env touch`, `sh -c 'touch …'`
    /// pass), and nothing is recorded.
    pub fn with_command_denies(mut self, agent: &AgentConfig) -> Policy {
        let mut seen: Vec<String> = Vec::new();
        for pattern in agent
            .commands
            .denied
            .iter()
            .chain(&agent.permissions.deny_bash)
        {
            let Some(prefix) = word_prefix(pattern) else {
                continue;
            };
            if seen.contains(&prefix) {
                continue;
            }
            let mut rule = Rule::new(&[SHELL_TOOL], "deny", DENY);
            rule.command_prefix = Some(prefix.clone());
            rule.deny_message = Some(format!("chant: refused by agent.commands: {pattern}"));
            self.rules.push(rule);
            seen.push(prefix);
        }
        self
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# Written by git chant for this run only: chant's rules (agent.permissions,\n\
             # agent.file_access, agent.commands, agent.network) as Gemini CLI policy.\n",
        );
        for rule in &self.rules {
            out.push('\n');
            out.push_str(&rule.toml());
        }
        out
    }
}

/// `argsPattern`s matching a `file_path` argument covered by `list`. `anchor`: the clone as
/// the agent sees it, for allow lists (the path must be the clone's or relative); None for
/// deny lists (any leading components, letters in either case).
fn path_patterns(list: &PathList, anchor: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for raw in list.0.patterns() {
        let trimmed = raw.trim();
        let body = trimmed.trim_start_matches("./").trim_end_matches('/');
        let body = body.strip_prefix('/').unwrap_or(body);
        if body.is_empty() {
            continue;
        }
        let deny = anchor.is_none();
        let Some(glob) = glob_regex(body, deny) else {
            continue;
        };
        let lead = match anchor {
            // `[^"]*/` or nothing: whatever leads to the last components.
            None => "(?:[^\"]*/|)".to_string(),
            Some(root) => format!(
                "(?:{}/|\\./|)",
                regex_literal(&json_text(root.trim_end_matches('/')), false)
            ),
        };
        // The path itself or anything below it (chant's patterns cover a directory's
        // contents).
        out.push(format!(
            "\\x00\"file_path\":\"{lead}{glob}(?:/[^\"]*|)\"\\x00"
        ));
    }
    out
}

/// A chant glob as a regular expression over JSON string text; None where it cannot be
/// written (a character class in an allow list, which would only widen it).
fn glob_regex(glob: &str, fold: bool) -> Option<String> {
    let mut out = String::new();
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is zero or more directories.
                if chars.peek() == Some(&'/') {
                    chars.next();
                    out.push_str("(?:[^\"]*/|)");
                } else {
                    out.push_str("[^\"]*");
                }
            }
            '*' => out.push_str("[^\"/]*"),
            '?' => out.push_str("[^\"/]"),
            '[' if fold => {
                // A class in a deny pattern: any one character (wider).
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                }
                out.push_str("[^\"/]");
            }
            '[' => return None,
            '\\' => {
                if let Some(d) = chars.next() {
                    out.push_str(&regex_literal(&json_text(&d.to_string()), fold));
                }
            }
            c => out.push_str(&regex_literal(&json_text(&c.to_string()), fold)),
        }
    }
    Some(out)
}

/// `text` as JSON string content (without the quotes), as Gemini CLI encodes arguments.
fn json_text(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// `text` matched literally; `fold`: ASCII letters in either case.
fn regex_literal(text: &str, fold: bool) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if fold && c.is_ascii_alphabetic() {
            out.push('[');
            out.push(c.to_ascii_lowercase());
            out.push(c.to_ascii_uppercase());
            out.push(']');
        } else if "\\^$.|?*+()[]{}/-".contains(c) {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

/// A TOML basic string.
/// A deny pattern as the words it starts with, joined by one space (`touch *` → `touch`),
/// when it is one: no wildcard before the end, no control characters.
fn word_prefix(pattern: &str) -> Option<String> {
    if pattern.chars().any(char::is_control) {
        return None;
    }
    let mut words: Vec<&str> = pattern.split_whitespace().collect();
    if words.last() == Some(&"*") {
        words.pop();
    }
    if words.is_empty() || words.iter().any(|w| w.contains(['*', '?', '[', ']'])) {
        return None;
    }
    Some(words.join(" "))
}

fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn policy(yaml: &str, permissions: bool) -> Policy {
        let config =
            Config::from_yaml("(test)", &serde_yaml_ng::from_str(yaml).expect("test yaml"))
                .expect("valid config");
        Policy::compile(&config.agent, "/c/x", permissions)
    }

    /// The pattern a rule would get, as a `regex` (Rust's engine reads these the same way
    /// for what is generated: classes, groups, alternation, `\x00`).
    fn matches(pattern: &str, path: &str) -> bool {
        let args = format!("{{\0\"file_path\":{}\0}}", serde_json::Value::from(path));
        regex::Regex::new(pattern).expect("regex").is_match(&args)
    }

    #[test]
    fn a_denied_path_is_caught_however_the_model_spells_it() {
        let p = policy("agent: {permissions: {deny_edit: [secret.txt]}}", true);
        let pattern = p.rules[0].args_pattern.clone().expect("a pattern");
        for path in [
            "secret.txt",
            "./secret.txt",
            "/c/x/secret.txt",
            "/c/x/sub/../secret.txt",
            "/c/x//secret.txt",
            "SECRET.TXT",
            "deep/dir/secret.txt",
        ] {
            assert!(matches(&pattern, path), "{path} must be denied");
        }
        for path in ["secret.txt.bak", "/c/x/not-secret.txt", "secret_txt"] {
            assert!(!matches(&pattern, path), "{path} is another file");
        }
    }

    #[test]
    fn a_denied_directory_covers_its_contents_and_globs_stay_in_one_component() {
        let p = policy(
            "agent: {file_access: {denied_paths: [credentials/, \"*.key\"]}}",
            false,
        );
        let dir = p.rules[0].args_pattern.clone().expect("dir");
        assert!(matches(&dir, "/c/x/credentials/aws"));
        assert!(matches(&dir, "credentials"));
        assert!(!matches(&dir, "credentialsx/aws"));
        let key = p.rules[1].args_pattern.clone().expect("key");
        assert!(matches(&key, "/c/x/a/b/id.key"));
        assert!(matches(&key, "ID.KEY"));
        assert!(!matches(&key, "id.keys"));
        assert!(p.rules[0].tools.contains(&"read_file"));
    }

    #[test]
    fn an_allow_list_holds_only_the_clone_or_relative_paths() {
        let p = policy("agent: {permissions: {allow_edit: [src/]}}", true);
        let allow: Vec<&Rule> = p.rules.iter().filter(|r| r.decision == "allow").collect();
        assert_eq!(allow.len(), 2);
        let pattern = allow[0].args_pattern.clone().expect("pattern");
        assert!(matches(&pattern, "/c/x/src/a.rs"));
        assert!(matches(&pattern, "src/a.rs"));
        assert!(matches(&pattern, "./src/a.rs"));
        assert!(!matches(&pattern, "/elsewhere/src/a.rs"));
        assert!(!matches(&pattern, "vendor/src/a.rs"));
        let parent = p
            .rules
            .iter()
            .find(|r| r.decision == "deny" && r.args_pattern.as_deref() == Some(PARENT));
        let parent = parent
            .expect("a rule against ..")
            .args_pattern
            .clone()
            .expect("pattern");
        for path in ["src/../x", "/c/x/src/../../etc/passwd", "..", "../x"] {
            assert!(matches(&parent, path), "{path}");
        }
        for path in ["src/a..b", "src/.hidden", "src/..x/y"] {
            assert!(!matches(&parent, path), "{path}");
        }
        assert_eq!(allow[1].tools, [SHELL_TOOL]);
    }

    #[test]
    fn commands_are_left_to_the_gate_and_web_tools_denied_without_network() {
        let p = policy(
            "agent: {commands: {denied: [\"touch *\", curl]}, permissions: {deny_bash: [rm]}}",
            true,
        );
        let shell: Vec<&Rule> = p.rules.iter().filter(|r| r.tools == [SHELL_TOOL]).collect();
        assert_eq!(shell.len(), 1);
        assert_eq!(shell[0].decision, "allow");
        assert!(shell[0].allow_redirection);
        let toml = p.to_toml();
        assert!(!toml.contains("commandPrefix"), "{toml}");
        assert!(toml.contains("toolName = [\"web_fetch\", \"google_web_search\"]"));
        let open = policy("agent: {network: {enabled: true}}", true);
        assert!(!open.to_toml().contains("web_fetch"));
    }

    #[test]
    fn the_toml_escapes_what_the_patterns_hold() {
        assert_eq!(toml_string("a\"b\\c\0"), "\"a\\\"b\\\\c\\u0000\"");
        let p = policy("agent: {permissions: {deny_edit: [\"a\\\"b\"]}}", false);
        let pattern = p.rules[0].args_pattern.clone().expect("pattern");
        // The quote is JSON-escaped in the arguments, and the pattern expects it so.
        assert!(matches(&pattern, "a\"b"));
        assert!(p
            .to_toml()
            .contains(&format!("argsPattern = {}", toml_string(&pattern))));
        // Only deny rules at a level other than permissions.
        assert!(p.rules.iter().all(|r| r.decision == "deny"));
    }

    #[test]
    fn command_denies_become_prefix_rules_only_when_asked_and_only_for_word_prefixes() {
        let yaml = "agent:\n  commands:\n    denied: [\"touch *\", \"git push\", \"rm -rf*\", \"*curl*\", \"touch *\"]\n  permissions:\n    deny_bash: [\"wget *\"]\n";
        let plain = policy(yaml, false).to_toml();
        assert!(!plain.contains("commandPrefix"), "{plain}");
        let config =
            Config::from_yaml("(test)", &serde_yaml_ng::from_str(yaml).expect("test yaml"))
                .expect("valid config");
        let text = policy(yaml, false)
            .with_command_denies(&config.agent)
            .to_toml();
        let prefixes: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("commandPrefix = "))
            .collect();
        assert_eq!(
            prefixes,
            ["\"touch\"", "\"git push\"", "\"wget\""],
            "{text}"
        );
        assert!(
            text.contains("toolName = [\"run_shell_command\"]\ndecision = \"deny\"\npriority = 900\ncommandPrefix = \"touch\"\ndenyMessage = \"chant: refused by agent.commands: touch *\""),
            "{text}"
        );
    }
}
