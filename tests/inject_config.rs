//! `agent.secrets.inject` and `agent.network.upstream_ca`: read once at load, every bad
//! shape refused with the key that is wrong and what to write instead.

mod common;

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

#[test]
fn an_injected_secret_never_reaches_the_agent_as_its_value_but_is_always_masked() {
    use git_chant::secrets::{Origin, Secrets};
    let config = load(
        "agent:\n  secrets:\n    expose: [\"*\"]\n    inject:\n      API_KEY: [api.example.com]\n",
    )
    .expect("loads");
    let value = "sk-live-0123456789abcdefABCDEF";
    let mut secrets = Secrets::new();
    secrets.insert("API_KEY", value, Origin::Env);
    secrets.insert("OTHER", "plain-exposed-value", Origin::Env);
    let given = secrets.filtered(&config.agent.secrets);
    assert!(
        given.iter().all(|(k, v)| k != "API_KEY" && v != value),
        "{given:?}"
    );
    assert!(given.iter().any(|(k, _)| k == "OTHER"));
    let placeholders = secrets
        .placeholders(&config.agent.secrets)
        .expect("placeholders");
    assert_eq!(placeholders.len(), 1);
    assert_ne!(placeholders[0].placeholder(), value);
    let redactor = secrets.redactor(&config.agent.secrets);
    assert!(!redactor.redact(&format!("key={value}")).contains(value));
    // Not exposed, from the environment: still masked, because it is injected.
    let hidden =
        load("agent:\n  secrets:\n    inject:\n      API_KEY: [api.example.com]\n").expect("loads");
    assert!(!secrets
        .redactor(&hidden.agent.secrets)
        .redact(value)
        .contains(value));
}

#[test]
fn injecting_a_secret_no_source_holds_is_an_error_naming_it() {
    use git_chant::secrets::Secrets;
    let config = load("agent:\n  secrets:\n    inject:\n      MISSING_KEY: [api.example.com]\n")
        .expect("loads");
    let err = Secrets::new()
        .placeholders(&config.agent.secrets)
        .expect_err("missing");
    assert!(err.to_string().contains("MISSING_KEY"), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn doctor_says_which_secrets_are_injected_where_and_what_is_missing() {
    let repo = common::TestRepo::initialised();
    repo.write_config(
        "agent:\n  network:\n    upstream_ca: no/such.pem\n  secrets:\n    inject:\n      API_KEY: [api.example.com]\n",
    );
    let out = repo.chant(&["doctor"]).stdout();
    let line = out
        .lines()
        .find(|l| l.starts_with("inject"))
        .unwrap_or_else(|| panic!("no inject line: {out}"));
    assert!(line.contains("NOT ready"), "{line}");
    assert!(line.contains("API_KEY → api.example.com"), "{line}");
    assert!(line.contains("agent.network.enabled is false"), "{line}");
    assert!(line.contains("no/such.pem is not a file"), "{line}");
    repo.write_config(
        "agent:\n  network:\n    enabled: true\n  secrets:\n    inject:\n      API_KEY: [api.example.com]\n",
    );
    let out = repo.chant(&["doctor"]).stdout();
    assert!(
        out.lines().any(|l| l.starts_with("inject       on ")),
        "{out}"
    );
}

#[test]
fn injecting_without_the_network_is_refused_before_anything_is_created() {
    let repo = common::TestRepo::initialised();
    repo.use_agent(
        "greet.sh",
        "  sandbox: none\n  secrets:\n    inject:\n      API_KEY: [api.example.com]\n",
        "",
    );
    let id = repo.add_spec("Call the API", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    for args in [
        vec!["work", id.as_str()],
        vec!["work", id.as_str(), "--dry-run"],
    ] {
        let out = common::Run(
            repo.chant_cmd(&args)
                .env("API_KEY", "sk-test-api03-abcdefghijklmnop")
                .output()
                .expect("run"),
        )
        .assert_code(2);
        assert!(
            out.stderr().contains("agent.secrets.inject")
                && out.stderr().contains("agent.network.enabled"),
            "{args:?}: {}",
            out.stderr()
        );
    }
    assert_eq!(repo.rev(&format!("chant/{id}")), None, "no branch created");
    assert!(repo.events("spec_started").is_empty(), "nothing started");
}

#[test]
fn injecting_at_a_level_chants_proxy_cannot_reach_is_refused_before_anything_is_created() {
    let repo = common::TestRepo::initialised();
    repo.use_agent(
        "greet.sh",
        "  sandbox: kubernetes\n  network:\n    enabled: true\n  secrets:\n    inject:\n      API_KEY: [api.example.com]\n  kubernetes:\n    image: worker:1\n    repo_url: https://git.example.com/r.git\n",
        "",
    );
    let id = repo.add_spec("Call the API", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    for args in [
        vec!["work", id.as_str()],
        vec!["work", id.as_str(), "--dry-run"],
    ] {
        let out = common::Run(
            repo.chant_cmd(&args)
                .env("API_KEY", "sk-test-api03-abcdefghijklmnop")
                .env("KUBECONFIG", "/nonexistent/kubeconfig")
                .output()
                .expect("run"),
        )
        .assert_code(2);
        assert!(
            out.stderr().contains("agent.secrets.inject")
                && out.stderr().contains("no route through chant's proxy"),
            "{args:?}: {}",
            out.stderr()
        );
        assert!(out.stdout().is_empty(), "{args:?}: {}", out.stdout());
    }
    assert_eq!(repo.rev(&format!("chant/{id}")), None, "no branch created");
    assert!(repo.events("spec_started").is_empty(), "nothing started");
    let doctor = repo.chant(&["doctor"]).stdout();
    assert!(
        doctor.lines().any(|l| l.starts_with("inject")
            && l.contains("NOT ready")
            && l.contains("not available at the kubernetes level yet")),
        "{doctor}"
    );
}
