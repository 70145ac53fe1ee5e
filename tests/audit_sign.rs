//! Signed ledger entries: git's own `verify-commit` accepts them (SSH ed25519 and RSA signed
//! in-process, SSH through the external program, OpenPGP through gpg), and
//! `verify --require-signatures` refuses unsigned and foreign-key entries.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ledger_commits, ssh_keygen, use_ssh_signing, TestRepo};

fn git_verify_commit(repo: &TestRepo, commit: &str, extra_env: &[(&str, &Path)]) -> (bool, String) {
    let mut cmd = Command::new("git");
    repo.env(&mut cmd);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd
        .args(["verify-commit", "--raw", commit])
        .current_dir(&repo.root)
        .output()
        .expect("git verify-commit");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn signed_repo(kind: &str) -> TestRepo {
    let repo = TestRepo::new();
    let (key, public) = ssh_keygen(&repo, "signer", kind);
    use_ssh_signing(&repo, &key, &format!("tester@example.com {public}\n"));
    repo.chant(&["init"]).assert_ok();
    repo
}

#[test]
fn ssh_ed25519_entries_pass_git_verify_commit() {
    let repo = signed_repo("ed25519");
    for i in 0..3 {
        repo.chant(&[
            "audit",
            "record",
            "command_run",
            "--details",
            &format!(r#"{{"n":{i}}}"#),
        ])
        .assert_ok();
    }
    for commit in ledger_commits(&repo) {
        let (ok, err) = git_verify_commit(&repo, &commit, &[]);
        assert!(ok, "git verify-commit {commit}: {err}");
    }
    repo.chant(&["audit", "verify", "--require-signatures"])
        .assert_ok()
        .stdout_has("verified 4 entries")
        .stdout_has("4 signatures checked");
}

#[test]
fn ssh_rsa_entries_pass_git_verify_commit_via_ssh_keygen() {
    let repo = signed_repo("rsa");
    repo.chant(&["audit", "record", "spec_approved"])
        .assert_ok();
    for commit in ledger_commits(&repo) {
        let (ok, err) = git_verify_commit(&repo, &commit, &[]);
        assert!(ok, "git verify-commit {commit}: {err}");
    }
    repo.chant(&["audit", "verify", "--require-signatures"])
        .assert_ok();
}

#[test]
fn external_ssh_program_is_used_for_key_literals() {
    // A `key::` literal means "the agent holds it": git hands it to gpg.ssh.program. A
    // wrapper program that signs with the matching file stands in for ssh-agent.
    let repo = TestRepo::new();
    let (key, public) = ssh_keygen(&repo, "agentkey", "ed25519");
    use_ssh_signing(&repo, &key, &format!("tester@example.com {public}\n"));
    let wrapper = repo.home.join("fake-agent-sign");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# Stands in for ssh-agent: signs with the key file; verifies as usual.\n\
             if [ \"$2\" = sign ]; then exec ssh-keygen -Y sign -n git -f {}; fi\n\
             exec ssh-keygen \"$@\"\n",
            key.display()
        ),
    )
    .expect("wrapper");
    let mut perms = std::fs::metadata(&wrapper).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).expect("chmod");
    repo.git(&["config", "user.signingkey", &format!("key::{public}")]);
    repo.git(&[
        "config",
        "gpg.ssh.program",
        wrapper.to_str().expect("utf-8"),
    ]);
    repo.chant(&["init"]).assert_ok();
    let commits = ledger_commits(&repo);
    let (ok, err) = git_verify_commit(&repo, &commits[0], &[]);
    assert!(ok, "{err}");
}

