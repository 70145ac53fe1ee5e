//! Many writer processes at once lose nothing: 6 writers × 30 `git chant audit record`
//! processes, then every entry is present exactly once and the chain verifies.

mod common;

use std::collections::BTreeSet;

use common::{ledger_lines, TestRepo};

#[test]
fn six_concurrent_writers_lose_nothing() {
    const WRITERS: usize = 6;
    const EACH: usize = 30;
    let repo = TestRepo::initialised();
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let repo = &repo;
            scope.spawn(move || {
                for n in 0..EACH {
                    let details = format!(r#"{{"writer":{w},"n":{n}}}"#);
                    repo.chant(&["audit", "record", "command_run", "--details", &details])
                        .assert_ok();
                }
            });
        }
    });
    let lines = ledger_lines(&repo);
    assert_eq!(lines.len(), 1 + WRITERS * EACH);
    let seen: BTreeSet<(u64, u64)> = lines[1..]
        .iter()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).expect("json");
            (
                e["details"]["writer"].as_u64().expect("writer"),
                e["details"]["n"].as_u64().expect("n"),
            )
        })
        .collect();
    assert_eq!(seen.len(), WRITERS * EACH, "every entry exactly once");
    // Each writer's own entries stay in the order it wrote them.
    for w in 0..WRITERS as u64 {
        let ns: Vec<u64> = lines[1..]
            .iter()
            .filter_map(|l| {
                let e: serde_json::Value = serde_json::from_str(l).ok()?;
                (e["details"]["writer"].as_u64()? == w).then(|| e["details"]["n"].as_u64())?
            })
            .collect();
        assert_eq!(ns, (0..EACH as u64).collect::<Vec<_>>());
    }
    repo.chant(&["audit", "verify"])
        .assert_ok()
        .stdout_has(&format!("verified {} entries", 1 + WRITERS * EACH));
    // The reflog recorded every swap.
    let reflog = repo.git(&["reflog", "show", "refs/chant/audit"]);
    assert_eq!(reflog.lines().count(), 1 + WRITERS * EACH);
}

#[test]
fn threads_in_one_process_lose_nothing() {
    let repo = TestRepo::initialised();
    let root = repo.root.clone();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let root = root.clone();
            scope.spawn(move || {
                let git = git2::Repository::open(&root).expect("open");
                for n in 0..25 {
                    let mut fields = serde_json::Map::new();
                    for (k, v) in [
                        ("ts", serde_json::json!("2026-01-22T15:30:00Z")),
                        ("event", serde_json::json!("file_modified")),
                        ("spec_id", serde_json::Value::Null),
                        ("actor", serde_json::json!("thread")),
                        ("agent", serde_json::Value::Null),
                        ("sandbox", serde_json::Value::Null),
                        ("host", serde_json::json!("h")),
                        ("session", serde_json::json!("s")),
                        ("details", serde_json::json!({"t": t, "n": n})),
                    ] {
                        fields.insert(k.into(), v);
                    }
                    let draft = git_chant::audit::Draft {
                        fields,
                        email: "t@example.com".into(),
                    };
                    git_chant::audit::ledger::append(
                        &git,
                        &git_chant::audit::Signer::Unsigned,
                        &[draft.clone(), draft],
                    )
                    .expect("append");
                }
            });
        }
    });
    assert_eq!(ledger_lines(&repo).len(), 1 + 4 * 25 * 2);
    repo.chant(&["audit", "verify"]).assert_ok();
}

#[test]
fn a_large_batch_is_one_pack_that_git_accepts() {
    // Batches from 256 entries on are written as one pack file handed to git's indexer.
    let repo = TestRepo::initialised();
    let git = git2::Repository::open(&repo.root).expect("open");
    let drafts: Vec<git_chant::audit::Draft> = (0..300)
        .map(|n| {
            let mut fields = serde_json::Map::new();
            for (k, v) in [
                ("ts", serde_json::json!("2026-01-22T15:30:00Z")),
                ("event", serde_json::json!("file_modified")),
                ("spec_id", serde_json::Value::Null),
                ("actor", serde_json::json!("batch")),
                ("agent", serde_json::Value::Null),
                ("sandbox", serde_json::Value::Null),
                ("host", serde_json::json!("h")),
                ("session", serde_json::json!("s")),
                (
                    "details",
                    serde_json::json!({"n": n, "path": format!("src/ü{n}.rs")}),
                ),
            ] {
                fields.insert(k.into(), v);
            }
            git_chant::audit::Draft {
                fields,
                email: "b@example.com".into(),
            }
        })
        .collect();
    git_chant::audit::ledger::append(&git, &git_chant::audit::Signer::Unsigned, &drafts)
        .expect("append");
    let packs = std::fs::read_dir(repo.path(".git/objects/pack"))
        .expect("pack dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        })
        .count();
    assert_eq!(packs, 1);
    repo.git(&["fsck", "--strict", "--no-dangling"]);
    assert_eq!(ledger_lines(&repo).len(), 301);
    repo.chant(&["audit", "verify"])
        .assert_ok()
        .stdout_has("verified 301 entries");
}

#[test]
fn killed_writers_leave_a_complete_chain() {
    // SIGKILL record processes at arbitrary instants: the ref always points at a complete,
    // verifiable chain (objects are written before the ref is swapped).
    let repo = TestRepo::initialised();
    for round in 0..12u64 {
        let mut children: Vec<std::process::Child> = (0..4)
            .map(|w| {
                repo.chant_cmd(&[
                    "audit",
                    "record",
                    "command_run",
                    "--details",
                    &format!(r#"{{"round":{round},"w":{w}}}"#),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn")
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_micros(500 + round * 700));
        for c in &mut children {
            let _ = c.kill();
        }
        for c in &mut children {
            let _ = c.wait();
        }
    }
    repo.chant(&["audit", "verify"]).assert_ok();
    repo.git(&["fsck", "--connectivity-only"]);
    // And the ledger still takes appends.
    repo.chant(&["audit", "record", "spec_approved"])
        .assert_ok();
    repo.chant(&["audit", "verify"]).assert_ok();
}

#[test]
fn a_stale_ref_lock_left_by_a_killed_writer_is_cleared() {
    let repo = TestRepo::initialised();
    let lock = repo.path(".git/refs/chant/audit.lock");
    std::fs::write(&lock, "0000000000000000000000000000000000000000\n").expect("lock");
    let status = std::process::Command::new("touch")
        .args(["-d", "1 hour ago"])
        .arg(&lock)
        .status()
        .expect("touch");
    assert!(status.success());
    repo.chant(&["audit", "record", "spec_approved"])
        .assert_ok();
    assert!(!lock.exists());
    repo.chant(&["audit", "verify"])
        .assert_ok()
        .stdout_has("verified 2 entries");
}
