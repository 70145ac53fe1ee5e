//! `git chant demo` runs the whole flow end to end.

mod common;

use common::TestRepo;

#[test]
fn demo_runs_end_to_end() {
    let repo = TestRepo::new();
    let dir = repo.tmp.path().join("demo");
    let out = repo
        .chant(&["demo", "--dir", dir.to_str().expect("utf8")])
        .assert_ok()
        .stdout();
    assert!(out.contains("$ git chant init"), "{out}");
    assert!(out.contains("Greet the user"), "{out}");
    assert!(dir.join(".chant/config.md").is_file());
    repo.chant(&["demo", "--dir", dir.to_str().expect("utf8")])
        .assert_code(2)
        .stderr_has("already exists");
}

/// A newcomer runs the demo before git-chant is on PATH: the hooks `init` installs must
/// still find it inside the demo.
#[test]
fn demo_works_without_git_chant_on_path() {
    let repo = TestRepo::new();
    let dir = repo.tmp.path().join("demo");
    let out = repo
        .chant_cmd(&["demo", "--dir", dir.to_str().expect("utf8")])
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .expect("run");
    let run = common::Run(out).assert_ok();
    assert!(run.stdout().contains("verified"), "{}", run.stdout());
}
