//! Codex CLI, opencode, Gemini CLI and aider in a "pod" of the fake cluster, each the real
//! CLI against our scripted fake of its model API on this machine's loopback, which the fake
//! routes into the pod only because the run's NetworkPolicy opens its port (as a CNI would;
//! tests/kubernetes/fake/pod.rs). The pod's clone never sees chant's clone: what the agent
//! is told reaches it through its argv, its variables (the run's Secret) and the HOME files
//! the pod's script writes from the run's Secret before the agent starts. The command gate
//! is a stub in a pod: no `command_run` is ever recorded here.
//!
//! Each test skips loudly when its CLI or the engine is missing, and fails instead under
//! `CHANT_REQUIRE_<AGENT>=1` / `CHANT_REQUIRE_DOCKER=1`.

use std::net::TcpListener;

use serde_json::json;

use super::common::anthropic::Turn;
use super::common::live::{Expect, OPENAI_KEY};
use super::{common, image, setup_with, Setup};

/// Whether `program` runs; else None after a loud message, or a failure when `require` is
/// set.
fn cli(program: &str, require: &str) -> Option<()> {
    let ok = std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(());
    }
    if std::env::var_os(require).is_some() {
        panic!("{require} is set but `{program} --version` does not run");
    }
    eprintln!("\n!!! SKIPPED kubernetes test: `{program} --version` does not run.\n!!! Install it as .ci/run does (and set {require}=1 to make this a failure).\n");
    None
}

/// A run at kubernetes of `command` in `image`, its model API (`serve` on this machine's
/// loopback) routed into the pod, the network on (the adapter's API host opens its port in
/// the NetworkPolicy), `agent_extra` under `agent:`, `env(api)` among the run's secrets.
fn in_a_pod<A>(
    image: &str,
    command: &str,
    agent_extra: &str,
    serve: impl FnOnce(TcpListener) -> A,
    env: impl FnOnce(&A) -> String,
) -> (Setup, A, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let target = listener.local_addr().expect("addr");
    let api = serve(listener);
    let s = setup_with(
        image,
        command,
        "3m",
        &format!("  network:\n    enabled: true\n{agent_extra}"),
        &env(&api),
    );
    s.fake.route(target.port(), target);
    (s, api, target.port())
}

/// What every agent test asserts of a run: the key is in nothing chant said, nor in the
/// Job; the HOME files' contents are not in the Job either; the pod reached the API's
/// port and only it; no command was recorded (no gate in a pod); the pod is gone.
fn assert_honest(s: &Setup, said: &str, key: &str, port: u16, not_in_job: &[&str]) {
    assert!(!said.contains(key), "the key leaked:\n{said}");
    let job = &s.fake.requests()[0];
    assert!(job.path.ends_with("/jobs"), "{}", job.line());
    let job = job.body.to_string();
    assert!(!job.contains(key), "the key is in the Job: {job}");
    for text in not_in_job {
        assert!(!job.contains(text), "{text} is in the Job: {job}");
    }
    let reached = s.fake.reached_ports();
    assert_eq!(reached.len(), 1, "{reached:?}");
    assert_eq!(reached[0].1, [port], "{reached:?}");
    assert!(s.repo.events("command_run").is_empty());
    common::wait_for("the pod's containers to be gone", || {
        s.fake.pods_left().is_empty()
    });
}

/// The files on the run's branch.
fn landed_here(s: &Setup) -> Vec<String> {
    super::common::live::landed(&s.repo, &format!("chant/{}", s.id))
}

// ---- Codex CLI ----

/// A model Codex offers `apply_patch` to (its default model runs in "code mode").
const CODEX: &str = "[codex, exec, -m, gpt-5.5, \"{prompt}\"]";

fn codex_image() -> Option<String> {
    cli("codex", "CHANT_REQUIRE_CODEX")?;
    image::with_agent(common::agent_images::codex(), "chant-test-k8s-codex")
}

type Pod<A> = (Setup, A, u16);

