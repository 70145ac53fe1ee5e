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
    setup_with("protection:\n  agents: [\"agent-*\"]\n")
}

/// [`setup`] with `protection` as the top-level YAML after `agent:`.
fn setup_with(protection: &str) -> Setup {
    let repo = TestRepo::initialised();
    repo.use_agent("greet.sh", "  sandbox: none\n", protection);
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
    // Forge: an entry chained and hashed correctly, whose commit subject and author say a
    // reviewer approved (git log shows an approval, the JSON a command).
    s.repo.chant(&["audit", "sync"]).assert_ok();
    s.repo
        .chant(&[
            "audit",
            "record",
            "command_run",
            "--details",
            r#"{"command":"ls"}"#,
        ])
        .assert_ok();
    let raw = s.repo.git(&["cat-file", "commit", "refs/chant/audit"]);
    let forged_text = raw
        .replacen(
            "\ncommand_run - by tester",
            &format!("\nspec_approved {} by alice", s.id),
            1,
        )
        .replace("tester <tester@example.com>", "alice <alice@example.com>");
    let path = s.repo.tmp.path().join("forged");
    std::fs::write(&path, forged_text).expect("write");
    let forged = s.repo.git(&[
        "hash-object",
        "-t",
        "commit",
        "-w",
        "--literally",
        path.to_str().expect("utf8"),
    ]);
    let run = s.push(&[], &[&format!("{}:refs/chant/audit", forged.trim())]);
    assert!(
        run.stderr().contains("disagrees with the entry"),
        "{}",
        run.stderr()
    );
    s.repo.chant(&["audit", "sync"]).assert_ok();
    // Forge: a well-formed entry that is not chained onto the server's head.
    let mut entry: serde_json::Value = serde_json::from_str(
        s.repo
            .git(&["log", "-1", "--format=%b", "refs/chant/audit"])
            .trim(),
    )
    .expect("json");
    let parent = s.repo.git(&["rev-parse", "refs/chant/audit"]);
    entry["prev_hash"] = "0".repeat(64).into();
    let mut map = entry.as_object().expect("object").clone();
    map.remove("hash");
    let hash = git_chant::audit::entry_hash(&map);
    map.insert("hash".into(), hash.into());
    let message = format!(
        "command_run - by tester\n\n{}",
        serde_json::to_string(&map).expect("json")
    );
    let author = common::author_of(&message, "tester@example.com").expect("author");
    let git = s.repo.open();
    let empty = git
        .find_tree(git.treebuilder(None).expect("tb").write().expect("tree"))
        .expect("tree");
    let parent = git
        .find_commit(git2::Oid::from_str(parent.trim()).expect("oid"))
        .expect("commit");
    let unlinked = git
        .commit(None, &author, &author, &message, &empty, &[&parent])
        .expect("commit");
    let run = s.push(&[], &[&format!("{unlinked}:refs/chant/audit")]);
    assert!(
        run.stderr().contains("not chained onto this ledger"),
        "{}",
        run.stderr()
    );
    s.repo
        .git(&["update-ref", "refs/chant/audit", &parent.id().to_string()]);
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

/// A client repository whose policy requires a signed ledger, its genesis entry unsigned
/// (no key yet), and a hooked server that has `allowed` as its allowed-signers file.
fn signed_audit_server(allowed: &str) -> (TestRepo, PathBuf) {
    let repo = TestRepo::initialised();
    repo.write_config("protection:\n  require_signed_audit: true\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "require signed audit"]);
    let server = hooked_server(&repo);
    repo.git(&["push", "--quiet", "--no-verify", "origin", "main"]);
    let path = repo.tmp.path().join("server_allowed_signers");
    std::fs::write(&path, allowed).expect("allowed signers");
    server_git(
        &server,
        &[
            "config",
            "gpg.ssh.allowedSignersFile",
            path.to_str().expect("utf8"),
        ],
    );
    (repo, server)
}

fn server_git(server: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(server)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_server_signs_its_own_rejections_so_synced_clones_verify_with_signatures() {
    let probe = TestRepo::new();
    let (key, public) = common::ssh_keygen(&probe, "signer", "ed25519");
    let (server_key, server_public) = common::ssh_keygen(&probe, "server", "ed25519");
    let allowed =
        format!("tester@example.com {public}\nchant-server@example.com {server_public}\n");
    let (repo, server) = signed_audit_server(&allowed);
    server_git(&server, &["config", "gpg.format", "ssh"]);
    server_git(
        &server,
        &[
            "config",
            "user.signingkey",
            server_key.to_str().expect("utf8"),
        ],
    );
    server_git(
        &server,
        &["config", "user.email", "chant-server@example.com"],
    );

    let run = repo.git_in(
        &repo.root,
        &[("CHANT_PUSHER", "alice")],
        &["push", "--no-verify", "origin", "refs/chant/audit"],
    );
    assert_ne!(run.code(), 0, "an unsigned ledger is refused");
    assert!(
        run.stderr().contains("chant: refs/chant/audit:"),
        "{}",
        run.stderr()
    );
    assert!(
        !run.stderr().contains("could not record"),
        "{}",
        run.stderr()
    );

    // The rejection is recorded, signed by the server's key; its actor is the pusher, its
    // committer the server.
    let entry = server_git(
        &server,
        &[
            "log",
            "-1",
            "--format=%an|%ae|%ce|%G?|%s",
            "refs/chant/audit",
        ],
    );
    assert_eq!(
        entry.trim(),
        "alice|chant-server@example.com|chant-server@example.com|G|push_rejected - by alice",
        "G: a good signature by a key the server's allowed-signers file lists"
    );

    // The client signs from now on; sync re-chains its entries on the server's ledger.
    common::use_ssh_signing(&repo, &key, &allowed);
    repo.chant(&["audit", "sync"]).assert_ok();
    assert_eq!(
        server_git(&server, &["rev-parse", "refs/chant/audit"]).trim(),
        repo.git(&["rev-parse", "refs/chant/audit"]).trim()
    );
    repo.chant(&["audit", "verify", "--require-signatures"])
        .assert_ok();
    let first = common::ledger_commits(&repo).remove(0);
    repo.git(&["verify-commit", &first]);
}

#[test]
fn without_a_server_key_a_rejection_under_signed_audit_is_refused_but_never_recorded_unsigned() {
    let (repo, server) = signed_audit_server("");
    let run = repo.git_in(
        &repo.root,
        &[("CHANT_PUSHER", "alice")],
        &["push", "--no-verify", "origin", "refs/chant/audit"],
    );
    assert_ne!(run.code(), 0, "an unsigned ledger is refused");
    assert!(
        run.stderr().contains("could not record the rejection")
            && run.stderr().contains("git config user.signingkey KEY"),
        "{}",
        run.stderr()
    );
    let out = std::process::Command::new("git")
        .args([
            "--git-dir",
            server.to_str().expect("utf8"),
            "rev-parse",
            "--verify",
            "--quiet",
            "refs/chant/audit",
        ])
        .output()
        .expect("git");
    assert!(!out.status.success(), "an unsigned entry was recorded");
}

// ---- approval bypass: commits on some branch are not approved commits ----

const PROTECT_RELEASES: &str =
    "protection:\n  agents: [\"agent-*\"]\n  branches: [main, \"release/*\"]\n";

/// Every way a person might move a protected branch onto the agent's commits after the
/// server has seen those commits on an unprotected branch: each is refused until a
/// reviewer approves; then each is accepted.
#[test]
fn spec_commits_the_server_already_has_on_other_branches_still_need_an_approval() {
    let s = setup_with(PROTECT_RELEASES);
    let alice = [("CHANT_PUSHER", "alice")];
    let spec = format!("chant/{}", s.id);
    // The spec branch, and a copy of it under an unrelated name, reach the server first.
    s.push(&alice, &[&spec]).assert_ok();
    s.push(&alice, &[&format!("{spec}:refs/heads/feature/copy")])
        .assert_ok();
    // A real merge commit on top of main, made on a side branch.
    s.repo.git(&["checkout", "--quiet", "-b", "merged", "main"]);
    s.repo
        .git(&["merge", "--quiet", "--no-ff", "-m", "merge copy", &spec]);
    s.repo.git(&["checkout", "--quiet", "main"]);
    let unapproved = format!("spec {} has no recorded approval", s.id);
    let attempts: &[&[&str]] = &[
        // main fast-forwarded straight to the spec branch's tip
        &[&format!("{spec}:refs/heads/main")],
        // main fast-forwarded to the copy pushed under another name
        &["refs/remotes/origin/feature/copy:refs/heads/main"],
        // a merge commit of the spec branch
        &["merged:refs/heads/main"],
        // a new protected branch created on the agent's commits
        &[&format!("{spec}:refs/heads/release/1")],
        // spec branch and main in one atomic push
        &[
            "--atomic",
            &format!("{spec}:refs/heads/chant/again"),
            &format!("{spec}:refs/heads/main"),
        ],
    ];
    for args in attempts {
        let run = s.push(&alice, args);
        assert_ne!(run.code(), 0, "{args:?} was accepted");
        assert!(
            run.stderr().contains(&unapproved),
            "{args:?}: {}",
            run.stderr()
        );
    }
    assert_eq!(s.server_events("push_rejected").len(), attempts.len());
    // A reviewer approves; once the approval is on the server, the same moves go through.
    s.repo
        .chant(&["approve", &s.id, "--comment", "reviewed"])
        .assert_ok();
    s.repo.chant(&["audit", "sync"]).assert_ok();
    s.push(&alice, &[&format!("{spec}:refs/heads/release/1")])
        .assert_ok();
    s.push(&alice, &["merged:refs/heads/main"]).assert_ok();
}

#[test]
fn pre_push_judges_what_the_remote_branch_lacks_not_what_other_remote_branches_hold() {
    let s = setup_with(PROTECT_RELEASES);
    s.repo.chant(&["hooks", "install"]).assert_ok();
    // A remote without the server hook: only the client hook can refuse here.
    let plain = s.repo.tmp.path().join("plain.git");
    let dir = plain.to_str().expect("utf8");
    s.repo
        .git(&["init", "--quiet", "--bare", "--initial-branch=main", dir]);
    s.repo
        .git(&["remote", "add", "plain", &format!("file://{dir}")]);
    let push = |args: &[&str]| {
        let mut all = vec!["push", "plain"];
        all.extend_from_slice(args);
        s.repo.git_in(&s.repo.root, &[], &all)
    };
    push(&["main"]).assert_ok();
    let spec = format!("chant/{}", s.id);
    push(&[&spec]).assert_ok();
    push(&[&format!("{spec}:refs/heads/feature/copy")]).assert_ok();
    let unapproved = format!("spec {} has no recorded approval", s.id);
    for target in [
        format!("{spec}:refs/heads/main"),
        "plain/feature/copy:refs/heads/main".to_string(),
        format!("{spec}:refs/heads/release/1"),
    ] {
        let run = push(&[&target]);
        assert_ne!(run.code(), 0, "{target} was accepted");
        assert!(
            run.stderr().contains(&unapproved),
            "{target}: {}",
            run.stderr()
        );
    }
    s.repo.chant(&["approve", &s.id]).assert_ok();
    push(&[&format!("{spec}:refs/heads/main")]).assert_ok();
}

// ---- fail-open rules: a policy that does not load refuses, it never waves through ----

/// A server whose policy branch already holds `yaml` (pushed before the hook existed).
fn server_with_policy(yaml: &str) -> (TestRepo, PathBuf) {
    let repo = TestRepo::initialised();
    repo.write_config(yaml);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "--no-verify", "-m", "policy"]);
    let server = repo.tmp.path().join("server.git");
    let dir = server.to_str().expect("utf8");
    repo.git(&["init", "--quiet", "--bare", "--initial-branch=main", dir]);
    repo.git(&["remote", "add", "origin", &format!("file://{dir}")]);
    repo.git(&["push", "--quiet", "--no-verify", "origin", "main"]);
    repo.chant_cmd(&["hooks", "install", "--server", "--dir", dir])
        .output()
        .expect("install");
    (repo, server)
}

#[test]
fn an_invalid_pattern_in_the_server_policy_refuses_every_push_naming_key_and_pattern() {
    for (yaml, want) in [
        (
            "protection:\n  agents: [\"agent-*\", \"bot-[\"]\n",
            "protection.agents: 'bot-['",
        ),
        (
            "protection:\n  agents: [\" agent-*\"]\n",
            "protection.agents: ' agent-*'",
        ),
        (
            "protection:\n  branches: [\"{main\"]\n",
            "protection.branches: '{main'",
        ),
        (
            "agent:\n  secrets:\n    hide: [\"AWS_[\"]\n",
            "agent.secrets.hide: 'AWS_['",
        ),
    ] {
        let (repo, _server) = server_with_policy(yaml);
        repo.write("x.txt", "x\n");
        repo.git(&["add", "x.txt"]);
        repo.git(&["commit", "--quiet", "--no-verify", "-m", "x"]);
        for pusher in ["agent-bot", "alice"] {
            for target in ["main", "HEAD:refs/heads/feature"] {
                let run = repo.git_in(
                    &repo.root,
                    &[("CHANT_PUSHER", pusher)],
                    &["push", "--no-verify", "origin", target],
                );
                assert_ne!(
                    run.code(),
                    0,
                    "{yaml}: {pusher} pushing {target} was accepted"
                );
                assert!(
                    run.stderr().contains(want) && run.stderr().contains(".chant/config.md"),
                    "{yaml}: {}",
                    run.stderr()
                );
            }
        }
    }
}

#[test]
fn a_push_that_would_break_or_remove_the_server_policy_is_refused() {
    let (repo, _server) = server_with_policy("protection:\n  agents: [\"agent-*\"]\n");
    let alice = [("CHANT_PUSHER", "alice")];
    for (yaml, want) in [
        (
            "protection:\n  agents: [\"agent-[\"]\n",
            "protection.agents: 'agent-['",
        ),
        (
            "protection:\n  agentz: [\"agent-*\"]\n",
            "protection.agentz: unknown key",
        ),
        ("protection:\n  agents: [unclosed\n", "YAML error"),
    ] {
        repo.write_config(yaml);
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "--quiet", "--no-verify", "-m", "break the policy"]);
        let run = repo.git_in(
            &repo.root,
            &alice,
            &["push", "--no-verify", "origin", "main"],
        );
        assert_ne!(run.code(), 0, "{yaml} was accepted");
        assert!(run.stderr().contains("does not load"), "{}", run.stderr());
        assert!(run.stderr().contains(want), "{}", run.stderr());
        repo.git(&["reset", "--quiet", "--hard", "HEAD~1"]);
    }
    // Without its policy branch the server would protect nothing.
    let run = repo.git_in(
        &repo.root,
        &alice,
        &["push", "--no-verify", "origin", ":main"],
    );
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr().contains("may not be deleted"),
        "{}",
        run.stderr()
    );
    // Agents are still agents afterwards.
    let run = repo.git_in(
        &repo.root,
        &[("CHANT_PUSHER", "agent-x")],
        &["push", "--no-verify", "origin", "HEAD:refs/heads/feature"],
    );
    assert!(
        run.stderr().contains("agent-x is an agent"),
        "{}",
        run.stderr()
    );
}

