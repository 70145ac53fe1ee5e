//! A fast path for verification: checks that an entry's text is already in canonical form
//! and hashes it without building a JSON tree.
//!
//! Canonical text is what `serde_json::to_string` (and Python's `json.dumps(…,
//! sort_keys=True, separators=(",", ":"), ensure_ascii=False)`) print: no whitespace, keys
//! strictly increasing by code point, strings escaped only where JSON requires (`\"`, `\\`,
//! `\b \f \n \r \t`, other control characters as lowercase `\u00xx`), integers only. When
//! the text is canonical, `hash = sha256(text without the "hash" member)`. Anything this
//! scanner does not accept goes to the slow path (parse, re-serialise, compare), which
//! gives the precise reason; so this module may refuse too much, never accept too much.
//! It never allocates per value and never touches git.

use sha2::{Digest, Sha256};

use super::form::Claims;

/// What the scanner learnt about a canonical entry.
pub struct Fast<'a> {
    pub hash: &'a str,
    pub prev_hash: &'a str,
    /// sha256 over the text without the `hash` member, in lowercase hex.
    pub computed: [u8; 64],
    /// What the commit around the entry must show, when none of these strings holds an
    /// escape (the raw text is then the value); `None` sends that check to the slow path.
    pub claims: Option<Claims<'a>>,
}

impl Fast<'_> {
    /// Whether the entry hashes to the `hash` it states.
    pub fn hash_matches(&self) -> bool {
        self.computed == self.hash.as_bytes()
    }
}

/// The top-level members an entry must have, with the kinds they may take.
const REQUIRED: &[(&str, &[Kind])] = &[
    ("actor", &[Kind::Str]),
    ("agent", &[Kind::Str, Kind::Null]),
    ("details", &[Kind::Obj]),
    ("event", &[Kind::Str]),
    ("hash", &[Kind::Str]),
    ("host", &[Kind::Str]),
    ("prev_hash", &[Kind::Str]),
    ("sandbox", &[Kind::Str, Kind::Null]),
    ("session", &[Kind::Str]),
    ("spec_id", &[Kind::Str, Kind::Null]),
    ("ts", &[Kind::Str]),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Null,
    Obj,
    Other,
}

/// `Some` when `text` is a canonical entry with every required member of the right kind.
pub fn check(text: &str) -> Option<Fast<'_>> {
    let b = text.as_bytes();
    let mut s = Scanner { b, i: 0 };
    if s.peek()? != b'{' {
        return None;
    }
    s.i += 1;
    let mut prev_key: Option<&[u8]> = None;
    let mut seen = 0usize;
    let (mut hash, mut prev_hash) = ("", "");
    let (mut ts, mut event, mut actor, mut spec_id) = ("", "", "", None);
    let mut escaped = false;
    let mut hash_span = (0, 0);
    let mut member_start = s.i;
    let mut first = true;
    loop {
        if s.peek()? == b'}' && first {
            s.i += 1;
            break;
        }
        let key_start = s.i;
        s.string()?;
        let key_raw = &b[key_start + 1..s.i - 1];
        if key_raw.contains(&b'\\') {
            return None; // escaped keys: leave ordering to the slow path
        }
        if prev_key.is_some_and(|p| p >= key_raw) {
            return None;
        }
        prev_key = Some(key_raw);
        if s.peek()? != b':' {
            return None;
        }
        s.i += 1;
        let value_start = s.i;
        let kind = s.value(0)?;
        let value = &text[value_start..s.i];
        if let Some(pos) = REQUIRED.iter().position(|(k, _)| k.as_bytes() == key_raw) {
            if !REQUIRED[pos].1.contains(&kind) {
                return None;
            }
            seen += 1;
            match REQUIRED[pos].0 {
                "hash" => {
                    hash = value.get(1..value.len() - 1)?;
                    hash_span = (member_start, s.i);
                }
                "prev_hash" => prev_hash = value.get(1..value.len() - 1)?,
                key @ ("ts" | "event" | "actor" | "spec_id") => {
                    let inner = if kind == Kind::Str {
                        value.get(1..value.len() - 1)?
                    } else {
                        ""
                    };
                    escaped |= inner.contains('\\');
                    match key {
                        "ts" => ts = inner,
                        "event" => event = inner,
                        "actor" => actor = inner,
                        _ => spec_id = (kind == Kind::Str).then_some(inner),
                    }
                }
                _ => {}
            }
        }
        first = false;
        match s.peek()? {
            b',' => {
                s.i += 1;
                member_start = s.i - 1; // a later member is removed with its leading comma
            }
            b'}' => {
                s.i += 1;
                break;
            }
            _ => return None,
        }
    }
    if s.i != b.len() || seen != REQUIRED.len() {
        return None;
    }
    if !super::chain::is_hash(hash) || !super::chain::is_hash(prev_hash) {
        return None;
    }
    // Remove the hash member: with its leading comma, or (if first) its trailing one.
    let (start, end) = hash_span;
    let mut hasher = Sha256::new();
    if b[start] == b',' {
        hasher.update(&b[..start]);
        hasher.update(&b[end..]);
    } else {
        hasher.update(&b[..start]);
        let rest = &b[end..];
        hasher.update(rest.strip_prefix(b",").unwrap_or(rest));
    }
    Some(Fast {
        hash,
        prev_hash,
        computed: lower_hex(&hasher.finalize().into()),
        claims: (!escaped).then_some(Claims {
            ts,
            event,
            spec_id,
            actor,
        }),
    })
}

