//! Reads `*`-leading globs as text, the way people (and the seed document) write them.
//!
//! In YAML a plain value starting with `*` is an alias (`*name`), so `- *.key` or
//! `deny_edit: [.env, *.key]` are syntax errors for a strict parser although their intent
//! is plain. When a document defines no anchors (`&name`), no alias can be meant, so such
//! values are quoted before parsing. Documents that do use anchors are left untouched.

/// Returns `yaml` with `*`-leading plain values quoted (see the module docs).
pub fn quote_star_values(yaml: &str) -> String {
    if defines_anchor(yaml) {
        return yaml.to_string();
    }
    let mut out = String::with_capacity(yaml.len() + 16);
    for line in yaml.split_inclusive('\n') {
        let (content, newline) = match line.strip_suffix('\n') {
            Some(c) => (c, "\n"),
            None => (line, ""),
        };
        out.push_str(&fix_line(content));
        out.push_str(newline);
    }
    out
}

fn defines_anchor(yaml: &str) -> bool {
    yaml.lines().any(|line| {
        let code = strip_comment(line);
        code.char_indices().any(|(i, c)| {
            c == '&'
                && code[..i].ends_with([' ', '[', '{', ',', ':', '-'])
                && code[i + 1..].starts_with(|n: char| n.is_ascii_alphanumeric())
        })
    })
}

fn strip_comment(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') {
        return "";
    }
    match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    }
}

fn fix_line(line: &str) -> String {
    let indent_len = line.len() - line.trim_start().len();
    let (indent, rest) = line.split_at(indent_len);
    if rest.starts_with('#') {
        return line.to_string();
    }
    // `- *value`
    if let Some(item) = rest.strip_prefix("- ") {
        let spaces = item.len() - item.trim_start().len();
        let value = item.trim_start();
        if value.starts_with('*') {
            return format!("{indent}- {}{}", " ".repeat(spaces), quote_plain(value));
        }
        if value.starts_with('[') {
            return format!("{indent}- {}{}", " ".repeat(spaces), fix_flow(value));
        }
        return line.to_string();
    }
    // `key: *value` or `key: [a, *b]`
    if let Some(colon) = find_key_colon(rest) {
        let (key, after) = rest.split_at(colon + 1);
        let spaces = after.len() - after.trim_start().len();
        let value = after.trim_start();
        if spaces > 0 && value.starts_with('*') {
            return format!("{indent}{key}{}{}", " ".repeat(spaces), quote_plain(value));
        }
        if spaces > 0 && value.starts_with('[') {
            return format!("{indent}{key}{}{}", " ".repeat(spaces), fix_flow(value));
        }
    }
    line.to_string()
}

/// The position of the `:` that ends a plain mapping key, if `rest` starts with one.
fn find_key_colon(rest: &str) -> Option<usize> {
    if rest.starts_with(['"', '\'', '[', '{', '*', '&', '!', '|', '>']) {
        return None;
    }
    let colon = rest
        .find(": ")
        .or_else(|| rest.strip_suffix(':').map(|k| k.len()))?;
    let key = &rest[..colon];
    (!key.is_empty() && !key.contains(" #")).then_some(colon)
}

/// Quotes a plain scalar, keeping a trailing ` # comment` outside the quotes.
fn quote_plain(value: &str) -> String {
    let (scalar, comment) = match value.find(" #") {
        Some(i) => {
            let scalar = value[..i].trim_end();
            (scalar, &value[scalar.len()..])
        }
        None => (value.trim_end(), ""),
    };
    format!("'{}'{comment}", scalar.replace('\'', "''"))
}

/// Quotes `*`-leading items of a one-line flow sequence `[a, *b, c]`.
fn fix_flow(value: &str) -> String {
    let Some(end) = value.rfind(']') else {
        return value.to_string();
    };
    let inner = &value[1..end];
    if inner.contains(['"', '\'', '[', '{']) {
        return value.to_string();
    }
    let items: Vec<String> = inner
        .split(',')
        .map(|item| {
            let trimmed = item.trim();
            if trimmed.starts_with('*') {
                let lead = &item[..item.len() - item.trim_start().len()];
                format!("{lead}'{}'", trimmed.replace('\'', "''"))
            } else {
                item.to_string()
            }
        })
        .collect();
    format!("[{}]{}", items.join(","), &value[end + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_star_values() {
        let input = "deny_edit: [.env, *.key, credentials/**]\nd:\n  - *.pem   # certs\n  - \"* > /dev/*\"\nx: *.key\n";
        let want = "deny_edit: [.env, '*.key', credentials/**]\nd:\n  - '*.pem'   # certs\n  - \"* > /dev/*\"\nx: '*.key'\n";
        assert_eq!(quote_star_values(input), want);
    }

    #[test]
    fn leaves_documents_with_anchors_alone() {
        let input = "base: &b [a]\nother: *b\n";
        assert_eq!(quote_star_values(input), input);
    }
}
