//! `git chant audit verify` against tampered ledgers: every tampering exits 1 and names the
//! commit at fault.

mod common;

use common::{ledger_commits, rewrite_ledger, TestRepo};
use std::os::unix::fs::PermissionsExt;

/// An initialised repository with `n` extra entries.
fn ledger_with(n: usize) -> TestRepo {
    let repo = TestRepo::initialised();
    for i in 0..n {
        repo.chant(&[
            "audit",
            "record",
            "command_run",
            "--details",
            &format!(r#"{{"command":"step {i}","exit_code":0}}"#),
        ])
        .assert_ok();
    }
    repo
}

#[test]
fn an_intact_ledger_verifies_incrementally() {
    let repo = ledger_with(3);
    let head = ledger_commits(&repo).pop().expect("head");
    repo.chant(&["audit", "verify"])
        .assert_ok()
        .stdout_has(&format!("verified 4 entries; head {head}"));
    repo.chant(&[
        "audit",
        "record",
        "spec_failed",
        "--details",
        r#"{"reason":"x"}"#,
    ])
    .assert_ok();
    let head2 = ledger_commits(&repo).pop().expect("head");
    repo.chant(&["audit", "verify"])
        .assert_ok()
        .stdout_has(&format!("verified 1 entries; head {head2}"))
        .stdout_has(&format!("since the last verified head {head}"));
    // --from re-verifies a stretch.
    let commits = ledger_commits(&repo);
    repo.chant(&["audit", "verify", "--from", &commits[1]])
        .assert_ok()
        .stdout_has("verified 4 entries");
    // --from newer than the checkpoint: no false "rewritten".
    repo.chant(&["audit", "record", "spec_failed"]).assert_ok();
    let commits = ledger_commits(&repo);
    repo.chant(&["audit", "verify", "--from", &commits[5]])
        .assert_ok()
        .stdout_has("verified 1 entries");
    repo.chant(&["audit", "verify", "--from", "main"])
        .assert_code(2)
        .stderr_has("is not an entry of refs/chant/audit");
}

#[test]
fn an_edited_entry_is_named() {
    let repo = ledger_with(3);
    let new = rewrite_ledger(&repo, |mut msgs| {
        msgs[2] = msgs[2].replace("step 1", "step X");
        msgs
    });
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has(&format!("broken at commit {}", new[2]))
        .stderr_has("hash mismatch");
}

#[test]
fn a_dropped_entry_is_named() {
    let repo = ledger_with(3);
    let new = rewrite_ledger(&repo, |mut msgs| {
        msgs.remove(2);
        msgs
    });
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has(&format!("broken at commit {}", new[2]))
        .stderr_has("prev_hash");
}

#[test]
fn a_dropped_first_entry_is_named() {
    let repo = ledger_with(2);
    let new = rewrite_ledger(&repo, |mut msgs| {
        msgs.remove(0);
        msgs
    });
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has(&format!("broken at commit {}", new[0]))
        .stderr_has("not 64 zeros");
}

#[test]
fn reordered_entries_are_named() {
    let repo = ledger_with(3);
    let new = rewrite_ledger(&repo, |mut msgs| {
        msgs.swap(2, 3);
        msgs
    });
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has(&format!("broken at commit {}", new[2]));
}

#[test]
fn a_merge_commit_is_named() {
    let repo = ledger_with(1);
    let commits = ledger_commits(&repo);
    let git = repo.open();
    let head = git
        .find_commit(git2::Oid::from_str(&commits[1]).expect("oid"))
        .expect("commit");
    let other = git
        .find_commit(git2::Oid::from_str(&commits[0]).expect("oid"))
        .expect("commit");
    let sig = head.author().to_owned();
    let msg = head.message().expect("msg").to_string();
    let tree = head.tree().expect("tree");
    let parent = head.parent(0).expect("parent");
    let merge = git
        .commit(None, &sig, &sig, &msg, &tree, &[&parent, &other])
        .expect("merge");
    git.reference("refs/chant/audit", merge, true, "test")
        .expect("ref");
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has(&format!("broken at commit {merge}"))
        .stderr_has("2 parents");
}

#[test]
fn a_rewound_ref_is_reported() {
    let repo = ledger_with(3);
    let commits = ledger_commits(&repo);
    repo.chant(&["audit", "verify"]).assert_ok();
    repo.git(&["update-ref", "refs/chant/audit", &commits[1]]);
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has("was rewritten")
        .stderr_has(&commits[3]);
}

#[test]
fn a_rewritten_ledger_after_verify_names_checkpoint_and_bad_commit() {
    let repo = ledger_with(3);
    let commits = ledger_commits(&repo);
    repo.chant(&["audit", "verify"]).assert_ok();
    let new = rewrite_ledger(&repo, |mut msgs| {
        msgs[1] = msgs[1].replace("step 0", "step Y");
        msgs
    });
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has(&commits[3])
        .stderr_has(&new[1]);
}

#[test]
fn a_deleted_ref_is_reported() {
    let repo = ledger_with(1);
    let commits = ledger_commits(&repo);
    repo.chant(&["audit", "verify"]).assert_ok();
    repo.git(&["update-ref", "-d", "refs/chant/audit"]);
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has("the ledger was deleted")
        .stderr_has(&commits[1]);
    // Without a checkpoint: still a refusal, not a pass.
    std::fs::remove_file(repo.path(".git/chant/audit/verified")).expect("rm");
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has("does not exist");
}

#[test]
fn a_shallow_clone_cannot_verify() {
    let repo = ledger_with(3);
    let clone = TestRepo::new();
    let url = format!("file://{}", repo.root.display());
    std::fs::remove_dir_all(&clone.root).expect("rm");
    let mut cmd = std::process::Command::new("git");
    clone.env(&mut cmd);
    let out = cmd
        .args(["clone", "--quiet", "--depth", "1", &url])
        .arg(&clone.root)
        .current_dir(clone.tmp.path())
        .output()
        .expect("clone");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    clone.git(&[
        "fetch",
        "--quiet",
        "--depth",
        "2",
        "origin",
        "refs/chant/audit:refs/chant/audit",
    ]);
    clone
        .chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has("shallow");
}

#[test]
fn a_non_canonical_entry_with_a_matching_hash_is_named() {
    // Same content, same hash, but whitespace: other tools would hash different bytes.
    let repo = ledger_with(2);
    let new = rewrite_ledger(&repo, |mut msgs| {
        msgs[1] = msgs[1].replacen("{\"actor\":", "{ \"actor\":", 1);
        msgs
    });
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has(&format!("broken at commit {}", new[1]))
        .stderr_has("canonical");
}

#[test]
fn unknown_fields_are_kept_and_covered_by_the_hash() {
    let repo = ledger_with(1);
    // A newer tool wrote an extra top-level field and an extra detail; re-chain properly.
    rewrite_ledger(&repo, |msgs| {
        let mut prev = "0".repeat(64);
        msgs.iter()
            .map(|m| {
                let (subject, body) = m.split_once("\n\n").expect("body");
                let mut e: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(body.trim()).expect("json");
                e.insert("x_future".into(), serde_json::json!({"b": 1, "a": [2]}));
                e.insert("prev_hash".into(), serde_json::json!(prev));
                e.remove("hash");
                let h = git_chant::audit::entry_hash(&e);
                e.insert("hash".into(), serde_json::json!(h));
                prev = h;
                format!("{subject}\n\n{}", serde_json::to_string(&e).expect("json"))
            })
            .collect()
    });
    repo.chant(&["audit", "verify"]).assert_ok();
    let out = repo
        .chant(&["audit", "--format", "jsonl"])
        .assert_ok()
        .stdout();
    assert!(
        out.lines()
            .all(|l| l.contains(r#""x_future":{"a":[2],"b":1}"#)),
        "{out}"
    );
}

#[test]
fn git_log_prints_exactly_one_json_line_per_entry() {
    let repo = ledger_with(2);
    let out = repo.git(&["log", "--format=%b", "refs/chant/audit"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    for l in lines {
        serde_json::from_str::<serde_json::Value>(l).expect("a JSON line");
    }
}

/// Packs every object the way `git gc` would; with `deltas`, git may store commits as
/// deltas of each other (which the verifier reads through libgit2).
fn repack(repo: &TestRepo, deltas: bool) {
    let window = if deltas { "--window=50" } else { "--window=0" };
    repo.git(&["repack", "-a", "-d", "-f", "-q", window, "--depth=50"]);
}

#[test]
fn tampering_is_named_in_packed_ledgers_too() {
    for deltas in [false, true] {
        let repo = ledger_with(3);
        repack(&repo, deltas);
        repo.chant(&["audit", "verify"])
            .assert_ok()
            .stdout_has("verified 4 entries");
        let new = rewrite_ledger(&repo, |mut msgs| {
            msgs[2] = msgs[2].replace("step 1", "step X");
            msgs
        });
        repack(&repo, deltas);
        // Verified before, so the rewrite is reported along with the first broken entry.
        repo.chant(&["audit", "verify"])
            .assert_code(1)
            .stderr_has("was rewritten")
            .stderr_has(&format!("commit {}: hash mismatch", new[2]));
    }
}

#[test]
fn a_packed_object_that_does_not_hash_to_its_id_is_named() {
    // An attacker swaps the bytes of the head commit inside a pack for a forged entry and
    // keeps the head's id, so the ref and every id still look right to `git log`.
    let repo = ledger_with(2);
    let head = ledger_commits(&repo).pop().expect("head");
    let forged = rewrite_ledger(&repo, |mut msgs| {
        msgs[2] = msgs[2].replace("step 1", "step X");
        msgs
    });
    repo.git(&["update-ref", "refs/chant/audit", &head]);
    let pack_dir = repo.path(".git/objects/pack");
    std::fs::create_dir_all(&pack_dir).expect("pack dir");
    let mut child = std::process::Command::new("git")
        .args(["pack-objects", "-q", "--window=0"])
        .arg(pack_dir.join("forged"))
        .current_dir(repo.path("."))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("pack-objects");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{}", forged[2]).expect("write");
    }
    assert!(child.wait().expect("wait").success());
    // Relabel the pack's one object with the head's id (fan-out and name table).
    let idx_path = std::fs::read_dir(&pack_dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .expect("idx");
    let mut idx = std::fs::read(&idx_path).expect("read idx");
    let id = git2::Oid::from_str(&head).expect("oid");
    let first = usize::from(id.as_bytes()[0]);
    for i in 0..256 {
        let count: u32 = if i >= first { 1 } else { 0 };
        idx[8 + i * 4..12 + i * 4].copy_from_slice(&count.to_be_bytes());
    }
    idx[8 + 1024..8 + 1024 + 20].copy_from_slice(id.as_bytes());
    std::fs::set_permissions(&idx_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(&idx_path, idx).expect("write idx");
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has(&format!("broken at commit {head}"))
        .stderr_has("does not hash to its id");
}

#[test]
fn a_ledger_ref_on_something_other_than_a_commit_is_named() {
    let repo = ledger_with(0);
    std::fs::write(repo.path("note.txt"), "not an entry\n").expect("write");
    let blob = repo
        .git(&["hash-object", "-w", "note.txt"])
        .trim()
        .to_string();
    repo.git(&["update-ref", "refs/chant/audit", &blob]);
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has(&format!("broken at commit {blob}: is a blob, not a commit"));
}

// ---- the plain-git view must not contradict the entry ----

#[test]
fn a_commit_whose_subject_author_or_headers_contradict_its_entry_is_named() {
    let author_line = |raw: &str, which: &str| {
        raw.lines()
            .find(|l| l.starts_with(which))
            .expect("ident line")
            .to_string()
    };
    type Edit = Box<dyn Fn(&str) -> String>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "another event in the subject",
            Box::new(|r: &str| r.replacen("\ncommand_run - by", "\nspec_approved - by", 1)),
            "subject",
        ),
        (
            "another spec in the subject",
            Box::new(|r: &str| {
                r.replacen(
                    "\ncommand_run - by",
                    "\ncommand_run 2026-01-22-001-x7m by",
                    1,
                )
            }),
            "subject",
        ),
        (
            "another actor in the subject",
            Box::new(|r: &str| r.replacen(" - by tester\n", " - by alice\n", 1)),
            "subject",
        ),
        (
            "a second subject line",
            Box::new(|r: &str| {
                r.replacen(" - by tester\n", " - by tester\napproved by alice\n", 1)
            }),
            "subject",
        ),
        (
            "another author name",
            Box::new(move |r: &str| {
                let a = author_line(r, "author ");
                r.replacen(&a, &a.replacen("author tester", "author alice", 1), 1)
            }),
            "author",
        ),
        (
            "another author date",
            Box::new(move |r: &str| {
                let a = author_line(r, "author ");
                let (head, when) = a.rsplit_once("> ").expect("date");
                let secs: i64 = when.split(' ').next().expect("secs").parse().expect("int");
                r.replacen(&a, &format!("{head}> {} +0000", secs - 86_400), 1)
            }),
            "author",
        ),
        (
            "another author time zone",
            Box::new(move |r: &str| {
                let a = author_line(r, "author ");
                r.replacen(&a, &a.replace("+0000", "-0700"), 1)
            }),
            "author",
        ),
        (
            "another committer",
            Box::new(move |r: &str| {
                let c = author_line(r, "committer ");
                r.replacen(&c, &c.replacen("committer tester", "committer alice", 1), 1)
            }),
            "committer",
        ),
        (
            "another committer e-mail",
            Box::new(move |r: &str| {
                let c = author_line(r, "committer ");
                r.replacen(
                    &c,
                    &c.replace("tester@example.com", "mallory@example.com"),
                    1,
                )
            }),
            "committer",
        ),
        (
            "a re-encoding header",
            Box::new(move |r: &str| {
                let c = author_line(r, "committer ");
                r.replacen(&c, &format!("{c}\nencoding ISO-8859-1"), 1)
            }),
            "'encoding' header",
        ),
        (
            "a tree with files",
            Box::new(|r: &str| {
                r.replacen(
                    "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
                    "tree 3c4e9cd789d88d8d89c1073707c3585e41b0e614",
                    1,
                )
            }),
            "empty tree",
        ),
    ];
    for (what, edit, reason) in cases {
        let repo = ledger_with(1);
        let forged = common::forge_ledger_head(&repo, |r| edit(r));
        repo.chant(&["audit", "verify"])
            .assert_code(1)
            .stderr_has(&format!("broken at commit {forged}"))
            .stderr_has(reason);
        // The same through the library path the server hook uses.
        let git = repo.open();
        let why = git_chant::audit::verify_range(
            &git,
            None,
            git2::Oid::from_str(&forged).expect("oid"),
            false,
        )
        .expect_err(what);
        assert!(why.contains(reason), "{what}: {why}");
    }
}

#[test]
fn entries_with_escapes_are_checked_against_their_commit_too() {
    // Escaped characters in actor or spec send the entry off the fast path; the slow path
    // must still compare subject and author, and accept what chant itself writes.
    // (An actor is parsed before anything is recorded: `"` is the only character a valid
    // actor can hold that JSON escapes; `<`, `\\`, tabs and newlines are refused outright.)
    let repo = TestRepo::initialised();
    for actor in ["al\"ice", "\"quoted\" name", "say \"hi\" twice \"\""] {
        let out = repo
            .chant_cmd(&["audit", "record", "command_run"])
            .env("CHANT_ACTOR", actor)
            .output()
            .expect("run");
        common::Run(out).assert_ok();
    }
    for refused in ["angle <x@y> brackets", "bo\\b", "tab\there", "new\nline"] {
        let out = repo
            .chant_cmd(&["audit", "record", "command_run"])
            .env("CHANT_ACTOR", refused)
            .output()
            .expect("run");
        common::Run(out).assert_code(2).stderr_has("CHANT_ACTOR");
    }
    repo.chant(&["audit", "verify"])
        .assert_ok()
        .stdout_has("verified 4 entries");
    let forged = common::forge_ledger_head(&repo, |r| {
        r.replacen("\ncommand_run - by", "\nspec_approved - by", 1)
    });
    repo.chant(&["audit", "verify"])
        .assert_code(1)
        .stderr_has(&format!("commit {forged}: its subject"));
}
