//! Team-tier secret sources: `vault://MOUNT/PATH` and `k8s://NAMESPACE/SECRET`.
//!
//! No Vault server nor Kubernetes API server can be installed on the machines these tests
//! run on, so both are protocol-level FAKES on 127.0.0.1 (tests/common/http.rs). They check
//! what the real services check: Vault the `X-Vault-Token` and `X-Vault-Namespace` headers,
//! the mounts endpoint (`/v1/sys/internal/ui/mounts/…`) and the KV v1 vs v2 paths and
//! envelopes (`{"data":{"data":{..},"metadata":{..}}}`); the Kubernetes fake the path
//! `/api/v1/namespaces/NS/secrets/NAME`, the bearer token of the kubeconfig the test writes,
//! and base64 `data`.

mod common;

use std::ffi::OsString;
use std::path::Path;

use base64::Engine;
use common::http::{closed_port, FakeServer, Request, Response};
use common::TestRepo;
use git_chant::secrets::{collect_with_env, SecretSource, SecretsError};
use serde_json::json;

const TOKEN: &str = "hvs.test-token";
const NAMESPACE: &str = "team-a";

/// A fake Vault over HTTPS (the certificate in fixtures/tls/), for `VAULT_CACERT`.
fn fake_vault_tls() -> FakeServer {
    let (cert, key) = (
        common::crate_path("fixtures/tls/server.pem"),
        common::crate_path("fixtures/tls/server.key"),
    );
    FakeServer::start_tls(&cert, &key, vault_answer)
}

/// A fake Vault with a KV v2 engine at `kv2/`, a KV v1 engine at `kv1/`, and a path the
/// token may not read.
fn fake_vault() -> FakeServer {
    FakeServer::start(vault_answer)
}

/// What Vault answers (see [`fake_vault`]).
fn vault_answer(r: &Request) -> Response {
    {
        if r.header("x-vault-token") != Some(TOKEN) {
            return Response::json(403, json!({"errors": ["permission denied"]}));
        }
        if r.header("x-vault-namespace") != Some(NAMESPACE) {
            // Another namespace has none of these mounts.
            return Response::json(403, json!({"errors": ["permission denied"]}));
        }
        let path = r.path.as_str();
        if r.method != "GET" {
            return Response::json(405, json!({"errors": ["unsupported operation"]}));
        }
        if let Some(rest) = path.strip_prefix("/v1/sys/internal/ui/mounts/") {
            let (mount, version) = if rest.starts_with("kv2/") {
                ("kv2/", "2")
            } else if rest.starts_with("kv1/") {
                ("kv1/", "1")
            } else {
                return Response::json(
                    403,
                    json!({"errors": ["preflight capability check returned 403, please ensure client's policies grant access to path"]}),
                );
            };
            return Response::json(
                200,
                json!({"data": {"path": mount, "type": "kv", "options": {"version": version}}}),
            );
        }
        match path {
            "/v1/kv2/data/app" => Response::json(
                200,
                json!({"data": {
                    "data": {"AGENT_API_KEY": "sk-vault-v2-0123456789", "VAULT_ONLY": "v2-only-value", "DB_PASSWORD": "hidden-db-pass"},
                    "metadata": {"version": 3, "created_time": "2026-01-22T15:30:00Z", "deletion_time": "", "destroyed": false}
                }}),
            ),
            "/v1/kv1/app" => Response::json(
                200,
                json!({"data": {"AGENT_API_KEY": "sk-vault-v1-0123456789"}, "lease_duration": 2764800}),
            ),
            "/v1/kv2/data/typed" => Response::json(
                200,
                json!({"data": {"data": {"PORT": 5432, "OK": "fine-value"}, "metadata": {"version": 1}}}),
            ),
            "/v1/kv2/data/forbidden" => Response::json(
                403,
                json!({"errors": ["1 error occurred:\n\t* permission denied\n\n"]}),
            ),
            _ => Response::json(404, json!({"errors": []})),
        }
    }
}