#[test]
fn unsigned_forged_append_fails_require_signatures() {
    let repo = signed_repo("ed25519");
    repo.chant(&["audit", "record", "spec_approved"])
        .assert_ok();
    // Someone without the key appends a perfectly chained but unsigned entry.
    repo.git(&["config", "--unset", "user.signingkey"]);
    repo.chant(&[
        "audit",
        "record",
        "spec_approved",
        "--details",
        r#"{"forged":1}"#,
    ])
    .assert_ok();
    let forged = ledger_commits(&repo).pop().expect("head");
    repo.chant(&["audit", "verify"]).assert_ok();
    repo.chant(&["audit", "verify", "--require-signatures"])
        .assert_code(1)
        .stderr_has(&format!("broken at commit {forged}"))
        .stderr_has("not signed");
}

#[test]
fn entry_signed_by_a_key_outside_allowed_signers_fails() {
    let repo = signed_repo("ed25519");
    let (other, _) = ssh_keygen(&repo, "intruder", "ed25519");
    repo.git(&["config", "user.signingkey", other.to_str().expect("utf-8")]);
    repo.chant(&["audit", "record", "spec_approved"])
        .assert_ok();
    let bad = ledger_commits(&repo).pop().expect("head");
    repo.chant(&["audit", "verify", "--require-signatures"])
        .assert_code(1)
        .stderr_has(&format!("broken at commit {bad}"))
        .stderr_has("does not allow");
    // An explicit allowed-signers file listing the intruder too accepts it.
    let mut allowed = std::fs::read_to_string(repo.home.join("allowed_signers")).expect("read");
    allowed.push_str(&format!(
        "tester@example.com {}\n",
        std::fs::read_to_string(repo.home.join("intruder.pub"))
            .expect("pub")
            .trim()
    ));
    let file = repo.home.join("allowed2");
    std::fs::write(&file, allowed).expect("write");
    repo.chant(&[
        "audit",
        "verify",
        "--require-signatures",
        "--allowed-signers",
        file.to_str().expect("utf-8"),
    ])
    .assert_ok();
}

#[test]
fn sign_always_without_a_key_is_exit_2_naming_the_git_key() {
    let repo = TestRepo::initialised();
    repo.write_config("audit:\n  sign: always\n");
    repo.chant(&["audit", "record", "spec_approved"])
        .assert_code(2)
        .stderr_has("user.signingkey");
}

#[test]
fn sign_never_writes_unsigned_entries_even_with_a_key() {
    let repo = signed_repo("ed25519");
    repo.write_config("audit:\n  sign: never\n");
    repo.chant(&["audit", "record", "spec_approved"])
        .assert_ok();
    let head = ledger_commits(&repo).pop().expect("head");
    let (ok, _) = git_verify_commit(&repo, &head, &[]);
    assert!(!ok, "sign: never must not sign");
}

#[test]
fn gpg_signed_entries_pass_git_verify_commit() {
    if Command::new("gpg").arg("--version").output().is_err() {
        eprintln!("SKIPPED LOUDLY: gpg is not installed; the OpenPGP signing test did not run");
        return;
    }
    let repo = TestRepo::new();
    // A short GNUPGHOME: gpg-agent's socket path must fit in sun_path.
    let gnupg = tempfile::Builder::new()
        .prefix("g")
        .tempdir_in("/tmp")
        .expect("gnupg home");
    let home = gnupg.path();
    std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let out = Command::new("gpg")
        .env("GNUPGHOME", home)
        .args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Tester <tester@example.com>",
            "ed25519",
            "sign",
            "never",
        ])
        .output()
        .expect("gpg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo.git(&["config", "gpg.format", "openpgp"]);
    repo.git(&["config", "user.signingkey", "tester@example.com"]);
    let out = repo
        .chant_cmd(&["init"])
        .env("GNUPGHOME", home)
        .output()
        .expect("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = repo
        .chant_cmd(&["audit", "record", "spec_approved"])
        .env("GNUPGHOME", home)
        .output()
        .expect("record");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for commit in ledger_commits(&repo) {
        let (ok, err) = git_verify_commit(&repo, &commit, &[("GNUPGHOME", home)]);
        assert!(ok, "git verify-commit {commit}: {err}");
    }
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", home)
        .args(["--kill", "gpg-agent"])
        .output();
}
