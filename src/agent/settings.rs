//! Which of an adapter's variables are settings rather than secrets ([`super::Agent::setting_names`]):
//! a base URL or a model name is something an agent may well write into the project, and
//! searching the change for it as a secret failed honest runs. A setting's value can carry
//! a credential all the same (`https://user:key@host/`, `?api_key=…`): such a value stays a
//! secret. It only classifies; it never reads the environment, prints or records.

/// Words that make a URL query parameter a credential (matched in its lower-cased name).
const CREDENTIAL_WORDS: [&str; 8] = [
    "key",
    "token",
    "sig",
    "secret",
    "password",
    "passwd",
    "auth",
    "credential",
];

/// True when `value` (a setting's) carries a credential: a URL with user information
/// (`user@`, `user:pass@`) or a query parameter whose name holds one of
/// [`CREDENTIAL_WORDS`] (`key`, `api_key`, `token`, `sig`, `X-Amz-Signature`, …).
pub fn carries_credential(value: &str) -> bool {
    let value = value.trim();
    let rest = match value.find("://") {
        Some(i) => &value[i + 3..],
        None => value,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return true;
    }
    let Some(q) = value.find('?') else {
        return false;
    };
    let query = &value[q + 1..];
    let query = query.split('#').next().unwrap_or_default();
    query.split(['&', ';']).any(|pair| {
        let name = pair
            .split('=')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        CREDENTIAL_WORDS.iter().any(|w| name.contains(w))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_model_names_and_switches_carry_no_credential() {
        for v in [
            "https://api.anthropic.com",
            "http://127.0.0.1:8080/v1",
            "https://proxy.example/v1?region=eu&beta=1",
            "claude-sonnet-4-5",
            "1",
            "us-east5",
            "my-project-123",
            "https://host/path@v2",
        ] {
            assert!(!carries_credential(v), "{v}");
        }
    }

    #[test]
    fn userinfo_and_credential_query_parameters_keep_a_setting_secret() {
        for v in [
            "https://user:pass@api.example",
            "https://token@api.example/v1",
            "user:pass@api.example:443",
            "https://api.example/v1?key=abc",
            "https://api.example/v1?x=1&API_KEY=abc",
            "https://api.example/v1?access_token=abc#frag",
            "https://bucket.example/o?X-Amz-Signature=abc",
            "https://api.example/v1?sig=abc",
            "https://api.example/v1?a=1;auth=abc",
            " https://user@api.example ",
        ] {
            assert!(carries_credential(v), "{v}");
        }
    }
}
