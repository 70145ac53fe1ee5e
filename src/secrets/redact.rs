//! Masking secret values in text, byte streams and JSON.
//!
//! Every occurrence of every known value — as is, hex- or base64-encoded (see
//! `find::encoded_forms`) — is replaced by [`MASK`]. Occurrences that overlap
//! or touch (two secrets sharing bytes) are masked as one run, so no byte of any secret
//! survives, whatever the order of the values.

use aho_corasick::AhoCorasick;
use serde_json::Value;

/// What a secret value is replaced with.
pub const MASK: &str = "***";

/// Values shorter than this many bytes are not masked. Masking `1`, `yes` or `dev` would
/// shred ordinary output (every digit, every "yes") while hiding nothing: a value that
/// short can be guessed, so it is not a secret worth the damage.
pub const MIN_REDACT_LEN: usize = 4;

/// Masks a fixed set of secret values. Cheap to clone. `Debug` never shows the values.
#[derive(Clone, Default)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    count: usize,
    max_len: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("values", &self.count)
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl Redactor {
    /// A redactor for `values`; values shorter than [`MIN_REDACT_LEN`] bytes are ignored.
    pub fn new<I, S>(values: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut kept: Vec<Vec<u8>> = values
            .into_iter()
            .map(|v| v.as_ref().to_vec())
            .filter(|v| v.len() >= MIN_REDACT_LEN)
            .collect();
        let count = {
            let mut distinct = kept.clone();
            distinct.sort();
            distinct.dedup();
            distinct.len()
        };
        // A value printed hex- or base64-encoded (`echo $KEY | base64`) is the value too.
        let encoded: Vec<Vec<u8>> = kept
            .iter()
            .flat_map(|v| super::find::encoded_forms(v))
            .map(|(_, text)| text.into_bytes())
            .collect();
        kept.extend(encoded);
        // Longest first: not needed for correctness (overlaps are merged), but it keeps
        // the automaton's pattern order stable and meaningful.
        kept.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        kept.dedup();
        let max_len = kept.first().map_or(0, Vec::len);
        // Building fails only for pattern sets far beyond any secret store. Masking nothing
        // then would leak, so `spans` masks everything instead.
        let matcher = if kept.is_empty() {
            None
        } else {
            AhoCorasick::new(&kept).ok()
        };
        Redactor {
            matcher,
            count,
            max_len,
        }
    }

    /// How many distinct values are masked.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The longest masked pattern (a value or one of its encodings), in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Merged `[start, end)` spans of every occurrence in `haystack`.
    fn spans(&self, haystack: &[u8]) -> Vec<(usize, usize)> {
        let Some(matcher) = &self.matcher else {
            if self.count > 0 {
                return vec![(0, haystack.len())];
            }
            return Vec::new();
        };
        let mut found: Vec<(usize, usize)> = matcher
            .find_overlapping_iter(haystack)
            .map(|m| (m.start(), m.end()))
            .collect();
        found.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(found.len());
        for (s, e) in found {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// `bytes` with every secret masked.
    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut pos = 0;
        for (s, e) in self.spans(bytes) {
            out.extend_from_slice(&bytes[pos..s]);
            out.extend_from_slice(MASK.as_bytes());
            pos = e;
        }
        out.extend_from_slice(&bytes[pos..]);
        out
    }

    /// `text` with every secret masked.
    pub fn redact(&self, text: &str) -> String {
        // Secrets are UTF-8 and so is `text`, so every match starts and ends on a character
        // boundary and the result is UTF-8; the lossy form never actually replaces anything.
        String::from_utf8_lossy(&self.redact_bytes(text.as_bytes())).into_owned()
    }

    /// A copy of `value` with every string inside it masked (object keys are kept as they
    /// are: they are chant's own field names). For ledger entries.
    pub fn redact_json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.redact_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// A streaming redactor for output that arrives in chunks.
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor {
            redactor: self.clone(),
            pending: Vec::new(),
            carry: 0,
            in_mask: false,
        }
    }
}

