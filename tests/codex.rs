//! The real Codex CLI under `git chant work`, against the scripted fake of the OpenAI
//! Responses API, inside a network namespace holding only `lo` (tests/common/live.rs).

mod common;

use serde_json::json;

use common::anthropic::Turn;
use common::live::{command_runs, repo_with_agent, Expect, LiveOpenAi, OPENAI_KEY};

/// A model Codex offers `apply_patch` to (its default model runs in "code mode").
const COMMAND: &str = "[codex, exec, -m, gpt-5.5, \"{prompt}\"]";

fn live(test: &str, script: Vec<Turn>) -> Option<LiveOpenAi> {
    LiveOpenAi::openai(test, "codex", "CHANT_REQUIRE_CODEX", script)
}

/// An `apply_patch` turn adding `rel` with `text` (one line).
fn add_file(rel: &str, text: &str) -> Turn {
    Turn::tool(
        "apply_patch",
        json!(format!(
            "*** Begin Patch\n*** Add File: {rel}\n+{text}\n*** End Patch\n"
        )),
    )
}

fn shell(cmd: &str) -> Turn {
    Turn::tool("exec_command", json!({ "cmd": cmd }))
}

#[test]
#[allow(clippy::print_stdout)]
fn codex_at_permissions_lands_an_allowed_edit_and_command_and_records_them() {
    let (repo, id) = repo_with_agent(COMMAND, "  sandbox: permissions\n");
    let Some(live) = live(
        "codex_at_permissions_lands_an_allowed_edit_and_command_and_records_them",
        vec![
            add_file("hello.txt", "Hello from Codex"),
            shell("echo ran > ran.txt; echo key=$OPENAI_API_KEY"),
            Turn::Text("Done.".into()),
        ],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]);
    println!("{}\n{}", run.stdout(), run.stderr());
    let run = run.assert_ok();
    let outputs = live.api.tool_outputs();
    println!("{outputs:?}");
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert!(
        outputs[1].output.contains(OPENAI_KEY),
        "the key reached Codex: {outputs:?}"
    );
    println!("{:?}", command_runs(&repo, "allowed"));
    let done = Expect {
        landed: &[("hello.txt", "Hello from Codex\n"), ("ran.txt", "ran\n")],
        key: Some(OPENAI_KEY),
        session: Some(""),
        tokens: true,
        ..Expect::default()
    }
    .check(&repo, &id, &run);
    println!("{done}");
    assert!(live.api.unexpected.lock().expect("lock").is_empty());
}

#[test]
fn codex_at_permissions_refuses_denied_edits_and_commands_before_they_happen() {
    let probe_dir = tempfile::tempdir().expect("probe dir");
    let probe = probe_dir.path().join("command-ran");
    let outside = probe_dir.path().join("outside.txt");
    let (repo, id) = repo_with_agent(
        COMMAND,
        "  sandbox: permissions\n  permissions:\n    deny_edit: [secret.txt, \"config/\"]\n  commands:\n    denied: [\"touch *\"]\n",
    );
    let Some(live) = live(
        "codex_at_permissions_refuses_denied_edits_and_commands_before_they_happen",
        vec![
            shell(&format!("touch {}", probe.display())),
            // The same command hidden behind a wrapper and a path: still refused.
            shell(&format!("env /usr/bin/touch {}", probe.display())),
            add_file("secret.txt", "must never be written"),
            add_file("deep/../config/app.toml", "nor this"),
            add_file(&outside.to_string_lossy(), "nor outside the clone"),
            add_file("hello.txt", "allowed"),
        ],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id, "--keep"], &[]).assert_ok();
    let outputs = live.api.tool_outputs();
    assert_eq!(outputs.len(), 6, "{outputs:?}");
    for refused in &outputs[..2] {
        assert!(
            refused.output.contains("chant: command refused"),
            "the gate's reason reached the model: {outputs:?}"
        );
    }
    for refused in &outputs[2..5] {
        assert!(
            refused.output.contains("chant: edit refused"),
            "the edit hook's reason reached the model: {outputs:?}"
        );
    }
    let touches = [
        format!("touch {}", probe.display()),
        format!("env /usr/bin/touch {}", probe.display()),
    ];
    eprintln!("{}", run.stderr());
    Expect {
        landed: &[("hello.txt", "allowed\n")],
        never_made: &[&probe, &outside],
        not_in_clone: &["secret.txt", "config/app.toml"],
        refused: Some(&[&touches[0], &touches[1]]),
        refusals: Some(5),
        ..Expect::default()
    }
    .check(&repo, &id, &run);
    let refused_edits: Vec<String> = repo
        .events("policy_violation")
        .iter()
        .filter(|v| v["details"]["via"] == "edit-hook")
        .filter_map(|v| v["details"]["path"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        refused_edits,
        [
            "secret.txt".to_string(),
            "deep/../config/app.toml".to_string(),
            outside.display().to_string()
        ]
    );
}

