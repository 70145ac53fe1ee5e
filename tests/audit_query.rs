//! `git chant audit` queries: every filter and every format, and an index that follows the
//! ref (incremental appends, rewrites) instead of being trusted over it.

mod common;

use common::{rewrite_ledger, Run, TestRepo};

fn at(repo: &TestRepo, ts: &str, actor: &str, args: &[&str]) -> Run {
    Run(repo
        .chant_cmd(args)
        .env("CHANT_TIMESTAMP", ts)
        .env("CHANT_ACTOR", actor)
        .output()
        .expect("run"))
}

/// A ledger spread over January 2026, by two actors, about two specs.
fn populated() -> (TestRepo, String, String) {
    let repo = TestRepo::new();
    at(&repo, "2026-01-01T09:00:00Z", "admin", &["init"]).assert_ok();
    let a = at(&repo, "2026-01-02T10:00:00Z", "alex", &["add", "First"])
        .assert_ok()
        .stdout();
    let b = at(&repo, "2026-01-10T10:00:00Z", "sam", &["add", "Second"])
        .assert_ok()
        .stdout();
    let (a, b) = (a.trim().to_string(), b.trim().to_string());
    at(
        &repo,
        "2026-01-03T10:00:00Z",
        "alex",
        &["audit", "record", "spec_started", "--spec", &a],
    )
    .assert_ok();
    at(
        &repo,
        "2026-01-04T10:00:00Z",
        "alex",
        &[
            "audit",
            "record",
            "command_run",
            "--spec",
            &a,
            "--details",
            r#"{"command":"make, test","exit_code":0}"#,
        ],
    )
    .assert_ok();
    at(
        &repo,
        "2026-01-05T10:00:00Z",
        "alex",
        &["audit", "record", "spec_completed", "--spec", &a],
    )
    .assert_ok();
    at(
        &repo,
        "2026-01-20T10:00:00Z",
        "sam",
        &["audit", "record", "spec_started", "--spec", &b],
    )
    .assert_ok();
    at(
        &repo,
        "2026-01-21T10:00:00Z",
        "sam",
        &[
            "audit",
            "record",
            "policy_violation",
            "--spec",
            &b,
            "--details",
            r#"{"rule":"deny_edit","path":".env"}"#,
        ],
    )
    .assert_ok();
    at(
        &repo,
        "2026-01-21T11:00:00Z",
        "sam",
        &["audit", "record", "spec_failed", "--spec", &b],
    )
    .assert_ok();
    (repo, a, b)
}

fn events(repo: &TestRepo, args: &[&str]) -> Vec<String> {
    let mut full = vec!["audit", "--format", "jsonl"];
    full.extend_from_slice(args);
    let out = at(repo, "2026-01-22T00:00:00Z", "tester", &full)
        .assert_ok()
        .stdout();
    out.lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).expect("json line");
            e["event"].as_str().expect("event").to_string()
        })
        .collect()
}

#[test]
fn filters() {
    let (repo, a, b) = populated();
    assert_eq!(events(&repo, &[]).len(), 9);
    assert_eq!(
        events(&repo, &["--actor", "alex"]),
        [
            "spec_created",
            "spec_started",
            "command_run",
            "spec_completed"
        ]
    );
    // --spec takes any id form: the unique suffix here.
    assert_eq!(
        events(&repo, &["--spec", &b[15..]]),
        [
            "spec_created",
            "spec_started",
            "policy_violation",
            "spec_failed"
        ]
    );
    assert_eq!(events(&repo, &["--spec", &a]).len(), 4);
    assert_eq!(
        events(
            &repo,
            &["--event", "spec_started", "--event", "spec_failed"]
        ),
        ["spec_started", "spec_started", "spec_failed"]
    );
    assert_eq!(
        events(&repo, &["--since", "2026-01-20"]),
        ["spec_started", "policy_violation", "spec_failed"]
    );
    assert_eq!(
        events(&repo, &["--until", "2026-01-02"]),
        ["ledger_created", "spec_created"]
    );
    assert_eq!(
        events(
            &repo,
            &[
                "--since",
                "2026-01-21T10:30:00Z",
                "--until",
                "2026-01-21T12:00:00+01:00"
            ]
        ),
        ["spec_failed"]
    );
    // --last counts back from now (CHANT_TIMESTAMP = 2026-01-22T00:00:00Z).
    assert_eq!(
        events(&repo, &["--last", "7d"]),
        ["spec_started", "policy_violation", "spec_failed"]
    );
    assert_eq!(events(&repo, &["--last", "30d"]).len(), 9);
    assert_eq!(
        events(&repo, &["--limit", "2"]),
        ["policy_violation", "spec_failed"]
    );
    assert_eq!(
        events(
            &repo,
            &["--actor", "sam", "--event", "spec_started", "--last", "30d"]
        ),
        ["spec_started"]
    );
    repo.chant(&["audit", "--event", "nope"]).assert_code(2);
    repo.chant(&["audit", "--since", "yesterday"])
        .assert_code(2);
    repo.chant(&["audit", "--last", "7x"]).assert_code(2);
}

