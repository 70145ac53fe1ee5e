//! The commit around an entry: what `git log` shows of a ledger commit — its subject, its
//! author and committer with their date, its tree and headers — is fixed by the entry.
//!
//! Owns that format, both ways: `ledger` writes commits with [`subject`] and [`ident`], and
//! `verify` refuses a commit whose plain-git view says something the entry does not
//! ([`disagreement`]): an entry whose JSON records one event or actor while `git log
//! --format='%aI %an %s'` shows another would make the review with plain git that
//! docs/audit.md promises a lie. What the format does not fix cannot be checked: the
//! author's e-mail is not in the entry, so only its agreement with the committer's (the
//! address a signature is checked against) is.
//!
//! Pure functions over bytes and strings: never touches git, never prints.

use chrono::DateTime;

/// git's empty tree (SHA-1): every ledger commit carries it, the entry lives in the message.
pub const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// What an entry says that its commit shows too.
#[derive(Debug, Clone, Copy)]
pub struct Claims<'a> {
    pub ts: &'a str,
    pub event: &'a str,
    pub spec_id: Option<&'a str>,
    pub actor: &'a str,
}

/// The one-line commit subject: `<event> <spec_id or -> by <actor>`, control characters
/// replaced by spaces so that it stays one line.
pub fn subject(event: &str, spec_id: Option<&str>, actor: &str) -> String {
    let text = format!("{event} {} by {actor}", spec_id.unwrap_or("-"));
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A name or e-mail as it goes into an author line: git drops `<`, `>` and newlines from
/// them, and so do we, so that the line always parses.
pub fn ident_part(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, '<' | '>' | '\n' | '\r' | '\0'))
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        "unknown".into()
    } else {
        trimmed.to_string()
    }
}

/// The author (and committer) of an entry's commit: `<actor> <<email>> <ts as seconds>
/// +0000`. Errors when `ts` is not RFC 3339.
pub fn ident(actor: &str, email: &str, ts: &str) -> Result<String, String> {
    let secs = DateTime::parse_from_rfc3339(ts)
        .map_err(|_| format!("ts '{ts}' is not RFC 3339"))?
        .timestamp();
    Ok(format!(
        "{} <{}> {secs} +0000",
        ident_part(actor),
        ident_part(email)
    ))
}

/// What in the raw commit `data` (its message starting at `message`) contradicts or goes
/// beyond what chant writes for an entry with these `claims`; `None` when nothing does.
pub fn disagreement(data: &[u8], message: usize, claims: &Claims<'_>) -> Option<String> {
    let headers = data.get(..message.checked_sub(2)?)?;
    let mut lines = headers.split(|b| *b == b'\n').peekable();
    match lines.next().and_then(|l| l.strip_prefix(b"tree ")) {
        Some(tree) if tree == EMPTY_TREE.as_bytes() => {}
        _ => {
            return Some(format!(
                "its tree is not git's empty tree {EMPTY_TREE}: a ledger commit holds no \
                 files, its entry lives in the message"
            ))
        }
    }
    while lines.peek().is_some_and(|l| l.starts_with(b"parent ")) {
        lines.next();
    }
    let author = lines.next().and_then(|l| l.strip_prefix(b"author "));
    let committer = lines.next().and_then(|l| l.strip_prefix(b"committer "));
    let (Some(author), Some(committer)) = (author, committer) else {
        return Some("its headers are not tree, parents, author, committer".into());
    };
    let shown = String::from_utf8_lossy(author);
    let Some(email) = shown
        .split_once(" <")
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(email, _)| email)
    else {
        return Some(format!("its author line '{shown}' does not parse"));
    };
    match ident_matches(author, claims.actor, email, claims.ts) {
        Some(true) => {}
        _ => match ident(claims.actor, email, claims.ts) {
            Err(why) => return Some(why),
            Ok(expected) if expected.as_bytes() != author => {
                return Some(format!(
                    "its author '{shown}' disagrees with the entry's actor and ts ('{expected}'): \
                 git log would show another person or time than the entry records"
                ))
            }
            Ok(_) => {}
        },
    }
    if committer != author {
        return Some(format!(
            "its committer '{}' differs from its author '{shown}'; chant writes both from the \
             entry, and a signature is checked against the committer",
            String::from_utf8_lossy(committer)
        ));
    }
    if let Some(sig) = lines.next() {
        if !sig.starts_with(b"gpgsig ") {
            return Some(extra_header(sig));
        }
        for line in lines {
            if !line.starts_with(b" ") {
                return Some(extra_header(line));
            }
        }
    }
    let text = data.get(message..)?;
    let end = super::objects::blank_line(text).unwrap_or(text.len());
    let (event, spec, actor) = (claims.event, claims.spec_id.unwrap_or("-"), claims.actor);
    let plain = [event, spec, actor]
        .iter()
        .all(|s| !s.chars().any(char::is_control));
    let parts: [&[u8]; 5] = [
        event.as_bytes(),
        b" ",
        spec.as_bytes(),
        b" by ",
        actor.as_bytes(),
    ];
    if plain && equals_concat(&text[..end], &parts) {
        return None;
    }
    let expected = subject(claims.event, claims.spec_id, claims.actor);
    if &text[..end] != expected.as_bytes() {
        return Some(format!(
            "its subject '{}' disagrees with the entry ('{expected}'): git log would show \
             another event, spec or actor than the entry records",
            String::from_utf8_lossy(&text[..end])
        ));
    }
    None
}

