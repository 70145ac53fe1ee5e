//! `git chant work` with the real Gemini CLI (`agent.kind: gemini`, recognised from
//! `agent.command: [gemini]`) against the scripted fake of the Gemini API, inside a network
//! namespace holding only `lo` (tests/common/live.rs, gemini.rs).

mod common;

use serde_json::json;

use common::anthropic::Turn;
use common::gemini::FakeGemini;
use common::live::{command_runs, everything_chant_said, landed, repo_with_agent, Live};
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
    let branch = format!("chant/{id}");
    assert_eq!(
        repo.git(&["show", &format!("{branch}:hello.txt")]),
        "Hello from Gemini\n"
    );
    assert_eq!(repo.git(&["show", &format!("{branch}:ran.txt")]), "ran\n");
    let files = landed(&repo, &branch);
    assert!(
        !files.iter().any(|f| f.starts_with(".gemini/")),
        "settings never land: {files:?}"
    );
    let responses = live.api.function_responses();
    eprintln!("{responses:#?}");
    assert_eq!(errors(&live.api), [false, false], "{responses:?}");
    // The key reached Gemini CLI's shell (the command echoed it to the model), but nothing
    // chant says holds it.
    assert!(
        responses[1].response.to_string().contains(API_KEY),
        "{responses:?}"
    );
    let said = everything_chant_said(&repo, &run);
    assert!(!said.contains(API_KEY), "the API key leaked:\n{said}");
    assert_eq!(
        command_runs(&repo, "allowed"),
        ["echo ran > ran.txt; echo key=$GEMINI_API_KEY"]
    );
    let via = &repo.events("command_run")[0]["details"]["via"];
    assert_eq!(via, "gemini-hook");
    let done = &repo.events("spec_completed")[0]["details"];
    assert_eq!(done["agent_turns"], 3, "{done}");
    assert_eq!(done["agent_refusals"], 0, "{done}");
    assert_eq!(done["agent_is_error"], false, "{done}");
    assert_eq!(done["agent_tool_calls"], 2, "{done}");
    assert!(
        done["agent_session_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{done}"
    );
    assert!(
        done["agent_input_tokens"].as_u64().is_some_and(|n| n > 0),
        "{done}"
    );
    assert!(
        run.stdout()
            .contains("gemini: [turn 1] write_file hello.txt"),
        "{}",
        run.stdout()
    );
    assert!(live.api.unexpected.lock().expect("lock").is_empty());
}
