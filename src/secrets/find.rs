//! Finding secret values in bytes an agent wrote: raw, hex, base64 and URL-encoded.
//!
//! A value is searched as it is; as hex (lower or upper case); as base64 (standard and URL-safe
//! alphabets, at each of the three offsets a value can start at inside a base64 stream,
//! with or without line breaks); and after URL percent-decoding (so `%73k-live`, a value
//! with some or all bytes escaped, is found too). Values shorter than [`MIN_FIND_LEN`]
//! bytes are not searched: they are too short to tell apart from ordinary text.
//!
//! A [`Hit`] names the secret and the form, never the value. Nothing here prints, and no
//! `Debug` rendering shows a value. Other encodings (compression, encryption, a value cut
//! into pieces) are not found: this is a tripwire against leaking, not a proof.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use base64::Engine;

/// Values shorter than this many bytes are not searched for.
pub const MIN_FIND_LEN: usize = 8;

/// How a secret's value appeared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Form {
    Raw,
    Hex,
    Base64,
    UrlEncoded,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Raw => "as is",
            Form::Hex => "hex-encoded",
            Form::Base64 => "base64-encoded",
            Form::UrlEncoded => "URL-encoded",
        }
    }
}

/// One secret found: its name and the form it took, never its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    pub name: String,
    pub form: Form,
}

/// Searches bytes for a fixed set of secret values. `Debug` never shows the values.
#[derive(Clone, Default)]
pub struct SecretFinder {
    /// Raw values, searched in the bytes and in their URL-decoded form.
    raw: Option<AhoCorasick>,
    raw_names: Vec<usize>,
    /// Hex forms (lower and upper case) and base64 cores, searched in one pass with white
    /// space removed; `encoded_forms` says which is which.
    encoded: Option<AhoCorasick>,
    encoded_names: Vec<usize>,
    encoded_forms: Vec<Form>,
    /// The longest raw and encoded pattern, in bytes (how much a stream holds back).
    raw_max: usize,
    encoded_max: usize,
    names: Vec<String>,
}

impl std::fmt::Debug for SecretFinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFinder")
            .field("names", &self.names)
            .finish()
    }
}

/// The base64 characters of `value` that do not depend on what surrounds it, when it
/// starts `offset` bytes (0, 1 or 2) into a 3-byte group of a base64 stream.
fn base64_core(value: &[u8], offset: usize, engine: &impl Engine) -> Option<String> {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(value);
    let encoded = engine.encode(&padded);
    // Character i holds bits [6i, 6i + 6); the value holds bits [8 offset, 8 (offset + n)).
    let start = (8 * offset).div_ceil(6);
    let end = (8 * (offset + value.len())) / 6;
    (end > start).then(|| encoded[start..end].to_string())
}

/// The encoded forms of `value` that do not depend on what surrounds it: hex (lower and
/// upper case) and the base64 cores (standard and URL-safe alphabets, at each of the three
/// offsets into a 3-byte group). Empty for values shorter than [`MIN_FIND_LEN`], whose
/// encodings are too short to tell from ordinary text. The redactor masks these too.
pub(crate) fn encoded_forms(value: &[u8]) -> Vec<(Form, String)> {
    if value.len() < MIN_FIND_LEN {
        return Vec::new();
    }
    let standard = base64::engine::general_purpose::STANDARD;
    let url_safe = base64::engine::general_purpose::URL_SAFE;
    let mut forms = vec![
        (Form::Hex, hex::encode(value)),
        (Form::Hex, hex::encode_upper(value)),
    ];
    for offset in 0..3 {
        for core in [
            base64_core(value, offset, &standard),
            base64_core(value, offset, &url_safe),
        ]
        .into_iter()
        .flatten()
        {
            if !forms.iter().any(|(_, f)| *f == core) {
                forms.push((Form::Base64, core));
            }
        }
    }
    forms
}

fn automaton(patterns: &[String]) -> Option<AhoCorasick> {
    if patterns.is_empty() {
        return None;
    }
    AhoCorasickBuilder::new().build(patterns).ok()
}

