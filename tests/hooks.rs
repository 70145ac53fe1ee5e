//! Branch protection and the append-only ledger, enforced by the server hook on a real bare
//! repository pushed to over file:// (and the client hooks).

mod common;

use std::path::PathBuf;

use common::{Run, TestRepo};

/// A client repository with a spec worked by an agent, and a bare server with the hook.
struct Setup {
    repo: TestRepo,
    server: PathBuf,
    id: String,
}

/// A bare repository beside `repo` with the server hook installed, added as `origin`.
fn hooked_server(repo: &TestRepo) -> PathBuf {
    let server = repo.tmp.path().join("server.git");
    let dir = server.to_str().expect("utf8");
    repo.git(&["init", "--quiet", "--bare", "--initial-branch=main", dir]);
    repo.chant(&["hooks", "install", "--server", "--dir", dir])
        .assert_ok();
    repo.git(&["remote", "add", "origin", &format!("file://{dir}")]);
    server
}

fn setup() -> Setup {
    let repo = TestRepo::initialised();
    repo.use_agent(
        "greet.sh",
        "  sandbox: none\n",
        "protection:\n  agents: [\"agent-*\"]\n",
    );
    let id = repo.add_spec("Greet the user", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    let server = hooked_server(&repo);
    repo.git(&["push", "--quiet", "origin", "main"]);
    repo.chant(&["work", &id]).assert_ok();
    Setup { repo, server, id }
}

impl Setup {
    fn push(&self, envs: &[(&str, &str)], args: &[&str]) -> Run {
        let mut all = vec!["push", "--no-verify", "origin"];
        all.extend_from_slice(args);
        self.repo.git_in(&self.repo.root, envs, &all)
    }

    fn merge_spec(&self) {
        self.repo.git(&[
            "merge",
            "--quiet",
            "--ff-only",
            &format!("chant/{}", self.id),
        ]);
    }

    fn server_events(&self, event: &str) -> Vec<serde_json::Value> {
        let out = std::process::Command::new("git")
            .args(["log", "--format=%b", "refs/chant/audit"])
            .current_dir(&self.server)
            .output()
            .expect("git log");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == event)
            .collect()
    }
}

#[test]
fn an_agent_pushing_to_main_is_refused_and_recorded() {
    let s = setup();
    s.repo.write("x.txt", "x\n");
    s.repo.git(&["add", "x.txt"]);
    s.repo.git(&["commit", "--quiet", "-m", "direct"]);
    let run = s.push(&[("CHANT_PUSHER", "agent-bot")], &["main"]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr().contains("chant: agent-bot is an agent"),
        "{}",
        run.stderr()
    );
    let rejected = s.server_events("push_rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["actor"], "agent-bot");
    s.push(&[("CHANT_PUSHER", "alice")], &["main"]).assert_ok();
}

#[test]
fn an_agent_may_push_only_its_incoming_ref() {
    let s = setup();
    s.repo.write("x.txt", "x\n");
    s.repo.git(&["add", "x.txt"]);
    s.repo.git(&["commit", "--quiet", "-m", "result"]);
    let agent = [("CHANT_PUSHER", "agent-k8s")];
    let incoming = format!("HEAD:refs/chant/incoming/{}/sess_abc", s.id);
    s.push(&agent, &[&incoming]).assert_ok();
    for target in [
        "HEAD:refs/heads/feature",
        "HEAD:refs/chant/incoming/only-one-part",
        "HEAD:refs/tags/v1",
    ] {
        let run = s.push(&agent, &[target]);
        assert_ne!(run.code(), 0, "{target} was accepted");
        assert!(
            run.stderr()
                .contains("agent-k8s is an agent (protection.agents) and may push only to refs/chant/incoming/<id>/<session>"),
            "{}",
            run.stderr()
        );
    }
    let rejected = s.server_events("push_rejected");
    assert_eq!(rejected.len(), 3);
    assert!(rejected.iter().all(|e| e["actor"] == "agent-k8s"));
    // The same pushes by a person are ordinary.
    s.push(&[("CHANT_PUSHER", "alice")], &["HEAD:refs/heads/feature"])
        .assert_ok();
    let deletion = format!(":refs/chant/incoming/{}/sess_abc", s.id);
    s.push(&[("CHANT_PUSHER", "alice")], &[&deletion])
        .assert_ok();
}

#[test]
fn gitolite_user_is_the_pusher() {
    let s = setup();
    s.repo.write("x.txt", "x\n");
    s.repo.git(&["add", "x.txt"]);
    s.repo.git(&["commit", "--quiet", "-m", "direct"]);
    let run = s.push(
        &[("GL_USER", "agent-ci"), ("CHANT_PUSHER", "alice")],
        &["main"],
    );
    assert!(
        run.stderr().contains("agent-ci is an agent"),
        "{}",
        run.stderr()
    );
}

#[test]
fn unapproved_spec_merge_is_refused_and_approved_one_accepted() {
    let s = setup();
    s.merge_spec();
    let run = s.push(&[("CHANT_PUSHER", "alice")], &["main"]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr()
            .contains(&format!("spec {} has no recorded approval", s.id)),
        "{}",
        run.stderr()
    );
    s.repo
        .chant(&["approve", &s.id, "--comment", "reviewed"])
        .assert_ok();
    // The server recorded the rejection: re-chain our approval on top of its ledger first.
    s.repo.chant(&["audit", "sync"]).assert_ok();
    s.push(&[("CHANT_PUSHER", "alice")], &["main"]).assert_ok();
}

#[test]
fn a_commit_after_the_approval_needs_a_new_one() {
    let s = setup();
    s.repo.chant(&["approve", &s.id]).assert_ok();
    let branch = format!("chant/{}", s.id);
    s.repo.git(&["checkout", "--quiet", &branch]);
    s.repo.write("late.txt", "late\n");
    s.repo.git(&["add", "late.txt"]);
    s.repo.git(&[
        "commit",
        "--quiet",
        "-m",
        &format!("late change\n\nChant-Spec: {}", s.id),
    ]);
    s.repo.git(&["checkout", "--quiet", "main"]);
    s.merge_spec();
    let run = s.push(
        &[("CHANT_PUSHER", "alice")],
        &["--atomic", "refs/chant/audit", "main"],
    );
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr().contains("was added after its approval"),
        "{}",
        run.stderr()
    );
}

