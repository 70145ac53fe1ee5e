//! Redaction: one-shot, streaming (values split across chunks), binary output, JSON.

use git_chant::secrets::{Redactor, MASK};

const SECRET: &str = "sk-live-0123456789abcdef";

fn stream_all(r: &Redactor, chunks: &[&[u8]]) -> Vec<u8> {
    let mut s = r.stream();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(s.push(c));
    }
    out.extend(s.finish());
    out
}

#[test]
fn a_secret_split_at_every_boundary_is_never_emitted() {
    let r = Redactor::new([SECRET]);
    let text = format!("before {SECRET} after");
    let bytes = text.as_bytes();
    let expected = format!("before {MASK} after").into_bytes();
    for i in 0..=bytes.len() {
        let out = stream_all(&r, &[&bytes[..i], &bytes[i..]]);
        assert_eq!(out, expected, "split at {i}");
    }
}

#[test]
fn a_secret_split_into_three_chunks_anywhere_is_never_emitted() {
    let r = Redactor::new([SECRET, "another-secret-value"]);
    let text = format!("{SECRET}another-secret-value|{SECRET}");
    let bytes = text.as_bytes();
    let expected = format!("{MASK}|{MASK}").into_bytes();
    for i in 0..=bytes.len() {
        for j in i..=bytes.len() {
            let out = stream_all(&r, &[&bytes[..i], &bytes[i..j], &bytes[j..]]);
            assert_eq!(out, expected, "splits at {i}, {j}");
        }
    }
}

#[test]
fn byte_at_a_time_matches_one_shot() {
    let r = Redactor::new([SECRET, "abcdef", "cdefgh", "hunter2!"]);
    let text = format!("x abcdefgh y {SECRET}{SECRET} z hunter2!hunter2 abcde");
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
    assert_eq!(stream_all(&r, &chunks), r.redact_bytes(text.as_bytes()));
    assert_eq!(
        r.redact(&text),
        format!("x {MASK} y {MASK} z {MASK}hunter2 abcde")
    );
}

#[test]
fn random_chunkings_match_one_shot() {
    let r = Redactor::new([SECRET, "abcdef", "cdefgh", "passw0rd"]);
    let text = format!("{SECRET} abcdefgh passw0rdpassw0rd {SECRET}abcdef end").repeat(3);
    let bytes = text.as_bytes();
    let expected = r.redact_bytes(bytes);
    let mut seed: u64 = 42;
    for _ in 0..500 {
        let mut chunks = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = ((seed >> 33) % 12) as usize;
            let end = (pos + n).min(bytes.len());
            chunks.push(&bytes[pos..end]);
            pos = end;
        }
        assert_eq!(stream_all(&r, &chunks), expected);
    }
}

#[test]
fn non_secret_and_binary_output_passes_through_in_order() {
    let r = Redactor::new([SECRET]);
    let mut input = Vec::new();
    for i in 0..2000u32 {
        input.push((i * 7 % 256) as u8);
    }
    input.extend_from_slice(&[0xff, 0xfe, 0x00, 0xc3]);
    for size in [1, 3, 7, 64, 1000, 5000] {
        let chunks: Vec<&[u8]> = input.chunks(size).collect();
        assert_eq!(stream_all(&r, &chunks), input, "chunk size {size}");
    }
}

#[test]
fn holds_back_at_most_max_len_minus_one() {
    let r = Redactor::new([SECRET]);
    // The longest pattern is the value's hex form, twice its length.
    assert_eq!(r.max_len(), 2 * SECRET.len());
    let held = r.max_len() - 1;
    let mut s = r.stream();
    let out = s.push(&[b'x'; 100]);
    assert_eq!(out.len(), 100 - held);
    let out = s.push(b"y");
    assert_eq!(out, b"x");
    assert_eq!(s.finish().len(), held);
}

#[test]
fn secrets_inside_binary_output_are_masked() {
    let r = Redactor::new([SECRET]);
    let mut input = vec![0xff, 0x00];
    input.extend_from_slice(SECRET.as_bytes());
    input.extend_from_slice(&[0xfe]);
    let mut expected = vec![0xff, 0x00];
    expected.extend_from_slice(MASK.as_bytes());
    expected.push(0xfe);
    for i in 0..=input.len() {
        assert_eq!(stream_all(&r, &[&input[..i], &input[i..]]), expected);
    }
}

#[test]
fn json_ledger_entry_is_masked() {
    let r = Redactor::new([SECRET]);
    let entry = serde_json::json!({
        "event": "command_run",
        "details": {"command": format!("curl -H 'Authorization: {SECRET}'"), "exit_code": 0,
                    "argv": ["a", SECRET]}
    });
    let masked = r.redact_json(&entry);
    assert!(!masked.to_string().contains("sk-live"));
    assert_eq!(masked["details"]["exit_code"], 0);
    assert_eq!(masked["details"]["argv"][1], MASK);
}