fn vault_env(addr: &str, home: &Path) -> Vec<(OsString, OsString)> {
    vec![
        ("VAULT_ADDR".into(), addr.into()),
        ("VAULT_TOKEN".into(), TOKEN.into()),
        ("VAULT_NAMESPACE".into(), NAMESPACE.into()),
        ("HOME".into(), home.as_os_str().to_owned()),
    ]
}

fn source(uri: &str) -> SecretSource {
    SecretSource::parse(uri).expect("valid uri")
}

#[test]
fn vault_kv_v2_and_v1_are_detected_per_mount_and_later_wins() {
    let vault = fake_vault();
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vault_env(&vault.url(), dir.path());
    let s = collect_with_env(
        &[source("vault://kv2/app"), source("vault://kv1/app")],
        dir.path(),
        env.clone(),
    )
    .expect("reads both");
    assert_eq!(s.get("AGENT_API_KEY"), Some("sk-vault-v1-0123456789"));
    assert_eq!(s.get("VAULT_ONLY"), Some("v2-only-value"));
    assert_eq!(
        format!("{:?}", s.origin("VAULT_ONLY").expect("origin")),
        "vault://kv2/app"
    );
    // The metadata of the v2 envelope is not a secret.
    assert_eq!(s.get("version"), None);

    let s = collect_with_env(&[source("vault://kv2/app")], dir.path(), env).expect("v2");
    assert_eq!(s.get("AGENT_API_KEY"), Some("sk-vault-v2-0123456789"));
    let paths: Vec<String> = vault.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.contains(&"/v1/sys/internal/ui/mounts/kv2/app".to_string()),
        "{paths:?}"
    );
    assert!(paths.contains(&"/v1/kv2/data/app".to_string()), "{paths:?}");
    assert!(paths.contains(&"/v1/kv1/app".to_string()), "{paths:?}");
}

#[test]
fn vault_token_comes_from_the_token_file_when_the_variable_is_unset() {
    let vault = fake_vault();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".vault-token"), format!("{TOKEN}\n")).expect("write");
    let env: Vec<(OsString, OsString)> = vault_env(&vault.url(), dir.path())
        .into_iter()
        .filter(|(k, _)| k != "VAULT_TOKEN")
        .collect();
    let s = collect_with_env(&[source("vault://kv1/app")], dir.path(), env).expect("reads");
    assert_eq!(s.get("AGENT_API_KEY"), Some("sk-vault-v1-0123456789"));
}

#[test]
fn vault_over_https_trusts_the_ca_in_vault_cacert() {
    let vault = fake_vault_tls();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("https://127.0.0.1:{}", vault.port);
    let mut env = vault_env(&addr, dir.path());
    // Without the CA: the certificate is not trusted, and the error says where.
    let msg = collect_with_env(&[source("vault://kv1/app")], dir.path(), env.clone())
        .expect_err("untrusted")
        .to_string();
    assert!(
        msg.contains("cannot reach Vault at https://127.0.0.1:"),
        "{msg}"
    );
    env.push((
        "VAULT_CACERT".into(),
        common::crate_path("fixtures/tls/ca.pem").into_os_string(),
    ));
    let s = collect_with_env(&[source("vault://kv1/app")], dir.path(), env.clone())
        .expect("trusted with VAULT_CACERT");
    assert_eq!(s.get("AGENT_API_KEY"), Some("sk-vault-v1-0123456789"));
    // A CA file that is not PEM is an input error naming the variable.
    let bad = dir.path().join("ca.txt");
    std::fs::write(&bad, "not a certificate").expect("write");
    env.pop();
    env.push(("VAULT_CACERT".into(), bad.into_os_string()));
    let e = collect_with_env(&[source("vault://kv1/app")], dir.path(), env).expect_err("bad CA");
    assert!(e.to_string().contains("VAULT_CACERT"), "{e}");
    assert_eq!(e.exit_code(), 2);
}

fn vault_error(uri: &str, env: Vec<(OsString, OsString)>) -> SecretsError {
    let dir = tempfile::tempdir().expect("tempdir");
    collect_with_env(&[source(uri)], dir.path(), env).expect_err(uri)
}

