//! Replication through a real bare remote: two clones record concurrently, `audit sync`
//! re-chains the unpublished entries on top of the published head, nothing is lost and
//! nothing is forced.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{ledger_commits, ledger_lines, TestRepo};

fn bare_remote() -> (TestRepo, std::path::PathBuf) {
    let seed = TestRepo::new();
    let bare = seed.tmp.path().join("remote.git");
    seed.git(&[
        "clone",
        "--quiet",
        "--bare",
        seed.root.to_str().expect("utf-8"),
        bare.to_str().expect("utf-8"),
    ]);
    (seed, bare)
}

fn clone_of(bare: &Path) -> TestRepo {
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("home");
    let root = tmp.path().join("repo");
    std::fs::create_dir_all(&home).expect("home");
    let repo = TestRepo { tmp, root, home };
    let mut cmd = Command::new("git");
    repo.env(&mut cmd);
    let out = cmd
        .args(["clone", "--quiet"])
        .arg(bare)
        .arg(&repo.root)
        .current_dir(repo.tmp.path())
        .output()
        .expect("clone");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo
}

fn details_set(repo: &TestRepo) -> BTreeSet<String> {
    ledger_lines(repo)
        .iter()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).expect("json");
            format!("{}:{}", e["event"], e["details"])
        })
        .collect()
}

