//! Secrets usable, never readable, end to end at the docker level: the agent in a container
//! holds a placeholder and a CA bundle, curl inside uses them through chant's relay and
//! proxy, the HTTPS origin on the host's loopback gets the real value, and nothing the agent
//! has, prints or lands holds it. Needs a local Docker Engine (skips loudly without one,
//! unless CHANT_REQUIRE_DOCKER=1).

mod common;

use common::http::{FakeServer, Response};
use common::image::AGENTS;
use common::TestRepo;

const VALUE: &str = "sk-test-api03-RealValueRealValue0123456789xyz";

fn image() -> Option<String> {
    common::image::curl_image("docker injection test")
}

#[test]
fn through_the_docker_level_the_origin_gets_the_value_and_the_agent_only_the_placeholder() {
    let Some(image) = image() else { return };
    let origin = FakeServer::start_tls(
        &common::crate_path("fixtures/tls/server.pem"),
        &common::crate_path("fixtures/tls/server.key"),
        |r| {
            let auth = r.header("authorization").unwrap_or("-").to_string();
            Response {
                status: 200,
                content_type: "text/plain",
                body: format!("seen {auth}\n").into_bytes(),
                headers: vec![("X-Seen", auth)],
            }
        },
    );
    let repo = TestRepo::initialised();
    let host = format!("127.0.0.1:{}", origin.port);
    let url = format!("https://{host}/v1/messages");
    repo.write_config(&format!(
        "agent:\n  sandbox: docker\n  command: [\"{AGENTS}/inject-probe.sh\", \"{{prompt_file}}\", \"{url}\"]\n  docker:\n    image: {image}\n    memory: 128M\n    cpu: 500m\n  network:\n    enabled: true\n    upstream_ca: {}\n  secrets:\n    inject:\n      API_KEY: [\"{host}\"]\n",
        common::crate_path("fixtures/tls/ca.pem").display()
    ));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "chant config"]);
    let id = repo.add_spec("Call the API", &["inject.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);

    let run = common::Run(
        repo.chant_cmd(&["work", &id])
            .env("API_KEY", VALUE)
            .output()
            .expect("run git-chant"),
    );
    let printed = format!("{}{}", run.stdout(), run.stderr());
    let run = run.assert_ok();
    let _ = run;

    // The origin got the value, once.
    let requests = origin.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );
    // The agent held a placeholder of the same shape and saw only it come back.
    let probe = repo.git(&["show", &format!("chant/{id}:inject.txt")]);
    assert!(!probe.contains(VALUE), "{probe}");
    let env_line = probe
        .lines()
        .find(|l| l.starts_with("env="))
        .expect("env line");
    let placeholder = env_line.trim_start_matches("env=API_KEY=");
    assert!(
        placeholder.starts_with("sk-test-api03-") && placeholder.len() == VALUE.len(),
        "{probe}"
    );
    assert!(
        probe.contains(&format!("X-Seen: Bearer {placeholder}")),
        "{probe}"
    );
    assert!(
        probe
            .contains("ca=/run/chant/chant-ca.pem /run/chant/chant-ca.pem /run/chant/chant-ca.pem"),
        "{probe}"
    );
    assert!(probe.contains("keys-in-files=0"), "{probe}");
    // Nothing chant printed or recorded holds the value; the ledger counts the request.
    assert!(!printed.contains(VALUE), "{printed}");
    let ledger = repo.ledger();
    assert!(!serde_json::to_string(&ledger)
        .expect("json")
        .contains(VALUE));
    let completed = &repo.events("spec_completed")[0];
    assert_eq!(
        completed["details"]["injected"][&host]["API_KEY"], 1,
        "{completed}"
    );
}