#[test]
fn vault_errors_name_the_source_the_key_and_why_without_values() {
    let vault = fake_vault();
    let home = tempfile::tempdir().expect("tempdir");
    let env = || vault_env(&vault.url(), home.path());

    let e = vault_error("vault://kv2/forbidden", env());
    let msg = e.to_string();
    assert!(msg.contains("vault://kv2/forbidden"), "{msg}");
    assert!(msg.contains("permission denied (HTTP 403)"), "{msg}");
    assert_eq!(e.exit_code(), 1);

    let e = vault_error("vault://kv2/nothing-here", env());
    let msg = e.to_string();
    assert!(
        msg.contains("no secret at kv2/data/nothing-here (HTTP 404)"),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 2);

    let e = vault_error("vault://kv2/typed", env());
    let msg = e.to_string();
    assert!(msg.contains("the value of 'PORT' is a number"), "{msg}");
    assert!(
        !msg.contains("5432") && !msg.contains("fine-value"),
        "{msg}"
    );

    // A wrong token: refused, and the token is never shown.
    let mut wrong = env();
    wrong[1].1 = "hvs.wrong-token".into();
    let msg = vault_error("vault://kv2/app", wrong).to_string();
    assert!(msg.contains("HTTP 403"), "{msg}");
    assert!(!msg.contains("hvs."), "{msg}");

    // The namespace header matters.
    let mut other_ns = env();
    other_ns[2].1 = "team-b".into();
    assert!(vault_error("vault://kv2/app", other_ns)
        .to_string()
        .contains("HTTP 403"));

    let down = vault_env(&format!("http://127.0.0.1:{}", closed_port()), home.path());
    let e = vault_error("vault://kv2/app", down);
    let msg = e.to_string();
    assert!(
        msg.contains("cannot reach Vault at http://127.0.0.1:"),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 1);

    let msg = vault_error("vault://kv2/app", vec![]).to_string();
    assert!(msg.contains("VAULT_ADDR is not set"), "{msg}");
}

/// A fake API server holding Secret `team/agent`, readable with `token` only.
fn fake_kubernetes(token: &'static str) -> FakeServer {
    FakeServer::start(move |r: &Request| {
        let status = |code: u16, reason: &str, message: &str| {
            Response::json(
                code,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code}),
            )
        };
        if r.header("authorization") != Some(&format!("Bearer {token}")) {
            return status(401, "Unauthorized", "Unauthorized");
        }
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/api/v1/namespaces/team/secrets/agent") => Response::json(
                200,
                json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                       "metadata": {"name": "agent", "namespace": "team"},
                       "data": {"AGENT_API_KEY": b64("sk-k8s-0123456789"), "DB_PASSWORD": b64("k8s-db-pass")}}),
            ),
            ("GET", "/api/v1/namespaces/other/secrets/agent") => status(
                403,
                "Forbidden",
                "secrets \"agent\" is forbidden: User \"system:serviceaccount:team:chant\" cannot get resource \"secrets\" in the namespace \"other\"",
            ),
            _ => status(404, "NotFound", "secrets \"x\" not found"),
        }
    })
}

fn write_kubeconfig(dir: &Path, server: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: chant\n    namespace: team\n\
         current-context: fake\nusers:\n- name: chant\n  user:\n    token: {token}\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

#[test]
fn kubernetes_secret_data_is_decoded_with_the_kubeconfig_token() {
    let api = fake_kubernetes("k8s-bearer-token");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), &api.url(), "k8s-bearer-token");
    let env = vec![(OsString::from("KUBECONFIG"), kubeconfig.into_os_string())];
    let s =
        collect_with_env(&[source("k8s://team/agent")], dir.path(), env.clone()).expect("reads");
    assert_eq!(s.get("AGENT_API_KEY"), Some("sk-k8s-0123456789"));
    assert_eq!(s.get("DB_PASSWORD"), Some("k8s-db-pass"));
    assert!(api
        .requests()
        .iter()
        .any(|r| r.path == "/api/v1/namespaces/team/secrets/agent"));

    let e =
        collect_with_env(&[source("k8s://other/agent")], dir.path(), env.clone()).expect_err("403");
    let msg = e.to_string();
    assert!(msg.contains("k8s://other/agent"), "{msg}");
    assert!(msg.contains("permission denied (HTTP 403)"), "{msg}");
    let e = collect_with_env(&[source("k8s://team/missing")], dir.path(), env).expect_err("404");
    assert!(e
        .to_string()
        .contains("no Secret missing in namespace team"));

    let wrong = write_kubeconfig(dir.path(), &api.url(), "stale-token");
    let env = vec![(OsString::from("KUBECONFIG"), wrong.into_os_string())];
    let msg = collect_with_env(&[source("k8s://team/agent")], dir.path(), env)
        .expect_err("401")
        .to_string();
    assert!(msg.contains("HTTP 401"), "{msg}");
    assert!(!msg.contains("stale-token"), "{msg}");
}

