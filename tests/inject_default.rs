//! The agent adapter's own API key is injected by default where chant's proxy is the only
//! way out (docker with `agent.network.enabled`): the fake API on the host's loopback gets
//! the real key, the agent holds a placeholder, and a placeholder sent anywhere else is
//! recorded. `hide`, an `expose` entry naming the key, and `inject_agent_keys: false` each
//! win over the default; at `none` the agent gets its key as before. The agent is
//! fixtures/agents/key-probe.sh run as Claude Code (`agent.kind: claude`). Needs a local
//! Docker Engine (skips loudly without one, unless CHANT_REQUIRE_DOCKER=1).

mod common;

use std::collections::HashMap;

use common::http::{FakeServer, Response};
use common::image::AGENTS;
use common::{crate_path, Run, TestRepo};
use sha2::Digest;

const VALUE: &str = "sk-ant-api03-RealValueRealValue0123456789xyz";

struct Probe {
    repo: TestRepo,
    id: String,
    api: FakeServer,
    other: FakeServer,
    run: Run,
}

fn ok(_: &common::http::Request) -> Response {
    Response {
        status: 200,
        content_type: "text/plain",
        body: b"ok\n".to_vec(),
        headers: Vec::new(),
    }
}

/// Runs key-probe.sh as Claude Code at `sandbox` (with `image` at docker), the network on
/// with one other allowed host, `secrets` as `agent.secrets`, and ANTHROPIC_API_KEY set.
fn probe(sandbox: &str, image: Option<&str>, secrets: &str) -> Probe {
    let api = FakeServer::start_tls(
        &crate_path("fixtures/tls/server.pem"),
        &crate_path("fixtures/tls/server.key"),
        ok,
    );
    let other = FakeServer::start(ok);
    let repo = TestRepo::initialised();
    let script = match image {
        Some(_) => format!("{AGENTS}/key-probe.sh"),
        None => crate_path("fixtures/agents/key-probe.sh")
            .to_string_lossy()
            .into_owned(),
    };
    let docker = image
        .map(|i| format!("  docker:\n    image: {i}\n    memory: 128M\n    cpu: 500m\n"))
        .unwrap_or_default();
    repo.write_config(&format!(
        "agent:\n  kind: claude\n  sandbox: {sandbox}\n  command: [\"{script}\", \"-p\", \"{}/\"]\n{docker}  network:\n    enabled: true\n    allowed_hosts: [\"127.0.0.1:{}\"]\n    upstream_ca: {}\n  secrets:\n{secrets}",
        other.url(),
        other.port,
        crate_path("fixtures/tls/ca.pem").display()
    ));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "chant config"]);
    let id = repo.add_spec("Call the API", &["key.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    let run = Run(repo
        .chant_cmd(&["work", &id])
        .env("ANTHROPIC_API_KEY", VALUE)
        .env(
            "ANTHROPIC_BASE_URL",
            format!("https://127.0.0.1:{}", api.port),
        )
        .output()
        .expect("run git-chant"));
    Probe {
        repo,
        id,
        api,
        other,
        run,
    }
}

