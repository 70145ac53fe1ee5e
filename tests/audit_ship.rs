//! `audit.ship_to` and `git chant audit ship`: in order, at least once, idempotent ids, a
//! cursor that moves only on acknowledgement.
//!
//! S3 runs against a REAL S3-protocol server: moto in server mode (PyPI `moto[server]`),
//! found through `CHANT_MOTO_SERVER`, `PATH` or /work/.venv-moto; without it the S3 test
//! skips loudly, unless `CHANT_REQUIRE_MOTO=1` (CI), where it fails.
//! Elasticsearch, Splunk HEC and GCS cannot be installed on the machines these tests run on,
//! so they are protocol-level FAKES on 127.0.0.1 (tests/common/http.rs) checking what the
//! real services check: ES `POST /_bulk` with `Content-Type: application/x-ndjson`, an
//! `index` action with `_id` per document, the API key, and answering per item; Splunk
//! `POST /services/collector/event` with `Authorization: Splunk TOKEN`; GCS the object PUT
//! of the XML API that object_store uses (`PUT /BUCKET/KEY`, with an ETag answer).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http::{closed_port, request, FakeServer, Request, Response};
use common::TestRepo;
use git_chant::audit::ship::{self, Options, ShipError};
use git_chant::config::{ShipTo, ShipType};
use serde_json::{json, Value};

/// Appends `n` entries to the ledger.
fn record(repo: &TestRepo, n: usize) {
    for i in 0..n {
        let details = format!("{{\"command\":\"make step{i}\",\"exit_code\":0}}");
        repo.chant(&["audit", "record", "command_run", "--details", &details])
            .assert_ok();
    }
}

