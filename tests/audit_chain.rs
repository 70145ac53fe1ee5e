//! The ledger's format and chain, checked from the outside: plain git output, recomputed
//! with Python's json module (not with the code under test), plus record's input errors.

mod common;

use std::process::Command;

use common::{ledger_commits, ledger_lines, TestRepo};

const TRICKY: &str = r#"{"msg":"héllo \"q\" \\ \n\t\u0001 😀 </script> \u007f","n":-12,"big":9007199254740993,"list":[true,null,{"b":1,"a":2}],"Z":"upper","é":"accent key"}"#;

#[test]
fn entries_have_the_seed_shape_and_git_log_prints_them() {
    let repo = TestRepo::initialised();
    repo.chant(&["audit", "record", "command_run", "--details", TRICKY])
        .assert_ok();
    let lines = ledger_lines(&repo);
    assert_eq!(lines.len(), 2, "genesis + one: {lines:?}");
    let genesis: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
    assert_eq!(genesis["event"], "ledger_created");
    assert_eq!(genesis["prev_hash"], "0".repeat(64));
    let e: serde_json::Value = serde_json::from_str(&lines[1]).expect("json");
    let keys: Vec<&String> = e.as_object().expect("object").keys().collect();
    let mut want = vec![
        "ts",
        "event",
        "spec_id",
        "actor",
        "agent",
        "sandbox",
        "host",
        "session",
        "details",
        "prev_hash",
        "hash",
    ];
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(e["spec_id"], serde_json::Value::Null);
    assert_eq!(e["actor"], "tester");
    assert!(e["session"].as_str().expect("session").starts_with("sess_"));
    let ts = e["ts"].as_str().expect("ts");
    assert!(ts.len() == 20 && ts.ends_with('Z'), "{ts}");
    // Subject line, author = actor, author date = ts.
    let subject = repo.git(&["log", "-1", "--format=%s|%an|%ae|%aI", "refs/chant/audit"]);
    assert_eq!(
        subject.trim(),
        format!("command_run - by tester|tester|tester@example.com|{ts}")
    );
    // One parent per commit; git itself finds the objects sound.
    let parents = repo.git(&["log", "--format=%P", "refs/chant/audit"]);
    assert!(parents.lines().all(|l| l.split_whitespace().count() <= 1));
    repo.git(&["fsck", "--strict", "--no-dangling"]);
    // A reflog exists for the ref (a local forensic trail).
    let reflog = repo.git(&["reflog", "show", "refs/chant/audit"]);
    assert_eq!(reflog.lines().count(), 2, "{reflog}");
}

#[test]
fn chain_recomputes_independently_with_python() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed; the independent recomputation did not run");
        return;
    }
    let repo = TestRepo::initialised();
    for i in 0..5 {
        let details = if i == 2 {
            TRICKY.to_string()
        } else {
            format!(r#"{{"i":{i},"path":"src/ü{i}.rs"}}"#)
        };
        repo.chant(&["audit", "record", "file_modified", "--details", &details])
            .assert_ok();
    }
    let log = repo.git(&["log", "--format=%b", "refs/chant/audit"]);
    let script = r#"
import hashlib, json, sys
lines = [l for l in sys.stdin.read().split("\n") if l.strip()]
lines.reverse()
prev = "0" * 64
for line in lines:
    e = json.loads(line)
    canon = json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canon == line, "not canonical:\n%s\n%s" % (canon, line)
    body = dict(e); h = body.pop("hash")
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == h, "hash"
    assert e["prev_hash"] == prev, "link"
    prev = h
print("ok %d" % len(lines))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(log.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok 6");
    repo.chant(&["audit", "verify"])
        .assert_ok()
        .stdout_has("verified 6 entries; head ");
}

#[test]
fn record_input_errors_exit_2() {
    let repo = TestRepo::initialised();
    repo.chant(&["audit", "record", "made_up"])
        .assert_code(2)
        .stderr_has("unknown event 'made_up'");
    repo.chant(&["audit", "record", "command_run", "--details", "[1,2]"])
        .assert_code(2)
        .stderr_has("must be a JSON object");
    repo.chant(&["audit", "record", "command_run", "--details", "{nope"])
        .assert_code(2)
        .stderr_has("not valid JSON");
    repo.chant(&[
        "audit",
        "record",
        "command_run",
        "--details",
        r#"{"duration":{"s":1.5}}"#,
    ])
    .assert_code(2)
    .stderr_has("details.duration.s is a floating-point number");
    repo.chant(&["audit", "record", "spec_started", "--spec", "zzz"])
        .assert_code(2)
        .stderr_has("no spec matches 'zzz'");
    repo.chant(&["audit", "record", "spec_started", "--spec", "../x"])
        .assert_code(2);
    assert_eq!(ledger_lines(&repo).len(), 1, "nothing recorded");
}

#[test]
fn record_resolves_spec_ids_and_add_and_config_record_entries() {
    let repo = TestRepo::initialised();
    let id = repo.chant(&["add", "Fix the login"]).assert_ok().stdout();
    let id = id.trim().to_string();
    repo.chant(&["audit", "record", "spec_started", "--spec", &id[15..]])
        .assert_ok();
    repo.chant(&["config", "set", "agent.timeout", "30m"])
        .assert_ok();
    let lines = ledger_lines(&repo);
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let events: Vec<&str> = entries
        .iter()
        .map(|e| e["event"].as_str().expect("event"))
        .collect();
    assert_eq!(
        events,
        [
            "ledger_created",
            "spec_created",
            "spec_started",
            "config_changed"
        ]
    );
    let content = std::fs::read(repo.path(&format!(".chant/specs/{id}.md"))).expect("spec");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&content))
    };
    assert_eq!(entries[1]["spec_id"], id.as_str());
    assert_eq!(entries[1]["details"]["content_sha256"], sha.as_str());
    assert_eq!(entries[2]["spec_id"], id.as_str());
    assert_eq!(entries[3]["details"]["key"], "agent.timeout");
    assert_eq!(entries[3]["details"]["new"], "30m");
}

#[test]
fn init_is_idempotent_and_configures_replication() {
    let remote = TestRepo::new();
    let repo = TestRepo::new();
    repo.git(&[
        "remote",
        "add",
        "origin",
        remote.root.to_str().expect("utf-8"),
    ]);
    repo.chant(&["init"])
        .assert_ok()
        .stdout_has("started the audit ledger")
        .stdout_has("remote origin now fetches refs/chant/*:refs/remotes/origin/chant/*");
    let head = ledger_commits(&repo);
    repo.chant(&["init"])
        .assert_ok()
        .stdout_has("nothing changed");
    assert_eq!(head, ledger_commits(&repo));
    let fetch = repo.git(&["config", "--get-all", "remote.origin.fetch"]);
    assert_eq!(
        fetch
            .lines()
            .filter(|l| *l == "refs/chant/*:refs/remotes/origin/chant/*")
            .count(),
        1,
        "{fetch}"
    );
    let push = Command::new("git")
        .args(["config", "--get-all", "remote.origin.push"])
        .current_dir(&repo.root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", &repo.home)
        .output()
        .expect("git");
    assert!(push.stdout.is_empty(), "remote.origin.push must stay unset");
}
