//! `git chant work` end to end with fixture agents (fixtures/agents/), levels none and
//! permissions, over real repositories and the real ledger.

mod common;

use common::TestRepo;

fn setup(agent: &str, extra: &str) -> (TestRepo, String) {
    let repo = TestRepo::initialised();
    repo.use_agent(agent, extra, "");
    let id = repo.add_spec("Greet the user", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    (repo, id)
}

#[test]
fn a_good_agent_lands_on_its_branch_and_main_never_moves() {
    let (repo, id) = setup(
        "greet.sh",
        "  sandbox: none\n  secrets:\n    expose: [AGENT_API_KEY]\n",
    );
    let main_before = repo.rev("main");
    let status_before = repo.git(&["status", "--porcelain"]);
    let run = repo
        .chant_cmd(&["work", &id])
        .env("AGENT_API_KEY", "sk-test-1234567890")
        .output()
        .expect("run");
    let run = common::Run(run).assert_ok();
    assert!(
        run.stdout().contains("greet: using key ***"),
        "secret masked:\n{}",
        run.stdout()
    );
    assert!(!run.stdout().contains("sk-test-1234567890"));
    assert_eq!(repo.rev("main"), main_before, "main never moves");
    assert_eq!(
        repo.git(&["status", "--porcelain"]),
        status_before,
        "work tree untouched"
    );
    let branch = format!("chant/{id}");
    assert_eq!(
        repo.git(&["show", &format!("{branch}:hello.txt")]),
        "Hello from the agent!\n"
    );
    let message = repo.git(&["log", "-1", "--format=%B", &branch]);
    assert!(
        message.starts_with(&format!("chant({id}): Greet the user")),
        "{message}"
    );
    assert!(
        message.contains(&format!("Chant-Spec: {id}")) && message.contains("Chant-Sandbox: none"),
        "{message}"
    );
    let events: Vec<String> = repo
        .ledger()
        .iter()
        .filter(|e| e["spec_id"] == id.as_str())
        .map(|e| e["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        events,
        [
            "spec_created",
            "lock_acquired",
            "spec_started",
            "file_modified",
            "spec_completed",
            "lock_released"
        ]
    );
    let completed = &repo.events("spec_completed")[0];
    assert_eq!(completed["details"]["files_changed"][0], "hello.txt");
    assert_eq!(completed["sandbox"], "none");
    assert!(!repo.exists(&format!(".chant/.locks/{id}.lock")));
    assert!(
        !repo
            .ledger()
            .iter()
            .any(|e| e.to_string().contains("sk-test-1234567890")),
        "no secret in the ledger"
    );
}

#[test]
fn the_environment_starts_empty() {
    let (repo, id) = setup("env-names.sh", "  sandbox: none\n  secrets:\n    expose: [AGENT_API_KEY, NODE_ENV, \"AWS_*\"]\n    hide: [AWS_SECRET_ACCESS_KEY]\n");
    common::Run(
        repo.chant_cmd(&["work", &id])
            .env("AGENT_API_KEY", "k1-abcdef")
            .env("NODE_ENV", "test")
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_SECRET_ACCESS_KEY", "never-seen")
            .env("DATABASE_URL", "postgres://secret")
            .output()
            .expect("run"),
    )
    .assert_ok();
    let names = repo.git(&["show", &format!("chant/{id}:env-names.txt")]);
    let names: Vec<&str> = names.lines().collect();
    for want in [
        "AGENT_API_KEY",
        "AWS_REGION",
        "CHANT_CLONE",
        "CHANT_EXEC",
        "CHANT_SESSION",
        "CHANT_SPEC_ID",
        "HOME",
        "LANG",
        "NODE_ENV",
        "PATH",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for never in [
        "AWS_SECRET_ACCESS_KEY",
        "DATABASE_URL",
        "GIT_CONFIG_GLOBAL",
        "CHANT_ACTOR",
    ] {
        assert!(!names.contains(&never), "{never} leaked: {names:?}");
    }
}

#[test]
fn policy_violations_land_nothing() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("touch-denied.sh", "  sandbox: none\n  file_access:\n    denied_paths: [\".env*\", \"*.key\"]\n", &[".env", "server.key", ".chant/config.md"]),
        ("escape-symlink.sh", "  sandbox: none\n", &["passwd-link", "up-link", "config-link"]),
        ("attributes.sh", "  sandbox: none\n", &[".gitattributes"]),
        ("special-files.sh", "  sandbox: none\n", &["pipe", "sub/.git"]),
        ("big-file.sh", "  sandbox: none\n", &["big.bin"]),
        ("sensitive-content.sh", "  sandbox: none\n  file_access:\n    sensitive_patterns: [password]\n    fail_on_sensitive: true\n", &["settings.ini"]),
        ("greet.sh", "  sandbox: none\n  file_access:\n    allowed_paths: [src/]\n", &["hello.txt"]),
    ];
    for (agent, extra, paths) in cases {
        let (repo, id) = setup(agent, extra);
        let run = repo.chant(&["work", &id]).assert_code(1);
        assert!(
            run.stderr().contains("policy violation"),
            "{agent}: {}",
            run.stderr()
        );
        assert_eq!(
            repo.rev(&format!("chant/{id}")),
            repo.rev("main"),
            "{agent}: nothing lands"
        );
        let violations = repo.events("policy_violation");
        for p in *paths {
            assert!(
                violations.iter().any(|v| v["details"]["path"] == *p),
                "{agent}: no violation for {p}: {violations:?}"
            );
        }
        let failed = repo.events("spec_failed");
        assert_eq!(failed.len(), 1, "{agent}");
        let clone = failed[0]["details"]["clone"].as_str().expect("clone path");
        assert!(
            std::path::Path::new(clone).is_dir(),
            "{agent}: clone kept at {clone}"
        );
    }
}

#[test]
fn planted_hooks_and_config_never_run_on_the_host() {
    let (repo, id) = setup("plant-hooks.sh", "  sandbox: none\n");
    repo.chant(&["work", &id]).assert_ok();
    let clones = repo.clones_dir();
    let pwned: Vec<_> = std::fs::read_dir(&clones)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("pwned"))
                .collect()
        })
        .unwrap_or_default();
    assert!(pwned.is_empty(), "planted code ran: {pwned:?}");
    assert_eq!(
        repo.git(&["show", &format!("chant/{id}:change.txt")]),
        "honest change\n"
    );
}

