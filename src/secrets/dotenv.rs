//! The `.env` file format, as the seed's Solo tier writes it (`source .env`).
//!
//! Accepted: `NAME=VALUE`, `export NAME=VALUE`, blank lines, `#` comment lines, a trailing
//! ` # comment` after an unquoted value, `'single'` quotes (literal), `"double"` quotes
//! (`\n`, `\t`, `\r`, `\"`, `\\`, `\$` escapes), quoted values spanning several lines, CRLF
//! line ends and a leading byte-order mark. Not done: `$VAR` interpolation (a `$` is kept as
//! written) — chant never runs a shell on the file.
//!
//! Errors name the file and line and what is wrong, never the line's content: a malformed
//! line may be a pasted secret.

use std::path::Path;

use super::{is_valid_name, SecretsError};

/// Parses `.env` text; `file` names it in errors. Returns `(name, value)` in file order
/// (a repeated name appears twice; the caller's "later wins" applies).
pub fn parse_dotenv(file: &Path, text: &str) -> Result<Vec<(String, String)>, SecretsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bad = |line: usize, reason: &str| SecretsError::Malformed {
        file: file.to_path_buf(),
        line,
        reason: reason.to_string(),
    };
    let mut out = Vec::new();
    let mut rest = text;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let (line, after) = split_line(rest);
        rest = after;
        let trimmed = line.trim_start();
        if trimmed.trim_end().is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let body = match trimmed.strip_prefix("export") {
            Some(r) if r.starts_with([' ', '\t']) => r.trim_start(),
            _ => trimmed,
        };
        let Some((name, value)) = body.split_once('=') else {
            return Err(bad(line_no, "expected NAME=VALUE"));
        };
        let name = name.trim_end();
        if !is_valid_name(name) || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad(
                line_no,
                "the name before '=' is not a valid variable name (letters, digits, '_')",
            ));
        }
        let value = value.trim_start_matches([' ', '\t']);
        let start_line = line_no;
        let parsed = match value.chars().next() {
            Some(q @ ('\'' | '"')) => {
                // A quoted value may continue over the following lines: parse from the
                // quote through the rest of the text.
                let from_quote = &value[1..];
                let whole = if rest.is_empty() {
                    from_quote.to_string()
                } else {
                    format!("{from_quote}\n{rest}")
                };
                let (val, consumed, lines) = quoted(&whole, q).ok_or_else(|| {
                    bad(start_line, &format!("unterminated {} quote", quote_name(q)))
                })?;
                // What follows the closing quote on its line: spaces and a comment only.
                let tail = &whole[consumed..];
                let (tail_line, after_tail) = split_line(tail);
                let tail_line = tail_line.trim();
                if !(tail_line.is_empty() || tail_line.starts_with('#')) {
                    return Err(bad(
                        start_line + lines,
                        &format!("unexpected text after the closing {} quote", quote_name(q)),
                    ));
                }
                line_no += lines;
                rest = after_tail_in(rest, after_tail);
                val
            }
            _ => unquoted(value),
        };
        out.push((name.to_string(), parsed));
    }
    Ok(out)
}

/// `after_tail` is a suffix of `format!("{from_quote}\n{rest}")`; the same suffix of `rest`.
fn after_tail_in<'a>(rest: &'a str, after_tail: &str) -> &'a str {
    let keep = after_tail.len().min(rest.len());
    &rest[rest.len() - keep..]
}

fn quote_name(q: char) -> &'static str {
    if q == '\'' {
        "single"
    } else {
        "double"
    }
}

/// Splits off the first line (without its `\n` or `\r\n`).
fn split_line(text: &str) -> (&str, &str) {
    let (line, rest) = match text.find('\n') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    (line.strip_suffix('\r').unwrap_or(line), rest)
}

/// Reads a quoted value from just after the opening quote. Returns the value, the bytes
/// consumed (through the closing quote) and how many newlines it spanned.
fn quoted(text: &str, q: char) -> Option<(String, usize, usize)> {
    let mut out = String::new();
    let mut lines = 0;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == q => return Some((out, i + c.len_utf8(), lines)),
            '\\' if q == '"' => {
                let (_, next) = chars.next()?;
                match next {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '"' | '\\' | '$' => out.push(next),
                    '\n' => lines += 1,
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            '\n' => {
                lines += 1;
                out.push('\n');
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    None
}

/// An unquoted value: up to a ` #` comment, trailing blanks removed.
fn unquoted(value: &str) -> String {
    let mut end = value.len();
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && matches!(bytes[i - 1], b' ' | b'\t') {
            end = i;
            break;
        }
    }
    value[..end].trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String)> {
        parse_dotenv(Path::new(".env"), text).expect("parses")
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn plain_export_comments_blank_lines() {
        let got = parse("# top\n\nA=1\nexport B=two\n  C = spaced \nD=x # note\nE=a#b\n");
        assert_eq!(
            got,
            vec![
                pair("A", "1"),
                pair("B", "two"),
                pair("C", "spaced"),
                pair("D", "x"),
                pair("E", "a#b")
            ]
        );
    }

    #[test]
    fn quotes() {
        let got = parse("S='a b # c $X'\nD=\"l1\\nl2 \\\"q\\\" \\$HOME\"\nE=''\nF=\"x\" # c\n");
        assert_eq!(
            got,
            vec![
                pair("S", "a b # c $X"),
                pair("D", "l1\nl2 \"q\" $HOME"),
                pair("E", ""),
                pair("F", "x")
            ]
        );
    }

    #[test]
    fn multi_line_quoted_value_then_more_lines() {
        let got = parse("K=\"-----BEGIN\nabc\n-----END\"\nN=1\n");
        assert_eq!(
            got,
            vec![pair("K", "-----BEGIN\nabc\n-----END"), pair("N", "1")]
        );
    }

    #[test]
    fn crlf_bom_and_empty_value() {
        let got = parse("\u{feff}A=1\r\nB=\r\nexport=3\r\n");
        assert_eq!(
            got,
            vec![pair("A", "1"), pair("B", ""), pair("export", "3")]
        );
    }

    #[test]
    fn errors_name_the_line_but_not_the_content() {
        let e = parse_dotenv(Path::new("x/.env"), "A=1\nsk-live-abcdef\n").expect_err("bad");
        let msg = e.to_string();
        assert_eq!(msg, "x/.env:2: expected NAME=VALUE");
        assert!(!msg.contains("sk-live"));

        let e = parse_dotenv(Path::new(".env"), "A=1\nB=\"open\nmore").expect_err("bad");
        assert_eq!(e.to_string(), ".env:2: unterminated double quote");

        let e = parse_dotenv(Path::new(".env"), "BAD KEY=secretvalue").expect_err("bad");
        assert!(e.to_string().starts_with(".env:1: the name"));
        assert!(!e.to_string().contains("secretvalue"));

        let e = parse_dotenv(Path::new(".env"), "A='x'junk-secret\n").expect_err("bad");
        assert_eq!(
            e.to_string(),
            ".env:1: unexpected text after the closing single quote"
        );
        assert!(!e.to_string().contains("junk"));
    }

    #[test]
    fn line_numbers_count_multi_line_values() {
        let e = parse_dotenv(Path::new(".env"), "A=\"1\n2\"\nB=ok\nnope\n").expect_err("bad");
        assert_eq!(e.to_string(), ".env:4: expected NAME=VALUE");
    }

    #[test]
    fn later_duplicates_are_kept_in_order() {
        assert_eq!(parse("A=1\nA=2\n"), vec![pair("A", "1"), pair("A", "2")]);
    }
}