impl Probe {
    /// What the agent wrote into key.txt, key → value.
    fn found(&self) -> HashMap<String, String> {
        let text = self
            .repo
            .git(&["show", &format!("chant/{}:key.txt", self.id)]);
        assert!(!text.contains(VALUE), "{text}");
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn printed(&self) -> String {
        format!("{}{}", self.run.stdout(), self.run.stderr())
    }
}

fn sha(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn image() -> Option<String> {
    common::image::curl_image("default injection test")
}

#[test]
fn at_docker_the_agents_own_key_is_injected_and_the_agent_holds_only_a_placeholder() {
    let Some(image) = image() else { return };
    let p = probe("docker", Some(&image), "    expose: []\n");
    assert_eq!(p.run.code(), 0, "{}", p.printed());
    // The API got the real key.
    let requests = p.api.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].header("x-api-key"), Some(VALUE));
    // The agent held a placeholder of the same shape, never the key.
    let found = p.found();
    assert_eq!(found["has-key"], "yes", "{found:?}");
    assert_ne!(found["key-sha"], sha(VALUE), "{found:?}");
    assert_eq!(found["key-len"], VALUE.len().to_string(), "{found:?}");
    assert_eq!(found["key-prefix"], "sk-ant-api03-", "{found:?}");
    // Sent in plain HTTP to another allowed host, the placeholder stays a placeholder, and
    // the attempt is a policy violation naming the secret.
    let leaked = p.other.requests();
    assert_eq!(leaked.len(), 1, "{leaked:?}");
    let sent = leaked[0].header("x-api-key").unwrap_or_default();
    assert!(sent.starts_with("sk-ant-api03-") && sent != VALUE, "{sent}");
    let violations = p.repo.events("policy_violation");
    assert!(
        violations
            .iter()
            .any(|v| v["details"]["secret"] == "ANTHROPIC_API_KEY"),
        "{violations:?}"
    );
    // Counted per host, never printed or recorded.
    let completed = &p.repo.events("spec_completed")[0];
    let host = format!("127.0.0.1:{}", p.api.port);
    assert_eq!(
        completed["details"]["injected"][&host]["ANTHROPIC_API_KEY"], 1,
        "{completed}"
    );
    assert!(!p.printed().contains(VALUE));
    assert!(!serde_json::to_string(&p.repo.ledger())
        .expect("json")
        .contains(VALUE));
    // doctor says so.
    let doctor = Run(p
        .repo
        .chant_cmd(&["doctor"])
        .env("ANTHROPIC_API_KEY", VALUE)
        .env("ANTHROPIC_BASE_URL", format!("https://{host}"))
        .output()
        .expect("doctor"));
    assert!(
        doctor.stdout().contains(&format!(
            "ANTHROPIC_API_KEY → {host} (the agent's key, by default)"
        )),
        "{}",
        doctor.stdout()
    );
}

#[test]
fn hide_wins_over_the_default_and_the_agent_gets_no_key_at_all() {
    let Some(image) = image() else { return };
    let p = probe("docker", Some(&image), "    hide: [\"ANTHROPIC_*\"]\n");
    assert_eq!(p.run.code(), 0, "{}", p.printed());
    let found = p.found();
    assert_eq!(found["has-key"], "no", "{found:?}");
    for r in p.api.requests().iter().chain(p.other.requests().iter()) {
        // curl leaves out a header with an empty value.
        assert!(
            r.header("x-api-key").unwrap_or_default().is_empty(),
            "{r:?}"
        );
    }
    let completed = &p.repo.events("spec_completed")[0];
    assert!(
        completed["details"]["injected"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{completed}"
    );
}

#[test]
fn an_expose_entry_naming_the_key_hands_the_agent_the_real_key_at_docker() {
    let Some(image) = image() else { return };
    let p = probe("docker", Some(&image), "    expose: [ANTHROPIC_API_KEY]\n");
    assert_eq!(p.run.code(), 0, "{}", p.printed());
    let found = p.found();
    assert_eq!(found["key-sha"], sha(VALUE), "{found:?}");
    // As asked: the agent holds the key and can send it to any allowed host.
    assert_eq!(p.other.requests()[0].header("x-api-key"), Some(VALUE));
    assert!(!p.printed().contains(VALUE));
}

#[test]
fn switching_the_default_off_hands_the_agent_the_real_key_at_docker() {
    let Some(image) = image() else { return };
    let p = probe("docker", Some(&image), "    inject_agent_keys: false\n");
    assert_eq!(p.run.code(), 0, "{}", p.printed());
    assert_eq!(p.found()["key-sha"], sha(VALUE));
}

#[test]
fn at_none_the_default_does_not_apply_and_the_agent_gets_its_key() {
    // The proxy variables are honour-system on the host: a placeholder would only break
    // agents that ignore them, and contain nothing (docs/sandbox.md).
    let p = probe("none", None, "    expose: []\n");
    assert_eq!(p.run.code(), 0, "{}", p.printed());
    let found = p.found();
    assert_eq!(found["key-sha"], sha(VALUE), "{found:?}");
    assert!(p.repo.events("spec_completed")[0]["details"]["injected"]
        .as_object()
        .is_none_or(|m| m.is_empty()));
}
