//! `git chant config set`: a minimal edit of the front matter text.
//!
//! Re-serialising the YAML would drop the comments and examples `init` writes, so the
//! edit touches only the lines of the key being set: it replaces the key's value (and the
//! block below it), or inserts the missing part of the path at the end of its parent.
//! The caller validates the result by loading it before writing anything.

use super::{frontmatter, ConfigError, CONFIG_PATH};

/// Returns `text` with `key` (dotted path) set to `value` (YAML, e.g. `docker`, `true`,
/// `[src/, tests/]`).
pub fn set_in_text(text: &str, key: &str, value: &str) -> Result<String, ConfigError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| {
        p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(ConfigError::UnknownKey {
            file: CONFIG_PATH.into(),
            key: key.into(),
            hint: "; keys are dotted names like agent.sandbox".into(),
        });
    }
    let rendered = render_value(value)?;
    let doc = frontmatter::split(text).ok_or_else(|| ConfigError::Syntax {
        file: CONFIG_PATH.into(),
        message: "front matter opened with '---' is never closed; fix the file first".into(),
    })?;
    let mut lines: Vec<String> = doc.yaml.lines().map(str::to_string).collect();
    set_lines(&mut lines, &parts, &rendered)?;
    let mut yaml = lines.join("\n");
    yaml.push('\n');
    Ok(frontmatter::join(&yaml, doc.body))
}

/// The value as it will be written after `key: `: one line of YAML.
fn render_value(value: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim();
    if trimmed.contains('\n') {
        return Err(ConfigError::invalid(
            CONFIG_PATH,
            "(value)",
            "must be one line; use [a, b] for lists",
        ));
    }
    let parsed: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&super::lenient::quote_star_values(&format!("v: {trimmed}")))
            .map_err(|e| {
                ConfigError::invalid(
                    CONFIG_PATH,
                    "(value)",
                    format!("'{value}' is not a YAML value: {e}"),
                )
            })?;
    let inner = parsed
        .get("v")
        .cloned()
        .unwrap_or(serde_yaml_ng::Value::Null);
    // Flow style through JSON (valid YAML) keeps lists and mappings on one line and quotes
    // any string that would otherwise be read differently.
    match inner {
        serde_yaml_ng::Value::String(s) if is_plain_safe(&s) => Ok(s),
        other => serde_json::to_string(&other)
            .map_err(|e| ConfigError::invalid(CONFIG_PATH, "(value)", e.to_string())),
    }
}

fn is_plain_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-:@+".contains(c))
        && !s.starts_with(['-', ':', '@'])
        && !s.ends_with(':')
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        )
        && s.parse::<f64>().is_err()
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

/// The key a line defines, if it is `key:` or `key: value` at its indent.
fn line_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let (key, rest) = t.split_once(':')?;
    let key = key.trim().trim_matches(['"', '\'']);
    (rest.is_empty() || rest.starts_with(' ')).then_some(key)
}

fn set_lines(lines: &mut Vec<String>, parts: &[&str], value: &str) -> Result<(), ConfigError> {
    // The block that holds the current level: [start, end) of lines, and its indent.
    let (mut start, mut end, mut indent) = (0usize, lines.len(), 0usize);
    for (depth, part) in parts.iter().enumerate() {
        let found = (start..end).find(|&i| {
            is_content(&lines[i])
                && indent_of(&lines[i]) == indent
                && line_key(&lines[i]) == Some(part)
        });
        let last = depth + 1 == parts.len();
        match found {
            Some(i) => {
                // The key's own block: following lines indented deeper (or blank/comments
                // that are followed by deeper lines).
                let mut block_end = i + 1;
                let mut j = i + 1;
                while j < end {
                    if is_content(&lines[j]) {
                        if indent_of(&lines[j]) > indent
                            || (lines[j].trim_start().starts_with("- ")
                                && indent_of(&lines[j]) == indent
                                && last)
                        {
                            block_end = j + 1;
                        } else {
                            break;
                        }
                    }
                    j += 1;
                }
                if last {
                    let pad = " ".repeat(indent);
                    lines.splice(i..block_end, [format!("{pad}{part}: {value}")]);
                    return Ok(());
                }
                let inline = lines[i]
                    .split_once(':')
                    .map(|(_, v)| v.trim())
                    .unwrap_or_default();
                if !inline.is_empty() && !inline.starts_with('#') {
                    return Err(ConfigError::invalid(
                        CONFIG_PATH,
                        &parts[..=depth].join("."),
                        format!("holds an inline value ('{inline}'); edit the file by hand to set a key below it"),
                    ));
                }
                let child_indent = (i + 1..block_end)
                    .find(|&k| is_content(&lines[k]))
                    .map_or(indent + 2, |k| indent_of(&lines[k]));
                start = i + 1;
                end = block_end;
                indent = child_indent;
            }
            None => {
                // Insert the rest of the path at the end of this block (after its last
                // content line, so trailing comments of the next section stay put).
                let at = (start..end)
                    .rev()
                    .find(|&k| is_content(&lines[k]))
                    .map_or(start, |k| k + 1);
                let mut new_lines = Vec::new();
                for (k, p) in parts[depth..].iter().enumerate() {
                    let pad = " ".repeat(indent + 2 * k);
                    if depth + k + 1 == parts.len() {
                        new_lines.push(format!("{pad}{p}: {value}"));
                    } else {
                        new_lines.push(format!("{pad}{p}:"));
                    }
                }
                lines.splice(at..at, new_lines);
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "---\n# top comment\nagent:\n  sandbox: permissions   # default\n  allowed_paths:\n    - src/\n# audit settings\naudit:\n  enabled: true\n---\n# Prose\n";

    #[test]
    fn replaces_a_value_keeping_comments_and_prose() {
        let out = set_in_text(TEXT, "agent.sandbox", "docker").expect("set");
        assert!(out.contains("  sandbox: docker\n"));
        assert!(out.contains("# top comment"));
        assert!(out.ends_with("---\n# Prose\n"));
    }

    #[test]
    fn replaces_a_block_list() {
        let out = set_in_text(TEXT, "agent.allowed_paths", "[src/, tests/]").expect("set");
        assert!(
            out.contains("  allowed_paths: [\"src/\",\"tests/\"]\n# audit settings"),
            "{out}"
        );
        assert!(!out.contains("    - src/"));
    }

    #[test]
    fn inserts_missing_keys() {
        let out = set_in_text(TEXT, "agent.docker.memory", "4G").expect("set");
        assert!(
            out.contains("    - src/\n  docker:\n    memory: 4G\n# audit settings"),
            "{out}"
        );
        let out = set_in_text(TEXT, "work.base", "develop").expect("set");
        assert!(
            out.contains("  enabled: true\nwork:\n  base: develop\n---"),
            "{out}"
        );
    }

    #[test]
    fn quotes_what_needs_quoting() {
        let out = set_in_text(TEXT, "audit.file", "yes").expect("set");
        assert!(out.contains("file: \"yes\""), "{out}");
    }
}
