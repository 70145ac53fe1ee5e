//! Secret sources, expose/hide filtering and the agent environment.

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use git_chant::config::{NameList, SecretsConfig};
use git_chant::pattern::NameRules;
use git_chant::secrets::{
    agent_env, collect_with_env, AgentContext, Origin, SecretSource, SecretsError,
};

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
}

fn config(expose: &[&str], hide: &[&str]) -> SecretsConfig {
    SecretsConfig {
        expose: NameList(NameRules::new(expose).expect("valid")),
        hide: NameList(NameRules::new(hide).expect("valid")),
        inject: Default::default(),
        inject_agent_keys: true,
    }
}

#[test]
fn defaults_are_the_environment_then_the_repository_env_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join(".env"),
        "AGENT_API_KEY=from-dotenv\nONLY_FILE=1\n",
    )
    .expect("write");
    let process = env(&[("AGENT_API_KEY", "from-env"), ("ONLY_ENV", "2")]);
    let s = collect_with_env(&[], dir.path(), process).expect("collects");
    assert_eq!(s.get("AGENT_API_KEY"), Some("from-dotenv"));
    assert_eq!(s.get("ONLY_FILE"), Some("1"));
    assert_eq!(s.get("ONLY_ENV"), Some("2"));
    assert_eq!(s.origin("ONLY_ENV"), Some(&Origin::Env));
}

#[test]
fn no_env_file_is_fine_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = collect_with_env(&[], dir.path(), env(&[("A", "1")])).expect("collects");
    assert_eq!(s.names().collect::<Vec<_>>(), ["A"]);
}

#[test]
fn later_sources_win_and_paths_are_relative_to_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("a.env"), "K=a\nA=only-a\n").expect("write");
    fs::write(dir.path().join("b.env"), "export K='b'\n").expect("write");
    let sources = [
        SecretSource::parse("dotenv:a.env").expect("uri"),
        SecretSource::parse("env:").expect("uri"),
        SecretSource::parse("dotenv:b.env").expect("uri"),
    ];
    let s = collect_with_env(&sources, dir.path(), env(&[("K", "env"), ("A", "env")]))
        .expect("collects");
    assert_eq!(s.get("K"), Some("b"));
    assert_eq!(s.get("A"), Some("env"));

    let s = collect_with_env(&sources[..2], dir.path(), env(&[("K", "env")])).expect("collects");
    assert_eq!(s.get("K"), Some("env"));
}

#[test]
fn a_missing_or_malformed_file_is_bad_input_without_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = collect_with_env(
        &[SecretSource::Dotenv("nope.env".into())],
        dir.path(),
        env(&[]),
    )
    .expect_err("missing");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("nope.env"));

    fs::write(dir.path().join("bad.env"), "OK=1\nghp_leakedtoken123\n").expect("write");
    let e = collect_with_env(
        &[SecretSource::Dotenv("bad.env".into())],
        dir.path(),
        env(&[]),
    )
    .expect_err("malformed");
    assert!(matches!(e, SecretsError::Malformed { line: 2, .. }));
    assert!(e.to_string().ends_with("bad.env:2: expected NAME=VALUE"));
    assert!(!e.to_string().contains("ghp_"));
}

#[cfg(unix)]
#[test]
fn dir_source_reads_a_kubernetes_secret_volume() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // Kubernetes' layout: a timestamped data dir, `..data` pointing at it, and one
    // symlink per key pointing through `..data`.
    let stamp = root.join("..2026_01_22_15_30_00.000000001");
    fs::create_dir(&stamp).expect("mkdir");
    fs::write(stamp.join("AGENT_API_KEY"), "sk-from-k8s\n").expect("write");
    fs::write(stamp.join("db.password"), "pa55word").expect("write");
    symlink(&stamp, root.join("..data")).expect("symlink");
    symlink("..data/AGENT_API_KEY", root.join("AGENT_API_KEY")).expect("symlink");
    symlink("..data/db.password", root.join("db.password")).expect("symlink");
    fs::write(root.join(".hidden"), "skip me").expect("write");

    let s = collect_with_env(
        &[SecretSource::Dir(root.to_path_buf())],
        Path::new("/"),
        env(&[]),
    )
    .expect("collects");
    assert_eq!(
        s.names().collect::<Vec<_>>(),
        ["AGENT_API_KEY", "db.password"]
    );
    assert_eq!(s.get("AGENT_API_KEY"), Some("sk-from-k8s"));
    assert_eq!(s.get("db.password"), Some("pa55word"));
}