/// Masks secrets in a byte stream that arrives in chunks, also when a value is split
/// between chunks. It holds back at most `max_len - 1` bytes of input (the longest secret
/// minus one); [`StreamRedactor::finish`] flushes them. Bytes that are not part of a secret
/// come out unchanged and in order, UTF-8 or not.
#[derive(Clone)]
pub struct StreamRedactor {
    redactor: Redactor,
    pending: Vec<u8>,
    /// Leading bytes of `pending` that belong to a secret whose mask was already emitted.
    carry: usize,
    /// The last bytes emitted were a mask reaching the cut: a secret starting right there
    /// continues it (one `***`, as [`Redactor::redact_bytes`] gives for touching secrets).
    in_mask: bool,
}

impl std::fmt::Debug for StreamRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pending` may hold the start of a secret: show only its length.
        f.debug_struct("StreamRedactor")
            .field("redactor", &self.redactor)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl StreamRedactor {
    /// Takes the next chunk; returns what can be emitted safely now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let keep = self.redactor.max_len.saturating_sub(1);
        if self.pending.len() <= keep {
            return Vec::new();
        }
        let cut = self.pending.len() - keep;
        self.emit(cut)
    }

    /// Flushes everything held back. The redactor can be used again afterwards.
    pub fn finish(&mut self) -> Vec<u8> {
        let out = self.emit(self.pending.len());
        self.carry = 0;
        self.in_mask = false;
        out
    }

    /// Emits `pending[..cut]`. Every occurrence that starts before `cut` lies wholly in
    /// `pending` (at most `max_len - 1` bytes follow `cut`), so the bytes before `cut` are
    /// decided. An occurrence running past `cut` is masked now and its remaining bytes are
    /// remembered in `carry`, so they are swallowed later without a second mask.
    fn emit(&mut self, cut: usize) -> Vec<u8> {
        if cut == 0 {
            return Vec::new();
        }
        let continuing = self.in_mask;
        let mut spans = self.redactor.spans(&self.pending);
        if self.carry > 0 {
            match spans.first_mut() {
                Some(first) if first.0 <= self.carry => {
                    first.0 = 0;
                    first.1 = first.1.max(self.carry);
                }
                _ => spans.insert(0, (0, self.carry)),
            }
        }
        let mut out = Vec::with_capacity(cut);
        let mut pos = 0;
        let mut carry = 0;
        let mut in_mask = false;
        for (s, e) in spans {
            if s >= cut {
                break;
            }
            out.extend_from_slice(&self.pending[pos..s]);
            if !(continuing && s == 0) {
                out.extend_from_slice(MASK.as_bytes());
            }
            in_mask = e >= cut;
            if e > cut {
                carry = e - cut;
                pos = cut;
                break;
            }
            pos = e;
        }
        if pos < cut {
            out.extend_from_slice(&self.pending[pos..cut]);
        }
        self.pending.drain(..cut);
        self.carry = carry;
        self.in_mask = in_mask;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_and_keeps_the_rest() {
        let r = Redactor::new(["hunter22", "sk-live-123"]);
        assert_eq!(
            r.redact("pw=hunter22 key=sk-live-123 again hunter22."),
            "pw=*** key=*** again ***."
        );
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn short_values_are_ignored() {
        let r = Redactor::new(["abc", "1", ""]);
        assert!(r.is_empty());
        assert_eq!(r.redact("abc 1"), "abc 1");
    }

    #[test]
    fn overlapping_values_mask_fully() {
        let r = Redactor::new(["abcdef", "cdefgh", "abcd"]);
        assert_eq!(r.redact("xabcdefghy"), "x***y");
        assert_eq!(r.redact("abcd abcdef"), "*** ***");
    }

    #[test]
    fn json_strings_are_masked_at_every_depth() {
        let r = Redactor::new(["s3cr3t!"]);
        let v = serde_json::json!({"a": "x s3cr3t! y", "b": [1, {"c": "s3cr3t!"}], "n": 5});
        assert_eq!(
            r.redact_json(&v),
            serde_json::json!({"a": "x *** y", "b": [1, {"c": "***"}], "n": 5})
        );
    }

    #[test]
    fn debug_never_shows_values() {
        let r = Redactor::new(["topsecretvalue"]);
        assert!(!format!("{r:?}").contains("topsecret"));
        assert!(!format!("{:?}", r.stream()).contains("topsecret"));
    }

    #[test]
    fn stream_without_secrets_passes_through_immediately() {
        let r = Redactor::new(Vec::<String>::new());
        let mut s = r.stream();
        assert_eq!(s.push(b"abc"), b"abc");
        assert_eq!(s.finish(), b"");
    }
}