fn codex_in_a_pod(script: Vec<Turn>, extra: &str) -> Option<Pod<common::openai::FakeOpenAi>> {
    let image = codex_image()?;
    Some(in_a_pod(
        &image,
        CODEX,
        extra,
        |l| common::openai::FakeOpenAi::serve(l, script),
        |api| {
            format!(
                "OPENAI_API_KEY={OPENAI_KEY}\nOPENAI_BASE_URL={}\n",
                api.base_url()
            )
        },
    ))
}

fn add_file(rel: &str, text: &str) -> Turn {
    Turn::tool(
        "apply_patch",
        json!(format!(
            "*** Begin Patch\n*** Add File: {rel}\n+{text}\n*** End Patch\n"
        )),
    )
}

fn exec_command(cmd: &str) -> Turn {
    Turn::tool("exec_command", json!({ "cmd": cmd }))
}

#[test]
fn codex_in_a_pod_finds_its_provider_in_the_seeded_home_and_lands_allowed_work() {
    let Some((s, api, port)) = codex_in_a_pod(
        vec![
            add_file("hello.txt", "Hello from a pod"),
            // The seeded config is Codex's own; the variables that carried it are gone; the
            // gate is a stub that says so.
            exec_command(
                "echo ran > ran.txt; echo home=$HOME; grep -c model_providers $HOME/.codex/config.toml; echo carriers=$(env | grep -c CHANT_HOME_FILE_); \"$CHANT_EXEC\" true; echo gate=$?",
            ),
            // Its own prefix rule, carried in with its config, is all that refuses a
            // command in a pod; a wrapper past it runs, unrecorded.
            exec_command("touch denied-probe"),
            exec_command("env touch wrapped-probe"),
            Turn::Text("Done.".into()),
        ],
        "  commands:\n    denied: [\"touch *\"]\n",
    ) else {
        return;
    };
    let run = s.work();
    let said = common::live::everything_chant_said(&s.repo, &run);
    assert_eq!(run.code(), 0, "{said}");
    let outputs = api.tool_outputs();
    assert_eq!(outputs.len(), 4, "{outputs:?}\n{said}");
    assert!(
        outputs[2]
            .output
            .contains("rejected: refused by chant (agent.commands): touch"),
        "{outputs:?}"
    );
    assert!(
        outputs[3].output.contains("Process exited with code 0"),
        "{outputs:?}"
    );
    let shell = &outputs[1].output;
    for needle in [
        "home=/home/agent",
        "\n1\n",
        "carriers=0",
        "the command gate is not available in a kubernetes pod",
        "gate=126",
    ] {
        assert!(shell.contains(needle), "{needle}: {shell}");
    }
    // Codex reached the fake only through the provider in its seeded config.toml (it
    // ignores OPENAI_BASE_URL), with the key from the run's Secret.
    let requests = api.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {OPENAI_KEY}").as_str()),
            "{} {}",
            r.method,
            r.path
        );
    }
    Expect {
        landed: &[("hello.txt", "Hello from a pod\n"), ("ran.txt", "ran\n")],
        not_landed: &[".codex", "denied-probe"],
        tokens: true,
        ..Expect::default()
    }
    .check(&s.repo, &s.id, &run);
    let files = landed_here(&s);
    assert!(files.iter().any(|p| p == "wrapped-probe"), "{files:?}");
    assert_eq!(s.repo.events("spec_completed")[0]["sandbox"], "kubernetes");
    assert!(api.unexpected.lock().expect("lock").is_empty());
    assert_honest(&s, &said, OPENAI_KEY, port, &["model_providers"]);
}

#[test]
fn a_denied_edit_by_codex_in_a_pod_is_refused_by_chants_check_and_nothing_lands() {
    let Some((s, api, port)) = codex_in_a_pod(
        vec![
            add_file("hello.txt", "allowed"),
            add_file("secret.txt", "must never land"),
            Turn::Text("Done.".into()),
        ],
        "  permissions:\n    deny_edit: [secret.txt]\n",
    ) else {
        return;
    };
    let run = s.work();
    let said = common::live::everything_chant_said(&s.repo, &run);
    // Codex has no edit rules of its own: the edit happens in the pod, is pushed to the
    // incoming ref, and chant's check refuses the whole result.
    assert_eq!(run.code(), 1, "{said}");
    assert_eq!(api.tool_outputs().len(), 2, "{said}");
    let violations = s.repo.events("policy_violation");
    assert!(
        violations
            .iter()
            .any(|v| v["details"]["path"] == "secret.txt"),
        "{violations:?}\n{said}"
    );
    assert_eq!(s.repo.rev(&format!("chant/{}", s.id)), s.repo.rev("main"));
    Expect {
        not_landed: &["secret.txt"],
        ..Expect::default()
    }
    .check(&s.repo, &s.id, &run);
    assert_eq!(s.repo.events("spec_failed").len(), 1);
    assert_honest(&s, &said, OPENAI_KEY, port, &["model_providers"]);
}