impl SecretFinder {
    /// A finder for `secrets` (name, value); values shorter than [`MIN_FIND_LEN`] bytes are
    /// left out.
    pub fn new(secrets: &[(String, String)]) -> SecretFinder {
        let mut names = Vec::new();
        let (mut raw, mut raw_names) = (Vec::new(), Vec::new());
        let (mut encoded, mut encoded_names, mut encoded_forms) =
            (Vec::new(), Vec::new(), Vec::new());
        for (name, value) in secrets {
            let value = value.as_bytes();
            if value.len() < MIN_FIND_LEN {
                continue;
            }
            let id = names.len();
            names.push(name.clone());
            raw.push(String::from_utf8_lossy(value).into_owned());
            raw_names.push(id);
            if value.contains(&b' ') {
                // Form encoding writes a space as `+`.
                raw.push(String::from_utf8_lossy(value).replace(' ', "+"));
                raw_names.push(id);
            }
            for (form, text) in self::encoded_forms(value) {
                encoded.push(text);
                encoded_names.push(id);
                encoded_forms.push(form);
            }
        }
        SecretFinder {
            raw: automaton(&raw),
            raw_names,
            encoded: automaton(&encoded),
            encoded_names,
            encoded_forms,
            raw_max: raw.iter().map(String::len).max().unwrap_or(0),
            encoded_max: encoded.iter().map(String::len).max().unwrap_or(0),
            names,
        }
    }

    /// True when there is nothing to search for.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every (secret, form) found in `bytes`, each once, sorted.
    pub fn find(&self, bytes: &[u8]) -> Vec<Hit> {
        let mut stream = self.stream();
        stream.push(bytes);
        stream.finish()
    }

    /// A search over bytes that arrive in chunks (a large file read piece by piece): it
    /// holds back only the longest pattern's length of each form between chunks.
    pub fn stream(&self) -> SecretStream<'_> {
        SecretStream {
            finder: self,
            raw_tail: Vec::new(),
            decoded_tail: Vec::new(),
            percent_pending: Vec::new(),
            percent_recent: false,
            compact_tail: Vec::new(),
            hits: Vec::new(),
        }
    }

    /// `path` with every secret (in any form) shown as `***`: the matching part of a
    /// component where it can be cut out, else the whole component; all of the path when a
    /// value spans components.
    pub fn mask_path(&self, path: &str) -> String {
        if self.find(path.as_bytes()).is_empty() {
            return path.to_string();
        }
        let masked: Vec<String> = path
            .split('/')
            .map(|c| {
                if self.find(c.as_bytes()).is_empty() {
                    return c.to_string();
                }
                let cut = self.mask_spans(c);
                if self.find(cut.as_bytes()).is_empty() {
                    cut
                } else {
                    "***".to_string()
                }
            })
            .collect();
        let masked = masked.join("/");
        if self.find(masked.as_bytes()).is_empty() {
            masked
        } else {
            "***".to_string()
        }
    }
}

/// A search in progress, see [`SecretFinder::stream`]. `Debug` shows no bytes.
pub struct SecretStream<'a> {
    finder: &'a SecretFinder,
    /// The last bytes of the raw stream (a value may start in them).
    raw_tail: Vec<u8>,
    /// The last bytes of the percent-decoded stream.
    decoded_tail: Vec<u8>,
    /// A `%` or `%X` cut off at the end of the last chunk.
    percent_pending: Vec<u8>,
    /// The last chunk held a `%`, so the decoded tail may differ from the raw one.
    percent_recent: bool,
    /// The last bytes of the stream without white space.
    compact_tail: Vec<u8>,
    hits: Vec<Hit>,
}

impl std::fmt::Debug for SecretStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStream")
            .field("hits", &self.hits)
            .finish()
    }
}

/// `window` searched with `ac`, each match recorded with the name `ids` gives it.
fn search_into(
    hits: &mut Vec<Hit>,
    names: &[String],
    ac: &AhoCorasick,
    ids: &[usize],
    window: &[u8],
    form: impl Fn(usize) -> Form,
) {
    for m in ac.find_overlapping_iter(window) {
        let pattern = m.pattern().as_usize();
        hits.push(Hit {
            name: names[ids[pattern]].clone(),
            form: form(pattern),
        });
    }
}

/// The last `keep` bytes of `window` (all of it when shorter).
fn tail_of(window: &[u8], keep: usize) -> Vec<u8> {
    window[window.len().saturating_sub(keep)..].to_vec()
}

