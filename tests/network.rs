//! `agent.network` at the host levels (none, permissions): chant runs its egress proxy for
//! the run and hands the agent the proxy variables. This is the honour system (a program
//! may ignore them; the docker and vm levels enforce it, see tests/docker.rs and
//! tests/vm.rs), but the proxy's own decisions are real and land in the ledger. Every
//! server here listens on 127.0.0.1 only.

mod common;

use common::http::Server;
use common::TestRepo;

/// A repository whose agent is net-probe.sh at level `none`, probing `allowed` and
/// `refused`, with `network` YAML lines under `agent:`.
fn setup(network: &str, allowed: &str, refused: &Server) -> (TestRepo, String) {
    let repo = TestRepo::initialised();
    let script = common::crate_path("fixtures/agents/net-probe.sh");
    repo.write_config(&format!(
        "agent:\n  sandbox: none\n  command: [\"{}\", \"{{prompt_file}}\", \"{}\", \"{}\", \"127.0.0.1:{}\"]\n{network}",
        script.display(),
        allowed,
        refused.url(),
        refused.port,
    ));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "chant config"]);
    let id = repo.add_spec("Probe the network", &["net.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    (repo, id)
}

fn busybox_present() -> bool {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
}

#[test]
fn the_proxy_lets_the_agent_reach_listed_hosts_only_and_records_each_refusal() {
    if !busybox_present() {
        panic!("these tests need busybox (apt-get install busybox-static)");
    }
    let ok = Server::start("allowed-ok");
    let other = Server::start("second-server");
    let (repo, id) = setup(
        &format!(
            "  network:\n    enabled: true\n    allowed_hosts: [\"localhost:{}\"]\n",
            ok.port
        ),
        &ok.url_at("localhost"),
        &other,
    );
    repo.chant(&["work", &id])
        .assert_ok()
        .stderr_has("refused 2 connection(s)");
    let found = common::http::net_probe(&repo, &id);
    let proxy = found["proxy"].clone();
    assert!(proxy.starts_with("http://127.0.0.1:"), "{found:?}");
    common::http::assert_only_allowed_reached(&found, &proxy);
    // The second server saw only the direct request (the honour system at this level).
    assert_eq!(other.hits(), 1);
    assert_eq!(ok.hits(), 2);

    let refusals = repo.events("policy_violation");
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for r in &refusals {
        let d = &r["details"];
        assert_eq!(d["rule"], "network");
        assert_eq!(d["host"], "127.0.0.1");
        assert_eq!(d["port"], other.port);
        assert_eq!(r["spec_id"], id.as_str());
    }
    // The agent named `localhost`: the proxy resolved it with the host's resolver.
    let completed = repo.events("spec_completed");
    assert_eq!(completed[0]["details"]["network"]["localhost"], 2);
}

#[test]
fn denied_hosts_win_over_allowed_hosts() {
    let ok = Server::start("allowed-ok");
    let denied = Server::start("denied-server");
    let (repo, id) = setup(
        &format!(
            "  network:\n    enabled: true\n    allowed_hosts: [\"127.0.0.1\"]\n    denied_hosts: [\"127.0.0.1:{}\", \"*\"]\n",
            denied.port
        ),
        &ok.url(),
        &denied,
    );
    repo.chant(&["work", &id]).assert_ok();
    let found = common::http::net_probe(&repo, &id);
    assert_eq!(found["allowed"], "allowed-ok", "{found:?}");
    assert!(found["refused"].contains("denied_hosts"), "{found:?}");
    let refusals = repo.events("policy_violation");
    assert!(refusals.iter().all(|r| r["details"]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("denied_hosts"))));
    assert!(!refusals.is_empty());
}

#[test]
fn without_network_enabled_there_is_no_proxy() {
    let ok = Server::start("allowed-ok");
    let other = Server::start("second-server");
    let (repo, id) = setup("", &ok.url(), &other);
    repo.chant(&["work", &id]).assert_ok();
    assert_eq!(common::http::net_probe(&repo, &id)["proxy"], "none");
    assert!(repo.events("policy_violation").is_empty());
    assert!(repo.events("spec_completed")[0]["details"]
        .get("network")
        .is_none());
}

#[test]
fn the_proxy_serves_a_bounded_number_of_connections_at_once() {
    use std::io::Read;
    use std::net::TcpStream;
    let dir = tempfile::tempdir().expect("tmp");
    let proxy =
        git_chant::net::EgressProxy::start(git_chant::net::EgressPolicy::default(), dir.path())
            .expect("proxy");
    let addr = proxy.url().trim_start_matches("http://").to_string();
    // Connections that never send a request hold their thread (until the head timeout).
    let held: Vec<TcpStream> = (0..256)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    // Accepted in order: the extra connection comes after all held ones are counted.
    let mut extra = TcpStream::connect(&addr).expect("connect");
    let mut answer = String::new();
    extra.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(held);
}

#[test]
fn doctor_says_what_the_network_config_gives() {
    let repo = TestRepo::initialised();
    let run = repo.chant(&["doctor"]);
    assert!(
        run.stdout().contains("network      off"),
        "{}",
        run.stdout()
    );
    repo.write_config(
        "agent:\n  network:\n    enabled: true\n    allowed_hosts: [api.anthropic.com, registry.npmjs.org]\n",
    );
    let run = repo.chant(&["doctor"]);
    let out = run.stdout();
    assert!(
        out.contains("network      on       2 allowed_hosts entries"),
        "{out}"
    );
    assert!(out.contains("agent.vm.network is isolated"), "{out}");
}
