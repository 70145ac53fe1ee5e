//! Markdown files with YAML front matter between `---` lines, as chant writes them for
//! `.chant/config.md` and `.chant/specs/<id>.md`.

/// A document split into its front matter and the markdown after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<'a> {
    /// The YAML between the fences (without them); empty when the file has none.
    pub yaml: &'a str,
    /// Everything after the closing fence.
    pub body: &'a str,
    /// True when the file had front matter fences at all.
    pub fenced: bool,
}

/// Splits `text` at its front matter fences. A file that does not start with `---` has no
/// front matter; an opening fence without a closing one is an error (returned as `None`).
pub fn split(text: &str) -> Option<Document<'_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(after_open) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return Some(Document {
            yaml: "",
            body: text,
            fenced: false,
        });
    };
    let mut offset = 0;
    for line in after_open.split_inclusive('\n') {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if trimmed == "---" || trimmed == "..." {
            return Some(Document {
                yaml: &after_open[..offset],
                body: &after_open[offset + line.len()..],
                fenced: true,
            });
        }
        offset += line.len();
    }
    // An opening fence without a closing one: only a file that is all front matter and
    // ends right after a final `---` without newline is still well-formed.
    let trimmed = after_open.trim_end();
    if let Some(yaml) = trimmed.strip_suffix("\n---") {
        return Some(Document {
            yaml,
            body: "",
            fenced: true,
        });
    }
    None
}

/// Joins front matter and body back into one file.
pub fn join(yaml: &str, body: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + body.len() + 8);
    out.push_str("---\n");
    out.push_str(yaml);
    if !yaml.is_empty() && !yaml.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("---\n");
    out.push_str(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_joins() {
        let text = "---\na: 1\n---\n# Title\n";
        let doc = split(text).expect("well formed");
        assert_eq!(doc.yaml, "a: 1\n");
        assert_eq!(doc.body, "# Title\n");
        assert_eq!(join(doc.yaml, doc.body), text);
    }

    #[test]
    fn no_front_matter_and_unclosed() {
        assert_eq!(split("# x\n").map(|d| d.fenced), Some(false));
        assert_eq!(split("---\na: 1\n"), None);
    }
}