#[test]
fn remote_secrets_reach_the_agent_filtered_and_masked_everywhere() {
    let vault = fake_vault();
    let api = fake_kubernetes("k8s-bearer-token");
    let repo = TestRepo::initialised();
    let kubeconfig = write_kubeconfig(&repo.home, &api.url(), "k8s-bearer-token");
    repo.use_agent(
        "team-secrets.sh",
        "  sandbox: none\n  secrets:\n    expose: [AGENT_API_KEY, VAULT_ONLY, DB_PASSWORD]\n    hide: [DB_PASSWORD]\n  denied_paths: [\"*.key\"]\n",
        "",
    );
    let id = repo.add_spec("use the team secrets", &[]);
    let run = common::Run(
        repo.chant_cmd(&[
            "work",
            &id,
            "--secrets-from",
            "vault://kv2/app",
            "--secrets-from",
            "k8s://team/agent",
        ])
        .env("VAULT_ADDR", vault.url())
        .env("VAULT_TOKEN", TOKEN)
        .env("VAULT_NAMESPACE", NAMESPACE)
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("run"),
    );
    // The agent smuggled the key into a denied file name: the spec fails on policy.
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert_eq!(run.code(), 1, "{all}");
    // k8s came later and wins AGENT_API_KEY; both values are masked.
    assert!(all.contains("key=***"), "{all}");
    for value in [
        "sk-k8s-0123456789",
        "sk-vault-v2-0123456789",
        "v2-only-value",
        "hidden-db-pass",
        "k8s-db-pass",
    ] {
        assert!(!all.contains(value), "{value} leaked: {all}");
    }
    let names_line = all
        .lines()
        .find(|l| l.contains("names:"))
        .unwrap_or_default()
        .to_string();
    assert!(names_line.contains("AGENT_API_KEY"), "{names_line}");
    assert!(names_line.contains("VAULT_ONLY"), "{names_line}");
    assert!(
        !names_line.contains("DB_PASSWORD"),
        "hide wins: {names_line}"
    );
    let ledger = repo.ledger();
    let v = repo.events("policy_violation");
    assert_eq!(v[0]["details"]["path"], "***.key");
    assert!(!ledger
        .iter()
        .any(|e| e.to_string().contains("sk-k8s-0123456789")));
    let logs = repo.root.join(".git/chant/logs");
    for entry in std::fs::read_dir(&logs).expect("logs").flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(!text.contains("sk-k8s-0123456789"), "log leaked: {text}");
    }
}

#[test]
fn an_unreachable_vault_stops_work_before_anything_runs() {
    let repo = TestRepo::initialised();
    repo.use_agent("greet.sh", "  sandbox: none\n", "");
    let id = repo.add_spec("x", &[]);
    let run = common::Run(
        repo.chant_cmd(&["work", &id, "--secrets-from", "vault://kv2/app"])
            .env("VAULT_ADDR", format!("http://127.0.0.1:{}", closed_port()))
            .env("VAULT_TOKEN", TOKEN)
            .output()
            .expect("run"),
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("secret source 'vault://kv2/app': cannot reach Vault"),
        "{}",
        run.stderr()
    );
    assert!(repo.events("spec_started").is_empty());
}
