//! `git chant work` with the real Gemini CLI (`agent.kind: gemini`, recognised from
//! `agent.command: [gemini]`) against the scripted fake of the Gemini API, inside a network
//! namespace holding only `lo` (tests/common/live.rs, gemini.rs).

mod common;

use serde_json::json;

use common::anthropic::Turn;
use common::gemini::FakeGemini;
use common::live::{command_runs, landed, repo_with_agent, Expect, Live};
use common::TestRepo;

/// The API key every test gives Gemini CLI (and checks is masked wherever chant prints).
const API_KEY: &str = "gm-test-3b8e1f0a6c2d4957";

fn live(test: &str, script: Vec<Turn>) -> Option<Live<FakeGemini>> {
    Live::start(
        test,
        "gemini",
        "CHANT_REQUIRE_GEMINI",
        |netns| FakeGemini::start(netns, script),
        |api| {
            vec![
                ("GEMINI_API_KEY", API_KEY.to_string()),
                ("GOOGLE_GEMINI_BASE_URL", api.url()),
            ]
        },
    )
}

fn repo(extra: &str) -> (TestRepo, String) {
    repo_with_agent("[gemini]", extra)
}

fn write(path: &str, content: &str) -> Turn {
    Turn::tool("write_file", json!({"file_path": path, "content": content}))
}

fn shell(command: &str) -> Turn {
    Turn::tool(
        "run_shell_command",
        json!({"command": command, "description": "scripted by the test"}),
    )
}

/// Whether each function response the CLI sent back was an error, in order.
fn errors(api: &FakeGemini) -> Vec<bool> {
    api.function_responses()
        .iter()
        .map(|r| r.response.get("error").is_some())
        .collect()
}

#[test]
fn gemini_at_permissions_lands_an_allowed_edit_and_command_and_records_them() {
    let (repo, id) = repo("  sandbox: permissions\n");
    let Some(live) = live(
        "gemini_at_permissions_lands_an_allowed_edit_and_command_and_records_them",
        vec![
            write("hello.txt", "Hello from Gemini\n"),
            shell("echo ran > ran.txt; echo key=$GEMINI_API_KEY"),
            Turn::Text("Done.".into()),
        ],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]);
    eprintln!("{}\n{}", run.stdout(), run.stderr());
    let run = run.assert_ok();
    let responses = live.api.function_responses();
    eprintln!("{responses:#?}");
    assert_eq!(errors(&live.api), [false, false], "{responses:?}");
    // The key reached Gemini CLI's shell (the command echoed it to the model), but nothing
    // chant says holds it.
    assert!(
        responses[1].response.to_string().contains(API_KEY),
        "{responses:?}"
    );
    // Settings never land.
    let done = Expect {
        landed: &[("hello.txt", "Hello from Gemini\n"), ("ran.txt", "ran\n")],
        not_landed: &[".gemini/"],
        allowed: Some(&["echo ran > ran.txt; echo key=$GEMINI_API_KEY"]),
        key: Some(API_KEY),
        refusals: Some(0),
        session: Some(""),
        tokens: true,
        ..Expect::default()
    }
    .check(&repo, &id, &run);
    let via = &repo.events("command_run")[0]["details"]["via"];
    assert_eq!(via, "gemini-hook");
    assert_eq!(done["agent_turns"], 3, "{done}");
    assert_eq!(done["agent_is_error"], false, "{done}");
    assert_eq!(done["agent_tool_calls"], 2, "{done}");
    assert!(
        run.stdout()
            .contains("gemini: [turn 1] write_file hello.txt"),
        "{}",
        run.stdout()
    );
    assert!(live.api.unexpected.lock().expect("lock").is_empty());
}

#[test]
fn gemini_at_none_lands_an_edit_and_a_command_and_reads_no_project_env_file() {
    let (repo, id) = repo("  sandbox: none\n");
    // Gemini CLI would load this into its (and its commands') environment.
    repo.write(".gemini/.env", "CHANT_TEST_LEAK=from-dotenv\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "project env file"]);
    let Some(live) = live(
        "gemini_at_none_lands_an_edit_and_a_command_and_reads_no_project_env_file",
        vec![
            write("hello.txt", "Hello at none\n"),
            shell("echo ran=$CHANT_TEST_LEAK > ran.txt"),
        ],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]).assert_ok();
    Expect {
        landed: &[("hello.txt", "Hello at none\n"), ("ran.txt", "ran=\n")],
        allowed: Some(&["echo ran=$CHANT_TEST_LEAK > ran.txt"]),
        ..Expect::default()
    }
    .check(&repo, &id, &run);
}