/// [`ident`] compared with `line` without building it, for the common case of an actor and
/// e-mail that need no cleaning; `None` when they do (the caller then builds it).
fn ident_matches(line: &[u8], actor: &str, email: &str, ts: &str) -> Option<bool> {
    let clean =
        |s: &str| !s.is_empty() && s.trim() == s && !s.contains(['<', '>', '\n', '\r', '\0']);
    if !clean(actor) || !clean(email) {
        return None;
    }
    let secs = DateTime::parse_from_rfc3339(ts).ok()?.timestamp();
    let mut buf = [0u8; 24];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    std::io::Write::write_fmt(&mut cursor, format_args!("{secs}")).ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    let parts: [&[u8]; 6] = [
        actor.as_bytes(),
        b" <",
        email.as_bytes(),
        b"> ",
        &buf[..len],
        b" +0000",
    ];
    Some(equals_concat(line, &parts))
}

/// Whether `line` is `parts` one after the other.
fn equals_concat(line: &[u8], parts: &[&[u8]]) -> bool {
    let mut rest = line;
    for part in parts {
        match rest.strip_prefix(*part) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

fn extra_header(line: &[u8]) -> String {
    let name = line.split(|b| *b == b' ').next().unwrap_or_default();
    format!(
        "it carries a '{}' header that chant never writes (git may show or re-encode the \
         entry differently)",
        String::from_utf8_lossy(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIMS: Claims<'static> = Claims {
        ts: "2026-01-22T15:30:00Z",
        event: "spec_approved",
        spec_id: Some("2026-01-22-001-x7m"),
        actor: "alice",
    };

    fn commit(headers: &str, subject: &str) -> (Vec<u8>, usize) {
        let text = format!("{headers}\n\n{subject}\n\n{{}}");
        (text.clone().into_bytes(), headers.len() + 2)
    }

    fn good_headers() -> String {
        let id = ident("alice", "a@example.com", CLAIMS.ts).expect("ts");
        format!(
            "tree {EMPTY_TREE}\nparent {}\nauthor {id}\ncommitter {id}",
            "1".repeat(40)
        )
    }

    const SUBJECT: &str = "spec_approved 2026-01-22-001-x7m by alice";

    #[test]
    fn what_chant_writes_agrees() {
        let (data, at) = commit(&good_headers(), SUBJECT);
        assert_eq!(disagreement(&data, at, &CLAIMS), None);
        let signed = format!(
            "{}\ngpgsig -----BEGIN SSH SIGNATURE-----\n abc\n -----END SSH SIGNATURE-----",
            good_headers()
        );
        let (data, at) = commit(&signed, SUBJECT);
        assert_eq!(disagreement(&data, at, &CLAIMS), None);
    }

    #[test]
    fn every_contradiction_is_named() {
        let good = good_headers();
        let id = ident("alice", "a@example.com", CLAIMS.ts).expect("ts");
        let cases: Vec<(String, &str, &str)> = vec![
            (
                good.clone(),
                "spec_completed 2026-01-22-001-x7m by alice",
                "subject",
            ),
            (
                good.clone(),
                "spec_approved 2026-01-22-002-abc by alice",
                "subject",
            ),
            (
                good.clone(),
                "spec_approved 2026-01-22-001-x7m by mallory",
                "subject",
            ),
            (
                good.clone(),
                "spec_approved 2026-01-22-001-x7m by alice\nmore",
                "subject",
            ),
            (
                good.replace("author alice", "author mallory"),
                SUBJECT,
                "author",
            ),
            (
                good.replace("1769095800 +0000\ncommitter", "1769095801 +0000\ncommitter"),
                SUBJECT,
                "author",
            ),
            (
                good.replace("1769095800 +0000\ncommitter", "1769095800 +0100\ncommitter"),
                SUBJECT,
                "author",
            ),
            (
                good.replace("committer alice", "committer mallory"),
                SUBJECT,
                "committer",
            ),
            (
                good.replace(
                    &format!("committer {id}"),
                    "committer alice <m@evil> 1769095800 +0000",
                ),
                SUBJECT,
                "committer",
            ),
            (good.replace(EMPTY_TREE, &"2".repeat(40)), SUBJECT, "tree"),
            (
                format!("{good}\nencoding ISO-8859-1"),
                SUBJECT,
                "'encoding' header",
            ),
            (
                format!("{good}\ngpgsig x\nmergetag y"),
                SUBJECT,
                "'mergetag' header",
            ),
            (
                good.replace(&format!("\ncommitter {id}"), ""),
                SUBJECT,
                "headers",
            ),
        ];
        for (headers, subject, what) in cases {
            let (data, at) = commit(&headers, subject);
            let why = disagreement(&data, at, &CLAIMS)
                .unwrap_or_else(|| panic!("accepted {headers:?} / {subject:?}"));
            assert!(why.contains(what), "{what}: {why}");
        }
    }

    #[test]
    fn subjects_stay_on_one_line() {
        assert_eq!(subject("command_run", None, "a\nb"), "command_run - by a b");
    }
}