#[test]
fn dir_source_refuses_names_that_cannot_be_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("bad name"), "v").expect("write");
    let e = collect_with_env(
        &[SecretSource::Dir(dir.path().into())],
        Path::new("/"),
        env(&[]),
    )
    .expect_err("bad name");
    assert!(e.to_string().contains("'bad name'"));
    assert_eq!(e.exit_code(), 2);
}

#[test]
fn hide_beats_expose_and_empty_expose_exposes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let process = env(&[
        ("AGENT_API_KEY", "sk-1"),
        ("NODE_ENV", "test"),
        ("DATABASE_URL", "postgres://u:p@h/db"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
        ("AWS_REGION", "eu-west-1"),
        ("GITHUB_TOKEN", "ghp_x"),
    ]);
    let s = collect_with_env(&[SecretSource::Env], dir.path(), process).expect("collects");

    let seed = config(
        &["AGENT_API_KEY", "NODE_ENV", "DATABASE_URL", "AWS_*"],
        &["DATABASE_URL", "AWS_*", "GITHUB_TOKEN"],
    );
    let names: Vec<String> = s.filtered(&seed).into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["AGENT_API_KEY", "NODE_ENV"]);

    assert!(s.filtered(&config(&[], &[])).is_empty());
    assert_eq!(s.filtered(&config(&["*"], &["*"])), vec![]);
}

#[test]
fn the_redactor_covers_exposed_and_file_values_but_not_the_rest_of_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("team.env"), "VAULT_ONLY=from-a-file-1\n").expect("write");
    let process = env(&[
        ("HOME", "/home/alex"),
        ("PATH", "/usr/bin:/bin"),
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("HTTP_PORT", "8080"),
        ("DATABASE_URL", "postgres://u:p@h/db"),
        ("AGENT_API_KEY", "sk-exposed-1"),
    ]);
    let sources = [
        SecretSource::Env,
        SecretSource::Dotenv(dir.path().join("team.env")),
    ];
    let s = collect_with_env(&sources, dir.path(), process).expect("collects");
    let r = s.redactor(&config(&["AGENT_API_KEY", "HOME"], &["DATABASE_URL"]));
    assert_eq!(
        r.redact(
            "home=/home/alex db=postgres://u:p@h/db key=sk-exposed-1 file=from-a-file-1 \
             mode=noninteractive port=8080"
        ),
        "home=/home/alex db=postgres://u:p@h/db key=*** file=*** mode=noninteractive port=8080",
        "exposed values and values from secrets files are masked; the rest of the \
         process environment (even a hidden DATABASE_URL the agent never sees) is not"
    );
    let debug = format!("{s:?}");
    assert!(debug.contains("DATABASE_URL"));
    assert!(!debug.contains("postgres://"));
}

#[test]
fn agent_environment_is_built_from_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let process = env(&[
        ("AGENT_API_KEY", "sk-1"),
        ("GITHUB_TOKEN", "ghp_x"),
        ("PATH", "/x"),
    ]);
    let s = collect_with_env(&[SecretSource::Env], dir.path(), process).expect("collects");
    let ctx = AgentContext {
        spec_id: "2026-01-22-001-x7m",
        session: "sess_abc123",
        clone: Path::new("/tmp/clone"),
        home: dir.path(),
        exec: Path::new("/opt/chant/exec"),
        path: Some("/usr/bin:/bin".into()),
        lang: Some("C.UTF-8".into()),
        term: Some("dumb".into()),
    };
    let exposed = s.filtered(&config(&["AGENT_API_KEY"], &[]));
    let built = agent_env(&ctx, &exposed).expect("builds");
    assert_eq!(built.len(), 9);
    assert!(!built.contains_key("GITHUB_TOKEN"));
    assert_eq!(built["CHANT_SPEC_ID"], OsString::from("2026-01-22-001-x7m"));
    assert_eq!(built["CHANT_SESSION"], OsString::from("sess_abc123"));
    assert_eq!(built["CHANT_CLONE"], OsString::from("/tmp/clone"));
    assert_eq!(built["HOME"], dir.path().as_os_str());
    assert_eq!(built["PATH"], OsString::from("/usr/bin:/bin"));

    // Exposing PATH from the process environment would override chant's own.
    let e = agent_env(&ctx, &s.filtered(&config(&["*"], &[]))).expect_err("reserved");
    assert!(e.to_string().contains("'PATH'"));
}