#[test]
fn concurrent_clones_reconcile_without_loss_or_force() {
    let (_seed, bare) = bare_remote();
    let a = clone_of(&bare);
    a.chant(&["init"]).assert_ok();
    a.chant(&["audit", "sync"])
        .assert_ok()
        .stdout_has("pushed refs/chant/audit");
    // B fetches the published ledger (init's refspec) and adopts it.
    let b = clone_of(&bare);
    b.git(&[
        "config",
        "--add",
        "remote.origin.fetch",
        "refs/chant/*:refs/remotes/origin/chant/*",
    ]);
    b.git(&["fetch", "--quiet", "origin"]);
    b.chant(&["init"])
        .assert_ok()
        .stdout_has("adopted origin's audit ledger");
    assert_eq!(ledger_commits(&a), ledger_commits(&b));

    // Both record at the same time, unpublished.
    std::thread::scope(|s| {
        for (name, repo) in [("a", &a), ("b", &b)] {
            s.spawn(move || {
                for n in 0..10 {
                    let d = format!(r#"{{"clone":"{name}","n":{n}}}"#);
                    repo.chant(&["audit", "record", "command_run", "--details", &d])
                        .assert_ok();
                }
            });
        }
    });
    let b_before: Vec<serde_json::Value> = ledger_lines(&b)
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    a.chant(&["audit", "sync"]).assert_ok().stdout_has("pushed");
    b.chant(&["audit", "sync"])
        .assert_ok()
        .stdout_has("re-chained 10 unpublished entries")
        .stdout_has("pushed");
    a.chant(&["audit", "sync"])
        .assert_ok()
        .stdout_has("fast-forwarded");
    assert_eq!(ledger_commits(&a), ledger_commits(&b));
    assert_eq!(ledger_lines(&a).len(), 21);
    assert_eq!(details_set(&a).len(), 21, "every entry exactly once");
    // Re-chained entries keep every field but prev_hash and hash.
    let after: Vec<serde_json::Value> = ledger_lines(&b)
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    for old in b_before.iter().skip(1) {
        let strip = |v: &serde_json::Value| {
            let mut m = v.as_object().expect("object").clone();
            m.remove("hash");
            m.remove("prev_hash");
            m
        };
        assert!(after.iter().any(|n| strip(n) == strip(old)), "lost {old}");
    }
    a.chant(&["audit", "verify"])
        .assert_ok()
        .stdout_has("verified 21 entries");
    b.chant(&["audit", "verify"]).assert_ok();
    // The bare remote verifies too (what a server hook would run).
    let mut cmd = a.chant_cmd(&["audit", "verify"]);
    let out = cmd.current_dir(&bare).output().expect("verify bare");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A plain `git fetch` carries the ledger, without `+`.
    let fetch = a.git(&["config", "--get-all", "remote.origin.fetch"]);
    assert!(
        fetch.contains("refs/chant/*:refs/remotes/origin/chant/*")
            && !fetch.contains("+refs/chant")
    );
}

#[test]
fn a_rewritten_remote_ledger_is_refused() {
    let (seed, bare) = bare_remote();
    let a = clone_of(&bare);
    a.chant(&["init"]).assert_ok();
    a.chant(&["audit", "record", "spec_approved"]).assert_ok();
    a.chant(&["audit", "sync"]).assert_ok();
    // Someone rewinds the remote ledger by force.
    let first = ledger_commits(&a)[0].clone();
    let mut cmd = Command::new("git");
    seed.env(&mut cmd);
    let out = cmd
        .arg("--git-dir")
        .arg(&bare)
        .args(["update-ref", "refs/chant/audit", &first])
        .output()
        .expect("git");
    assert!(out.status.success());
    a.chant(&["audit", "sync"])
        .assert_code(1)
        .stderr_has("rewritten");
}

#[test]
fn sync_with_an_unknown_remote_is_a_usage_error() {
    let repo = TestRepo::initialised();
    repo.chant(&["audit", "sync", "--remote", "nowhere"])
        .assert_code(2)
        .stderr_has("no remote named 'nowhere'");
}

#[test]
fn a_bare_repository_can_be_queried_verified_and_appended_to() {
    // What server hooks do: no work tree, no sinks.
    let (_seed, bare) = bare_remote();
    let a = clone_of(&bare);
    a.chant(&["init"]).assert_ok();
    a.chant(&["audit", "record", "spec_approved"]).assert_ok();
    a.chant(&["audit", "sync"]).assert_ok();
    let git = git2::Repository::open_bare(&bare).expect("bare");
    use git_chant::identity::{Actor, Email, Host, Session};
    let identity = git_chant::identity::Identity {
        actor: Actor::parse("test", "server").expect("actor"),
        email: Email::parse("test", "server@example.com").expect("email"),
        session: Session::parse("test", "sess_hook").expect("session"),
        host: Host::parse("test", "git-server").expect("host"),
    };
    let stored = git_chant::audit::append_to_repo(
        &git,
        git_chant::config::SignMode::Auto,
        &identity,
        vec![
            git_chant::audit::NewEntry::new(git_chant::audit::Event::PushRejected)
                .detail("reason", "non-fast-forward of refs/chant/audit"),
        ],
    )
    .expect("append");
    assert_eq!(stored.len(), 1);
    let v = git_chant::audit::verify(&git, &git_chant::audit::VerifyOptions::default())
        .expect("verify");
    assert_eq!(v.entries, 3);
    let out = a
        .chant_cmd(&["audit", "--event", "push_rejected", "--format", "jsonl"])
        .current_dir(&bare)
        .output()
        .expect("query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(r#""actor":"server""#));
}

#[test]
fn a_clone_that_started_its_own_ledger_is_re_chained_whole() {
    let (_seed, bare) = bare_remote();
    let a = clone_of(&bare);
    a.chant(&["init"]).assert_ok();
    a.chant(&["audit", "sync"]).assert_ok();
    let b = clone_of(&bare);
    b.chant(&["init"])
        .assert_ok()
        .stdout_has("started the audit ledger");
    b.chant(&["audit", "record", "spec_approved"]).assert_ok();
    b.chant(&["audit", "sync"])
        .assert_ok()
        .stdout_has("re-chained 2 unpublished entries");
    a.chant(&["audit", "sync"]).assert_ok();
    assert_eq!(ledger_commits(&a), ledger_commits(&b));
    assert_eq!(ledger_lines(&a).len(), 3);
    a.chant(&["audit", "verify"]).assert_ok();
}

#[test]
fn sync_takes_in_nothing_from_a_remote_whose_ledger_does_not_verify() {
    type Edit = fn(&str) -> String;
    let forgeries: [(&str, Edit); 3] = [
        ("subject", |r| {
            r.replacen("\ncommand_run - by", "\nspec_approved - by", 1)
        }),
        ("author", |r| r.replacen("author tester", "author alice", 1)),
        ("hash mismatch", |r| {
            r.replacen("\"command\":\"b\"", "\"command\":\"c\"", 1)
        }),
    ];
    for (reason, edit) in forgeries {
        let (_seed, bare) = bare_remote();
        let a = clone_of(&bare);
        a.chant(&["init"]).assert_ok();
        a.git(&[
            "push",
            "--quiet",
            "--no-verify",
            "origin",
            "refs/chant/audit",
        ]);
        let b = clone_of(&bare);
        b.chant(&["init"]).assert_ok();
        b.chant(&["audit", "sync"]).assert_ok();
        // a's next entry reaches the remote forged (a remote without the server hook).
        a.chant(&["audit", "sync"]).assert_ok();
        a.chant(&[
            "audit",
            "record",
            "command_run",
            "--details",
            r#"{"command":"b"}"#,
        ])
        .assert_ok();
        let forged = common::forge_ledger_head(&a, edit);
        a.git(&[
            "push",
            "--quiet",
            "--no-verify",
            "origin",
            "refs/chant/audit",
        ]);
        let before = b.git(&["rev-parse", "refs/chant/audit"]);
        b.chant(&["audit", "record", "spec_failed"]).assert_ok();
        let mine = b.git(&["rev-parse", "refs/chant/audit"]);
        assert_ne!(before, mine);
        b.chant(&["audit", "sync"])
            .assert_code(1)
            .stderr_has("does not verify, so nothing of it was taken in")
            .stderr_has(&forged)
            .stderr_has(reason);
        assert_eq!(b.git(&["rev-parse", "refs/chant/audit"]), mine, "{reason}");
    }
}