#[test]
fn codex_at_none_lands_an_edit_and_still_sends_commands_through_the_gate() {
    let probe_dir = tempfile::tempdir().expect("probe dir");
    let probe = probe_dir.path().join("command-ran");
    let (repo, id) = repo_with_agent(
        COMMAND,
        "  sandbox: none\n  commands:\n    denied: [\"touch *\"]\n",
    );
    let Some(live) = live(
        "codex_at_none_lands_an_edit_and_still_sends_commands_through_the_gate",
        vec![
            add_file("hello.txt", "Hello at none"),
            shell(&format!("sh -c 'touch {}'", probe.display())),
            shell("echo ran > ran.txt"),
        ],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]).assert_ok();
    Expect {
        landed: &[("hello.txt", "Hello at none\n"), ("ran.txt", "ran\n")],
        never_made: &[&probe],
        allowed: Some(&["echo ran > ran.txt"]),
        ..Expect::default()
    }
    .check(&repo, &id, &run);
    assert_eq!(command_runs(&repo, "refused").len(), 1);
}

#[test]
fn a_codex_run_whose_every_step_is_refused_fails_and_stays_rerunnable() {
    let (repo, id) = repo_with_agent(
        COMMAND,
        "  sandbox: permissions\n  commands:\n    denied: [\"echo *\"]\n",
    );
    let Some(live) = live(
        "a_codex_run_whose_every_step_is_refused_fails_and_stays_rerunnable",
        vec![shell("echo no > hello.txt"), Turn::Text("Gave up.".into())],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]).assert_code(1);
    assert!(
        run.stderr()
            .contains("refused 1 time(s) and changed nothing"),
        "{}",
        run.stderr()
    );
    assert_eq!(repo.rev(&format!("chant/{id}")), repo.rev("main"));
    Expect {
        failed: true,
        session: Some(""),
        tokens: true,
        ..Expect::default()
    }
    .check(&repo, &id, &run);
    // Failed, not completed: it can be worked again.
    live.chant(&repo, &["work", &id], &[]).assert_code(1);
    assert_eq!(repo.events("spec_started").len(), 2);
}

#[test]
fn codex_without_a_key_fails_naming_what_to_set() {
    let (repo, id) = repo_with_agent(
        COMMAND,
        "  sandbox: permissions\n  secrets:\n    hide: [OPENAI_API_KEY]\n",
    );
    let Some(live) = live(
        "codex_without_a_key_fails_naming_what_to_set",
        vec![add_file("hello.txt", "x")],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]).assert_code(1);
    assert!(
        run.stderr().contains("OPENAI_API_KEY") && run.stderr().contains("no usable API key"),
        "{}",
        run.stderr()
    );
    assert_eq!(repo.rev(&format!("chant/{id}")), repo.rev("main"));
}

#[test]
fn a_committed_codex_project_config_and_hooks_are_not_read() {
    let probe_dir = tempfile::tempdir().expect("probe dir");
    let hook_ran = probe_dir.path().join("committed-hook-ran");
    let probe = probe_dir.path().join("command-ran");
    let (repo, id) = repo_with_agent(
        COMMAND,
        "  sandbox: permissions\n  commands:\n    denied: [\"touch *\"]\n",
    );
    // A project that tries to switch the sandbox and the hooks off, and to run its own.
    repo.write(
        ".codex/config.toml",
        "sandbox_mode = \"danger-full-access\"\n[features]\nhooks = false\n",
    );
    repo.write(
        ".codex/hooks.json",
        &json!({"hooks": {"SessionStart": [{"hooks": [{"type": "command",
            "command": format!("touch {}", hook_ran.display())}]}]}})
        .to_string(),
    );
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "project codex config"]);
    let Some(live) = live(
        "a_committed_codex_project_config_and_hooks_are_not_read",
        vec![
            shell(&format!("touch {}", probe.display())),
            add_file("hello.txt", "still gated"),
        ],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]).assert_ok();
    // The committed hook never ran; the gate still refused the command.
    Expect {
        landed: &[("hello.txt", "still gated\n")],
        never_made: &[&hook_ran, &probe],
        ..Expect::default()
    }
    .check(&repo, &id, &run);
}

#[test]
fn codex_and_opencode_at_a_level_without_network_are_refused_before_anything_is_created() {
    for command in [COMMAND, "[opencode, run, \"{prompt}\"]"] {
        for level in ["docker", "vm"] {
            let (repo, id) = repo_with_agent(command, &format!("  sandbox: {level}\n"));
            eprintln!("{command} at {level}");
            common::live::assert_refused_without_network(
                &repo,
                &id,
                level,
                "OPENAI_BASE_URL",
                "http://gateway.internal:8443/v1",
            );
        }
    }
}

