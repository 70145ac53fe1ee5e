//! Per-run placeholders for injected secrets (`agent.secrets.inject`): a stand-in of the
//! same shape as the value, so the agent's tools accept it, that only chant's egress proxy
//! turns back into the value.
//!
//! It owns the shape rule only; it must never print, and a [`Placeholder`]'s `Debug` never
//! shows the value.

use std::fmt;

/// Fewer random characters than this and a placeholder could be guessed or collide with
/// ordinary text; such a secret is refused for injection.
pub const MIN_RANDOM_CHARS: usize = 12;

/// Why a value cannot be injected. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    #[error("secret '{name}' is too short to inject: its placeholder needs at least {MIN_RANDOM_CHARS} letters or digits after the prefix; inject a real credential or expose it instead")]
    TooShort { name: String },
    #[error("cannot draw a random placeholder for secret '{name}': the system's random source failed ({reason})")]
    NoRandom { name: String, reason: String },
    #[error("secret '{name}' holds a control character or space, which cannot go into an HTTP header; check the value in its source")]
    NotHeaderSafe { name: String },
}

/// One injected secret for one run: its name, the value and the placeholder the agent sees.
#[derive(Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub name: String,
    value: String,
    placeholder: String,
}

impl fmt::Debug for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Placeholder")
            .field("name", &self.name)
            .field("placeholder", &self.placeholder)
            .finish_non_exhaustive()
    }
}

impl Placeholder {
    /// A placeholder for `value`, drawn with the system's random source.
    pub fn new(name: &str, value: &str) -> Result<Placeholder, PlaceholderError> {
        Placeholder::with_random(name, value, |buf| {
            // Zeros would make every placeholder alike: refuse instead.
            getrandom::fill(buf).map_err(|e| PlaceholderError::NoRandom {
                name: name.to_string(),
                reason: e.to_string(),
            })
        })
    }

    /// A placeholder for `value` drawn from `random` (tests pass a fixed source).
    pub fn with_random(
        name: &str,
        value: &str,
        mut random: impl FnMut(&mut [u8]) -> Result<(), PlaceholderError>,
    ) -> Result<Placeholder, PlaceholderError> {
        if value.chars().any(|c| c.is_control() || c == ' ') {
            return Err(PlaceholderError::NotHeaderSafe {
                name: name.to_string(),
            });
        }
        let prefix = prefix_len(value);
        let body = &value[prefix..];
        if body.chars().filter(|c| c.is_ascii_alphanumeric()).count() < MIN_RANDOM_CHARS {
            return Err(PlaceholderError::TooShort {
                name: name.to_string(),
            });
        }
        loop {
            let mut bytes = vec![0u8; body.len()];
            random(&mut bytes)?;
            let mut out = String::with_capacity(value.len());
            out.push_str(&value[..prefix]);
            for (c, r) in body.chars().zip(bytes) {
                out.push(same_class(c, r));
            }
            if out != value {
                return Ok(Placeholder {
                    name: name.to_string(),
                    value: value.to_string(),
                    placeholder: out,
                });
            }
        }
    }

    /// The real value (for the proxy and the redactor only).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the agent's environment holds instead of the value.
    pub fn placeholder(&self) -> &str {
        &self.placeholder
    }
}

/// The prefix kept: up to and including the last `-`/`_` of the leading word, a word being
/// short lowercase-or-digit segments each ended by `-` or `_` (`sk-ant-api03-`, `ghp_`,
/// `xoxb-`). The body after it is what gets randomised.
fn prefix_len(value: &str) -> usize {
    let mut end = 0;
    let mut segment = 0;
    for (i, c) in value.char_indices() {
        if c == '-' || c == '_' {
            if segment == 0 {
                break;
            }
            end = i + 1;
            segment = 0;
        } else if (c.is_ascii_lowercase() || c.is_ascii_digit()) && segment < 8 {
            segment += 1;
        } else {
            break;
        }
    }
    end
}

/// A random character of the same class as `c` (lower, upper, digit); anything else kept.
fn same_class(c: char, r: u8) -> char {
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const DIGIT: &[u8] = b"0123456789";
    let pick = |set: &[u8]| char::from(set[usize::from(r) % set.len()]);
    if c.is_ascii_lowercase() {
        pick(LOWER)
    } else if c.is_ascii_uppercase() {
        pick(UPPER)
    } else if c.is_ascii_digit() {
        pick(DIGIT)
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-ant-api03-AbCdEf0123456789_xyZ-QQ";

    #[test]
    fn a_placeholder_keeps_the_prefix_length_and_alphabet_but_not_the_body() {
        let p = Placeholder::new("K", KEY).expect("placeholder");
        let ph = p.placeholder();
        assert!(ph.starts_with("sk-ant-api03-"), "{ph}");
        assert_eq!(ph.len(), KEY.len());
        assert_ne!(ph, KEY);
        for (a, b) in ph.chars().zip(KEY.chars()) {
            assert_eq!(a.is_ascii_lowercase(), b.is_ascii_lowercase());
            assert_eq!(a.is_ascii_uppercase(), b.is_ascii_uppercase());
            assert_eq!(a.is_ascii_digit(), b.is_ascii_digit());
        }
        // The body shares no long run with the value (random, not a shifted copy).
        assert!(!ph.contains("AbCdEf0123"), "{ph}");
        let q = Placeholder::new("K", KEY).expect("placeholder");
        assert_ne!(q.placeholder(), ph, "a fresh placeholder per run");
    }

    #[test]
    fn prefixes_stop_at_the_leading_word() {
        for (value, prefix) in [
            ("ghp_0123456789abcdefABCDEF", "ghp_"),
            ("xoxb-1234-5678-abcdefABCDEFGH", "xoxb-1234-5678-"),
            ("AKIAIOSFODNN7EXAMPLEKEY", ""),
            ("-leading-dash-0123456789ab", ""),
            ("averyveryverylongword-0123456789abcdef", ""),
        ] {
            assert_eq!(&value[..prefix_len(value)], prefix, "{value}");
        }
    }

    #[test]
    fn short_or_header_breaking_values_are_refused_without_showing_them() {
        for value in [
            "sk-ant-short",
            "ab",
            "sk-0123456789abcdef\r\nX-Evil: 1",
            "sk-0123456789abc def",
            "sk-0123456789abcdef\0",
        ] {
            let err = Placeholder::new("API_KEY", value).expect_err(value);
            let text = err.to_string();
            assert!(text.contains("API_KEY"), "{text}");
            assert!(!text.contains(value), "{text}");
        }
    }

    #[test]
    fn debug_never_shows_the_value() {
        let p = Placeholder::new("K", KEY).expect("placeholder");
        let shown = format!("{p:?}");
        assert!(!shown.contains(KEY), "{shown}");
        assert!(shown.contains(p.placeholder()));
    }
}