fn hashes(repo: &TestRepo) -> Vec<String> {
    repo.ledger()
        .iter()
        .map(|e| e["hash"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn fast() -> Options {
    Options {
        batch: 2,
        attempts: 2,
        backoff: Duration::from_millis(5),
        dry_run: false,
    }
}

fn ship_to(kind: ShipType, url: Option<String>, token_env: Option<&str>) -> ShipTo {
    ShipTo {
        kind,
        bucket: Some("chant-audit".into()),
        prefix: Some("team/".into()),
        url,
        index: Some("audit".into()),
        token_env: token_env.map(str::to_string),
    }
}

// ---------------------------------------------------------------- S3 (moto, real protocol)

fn aws_env(cmd: &mut Command, port: u16) {
    cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
}

fn ship_cli(repo: &TestRepo, port: u16, args: &[&str]) -> common::Run {
    let mut all = vec!["audit", "ship"];
    all.extend_from_slice(args);
    let mut cmd = repo.chant_cmd(&all);
    aws_env(&mut cmd, port);
    common::Run(cmd.output().expect("run"))
}

fn s3_keys(port: u16) -> Vec<String> {
    let (status, body) = request("GET", port, "/chant-audit?list-type=2&prefix=team/", b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body);
    text.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

/// An object's content, read with signed requests (moto refuses anonymous reads).
fn s3_get(port: u16, key: &str) -> Vec<u8> {
    use object_store::ObjectStoreExt;
    git_chant::net::install_tls_provider();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("chant-audit")
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .expect("s3 client");
    let path = object_store::path::Path::from(key);
    git_chant::net::block_on(async {
        let got = store.get(&path).await.expect("get object");
        got.bytes().await.expect("object bytes").to_vec()
    })
    .expect("runtime")
}

#[test]
fn s3_ships_in_order_once_and_resumes_after_the_target_was_down() {
    let repo = TestRepo::initialised();
    repo.write_config(
        "audit:\n  ship_to:\n    type: s3\n    bucket: chant-audit\n    prefix: team/\n",
    );
    record(&repo, 3);
    let before = hashes(&repo);

    // The target is down: exit 1, nothing lost, the cursor not moved.
    let down = ship_cli(&repo, closed_port(), &[]).assert_code(1);
    assert!(
        down.stderr().contains("nothing is lost"),
        "{}",
        down.stderr()
    );
    assert_eq!(hashes(&repo), before);
    assert!(!repo.exists(".git/chant/ship-cursor.json"));

    let Some(moto) = common::moto::start() else {
        return;
    };
    let (status, _) = request("PUT", moto.port, "/chant-audit", b"");
    assert_eq!(status, 200);

    ship_cli(&repo, moto.port, &["--dry-run"])
        .assert_ok()
        .stdout_has(&format!(
            "would ship {} entries to s3://chant-audit/team",
            before.len()
        ));
    assert!(s3_keys(moto.port).is_empty());

    let out = ship_cli(&repo, moto.port, &[]).assert_ok();
    let last = before.last().expect("entries");
    out.stdout_has(&format!("shipped {} entries", before.len()))
        .stdout_has(last);
    let keys = s3_keys(moto.port);
    assert_eq!(keys.len(), before.len(), "{keys:?}");
    for (key, hash) in keys.iter().zip(&before) {
        assert!(key.starts_with("team/20"), "{key}");
        assert!(key.ends_with(&format!("-{hash}.json")), "{key} vs {hash}");
        let doc: Value = serde_json::from_slice(&s3_get(moto.port, key)).expect("object is JSON");
        assert_eq!(doc["hash"], hash.as_str());
    }

    // Again: nothing new. Then only the new entries go.
    ship_cli(&repo, moto.port, &[])
        .assert_ok()
        .stdout_has("nothing to ship");
    record(&repo, 2);
    ship_cli(&repo, moto.port, &[])
        .assert_ok()
        .stdout_has("shipped 2 entries");
    assert_eq!(s3_keys(moto.port).len(), before.len() + 2);
}

// ------------------------------------------------------- Elasticsearch (protocol-level fake)

#[derive(Default)]
struct Es {
    /// Documents by _id, with how many times each was indexed.
    docs: BTreeMap<String, (Value, usize)>,
    /// _ids in the order they were first indexed.
    order: Vec<String>,
    ok_requests: usize,
    /// While set, every bulk request after the first successful one fails per item.
    fail_after_first: bool,
}

fn fake_es(state: Arc<Mutex<Es>>) -> FakeServer {
    FakeServer::start(move |r: &Request| {
        if r.method != "POST" || r.path != "/_bulk" {
            return Response::json(404, json!({"error": {"reason": "no handler"}}));
        }
        if r.header("authorization") != Some("ApiKey es-key-123") {
            return Response::json(
                401,
                json!({"error": {"reason": "missing authentication credentials"}, "status": 401}),
            );
        }
        if r.header("content-type") != Some("application/x-ndjson") {
            return Response::json(
                406,
                json!({"error": "Content-Type header is not supported", "status": 406}),
            );
        }
        let text = r.text();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() % 2 != 0 || !text.ends_with('\n') {
            return Response::json(
                400,
                json!({"error": {"reason": "The bulk request must be terminated by a newline"}}),
            );
        }
        let mut st = state.lock().expect("lock");
        let failing = st.fail_after_first && st.ok_requests >= 1;
        let mut items = Vec::new();
        for (i, pair) in lines.chunks(2).enumerate() {
            let action: Value = serde_json::from_str(pair[0]).unwrap_or(Value::Null);
            let doc: Value = serde_json::from_str(pair[1]).unwrap_or(Value::Null);
            let id = action["index"]["_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if id.is_empty() || action["index"]["_index"] != "audit" || doc["hash"] != id.as_str() {
                return Response::json(400, json!({"error": {"reason": "bad action line"}}));
            }
            if failing && i > 0 {
                items.push(json!({"index": {"_id": id, "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"}}}));
                continue;
            }
            let entry = st.docs.entry(id.clone()).or_insert((doc.clone(), 0));
            entry.1 += 1;
            if entry.1 == 1 {
                st.order.push(id.clone());
            }
            items.push(json!({"index": {"_id": id, "status": 201, "result": "created"}}));
        }
        if !failing {
            st.ok_requests += 1;
        }
        Response::json(200, json!({"took": 3, "errors": failing, "items": items}))
    })
}

fn es_env() -> HashMap<String, String> {
    HashMap::from([("ES_API_KEY".to_string(), "es-key-123".to_string())])
}

#[test]
fn elasticsearch_partial_failure_resumes_where_it_stopped_without_gaps_or_duplicates() {
    let repo = TestRepo::initialised();
    record(&repo, 5);
    let all = hashes(&repo);
    let state = Arc::new(Mutex::new(Es {
        fail_after_first: true,
        ..Es::default()
    }));
    let es = fake_es(Arc::clone(&state));
    let to = ship_to(ShipType::Elasticsearch, Some(es.url()), Some("ES_API_KEY"));
    let git = repo.open();

    let e = ship::ship(&git, &to, &es_env(), &fast()).expect_err("2nd batch fails");
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            ShipError::Target {
                sent: 2,
                resume: 3,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("429") && msg.contains("after 2 attempts"),
        "{msg}"
    );
    let cursor = std::fs::read_to_string(ship::cursor_path(&git)).expect("cursor");
    assert!(cursor.contains(&all[1]), "{cursor}");

    state.lock().expect("lock").fail_after_first = false;
    let done = ship::ship(&git, &to, &es_env(), &fast()).expect("resumes");
    assert_eq!(done.count, all.len() - 2);
    assert_eq!(done.last_hash.as_deref(), all.last().map(String::as_str));
    {
        let st = state.lock().expect("lock");
        assert_eq!(st.order, all, "in ledger order, no gaps");
        // Only the first entry of the refused batch (accepted per item, then resent whole)
        // was indexed twice, under the same _id: no duplicate document.
        let twice: Vec<&String> = st
            .docs
            .iter()
            .filter(|(_, d)| d.1 > 1)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(twice, vec![&all[2]]);
    }
    let again = ship::ship(&git, &to, &es_env(), &fast()).expect("nothing new");
    assert_eq!(again.count, 0);

    // A wrong key is refused at once (no retry helps) and moves nothing.
    record(&repo, 1);
    let bad = HashMap::from([("ES_API_KEY".to_string(), "nope".to_string())]);
    let requests = es.requests().len();
    let e = ship::ship(&git, &to, &bad, &fast()).expect_err("401");
    assert!(e.to_string().contains("HTTP 401"), "{e}");
    assert!(!e.to_string().contains("nope"), "{e}");
    assert_eq!(es.requests().len(), requests + 1);
}

#[test]
fn work_completes_when_the_target_is_down_and_ship_sends_it_later() {
    let repo = TestRepo::initialised();
    let down = closed_port();
    repo.use_agent(
        "greet.sh",
        "  sandbox: none\n",
        &format!("audit:\n  ship_to:\n    type: elasticsearch\n    url: http://127.0.0.1:{down}\n    index: audit\n    token_env: ES_API_KEY\n"),
    );
    let id = repo.add_spec("greet", &[]);
    let run = common::Run(
        repo.chant_cmd(&["work", &id])
            .env("ES_API_KEY", "es-key-123")
            .output()
            .expect("run"),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("audit shipping"), "{}", run.stderr());
    assert_eq!(repo.events("spec_completed").len(), 1);
    assert_eq!(repo.events("lock_released").len(), 1);

    let state = Arc::new(Mutex::new(Es::default()));
    let es = fake_es(Arc::clone(&state));
    let config = repo.read(".chant/config.md").replace(
        &format!("127.0.0.1:{down}"),
        &format!("127.0.0.1:{}", es.port),
    );
    repo.write(".chant/config.md", &config);
    let out = common::Run(
        repo.chant_cmd(&["audit", "ship"])
            .env("ES_API_KEY", "es-key-123")
            .output()
            .expect("run"),
    )
    .assert_ok();
    let all = hashes(&repo);
    out.stdout_has(&format!("shipped {} entries", all.len()));
    assert_eq!(state.lock().expect("lock").order, all);
}

// ----------------------------------------------------------- Splunk HEC (protocol-level fake)

#[test]
fn splunk_hec_gets_events_with_the_token_and_the_hash() {
    let repo = TestRepo::initialised();
    record(&repo, 3);
    let all = hashes(&repo);
    let hec = FakeServer::start(|r: &Request| {
        if r.path != "/services/collector/event" || r.method != "POST" {
            return Response::json(
                404,
                json!({"text": "The requested URL was not found", "code": 404}),
            );
        }
        if r.header("authorization") != Some("Splunk hec-token-1") {
            return Response::json(401, json!({"text": "Invalid token", "code": 4}));
        }
        let events: Result<Vec<Value>, _> = serde_json::Deserializer::from_slice(&r.body)
            .into_iter()
            .collect();
        match events {
            Ok(e)
                if e.iter()
                    .all(|e| e["event"]["hash"].is_string() && e["time"].is_i64()) =>
            {
                Response::json(200, json!({"text": "Success", "code": 0}))
            }
            _ => Response::json(400, json!({"text": "Invalid data format", "code": 6})),
        }
    });
    let mut to = ship_to(ShipType::Splunk, Some(hec.url()), Some("SPLUNK_HEC_TOKEN"));
    to.index = None;
    let git = repo.open();
    let env = HashMap::from([("SPLUNK_HEC_TOKEN".to_string(), "hec-token-1".to_string())]);
    let out = ship::ship(&git, &to, &env, &fast()).expect("ships");
    assert_eq!(out.count, all.len());
    let sent: Vec<String> = hec
        .requests()
        .iter()
        .flat_map(|r| {
            serde_json::Deserializer::from_slice(&r.body)
                .into_iter::<Value>()
                .filter_map(Result::ok)
                .map(|e| e["event"]["hash"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(sent, all);
    assert!(hec
        .requests()
        .iter()
        .all(|r| r.text().contains("\"sourcetype\":\"chant:audit\"")));

    record(&repo, 1);
    let wrong = HashMap::from([("SPLUNK_HEC_TOKEN".to_string(), "stale".to_string())]);
    let e = ship::ship(&git, &to, &wrong, &fast()).expect_err("401");
    assert!(e.to_string().contains("Invalid token"), "{e}");
    let missing = ship::ship(&git, &to, &HashMap::new(), &fast()).expect_err("no token");
    assert!(
        missing.to_string().contains("SPLUNK_HEC_TOKEN"),
        "{missing}"
    );
    assert_eq!(missing.exit_code(), 2);
}

// ------------------------------------------------------------------ GCS (protocol-level fake)

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn gcs_objects_are_put_under_the_prefix_with_hash_keys() {
    let repo = TestRepo::initialised();
    record(&repo, 2);
    let all = hashes(&repo);
    let objects: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let store = Arc::clone(&objects);
    let gcs = FakeServer::start(move |r: &Request| {
        let path = percent_decode(&r.path);
        let Some(key) = path.strip_prefix("/chant-audit/") else {
            return Response::json(
                404,
                json!({"error": {"code": 404, "message": "The specified bucket does not exist."}}),
            );
        };
        if r.method != "PUT" {
            return Response::json(405, json!({}));
        }
        let key = key
            .replace("%2F", "/")
            .replace("%2D", "-")
            .replace("%2E", ".");
        store.lock().expect("lock").insert(key, r.body.clone());
        let mut ok = Response::json(200, json!({}));
        ok.headers.push(("ETag", "\"etag-1\"".to_string()));
        ok
    });
    let to = ship_to(ShipType::Gcs, None, None);
    let env = HashMap::from([("STORAGE_EMULATOR_HOST".to_string(), gcs.url())]);
    let out = ship::ship(&repo.open(), &to, &env, &fast()).expect("ships");
    assert_eq!(out.count, all.len());
    assert_eq!(out.target, "gcs://chant-audit/team");
    let objects = objects.lock().expect("lock");
    assert_eq!(objects.len(), all.len(), "{:?}", objects.keys());
    for (key, body) in objects.iter() {
        assert!(key.starts_with("team/"), "{key}");
        let doc: Value = serde_json::from_slice(body).expect("JSON");
        let hash = doc["hash"].as_str().expect("hash");
        assert!(key.ends_with(&format!("-{hash}.json")), "{key}");
        assert!(all.iter().any(|h| h == hash));
    }
}

// ---------------------------------------------------------------------------- the cursor

#[test]
fn a_cursor_the_ledger_no_longer_holds_is_reported_as_a_rewrite() {
    let repo = TestRepo::initialised();
    record(&repo, 1);
    let git = repo.open();
    let to = ship_to(
        ShipType::Elasticsearch,
        Some("http://127.0.0.1:9".into()),
        None,
    );
    ship::Cursor {
        target: ship::describe(&to),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        hash: "f".repeat(64),
        shipped: 1,
    }
    .save(&ship::cursor_path(&git))
    .expect("save");
    let e = ship::ship(&git, &to, &HashMap::new(), &fast()).expect_err("rewritten");
    assert!(matches!(e, ShipError::Rewritten { .. }));
    assert!(e.to_string().contains("was rewritten"), "{e}");

    repo.write_config("audit:\n  ship_to:\n    type: gcs\n    bucket: b\n");
    repo.chant(&["audit", "ship", "--dry-run"])
        .assert_ok()
        .stdout_has("would ship");
    repo.write_config("");
    repo.chant(&["audit", "ship"])
        .assert_code(2)
        .stderr_has("audit.ship_to is not set");
}
