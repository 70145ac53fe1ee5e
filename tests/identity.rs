//! Identities from the environment and git config (`CHANT_SESSION`, `CHANT_ACTOR`,
//! `CHANT_ACTOR_EMAIL`, `user.name`, the server hook's pusher) are parsed before anything
//! is written: a hostile value is exit 2 naming where it came from, and touches nothing —
//! no file, no lock, no ledger entry, no branch.

mod common;

use std::path::Path;

use common::TestRepo;

/// Values no identity may hold: path syntax, line breaks, control and invisible
/// characters, look-alikes of `/`, empty, very long.
fn hostile() -> Vec<String> {
    vec![
        "../x".into(),
        "/abs".into(),
        "..".into(),
        "a/../../b".into(),
        "alex\nspec_approved - by boss".into(),
        "x\ry".into(),
        "bell\u{7}".into(),
        "\u{1b}[2Jcleared".into(),
        String::new(),
        "a".repeat(300),
        "a\u{2215}b".into(),
        "a\u{FF0F}b".into(),
        "a\u{2044}b".into(),
        "rtl\u{202E}txt".into(),
    ]
}

/// Everything a command could touch: the ledger head, refs, `.chant/`, `.git/chant/`.
fn state(repo: &TestRepo) -> String {
    let mut out = repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]);
    out.push_str(&repo.git(&[
        "status",
        "--porcelain",
        "--ignored",
        "--untracked-files=all",
    ]));
    let mut walk = vec![repo.root.join(".chant"), repo.root.join(".git/chant")];
    while let Some(dir) = walk.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push_str(&format!("{}\n", path.display()));
            if path.is_dir() {
                walk.push(path);
            }
        }
    }
    out
}

/// Runs `git chant <args>` with `var=value` and asserts exit 2, the variable named on
/// stderr, and no change to the repository.
#[track_caller]
fn refused_untouched(repo: &TestRepo, var: &str, value: &str, args: &[&str], cwd: &Path) {
    let before = state(repo);
    let out = repo
        .chant_cmd(args)
        .current_dir(cwd)
        .env(var, value)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{var}={value:?} git chant {args:?}: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{var}=")),
        "{var}={value:?}: stderr does not name it: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}') && stderr.lines().count() <= 3,
        "{var}={value:?}: the value reached the terminal raw: {stderr:?}"
    );
    assert_eq!(
        before,
        state(repo),
        "{var}={value:?} git chant {args:?} touched the repository"
    );
}

fn worked_repo() -> (TestRepo, String) {
    let repo = TestRepo::initialised();
    repo.use_agent("greet.sh", "  sandbox: none\n", "");
    let id = repo.add_spec("Greet the user", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    (repo, id)
}

#[test]
fn a_hostile_chant_session_is_refused_before_work_creates_anything() {
    let (repo, id) = worked_repo();
    let root = repo.root.clone();
    for value in hostile() {
        refused_untouched(&repo, "CHANT_SESSION", &value, &["work", &id], &root);
    }
    for value in ["x.lock", "-rf", ".hidden", "sess_1.", "é"] {
        refused_untouched(&repo, "CHANT_SESSION", value, &["work", &id], &root);
    }
    // A plain one works, and names the run's files.
    repo.chant_cmd(&["work", &id])
        .env("CHANT_SESSION", "ci-run.42")
        .output()
        .map(common::Run)
        .expect("run")
        .assert_ok();
    assert_eq!(repo.events("spec_started")[0]["session"], "ci-run.42");
}

#[test]
fn a_hostile_actor_is_refused_by_every_command_that_records() {
    let (repo, id) = worked_repo();
    let root = repo.root.clone();
    let commands: Vec<Vec<&str>> = vec![
        vec!["work", &id],
        vec!["add", "Another spec"],
        vec!["config", "set", "agent.timeout", "5m"],
        vec!["audit", "record", "command_run"],
        vec!["cancel", &id, "--reason", "no"],
    ];
    for value in hostile() {
        for args in &commands {
            refused_untouched(&repo, "CHANT_ACTOR", &value, args, &root);
        }
    }
    for value in ["mallory <evil@example.com>", " padded ", "a\u{200B}b"] {
        refused_untouched(&repo, "CHANT_ACTOR", value, &["add", "x"], &root);
    }
}

#[test]
fn a_hostile_actor_email_is_refused() {
    let (repo, _) = worked_repo();
    let root = repo.root.clone();
    for value in [
        "",
        "a\nb@x",
        "a b@x",
        "<a@x>",
        "x@y\u{1b}[2J",
        &"a".repeat(300),
    ] {
        refused_untouched(&repo, "CHANT_ACTOR_EMAIL", value, &["add", "x"], &root);
    }
}

#[test]
fn a_hostile_git_user_name_is_refused_naming_the_key() {
    let (repo, _) = worked_repo();
    let root = repo.root.clone();
    for value in ["../x", "alex\nforged", "a\u{FF0F}b", "evil <e@x>"] {
        repo.git(&["config", "user.name", value]);
        let before = state(&repo);
        let out = repo
            .chant_cmd(&["add", "x"])
            .env_remove("CHANT_ACTOR")
            .current_dir(&root)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value:?}: {stderr}");
        assert!(stderr.contains("user.name="), "{value:?}: {stderr}");
        assert_eq!(before, state(&repo), "{value:?} touched the repository");
    }
}

#[test]
fn init_with_a_hostile_identity_creates_nothing() {
    for value in ["../x", "a\nb", ""] {
        let repo = TestRepo::new();
        let root = repo.root.clone();
        refused_untouched(&repo, "CHANT_ACTOR", value, &["init"], &root);
        assert!(!repo.exists(".chant"), "{value:?}: init created .chant/");
        refused_untouched(&repo, "CHANT_SESSION", value, &["init"], &root);
    }
}

#[test]
fn a_hostile_pusher_is_refused_by_the_server_hook_and_recorded_nowhere() {
    let repo = TestRepo::initialised();
    let server = repo.tmp.path().join("server.git");
    let dir = server.to_str().expect("utf8");
    repo.git(&["init", "--quiet", "--bare", "--initial-branch=main", dir]);
    repo.chant(&["hooks", "install", "--server", "--dir", dir])
        .assert_ok();
    repo.git(&["remote", "add", "origin", &format!("file://{dir}")]);
    let ledger = |server: &Path| {
        std::process::Command::new("git")
            .args(["rev-parse", "--verify", "--quiet", "refs/chant/audit"])
            .current_dir(server)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    for var in ["GL_USER", "REMOTE_USER", "CHANT_PUSHER"] {
        for value in ["../x", "agent\nalice", "", "a\u{2215}b", "bot <x@y>"] {
            let before = ledger(&server);
            let run = repo.git_in(
                &repo.root,
                &[(var, value)],
                &["push", "--no-verify", "origin", "main"],
            );
            assert_ne!(run.code(), 0, "{var}={value:?} was accepted");
            assert!(
                run.stderr().contains(&format!("{var}=")),
                "{var}={value:?}: {}",
                run.stderr()
            );
            assert_eq!(before, ledger(&server), "{var}={value:?} was recorded");
            assert!(
                repo.git_in(&server, &[], &["rev-parse", "--verify", "--quiet", "main"])
                    .code()
                    != 0,
                "{var}={value:?}: main was updated"
            );
        }
    }
    // A plain pusher goes through.
    repo.git_in(
        &repo.root,
        &[("CHANT_PUSHER", "alice")],
        &["push", "--no-verify", "origin", "main"],
    )
    .assert_ok();
}
