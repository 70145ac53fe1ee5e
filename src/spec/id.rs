//! Spec ids: `YYYY-MM-DD-SSS-XXX` (local date, base36 per-day sequence, three random base36
//! characters), with `.N` suffixes for split members (`…-x7m.1`, `…-x7m.2.1`).
//!
//! A [`SpecId`] is always valid, so it is safe to use in paths and ref names.

use std::fmt;

/// A validated spec id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpecId(String);

impl SpecId {
    /// Parses a full id; None when `text` is not one.
    pub fn parse(text: &str) -> Option<SpecId> {
        is_valid(text).then(|| SpecId(text.to_string()))
    }

    /// Builds an id from its parts.
    pub fn new(date: &str, sequence: u32, random: &str) -> Option<SpecId> {
        SpecId::parse(&format!("{date}-{}-{random}", to_base36(sequence, 3)?))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `YYYY-MM-DD` date part.
    pub fn date(&self) -> &str {
        &self.0[..10]
    }

    /// The per-day sequence number.
    pub fn sequence(&self) -> u32 {
        u32::from_str_radix(&self.0[11..14], 36).unwrap_or(0)
    }
}

impl fmt::Display for SpecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_base36(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

fn is_valid(text: &str) -> bool {
    let (base, members) = match text.find('.') {
        Some(dot) => (&text[..dot], Some(&text[dot + 1..])),
        None => (text, None),
    };
    let b = base.as_bytes();
    let shape = b.len() == 18
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'-'
        && b[14] == b'-'
        && base[..4].bytes().all(|c| c.is_ascii_digit())
        && base[5..7].bytes().all(|c| c.is_ascii_digit())
        && base[8..10].bytes().all(|c| c.is_ascii_digit())
        && is_base36(&base[11..14])
        && is_base36(&base[15..18]);
    if !shape || chrono::NaiveDate::parse_from_str(&base[..10], "%Y-%m-%d").is_err() {
        return false;
    }
    members.is_none_or(|m| {
        m.split('.')
            .all(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|c| c.is_ascii_digit()))
    })
}

/// `n` in base36, zero-padded to `width`; None if it does not fit.
pub fn to_base36(mut n: u32, width: usize) -> Option<String> {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    (n == 0).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Refuses input that can never be (part of) an id before it goes near a path or ref:
/// path separators, `..`, control characters, anything outside `0-9a-z.-`.
pub fn check_input(input: &str) -> Result<(), String> {
    if input.is_empty() {
        return Err("an empty spec id".into());
    }
    if input.contains("..") || input.contains('/') || input.contains('\\') {
        return Err(format!(
            "'{}' is not a spec id: it looks like a path",
            input.escape_debug()
        ));
    }
    if let Some(c) = input
        .chars()
        .find(|c| !(c.is_ascii_digit() || c.is_ascii_lowercase() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "'{}' is not a spec id: '{}' is not allowed (ids use 0-9, a-z, '-' and '.')",
            input.escape_debug(),
            c.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        for id in [
            "2026-01-22-001-x7m",
            "2026-01-22-00z-abc.1",
            "2026-01-22-001-x7m.2.1",
        ] {
            assert!(SpecId::parse(id).is_some(), "{id}");
        }
        let id = SpecId::parse("2026-01-22-01x-v06").expect("valid");
        assert_eq!(id.sequence(), 36 + 33);
        assert_eq!(id.date(), "2026-01-22");
    }

    #[test]
    fn invalid_ids() {
        for id in [
            "",
            "2026-01-22-001",
            "2026-13-22-001-x7m",
            "2026-01-22-001-X7M",
            "2026-01-22-001-x7m.",
            "../etc/passwd",
            "2026-01-22-001-x7m/x",
        ] {
            assert!(SpecId::parse(id).is_none(), "{id}");
        }
    }

    #[test]
    fn base36() {
        assert_eq!(to_base36(1, 3).as_deref(), Some("001"));
        assert_eq!(to_base36(36 * 36 * 36 - 1, 3).as_deref(), Some("zzz"));
        assert_eq!(to_base36(36 * 36 * 36, 3), None);
    }

    #[test]
    fn input_checks() {
        assert!(check_input("x7m").is_ok());
        assert!(check_input("22-001").is_ok());
        for bad in ["../x", "a/b", "a\u{7}", "X7M", ""] {
            assert!(check_input(bad).is_err(), "{bad:?}");
        }
    }
}
