//! init, add, list, show over real temporary repositories.

mod common;

use common::TestRepo;

#[test]
fn init_add_list_show() {
    let repo = TestRepo::new();
    repo.chant(&["init"])
        .assert_ok()
        .stdout_has("created .chant/config.md");
    assert!(repo.exists(".chant/specs"));
    assert!(repo.read(".chant/.gitignore").contains("/.locks/"));
    let id = repo.chant(&["add", "Fix the login"]).assert_ok().stdout();
    let id = id.trim();
    assert_eq!(id.len(), 18, "id alone on stdout: {id:?}");
    let list = repo.chant(&["list"]).assert_ok().stdout();
    assert!(
        list.contains(id) && list.contains("Fix the login") && list.contains("pending"),
        "{list}"
    );
    let short = &id[15..];
    repo.chant(&["show", short])
        .assert_ok()
        .stdout_has("# Fix the login")
        .stdout_has("## Acceptance Criteria");
}

#[test]
fn init_twice_changes_nothing() {
    let repo = TestRepo::initialised();
    let before = repo.read(".chant/config.md");
    repo.chant(&["init"])
        .assert_ok()
        .stdout_has("nothing changed");
    assert_eq!(before, repo.read(".chant/config.md"));
}

#[test]
fn init_outside_a_repository_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = TestRepo::new();
    let mut cmd = repo.chant_cmd(&["init"]);
    cmd.current_dir(dir.path()).env(
        "GIT_CEILING_DIRECTORIES",
        dir.path().parent().expect("parent"),
    );
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a git repository"));
}
