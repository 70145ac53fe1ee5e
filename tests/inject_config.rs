//! `agent.secrets.inject` and `agent.network.upstream_ca`: read once at load, every bad
//! shape refused with the key that is wrong and what to write instead.

use git_chant::config::{parse, Config};
use git_chant::net::{Decision, EgressPolicy};

fn load(yaml: &str) -> Result<Config, String> {
    parse(".chant/config.md", &format!("---\n{yaml}\n---\n")).map_err(|e| e.to_string())
}

#[test]
fn an_inject_map_loads_and_its_hosts_are_allowed_without_listing_them_again() {
    let config = load(
        "agent:\n  network:\n    enabled: true\n    upstream_ca: fixtures/tls/ca.pem\n  secrets:\n    inject:\n      ANTHROPIC_API_KEY:\n        - api.anthropic.com\n        - \"*.example.com:8443\"\n",
    )
    .expect("loads");
    let inject = &config.agent.secrets.inject;
    assert_eq!(inject.len(), 1);
    let hosts = inject["ANTHROPIC_API_KEY"].0.patterns();
    assert_eq!(hosts.len(), 2);
    assert_eq!(
        config.agent.network.upstream_ca.as_deref(),
        Some(std::path::Path::new("fixtures/tls/ca.pem"))
    );
    let policy = EgressPolicy::from_config(&config.agent.network, &config.agent.secrets);
    assert!(matches!(
        policy.decide("api.anthropic.com", 443),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        policy.decide("a.example.com", 8443),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        policy.decide("a.example.com", 443),
        Decision::Deny(_)
    ));
    assert!(matches!(policy.decide("evil.com", 443), Decision::Deny(_)));
}

#[test]
fn bad_inject_entries_are_refused_naming_the_key() {
    for (yaml, key, hint) in [
        ("inject: [A]", "agent.secrets.inject", "mapping"),
        (
            "inject:\n      KEY: api.x.com",
            "agent.secrets.inject.KEY",
            "list",
        ),
        (
            "inject:\n      KEY: []",
            "agent.secrets.inject.KEY",
            "no host",
        ),
        (
            "inject:\n      KEY:\n        - \"*\"",
            "agent.secrets.inject.KEY",
            "anywhere",
        ),
        (
            "inject:\n      KEY:\n        - \"a b\"",
            "agent.secrets.inject.KEY",
            "",
        ),
        (
            "inject:\n      \"BAD-NAME\": [x.com]",
            "agent.secrets.inject.BAD-NAME",
            "variable name",
        ),
        (
            "inject:\n      \"1KEY\": [x.com]",
            "agent.secrets.inject.1KEY",
            "variable name",
        ),
        (
            "inject:\n      KEY:\n        - 7",
            "agent.secrets.inject.KEY",
            "text",
        ),
    ] {
        let err = load(&format!("agent:\n  secrets:\n    {yaml}\n")).expect_err(yaml);
        assert!(err.contains(key), "{yaml}: {err}");
        assert!(err.contains(hint), "{yaml}: {err}");
    }
}

#[test]
fn an_empty_upstream_ca_is_refused_naming_the_key() {
    let err = load("agent:\n  network:\n    upstream_ca: \"\"\n").expect_err("empty");
    assert!(err.contains("agent.network.upstream_ca"), "{err}");
    assert!(err.contains("PEM"), "{err}");
}