impl SecretStream<'_> {
    /// Searches the next chunk. A match that runs over chunk boundaries is found: each
    /// form's stream keeps the longest pattern's length minus one between chunks.
    pub fn push(&mut self, chunk: &[u8]) {
        let f = self.finder;
        if f.is_empty() {
            return;
        }
        if let Some(ac) = &f.raw {
            let mut window = std::mem::take(&mut self.raw_tail);
            window.extend_from_slice(chunk);
            search_into(&mut self.hits, &f.names, ac, &f.raw_names, &window, |_| {
                Form::Raw
            });
            self.raw_tail = tail_of(&window, f.raw_max.saturating_sub(1));

            let mut pending = std::mem::take(&mut self.percent_pending);
            pending.extend_from_slice(chunk);
            let n = pending.len();
            let hold = if n >= 1 && pending[n - 1] == b'%' {
                1
            } else if n >= 2 && pending[n - 2] == b'%' {
                2
            } else {
                0
            };
            let body = &pending[..n - hold];
            let has_percent = memchr::memchr(b'%', body).is_some();
            let mut decoded = std::mem::take(&mut self.decoded_tail);
            decoded.extend_from_slice(&percent_decode(body));
            // Without a `%` in this chunk or the last one, the decoded window is the raw
            // one, already searched.
            if has_percent || self.percent_recent {
                search_into(&mut self.hits, &f.names, ac, &f.raw_names, &decoded, |_| {
                    Form::UrlEncoded
                });
            }
            self.percent_recent = has_percent;
            self.decoded_tail = tail_of(&decoded, f.raw_max.saturating_sub(1));
            self.percent_pending = pending[n - hold..].to_vec();
        }
        if let Some(ac) = &f.encoded {
            let mut window = std::mem::take(&mut self.compact_tail);
            window.extend_from_slice(&without_white_space(chunk));
            search_into(
                &mut self.hits,
                &f.names,
                ac,
                &f.encoded_names,
                &window,
                |p| f.encoded_forms[p],
            );
            self.compact_tail = tail_of(&window, f.encoded_max.saturating_sub(1));
        }
    }

    /// Every (secret, form) found, each secret once in its plainest form, sorted.
    pub fn finish(mut self) -> Vec<Hit> {
        if !self.percent_pending.is_empty() {
            // A `%` that never got its two digits is a plain byte of the decoded stream.
            let pending = std::mem::take(&mut self.percent_pending);
            if let Some(ac) = &self.finder.raw {
                let mut decoded = std::mem::take(&mut self.decoded_tail);
                decoded.extend_from_slice(&pending);
                search_into(
                    &mut self.hits,
                    &self.finder.names,
                    ac,
                    &self.finder.raw_names,
                    &decoded,
                    |_| Form::UrlEncoded,
                );
            }
        }
        let mut hits = self.hits;
        hits.sort();
        hits.dedup();
        // A raw hit also shows through the URL-decoded pass: keep the plainest form.
        hits.dedup_by(|later, earlier| later.name == earlier.name);
        hits
    }
}

