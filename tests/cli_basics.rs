//! init, add, list, show over real temporary repositories.

mod common;

use common::TestRepo;

#[test]
fn init_add_list_show() {
    let repo = TestRepo::new();
    repo.chant(&["init"])
        .assert_ok()
        .stdout_has("created .chant/config.md");
    assert!(repo.exists(".chant/specs"));
    assert!(repo.read(".chant/.gitignore").contains("/.locks/"));
    let id = repo.chant(&["add", "Fix the login"]).assert_ok().stdout();
    let id = id.trim();
    assert_eq!(id.len(), 18, "id alone on stdout: {id:?}");
    let list = repo.chant(&["list"]).assert_ok().stdout();
    assert!(
        list.contains(id) && list.contains("Fix the login") && list.contains("pending"),
        "{list}"
    );
    let short = &id[15..];
    repo.chant(&["show", short])
        .assert_ok()
        .stdout_has("# Fix the login")
        .stdout_has("## Acceptance Criteria");
}

#[test]
fn init_twice_changes_nothing() {
    let repo = TestRepo::initialised();
    let before = repo.read(".chant/config.md");
    repo.chant(&["init"])
        .assert_ok()
        .stdout_has("nothing changed");
    assert_eq!(before, repo.read(".chant/config.md"));
}

#[test]
fn init_outside_a_repository_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = TestRepo::new();
    let mut cmd = repo.chant_cmd(&["init"]);
    cmd.current_dir(dir.path()).env(
        "GIT_CEILING_DIRECTORIES",
        dir.path().parent().expect("parent"),
    );
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a git repository"));
}

// ---- a closed stdout (`git chant audit | head`) ----

/// Runs `git chant <args>` with stdout (and, with `close_stderr`, stderr) a pipe whose
/// reading end is already closed: every write to it fails with EPIPE.
fn with_closed_pipe(repo: &TestRepo, args: &[&str], close_stderr: bool) -> common::Run {
    use std::os::fd::{FromRawFd, OwnedFd};
    let closed = || {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills the two-element array we pass.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        // SAFETY: both fds were just created by pipe(2) and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read);
        std::process::Stdio::from(write)
    };
    let mut cmd = repo.chant_cmd(args);
    cmd.stdout(closed());
    if close_stderr {
        cmd.stderr(closed());
    } else {
        cmd.stderr(std::process::Stdio::piped());
    }
    let child = cmd.spawn().expect("spawn");
    common::Run(child.wait_with_output().expect("wait"))
}

fn repo_with_history() -> (TestRepo, String) {
    let repo = TestRepo::initialised();
    let mut id = String::new();
    for n in 0..30 {
        id = repo.add_spec(&format!("Spec number {n}"), &[]);
    }
    (repo, id)
}

#[test]
fn every_reading_command_exits_quietly_when_its_reader_went_away() {
    let (repo, id) = repo_with_history();
    let commands: Vec<Vec<&str>> = vec![
        vec!["list"],
        vec!["list", "--format", "json"],
        vec!["audit"],
        vec!["audit", "--format", "csv"],
        vec!["audit", "--format", "json"],
        vec!["audit", "--format", "jsonl"],
        vec!["audit", "verify"],
        vec!["show", &id],
        vec!["config", "get", "agent"],
        vec!["--help"],
        vec!["audit", "--help"],
        vec!["--version"],
        vec!["completions", "bash"],
        vec!["man"],
    ];
    for args in commands {
        let run = with_closed_pipe(&repo, &args, false);
        assert_eq!(
            run.code(),
            0,
            "git chant {args:?} on a closed pipe: {}",
            run.stderr()
        );
        assert_eq!(run.stderr(), "", "git chant {args:?} said something");
    }
}

#[test]
fn a_command_that_records_finishes_its_work_when_stdout_is_closed() {
    let repo = TestRepo::initialised();
    let before = repo.ledger().len();
    // stdout alone, then stdout and stderr both closed.
    for close_stderr in [false, true] {
        let run = with_closed_pipe(&repo, &["add", "Written while nobody reads"], close_stderr);
        assert_eq!(run.code(), 0, "{}", run.stderr());
        let run = with_closed_pipe(
            &repo,
            &[
                "audit",
                "record",
                "command_run",
                "--details",
                "{\"command\":\"make\"}",
            ],
            close_stderr,
        );
        assert_eq!(run.code(), 0, "{}", run.stderr());
    }
    assert_eq!(repo.ledger().len(), before + 4, "every entry was recorded");
    repo.chant(&["audit", "verify"]).assert_ok();
    let specs = std::fs::read_dir(repo.path(".chant/specs"))
        .expect("specs")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
        .count();
    assert_eq!(specs, 2, "both specs were written whole");
}

#[test]
fn work_runs_to_its_end_when_stdout_and_stderr_are_closed() {
    let repo = TestRepo::initialised();
    repo.use_agent("greet.sh", "  sandbox: none\n", "");
    let id = repo.add_spec("Greet the user", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    let run = with_closed_pipe(&repo, &["work", &id], true);
    assert_eq!(run.code(), 0);
    assert_eq!(repo.events("spec_completed").len(), 1);
    assert_eq!(repo.events("lock_released").len(), 1);
    assert!(repo.rev(&format!("chant/{id}:hello.txt")).is_some());
}

#[test]
fn a_real_pipe_into_head_exits_zero() {
    let (repo, _) = repo_with_history();
    for command in [
        "git-chant audit | head -c 0",
        "git-chant audit --format json | head -c 10",
        "git-chant audit --format csv | head -n 1",
        "git-chant list | head -n 1",
    ] {
        let mut cmd = std::process::Command::new("bash");
        repo.env(&mut cmd);
        let out = cmd
            .args(["-c", &format!("set -o pipefail; {command} >/dev/null")])
            .current_dir(&repo.root)
            .output()
            .expect("bash");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