#[test]
fn agents_cannot_approve() {
    let s = setup();
    let out = s
        .repo
        .chant_cmd(&["approve", &s.id])
        .env("CHANT_ACTOR", "agent-7")
        .output()
        .expect("run");
    Run(out)
        .assert_code(1)
        .stderr_has("approvals must come from a person");
}

#[test]
fn policy_changed_in_the_same_push_is_ignored() {
    let s = setup();
    s.repo.write_config("agent:\n  sandbox: none\n");
    s.repo.git(&["add", "-A"]);
    s.repo.git(&["commit", "--quiet", "-m", "drop protection"]);
    let run = s.push(&[("CHANT_PUSHER", "agent-bot")], &["main"]);
    assert!(
        run.stderr().contains("agent-bot is an agent"),
        "{}",
        run.stderr()
    );
}

#[test]
fn the_ledger_cannot_be_rewound_deleted_or_forged() {
    let s = setup();
    s.push(&[], &["refs/chant/audit"]).assert_ok();
    // Rewind: force-push an older ledger.
    let old = s.repo.git(&["rev-parse", "refs/chant/audit~2"]);
    let run = s.push(
        &[],
        &["--force", &format!("{}:refs/chant/audit", old.trim())],
    );
    assert!(
        run.stderr().contains("may only be fast-forwarded"),
        "{}",
        run.stderr()
    );
    // Delete.
    let run = s.push(&[], &[":refs/chant/audit"]);
    assert!(
        run.stderr().contains("may not be deleted"),
        "{}",
        run.stderr()
    );
    // Forge: an entry whose hash does not match its content, on top of the server's ledger
    // (which now holds the push_rejected entries of the two refusals above).
    s.repo.chant(&["audit", "sync"]).assert_ok();
    let tip = s.repo.git(&["rev-parse", "refs/chant/audit"]);
    let body = s
        .repo
        .git(&["log", "-1", "--format=%b", "refs/chant/audit"]);
    let mut entry: serde_json::Value = serde_json::from_str(body.trim()).expect("json");
    entry["prev_hash"] = entry["hash"].clone();
    entry["event"] = "spec_approved".into();
    let message = format!("spec_approved x by mallory\n\n{entry}\n");
    let tree = s.repo.git(&["rev-parse", "refs/chant/audit^{tree}"]);
    let forged = s
        .repo
        .git(&["commit-tree", tree.trim(), "-p", tip.trim(), "-m", &message]);
    let run = s.push(&[], &[&format!("{}:refs/chant/audit", forged.trim())]);
    assert!(run.stderr().contains("hash mismatch"), "{}", run.stderr());
    // An honest append goes through (after taking in the server's push_rejected entries).
    s.repo.chant(&["approve", &s.id]).assert_ok();
    s.repo.chant(&["audit", "sync"]).assert_ok();
    s.push(&[], &["refs/chant/audit"]).assert_ok();
    assert_eq!(s.server_events("spec_approved").len(), 1);
}