// ---- Codex CLI at the docker level: its config through the seeded HOME, the API through
// chant's relay and proxy ----

/// `agent:` lines for the docker level with `image`, the network on (the adapter allows the
/// fake API's host) and `extra`.
fn at_docker(image: &str, extra: &str) -> String {
    format!(
        "  sandbox: docker\n  docker:\n    image: {image}\n    memory: 2G\n    cpu: 1000m\n  network:\n    enabled: true\n{extra}"
    )
}

#[test]
fn codex_at_docker_lands_allowed_work_and_the_host_gate_refuses_and_records_denied_commands() {
    let Some(live) = live(
        "codex_at_docker_lands_allowed_work_and_the_host_gate_refuses_and_records_denied_commands",
        vec![
            add_file("hello.txt", "Hello from a container"),
            shell("echo ran > ran.txt; echo key=$OPENAI_API_KEY; echo home=$HOME"),
            // Behind a wrapper Codex's own prefix rule misses it: the gate on the host does not.
            shell("env touch denied-probe"),
            shell("touch denied-probe"),
            Turn::Text("Done.".into()),
        ],
    ) else {
        return;
    };
    // The CLI first (its own skip rule), then the engine and the image.
    let Some(image) = common::agent_images::codex() else {
        return;
    };
    let (repo, id) = repo_with_agent(
        COMMAND,
        &at_docker(&image, "  commands:\n    denied: [\"touch *\"]\n"),
    );
    let run = live.chant(&repo, &["work", &id, "--keep"], &[]);
    let show = format!("{}\n{}", run.stdout(), run.stderr());
    let outputs = live.api.tool_outputs();
    assert_eq!(outputs.len(), 4, "{outputs:?}\n{show}");
    // The key reached Codex in the container; its HOME is the container's.
    assert!(outputs[1].output.contains(OPENAI_KEY), "{outputs:?}");
    assert!(
        outputs[1].output.contains("home=/home/agent"),
        "{outputs:?}"
    );
    assert!(
        outputs[2].output.contains("chant: command refused"),
        "the gate's reason reached the model: {outputs:?}"
    );
    assert!(
        outputs[3].output.contains("refused"),
        "the plain command was refused too: {outputs:?}"
    );
    let run = run.assert_ok();
    // Live progress from Codex's events, as at the other levels.
    assert!(
        run.stdout()
            .contains("codex: [turn 1] edit add /workspace/hello.txt"),
        "{}",
        run.stdout()
    );
    Expect {
        landed: &[
            ("hello.txt", "Hello from a container\n"),
            ("ran.txt", "ran\n"),
        ],
        not_landed: &["denied-probe", ".codex"],
        not_in_clone: &["denied-probe"],
        allowed: Some(&["echo ran > ran.txt; echo key=$OPENAI_API_KEY; echo home=$HOME"]),
        refused_at: Some("docker"),
        key: Some(OPENAI_KEY),
        session: Some(""),
        tokens: true,
        ..Expect::default()
    }
    .check(&repo, &id, &run);
    let refused = command_runs(&repo, "refused");
    assert!(
        refused.contains(&"env touch denied-probe".to_string()),
        "{refused:?}"
    );
    assert!(live.api.unexpected.lock().expect("lock").is_empty());
    // `git chant doctor` finds the program in the image (where PATH inside finds it).
    let doctor = repo.chant(&["doctor"]);
    assert!(
        doctor
            .stdout()
            .contains("with the agent program at /usr/local/bin/codex"),
        "{}",
        doctor.stdout()
    );
}

#[test]
fn a_denied_edit_by_codex_at_docker_is_refused_by_chants_check_and_nothing_lands() {
    let Some(live) = live(
        "a_denied_edit_by_codex_at_docker_is_refused_by_chants_check_and_nothing_lands",
        vec![
            add_file("hello.txt", "allowed"),
            add_file("secret.txt", "must never land"),
            Turn::Text("Done.".into()),
        ],
    ) else {
        return;
    };
    // The CLI first (its own skip rule), then the engine and the image.
    let Some(image) = common::agent_images::codex() else {
        return;
    };
    let (repo, id) = repo_with_agent(
        COMMAND,
        &at_docker(&image, "  permissions:\n    deny_edit: [secret.txt]\n"),
    );
    let run = live.chant(&repo, &["work", &id], &[]).assert_code(1);
    // Codex has no edit rules of its own and the edit hook needs the host's paths: the
    // edit happens in the container, and chant's check after the run refuses it all.
    let violations = repo.events("policy_violation");
    assert!(
        violations
            .iter()
            .any(|v| v["details"]["path"] == "secret.txt"),
        "{violations:?}\n{}",
        run.stderr()
    );
    assert_eq!(repo.rev(&format!("chant/{id}")), repo.rev("main"));
    assert_eq!(repo.events("spec_failed").len(), 1);
    Expect {
        not_landed: &["secret.txt"],
        key: Some(OPENAI_KEY),
        ..Expect::default()
    }
    .check(&repo, &id, &run);
}

