//! The file sink: formats, daily rotation and retention, driven by a fake clock
//! (`CHANT_TIMESTAMP`), and a failing sink that never loses the ledger entry.

mod common;

use common::{ledger_lines, Run, TestRepo};

fn record_at(repo: &TestRepo, ts: &str, n: u32) -> Run {
    Run(repo
        .chant_cmd(&[
            "audit",
            "record",
            "command_run",
            "--details",
            &format!(r#"{{"n":{n}}}"#),
        ])
        .env("CHANT_TIMESTAMP", ts)
        .output()
        .expect("run"))
}

fn repo_with(yaml: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.write_config(yaml);
    let out = repo
        .chant_cmd(&["init"])
        .env("CHANT_TIMESTAMP", "2026-01-01T08:00:00Z")
        .output()
        .expect("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo
}

#[test]
fn jsonl_sink_mirrors_the_ledger() {
    let repo = repo_with("audit:\n  rotate: never\n");
    record_at(&repo, "2026-01-01T09:00:00Z", 1).assert_ok();
    let log = repo.read(".chant/audit/audit.log");
    assert_eq!(log.lines().collect::<Vec<_>>(), ledger_lines(&repo));
    // Git ignores it.
    let status = repo.git(&["status", "--porcelain", "--ignored", ".chant/audit"]);
    assert!(status.contains("!! .chant/audit/"), "{status}");
}

#[test]
fn json_and_text_formats() {
    let repo = repo_with("audit:\n  format: json\n  file: logs/audit.json\n");
    record_at(&repo, "2026-01-01T09:00:00Z", 1).assert_ok();
    record_at(&repo, "2026-01-01T10:00:00Z", 2).assert_ok();
    let arr: Vec<serde_json::Value> =
        serde_json::from_str(&repo.read("logs/audit.json")).expect("a JSON array");
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[2]["details"]["n"], 2);

    let repo = repo_with("audit:\n  format: text\n");
    record_at(&repo, "2026-01-01T09:00:00Z", 7).assert_ok();
    let text = repo.read(".chant/audit/audit.log");
    let last = text.lines().last().expect("line");
    assert!(
        last.starts_with("2026-01-01T09:00:00Z  command_run"),
        "{last}"
    );
    assert!(last.contains(r#"{"n":7}"#), "{last}");
}

#[test]
fn daily_rotation_and_retention() {
    let repo = repo_with("audit:\n  rotate: daily\n  retain: 90d\n");
    record_at(&repo, "2026-01-01T23:59:59Z", 1).assert_ok();
    record_at(&repo, "2026-01-02T00:00:01Z", 2).assert_ok();
    assert!(repo.exists(".chant/audit/audit.log.2026-01-01"));
    assert_eq!(
        repo.read(".chant/audit/audit.log.2026-01-01")
            .lines()
            .count(),
        2,
        "genesis + first entry"
    );
    assert_eq!(repo.read(".chant/audit/audit.log").lines().count(), 1);
    record_at(&repo, "2026-01-02T12:00:00Z", 3).assert_ok();
    assert_eq!(repo.read(".chant/audit/audit.log").lines().count(), 2);
    record_at(&repo, "2026-03-01T12:00:00Z", 4).assert_ok();
    assert!(repo.exists(".chant/audit/audit.log.2026-01-02"));
    // 2026-04-01 - 90 days = 2026-01-01: nothing older than that yet.
    record_at(&repo, "2026-04-01T12:00:00Z", 5).assert_ok();
    assert!(repo.exists(".chant/audit/audit.log.2026-01-01"));
    // 2026-04-02 - 90 days = 2026-01-02: the 2026-01-01 file goes, 01-02 stays.
    record_at(&repo, "2026-04-02T12:00:00Z", 6).assert_ok();
    assert!(!repo.exists(".chant/audit/audit.log.2026-01-01"));
    assert!(repo.exists(".chant/audit/audit.log.2026-01-02"));
    assert!(repo.exists(".chant/audit/audit.log.2026-03-01"));
    assert!(repo.exists(".chant/audit/audit.log.2026-04-01"));
    // The ledger kept everything.
    assert_eq!(ledger_lines(&repo).len(), 7);
}

#[test]
fn a_failing_sink_warns_and_keeps_the_entry() {
    let repo = repo_with("audit:\n  file: blocked/audit.log\n");
    std::fs::remove_dir_all(repo.path("blocked")).expect("rm");
    repo.write("blocked", "a file where the sink wants a directory\n");
    record_at(&repo, "2026-01-01T09:00:00Z", 1)
        .assert_ok()
        .stderr_has("warning: audit sink")
        .stderr_has("the entries are safe on refs/chant/audit");
    assert_eq!(ledger_lines(&repo).len(), 2);
}

#[test]
fn disabled_sinks_write_nothing_but_the_ledger_records() {
    let repo = repo_with("audit:\n  enabled: false\n");
    record_at(&repo, "2026-01-01T09:00:00Z", 1).assert_ok();
    assert!(!repo.exists(".chant/audit/audit.log"));
    assert_eq!(ledger_lines(&repo).len(), 2);
}
