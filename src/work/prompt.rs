//! The prompt given to the agent, built from the spec and the rules that will judge its
//! work, and the substitution of `agent.command` placeholders.

use crate::config::Config;
use crate::spec::Spec;

/// The prompt text for `spec`; `commands_rule` is the agent adapter's line about running
/// shell commands (so the prompt never asks for what the level or agent refuses).
pub fn build(spec: &Spec, config: &Config, commands_rule: &str) -> String {
    let mut out = format!(
        "You are working on spec {} in a sandboxed clone of the repository.\n\n",
        spec.id
    );
    out.push_str(spec.body.trim());
    out.push_str("\n\n## Rules for this run\n\n");
    out.push_str("- Change files only inside the current directory; your changes are reviewed and checked before they land on the branch.\n");
    let targets = spec.target_files();
    if !targets.is_empty() {
        out.push_str(&format!("- Target files: {}\n", targets.join(", ")));
    }
    let fa = &config.agent.file_access;
    let allowed: Vec<&String> = fa
        .allowed_paths
        .0
        .patterns()
        .iter()
        .chain(config.agent.allowed_paths.0.patterns())
        .chain(config.agent.permissions.allow_edit.0.patterns())
        .collect();
    if !allowed.is_empty() {
        out.push_str(&format!(
            "- Only these paths may change: {}\n",
            join(&allowed)
        ));
    }
    let denied: Vec<&String> = fa
        .denied_paths
        .0
        .patterns()
        .iter()
        .chain(config.agent.denied_paths.0.patterns())
        .chain(config.agent.permissions.deny_edit.0.patterns())
        .collect();
    if !denied.is_empty() {
        out.push_str(&format!("- Never change: {}\n", join(&denied)));
    }
    out.push_str("- Never change .chant/, .git, .gitattributes or .gitmodules; do not create symlinks that leave the repository.\n");
    out.push_str(commands_rule);
    out
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Values for the placeholders of `agent.command`.
pub struct Placeholders<'a> {
    pub prompt: &'a str,
    pub prompt_file: &'a str,
    pub spec_id: &'a str,
    pub workspace: &'a str,
}

/// Substitutes `{prompt}`, `{prompt_file}`, `{spec_id}` and `{workspace}` in each element.
/// Substitution is single-pass, so text inside a substituted value is never expanded again.
pub fn substitute(template: &[String], values: &Placeholders<'_>) -> Vec<String> {
    template
        .iter()
        .map(|arg| {
            let mut out = String::with_capacity(arg.len());
            let mut rest = arg.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let after = &rest[open..];
                let (value, len) = [
                    ("{prompt}", values.prompt),
                    ("{prompt_file}", values.prompt_file),
                    ("{spec_id}", values.spec_id),
                    ("{workspace}", values.workspace),
                ]
                .iter()
                .find(|(name, _)| after.starts_with(name))
                .map_or(("{", 1), |(name, v)| (*v, name.len()));
                out.push_str(value);
                rest = &after[len..];
            }
            out.push_str(rest);
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_substituted_once() {
        let template = vec![
            "agent".into(),
            "--p={prompt}".into(),
            "{spec_id}:{workspace}".into(),
            "{other}".into(),
        ];
        let out = substitute(
            &template,
            &Placeholders {
                prompt: "say {spec_id}",
                prompt_file: "/p",
                spec_id: "ID",
                workspace: "/w",
            },
        );
        assert_eq!(out, vec!["agent", "--p=say {spec_id}", "ID:/w", "{other}"]);
    }
}