#[test]
fn a_foreign_hook_is_kept_and_chained() {
    let repo = TestRepo::initialised();
    let hooks = repo.path(".git/hooks");
    std::fs::create_dir_all(&hooks).expect("hooks dir");
    let marker = repo.tmp.path().join("foreign-ran");
    std::fs::write(
        hooks.join("pre-commit"),
        format!("#!/bin/sh\ntouch {}\n", marker.display()),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        hooks.join("pre-commit"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    repo.chant(&["hooks", "install"])
        .assert_ok()
        .stdout_has("runs after it as .local");
    assert!(hooks.join("pre-commit.local").is_file());
    repo.chant(&["hooks", "status"])
        .assert_ok()
        .stdout_has("chains to .local");
    repo.write("a.txt", "a\n");
    repo.git(&["add", "a.txt"]);
    repo.git(&["commit", "--quiet", "-m", "a"]);
    assert!(marker.exists(), "the chained foreign hook ran");
}

#[test]
fn pre_commit_refuses_secrets_and_agent_commits_on_main() {
    let repo = TestRepo::initialised();
    repo.chant(&["hooks", "install"]).assert_ok();
    repo.write("config.py", "x = 1\nAWS_KEY = \"AKIAIOSFODNN7EXAMPLE\"\n");
    repo.git(&["add", "config.py"]);
    let run = repo.git_in(&repo.root, &[], &["commit", "-m", "leak"]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr()
            .contains("config.py:2: staged content looks like an AWS access key id"),
        "{}",
        run.stderr()
    );
    assert!(
        !run.stderr().contains("AKIAIOSFODNN7EXAMPLE"),
        "the value is never printed"
    );
    repo.write("config.py", "x = 1\n");
    repo.git(&["add", "config.py"]);
    let run = repo.git_in(
        &repo.root,
        &[("CHANT_SPEC_ID", "2026-01-22-001-x7m")],
        &["commit", "-m", "as agent"],
    );
    assert!(
        run.stderr()
            .contains("agents may not commit to protected branch 'main'"),
        "{}",
        run.stderr()
    );
    repo.git(&["commit", "--quiet", "-m", "as a person"]);
}

#[test]
fn pre_push_refuses_unapproved_spec_commits_and_ledger_rewinds() {
    let s = setup();
    s.repo.chant(&["hooks", "install"]).assert_ok();
    s.merge_spec();
    let run = s
        .repo
        .git_in(&s.repo.root, &[], &["push", "origin", "main"]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr()
            .contains(&format!("main: spec {} has no recorded approval", s.id)),
        "{}",
        run.stderr()
    );
    s.repo
        .git_in(&s.repo.root, &[], &["push", "origin", "refs/chant/audit"])
        .assert_ok();
    let old = s.repo.git(&["rev-parse", "refs/chant/audit~1"]);
    let run = s.repo.git_in(
        &s.repo.root,
        &[],
        &[
            "push",
            "--force",
            "origin",
            &format!("{}:refs/chant/audit", old.trim()),
        ],
    );
    assert!(
        run.stderr()
            .contains("non-fast-forward push of refs/chant/audit"),
        "{}",
        run.stderr()
    );
}

#[test]
fn the_server_requires_signed_ledger_entries_when_configured() {
    let repo = TestRepo::initialised(); // its genesis entry is unsigned: no key yet
    repo.write_config("protection:\n  require_signed_audit: true\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "require signed audit"]);
    let server = hooked_server(&repo);
    repo.git(&["push", "--quiet", "--no-verify", "origin", "main"]);
    let (key, public) = common::ssh_keygen(&repo, "signer", "ed25519");
    let allowed = repo.tmp.path().join("server_allowed_signers");
    std::fs::write(&allowed, format!("tester@example.com {public}\n")).expect("allowed signers");
    let server_dir = server.to_str().expect("utf8");
    repo.git(&[
        "--git-dir",
        server_dir,
        "config",
        "gpg.ssh.allowedSignersFile",
        allowed.to_str().expect("utf8"),
    ]);

    let run = repo.git_in(
        &repo.root,
        &[],
        &["push", "--no-verify", "origin", "refs/chant/audit"],
    );
    assert_ne!(run.code(), 0, "an unsigned ledger is refused");
    assert!(
        run.stderr().contains("chant: refs/chant/audit:"),
        "{}",
        run.stderr()
    );

    // With a signing key, sync re-chains (and signs) the unpublished entries on top of the
    // server's ledger and pushes them: accepted.
    common::use_ssh_signing(&repo, &key, &format!("tester@example.com {public}\n"));
    repo.chant(&["audit", "sync"]).assert_ok();
    let server_tip = repo.git(&["--git-dir", server_dir, "rev-parse", "refs/chant/audit"]);
    assert_eq!(
        server_tip.trim(),
        repo.git(&["rev-parse", "refs/chant/audit"]).trim()
    );
}