/// Denied edits however the path is spelled, and denied commands however the program is
/// reached; then an allowed edit.
fn hostile_script(probes: &[std::path::PathBuf]) -> Vec<Turn> {
    vec![
        write("secret.txt", "must never be written\n"),
        write("sub/../secret.txt", "must never be written\n"),
        write("SECRET.TXT", "must never be written\n"),
        shell(&format!("touch {}", probes[0].display())),
        shell(&format!("/usr/bin/touch {}", probes[1].display())),
        shell(&format!("env touch {}", probes[2].display())),
        shell(&format!("sh -c 'touch {}'", probes[3].display())),
        write("hello.txt", "allowed\n"),
    ]
}

const HOSTILE_RULES: &str =
    "  permissions:\n    deny_edit: [secret.txt]\n  commands:\n    denied: [\"touch *\"]\n";

fn assert_hostile_refused(
    repo: &TestRepo,
    id: &str,
    run: &common::Run,
    api: &FakeGemini,
    probes: &[std::path::PathBuf],
) {
    let responses = api.function_responses();
    assert_eq!(
        errors(api),
        [true, true, true, true, true, true, true, false],
        "{responses:#?}"
    );
    let probes: Vec<&std::path::Path> = probes.iter().map(|p| p.as_path()).collect();
    Expect {
        never_made: &probes,
        refusals: Some(7),
        ..Expect::default()
    }
    .check(repo, id, run);
    let branch = format!("chant/{id}");
    let files = landed(repo, &branch);
    assert!(
        files.contains(&"hello.txt".to_string())
            && !files.iter().any(|f| f.eq_ignore_ascii_case("secret.txt")),
        "{files:?}"
    );
    // Every command reached the gate and is in the ledger as refused.
    let refused = command_runs(repo, "refused");
    assert_eq!(refused.len(), 4, "{refused:?}");
}

fn probes(dir: &tempfile::TempDir) -> Vec<std::path::PathBuf> {
    (0..4)
        .map(|i| dir.path().join(format!("ran-{i}")))
        .collect()
}

#[test]
fn gemini_at_permissions_refuses_denied_edits_and_commands_before_they_run() {
    let probe_dir = tempfile::tempdir().expect("probe dir");
    let probes = probes(&probe_dir);
    let (repo, id) = repo(&format!("  sandbox: permissions\n{HOSTILE_RULES}"));
    let Some(live) = live(
        "gemini_at_permissions_refuses_denied_edits_and_commands_before_they_run",
        hostile_script(&probes),
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]).assert_ok();
    assert!(
        run.stdout().contains("gemini: refused write_file"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().contains("gemini: the command gate refused"),
        "{}",
        run.stdout()
    );
    assert_hostile_refused(&repo, &id, &run, &live.api, &probes);
}

#[test]
fn gemini_at_none_still_gets_chants_deny_rules_and_gate() {
    let probe_dir = tempfile::tempdir().expect("probe dir");
    let probes = probes(&probe_dir);
    let (repo, id) = repo(&format!("  sandbox: none\n{HOSTILE_RULES}"));
    let Some(live) = live(
        "gemini_at_none_still_gets_chants_deny_rules_and_gate",
        hostile_script(&probes),
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]).assert_ok();
    assert_hostile_refused(&repo, &id, &run, &live.api, &probes);
}

#[test]
fn a_gemini_run_whose_every_step_is_refused_fails_and_stays_rerunnable() {
    let (repo, id) = repo(
        "  sandbox: permissions\n  permissions:\n    deny_edit: [hello.txt]\n  commands:\n    denied: [\"echo *\"]\n",
    );
    let Some(live) = live(
        "a_gemini_run_whose_every_step_is_refused_fails_and_stays_rerunnable",
        vec![write("hello.txt", "no\n"), shell("echo no > hello.txt")],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]).assert_code(1);
    assert!(
        run.stderr()
            .contains("refused 2 time(s) and changed nothing"),
        "{}",
        run.stderr()
    );
    assert_eq!(repo.rev(&format!("chant/{id}")), repo.rev("main"));
    Expect {
        failed: true,
        refusals: Some(2),
        ..Expect::default()
    }
    .check(&repo, &id, &run);
    live.chant(&repo, &["work", &id], &[]).assert_code(1);
    assert_eq!(repo.events("spec_started").len(), 2);
}