fn lower_hex(digest: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    out
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Option<Kind> {
        if depth > 64 {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(|_| Kind::Str),
            b'{' => {
                self.i += 1;
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(Kind::Obj);
                }
                let mut prev: Option<&[u8]> = None;
                loop {
                    let start = self.i;
                    self.string()?;
                    let key = &self.b[start + 1..self.i - 1];
                    if key.contains(&b'\\') || prev.is_some_and(|p| p >= key) {
                        return None;
                    }
                    prev = Some(key);
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.i += 1;
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(Kind::Obj);
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(Kind::Other);
                }
                loop {
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(Kind::Other);
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true").map(|_| Kind::Other),
            b'f' => self.literal(b"false").map(|_| Kind::Other),
            b'n' => self.literal(b"null").map(|_| Kind::Null),
            b'-' | b'0'..=b'9' => self.integer().map(|_| Kind::Other),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// An integer as serde_json prints i64/u64: no leading zeros, no `-0`, in range.
    fn integer(&mut self) -> Option<()> {
        let start = self.i;
        let negative = self.peek()? == b'-';
        if negative {
            self.i += 1;
        }
        let digits_start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.b[digits_start..self.i];
        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        if negative && digits == b"0" {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        if negative {
            text.parse::<i64>().ok().map(|_| ())
        } else {
            text.parse::<u64>().ok().map(|_| ())
        }
    }

    /// A string in canonical escaping; the input is valid UTF-8 already.
    fn string(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => return Some(()),
                0x00..=0x1f => return None,
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            // Only control characters without a short form, lowercase hex.
                            let hex = self.b.get(self.i..self.i + 4)?;
                            self.i += 4;
                            if &hex[..2] != b"00" {
                                return None;
                            }
                            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                            let lower = hex.iter().all(|h| !h.is_ascii_uppercase());
                            if v >= 0x20 || !lower || matches!(v, 0x08 | 0x0c | 0x0a | 0x0d | 0x09)
                            {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn entry(details: Value) -> String {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("ts", json!("2026-01-22T15:30:00Z")),
            ("event", json!("command_run")),
            ("spec_id", Value::Null),
            ("actor", json!("alex")),
            ("agent", json!("p/m")),
            ("sandbox", Value::Null),
            ("host", json!("h")),
            ("session", json!("s")),
            ("details", details),
        ] {
            m.insert(k.into(), v);
        }
        super::super::chain::seal(&mut m, super::super::chain::ZERO_HASH);
        super::super::chain::canonical(&m)
    }

    #[test]
    fn agrees_with_the_slow_path() {
        for d in [
            json!({}),
            json!({"a": [1, -2, true, false, null, {"b": "x\"\\\n\t\u{1}\u{7f}é😀/"}], "z": 18446744073709551615u64}),
            json!({"k": -9223372036854775808i64, "empty": [], "o": {}}),
        ] {
            let text = entry(d);
            let v: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("json");
            let fast = check(&text).expect("canonical");
            let computed = std::str::from_utf8(&fast.computed).expect("hex");
            assert_eq!(computed, super::super::chain::entry_hash(&v));
            assert!(fast.hash_matches());
            assert_eq!(fast.hash, v["hash"].as_str().expect("hash"));
        }
    }

    #[test]
    fn claims_come_raw_only_when_nothing_is_escaped() {
        let text = entry(json!({}));
        let claims = check(&text).and_then(|f| f.claims).expect("plain claims");
        assert_eq!(
            (claims.ts, claims.event, claims.spec_id, claims.actor),
            ("2026-01-22T15:30:00Z", "command_run", None, "alex")
        );
        let quoted = text.replace("\"alex\"", "\"al\\\"ex\"");
        let fast = check(&quoted).expect("still canonical");
        assert!(
            fast.claims.is_none(),
            "an escaped actor goes to the slow path"
        );
    }

    #[test]
    fn refuses_what_is_not_canonical() {
        let text = entry(json!({"n": 1}));
        for bad in [
            text.replace("{\"n\":1}", "{\"n\": 1}"),
            text.replace("{\"n\":1}", "{\"n\":1.0}"),
            text.replace("{\"n\":1}", "{\"n\":01}"),
            text.replace("{\"n\":1}", "{\"n\":\"\\u0041\"}"),
            text.replace("{\"n\":1}", "{\"n\":\"\\/\"}"),
            text.replace("{\"n\":1}", "{\"n\":1,\"m\":2}"),
            text.replace("{\"n\":1}", "{\"n\":1,\"n\":2}"),
            text.replace("{\"n\":1}", "{\"n\":\"\\u001F\"}"),
            text.replace("\"agent\":\"p/m\",", ""),
            text.replace("\"agent\":\"p/m\"", "\"agent\":1"),
            format!("{text} "),
        ] {
            assert!(check(&bad).is_none(), "accepted {bad}");
        }
    }
}
