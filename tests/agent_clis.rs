//! The real Codex CLI, opencode, Gemini CLI and aider, driven directly (no chant yet), each
//! non-interactively inside a network namespace holding only `lo` against a scripted fake of
//! its model API (tests/common/openai.rs, gemini.rs): a scripted write lands in the work
//! dir, a scripted shell command runs, and the tool outputs the CLI sent back are recorded.
//!
//! A test whose CLI is missing is skipped with a loud message unless its
//! `CHANT_REQUIRE_<CLI>` variable is set (`.ci/run` installs the pinned CLIs and sets them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

use common::anthropic::Turn;
use common::gemini::FakeGemini;
use common::live::netns_for;
use common::netns::Netns;
use common::openai::FakeOpenAi;

/// The API key every test gives its CLI.
const API_KEY: &str = "sk-test-5d1c8e2a9f7b4036";

/// A temp dir with `work/` (the CLI's working directory) and `home/` (its HOME).
struct Dirs {
    _tmp: tempfile::TempDir,
    work: PathBuf,
    home: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let tmp = tempfile::tempdir().expect("temp dir");
        let work = tmp.path().join("work");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&work).expect("work dir");
        std::fs::create_dir_all(&home).expect("home");
        Dirs {
            _tmp: tmp,
            work,
            home,
        }
    }
}

/// `program` in the namespace with an environment as empty as chant gives an agent.
fn agent(netns: &Netns, program: &str, dirs: &Dirs) -> Command {
    let mut cmd = netns.command(program);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &dirs.home)
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .current_dir(&dirs.work)
        .stdin(std::process::Stdio::null());
    cmd
}