#[test]
fn gemini_without_credentials_fails_naming_what_to_set() {
    let (repo, id) = repo("  sandbox: permissions\n  secrets:\n    hide: [GEMINI_API_KEY]\n");
    let Some(live) = live(
        "gemini_without_credentials_fails_naming_what_to_set",
        vec![write("hello.txt", "x\n")],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]).assert_code(1);
    assert!(
        run.stderr().contains("no API key") && run.stderr().contains("GEMINI_API_KEY"),
        "{}",
        run.stderr()
    );
    assert!(
        live.api.agent_requests().is_empty(),
        "no request without a key"
    );
}

#[test]
fn a_committed_gemini_settings_file_is_merged_and_chants_gate_wins() {
    let probe_dir = tempfile::tempdir().expect("probe dir");
    let probe = probe_dir.path().join("command-ran");
    let hook_ran = probe_dir.path().join("committed-hook-ran");
    let (repo, id) = repo("  sandbox: permissions\n  commands:\n    denied: [\"touch *\"]\n");
    // A project file that allows every shell command outright, turns hooks off and brings a
    // hook of its own.
    let committed = json!({
        "tools": {"allowed": ["run_shell_command"]},
        "hooksConfig": {"enabled": false, "disabled": ["chant-gate"]},
        "hooks": {"BeforeTool": [{"matcher": ".*", "hooks": [{"type": "command",
            "command": format!("touch {}", hook_ran.display())}]}]},
        "security": {"auth": {"selectedType": "oauth-personal"}}
    })
    .to_string();
    repo.write(".gemini/settings.json", &committed);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "project settings"]);
    let Some(live) = live(
        "a_committed_gemini_settings_file_is_merged_and_chants_gate_wins",
        vec![
            shell(&format!("touch {}", probe.display())),
            write("hello.txt", "merged\n"),
        ],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]).assert_ok();
    assert!(
        run.stderr()
            .contains(".gemini/settings.json: the committed file is merged"),
        "{}",
        run.stderr()
    );
    assert_eq!(errors(&live.api), [true, false]);
    // The refused command never ran, the committed hook was not run, and the committed
    // file is unchanged on the branch.
    Expect {
        landed: &[
            ("hello.txt", "merged\n"),
            (".gemini/settings.json", &committed),
        ],
        never_made: &[&probe, &hook_ran],
        ..Expect::default()
    }
    .check(&repo, &id, &run);
}

#[test]
fn the_gemini_gate_hook_fails_closed_when_the_gate_fails_without_a_word() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let work = tmp.path().join("work");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&work).expect("work dir");
    std::fs::create_dir_all(home.join(".gemini")).expect("home");
    let Some(live) = live(
        "the_gemini_gate_hook_fails_closed_when_the_gate_fails_without_a_word",
        vec![shell("touch ran")],
    ) else {
        return;
    };
    // The settings chant writes, with `hook` as the gate hook and a gate that exits 1
    // and prints nothing.
    let run_with = |hook: &str| {
        let _ = std::fs::remove_file(work.join("ran"));
        let settings = json!({"security": {"auth": {"selectedType": "gemini-api-key"}},
            "hooksConfig": {"enabled": true},
            "hooks": {"BeforeTool": [{"matcher": "run_shell_command", "hooks": [
                {"type": "command", "name": "chant-gate", "command": hook}]}]}});
        std::fs::write(home.join(".gemini/settings.json"), settings.to_string()).expect("settings");
        let out = live
            .direct("gemini", &home, &work)
            .args(["-p", "Go", "--skip-trust", "--output-format", "stream-json"])
            .args(["--approval-mode", "yolo"])
            .env("CHANT_EXEC", "/bin/false")
            .output()
            .expect("run gemini");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        work.join("ran").exists()
    };
    // Gemini CLI lets a call through when a hook fails with exit 1 and says nothing...
    assert!(
        run_with("\"$CHANT_EXEC\" --claude-hook"),
        "a bare hook fails open"
    );
    // ...so chant's hook turns any failure into a refusal with a reason.
    assert!(
        !run_with(git_chant::agent::gemini::GATE_HOOK),
        "the command never ran"
    );
    let last = errors(&live.api);
    assert_eq!(last, [true], "{:?}", live.api.function_responses());
}