#[test]
fn client_hooks_refuse_with_an_invalid_pattern_in_the_work_tree_policy() {
    let repo = TestRepo::initialised();
    repo.chant(&["hooks", "install"]).assert_ok();
    repo.write_config("protection:\n  agents: [\"agent-*\", \"ci-{bot\"]\n");
    repo.git(&["add", "-A"]);
    let run = repo.git_in(&repo.root, &[], &["commit", "-m", "bad policy"]);
    assert_ne!(run.code(), 0, "the commit went through");
    assert!(
        run.stderr().contains("protection.agents: 'ci-{bot'"),
        "{}",
        run.stderr()
    );
    repo.git(&["commit", "--quiet", "--no-verify", "-m", "bad policy"]);
    let plain = repo.tmp.path().join("plain.git");
    let dir = plain.to_str().expect("utf8");
    repo.git(&["init", "--quiet", "--bare", "--initial-branch=main", dir]);
    repo.git(&["remote", "add", "plain", &format!("file://{dir}")]);
    let run = repo.git_in(&repo.root, &[], &["push", "plain", "main"]);
    assert_ne!(run.code(), 0, "the push went through");
    assert!(
        run.stderr().contains("protection.agents: 'ci-{bot'"),
        "{}",
        run.stderr()
    );
}
