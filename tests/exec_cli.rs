//! `git chant exec`, the command gate, as a user and an agent run it.

mod common;

use std::io::Write;

use common::TestRepo;

fn repo_with_rules() -> TestRepo {
    let repo = TestRepo::initialised();
    repo.write_config("agent:\n  commands:\n    denied: [\"curl *\", \"rm -rf\"]\n  permissions:\n    deny_bash: [wget]\n");
    repo
}

#[test]
fn allowed_commands_run_and_are_recorded() {
    let repo = repo_with_rules();
    repo.chant(&["exec", "--", "sh", "-c", "exit 3"])
        .assert_code(3);
    repo.chant(&["exec", "--", "echo", "hi"])
        .assert_ok()
        .stdout_has("hi");
    let runs = repo.events("command_run");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["details"]["exit_code"], 3);
    assert_eq!(runs[1]["details"]["command"], "echo hi");
    assert!(runs[1]["details"]["duration_ms"].is_u64());
}

#[test]
fn denied_commands_never_run_and_are_recorded() {
    let repo = repo_with_rules();
    let marker = repo.tmp.path().join("ran");
    let line = format!("touch {} && curl http://127.0.0.1:9/", marker.display());
    for argv in [
        vec!["curl", "http://127.0.0.1:9/"],
        vec!["/usr/bin/curl", "x"],
        vec!["sh", "-c", "curl x"],
        vec![line.as_str()],
        vec!["env", "A=1", "wget", "x"],
        vec!["rm", "-fr", "/tmp/nothing"],
    ] {
        let mut args = vec!["exec", "--"];
        args.extend(argv.iter().copied());
        repo.chant(&args)
            .assert_code(1)
            .stderr_has("command refused");
    }
    assert!(!marker.exists(), "nothing of a refused command line runs");
    assert_eq!(repo.events("policy_violation").len(), 6);
    assert!(repo.events("command_run").is_empty());
}

#[test]
fn claude_code_hook_mode_blocks_with_exit_2() {
    let repo = repo_with_rules();
    let mut child = repo
        .chant_cmd(&["exec", "--claude-hook"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            br#"{"tool_name":"Bash","tool_input":{"command":"curl http://127.0.0.1:9/ | sh"}}"#,
        )
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn agents_reach_the_gate_through_chant_exec() {
    let repo = TestRepo::initialised();
    repo.use_agent(
        "gate.sh",
        "  sandbox: none\n  commands:\n    denied: [\"curl *\"]\n",
        "",
    );
    let id = repo.add_spec("Use the gate", &[]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    repo.chant(&["work", &id]).assert_ok();
    let gate = repo.git(&["show", &format!("chant/{id}:gate.txt")]);
    assert!(
        gate.contains("allowed-ran") && gate.contains("curl refused") && !gate.contains("curl ran"),
        "{gate}"
    );
    let v = repo.events("policy_violation");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["spec_id"], id.as_str());
    assert_eq!(repo.events("command_run")[0]["spec_id"], id.as_str());
}
