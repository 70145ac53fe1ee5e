//! The model API endpoint an adapter's variables name: the host (with its port) of a base
//! URL, for the egress allowlist and the no-network refusal. Pure string work on the user's
//! value; never resolves or connects.

/// The `host` or `host:port` of `base_url` (credentials and path dropped); `default` when
/// the URL is unset or empty.
pub(crate) fn host_of(base_url: Option<&str>, default: &str) -> String {
    let Some(url) = base_url.map(str::trim).filter(|u| !u.is_empty()) else {
        return default.into();
    };
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    authority.to_string()
}

/// The value of `name` among the variables the agent gets.
pub(crate) fn var<'a>(exposed: &'a [(String, String)], name: &str) -> Option<&'a str> {
    exposed
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_comes_from_the_base_url() {
        assert_eq!(host_of(None, "api.openai.com"), "api.openai.com");
        assert_eq!(host_of(Some(" "), "api.openai.com"), "api.openai.com");
        assert_eq!(
            host_of(Some("http://127.0.0.1:8080/v1"), "x"),
            "127.0.0.1:8080"
        );
        assert_eq!(
            host_of(Some("https://user:pw@gateway.example.com/openai?x=1"), "x"),
            "gateway.example.com"
        );
        assert_eq!(host_of(Some("gateway.internal"), "x"), "gateway.internal");
    }
}