/// Runs `cmd`, printing its output and the time it took.
fn run(test: &str, cmd: &mut Command) -> Output {
    let started = std::time::Instant::now();
    let out = cmd.output().expect("run the CLI");
    eprintln!(
        "--- {test}: {} in {} ms\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        started.elapsed().as_millis(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn opencode_run_writes_a_file_and_runs_a_command_from_the_fake_responses_script() {
    let test = "opencode_run_writes_a_file_and_runs_a_command_from_the_fake_responses_script";
    let Some(netns) = netns_for(test, "opencode", "CHANT_REQUIRE_OPENCODE") else {
        return;
    };
    let dirs = Dirs::new();
    let written = dirs.work.join("hello.txt");
    let api = FakeOpenAi::start(
        &netns,
        vec![
            Turn::tool(
                "write",
                json!({"filePath": written, "content": "Hello from opencode\n"}),
            ),
            Turn::tool(
                "bash",
                json!({"command": "echo ran-by-opencode > ran.txt", "description": "scripted"}),
            ),
            Turn::Text("All done.".into()),
        ],
    );
    let out = run(
        test,
        agent(&netns, "opencode", &dirs)
            .args(["run", "--format", "json", "--model"])
            .arg(format!("openai/{}", common::openai::MODEL))
            .arg("Say hello")
            .env("OPENAI_API_KEY", API_KEY)
            .env("OPENAI_BASE_URL", api.base_url())
            .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
            .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
            .env(
                "OPENCODE_CONFIG_CONTENT",
                json!({"permission": {"edit": "allow", "bash": "allow"}}).to_string(),
            ),
    );
    assert!(out.status.success());
    assert_eq!(read(&written), "Hello from opencode\n");
    assert_eq!(read(&dirs.work.join("ran.txt")), "ran-by-opencode\n");
    let outputs = api.tool_outputs();
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert_eq!(outputs[0].call_id, "call_0_0");
    assert_eq!(outputs[1].call_id, "call_1_0");
    assert!(api.unexpected.lock().unwrap().is_empty());
}

/// A model Codex knows (its bundled catalogue) that is not in "code mode" and gets the
/// freeform `apply_patch` tool; an unknown model (gpt-4.1 here) is offered no edit tool.
const CODEX_MODEL: &str = "gpt-5.5";

#[test]
fn codex_exec_writes_a_file_and_runs_a_command_from_the_fake_responses_script() {
    let test = "codex_exec_writes_a_file_and_runs_a_command_from_the_fake_responses_script";
    let Some(netns) = netns_for(test, "codex", "CHANT_REQUIRE_CODEX") else {
        return;
    };
    let dirs = Dirs::new();
    let written = dirs.work.join("hello.txt");
    let patch = format!(
        "*** Begin Patch\n*** Add File: {}\n+Hello from codex\n*** End Patch\n",
        written.display()
    );
    let api = FakeOpenAi::start(
        &netns,
        vec![
            Turn::tool("apply_patch", json!(patch)),
            Turn::tool(
                "exec_command",
                json!({"cmd": "echo ran-by-codex > ran.txt"}),
            ),
            Turn::Text("All done.".into()),
        ],
    );
    let provider = format!(
        "model_providers.fake={{name=\"fake\",base_url=\"{}\",env_key=\"OPENAI_API_KEY\",wire_api=\"responses\"}}",
        api.base_url()
    );
    let codex_home = dirs.home.join(".codex");
    std::fs::create_dir_all(&codex_home).expect("CODEX_HOME");
    let out = run(
        test,
        agent(&netns, "codex", &dirs)
            .args([
                "exec",
                "--json",
                "--skip-git-repo-check",
                "-s",
                "danger-full-access",
            ])
            .args(["-m", CODEX_MODEL, "-C"])
            .arg(&dirs.work)
            .args(["-c", "model_provider=fake", "-c", &provider])
            .args(["-c", "check_for_update_on_startup=false"])
            .args(["-c", "analytics.enabled=false", "--disable", "plugins"])
            .arg("Say hello")
            .env("CODEX_HOME", &codex_home)
            .env("OPENAI_API_KEY", API_KEY),
    );
    let first = api.model_requests().into_iter().next().unwrap_or_default();
    let tools: Vec<String> = first["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t["type"], t["name"]))
        .collect();
    eprintln!("--- tools codex offered: {tools:?}");
    assert!(out.status.success());
    assert_eq!(read(&written), "Hello from codex\n");
    assert_eq!(read(&dirs.work.join("ran.txt")), "ran-by-codex\n");
    let outputs = api.tool_outputs();
    eprintln!("--- tool outputs: {outputs:?}");
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert_eq!(outputs[0].call_id, "call_0_0");
    assert!(outputs[0].output.contains("Success."), "{outputs:?}");
    assert!(
        outputs[1].output.contains("exited with code 0"),
        "{outputs:?}"
    );
    assert_eq!(outputs[1].call_id, "call_1_0");
    assert!(api.unexpected.lock().unwrap().is_empty());
}

#[test]
fn gemini_p_writes_a_file_and_runs_a_command_from_the_fake_generate_content_script() {
    let test = "gemini_p_writes_a_file_and_runs_a_command_from_the_fake_generate_content_script";
    let Some(netns) = netns_for(test, "gemini", "CHANT_REQUIRE_GEMINI") else {
        return;
    };
    let dirs = Dirs::new();
    let written = dirs.work.join("hello.txt");
    let api = FakeGemini::start(
        &netns,
        vec![
            Turn::tool(
                "write_file",
                json!({"file_path": written, "content": "Hello from gemini\n"}),
            ),
            Turn::tool(
                "run_shell_command",
                json!({"command": "echo ran-by-gemini > ran.txt", "description": "scripted"}),
            ),
            Turn::Text("All done.".into()),
        ],
    );
    // Without a settings file choosing the key, the CLI picks another auth type and exits 41.
    let settings = dirs.home.join(".gemini");
    std::fs::create_dir_all(&settings).expect(".gemini");
    std::fs::write(
        settings.join("settings.json"),
        json!({"security": {"auth": {"selectedType": "gemini-api-key"}},
               "privacy": {"usageStatisticsEnabled": false},
               "telemetry": {"enabled": false},
               "general": {"disableAutoUpdate": true}})
        .to_string(),
    )
    .expect("settings.json");
    let out = run(
        test,
        agent(&netns, "gemini", &dirs)
            .args(["-p", "Say hello", "--skip-trust", "--approval-mode", "yolo"])
            .args(["--output-format", "stream-json", "-m", "gemini-2.5-pro"])
            .env("GEMINI_API_KEY", API_KEY)
            .env("GOOGLE_GEMINI_BASE_URL", api.url()),
    );
    let paths: Vec<String> = api.requests().iter().map(|r| r.path.clone()).collect();
    eprintln!("--- requests: {paths:?}");
    assert!(out.status.success());
    assert_eq!(read(&written), "Hello from gemini\n");
    assert_eq!(read(&dirs.work.join("ran.txt")), "ran-by-gemini\n");
    let responses = api.function_responses();
    eprintln!("--- function responses: {responses:?}");
    assert_eq!(responses.len(), 2, "{responses:?}");
    assert_eq!(responses[0].name, "write_file");
    assert_eq!(responses[1].name, "run_shell_command");
    assert_eq!(responses[0].id.as_deref(), Some("call_0_0"));
    assert_eq!(responses[1].id.as_deref(), Some("call_1_0"));
    assert!(
        responses[0].response["output"]
            .as_str()
            .is_some_and(|o| o.contains("Successfully created")),
        "{responses:?}"
    );
    assert!(api.unexpected.lock().unwrap().is_empty());
}

/// aider: `CHANT_AIDER` (set by .ci/run, which installs it in a venv), else `aider` on PATH.
fn aider_program() -> String {
    std::env::var("CHANT_AIDER").unwrap_or_else(|_| "aider".to_string())
}

#[test]
fn aider_message_writes_a_file_from_the_fake_chat_completions_script_and_never_runs_its_shell_command(
) {
    let test =
        "aider_message_writes_a_file_from_the_fake_chat_completions_script_and_never_runs_its_shell_command";
    let aider = aider_program();
    let Some(netns) = netns_for(test, &aider, "CHANT_REQUIRE_AIDER") else {
        return;
    };
    let dirs = Dirs::new();
    // aider has no tools: it edits from the text (here its "diff" format: a file name, then a
    // fenced SEARCH/REPLACE block, an empty SEARCH making a new file) and offers to run the
    // fenced shell commands it finds. Its "whole" format takes the bash block for a file.
    let reply =
        "hello.txt\n```\n<<<<<<< SEARCH\n=======\nHello from aider\n>>>>>>> REPLACE\n```\n\n\
                 ```bash\necho ran-by-aider > ran.txt\n```\n";
    let api = FakeOpenAi::start(&netns, vec![Turn::Text(reply.into())]);
    let out = run(
        test,
        agent(&netns, &aider, &dirs)
            .args(["--model", "openai/gpt-4.1", "--openai-api-base"])
            .arg(api.base_url())
            .args([
                "--message",
                "Say hello",
                "--yes-always",
                "--no-auto-commits",
            ])
            .args(["--no-git", "--edit-format", "diff", "--no-check-update"])
            .args([
                "--analytics-disable",
                "--no-show-release-notes",
                "--no-pretty",
            ])
            .env("OPENAI_API_KEY", API_KEY),
    );
    assert!(out.status.success());
    assert_eq!(read(&dirs.work.join("hello.txt")), "Hello from aider\n");
    // aider has no shell tool: it only offers to run the commands the model suggests, and
    // that question needs an explicit yes (`--yes-always` does not answer it; with no
    // terminal the answer is no). So nothing ran.
    assert!(!dirs.work.join("ran.txt").exists());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Applied edit to hello.txt"), "{stdout}");
    assert!(!stdout.contains("Running echo"), "{stdout}");
    // One request: the prompt went out once, and nothing (no edit error) was sent back.
    let requests = api.model_requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let last_user = requests[0]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rfind(|m| m["role"] == "user")
        .cloned()
        .unwrap_or_default();
    assert_eq!(last_user["content"], "Say hello");
    assert!(api.unexpected.lock().unwrap().is_empty());
}

#[test]
fn aider_sends_a_failed_edit_back_to_the_fake_and_applies_the_next_one() {
    let test = "aider_sends_a_failed_edit_back_to_the_fake_and_applies_the_next_one";
    let aider = aider_program();
    let Some(netns) = netns_for(test, &aider, "CHANT_REQUIRE_AIDER") else {
        return;
    };
    let dirs = Dirs::new();
    std::fs::write(dirs.work.join("hello.txt"), "Hello\n").expect("hello.txt");
    // aider's only "tool result": an edit that does not apply is reported back to the model
    // as the next user message (its reflection), which the fake records.
    let block = |search: &str, replace: &str| {
        format!(
            "hello.txt\n```\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"
        )
    };
    let api = FakeOpenAi::start(
        &netns,
        vec![
            Turn::Text(block("Goodbye", "Hello from aider")),
            Turn::Text(block("Hello", "Hello from aider")),
        ],
    );
    let out = run(
        test,
        agent(&netns, &aider, &dirs)
            .args(["--model", "openai/gpt-4.1", "--openai-api-base"])
            .arg(api.base_url())
            .args([
                "--message",
                "Greet better",
                "--yes-always",
                "--no-auto-commits",
            ])
            .args(["--no-git", "--edit-format", "diff", "--no-check-update"])
            .args([
                "--analytics-disable",
                "--no-show-release-notes",
                "--no-pretty",
            ])
            .arg("hello.txt")
            .env("OPENAI_API_KEY", API_KEY),
    );
    assert!(out.status.success());
    assert_eq!(read(&dirs.work.join("hello.txt")), "Hello from aider\n");
    let requests = api.model_requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let sent_back = requests[1]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rfind(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    eprintln!("--- aider sent back:\n{sent_back}");
    assert!(
        sent_back.contains("SearchReplaceNoExactMatch"),
        "{sent_back}"
    );
    assert!(sent_back.contains("Goodbye"), "{sent_back}");
    assert!(api.unexpected.lock().unwrap().is_empty());
}