// ---- opencode ----

fn opencode_image() -> Option<String> {
    cli("opencode", "CHANT_REQUIRE_OPENCODE")?;
    image::with_agent(common::agent_images::opencode(), "chant-test-k8s-opencode")
}

#[test]
fn opencode_in_a_pod_lands_allowed_work_and_its_own_rules_refuse_denied_edits_and_commands() {
    let Some(image) = opencode_image() else {
        return;
    };
    let bash = |command: &str| {
        Turn::tool(
            "bash",
            json!({"command": command, "description": "scripted by the test"}),
        )
    };
    let write = |rel: &str, content: &str| {
        Turn::tool("write", json!({"filePath": rel, "content": content}))
    };
    let script = vec![
        write("hello.txt", "Hello from a pod\n"),
        bash("echo ran > ran.txt; echo home=$HOME; \"$CHANT_EXEC\" true; echo gate=$?"),
        write("secret.txt", "must never be written\n"),
        bash("touch denied-probe"),
        // No gate in a pod: a wrapper opencode's own `touch *` rule misses runs, unrecorded.
        bash("env touch wrapped-probe"),
        Turn::Text("Done.".into()),
    ];
    let (s, api, port) = in_a_pod(
        &image,
        "[opencode, run, -m, openai/gpt-4.1, \"{prompt}\"]",
        "  permissions:\n    deny_edit: [secret.txt]\n  commands:\n    denied: [\"touch *\"]\n",
        |l| common::openai::FakeOpenAi::serve(l, script),
        |api| {
            format!(
                "OPENAI_API_KEY={OPENAI_KEY}\nOPENAI_BASE_URL={}\n",
                api.base_url()
            )
        },
    );
    let run = s.work();
    let said = common::live::everything_chant_said(&s.repo, &run);
    assert_eq!(run.code(), 0, "{said}");
    let outputs = api.tool_outputs();
    assert_eq!(outputs.len(), 5, "{outputs:?}\n{said}");
    for needle in [
        "home=/home/agent",
        "the command gate is not available in a kubernetes pod",
        "gate=126",
    ] {
        assert!(outputs[1].output.contains(needle), "{needle}: {outputs:?}");
    }
    // Its rules came with OPENCODE_CONFIG_CONTENT through the run's Secret: opencode itself
    // refused the edit and the command in the pod.
    for (refused, rule) in [
        (
            &outputs[2],
            r#"{"permission":"edit","pattern":"secret.txt","action":"deny"}"#,
        ),
        (
            &outputs[3],
            r#"{"permission":"bash","pattern":"touch *","action":"deny"}"#,
        ),
    ] {
        assert!(
            refused
                .output
                .contains("The user has specified a rule which prevents you")
                && refused.output.contains(rule),
            "{rule}: {outputs:?}"
        );
    }
    Expect {
        landed: &[("hello.txt", "Hello from a pod\n"), ("ran.txt", "ran\n")],
        not_landed: &["secret.txt", "denied-probe", ".config", ".chant/opencode"],
        refusals: Some(2),
        ..Expect::default()
    }
    .check(&s.repo, &s.id, &run);
    let files = landed_here(&s);
    assert!(files.iter().any(|p| p == "wrapped-probe"), "{files:?}");
    assert_eq!(s.repo.events("spec_completed")[0]["sandbox"], "kubernetes");
    assert_honest(&s, &said, OPENAI_KEY, port, &["\"permission\""]);
}

// ---- Gemini CLI ----

/// The key the Gemini CLI gets (and that must be in nothing chant says).
const GEMINI_KEY: &str = "gm-test-k8s-5d2c9a7e1b3f4086";

