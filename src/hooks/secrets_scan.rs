//! Recognising content that looks like a credential (private keys, cloud keys, tokens),
//! for the `pre-commit` hook. Reports what kind it looks like, never the value.

/// A token prefix, the least number of token characters after it, what it is, and which
/// characters the token is made of.
type Check = (&'static str, usize, &'static str, fn(char) -> bool);

/// What kind of secret `line` looks like, if any.
pub fn looks_like_secret(line: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(line);
    if text.contains("-----BEGIN") && text.contains("PRIVATE KEY") {
        return Some("a private key");
    }
    let checks: &[Check] = &[
        ("AKIA", 16, "an AWS access key id", upper_digit),
        ("ASIA", 16, "an AWS access key id", upper_digit),
        ("ghp_", 36, "a GitHub token", alnum),
        ("gho_", 36, "a GitHub token", alnum),
        ("ghs_", 36, "a GitHub token", alnum),
        ("ghu_", 36, "a GitHub token", alnum),
        ("github_pat_", 22, "a GitHub token", token),
        ("glpat-", 20, "a GitLab token", token),
        ("xoxb-", 10, "a Slack token", token),
        ("xoxp-", 10, "a Slack token", token),
        ("AIza", 35, "a Google API key", token),
        ("sk-", 32, "an API secret key", token),
    ];
    for (prefix, min, kind, class) in checks {
        let mut rest = text.as_ref();
        while let Some(at) = rest.find(prefix) {
            let before_ok = rest[..at]
                .chars()
                .last()
                .is_none_or(|c| !c.is_ascii_alphanumeric());
            let tail = &rest[at + prefix.len()..];
            let run = tail.chars().take_while(|c| class(*c)).count();
            if before_ok && run >= *min {
                return Some(kind);
            }
            rest = &rest[at + prefix.len()..];
        }
    }
    None
}

fn upper_digit(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn token(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_common_credentials() {
        assert!(looks_like_secret(b"-----BEGIN OPENSSH PRIVATE KEY-----").is_some());
        assert!(looks_like_secret(b"aws_key = AKIAIOSFODNN7EXAMPLE").is_some());
        assert!(looks_like_secret(b"token: ghp_abcdefghijklmnopqrstuvwxyz0123456789").is_some());
        assert!(looks_like_secret(b"KEY=sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345").is_some());
        assert!(looks_like_secret(b"let x = 1; // ask-for-help").is_none());
        assert!(looks_like_secret(b"AKIA is a prefix").is_none());
    }
}
