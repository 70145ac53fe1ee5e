//! Timeout and Ctrl-C always win: agents whose processes leave their group or session, hold
//! chant's pipes open, ignore SIGTERM or act late (fixtures/agents/leave-group.sh,
//! ignore-term.sh, late-writer.sh) never stall `work`, never outlive it, never land.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Run, TestRepo};

/// Longer than any run here may take; a run still going then is a stall (the test fails).
const STALL: Duration = Duration::from_secs(40);

/// A repository whose agent is `script` with `args` (the probe path first), under `extra`
/// YAML lines below `agent:`; returns it, the spec id and the probe path.
fn setup(script: &str, args: &[&str], extra: &str) -> (TestRepo, String, PathBuf) {
    let repo = TestRepo::initialised();
    let probe = repo.tmp.path().join("probe.pids");
    let mut argv = vec![
        common::crate_path(&format!("fixtures/agents/{script}"))
            .display()
            .to_string(),
        probe.display().to_string(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let quoted: Vec<String> = argv.iter().map(|a| format!("\"{a}\"")).collect();
    repo.write_config(&format!(
        "agent:\n  command: [{}]\n{extra}",
        quoted.join(", ")
    ));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "chant config"]);
    let id = repo.add_spec("Greet the user", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    (repo, id, probe)
}

/// Starts `git chant work <id>` with its output captured.
fn start(repo: &TestRepo, id: &str) -> Child {
    repo.chant_cmd(&["work", id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn work")
}

/// Waits for `child` to end within [`STALL`], reading its output; panics on a stall.
fn finish(mut child: Child) -> (Run, Duration) {
    let started = Instant::now();
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > STALL {
            let _ = child.kill();
            panic!("git chant work stalled for {STALL:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::process::Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    };
    (Run(output), started.elapsed())
}

/// Sends SIGINT (a terminal's Ctrl-C) to `child` once the run has started its agent and the
/// agent has written its probe.
fn ctrl_c_when_started(repo: &TestRepo, child: &Child, probe: &Path) {
    common::wait_for("the agent started", || {
        !repo.events("spec_started").is_empty() && probe.exists()
    });
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) on the pid of our own child, which has not been waited for yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

/// The pids the agent's processes wrote to the probe.
fn pids(probe: &Path) -> Vec<String> {
    std::fs::read_to_string(probe)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Asserts that none of the probe's processes is still alive.
#[track_caller]
fn all_gone(probe: &Path) {
    let pids = pids(probe);
    assert!(!pids.is_empty(), "the agent wrote no pids to {probe:?}");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "pid {pid} outlived the run: {stat}"
        );
    }
}

#[track_caller]
fn never_landed(repo: &TestRepo, id: &str) {
    assert!(
        repo.events("spec_completed").is_empty(),
        "nothing completes"
    );
    assert!(
        repo.rev(&format!("chant/{id}:hello.txt")).is_none(),
        "nothing lands on chant/{id}"
    );
    assert_eq!(repo.events("lock_released").len(), 1);
    assert!(!repo.exists(&format!(".chant/.locks/{id}.lock")));
}

const ESCAPES: [&str; 4] = ["setsid", "setsid-fork", "double-fork", "daemon"];

#[test]
fn an_agent_that_exits_leaving_an_escaped_process_on_its_pipes_does_not_stall_work() {
    for how in ESCAPES {
        let (repo, id, probe) = setup("leave-group.sh", &[how], "  sandbox: none\n");
        let (run, took) = finish(start(&repo, &id));
        let run = run.assert_ok().stdout_has(&format!("escaped: {how}"));
        assert!(took < Duration::from_secs(20), "{how}: took {took:?}");
        all_gone(&probe);
        assert_eq!(repo.events("spec_completed").len(), 1, "{how}");
        drop(run);
    }
}

#[test]
fn the_timeout_wins_over_processes_that_left_the_group_and_hold_the_pipes() {
    for how in ESCAPES {
        let (repo, id, probe) = setup(
            "leave-group.sh",
            &[how, "hang"],
            "  sandbox: none\n  timeout: 1s\n",
        );
        let (run, took) = finish(start(&repo, &id));
        run.assert_code(1).stderr_has("agent.timeout");
        assert!(took < Duration::from_secs(20), "{how}: took {took:?}");
        all_gone(&probe);
        never_landed(&repo, &id);
        let failed = repo.events("spec_failed");
        assert!(
            failed[0]["details"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("agent.timeout")),
            "{how}: {failed:?}"
        );
    }
}

#[test]
fn ctrl_c_wins_over_processes_that_left_the_group_and_hold_the_pipes() {
    for how in ESCAPES {
        let (repo, id, probe) = setup("leave-group.sh", &[how, "hang"], "  sandbox: none\n");
        let child = start(&repo, &id);
        ctrl_c_when_started(&repo, &child, &probe);
        let (run, took) = finish(child);
        run.assert_code(1);
        assert!(took < Duration::from_secs(20), "{how}: took {took:?}");
        all_gone(&probe);
        never_landed(&repo, &id);
        assert_eq!(
            repo.events("spec_failed")[0]["details"]["reason"],
            "interrupted"
        );
    }
}

#[test]
fn processes_that_ignore_sigterm_are_killed_at_the_timeout_and_on_ctrl_c() {
    let (repo, id, probe) = setup("ignore-term.sh", &[], "  sandbox: none\n  timeout: 1s\n");
    let (run, took) = finish(start(&repo, &id));
    run.assert_code(1).stderr_has("agent.timeout");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    all_gone(&probe);
    never_landed(&repo, &id);

    let (repo, id, probe) = setup("ignore-term.sh", &[], "  sandbox: none\n");
    let child = start(&repo, &id);
    ctrl_c_when_started(&repo, &child, &probe);
    let (run, _) = finish(child);
    run.assert_code(1);
    all_gone(&probe);
    never_landed(&repo, &id);
}

#[test]
fn a_late_grandchild_never_writes_after_work_returned() {
    // The grandchild writes 4 s after it starts: after the 1 s timeout and the 2 s grace,
    // so only a sweep that found it stops the write.
    let (repo, id, probe) = setup("late-writer.sh", &["4"], "  sandbox: none\n  timeout: 1s\n");
    let (run, _) = finish(start(&repo, &id));
    run.assert_code(1);
    let late = PathBuf::from(format!("{}.late", probe.display()));
    std::thread::sleep(Duration::from_secs(5));
    assert!(!late.exists(), "the grandchild wrote after work returned");
    all_gone(&probe);
    never_landed(&repo, &id);

    // The same under Ctrl-C.
    let (repo, id, probe) = setup("late-writer.sh", &["4"], "  sandbox: none\n");
    let child = start(&repo, &id);
    ctrl_c_when_started(&repo, &child, &probe);
    let (run, _) = finish(child);
    run.assert_code(1);
    std::thread::sleep(Duration::from_secs(5));
    let late = PathBuf::from(format!("{}.late", probe.display()));
    assert!(!late.exists(), "the grandchild wrote after work returned");
    all_gone(&probe);
    never_landed(&repo, &id);
}

#[test]
fn the_permissions_level_kills_escaped_processes_too() {
    let (repo, id, probe) = setup(
        "leave-group.sh",
        &["daemon", "hang"],
        "  sandbox: permissions\n  timeout: 1s\n",
    );
    let (run, took) = finish(start(&repo, &id));
    run.assert_code(1).stderr_has("agent.timeout");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    all_gone(&probe);
    never_landed(&repo, &id);
}

#[test]
fn a_validation_command_that_escapes_its_group_is_stopped_and_nothing_lands() {
    // greet.sh succeeds; the validation command then hangs with a setsid child on its pipes.
    let validate = |probe: &Path| {
        format!(
            "work:\n  validate: [\"echo $$ >> {p}; setsid sh -c 'echo $$ >> {p}; exec sleep 300' & exec sleep 300\"]\n",
            p = probe.display()
        )
    };
    // At the timeout.
    let repo = TestRepo::initialised();
    let probe = repo.tmp.path().join("validate.pids");
    repo.use_agent(
        "greet.sh",
        "  sandbox: none\n  timeout: 1s\n",
        &validate(&probe),
    );
    let id = repo.add_spec("Greet the user", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    let (run, took) = finish(start(&repo, &id));
    run.assert_code(1).stderr_has("ran past agent.timeout");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    all_gone(&probe);
    never_landed(&repo, &id);

    // On Ctrl-C.
    let repo = TestRepo::initialised();
    let probe = repo.tmp.path().join("validate.pids");
    repo.use_agent("greet.sh", "  sandbox: none\n", &validate(&probe));
    let id = repo.add_spec("Greet the user", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    let child = start(&repo, &id);
    ctrl_c_when_started(&repo, &child, &probe);
    let (run, took) = finish(child);
    run.assert_code(1);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    all_gone(&probe);
    never_landed(&repo, &id);
    assert_eq!(
        repo.events("spec_failed")[0]["details"]["reason"],
        "interrupted"
    );
}