fn gemini_image() -> Option<String> {
    cli("gemini", "CHANT_REQUIRE_GEMINI")?;
    image::with_agent(common::agent_images::gemini(), "chant-test-k8s-gemini")
}

#[test]
fn gemini_in_a_pod_gets_its_settings_and_policy_through_the_seeded_home_and_they_hold() {
    let Some(image) = gemini_image() else {
        return;
    };
    let write = |path: &str, content: &str| {
        Turn::tool("write_file", json!({"file_path": path, "content": content}))
    };
    let shell = |command: &str| {
        Turn::tool(
            "run_shell_command",
            json!({"command": command, "description": "scripted by the test"}),
        )
    };
    let script = vec![
        write("hello.txt", "Hello from a pod\n"),
        shell("echo ran > ran.txt; echo home=$HOME; \"$CHANT_EXEC\" true; echo gate=$?"),
        write("secret.txt", "must never be written\n"),
        shell("touch probe-0"),
        // No gate in a pod: a wrapper its prefix rule misses runs, unrecorded.
        shell("env touch probe-1"),
        Turn::Text("Done.".into()),
    ];
    let (s, api, port) = in_a_pod(
        &image,
        "[gemini]",
        "  permissions:\n    deny_edit: [secret.txt]\n  commands:\n    denied: [\"touch *\"]\n",
        |l| common::gemini::FakeGemini::serve(l, script),
        |api| {
            format!(
                "GEMINI_API_KEY={GEMINI_KEY}\nGOOGLE_GEMINI_BASE_URL={}\n",
                api.url()
            )
        },
    );
    let run = s.work();
    let said = common::live::everything_chant_said(&s.repo, &run);
    assert_eq!(run.code(), 0, "{said}");
    // Without its seeded settings the CLI would pick the `gateway` auth and exit 41;
    // without its seeded policy it would refuse every write headless, or allow these.
    let responses = api.function_responses();
    let errors: Vec<bool> = responses
        .iter()
        .map(|r| r.response.get("error").is_some())
        .collect();
    // Its policy (the seeded one: the gate is a stub in a pod, so the denied command is a
    // prefix rule there) refused the denied edit and the denied command; the wrapper ran.
    assert_eq!(
        errors,
        [false, false, true, true, false],
        "{responses:#?}\n{said}"
    );
    for (i, reason) in [
        (2, "chant: refused by agent.permissions.deny_edit"),
        (3, "chant: refused by agent.commands: touch *"),
    ] {
        assert!(
            responses[i]
                .response
                .to_string()
                .contains(&format!("Tool execution denied by policy. {reason}")),
            "{responses:#?}"
        );
    }
    let shell_out = responses[1].response.to_string();
    for needle in [
        "home=/home/agent",
        "the command gate is not available in a kubernetes pod",
        "gate=126",
    ] {
        assert!(shell_out.contains(needle), "{needle}: {shell_out}");
    }
    for r in api.requests() {
        assert_eq!(
            r.header("x-goog-api-key"),
            Some(GEMINI_KEY),
            "{} {}",
            r.method,
            r.path
        );
    }
    Expect {
        landed: &[("hello.txt", "Hello from a pod\n"), ("ran.txt", "ran\n")],
        not_landed: &[".gemini/", "secret.txt", "probe-0"],
        refusals: Some(2),
        ..Expect::default()
    }
    .check(&s.repo, &s.id, &run);
    let files = landed_here(&s);
    assert!(files.iter().any(|f| f == "probe-1"), "{files:?}");
    assert_eq!(s.repo.events("spec_completed")[0]["sandbox"], "kubernetes");
    // The prompt does not promise a gate the pod does not have.
    let bodies: String = api.requests().iter().map(|r| r.text()).collect();
    assert!(
        bodies.contains("with your run_shell_command tool as usual."),
        "the prompt never reached the API"
    );
    assert!(
        !bodies.contains("command gate checks"),
        "the prompt promises a gate"
    );
    assert!(api.unexpected.lock().expect("lock").is_empty());
    assert_honest(&s, &said, GEMINI_KEY, port, &["[[rule]]", "gemini-api-key"]);
}