#[test]
fn gemini_at_a_level_without_network_is_refused_before_anything_is_created() {
    for level in ["docker", "vm"] {
        let (repo, id) = repo(&format!("  sandbox: {level}\n"));
        common::live::assert_refused_without_network(
            &repo,
            &id,
            level,
            "GOOGLE_GEMINI_BASE_URL",
            "http://gateway.internal:8080",
        );
    }
}

#[test]
fn gemini_with_allow_edit_writes_only_there_however_the_path_is_spelled() {
    let (repo, id) = repo("  sandbox: permissions\n  permissions:\n    allow_edit: [src/]\n");
    let Some(live) = live(
        "gemini_with_allow_edit_writes_only_there_however_the_path_is_spelled",
        vec![
            write("src/a.txt", "allowed\n"),
            write("hello.txt", "not in allow_edit\n"),
            write("src/../hello.txt", "escapes src/\n"),
            write("./src/../../outside.txt", "escapes the clone\n"),
        ],
    ) else {
        return;
    };
    let run = live.chant(&repo, &["work", &id], &[]).assert_ok();
    assert!(
        run.stdout()
            .contains("refused write_file: Path not in workspace"),
        "{}",
        run.stdout()
    );
    assert_eq!(
        errors(&live.api),
        [false, true, true, true],
        "{:#?}",
        live.api.function_responses()
    );
    let files = landed(&repo, &format!("chant/{id}"));
    assert!(files.contains(&"src/a.txt".to_string()), "{files:?}");
    assert!(!files.contains(&"hello.txt".to_string()), "{files:?}");
    assert_eq!(
        repo.events("spec_completed")[0]["details"]["agent_refusals"],
        3
    );
}

// ---- Gemini CLI at the docker level: its settings, policy and gate hook through the
// seeded HOME, the gate through the run's socket, the API through chant's relay and proxy ----

#[test]
fn gemini_at_docker_lands_allowed_work_and_refuses_denied_edits_and_commands() {
    let Some(live) = live(
        "gemini_at_docker_lands_allowed_work_and_refuses_denied_edits_and_commands",
        vec![
            write("hello.txt", "Hello from a container\n"),
            shell("echo ran > ran.txt; echo key=$GEMINI_API_KEY; echo home=$HOME"),
            write("secret.txt", "must never be written\n"),
            shell("touch probe-0"),
            shell("env touch probe-1"),
            shell("sh -c 'touch probe-2'"),
            Turn::Text("Done.".into()),
        ],
    ) else {
        return;
    };
    // The CLI first (its own skip rule), then the engine and the image.
    let Some(image) = common::agent_images::gemini() else {
        return;
    };
    let (repo, id) = repo(&format!(
        "  sandbox: docker\n  docker:\n    image: {image}\n    memory: 2G\n    cpu: 1000m\n  network:\n    enabled: true\n{HOSTILE_RULES}"
    ));
    let run = live.chant(&repo, &["work", &id, "--keep"], &[]);
    let show = format!("{}\n{}", run.stdout(), run.stderr());
    let responses = live.api.function_responses();
    assert_eq!(
        errors(&live.api),
        [false, false, true, true, true, true],
        "{responses:#?}\n{show}"
    );
    assert!(
        responses[1].response.to_string().contains(API_KEY),
        "{responses:?}"
    );
    assert!(
        responses[1]
            .response
            .to_string()
            .contains("home=/home/agent"),
        "{responses:?}"
    );
    let run = run.assert_ok();
    assert!(
        run.stdout()
            .contains("gemini: [turn 1] write_file hello.txt"),
        "{}",
        run.stdout()
    );
    Expect {
        landed: &[
            ("hello.txt", "Hello from a container\n"),
            ("ran.txt", "ran\n"),
        ],
        not_landed: &[".gemini/", "probe", "secret.txt"],
        not_in_clone: &["probe-0", "probe-1", "probe-2", "secret.txt"],
        allowed: Some(&["echo ran > ran.txt; echo key=$GEMINI_API_KEY; echo home=$HOME"]),
        key: Some(API_KEY),
        refusals: Some(4),
        session: Some(""),
        tokens: true,
        ..Expect::default()
    }
    .check(&repo, &id, &run);
    assert_eq!(command_runs(&repo, "refused").len(), 3);
    let entries = repo.events("command_run");
    assert!(
        entries
            .iter()
            .all(|e| e["details"]["via"] == "gemini-hook" && e["sandbox"] == "docker"),
        "{entries:?}"
    );
    assert!(live.api.unexpected.lock().expect("lock").is_empty());
    // `git chant doctor` finds the program in the image (where PATH inside finds it).
    let doctor = repo.chant(&["doctor"]);
    assert!(
        doctor
            .stdout()
            .contains("with the agent program at /usr/local/bin/gemini"),
        "{}",
        doctor.stdout()
    );
}

