//! The help people read, snapshotted (review changes with `cargo insta review` or by
//! reading the diff of tests/snapshots/).

mod common;

use common::TestRepo;

#[test]
fn top_level_help() {
    let repo = TestRepo::new();
    let out = repo.chant(&["--help"]).assert_ok().stdout();
    insta::assert_snapshot!("help", out);
}

#[test]
fn every_subcommand_teaches_with_examples() {
    let repo = TestRepo::new();
    for sub in git_chant::cli::command().get_subcommands() {
        let name = sub.get_name().to_string();
        if name == "help" {
            continue;
        }
        let out = repo.chant(&[&name, "--help"]).assert_ok().stdout();
        assert!(
            out.contains("Examples:"),
            "`git chant {name} --help` has no examples:\n{out}"
        );
        insta::assert_snapshot!(format!("help-{name}"), out);
    }
}

#[test]
fn usage_errors_exit_2() {
    let repo = TestRepo::new();
    repo.chant(&["no-such-command"])
        .assert_code(2)
        .stderr_has("unrecognized subcommand");
    repo.chant(&["init", "--tier", "galactic"])
        .assert_code(2)
        .stderr_has("galactic");
}

#[test]
fn man_page_and_completions() {
    let repo = TestRepo::new();
    let page = repo.chant(&["man"]).assert_ok().stdout();
    assert!(
        page.contains(".TH git-chant"),
        "{}",
        &page[..page.len().min(200)]
    );
    let dir = repo.tmp.path().join("man1");
    repo.chant(&["man", "--dir", dir.to_str().expect("utf8")])
        .assert_ok();
    assert!(dir.join("git-chant.1").is_file());
    repo.chant(&["completions", "bash"])
        .assert_ok()
        .stdout_has("git-chant");
}

#[test]
fn audit_ship_help() {
    let repo = TestRepo::new();
    let out = repo
        .chant(&["audit", "ship", "--help"])
        .assert_ok()
        .stdout();
    assert!(out.contains("Examples:"), "{out}");
    insta::assert_snapshot!("help-audit-ship", out);
}
