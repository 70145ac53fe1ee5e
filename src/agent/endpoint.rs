//! The host an agent's model API lives at, from the base-URL variable the user set (or the
//! vendor's default host), for the egress allowlist and the no-network refusal.
//!
//! Pure string work: never resolves a name, never connects.

/// The host (with its port, when the URL gives one) of `base_url`, else `default`.
pub fn host_of(base_url: Option<&str>, default: &str) -> String {
    let Some(url) = base_url.filter(|u| !u.trim().is_empty()) else {
        return default.to_string();
    };
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    authority.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_comes_from_the_base_url_else_the_default() {
        assert_eq!(host_of(None, "api.example.com"), "api.example.com");
        assert_eq!(host_of(Some("  "), "api.example.com"), "api.example.com");
        assert_eq!(
            host_of(Some("http://127.0.0.1:8080/v1"), "x"),
            "127.0.0.1:8080"
        );
        assert_eq!(
            host_of(Some("https://user:pw@gateway.example.com/g?x=1"), "x"),
            "gateway.example.com"
        );
    }
}