#[test]
fn formats() {
    let (repo, _a, _b) = populated();
    let text = repo
        .chant(&["audit", "--event", "policy_violation"])
        .assert_ok()
        .stdout();
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    for col in ["TS", "EVENT", "SPEC", "ACTOR", "DETAILS"] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().expect("row");
    assert!(
        row.starts_with("2026-01-21T10:00:00Z  policy_violation"),
        "{row}"
    );
    assert!(
        row.contains("sam") && row.contains(r#""rule":"deny_edit""#),
        "{row}"
    );

    let json = repo
        .chant(&["audit", "--format", "json"])
        .assert_ok()
        .stdout();
    let arr: Vec<serde_json::Value> = serde_json::from_str(&json).expect("json array");
    assert_eq!(arr.len(), 9);
    assert_eq!(arr[0]["event"], "ledger_created");

    // jsonl lines are the canonical entries, byte for byte as in git log.
    let jsonl = repo
        .chant(&["audit", "--format", "jsonl"])
        .assert_ok()
        .stdout();
    let mut from_git: Vec<String> = common::ledger_lines(&repo);
    from_git.retain(|l| !l.is_empty());
    assert_eq!(jsonl.lines().collect::<Vec<_>>(), from_git);

    let csv = repo
        .chant(&["audit", "--format", "csv", "--event", "command_run"])
        .assert_ok()
        .stdout();
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .expect("header")
        .starts_with("ts,event,spec_id,actor,agent,sandbox,host,session,details,prev_hash,hash"));
    let row = lines.next().expect("row");
    assert!(
        row.starts_with("2026-01-04T10:00:00Z,command_run,"),
        "{row}"
    );
    // Quoting: the details JSON has commas and quotes.
    assert!(
        row.contains(r#""{""command"":""make, test"",""exit_code"":0}""#),
        "{row}"
    );

    repo.chant(&["audit", "--actor", "nobody"])
        .assert_ok()
        .stderr_has("No audit entries match");
}

#[test]
fn the_index_follows_the_ref() {
    let (repo, _a, _b) = populated();
    assert_eq!(events(&repo, &[]).len(), 9);
    assert!(repo.exists(".git/chant/audit/index"));
    at(
        &repo,
        "2026-01-21T12:00:00Z",
        "sam",
        &["audit", "record", "spec_cancelled"],
    )
    .assert_ok();
    assert_eq!(
        events(&repo, &["--event", "spec_cancelled"]),
        ["spec_cancelled"]
    );
    // A rewritten ledger (here: the last entry dropped) is re-indexed, not trusted.
    rewrite_ledger(&repo, |mut m| {
        m.pop();
        m
    });
    assert!(events(&repo, &["--event", "spec_cancelled"]).is_empty());
    assert_eq!(events(&repo, &[]).len(), 9);
    // A corrupted index is rebuilt or ignored; results still come from the commits.
    std::fs::write(repo.path(".git/chant/audit/index"), "garbage\n").expect("write");
    assert_eq!(events(&repo, &[]).len(), 9);
    // A truncated index (a crash mid-append) is caught by the consistency check.
    let index = std::fs::read_to_string(repo.path(".git/chant/audit/index")).expect("read");
    let cut: Vec<&str> = index.lines().take(5).collect();
    std::fs::write(repo.path(".git/chant/audit/index"), cut.join("\n") + "\n").expect("write");
    assert_eq!(events(&repo, &[]).len(), 9);
    std::fs::remove_file(repo.path(".git/chant/audit/index.head")).expect("rm");
    assert_eq!(events(&repo, &[]).len(), 9);
}

/// Writes `lines` as the query index with an `index.head` that agrees with them (last
/// record, count, length): an index that lies consistently.
fn forge_index(repo: &TestRepo, lines: &[String]) {
    let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let head = lines
        .last()
        .and_then(|l| l.rsplit('\t').next())
        .expect("a record");
    std::fs::write(repo.path(".git/chant/audit/index"), &text).expect("write index");
    std::fs::write(
        repo.path(".git/chant/audit/index.head"),
        format!("{head} {} {}\n", lines.len(), text.len()),
    )
    .expect("write index.head");
}

#[test]
fn an_index_that_lies_is_caught_by_the_commits_and_rebuilt() {
    let (repo, _a, _b) = populated();
    assert_eq!(events(&repo, &["--event", "command_run"]), ["command_run"]);
    let original = std::fs::read_to_string(repo.path(".git/chant/audit/index")).expect("read");
    let lines: Vec<String> = original.lines().map(str::to_string).collect();
    let run = lines
        .iter()
        .position(|l| l.contains("\tcommand_run\t"))
        .expect("a command_run record");
    assert!(run >= 2, "{original}");

    // The record before a match dropped: its commit's parent is not what the index lists.
    let mut dropped = lines.clone();
    dropped.remove(run - 1);
    forge_index(&repo, &dropped);
    assert_eq!(events(&repo, &["--event", "command_run"]), ["command_run"]);
    let rebuilt = std::fs::read_to_string(repo.path(".git/chant/audit/index")).expect("read");
    assert_eq!(
        rebuilt, original,
        "the query rebuilt the index from the ref"
    );

    // A record relabelled to match: its commit says otherwise.
    let mut relabelled = lines.clone();
    relabelled[1] = relabelled[1].replacen(
        &format!("\t{}\t", relabelled[1].split('\t').nth(2).expect("event")),
        "\tcommand_run\t",
        1,
    );
    forge_index(&repo, &relabelled);
    assert_eq!(events(&repo, &["--event", "command_run"]), ["command_run"]);
    assert_eq!(
        std::fs::read_to_string(repo.path(".git/chant/audit/index")).expect("read"),
        original
    );

    // A record that does not parse, far from the end, found by a query that reads it all.
    let mut garbled = lines.clone();
    garbled[0] = "not a record".into();
    forge_index(&repo, &garbled);
    assert_eq!(events(&repo, &[]).len(), 9);
    assert_eq!(
        std::fs::read_to_string(repo.path(".git/chant/audit/index")).expect("read"),
        original
    );
}

#[test]
fn text_table_snapshot() {
    let repo = TestRepo::new();
    at(&repo, "2026-01-01T09:00:00Z", "admin", &["init"]).assert_ok();
    at(
        &repo,
        "2026-01-02T10:00:00Z",
        "alex",
        &[
            "audit",
            "record",
            "command_run",
            "--details",
            r#"{"command":"make test","duration_ms":5120,"exit_code":0}"#,
        ],
    )
    .assert_ok();
    at(&repo, "2026-01-03T11:30:00Z", "sam", &["audit", "record", "policy_violation", "--details", r#"{"path":".env","rule":"deny_edit","note":"a long explanation that does not fit in the table column"}"#]).assert_ok();
    // From the 2nd: the genesis entry names the tool's version.
    let out = repo
        .chant(&["audit", "--since", "2026-01-02"])
        .assert_ok()
        .stdout();
    insta::assert_snapshot!(out);
}
