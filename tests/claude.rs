//! The real Claude Code CLI against the scripted fake of its API, inside a network
//! namespace holding only `lo` (tests/common/netns.rs, anthropic.rs, claude.rs).

mod common;

use common::anthropic::Turn;
use common::claude::Live;

#[test]
fn the_namespace_holds_only_loopback() {
    let Ok(ns) = common::netns::Netns::new() else {
        if std::env::var_os("CHANT_REQUIRE_CLAUDE").is_some() {
            panic!("no network namespace (CHANT_REQUIRE_CLAUDE is set)");
        }
        eprintln!("!!! SKIPPED: no network namespace here (run as root)");
        return;
    };
    assert_eq!(ns.interfaces(), vec!["lo".to_string()]);
}

#[test]
fn claude_p_in_the_namespace_writes_a_file_and_runs_a_command_from_the_fake_script() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let work = tmp.path().join("work");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&work).expect("work dir");
    std::fs::create_dir_all(&home).expect("home");
    let written = work.join("hello.txt");
    let Some(live) = Live::start(
        "claude_p_in_the_namespace_writes_a_file_and_runs_a_command_from_the_fake_script",
        vec![
            Turn::write(&written.to_string_lossy(), "Hello from Claude\n"),
            Turn::bash("echo ran > ran.txt"),
            Turn::Text("All done.".into()),
        ],
    ) else {
        return;
    };
    let out = live
        .netns
        .command("claude")
        .args([
            "-p",
            "Say hello",
            "--output-format",
            "stream-json",
            "--verbose",
        ])
        .arg("--dangerously-skip-permissions")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("LANG", "C.UTF-8")
        .env("IS_SANDBOX", "1")
        .envs(live.env())
        .current_dir(&work)
        .output()
        .expect("run claude");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "claude failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&written).expect("the Write landed"),
        "Hello from Claude\n"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("ran.txt")).expect("the Bash ran"),
        "ran\n"
    );
    let results = live.api.tool_results();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results.iter().all(|r| !r.is_error), "{results:?}");
    let last = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(last).expect("a result event");
    assert_eq!(result["type"], "result");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["num_turns"], 3);
    assert!(live.api.unexpected.lock().expect("lock").is_empty());
}