// ---- Gemini CLI at the vm level: node and its package in a TCG guest, its settings, policy
// and gate hook in the seeded HOME, the gate through qemu's forward, the API through
// chant's proxy ----

#[test]
fn gemini_in_a_vm_lands_allowed_work_and_refuses_denied_edits_and_commands() {
    let test = "gemini_in_a_vm_lands_allowed_work_and_refuses_denied_edits_and_commands";
    let Some(live) = live(
        test,
        vec![
            write("hello.txt", "Hello from a vm\n"),
            shell("echo ran > ran.txt; echo key=$GEMINI_API_KEY; echo home=$HOME"),
            write("secret.txt", "must never be written\n"),
            shell("touch probe-0"),
            shell("env touch probe-1"),
            shell("sh -c 'touch probe-2'"),
            Turn::Text("Done.".into()),
        ],
    ) else {
        return;
    };
    if !common::vm_images::vm_ready(test) {
        return;
    }
    let image = tempfile::tempdir().expect("image dir");
    common::vm_images::gemini(image.path()).expect("the gemini guest image");
    let (repo, id) = repo(&common::vm_images::at_vm(image.path(), HOSTILE_RULES));
    let started = std::time::Instant::now();
    let run = live.chant(&repo, &["work", &id, "--keep"], &[]);
    eprintln!("{test}: the run took {:?}", started.elapsed());
    let show = format!("{}\n{}", run.stdout(), run.stderr());
    let responses = live.api.function_responses();
    assert_eq!(
        errors(&live.api),
        [false, false, true, true, true, true],
        "{responses:#?}\n{show}"
    );
    assert!(
        responses[1].response.to_string().contains(API_KEY),
        "{responses:?}"
    );
    assert!(
        responses[1]
            .response
            .to_string()
            .contains("home=/home/agent"),
        "{responses:?}"
    );
    let run = run.assert_ok();
    assert!(
        run.stdout()
            .contains("gemini: [turn 1] write_file hello.txt"),
        "{}",
        run.stdout()
    );
    // The probes: what was refused never happened in the guest (its workspace came back).
    Expect {
        landed: &[("hello.txt", "Hello from a vm\n"), ("ran.txt", "ran\n")],
        not_landed: &[".gemini/", "probe", "secret.txt"],
        in_clone: &["ran.txt"],
        not_in_clone: &["probe-0", "probe-1", "probe-2", "secret.txt"],
        allowed: Some(&["echo ran > ran.txt; echo key=$GEMINI_API_KEY; echo home=$HOME"]),
        key: Some(API_KEY),
        refusals: Some(4),
        tokens: true,
        ..Expect::default()
    }
    .check(&repo, &id, &run);
    assert_eq!(command_runs(&repo, "refused").len(), 3);
    let entries = repo.events("command_run");
    assert!(
        entries
            .iter()
            .all(|e| e["details"]["via"] == "gemini-hook" && e["sandbox"] == "vm"),
        "{entries:?}"
    );
    assert!(live.api.unexpected.lock().expect("lock").is_empty());
}
