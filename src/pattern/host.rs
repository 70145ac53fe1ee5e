//! Network host patterns: `host`, `host:port`, `*.domain`, `*.domain:port` and `*`.

use std::fmt;

use super::PatternError;

/// One host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    text: String,
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// `*`: every host.
    Any,
    /// `*.example.com`: any name below `example.com` (not `example.com` itself).
    Below(String),
    /// An exact name or IP literal.
    Exact(String),
}

impl HostPattern {
    pub fn parse(raw: &str) -> Result<Self, PatternError> {
        let text = raw.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Err(PatternError::new(raw, "is empty"));
        }
        if text.contains("://") || text.contains('/') {
            return Err(PatternError::new(
                raw,
                "is a URL; write only the host, e.g. 'api.example.com' or 'api.example.com:443'",
            ));
        }
        let (host_part, port) =
            split_port(&text).map_err(|reason| PatternError::new(raw, reason))?;
        let host = if host_part == "*" {
            HostMatch::Any
        } else if let Some(domain) = host_part.strip_prefix("*.") {
            check_name(domain).map_err(|reason| PatternError::new(raw, reason))?;
            HostMatch::Below(domain.to_string())
        } else {
            check_name(host_part).map_err(|reason| PatternError::new(raw, reason))?;
            HostMatch::Exact(host_part.to_string())
        };
        Ok(HostPattern { text, host, port })
    }

    /// True when a connection to `host:port` matches this pattern.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Below(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            HostMatch::Exact(name) => name.trim_start_matches('[').trim_end_matches(']') == host,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for `*` (with or without a port): every host.
    pub fn is_any(&self) -> bool {
        self.host == HostMatch::Any
    }

    /// True when the pattern names one host (a name or an IP literal), not a family.
    pub fn is_exact(&self) -> bool {
        matches!(self.host, HostMatch::Exact(_))
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    if let Some(rest) = text.strip_prefix('[') {
        let end = rest.find(']').ok_or("has an unclosed '['")?;
        let after = &rest[end + 1..];
        let host = &text[..end + 2];
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(parse_port(port)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err("has text after ']'".into()),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((host, Some(parse_port(port)?))),
        Some(_) => Err("is an IPv6 address; write it in brackets, e.g. '[::1]:443'".into()),
        None => Ok((text, None)),
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "has port '{port}', which is not a number from 1 to 65535"
        )),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.starts_with('[') {
        return Ok(());
    }
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        && !name.starts_with('.')
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err("is not a host name (letters, digits, '-', '.'; '*.' only as a prefix)".into())
    }
}

/// A list of host patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRules(Vec<HostPattern>);

impl HostRules {
    pub fn new<S: AsRef<str>>(raw: &[S]) -> Result<Self, PatternError> {
        raw.iter()
            .map(|s| HostPattern::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(HostRules)
    }

    /// The first pattern matching `host:port`.
    pub fn find(&self, host: &str, port: u16) -> Option<&HostPattern> {
        self.0.iter().find(|p| p.matches(host, port))
    }

    pub fn patterns(&self) -> &[HostPattern] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let exact = HostPattern::parse("api.provider.com").expect("valid");
        assert!(exact.matches("API.provider.com", 443));
        assert!(!exact.matches("evil-api.provider.com", 443));
        let port = HostPattern::parse("registry.npmjs.org:443").expect("valid");
        assert!(port.matches("registry.npmjs.org", 443));
        assert!(!port.matches("registry.npmjs.org", 80));
        let below = HostPattern::parse("*.github.com").expect("valid");
        assert!(below.matches("api.github.com", 443));
        assert!(!below.matches("github.com", 443));
        assert!(!below.matches("evilgithub.com", 443));
        assert!(HostPattern::parse("*")
            .expect("valid")
            .matches("anything", 1));
        let v6 = HostPattern::parse("[::1]:8080").expect("valid");
        assert!(v6.matches("::1", 8080));
    }

    #[test]
    fn refusals() {
        for bad in ["", "https://x.com", "a..b", "x:0", "x:99999", "::1", "a b"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
