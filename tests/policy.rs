//! The policy check of `git chant work` attacked as an agent would: symlinks judged by where
//! they resolve, names other file systems read as `.git`/`.chant`/a denied path, secret
//! values smuggled out in encodings, and refused runs that must not grow the object store.
//! Each fixture agent (fixtures/agents/) plants many variants of one class in one run; each
//! variant is checked on its own.

mod common;

use common::TestRepo;
use serde_json::Value;

/// A repository whose agent is the fixture `agent`, with `extra` YAML under `agent:`.
fn setup(agent: &str, extra: &str) -> (TestRepo, String) {
    let repo = TestRepo::initialised();
    repo.use_agent(agent, &format!("  sandbox: none\n{extra}"), "");
    let id = repo.add_spec("Attack the check", &[]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    (repo, id)
}

/// The violations recorded for `path`, as (rule, detail).
fn violations_for(violations: &[Value], path: &str) -> Vec<(String, String)> {
    violations
        .iter()
        .filter(|v| v["details"]["path"] == path)
        .map(|v| {
            (
                v["details"]["rule"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                v["details"]["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn assert_refused(repo: &TestRepo, id: &str, run: &common::Run) {
    assert!(
        run.stderr().contains("policy violation"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        repo.rev(&format!("chant/{id}")),
        repo.rev("main"),
        "nothing lands"
    );
}

fn fsck_strict(repo: &TestRepo) {
    let out = repo.git_in(&repo.root, &[], &["fsck", "--strict", "--no-dangling"]);
    assert_eq!(out.code(), 0, "git fsck --strict: {}", out.stderr());
}

#[test]
fn symlinks_are_judged_by_where_they_resolve_in_the_landed_tree() {
    let repo = TestRepo::initialised();
    // The start tree: a directory the agent will swap for a link, and a link that stays
    // inside only while lib/inner is a directory.
    repo.write("lib/inner/keep.txt", "kept\n");
    std::os::unix::fs::symlink("lib/inner/../..", repo.path("shortcut")).expect("symlink");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "start tree"]);
    repo.use_agent("symlink-chains.sh", "  sandbox: none\n", "");
    let id = repo.add_spec("Attack the check", &[]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    let run = repo.chant(&["work", &id]).assert_code(1);
    assert_refused(&repo, &id, &run);
    let violations = repo.events("policy_violation");
    for (path, why) in [
        ("chain", "outside"),
        ("up", "outside"),
        ("deep/updir", "outside"),
        ("hop1", "outside"),
        ("hop2", "outside"),
        ("loop1", "never resolves"),
        ("loop2", "never resolves"),
        ("via-a-into-git", "git metadata"),
        ("git-upper", "git metadata"),
        ("git-trailing-dot", "git metadata"),
        ("git-short-name", "git metadata"),
        ("windows-absolute", "absolute"),
        ("backslash-up", "outside"),
        (".gitignore", "never a symlink"),
        ("shortcut", "outside"),
    ] {
        let found = violations_for(&violations, path);
        assert!(
            found
                .iter()
                .any(|(rule, detail)| rule == "symlink" && detail.contains(why)),
            "{path}: no symlink violation saying '{why}': {found:?}"
        );
    }
    // The helper links stay inside and are not blamed.
    for fine in ["a", "lib/inner"] {
        assert!(
            violations_for(&violations, fine)
                .iter()
                .all(|(rule, _)| rule != "symlink"),
            "{fine} was blamed: {violations:?}"
        );
    }
    fsck_strict(&repo);
}

#[test]
fn near_misses_land_and_git_fsck_strict_accepts_the_landed_tree() {
    let (repo, id) = setup("near-misses.sh", "");
    repo.chant(&["work", &id]).assert_ok();
    let branch = format!("chant/{id}");
    let tree = repo.git(&["ls-tree", "-r", "--name-only", &branch]);
    for path in [
        "a",
        "readme-link",
        "docs/readme",
        "via-missing",
        ".github/workflows/ci.yml",
        ".gitkeep",
        ".git-blame-ignore-revs",
        ".gitignore",
        "dot.git.md",
    ] {
        assert!(
            tree.lines().any(|l| l == path),
            "{path} did not land: {tree}"
        );
    }
    fsck_strict(&repo);
}

#[test]
fn names_macos_and_windows_read_as_git_chant_or_a_denied_path_never_land() {
    let (repo, id) = setup(
        "lookalike-names.sh",
        "  file_access:\n    denied_paths: [\".env*\", credentials/]\n",
    );
    let run = repo.chant(&["work", &id]).assert_code(1);
    assert_refused(&repo, &id, &run);
    let violations = repo.events("policy_violation");
    let zwnj = '\u{200c}';
    let cases: Vec<(String, &str)> = vec![
        ("sub/.git./hooks/post-checkout".into(), "protected"),
        ("sub/.git /hooks/post-checkout".into(), "protected"),
        (
            "sub/.git::$INDEX_ALLOCATION/hooks/post-checkout".into(),
            "protected",
        ),
        ("sub/git~1/hooks/post-checkout".into(), "protected"),
        ("sub/GIT~1/hooks/post-checkout".into(), "protected"),
        (format!("sub/.g{zwnj}it/hooks/post-checkout"), "protected"),
        (".gitmodules.".into(), "protected"),
        ("GITMOD~1".into(), "protected"),
        ("docs/.GITATTRIBUTES".into(), "protected"),
        (".gitattributes ".into(), "protected"),
        ("gi7d29~1".into(), "protected"),
        (".CHANT/config.md".into(), "protected"),
        (".chant./config.md".into(), "protected"),
        (format!(".cha{zwnj}nt/config.md"), "protected"),
        ("chant~1/config.md".into(), "protected"),
        (".ENV".into(), "agent.file_access.denied_paths"),
        (".env.".into(), "agent.file_access.denied_paths"),
        (".env::$DATA".into(), "agent.file_access.denied_paths"),
        ("CREDEN~1/aws.json".into(), "file_name"),
    ];
    for (path, want) in &cases {
        let found = violations_for(&violations, path);
        assert!(
            found.iter().any(|(rule, _)| rule == want),
            "{path:?}: no {want} violation: {found:?}"
        );
    }
    fsck_strict(&repo);
}

/// The forms of `value` the fixture writes, as they would appear in a leaked record.
fn encodings(value: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value);
    vec![
        value.to_string(),
        b64[..b64.len() - 4].to_string(),
        url[..url.len() - 2].to_string(),
        hex::encode(value),
    ]
}

#[test]
fn a_secret_value_in_any_common_encoding_is_a_violation_named_never_shown() {
    let key = "sk-live-Zq9/x+Tw?>~";
    let (repo, id) = setup(
        "secret-forms.sh",
        "  secrets:\n    expose: [AGENT_API_KEY]\n",
    );
    let out = repo
        .chant_cmd(&["work", &id])
        .env("AGENT_API_KEY", key)
        .output()
        .expect("run");
    let run = common::Run(out).assert_code(1);
    assert_refused(&repo, &id, &run);
    let violations = repo.events("policy_violation");
    for (path, form) in [
        ("raw.txt", "as is"),
        ("b64-0.txt", "base64"),
        ("b64-1.txt", "base64"),
        ("b64-2.txt", "base64"),
        ("b64-url.txt", "base64"),
        ("b64-wrapped.txt", "base64"),
        ("hex.txt", "hex"),
        ("hex-upper.txt", "hex"),
        ("url.txt", "URL-encoded"),
        ("straddle.txt", "as is"),
        ("link-to-key", "as is"),
    ] {
        let found = violations_for(&violations, path);
        assert!(
            found.iter().any(|(rule, detail)| rule == "secret_in_change"
                && detail.contains("AGENT_API_KEY")
                && detail.contains(form)),
            "{path}: no secret_in_change ({form}): {found:?}"
        );
    }
    // The file named after the encoded key is named with that part masked.
    assert!(
        violations
            .iter()
            .any(|v| v["details"]["rule"] == "secret_in_change"
                && v["details"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("name-***"))),
        "{violations:?}"
    );
    assert!(violations_for(&violations, "clean.txt").is_empty());
    let ledger = repo.git(&["log", "--format=%B", "refs/chant/audit"]);
    let printed = format!("{}{}", run.stdout(), run.stderr());
    for form in encodings(key) {
        assert!(!ledger.contains(&form), "ledger holds {form}");
        assert!(!printed.contains(&form), "output holds {form}");
    }
}

#[test]
fn values_shorter_than_eight_bytes_are_not_searched() {
    // A five-byte value would match ordinary text: the same script then lands.
    let (repo, id) = setup(
        "secret-forms.sh",
        "  secrets:\n    expose: [AGENT_API_KEY]\n",
    );
    let out = repo
        .chant_cmd(&["work", &id])
        .env("AGENT_API_KEY", "short")
        .output()
        .expect("run");
    common::Run(out).assert_ok();
}

/// Bytes under `.git/objects`: loose objects, packs, everything.
fn object_store_size(repo: &TestRepo) -> u64 {
    fn walk(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&repo.path(".git/objects"))
}

#[test]
fn a_refused_run_leaves_the_object_store_as_it_was() {
    let (repo, id) = setup(
        "big-refused.sh",
        "  file_access:\n    max_file_size: 100M\n",
    );
    let before = object_store_size(&repo);
    let run = repo.chant(&["work", &id]).assert_code(1);
    assert_refused(&repo, &id, &run);
    let after = object_store_size(&repo);
    assert!(
        after < before + 1024 * 1024,
        "the object store grew from {before} to {after} bytes"
    );
    let leftovers: Vec<_> = std::fs::read_dir(repo.path(".git/objects"))
        .expect("objects")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("tmp_objdir"))
        .collect();
    assert!(leftovers.is_empty(), "quarantine left behind");
}

#[test]
fn a_change_never_replaces_what_was_withheld_from_the_agent() {
    let repo = TestRepo::initialised();
    repo.write("secrets/a.key", "private\n");
    repo.write("secrets/notes.md", "visible\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "a withheld file"]);
    repo.use_agent(
        "replace-withheld.sh",
        "  sandbox: none\n  file_access:\n    denied_paths: [\"*.key\"]\n",
        "",
    );
    let id = repo.add_spec("Attack the check", &[]);
    repo.git(&["add", "-A"]);
    // An unpopulated submodule, never checked out into a clone.
    let head = repo.rev("HEAD").expect("HEAD");
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{head},vendor/lib"),
    ]);
    repo.git(&["commit", "--quiet", "-m", "spec and a submodule"]);
    let run = repo.chant(&["work", &id]).assert_code(1);
    assert_refused(&repo, &id, &run);
    let violations = repo.events("policy_violation");
    for (path, withheld) in [
        ("secrets", "secrets/a.key"),
        ("vendor/lib/x.c", "vendor/lib"),
    ] {
        let found = violations_for(&violations, path);
        assert!(
            found
                .iter()
                .any(|(rule, detail)| rule == "withheld" && detail.contains(withheld)),
            "{path}: no withheld violation naming {withheld}: {found:?}"
        );
    }
}
