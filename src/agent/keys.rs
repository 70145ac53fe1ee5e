//! An adapter's API keys, injected by default (`agent.secrets.inject_agent_keys`): where
//! chant's egress proxy is the agent's only way out (levels docker and vm, with
//! `agent.network.enabled`), the agent's own key is put into `agent.secrets.inject` for
//! its API hosts, so the agent holds a placeholder and the proxy puts the key in toward
//! those hosts only.
//!
//! It owns the rule of who wins: `hide` over everything (the agent gets neither the value
//! nor a placeholder), then the user's own `inject` entry for the name (their hosts), then an
//! `expose` entry naming the variable exactly (the agent gets the value, as the user asked);
//! a glob such as `ANTHROPIC_*` or `*` is not such an entry. Only set variables are
//! injected. It never reads the environment, never prints and never records: the caller
//! hands it the collected secrets and adds what it returns to the run's config.

use std::collections::BTreeMap;

use super::Agent;
use crate::config::{HostList, SecretsConfig};
use crate::pattern::HostRules;
use crate::secrets::Secrets;

/// The default of [`Agent::api_keys`]: among `credentials`, the names ending in `_API_KEY`
/// or `_AUTH_TOKEN`; none when one of their `*_BASE_URL` variables is set to plain HTTP.
pub fn by_convention(credentials: &[&'static str], secrets: &Secrets) -> Vec<&'static str> {
    let plain_http = credentials
        .iter()
        .filter(|n| n.ends_with("_BASE_URL"))
        .filter_map(|n| secrets.get(n))
        .any(|url| {
            url.trim()
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        });
    if plain_http {
        return Vec::new();
    }
    credentials
        .iter()
        .filter(|n| n.ends_with("_API_KEY") || n.ends_with("_AUTH_TOKEN"))
        .copied()
        .collect()
}

/// What the adapter's keys add to `agent.secrets.inject` for one run, name → its API hosts.
/// `proxy_only_way_out` is true where chant's proxy is the sandbox's only route (docker and
/// vm with the network enabled): elsewhere nothing is added (see docs/sandbox.md for why).
pub fn default_injection(
    config: &SecretsConfig,
    agent: &dyn Agent,
    secrets: &Secrets,
    proxy_only_way_out: bool,
) -> BTreeMap<String, HostList> {
    let mut out = BTreeMap::new();
    if !config.inject_agent_keys || !proxy_only_way_out {
        return out;
    }
    let hosts = agent.api_hosts(secrets);
    let Ok(rules) = HostRules::new(&hosts) else {
        return out;
    };
    if rules.is_empty() {
        return out;
    }
    for name in agent.api_keys(secrets) {
        let hidden = config.hide.0.is_match(name);
        let configured = config.inject.contains_key(name);
        let exposed_by_name = config.expose.0.patterns().iter().any(|p| p == name);
        if hidden || configured || exposed_by_name || secrets.get(name).is_none() {
            continue;
        }
        out.insert(name.to_string(), HostList(rules.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxLevel;

    fn setup(yaml: &str, vars: &[(&str, &str)]) -> (crate::config::Config, Secrets) {
        let config = crate::config::parse("test", &format!("---\n{yaml}\n---\n")).expect("config");
        let mut secrets = Secrets::default();
        for (k, v) in vars {
            secrets.insert(*k, *v, crate::secrets::Origin::Env);
        }
        (config, secrets)
    }

    fn injected(yaml: &str, vars: &[(&str, &str)], only_way_out: bool) -> Vec<String> {
        let (config, secrets) = setup(yaml, vars);
        let agent = crate::agent::for_config(&config);
        default_injection(
            &config.agent.secrets,
            agent.as_ref(),
            &secrets,
            only_way_out,
        )
        .into_iter()
        .map(|(name, hosts)| {
            let hosts: Vec<String> = hosts.0.patterns().iter().map(|p| p.to_string()).collect();
            format!("{name}→{}", hosts.join(","))
        })
        .collect()
    }

    const CLAUDE: &str = "agent:\n  command: [claude]";
    const KEY: (&str, &str) = ("ANTHROPIC_API_KEY", "sk-ant-api03-abcdefghijklmnop");

    #[test]
    fn the_adapters_key_is_injected_for_its_api_host_where_the_proxy_is_the_only_way_out() {
        assert_eq!(
            injected(CLAUDE, &[KEY], true),
            ["ANTHROPIC_API_KEY→api.anthropic.com"]
        );
        let base = (
            "ANTHROPIC_BASE_URL",
            "https://gateway.example.com:8443/anthropic",
        );
        let token = ("ANTHROPIC_AUTH_TOKEN", "tok-abcdefghijklmnopqrst");
        assert_eq!(
            injected(CLAUDE, &[KEY, base, token], true),
            [
                "ANTHROPIC_API_KEY→gateway.example.com:8443",
                "ANTHROPIC_AUTH_TOKEN→gateway.example.com:8443"
            ]
        );
        let _ = SandboxLevel::Docker;
    }

    #[test]
    fn nothing_is_injected_by_default_where_it_would_not_hold_or_not_work() {
        // Not the only way out (none, permissions, kubernetes), switched off, not set, a
        // plain-HTTP endpoint (values go in only over TLS), an agent chant knows nothing of,
        // and variables that are not keys (the endpoint itself, AWS's signing keys).
        assert!(injected(CLAUDE, &[KEY], false).is_empty());
        let off = "agent:\n  command: [claude]\n  secrets:\n    inject_agent_keys: false";
        assert!(injected(off, &[KEY], true).is_empty());
        assert!(injected(CLAUDE, &[], true).is_empty());
        let http = ("ANTHROPIC_BASE_URL", "HTTP://127.0.0.1:8080");
        assert!(injected(CLAUDE, &[KEY, http], true).is_empty());
        assert!(injected("agent:\n  command: [./agent.sh]", &[KEY], true).is_empty());
        let aws = [
            ("AWS_SECRET_ACCESS_KEY", "abcdefghijklmnopqrstuvwxyz"),
            ("AWS_SESSION_TOKEN", "abcdefghijklmnopqrstuvwxyz"),
            ("ANTHROPIC_BASE_URL", "https://gateway.example.com"),
        ];
        assert!(injected(CLAUDE, &aws, true).is_empty());
    }

    #[test]
    fn hide_then_the_users_inject_then_an_exact_expose_win_over_the_default() {
        let hide = "agent:\n  command: [claude]\n  secrets:\n    hide: [\"ANTHROPIC_*\"]";
        assert!(injected(hide, &[KEY], true).is_empty());
        // Hidden even when also exposed by name.
        let both = "agent:\n  command: [claude]\n  secrets:\n    expose: [ANTHROPIC_API_KEY]\n    hide: [ANTHROPIC_API_KEY]";
        assert!(injected(both, &[KEY], true).is_empty());
        let theirs = "agent:\n  command: [claude]\n  secrets:\n    inject:\n      ANTHROPIC_API_KEY: [proxy.corp.example]";
        assert!(injected(theirs, &[KEY], true).is_empty());
        let exposed = "agent:\n  command: [claude]\n  secrets:\n    expose: [ANTHROPIC_API_KEY]";
        assert!(injected(exposed, &[KEY], true).is_empty());
        // A glob is not an explicit choice for this variable: the default still applies.
        for glob in ["\"*\"", "\"ANTHROPIC_*\"", "\"*_API_KEY\""] {
            let yaml = format!("agent:\n  command: [claude]\n  secrets:\n    expose: [{glob}]");
            assert_eq!(
                injected(&yaml, &[KEY], true),
                ["ANTHROPIC_API_KEY→api.anthropic.com"],
                "{glob}"
            );
        }
    }
}