#[test]
fn a_failing_agent_lands_nothing_and_keeps_the_clone() {
    let (repo, id) = setup("fail.sh", "  sandbox: none\n");
    let run = repo.chant(&["work", &id]).assert_code(1);
    assert!(
        run.stderr().contains("exited with code 3"),
        "{}",
        run.stderr()
    );
    assert_eq!(repo.rev(&format!("chant/{id}")), repo.rev("main"));
    assert_eq!(repo.events("spec_failed").len(), 1);
    assert_eq!(repo.events("lock_released").len(), 1);
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let (repo, id) = setup("sleepy.sh", "  sandbox: none\n  timeout: 1s\n");
    let run = repo.chant(&["work", &id]).assert_code(1);
    assert!(run.stderr().contains("agent.timeout"), "{}", run.stderr());
    let failed = &repo.events("spec_failed")[0];
    let clone = failed["details"]["clone"].as_str().expect("clone");
    let pids = std::fs::read_to_string(format!("{clone}.pids")).expect("pids written");
    for pid in pids.split_whitespace() {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid),
            "pid {pid} survived"
        );
    }
}

fn is_zombie(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z"))
        .unwrap_or(true)
}

#[test]
fn sigint_stops_the_agent_records_and_releases() {
    let (repo, id) = setup("sleepy.sh", "  sandbox: none\n");
    let child = repo
        .chant_cmd(&["work", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    common::wait_for("spec_started recorded", || {
        !repo.events("spec_started").is_empty()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    common::ctrl_c(child).assert_code(1);
    let failed = repo.events("spec_failed");
    assert_eq!(failed[0]["details"]["reason"], "interrupted");
    assert_eq!(repo.events("lock_released").len(), 1);
    assert!(!repo.exists(&format!(".chant/.locks/{id}.lock")));
}

#[test]
fn cancel_stops_a_running_spec() {
    let (repo, id) = setup("sleepy.sh", "  sandbox: none\n");
    let child = repo
        .chant_cmd(&["work", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    common::wait_for("spec_started recorded", || {
        !repo.events("spec_started").is_empty()
    });
    repo.chant(&["cancel", &id, "--reason", "wrong approach"])
        .assert_ok()
        .stdout_has("Cancelled");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    let cancelled = repo.events("spec_cancelled");
    assert_eq!(cancelled[0]["details"]["reason"], "wrong approach");
    assert_eq!(cancelled[0]["details"]["cancelled_by"], "tester");
}

#[test]
fn a_live_lock_refuses_and_a_stale_one_is_recovered() {
    let (repo, id) = setup("greet.sh", "  sandbox: none\n");
    let host = String::from_utf8_lossy(
        &std::process::Command::new("hostname")
            .output()
            .expect("hostname")
            .stdout,
    )
    .trim()
    .to_string();
    let lock = format!(".chant/.locks/{id}.lock");
    repo.write(
        &lock,
        &format!(
            "{{\"pid\":1,\"host\":\"{host}\",\"user\":\"x\",\"started\":\"2026-01-22T15:30:00Z\"}}"
        ),
    );
    repo.chant(&["work", &id])
        .assert_code(1)
        .stderr_has("already being worked on by pid 1");
    repo.write(&lock, &format!("{{\"pid\":4000000,\"host\":\"{host}\",\"user\":\"x\",\"started\":\"2026-01-22T15:30:00Z\"}}"));
    repo.chant(&["work", &id])
        .assert_ok()
        .stderr_has("Recovered a stale lock");
}

#[test]
fn sensitive_targets_need_confirmation() {
    let repo = TestRepo::initialised();
    repo.use_agent("greet.sh", "  sandbox: none\n", "");
    let id = repo.add_spec("Touch env", &[".env.production"]);
    repo.chant(&["work", &id])
        .assert_code(2)
        .stderr_has("Warning: Spec targets sensitive file: .env.production")
        .stderr_has("--yes");
    assert_eq!(repo.rev(&format!("chant/{id}")), None, "nothing created");
    repo.chant(&["work", &id, "--yes"]).assert_ok();
    assert_eq!(
        repo.events("spec_started")[0]["details"]["sensitive_confirmed"],
        "--yes"
    );
}

#[test]
fn a_missing_agent_program_is_an_error_before_anything_is_created() {
    let repo = TestRepo::initialised();
    repo.write_config("agent:\n  command: [no-such-agent-xyz]\n");
    let id = repo.add_spec("x", &[]);
    repo.chant(&["work", &id])
        .assert_code(2)
        .stderr_has("agent program 'no-such-agent-xyz' not found");
    assert_eq!(repo.rev(&format!("chant/{id}")), None);
    assert!(repo.events("spec_started").is_empty());
}

#[test]
fn permissions_level_writes_native_settings_that_never_land() {
    let (repo, id) = setup("chmod-x.sh", "  sandbox: permissions\n  permissions:\n    deny_edit: [\".env\"]\n    deny_bash: [curl]\n");
    let run = repo.chant(&["work", &id, "--keep"]).assert_ok();
    assert!(
        run.stderr().contains("run.sh is now executable"),
        "{}",
        run.stderr()
    );
    let branch = format!("chant/{id}");
    let tree = repo.git(&["ls-tree", "-r", "--name-only", &branch]);
    assert!(!tree.contains(".claude/settings.json"), "{tree}");
    assert!(!tree.contains("README.md"), "deletion landed: {tree}");
    assert!(repo
        .git(&["ls-tree", &branch, "run.sh"])
        .starts_with("100755"));
}

#[test]
fn unknown_secret_schemes_are_input_errors() {
    let (repo, id) = setup("greet.sh", "  sandbox: none\n");
    repo.chant(&["work", &id, "--secrets-from", "ftp://x"])
        .assert_code(2)
        .stderr_has("ftp");
}

#[test]
fn status_comes_from_the_ledger() {
    let (repo, id) = setup("greet.sh", "  sandbox: none\n");
    assert!(repo
        .chant(&["list"])
        .assert_ok()
        .stdout()
        .contains("pending"));
    repo.chant(&["work", &id]).assert_ok();
    let list = repo
        .chant(&["list", "--status", "completed"])
        .assert_ok()
        .stdout();
    assert!(list.contains(&id), "{list}");
    repo.chant(&["show", &id])
        .assert_ok()
        .stdout_has("status:   completed");
    repo.chant(&["work", &id])
        .assert_code(1)
        .stderr_has("is completed");
    let (repo, id) = setup("fail.sh", "  sandbox: none\n");
    repo.chant(&["work", &id]).assert_code(1);
    let json = repo
        .chant(&["list", "--format", "json"])
        .assert_ok()
        .stdout();
    assert!(json.contains("\"status\": \"failed\""), "{json}");
}

#[test]
fn a_run_that_lands_nothing_is_unchanged_and_can_be_worked_again() {
    let (repo, id) = setup("noop.sh", "  sandbox: none\n");
    let dependent = repo.add_spec("After the first", &["next.txt"]);
    let text = repo.read(&format!(".chant/specs/{dependent}.md"));
    let text = text.replacen("---\n", &format!("---\ndepends_on: [{id}]\n"), 1);
    repo.write(&format!(".chant/specs/{dependent}.md"), &text);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "dependent spec"]);

    repo.chant(&["work", &id])
        .assert_ok()
        .stderr_has("completed with no changes (status `unchanged`");
    assert_eq!(repo.rev(&format!("chant/{id}")), repo.rev("main"));
    repo.chant(&["show", &id])
        .assert_ok()
        .stdout_has("status:   unchanged");
    let listed = repo
        .chant(&["list", "--status", "unchanged"])
        .assert_ok()
        .stdout();
    assert!(listed.contains(&id), "{listed}");
    // Nothing was done, so it can be worked again; it is never picked up again by itself.
    repo.chant(&["work", &id]).assert_ok();
    assert_eq!(repo.events("spec_started").len(), 2);
    // The agent found nothing to change: a spec that depends on it is ready, and the
    // unchanged one is not picked up again by --all-ready.
    repo.chant(&["work", "--all-ready"]).assert_ok();
    let started: Vec<String> = repo
        .events("spec_started")
        .iter()
        .filter_map(|e| e["spec_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(started, [id.clone(), id.clone(), dependent.clone()]);
}

#[test]
fn dry_run_creates_and_records_nothing() {
    let (repo, id) = setup(
        "greet.sh",
        "  sandbox: none\n  secrets:\n    expose: [AGENT_API_KEY]\n",
    );
    let before = repo.ledger().len();
    let out = common::Run(
        repo.chant_cmd(&["work", &id, "--dry-run"])
            .env("AGENT_API_KEY", "sk-dry-123456")
            .output()
            .expect("run"),
    )
    .assert_ok()
    .stdout();
    assert!(
        out.contains("sandbox:   none")
            && out.contains("secrets:   AGENT_API_KEY")
            && !out.contains("sk-dry"),
        "{out}"
    );
    assert_eq!(repo.rev(&format!("chant/{id}")), None);
    assert_eq!(repo.ledger().len(), before);
}

#[test]
fn secrets_are_masked_in_ledger_entries_too() {
    let (repo, id) = setup(
        "leak-name.sh",
        "  sandbox: none\n  secrets:\n    expose: [AGENT_API_KEY]\n  denied_paths: [\"*.key\"]\n",
    );
    common::Run(
        repo.chant_cmd(&["work", &id])
            .env("AGENT_API_KEY", "sk-leak-abcdef123")
            .output()
            .expect("run"),
    )
    .assert_code(1);
    let v = repo.events("policy_violation");
    assert_eq!(v[0]["details"]["path"], "***.key");
    assert!(!repo
        .ledger()
        .iter()
        .any(|e| e.to_string().contains("sk-leak-abcdef123")));
}

#[test]
fn denied_paths_never_reach_the_clone_and_allowed_paths_limit_it() {
    let repo = TestRepo::initialised();
    repo.write(".env", "DATABASE_URL=postgres://secret\n");
    repo.write("credentials/aws.json", "{}\n");
    repo.write("src/lib.rs", "// code\n");
    repo.write("docs/guide.md", "# guide\n");
    repo.git(&["add", "-f", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "files"]);
    repo.use_agent(
        "list-files.sh",
        "  sandbox: none\n  file_access:\n    allowed_paths: [src/, README.md]\n    denied_paths: [\".env*\", credentials/]\n",
        "",
    );
    let id = repo.add_spec("List", &[]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    repo.chant(&["work", &id]).assert_ok();
    let files = repo.git(&["show", &format!("chant/{id}:src/files.txt")]);
    let files: Vec<&str> = files.lines().collect();
    assert!(
        files.contains(&"src/lib.rs") && files.contains(&"README.md"),
        "{files:?}"
    );
    for hidden in [
        ".env",
        "credentials/aws.json",
        "docs/guide.md",
        ".chant/config.md",
    ] {
        assert!(!files.contains(&hidden), "{hidden} was visible: {files:?}");
    }
    // Withheld files are not deletions: they are still on the branch.
    let tree = repo.git(&["ls-tree", "-r", "--name-only", &format!("chant/{id}")]);
    assert!(
        tree.contains(".env") && tree.contains("docs/guide.md"),
        "{tree}"
    );
}

#[test]
fn validation_commands_run_in_the_sandbox_and_gate_landing() {
    let (repo, id) = setup("greet.sh", "  sandbox: none\n");
    let config = repo.read(".chant/config.md").replace(
        "---\n\n# Config",
        "work:\n  validate: [\"test -f hello.txt\", \"grep -q Hello hello.txt\"]\n---\n\n# Config",
    );
    repo.write(".chant/config.md", &config);
    repo.git(&["commit", "--quiet", "-am", "validate"]);
    repo.chant(&["work", &id]).assert_ok();
    let runs = repo.events("command_run");
    assert_eq!(runs.len(), 2);
    assert!(runs
        .iter()
        .all(|r| r["details"]["exit_code"] == 0 && r["details"]["phase"] == "validate"));

    let (repo, id) = setup("greet.sh", "  sandbox: none\n");
    let config = repo.read(".chant/config.md").replace(
        "---\n\n# Config",
        "work:\n  validate: [\"grep -q Goodbye hello.txt\"]\n---\n\n# Config",
    );
    repo.write(".chant/config.md", &config);
    repo.git(&["commit", "--quiet", "-am", "validate"]);
    repo.chant(&["work", &id])
        .assert_code(1)
        .stderr_has("validation `grep -q Goodbye hello.txt` failed (exit 1)");
    assert_eq!(
        repo.rev(&format!("chant/{id}")),
        repo.rev("main"),
        "nothing lands"
    );
}

#[test]
fn all_ready_runs_each_ready_spec_as_its_own_run_and_skips_blocked_ones() {
    let (repo, first) = setup("greet.sh", "  sandbox: none\n");
    let second = repo.add_spec("Greet again", &["hello.txt"]);
    let blocked = repo.add_spec("After an unfinished one", &["hello.txt"]);
    // `blocked` depends on a spec that never ran.
    let path = format!(".chant/specs/{blocked}.md");
    let text = repo
        .read(&path)
        .replacen("---\n", "---\ndepends_on: [nope]\n", 1);
    repo.write(&path, &text);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "specs"]);
    let run = repo
        .chant(&["work", "--all-ready", "--parallel", "2"])
        .assert_ok();
    let short = first.rsplit('-').next().unwrap_or_default().to_string();
    assert!(
        run.stderr()
            .contains(&format!("[{short}] chant: spec {first} completed")),
        "{}",
        run.stderr()
    );
    let completed: Vec<String> = repo
        .events("spec_completed")
        .iter()
        .map(|e| e["spec_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(completed.len(), 2, "{completed:?}");
    assert!(completed.contains(&first) && completed.contains(&second));
    assert!(repo.rev(&format!("chant/{blocked}")).is_none());
    // Nothing is ready any more.
    repo.chant(&["work", "--all-ready"])
        .assert_ok()
        .stderr_has("no spec is ready");
}

#[test]
fn the_clone_lives_in_the_cache_dir_outside_any_git_component() {
    let (repo, id) = setup("fail.sh", "  sandbox: none\n");
    repo.chant(&["work", &id]).assert_code(1);
    let failed = &repo.events("spec_failed")[0];
    let clone = std::path::PathBuf::from(failed["details"]["clone"].as_str().expect("clone"));
    let under = repo.cache_dir().join("git-chant").join("clones");
    assert!(
        clone.starts_with(&under),
        "{} not under {}",
        clone.display(),
        under.display()
    );
    assert!(
        !clone.components().any(|c| c.as_os_str() == ".git"),
        "{}",
        clone.display()
    );
    let repo_dir = clone
        .parent()
        .and_then(|p| p.file_name())
        .expect("repo dir");
    assert!(
        repo_dir.to_string_lossy().starts_with("repo-"),
        "named after the repository: {repo_dir:?}"
    );
    assert!(clone.is_dir(), "kept after the failure");
    assert!(
        !repo.exists(".git/chant/clones"),
        "nothing under .git/chant/clones"
    );
}

#[test]
fn a_cache_dir_inside_a_git_directory_is_refused_before_anything_is_created() {
    let (repo, id) = setup("greet.sh", "  sandbox: none\n");
    let inside = repo.path(".git/cache");
    let run = repo
        .chant_cmd(&["work", &id])
        .env("XDG_CACHE_HOME", &inside)
        .output()
        .expect("run");
    let run = common::Run(run).assert_code(2).stderr_has("XDG_CACHE_HOME");
    assert!(run.stderr().contains(".git component"), "{}", run.stderr());
    assert_eq!(repo.rev(&format!("chant/{id}")), None, "no branch created");
    assert!(!inside.exists());
    assert_eq!(repo.events("lock_released").len(), 1);
}

/// A repository whose base tree commits `links` (path, target) before the spec runs at
/// level `permissions`, where chant writes `.claude/settings.json` into the clone.
fn setup_with_links(links: &[(&str, &str)]) -> (TestRepo, String) {
    let repo = TestRepo::initialised();
    for (path, target) in links {
        let full = repo.path(path);
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::os::unix::fs::symlink(target, &full).expect("symlink");
    }
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "links"]);
    repo.use_agent("greet.sh", "  sandbox: permissions\n", "");
    let id = repo.add_spec("Greet the user", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    (repo, id)
}

/// Names of what is in `dir` (empty when it does not exist).
fn listing(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_committed_link_on_the_way_to_the_agent_settings_refuses_the_run_and_writes_nothing_outside() {
    let outside = tempfile::tempdir().expect("outside");
    let out = outside.path().display().to_string();
    let dangling = format!("{out}/made-by-chant");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![(".claude", &out)],                                // absolute
        vec![(".claude", "../../../../../../../../../../tmp")], // relative, climbing
        vec![(".claude", "a/x"), ("a", "."), ("x", &out)],      // a chain through a -> .
        vec![(".claude", &dangling)],                           // dangling
        vec![(".claude", "README.md")],                         // inside, still a link
    ];
    for links in cases {
        let (repo, id) = setup_with_links(&links);
        let run = repo.chant(&["work", &id]).assert_code(1);
        assert!(
            run.stderr()
                .contains("refusing to write .claude/settings.json")
                && run.stderr().contains(".claude is a"),
            "{links:?}: {}",
            run.stderr()
        );
        assert!(
            listing(outside.path()).is_empty(),
            "{links:?}: written outside"
        );
        assert_eq!(
            repo.rev(&format!("chant/{id}")),
            repo.rev("main"),
            "{links:?}"
        );
        assert!(
            repo.events("spec_started").is_empty(),
            "{links:?}: the agent never ran"
        );
        assert_eq!(repo.events("lock_released").len(), 1, "{links:?}");
        assert!(
            !repo.exists(&format!(".chant/.locks/{id}.lock")),
            "{links:?}"
        );
        assert!(
            listing(&repo.path(".git/chant/clones")).is_empty(),
            "{links:?}: half-made clone left"
        );
    }
}

#[test]
fn a_committed_settings_file_that_links_outside_is_replaced_never_written_through() {
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("victim");
    let victim_path = victim.display().to_string();
    let dangling = outside.path().join("new").display().to_string();
    for target in [
        victim_path.as_str(),
        "../../../../../../../../../../../../tmp/chant-victim-never",
        dangling.as_str(),
    ] {
        let (repo, id) = setup_with_links(&[(".claude/settings.json", target)]);
        repo.chant(&["work", &id]).assert_ok();
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "precious\n",
            "{target}"
        );
        assert_eq!(listing(outside.path()), ["victim"], "{target}");
        assert!(!std::path::Path::new("/tmp/chant-victim-never").exists());
        // The committed link is still what the branch holds: chant's file never lands.
        let tree = repo.git(&["ls-tree", &format!("chant/{id}"), ".claude/settings.json"]);
        assert!(tree.starts_with("120000"), "{target}: {tree}");
    }
}

/// Where `work` said it kept the clone.
fn kept_clone(run: &common::Run) -> std::path::PathBuf {
    let stderr = run.stderr();
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("chant: the clone is kept for inspection at "))
        .unwrap_or_else(|| panic!("no kept clone in:\n{stderr}"));
    std::path::PathBuf::from(line.trim())
}

/// The probes (`<clone>.pwned-*`) a planted payload left, if any ran.
fn pwned(clone: &std::path::Path) -> Vec<String> {
    let name = clone
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    listing(clone.parent().expect("parent"))
        .into_iter()
        .filter(|n| n.starts_with(&format!("{name}.pwned")))
        .collect()
}

#[test]
fn git_status_diff_and_log_in_a_kept_clone_run_nothing_the_agent_planted() {
    let script = common::crate_path("fixtures/agents/plant-git.sh");
    let (mut ran, mut broken): (Vec<&str>, Vec<String>) = (Vec::new(), Vec::new());
    for variant in [
        "fsmonitor",
        "hooks",
        "hookspath",
        "pager",
        "diff-external",
        "filter",
        "textconv",
        "include",
        "alias",
        "gitfile",
        "symlink",
        "commondir",
        "locked",
    ] {
        let repo = TestRepo::initialised();
        repo.write_config(&format!(
            "agent:\n  sandbox: none\n  command: [\"{}\", \"{variant}\"]\n",
            script.display()
        ));
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "--quiet", "-m", "config"]);
        let id = repo.add_spec("Plant", &[]);
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "--quiet", "-m", "spec"]);
        let run = repo.chant(&["work", &id, "--keep"]);
        assert!(
            run.stdout().contains(&format!("planted {variant}")),
            "{variant}: {}{}",
            run.stdout(),
            run.stderr()
        );
        let clone = kept_clone(&run);
        // What a user does next, with real git: none of it may run the agent's code.
        let env = [("PAGER", "cat")];
        for args in [
            &["status"][..],
            &["status", "--porcelain", "--untracked-files=all"],
            &["diff"],
            &["diff", "HEAD", "--stat"],
            &["log", "-1", "-p"],
            &["st"],
        ] {
            repo.git_in(&clone, &env, args);
        }
        // The pager only runs on a terminal: once more under a pseudo-terminal.
        let mut cmd = std::process::Command::new("script");
        repo.env(&mut cmd);
        let out = cmd
            .envs(env)
            .args(["-qec", "git log -1; git diff; git status", "/dev/null"])
            .current_dir(&clone)
            .output()
            .expect("script");
        if !pwned(&clone).is_empty() {
            ran.push(variant);
        }
        // The fresh .git is chant's and shows the agent's changes against the start.
        let status = repo
            .git_in(&clone, &env, &["status", "--porcelain"])
            .stdout();
        let is_dir = std::fs::symlink_metadata(clone.join(".git")).is_ok_and(|m| m.is_dir());
        if !out.status.success()
            || !is_dir
            || !status.contains(" M README.md")
            || !status.contains("?? change.txt")
        {
            broken.push(format!("{variant}: {out:?} {status}"));
        }
        let evil = std::path::PathBuf::from(format!("{}.evil-gitdir", clone.display()));
        if (variant == "symlink" || variant == "gitfile") && !evil.join("config").is_file() {
            broken.push(format!(
                "{variant}: the link's target was removed through it"
            ));
        }
    }
    assert!(ran.is_empty(), "planted code ran for {ran:?}");
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn every_error_after_spec_started_records_spec_failed_releases_the_lock_and_allows_a_rerun() {
    let breaker = common::crate_path("fixtures/agents/break-collect.sh");
    let greet = common::crate_path("fixtures/agents/greet.sh");
    let huge = "x".repeat(3 << 20);
    let cases: Vec<(&str, String, String)> = vec![
        // A {prompt} bigger than the kernel takes for arguments (E2BIG at spawn).
        (
            "huge prompt",
            format!("[\"{}\", \"{{prompt}}\"]", greet.display()),
            huge,
        ),
        // A prompt holding a NUL byte, which no argv can carry.
        (
            "NUL in the prompt",
            format!("[\"{}\", \"{{prompt}}\"]", greet.display()),
            "a\0b".to_string(),
        ),
        // A program whose interpreter does not exist (ENOENT at exec, after the preflight).
        (
            "missing interpreter",
            "[\"./agent.sh\"]".to_string(),
            String::new(),
        ),
        // A result nested past PATH_MAX (today refused by the policy check: still failed).
        (
            "deep path",
            format!("[\"{}\", deep]", breaker.display()),
            String::new(),
        ),
        // A name libgit2 refuses in a tree (today refused by the policy check too).
        (
            "libgit2 name",
            format!("[\"{}\", dotgit-case]", breaker.display()),
            String::new(),
        ),
    ];
    let mut escaped = Vec::new();
    for (what, command, body) in cases {
        let repo = TestRepo::initialised();
        repo.write("agent.sh", "#!/nonexistent/interpreter\n");
        std::fs::set_permissions(
            repo.path("agent.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        repo.write_config(&format!("agent:\n  sandbox: none\n  command: {command}\n"));
        let body_file = repo.tmp.path().join("body.md");
        std::fs::write(&body_file, format!("# Break\n\n{body}\n")).expect("body");
        let id = repo
            .chant(&[
                "add",
                "Break",
                "--body-file",
                body_file.to_str().expect("utf-8"),
            ])
            .assert_ok()
            .stdout()
            .trim()
            .to_string();
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "--quiet", "-m", "spec"]);
        for attempt in 1..=2 {
            let run = repo.chant(&["work", &id]);
            assert_ne!(run.code(), 0, "{what}: {}", run.stderr());
            let failed = repo.events("spec_failed");
            if failed.len() != attempt {
                escaped.push(what);
                break;
            }
            let reason = failed[attempt - 1]["details"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(!reason.is_empty(), "{what}: no reason");
            assert!(reason.len() < 10_000, "{what}: the reason is bounded");
            assert_eq!(repo.events("spec_started").len(), attempt, "{what}");
            assert_eq!(repo.events("lock_released").len(), attempt, "{what}");
            assert!(!repo.exists(&format!(".chant/.locks/{id}.lock")), "{what}");
            repo.chant(&["show", &id])
                .assert_ok()
                .stdout_has("status:   failed");
            assert_eq!(repo.rev(&format!("chant/{id}")), repo.rev("main"), "{what}");
        }
    }
    assert!(escaped.is_empty(), "left in_progress: {escaped:?}");
}
