//! The command gate through its channel into a container: `$CHANT_EXEC` inside the docker
//! level asks chant on the host, which decides against `agent.commands` and records
//! `command_run`; allowed commands run inside the container, refused ones never run.
//! (The wire format's hostile variants are unit tests in src/gate/.)

mod common;

use std::sync::OnceLock;

use common::image::AGENTS;
use common::TestRepo;

fn image() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    common::image::once(&IMAGE, common::image::busybox_with_git)
}

fn repo_with_agent(image: &str, agent: &str, extra: &str) -> (TestRepo, String) {
    let repo = TestRepo::initialised();
    repo.write_config(&format!(
        "agent:\n  sandbox: docker\n  command: [\"{AGENTS}/{agent}\"]\n  docker:\n    image: {image}\n    memory: 64M\n    cpu: 500m\n{extra}"
    ));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "chant config"]);
    let id = repo.add_spec("Use the gate", &["gate.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    (repo, id)
}

fn lines(repo: &TestRepo, branch: &str, file: &str) -> String {
    repo.git(&["show", &format!("{branch}:{file}")])
}

#[test]
fn in_a_container_the_host_gate_decides_records_and_the_allowed_command_runs_inside() {
    let Some(image) = image() else { return };
    let (repo, id) = repo_with_agent(
        &image,
        "gate-docker.sh",
        "  commands:\n    denied: [\"touch *\"]\n",
    );
    let run = repo.chant(&["work", &id]).assert_ok();
    let branch = format!("chant/{id}");
    let gate = lines(&repo, &branch, "gate.txt");
    let show = format!("{gate}\n{}", run.stderr());
    // Ran in the container (where /chant-gate exists), with its own exit code.
    assert_eq!(lines(&repo, &branch, "ran.txt"), "inside\n", "{show}");
    assert!(gate.contains("allowed=3\n"), "{show}");
    // Refused: never ran, said why, exited non-zero.
    assert!(gate.contains("denied=1\n"), "{show}");
    let landed = repo.git(&["ls-tree", "-r", "--name-only", &branch]);
    assert!(
        !landed.contains("denied-probe"),
        "the refused command ran: {landed}"
    );
    let stderr = lines(&repo, &branch, "gate-stderr.txt");
    assert!(
        stderr.contains("command refused: 'touch denied-probe' (touch *)"),
        "{stderr}"
    );
    assert!(gate.contains("non-utf8=1\n"), "{show}");
    assert!(
        !landed.contains("bad"),
        "the non-UTF-8 command ran: {landed}"
    );
    assert!(gate.contains("forged=0\n"), "{show}");

    let runs = repo.events("command_run");
    let gate_runs: Vec<_> = runs
        .iter()
        .filter(|e| e["details"]["via"] == "gate")
        .collect();
    assert_eq!(gate_runs.len(), 4, "{gate_runs:#?}");
    let allowed = gate_runs
        .iter()
        .find(|e| {
            e["details"]["command"] == "sh -c test -d /chant-gate && echo inside > ran.txt; exit 3"
        })
        .expect("the allowed command is recorded");
    assert_eq!(allowed["details"]["decision"], "allowed");
    assert_eq!(allowed["details"]["exit_code"], 3);
    assert!(allowed["details"]["duration_ms"].is_u64(), "{allowed}");
    assert_eq!(allowed["details"]["cwd"], "/workspace");
    assert_eq!(allowed["sandbox"], "docker");
    assert_eq!(allowed["spec_id"], id.as_str());
    let refused = gate_runs
        .iter()
        .find(|e| e["details"]["command"] == "touch denied-probe")
        .expect("the refused command is recorded");
    assert_eq!(refused["details"]["decision"], "refused");
    assert_eq!(refused["details"]["rule"], "touch *");
    assert!(refused["details"].get("exit_code").is_none(), "{refused}");
    let unreadable = gate_runs
        .iter()
        .find(|e| {
            e["details"]["rule"]
                .as_str()
                .is_some_and(|r| r.contains("not UTF-8"))
        })
        .expect("the non-UTF-8 command is recorded as refused");
    assert_eq!(unreadable["details"]["decision"], "refused");
    // The run's own actor and session, whatever the sandbox's environment claims.
    let started = &repo.events("spec_started")[0];
    for e in &gate_runs {
        assert_eq!(e["session"], started["session"], "{e}");
        assert_eq!(e["actor"], started["actor"], "{e}");
    }
    let violations = repo.events("policy_violation");
    assert!(
        violations
            .iter()
            .any(|v| v["details"]["rule"] == "agent.commands"
                && v["details"]["pattern"] == "touch *"),
        "{violations:#?}"
    );
    // The socket was the run's and is gone with it.
    let sockets = std::fs::read_dir(repo.path(".git/chant/runs"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|d| d.path().join("gate.sock").exists())
        .count();
    assert_eq!(sockets, 0, "the gate's socket outlived the run");
}

#[test]
fn hook_results_the_host_cannot_record_in_a_container_are_counted_and_never_silent() {
    let Some(image) = image() else { return };
    let (repo, id) = repo_with_agent(&image, "hook-result.sh", "");
    let run = repo.chant(&["work", &id]).assert_ok();
    let branch = format!("chant/{id}");
    let hook = lines(&repo, &branch, "hook.txt");
    assert_eq!(hook, "ok=0\nbad=1\nbad-again=1\n", "{}", run.stderr());
    run.stderr_has("the agent's hooks could not reach chant's gate 2 time(s)")
        .stderr_has("not a PostToolUse event");
    let completed = &repo.events("spec_completed")[0];
    assert_eq!(completed["details"]["hook_errors"], 2, "{completed}");
    // The one it could read is recorded; the refused ones are not.
    let results: Vec<_> = repo
        .events("command_run")
        .into_iter()
        .filter(|e| e["details"]["phase"] == "completed")
        .collect();
    assert_eq!(results.len(), 1, "{results:#?}");
    assert_eq!(results[0]["details"]["tool_use_id"], "t-ok");
}