impl SecretFinder {
    /// `text` with every raw, hex or base64 occurrence replaced by `***`.
    fn mask_spans(&self, text: &str) -> String {
        let bytes = text.as_bytes();
        let mut spans: Vec<(usize, usize)> = [&self.raw, &self.encoded]
            .into_iter()
            .flatten()
            .flat_map(|ac| {
                ac.find_overlapping_iter(bytes)
                    .map(|m| (m.start(), m.end()))
            })
            .collect();
        spans.sort_unstable();
        let mut out = Vec::with_capacity(bytes.len());
        let mut pos = 0;
        for (s, e) in spans {
            if e <= pos {
                continue;
            }
            if s >= pos {
                out.extend_from_slice(&bytes[pos..s]);
                out.extend_from_slice(b"***");
            }
            pos = e;
        }
        out.extend_from_slice(&bytes[pos..]);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// `bytes` with every `%XX` (any case) replaced by the byte it stands for.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(i) = memchr::memchr(b'%', rest) {
        out.extend_from_slice(&rest[..i]);
        let digits = rest.get(i + 1..i + 3).and_then(|d| {
            let hi = (d[0] as char).to_digit(16)?;
            let lo = (d[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        });
        match digits {
            Some(byte) => {
                out.push(byte);
                rest = &rest[i + 3..];
            }
            None => {
                out.push(b'%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.extend_from_slice(rest);
    out
}

/// `bytes` without ASCII white space, so a base64 or hex form wrapped over lines is one
/// run again.
fn without_white_space(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for run in bytes.split(u8::is_ascii_whitespace) {
        out.extend_from_slice(run);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "sk-live-Zq9/x+Tw";

    fn finder() -> SecretFinder {
        SecretFinder::new(&[
            ("API_KEY".to_string(), VALUE.to_string()),
            ("SHORT".to_string(), "abc".to_string()),
        ])
    }

    fn forms(text: &[u8]) -> Vec<(String, Form)> {
        finder()
            .find(text)
            .into_iter()
            .map(|h| (h.name, h.form))
            .collect()
    }

    #[test]
    fn the_raw_value_is_found_and_only_its_name_is_told() {
        assert_eq!(
            forms(format!("key = \"{VALUE}\"\n").as_bytes()),
            [("API_KEY".to_string(), Form::Raw)]
        );
        assert!(
            forms(b"nothing here, abc").is_empty(),
            "short values skipped"
        );
        assert!(!format!("{:?}", finder()).contains("sk-live"));
    }

    #[test]
    fn base64_at_every_offset_and_in_both_alphabets_is_found() {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in &engines {
            for prefix in ["", "a", "ab", "abc", "abcd"] {
                for suffix in ["", "z", "zz"] {
                    let plain = format!("{prefix}{VALUE}{suffix}");
                    let encoded = engine.encode(plain.as_bytes());
                    assert_eq!(
                        forms(encoded.as_bytes()),
                        [("API_KEY".to_string(), Form::Base64)],
                        "{prefix:?} {suffix:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn base64_wrapped_over_lines_is_found() {
        let long = format!("{}{VALUE}{}", "x".repeat(50), "y".repeat(50));
        let encoded = base64::engine::general_purpose::STANDARD.encode(long.as_bytes());
        let wrapped: String = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        assert_eq!(
            forms(wrapped.as_bytes()),
            [("API_KEY".to_string(), Form::Base64)]
        );
    }

    #[test]
    fn hex_in_any_case_and_url_encoding_are_found() {
        let lower = hex::encode(VALUE);
        assert_eq!(forms(lower.as_bytes())[0].1, Form::Hex);
        assert_eq!(forms(lower.to_uppercase().as_bytes())[0].1, Form::Hex);
        let all: String = VALUE.bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(forms(all.as_bytes())[0].1, Form::UrlEncoded);
        let some = VALUE.replace('/', "%2f").replace('+', "%2B");
        assert_eq!(forms(some.as_bytes())[0].1, Form::UrlEncoded);
    }

    #[test]
    fn paths_are_masked_by_component() {
        let f = finder();
        assert_eq!(f.mask_path("src/main.rs"), "src/main.rs");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(VALUE);
        let masked = f.mask_path(&format!("notes/{b64}.txt"));
        assert!(
            masked.starts_with("notes/***") && masked.ends_with(".txt"),
            "{masked}"
        );
        assert!(f.find(masked.as_bytes()).is_empty(), "{masked}");
        let escaped: String = VALUE.bytes().map(|b| format!("%{b:02x}")).collect();
        assert_eq!(f.mask_path(&format!("x/{escaped}.txt")), "x/***");
        assert_eq!(f.mask_path(&format!("a/{VALUE}/b")), "***");
    }

    #[test]
    fn a_stream_in_chunks_of_any_size_finds_what_the_whole_finds() {
        use base64::Engine;
        let f = finder();
        let escaped: String = VALUE.bytes().map(|b| format!("%{b:02X}")).collect();
        let forms = [
            VALUE.to_string(),
            base64::engine::general_purpose::STANDARD.encode(format!("x{VALUE}")),
            base64::engine::general_purpose::URL_SAFE.encode(format!("xy{VALUE}")),
            hex::encode_upper(VALUE),
            escaped,
        ];
        for form in &forms {
            let text = format!("lead in {form} lead out %");
            let whole = f.find(text.as_bytes());
            assert_eq!(whole.len(), 1, "{whole:?}");
            for size in [1, 2, 3, 5, 7, 16, 64] {
                let mut stream = f.stream();
                for chunk in text.as_bytes().chunks(size) {
                    stream.push(chunk);
                }
                assert_eq!(stream.finish(), whole, "chunks of {size}");
            }
        }
    }
}