// ---- aider ----

/// The key aider gets (and that must be in nothing chant says).
const AIDER_KEY: &str = "sk-test-k8s-aider-71e4c09b2d58a3f6";

fn aider_image() -> Option<String> {
    let program = std::env::var("CHANT_AIDER").unwrap_or_else(|_| "aider".to_string());
    cli(&program, "CHANT_REQUIRE_AIDER")?;
    image::with_agent(common::agent_images::aider(), "chant-test-k8s-aider")
}

/// aider's reply creating (empty `search`) or editing `file` (its "diff" format).
fn aider_edit(file: &str, replace: &str) -> String {
    format!("{file}\n```\n<<<<<<< SEARCH\n=======\n{replace}\n>>>>>>> REPLACE\n```\n\n")
}

/// aider (as its image has it on PATH) in a pod, replying `reply` once, `extra` under
/// `agent:`.
fn aider_in_a_pod(reply: String, extra: &str) -> Option<Pod<common::openai::FakeOpenAi>> {
    let image = aider_image()?;
    Some(in_a_pod(
        &image,
        &format!(
            "[aider, --model, openai/{}, --edit-format, diff]",
            common::openai::MODEL
        ),
        extra,
        |l| common::openai::FakeOpenAi::serve(l, vec![Turn::Text(reply)]),
        |api| {
            format!(
                "OPENAI_API_KEY={AIDER_KEY}\nOPENAI_BASE_URL={}\n",
                api.base_url()
            )
        },
    ))
}

#[test]
fn aider_in_a_pod_lands_an_allowed_edit_and_never_runs_what_the_model_suggests() {
    let reply = aider_edit("hello.txt", "Hello from a pod")
        + "```bash\ntouch /workspace/repo/command-ran\n```\n";
    let Some((s, api, port)) = aider_in_a_pod(reply, "") else {
        return;
    };
    let run = s.work();
    let said = common::live::everything_chant_said(&s.repo, &run);
    assert_eq!(run.code(), 0, "{said}");
    // Everything the pod left is pushed and judged: had aider run the suggestion (or left
    // its history files), they would be on the branch.
    Expect {
        landed: &[("hello.txt", "Hello from a pod\n")],
        not_landed: &[".aider", "command-ran"],
        ..Expect::default()
    }
    .check(&s.repo, &s.id, &run);
    let auth: Vec<_> = api
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .collect();
    assert!(!auth.is_empty());
    assert!(
        auth.iter().all(|a| *a == format!("Bearer {AIDER_KEY}")),
        "{auth:?}"
    );
    let done = &s.repo.events("spec_completed")[0];
    assert_eq!(done["sandbox"], "kubernetes");
    assert_eq!(done["details"]["agent_edits_applied"], 1, "{done}");
    assert!(api.unexpected.lock().expect("lock").is_empty());
    assert_honest(&s, &said, AIDER_KEY, port, &[]);
}

#[test]
fn a_denied_edit_by_aider_in_a_pod_is_refused_by_chants_check_and_nothing_lands() {
    let reply = aider_edit("secret.txt", "written") + &aider_edit("hello.txt", "allowed");
    let Some((s, _api, port)) =
        aider_in_a_pod(reply, "  permissions:\n    deny_edit: [secret.txt]\n")
    else {
        return;
    };
    let run = s.work();
    let said = common::live::everything_chant_said(&s.repo, &run);
    // aider has no rules of its own: the edit happens in the pod, and chant's check on
    // what it pushed refuses the whole result.
    assert_eq!(run.code(), 1, "{said}");
    let violations: Vec<String> = s
        .repo
        .events("policy_violation")
        .iter()
        .filter_map(|e| e["details"]["path"].as_str().map(str::to_string))
        .collect();
    assert_eq!(violations, ["secret.txt"], "{said}");
    assert_eq!(s.repo.rev(&format!("chant/{}", s.id)), s.repo.rev("main"));
    assert_eq!(s.repo.events("spec_failed").len(), 1);
    assert_honest(&s, &said, AIDER_KEY, port, &[]);
}

// ---- The repository's own agent config in a pod ----

#[path = "committed.rs"]
mod committed;
