//! Spec ids, resolution and spec files.

mod common;

use common::TestRepo;

fn add(repo: &TestRepo, title: &str, ts: &str, seed: &str) -> String {
    let out = repo
        .chant_cmd(&["add", title])
        .env("CHANT_TIMESTAMP", ts)
        .env("CHANT_RANDOMNESS_SEED", seed)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn ids_follow_the_date_and_sequence() {
    let repo = TestRepo::initialised();
    let a = add(&repo, "First", "2026-01-22T10:00:00Z", "1");
    let b = add(&repo, "Second", "2026-01-22T11:00:00Z", "2");
    let c = add(&repo, "Next day", "2026-01-23T09:00:00Z", "3");
    assert!(a.starts_with("2026-01-22-001-"), "{a}");
    assert!(b.starts_with("2026-01-22-002-"), "{b}");
    assert!(c.starts_with("2026-01-23-001-"), "{c}");
}

#[test]
fn short_ids_resolve_and_ambiguity_lists_candidates() {
    let repo = TestRepo::initialised();
    let a = add(&repo, "First", "2026-01-22T10:00:00Z", "1");
    let b = add(&repo, "Second", "2026-01-22T11:00:00Z", "2");
    let run_at = |args: &[&str]| {
        let out = repo
            .chant_cmd(args)
            .env("CHANT_TIMESTAMP", "2026-01-22T12:00:00Z")
            .output()
            .expect("run");
        common::Run(out)
    };
    run_at(&["show", &a[15..]])
        .assert_ok()
        .stdout_has("# First");
    run_at(&["show", "002"]).assert_ok().stdout_has("# Second");
    run_at(&["show", "22-001"])
        .assert_ok()
        .stdout_has("# First");
    run_at(&["show", &b]).assert_ok().stdout_has("# Second");
    run_at(&["show", "2026-01-22"])
        .assert_code(2)
        .stderr_has("is ambiguous")
        .stderr_has(&a)
        .stderr_has(&b);
    run_at(&["show", "zzz"])
        .assert_code(2)
        .stderr_has("no spec matches 'zzz'");
}

#[test]
fn malformed_ids_are_refused_before_touching_paths() {
    let repo = TestRepo::initialised();
    for bad in ["../../etc/passwd", "a/b", "x\u{1b}y", "X7M", ".."] {
        repo.chant(&["show", bad])
            .assert_code(2)
            .stderr_has("is not a spec id");
    }
}

#[test]
fn add_with_targets_and_body_file() {
    let repo = TestRepo::initialised();
    repo.write("notes.md", "Make the greeting friendlier.\n");
    let id = repo
        .chant(&[
            "add",
            "Greet",
            "--target",
            "src/hello.rs",
            "--target",
            "tests/hello.rs",
            "--body-file",
            "notes.md",
        ])
        .assert_ok()
        .stdout();
    let id = id.trim();
    let text = repo.read(&format!(".chant/specs/{id}.md"));
    assert!(text.starts_with("---\ntype: code\nstatus: pending\ntarget_files:\n- src/hello.rs\n- tests/hello.rs\n---\n# Greet\n"), "{text}");
    assert!(text.contains("Make the greeting friendlier."));
    assert!(text.contains("## Acceptance Criteria\n\n- [ ]"));
    let json = repo
        .chant(&["list", "--format", "json"])
        .assert_ok()
        .stdout();
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(parsed[0]["id"], id);
    assert_eq!(parsed[0]["target_files"][1], "tests/hello.rs");
    repo.chant(&["add", "Bad", "--target", "../outside"])
        .assert_code(2)
        .stderr_has("relative path inside the repository");
    repo.chant(&["add", "Bad", "--body-file", "missing.md"])
        .assert_code(2)
        .stderr_has("--body-file missing.md");
    repo.chant(&["add", ""]).assert_code(2).stderr_has("title");
}

#[test]
fn list_filters_by_status_and_reads_chant_specs() {
    let repo = TestRepo::initialised();
    repo.write(
        ".chant/specs/2026-01-24-01x-v06.3.md",
        "---\ntype: code\nstatus: completed\ndepends_on:\n- 2026-01-24-01x-v06.2\ntarget_files:\n- '`src/main.rs`'\ncommits:\n- a30ef3c\nmodel: haiku\n---\n# Implement worktrees\n\nBody.\n",
    );
    add(&repo, "Pending one", "2026-01-22T10:00:00Z", "1");
    let done = repo
        .chant(&["list", "--status", "completed"])
        .assert_ok()
        .stdout();
    assert!(
        done.contains("2026-01-24-01x-v06.3") && !done.contains("Pending one"),
        "{done}"
    );
    let json = repo
        .chant(&["list", "--status", "completed", "--format", "json"])
        .assert_ok()
        .stdout();
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(parsed[0]["target_files"][0], "src/main.rs");
    repo.chant(&["show", "v06.3"])
        .assert_ok()
        .stdout_has("depends:  2026-01-24-01x-v06.2");
}

#[test]
fn commands_need_init() {
    let repo = TestRepo::new();
    repo.chant(&["add", "x"])
        .assert_code(2)
        .stderr_has("run `git chant init`");
    repo.chant(&["list"])
        .assert_code(2)
        .stderr_has("run `git chant init`");
}

/// Three specs: one fine, one not UTF-8 (a Latin-1 "é"), one whose front matter is broken.
fn repo_with_bad_specs() -> (TestRepo, String, String, String) {
    let repo = TestRepo::initialised();
    let good = add(&repo, "Good spec", "2026-01-22T10:00:00Z", "1");
    let latin1 = add(&repo, "Latin-1 spec", "2026-01-22T11:00:00Z", "2");
    let broken = add(&repo, "Broken spec", "2026-01-22T12:00:00Z", "3");
    let dir = repo.root.join(".chant/specs");
    std::fs::write(
        dir.join(format!("{latin1}.md")),
        b"---\nstatus: pending\n---\n# Caf\xe9 menu\n",
    )
    .expect("write");
    std::fs::write(
        dir.join(format!("{broken}.md")),
        "---\nstatus: [pending\n---\n# Broken\n",
    )
    .expect("write");
    (repo, good, latin1, broken)
}

#[test]
fn a_spec_that_is_not_utf8_is_bad_input_naming_the_file() {
    let (repo, _, latin1, _) = repo_with_bad_specs();
    for args in [vec!["show", latin1.as_str()], vec!["work", latin1.as_str()]] {
        let out = repo.chant(&args).assert_code(2);
        assert!(
            out.stderr().contains(&format!("{latin1}.md")) && out.stderr().contains("UTF-8"),
            "{args:?}: {}",
            out.stderr()
        );
    }
}

#[test]
fn list_shows_every_readable_spec_and_names_the_unreadable_ones() {
    let (repo, good, latin1, broken) = repo_with_bad_specs();
    let out = repo.chant(&["list"]).assert_ok();
    assert!(out.stdout().contains("Good spec"), "{}", out.stdout());
    for bad in [&latin1, &broken] {
        assert!(
            out.stdout()
                .lines()
                .any(|l| l.starts_with(bad.as_str()) && l.contains("unreadable")),
            "{bad} listed as unreadable:\n{}",
            out.stdout()
        );
        assert!(
            out.stderr().contains(&format!("{bad}.md")),
            "{}",
            out.stderr()
        );
    }
    let json: serde_json::Value = serde_json::from_str(
        &repo
            .chant(&["list", "--format", "json"])
            .assert_ok()
            .stdout(),
    )
    .expect("json");
    let statuses: Vec<(String, String)> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or("").to_string(),
                s["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&(good.clone(), "pending".into())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&(latin1, "unreadable".into())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&(broken, "unreadable".into())),
        "{statuses:?}"
    );
    let pending = repo.chant(&["list", "--status", "pending"]).assert_ok();
    assert!(
        !pending.stdout().contains("unreadable"),
        "{}",
        pending.stdout()
    );
    assert!(pending.stdout().contains(&good));
}