#[test]
fn a_codex_run_at_docker_whose_every_step_is_refused_fails_and_stays_rerunnable() {
    let Some(live) = live(
        "a_codex_run_at_docker_whose_every_step_is_refused_fails_and_stays_rerunnable",
        vec![shell("echo no > hello.txt"), Turn::Text("Gave up.".into())],
    ) else {
        return;
    };
    // The CLI first (its own skip rule), then the engine and the image.
    let Some(image) = common::agent_images::codex() else {
        return;
    };
    let (repo, id) = repo_with_agent(
        COMMAND,
        &at_docker(&image, "  commands:\n    denied: [\"echo *\"]\n"),
    );
    let run = live.chant(&repo, &["work", &id], &[]).assert_code(1);
    assert!(
        run.stderr()
            .contains("refused 1 time(s) and changed nothing"),
        "{}",
        run.stderr()
    );
    assert_eq!(repo.rev(&format!("chant/{id}")), repo.rev("main"));
    Expect {
        refused: Some(&["echo no > hello.txt"]),
        failed: true,
        session: Some(""),
        ..Expect::default()
    }
    .check(&repo, &id, &run);
    live.chant(&repo, &["work", &id], &[]).assert_code(1);
    assert_eq!(repo.events("spec_started").len(), 2);
}

// ---- Codex CLI at the vm level: its native binary in a TCG guest, its config in the
// seeded HOME, the API through chant's proxy, its hook through qemu's forward to the gate ----

#[test]
fn codex_in_a_vm_lands_work_and_the_host_gate_refuses_and_records_denied_commands() {
    let test = "codex_in_a_vm_lands_work_and_the_host_gate_refuses_and_records_denied_commands";
    let Some(live) = live(
        test,
        vec![
            add_file("hello.txt", "Hello from a vm"),
            shell("echo ran > ran.txt; echo key=$OPENAI_API_KEY; echo home=$HOME; ls -ln $HOME/.codex"),
            // Behind a wrapper Codex's own prefix rule misses it: the gate on the host does not.
            shell("env touch denied-probe"),
            Turn::Text("Done.".into()),
        ],
    ) else {
        return;
    };
    if !common::vm_images::vm_ready(test) {
        return;
    }
    let image = tempfile::tempdir().expect("image dir");
    common::vm_images::codex(image.path()).expect("the codex guest image");
    let (repo, id) = repo_with_agent(
        COMMAND,
        &common::vm_images::at_vm(image.path(), "  commands:\n    denied: [\"touch *\"]\n"),
    );
    let started = std::time::Instant::now();
    let run = live.chant(&repo, &["work", &id, "--keep"], &[]);
    eprintln!("{test}: the run took {:?}", started.elapsed());
    let show = format!("{}\n{}", run.stdout(), run.stderr());
    let outputs = live.api.tool_outputs();
    assert_eq!(outputs.len(), 3, "{outputs:?}\n{show}");
    // The key reached Codex in the guest; its HOME is the guest's, seeded with chant's
    // config (owned by the agent's uid 1000).
    assert!(outputs[1].output.contains(OPENAI_KEY), "{outputs:?}");
    assert!(
        outputs[1].output.contains("home=/home/agent"),
        "{outputs:?}"
    );
    assert!(
        outputs[1].output.contains("1000     1000") && outputs[1].output.contains("config.toml"),
        "{outputs:?}"
    );
    assert!(
        outputs[2].output.contains("chant: command refused"),
        "the gate's reason reached the model: {outputs:?}"
    );
    let run = run.assert_ok();
    assert!(
        run.stdout()
            .contains("codex: [turn 1] edit add /workspace/hello.txt"),
        "{}",
        run.stdout()
    );
    // The probe: the refused command never ran in the guest (its workspace came back).
    Expect {
        landed: &[("hello.txt", "Hello from a vm\n"), ("ran.txt", "ran\n")],
        not_landed: &["denied-probe", ".codex"],
        in_clone: &["ran.txt"],
        not_in_clone: &["denied-probe"],
        allowed: Some(&[
            "echo ran > ran.txt; echo key=$OPENAI_API_KEY; echo home=$HOME; ls -ln $HOME/.codex",
        ]),
        refused: Some(&["env touch denied-probe"]),
        refused_at: Some("vm"),
        refused_via: Some("claude-hook"),
        key: Some(OPENAI_KEY),
        tokens: true,
        ..Expect::default()
    }
    .check(&repo, &id, &run);
    assert!(live.api.unexpected.lock().expect("lock").is_empty());
}
