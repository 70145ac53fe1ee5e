//! Time and randomness, injectable for tests.
//!
//! `CHANT_TIMESTAMP` (RFC 3339) fixes "now"; `CHANT_RANDOMNESS_SEED` (an integer) makes
//! random choices (spec id suffixes, session names) repeatable. Production code never
//! reads the system clock or the OS random source any other way.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, FixedOffset, Local, Utc};

/// The current time, or `CHANT_TIMESTAMP` when set.
pub fn now() -> DateTime<Utc> {
    fixed_now().map_or_else(Utc::now, |t| t.with_timezone(&Utc))
}

/// The current local time (used for spec id dates), or `CHANT_TIMESTAMP` when set.
pub fn now_local() -> DateTime<FixedOffset> {
    fixed_now().unwrap_or_else(|| Local::now().fixed_offset())
}

fn fixed_now() -> Option<DateTime<FixedOffset>> {
    let text = std::env::var("CHANT_TIMESTAMP").ok()?;
    DateTime::parse_from_rfc3339(text.trim()).ok()
}

static SEEDED_STATE: AtomicU64 = AtomicU64::new(0);

/// A random 64-bit number: from the OS, or from a splitmix64 stream seeded by
/// `CHANT_RANDOMNESS_SEED` so that tests are repeatable.
pub fn random_u64() -> u64 {
    if let Some(seed) = std::env::var("CHANT_RANDOMNESS_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        let step = SEEDED_STATE.fetch_add(1, Ordering::Relaxed);
        return splitmix64(seed.wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    }
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // The OS random source is unavailable only on exotic systems; fall back to the
        // clock mixed with the pid, which is unique enough for names (never for keys).
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
        return splitmix64(nanos ^ u64::from(std::process::id()));
    }
    u64::from_le_bytes(bytes)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` random characters from `0-9a-z`.
pub fn random_base36(n: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(n);
    let mut bits = random_u64();
    for i in 0..n {
        if i > 0 && i % 8 == 0 {
            bits = random_u64();
        }
        out.push(ALPHABET[(bits % 36) as usize] as char);
        bits /= 36;
    }
    out
}
