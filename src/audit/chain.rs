//! Canonical JSON and the hash chain, to the byte as DESIGN.md fixes them.
//!
//! Canonical form: keys sorted by code point at every level, no insignificant whitespace,
//! UTF-8, no escaping beyond what JSON requires — what Python's
//! `json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` prints.
//! serde_json's `Map` is a `BTreeMap` (this crate does not enable `preserve_order`), and
//! byte order of UTF-8 is code-point order, so `serde_json::to_string` is that form.
//!
//! `hash = hex(sha256(canonical(entry without "hash")))`; the first `prev_hash` is 64 zeros.
//! This module owns only these rules: it never touches git or the file system.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical JSON text of `value`.
pub fn canonical(value: &Map<String, Value>) -> String {
    // Serialising a Map of Values cannot fail: every key is a string, no float is NaN.
    serde_json::to_string(value).unwrap_or_default()
}

/// The hash of an entry: sha256 over the canonical JSON of every field but `hash`.
pub fn entry_hash(entry: &Map<String, Value>) -> String {
    let mut hasher = Sha256::new();
    let text = if entry.contains_key("hash") {
        let mut without = entry.clone();
        without.remove("hash");
        canonical(&without)
    } else {
        canonical(entry)
    };
    hasher.update(text.as_bytes());
    hex::encode(hasher.finalize())
}

/// Fills in `prev_hash` and `hash` of `entry` so that it follows `prev`.
pub fn seal(entry: &mut Map<String, Value>, prev: &str) {
    entry.remove("hash");
    entry.insert("prev_hash".into(), Value::String(prev.to_string()));
    let hash = entry_hash(entry);
    entry.insert("hash".into(), Value::String(hash));
}

/// The JSON path of the first floating-point number in `value`, if any: entries carry
/// integers only (durations in milliseconds), since float formatting differs between
/// languages and would break the byte-exact chain.
pub fn find_float(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) if n.is_f64() => Some(String::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_float(v).map(|p| format!("[{i}]{p}"))),
        Value::Object(map) => map
            .iter()
            .find_map(|(k, v)| find_float(v).map(|p| format!(".{k}{p}"))),
        _ => None,
    }
}

/// Whether `text` is a 64-character lowercase hex hash.
pub fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_at_every_level_without_whitespace() {
        let v = json!({"b": 1, "a": {"z": [1, {"y": "é", "x": null}], "m": "\u{1}"}});
        let Value::Object(map) = v else { panic!() };
        assert_eq!(
            canonical(&map),
            r#"{"a":{"m":"\u0001","z":[1,{"x":null,"y":"é"}]},"b":1}"#
        );
    }

    #[test]
    fn seal_links_and_hashes() {
        let mut e = Map::new();
        e.insert("event".into(), json!("x"));
        seal(&mut e, ZERO_HASH);
        assert_eq!(e["prev_hash"], json!(ZERO_HASH));
        assert!(is_hash(e["hash"].as_str().unwrap_or("")));
        assert_eq!(e["hash"], json!(entry_hash(&e)));
    }

    #[test]
    fn floats_are_found() {
        assert_eq!(
            find_float(&json!({"a": [1, {"b": 1.5}]})),
            Some(".a[1].b".into())
        );
        assert_eq!(find_float(&json!({"a": [1, -2, 30000000000u64]})), None);
    }
}
