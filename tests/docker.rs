//! Level `docker` end to end against a real Docker Engine: the walls are proved from inside
//! the container (fixtures/agents/docker-*.sh), the result goes through the same policy
//! check and landing as every level, and nothing of a run is left in the engine.
//!
//! The test image is built without a registry (tests/common/image.rs): Debian's static
//! busybox, git and the fixture agents (at /opt/chant/agents/) imported as a root file
//! system through the engine's image API. With no engine these tests skip loudly, unless
//! `CHANT_REQUIRE_DOCKER=1` (CI) makes them fail.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptionsBuilder;
use common::http::Server;
use common::TestRepo;

use common::image::AGENTS as AGENTS_IN_IMAGE;

/// The test image's tag, or None (after a loud message) when no engine answers locally.
fn image() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    match IMAGE.get_or_init(build_image) {
        Ok(tag) => Some(tag.clone()),
        Err(why) => {
            if std::env::var_os("CHANT_REQUIRE_DOCKER").is_some_and(|v| v == "1") {
                panic!("CHANT_REQUIRE_DOCKER=1 but the docker tests cannot run: {why}");
            }
            eprintln!(
                "\n*** SKIPPING docker test: {why}\n*** (set CHANT_REQUIRE_DOCKER=1 to make this a failure)\n"
            );
            None
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn connect() -> Result<bollard::Docker, String> {
    let docker = bollard::Docker::connect_with_defaults().map_err(|e| e.to_string())?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| e.to_string())?;
    docker
        .ping()
        .await
        .map_err(|e| format!("no Docker engine answers ({e})"))?;
    Ok(docker)
}

/// The host's git with the libraries it loads, when there is a `/usr/bin/git`, so agents in
/// the test image can use git.
fn git_files() -> Vec<PathBuf> {
    let git = Path::new("/usr/bin/git");
    if git.exists() {
        common::image::with_libraries(git)
    } else {
        Vec::new()
    }
}

/// Busybox, git and the fixture agents as `chant-test-busybox:<content hash>`.
fn build_image() -> Result<String, String> {
    common::image::build(&common::image::Layout {
        name: "chant-test-busybox",
        files: git_files(),
        dirs: &[],
        links: &[],
    })
}

/// A repository whose agent is `argv` (the first element a fixture name) in the docker
/// level, with `extra` YAML lines under `agent:` and `rest` at top level.
fn setup(image: &str, argv: &[&str], extra: &str, rest: &str) -> (TestRepo, String) {
    setup_with_memory(image, argv, extra, rest, "64M")
}

fn setup_with_memory(
    image: &str,
    argv: &[&str],
    extra: &str,
    rest: &str,
    memory: &str,
) -> (TestRepo, String) {
    let repo = TestRepo::initialised();
    write_config(&repo, image, argv, extra, rest, memory);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "chant config"]);
    let id = repo.add_spec("Greet the user", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    (repo, id)
}

/// Writes `.chant/config.md` for the docker level (not committed).
fn write_config(
    repo: &TestRepo,
    image: &str,
    argv: &[&str],
    extra: &str,
    rest: &str,
    memory: &str,
) {
    let mut command: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    command[0] = format!("\"{AGENTS_IN_IMAGE}/{}\"", argv[0]);
    repo.write_config(&format!(
        "agent:\n  sandbox: docker\n  command: [{}]\n  docker:\n    image: {image}\n    memory: {memory}\n    cpu: 500m\n{extra}{rest}",
        command.join(", ")
    ));
}

/// Containers (running or not) labelled with `key=value`.
fn containers(key: &str, value: &str) -> Vec<String> {
    rt().block_on(async {
        let docker = connect().await.expect("engine");
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![format!("{key}={value}")]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        docker
            .list_containers(Some(options))
            .await
            .expect("list containers")
            .into_iter()
            .filter_map(|c| c.id)
            .collect()
    })
}

fn probe_lines(repo: &TestRepo, id: &str) -> HashMap<String, String> {
    repo.git(&["show", &format!("chant/{id}:probe.txt")])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn a_good_agent_lands_through_the_docker_level_and_validation_runs_inside() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(
        &image,
        &["greet.sh"],
        "  secrets:\n    expose: [AGENT_API_KEY]\n",
        "work:\n  validate: [\"test -f hello.txt && test \\\"$(id -u)\\\" != 0 && test \\\"$PWD\\\" = /workspace\"]\n",
    );
    let main_before = repo.rev("main");
    let run = common::Run(
        repo.chant_cmd(&["work", &id])
            .env("AGENT_API_KEY", "sk-docker-1234567890")
            .output()
            .expect("run"),
    )
    .assert_ok();
    assert!(
        run.stdout()
            .contains(&format!("greet: working on {id} in /workspace")),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().contains("greet: using key ***"),
        "{}",
        run.stdout()
    );
    assert!(!run.stdout().contains("sk-docker-1234567890"));
    assert_eq!(repo.rev("main"), main_before, "main never moves");
    let branch = format!("chant/{id}");
    assert_eq!(
        repo.git(&["show", &format!("{branch}:hello.txt")]),
        "Hello from the agent!\n"
    );
    let message = repo.git(&["log", "-1", "--format=%B", &branch]);
    assert!(message.contains("Chant-Sandbox: docker"), "{message}");
    assert_eq!(repo.events("spec_completed")[0]["sandbox"], "docker");
    let validate = repo.events("command_run");
    assert_eq!(validate[0]["details"]["exit_code"], 0, "{validate:?}");
    assert!(containers("chant.spec", &id).is_empty(), "container left");
}

#[test]
fn the_container_sees_only_the_workspace_and_has_no_way_out() {
    let Some(image) = image() else { return };
    let secrets = "  secrets:\n    expose: [AGENT_API_KEY]\n";
    let (repo, id) = setup(&image, &["docker-probe.sh"], secrets, "");
    // Now that the repository exists: the host paths the agent must not see.
    let crate_dir = common::crate_path("");
    let (root, home) = (repo.root.to_string_lossy(), repo.home.to_string_lossy());
    let argv = [
        "docker-probe.sh",
        "{prompt_file}",
        &root,
        &home,
        crate_dir.to_str().unwrap_or("/"),
        "/var/lib/docker",
    ];
    write_config(&repo, &image, &argv, secrets, "", "64M");
    repo.git(&["commit", "--quiet", "-am", "probe the host paths"]);
    let run = common::Run(
        repo.chant_cmd(&["work", &id])
            .env("AGENT_API_KEY", "k-exposed")
            .env("DATABASE_URL", "postgres://never-seen")
            .output()
            .expect("run"),
    )
    .assert_ok();
    let p = probe_lines(&repo, &id);
    let show = format!("{p:?}\n{}", run.stderr());
    assert_ne!(p["uid"], "0", "{show}");
    assert_eq!(p["pwd"], "/workspace", "{show}");
    assert_eq!(p["clone"], "/workspace", "{show}");
    assert_eq!(p["rootfs"], "read-only", "{show}");
    assert_eq!(p["tmp"], "writable", "{show}");
    assert_eq!(p["host-path"], "absent", "{show}");
    assert_eq!(p["docker-sock"], "absent", "{show}");
    assert_eq!(p["net"], "lo", "{show}");
    assert_eq!(p["routes"], "0", "{show}");
    assert_eq!(p["memory"], (64 * 1024 * 1024).to_string(), "{show}");
    assert_ne!(p["pids"], "max", "{show}");
    assert_eq!(p["capeff"], "0000000000000000", "{show}");
    assert_eq!(p["nonewprivs"], "1", "{show}");
    assert!(p["prompt"].starts_with("You are working on spec"), "{show}");
    assert_eq!(p["homedir"], "/home/agent", "{show}");
    assert_eq!(p["home"], "writable", "{show}");
    assert_eq!(
        p["gate"], "0",
        "$CHANT_EXEC reaches the gate on the host: {show}"
    );
    let names = repo.git(&["show", &format!("chant/{id}:env-names.txt")]);
    let names: Vec<&str> = names.lines().collect();
    assert!(names.contains(&"AGENT_API_KEY"), "{names:?}");
    assert!(names.contains(&"HOME"), "{names:?}");
    for never in [
        "DATABASE_URL",
        "GIT_CONFIG_GLOBAL",
        "CHANT_ACTOR",
        "GIT_AUTHOR_NAME",
    ] {
        assert!(!names.contains(&never), "{never} leaked: {names:?}");
    }
    assert!(containers("chant.spec", &id).is_empty(), "container left");
}

#[test]
fn a_policy_violation_from_inside_the_container_lands_nothing() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(
        &image,
        &["touch-denied.sh"],
        "  file_access:\n    denied_paths: [\".env*\", \"*.key\"]\n",
        "",
    );
    let run = repo.chant(&["work", &id]).assert_code(1);
    assert!(
        run.stderr().contains("policy violation"),
        "{}",
        run.stderr()
    );
    assert_eq!(repo.rev(&format!("chant/{id}")), repo.rev("main"));
    let violations = repo.events("policy_violation");
    for p in [".env", "server.key"] {
        assert!(
            violations.iter().any(|v| v["details"]["path"] == p),
            "no violation for {p}: {violations:?}"
        );
    }
    assert!(containers("chant.spec", &id).is_empty(), "container left");
}

#[test]
fn the_kernel_stops_a_fork_bomb_and_an_allocation_past_the_memory_limit() {
    let Some(image) = image() else { return };
    // Room for 512 processes' kernel memory, so that only the allocation hits the limit.
    let (repo, id) = setup_with_memory(&image, &["docker-limits.sh"], "", "", "256M");
    repo.chant(&["work", &id]).assert_ok();
    let limits = repo.git(&["show", &format!("chant/{id}:limits.txt")]);
    let spawned: u32 = limits
        .lines()
        .find_map(|l| l.strip_prefix("spawned="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u32::MAX);
    assert!(spawned < 512, "pids limit held at {spawned}:\n{limits}");
    assert!(
        limits.contains("dd-exit=137"),
        "only the allocation was killed:\n{limits}"
    );
    assert!(limits.contains("survived=yes"), "{limits}");
    assert!(containers("chant.spec", &id).is_empty(), "container left");
}

#[test]
fn a_failing_agent_lands_nothing_and_leaves_no_container() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(&image, &["fail.sh"], "", "");
    repo.chant(&["work", &id])
        .assert_code(1)
        .stderr_has("exited with code 3");
    assert_eq!(repo.rev(&format!("chant/{id}")), repo.rev("main"));
    let failed = repo.events("spec_failed");
    let clone = failed[0]["details"]["clone"].as_str().expect("clone path");
    assert!(
        Path::new(clone).join("half.txt").is_file(),
        "the clone is kept for inspection"
    );
    assert!(containers("chant.spec", &id).is_empty(), "container left");
}

#[test]
fn cancel_kills_and_removes_the_container() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(&image, &["docker-hang.sh"], "", "");
    let child = repo
        .chant_cmd(&["work", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    common::wait_for("container running", || {
        !containers("chant.spec", &id).is_empty()
    });
    repo.chant(&["cancel", &id, "--reason", "wrong approach"])
        .assert_ok();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        repo.events("spec_cancelled")[0]["details"]["reason"],
        "wrong approach"
    );
    assert!(containers("chant.spec", &id).is_empty(), "container left");
}

#[test]
fn timeout_kills_and_removes_the_container() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(&image, &["docker-hang.sh"], "  timeout: 2s\n", "");
    let started = Instant::now();
    let run = repo.chant(&["work", &id]).assert_code(1);
    assert!(run.stderr().contains("agent.timeout"), "{}", run.stderr());
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(containers("chant.spec", &id).is_empty(), "container left");
}

#[test]
fn processes_that_left_the_agents_group_neither_stall_nor_outlive_a_docker_run() {
    let Some(image) = image() else { return };
    for how in ["setsid", "double-fork", "daemon"] {
        // Exits 0 leaving an escaped process on its pipes: completes, nothing stays.
        let (repo, id) = setup(&image, &["leave-group.sh", "/tmp/pids", how], "", "");
        let started = Instant::now();
        repo.chant(&["work", &id]).assert_ok();
        assert!(started.elapsed() < Duration::from_secs(60), "{how}");
        assert!(
            containers("chant.spec", &id).is_empty(),
            "{how}: container left"
        );
        // Hangs with it: the timeout wins.
        let (repo, id) = setup(
            &image,
            &["leave-group.sh", "/tmp/pids", how, "hang"],
            "  timeout: 2s\n",
            "",
        );
        let started = Instant::now();
        let run = repo.chant(&["work", &id]).assert_code(1);
        assert!(
            run.stderr().contains("agent.timeout"),
            "{how}: {}",
            run.stderr()
        );
        assert!(started.elapsed() < Duration::from_secs(60), "{how}");
        assert!(
            containers("chant.spec", &id).is_empty(),
            "{how}: container left"
        );
        assert!(repo.events("spec_completed").is_empty(), "{how}: landed");
    }
}

#[test]
fn ctrl_c_kills_and_removes_the_container() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(&image, &["docker-hang.sh"], "", "");
    let child = repo
        .chant_cmd(&["work", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    common::wait_for("container running", || {
        !containers("chant.spec", &id).is_empty()
    });
    common::ctrl_c(child).assert_code(1);
    assert_eq!(
        repo.events("spec_failed")[0]["details"]["reason"],
        "interrupted"
    );
    assert!(containers("chant.spec", &id).is_empty(), "container left");
}

#[test]
fn containers_of_a_killed_chant_are_reaped_by_the_next_run() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(&image, &["docker-hang.sh"], "", "");
    let mut child = repo
        .chant_cmd(&["work", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    common::wait_for("container running", || {
        !containers("chant.spec", &id).is_empty()
    });
    // SIGKILL: chant gets no chance to clean up.
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(
        containers("chant.spec", &id).len(),
        1,
        "left by the killed run"
    );
    let other = repo.add_spec("Another", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "another spec"]);
    write_config(&repo, &image, &["greet.sh"], "", "", "64M");
    repo.chant(&["work", &other]).assert_ok();
    assert!(
        containers("chant.spec", &id).is_empty(),
        "the killed run's container was reaped"
    );
}

#[test]
fn a_missing_image_says_how_to_build_it() {
    let Some(_) = image() else { return };
    let (repo, id) = setup("chant-no-such-image:never", &["greet.sh"], "", "");
    repo.chant(&["work", &id])
        .assert_code(2)
        .stderr_has("chant-no-such-image:never' not found")
        .stderr_has("docs/sandbox.md");
    assert!(repo.events("spec_started").is_empty(), "nothing ran");
}

#[test]
fn doctor_reports_the_docker_level() {
    let Some(image) = image() else { return };
    let (repo, _) = setup(&image, &["greet.sh"], "", "");
    repo.chant(&["doctor"])
        .assert_ok()
        .stdout_has("docker       ok")
        .stdout_has(&format!(
            "with the agent program at {AGENTS_IN_IMAGE}/greet.sh"
        ))
        .stdout_has("agent.sandbox is docker: usable");
    // A program the image lacks, by path and by name (looked up on PATH inside).
    for command in [format!("{AGENTS_IN_IMAGE}/no-such-agent"), "claude".into()] {
        repo.write_config(&format!(
            "agent:\n  sandbox: docker\n  command: [\"{command}\"]\n  docker:\n    image: {image}\n"
        ));
        repo.chant(&["doctor"])
            .assert_code(1)
            .stdout_has(&format!(
                "agent program '{command}' is not in the Docker image '{image}'"
            ))
            .stdout_has("docs/sandbox.md");
    }
    let (repo, _) = setup("chant-no-such-image:never", &["greet.sh"], "", "");
    repo.chant(&["doctor"])
        .assert_code(1)
        .stdout_has("build it with");
}

// These need no engine: the refusals come before any is asked.

#[test]
fn doctor_names_a_docker_config_the_level_cannot_honour_and_the_level_is_not_usable() {
    let repo = TestRepo::initialised();
    repo.write_config("agent:\n  sandbox: docker\n  docker:\n    network: bridge\n");
    repo.chant(&["doctor"])
        .assert_code(1)
        .stdout_has("docker       missing  agent.docker: network 'bridge' is not supported")
        .stdout_has("agent.sandbox is docker: NOT usable");
}

#[test]
fn an_unreachable_engine_is_an_input_error_naming_the_fix() {
    let (repo, id) = setup("chant-agent:latest", &["greet.sh"], "", "");
    let missing = repo.tmp.path().join("no-docker.sock");
    repo.chant_cmd(&["work", &id])
        .env("DOCKER_HOST", format!("unix://{}", missing.display()))
        .output()
        .map(common::Run)
        .expect("run")
        .assert_code(2)
        .stderr_has("cannot reach the Docker engine")
        .stderr_has("DOCKER_HOST");
    assert!(repo.events("spec_started").is_empty());
}

#[test]
fn with_network_enabled_the_agent_reaches_only_listed_hosts_through_the_relay() {
    let Some(image) = image() else { return };
    // Both servers listen on the host's loopback: only chant's proxy, on the host, can
    // reach them; the container's namespace holds nothing but the relay on its own `lo`.
    let ok = Server::start("allowed-ok");
    let other = Server::start("second-server");
    let network = format!(
        "  network:\n    enabled: true\n    allowed_hosts: [\"127.0.0.1:{}\"]\n",
        ok.port
    );
    let (repo, id) = setup(&image, &["greet.sh"], &network, "");
    // The host's address on the default bridge, where a route out would lead.
    let direct = format!("172.17.0.1:{}", other.port);
    let argv = [
        "net-probe.sh",
        "{prompt_file}",
        &ok.url(),
        &other.url(),
        &direct,
    ];
    write_config(&repo, &image, &argv, &network, "", "64M");
    repo.git(&["commit", "--quiet", "-am", "probe the network"]);
    repo.chant(&["work", &id]).assert_ok();
    let found = common::http::net_probe(&repo, &id);
    common::http::assert_only_allowed_reached(&found, "http://127.0.0.1:3128");
    assert!(found["direct"].contains("unreachable"), "{found:?}");
    assert_eq!(found["net"], "lo", "{found:?}");
    assert_eq!(found["routes"], "0", "{found:?}");
    assert_eq!(other.hits(), 0, "the second server was reached");
    assert_eq!(ok.hits(), 2);
    let refusals = repo.events("policy_violation");
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals
        .iter()
        .all(|r| r["details"]["rule"] == "network" && r["details"]["port"] == other.port));
    assert_eq!(
        repo.events("spec_completed")[0]["details"]["network"]["127.0.0.1"],
        2
    );
    assert!(
        containers("chant.spec", &id).is_empty(),
        "a container was left"
    );
}

#[test]
fn a_volume_with_the_docker_socket_is_refused_before_anything_runs() {
    let (repo, id) = setup("chant-agent:latest", &["greet.sh"], "", "");
    repo.write_config(&format!(
        "agent:\n  sandbox: docker\n  command: [\"{AGENTS_IN_IMAGE}/greet.sh\"]\n  docker:\n    volumes: [\"/var/run/docker.sock:/var/run/docker.sock\"]\n"
    ));
    repo.chant(&["work", &id])
        .assert_code(2)
        .stderr_has("Docker socket");
    assert!(repo.events("spec_started").is_empty());
}

/// Runs `git chant <args>` in `repo` as `uid` (gid the same), with `group` as its only
/// supplementary group; the repository is handed to that user for the run and given back
/// to root after, so the harness's git can read it. None when this test process is not
/// root (it cannot switch users) or the engine is not the default socket.
fn chant_as(repo: &TestRepo, uid: u32, group: Option<u32>, args: &[&str]) -> Option<common::Run> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || std::env::var_os("DOCKER_HOST").is_some() {
        eprintln!("*** SKIPPING: switching users needs root and the default Docker socket");
        return None;
    }
    let chown = |owner: &str| {
        let status = std::process::Command::new("chown")
            .args(["-R", owner])
            .arg(repo.tmp.path())
            .status()
            .expect("chown");
        assert!(status.success());
    };
    chown(&format!("{uid}:{uid}"));
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid", &uid.to_string(), "--regid", &uid.to_string()]);
    match group {
        Some(g) => cmd.arg(format!("--groups={g}")),
        None => cmd.arg("--clear-groups"),
    };
    cmd.arg(env!("CARGO_BIN_EXE_git-chant"))
        .args(args)
        .current_dir(&repo.root);
    repo.env(&mut cmd);
    let out = cmd.output().expect("setpriv");
    chown("0:0");
    Some(common::Run(out))
}

fn socket_group() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/var/run/docker.sock")
        .map(|m| m.gid())
        .expect("docker socket")
}

#[test]
fn a_user_without_access_to_the_socket_is_told_how_to_get_it() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(&image, &["greet.sh"], "", "");
    let Some(run) = chant_as(&repo, 4321, None, &["work", &id]) else {
        return;
    };
    run.assert_code(2)
        .stderr_has("permission denied on the Docker socket")
        .stderr_has("docker");
}

#[test]
fn a_non_root_user_runs_the_agent_as_itself() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(&image, &["docker-probe.sh", "{prompt_file}"], "", "");
    let Some(run) = chant_as(&repo, 4321, Some(socket_group()), &["work", &id]) else {
        return;
    };
    run.assert_ok();
    let p = probe_lines(&repo, &id);
    assert_eq!(p["uid"], "4321", "{p:?}");
    assert_eq!(p["home"], "writable", "{p:?}");
    assert!(p["prompt"].starts_with("You are working on spec"), "{p:?}");
    assert!(containers("chant.spec", &id).is_empty(), "container left");
}

#[test]
fn git_works_in_the_container_without_the_main_repository() {
    let Some(image) = image() else { return };
    if git_files().is_empty() {
        eprintln!("*** SKIPPING: no /usr/bin/git to put in the test image");
        return;
    }
    let (repo, id) = setup(
        &image,
        &["docker-git.sh"],
        "  file_access:\n    denied_paths: [\".env\"]\n",
        "",
    );
    repo.write(".env", "SECRET=withheld\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "a withheld file"]);
    repo.chant(&["work", &id]).assert_ok();
    let got = repo.git(&["show", &format!("chant/{id}:git.txt")]);
    for want in [
        "status=ok",
        "diff=ok",
        "log=1",
        "show=ok",
        "withheld=absent",
    ] {
        assert!(got.lines().any(|l| l == want), "{want} missing:\n{got}");
    }
}

#[test]
fn git_in_a_clone_kept_after_a_container_run_runs_nothing_the_agent_wrote_into_its_git() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(&image, &["docker-plant-git.sh"], "", "");
    repo.chant(&["work", &id]).assert_code(1);
    let failed = repo.events("spec_failed");
    let clone = PathBuf::from(failed[0]["details"]["clone"].as_str().expect("clone path"));
    for args in [&["status"][..], &["diff"], &["log", "-1", "-p"]] {
        repo.git_in(&clone, &[], args).assert_ok();
    }
    let name = clone
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let ran: Vec<String> = std::fs::read_dir(clone.parent().expect("parent"))
        .expect("parent")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}.pwned")))
        .collect();
    assert!(ran.is_empty(), "planted code ran: {ran:?}");
    let status = repo
        .git_in(&clone, &[], &["status", "--porcelain"])
        .assert_ok()
        .stdout();
    assert!(status.contains(" M README.md"), "{status}");
}

/// Running containers labelled `chant.spec=id` whose name starts with `prefix` (`""`: all).
fn running(id: &str, prefix: &str) -> Vec<String> {
    rt().block_on(async {
        let docker = connect().await.expect("engine");
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![format!("chant.spec={id}")]);
        filters.insert("status".to_string(), vec!["running".to_string()]);
        let options = ListContainersOptionsBuilder::default()
            .filters(&filters)
            .build();
        docker
            .list_containers(Some(options))
            .await
            .expect("list containers")
            .into_iter()
            .filter(|c| {
                c.names
                    .iter()
                    .flatten()
                    .any(|n| n.trim_start_matches('/').starts_with(prefix))
            })
            .filter_map(|c| c.id)
            .collect()
    })
}

const SOME_NETWORK: &str = "  network:\n    enabled: true\n    allowed_hosts: [example.com]\n";

#[test]
fn a_relay_that_cannot_start_fails_the_run_before_the_agent_runs_and_leaves_nothing() {
    let Some(_) = image() else { return };
    // A hostile image: a file where the relay's program is mounted, so the engine cannot
    // start the relay. The agent (the well-behaved greet.sh) must never run without it.
    let hostile = common::image::build(&common::image::Layout {
        name: "chant-test-relay-blocked",
        files: Vec::new(),
        dirs: &[],
        links: &[("chant-relay", "/bin/busybox")],
    })
    .expect("image");
    let (repo, id) = setup(&hostile, &["greet.sh"], SOME_NETWORK, "");
    let run = repo.chant(&["work", &id]);
    assert_eq!(run.code(), 1, "{}{}", run.stdout(), run.stderr());
    assert!(run.stderr().contains("network relay"), "{}", run.stderr());
    assert!(!run.stdout().contains("greet: done"), "{}", run.stdout());
    let failed = repo.events("spec_failed");
    assert!(
        failed[0]["details"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("network relay")),
        "{failed:?}"
    );
    assert!(
        containers("chant.spec", &id).is_empty(),
        "a container was left"
    );
}

#[test]
fn with_the_network_a_program_missing_from_the_image_fails_the_run_saying_so() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(&image, &["no-such-agent.sh"], SOME_NETWORK, "");
    let run = repo.chant(&["work", &id]);
    assert_eq!(run.code(), 1, "{}{}", run.stdout(), run.stderr());
    let said = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        said.contains("cannot run /opt/chant/agents/no-such-agent.sh in the container"),
        "{said}"
    );
    let failed = repo.events("spec_failed");
    assert!(
        failed[0]["details"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("code 127")),
        "{failed:?}"
    );
    assert!(
        containers("chant.spec", &id).is_empty(),
        "a container was left"
    );
}

#[test]
fn a_relay_killed_mid_run_takes_the_agent_with_it_and_fails_the_run() {
    let Some(image) = image() else { return };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("*** SKIPPING: killing the relay (uid 65534 in the container) needs root");
        return;
    }
    let (repo, id) = setup(&image, &["docker-hang.sh"], SOME_NETWORK, "");
    let child = repo
        .chant_cmd(&["work", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    common::wait_for("the agent's container running", || {
        running(&id, "").len() == 1
    });
    let container = running(&id, "");
    // The relay is the container's first process: its host pid is the container's.
    let relay = rt().block_on(async {
        let docker = connect().await.expect("engine");
        docker
            .inspect_container(
                &container[0],
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .expect("inspect")
            .state
            .and_then(|s| s.pid)
            .expect("a pid")
    });
    let cmdline = std::fs::read(format!("/proc/{relay}/cmdline")).expect("relay's cmdline");
    assert!(
        String::from_utf8_lossy(&cmdline).contains("relay\0--socket"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &relay.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    let run = common::Run(child.wait_with_output().expect("wait"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the run went on"
    );
    assert_eq!(run.code(), 1, "{}{}", run.stdout(), run.stderr());
    let failed = repo.events("spec_failed");
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["details"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("code 137")),
        "{failed:?}"
    );
    assert!(
        containers("chant.spec", &id).is_empty(),
        "a container was left"
    );
}

#[test]
fn the_agent_cannot_signal_read_or_displace_its_relay_and_holds_no_privilege() {
    let Some(image) = image() else { return };
    let ok = Server::start("allowed-ok");
    let network = format!(
        "  network:\n    enabled: true\n    allowed_hosts: [\"127.0.0.1:{}\"]\n",
        ok.port
    );
    let (repo, id) = setup(
        &image,
        &["relay-probe.sh", "{prompt_file}", &ok.url()],
        &network,
        "",
    );
    repo.chant(&["work", &id]).assert_ok();
    let found: HashMap<String, String> = repo
        .git(&["show", &format!("chant/{id}:relay.txt")])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&repo.root).expect("repo").uid();
    let agent = if owner == 0 { 65532 } else { owner };
    assert_eq!(found["uid"], agent.to_string(), "{found:?}");
    assert_eq!(
        found["groups"], found["gid"],
        "no supplementary group: {found:?}"
    );
    assert_eq!(found["ppid"], "1", "the relay started the agent: {found:?}");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(found[set], "0000000000000000", "{set}: {found:?}");
    }
    assert_eq!(found["NoNewPrivs"], "1", "{found:?}");
    assert_eq!(found["relay-uid"], "65534", "{found:?}");
    // The relay keeps CAP_KILL alone (to pass `docker stop` on to the agent), no bounding set.
    assert_eq!(found["relay-CapPrm"], "0000000000000020", "{found:?}");
    assert_eq!(found["relay-CapEff"], "0000000000000020", "{found:?}");
    assert_eq!(found["relay-CapBnd"], "0000000000000000", "{found:?}");
    for sig in ["KILL", "TERM", "STOP", "INT", "HUP"] {
        assert_eq!(found[&format!("kill-{sig}")], "refused", "{sig}: {found:?}");
    }
    for what in [
        "read-environ",
        "read-mem",
        "read-maps",
        "list-fd",
        "list-root",
        "list-cwd",
        "exe",
        "port",
        "replace",
    ] {
        assert_eq!(found[what], "refused", "{what}: {found:?}");
    }
    // What any process may read of another (its command line) is not a secret.
    assert_eq!(found["read-cmdline"], "read", "{found:?}");
    // The same moves work against the agent's own processes and a free port.
    assert_eq!(found["control-read"], "read", "{found:?}");
    assert_eq!(found["control-kill"], "sent", "{found:?}");
    assert_eq!(found["control-port"], "taken", "{found:?}");
    assert_eq!(
        found["after"], "allowed-ok",
        "the relay did not survive: {found:?}"
    );
    assert_eq!(found["localhost"], "allowed-ok", "{found:?}");
    assert_eq!(ok.hits(), 2);
    assert!(
        containers("chant.spec", &id).is_empty(),
        "a container was left"
    );
}

/// Collects a container's output.
#[derive(Default)]
struct Collect(Vec<u8>);

impl git_chant::sandbox::OutputSink for Collect {
    fn output(&mut self, _: git_chant::sandbox::Stream, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

#[test]
fn the_runs_home_files_start_the_containers_home_owned_by_its_user_and_nothing_else_gets_in() {
    let Some(image) = image() else {
        return;
    };
    let config = git_chant::config::parse(
        "test",
        &format!("---\nagent:\n  sandbox: docker\n  docker:\n    image: {image}\n    memory: 256M\n    cpu: 1\n---\n"),
    )
    .expect("config");
    let sandbox = git_chant::sandbox::for_level(config.agent.sandbox, &config).expect("level");
    assert!(sandbox.seeds_home());
    let tmp = tempfile::tempdir().expect("tmp");
    let workspace = tmp.path().join("workspace");
    std::fs::create_dir_all(&workspace).expect("workspace");
    // The clone holds a would-be HOME file: the program must never see it as its settings.
    std::fs::create_dir_all(workspace.join(".codex")).expect("dir");
    std::fs::write(workspace.join(".codex/config.toml"), "from the clone\n").expect("write");
    // The program sees its HOME files as its own (it can rewrite them), with the argv
    // unchanged after the start script (a quoted argument with a space survives).
    let script = "cat \"$HOME/.codex/config.toml\"; stat -c 'owner=%u mode=%a' \"$HOME/.codex/config.toml\"; \
                  echo rewritten > \"$HOME/.codex/config.toml\" && cat \"$HOME/.codex/config.toml\"; \
                  echo \"arg=[$1]\"; id -u; \
                  touch /run/chant-home/x 2>/dev/null && echo SEED-WRITABLE; true";
    let job = git_chant::sandbox::Job {
        argv: vec![
            "sh".into(),
            "-c".into(),
            script.into(),
            "sh".into(),
            "two words".into(),
        ],
        env: vec![
            ("PATH".into(), "/bin".into()),
            ("HOME".into(), "/home/agent".into()),
        ],
        workspace: workspace.clone(),
        timeout: Duration::from_secs(60),
        files: vec![
            ("/run/chant/prompt.md".into(), b"the prompt".to_vec()),
            (
                "/home/agent/.codex/config.toml".into(),
                b"model_provider = \"chant\"\n".to_vec(),
            ),
        ],
        hold_stdin: false,
        network: None,
        gate: None,
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut out = Collect::default();
    let outcome = sandbox.run(&job, &mut out, &stop).expect("run");
    let out = String::from_utf8_lossy(&out.0).into_owned();
    assert_eq!(outcome, git_chant::sandbox::Outcome::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "model_provider = \"chant\"", "{out}");
    let uid = lines[4];
    assert_eq!(lines[1], format!("owner={uid} mode=644"), "{out}");
    assert_eq!(lines[2], "rewritten", "{out}");
    assert_eq!(lines[3], "arg=[two words]", "{out}");
    assert_ne!(uid, "0", "the program runs as root: {out}");
    assert!(!out.contains("SEED-WRITABLE"), "{out}");
    assert!(!out.contains("from the clone"), "{out}");

    // A job file outside /run/chant and HOME (or climbing out of HOME) is refused before
    // any container is made.
    for bad in ["/etc/profile", "/home/agent/../../etc/profile"] {
        let mut hostile = job.clone();
        hostile.argv = vec!["touch".into(), "/workspace/ran".into()];
        hostile.files.push((bad.into(), b"x".to_vec()));
        let got = sandbox.run(&hostile, &mut Collect::default(), &stop);
        assert!(got.is_err(), "{bad}: {got:?}");
        assert!(!workspace.join("ran").exists(), "{bad}: the program ran");
    }
}

/// Busybox, the C library's `getent` and the fixture agents.
fn getent_image() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    common::image::once(&IMAGE, || {
        let getent = Path::new("/usr/bin/getent");
        if !getent.exists() {
            return Err("no /usr/bin/getent on this host (apt-get install libc-bin)".into());
        }
        common::image::build(&common::image::Layout {
            name: "chant-test-getent",
            files: common::image::with_libraries(getent),
            dirs: &[],
            links: &[],
        })
    })
}

#[test]
fn localhost_resolves_in_a_container_with_and_without_the_network_and_the_hosts_file_is_read_only()
{
    let Some(image) = getent_image() else { return };
    let network = "  network:\n    enabled: true\n    allowed_hosts: [\"127.0.0.1:9\"]\n";
    for (what, extra) in [("without the network", ""), ("with the relay", network)] {
        let (repo, id) = setup(&image, &["hosts-probe.sh"], extra, "");
        let run = repo.chant(&["work", &id]).assert_ok();
        let found = repo.git(&["show", &format!("chant/{id}:hosts.txt")]);
        let show = format!("{what}:\n{found}\n{}", run.stderr());
        assert!(found.contains("127.0.0.1\tlocalhost\n"), "{show}");
        assert!(found.contains("::1\tlocalhost"), "{show}");
        let answer = found
            .split("--- getent\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .unwrap_or_default();
        let words: Vec<&str> = answer.split_whitespace().collect();
        assert!(
            matches!(words.first(), Some(&"127.0.0.1" | &"::1")) && words.contains(&"localhost"),
            "{show}"
        );
        assert!(found.contains("write=refused"), "{show}");
        assert!(!found.contains("10.0.0.1"), "{show}");
    }
}

/// Sends `signal` to the container's first process, as `docker stop` / `docker kill -s` do.
fn signal_container(id: &str, signal: &str) {
    let container = running(id, "");
    assert_eq!(container.len(), 1, "{container:?}");
    rt().block_on(async {
        let docker = connect().await.expect("engine");
        let options = bollard::query_parameters::KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        docker
            .kill_container(&container[0], Some(options))
            .await
            .expect("signal the container");
    });
}

#[test]
fn behind_the_relay_the_agent_gets_the_sigterm_and_sigint_sent_to_the_container() {
    use std::io::BufRead;
    let Some(image) = image() else { return };
    for signal in ["SIGTERM", "SIGINT"] {
        // Long enough that only the signal, never the timeout, can end the agent.
        let (repo, id) = setup(
            &image,
            &["term-trap.sh"],
            &format!("{SOME_NETWORK}  timeout: 120s\n"),
            "",
        );
        let mut child = repo
            .chant_cmd(&["work", &id])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // Only once the agent's trap is set: before it, the signal would end the shell.
        let stdout = child.stdout.take().expect("stdout");
        let (ready, said) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if line.contains("term-trap: ready") {
                    let _ = ready.send(());
                }
            }
        });
        said.recv_timeout(Duration::from_secs(60))
            .expect("the agent never said it was ready");
        signal_container(&id, signal);
        let started = Instant::now();
        let run = common::Run(child.wait_with_output().expect("wait"));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{signal}: the agent went on after it"
        );
        assert_eq!(run.code(), 0, "{signal}: {}", run.stderr());
        let name = signal.trim_start_matches("SIG");
        assert_eq!(
            repo.git(&["show", &format!("chant/{id}:term.txt")]),
            format!("got={name}\n"),
            "{signal}"
        );
        assert!(containers("chant.spec", &id).is_empty(), "container left");
    }
}

#[test]
fn behind_the_relay_a_timeout_still_ends_an_agent_that_ignores_sigterm_promptly_and_is_recorded() {
    let Some(image) = image() else { return };
    let (repo, id) = setup(
        &image,
        &["ignore-term.sh", "/tmp/pids"],
        &format!("{SOME_NETWORK}  timeout: 3s\n"),
        "",
    );
    let started = Instant::now();
    let run = repo.chant(&["work", &id]).assert_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run went on past its timeout"
    );
    assert!(run.stderr().contains("agent.timeout"), "{}", run.stderr());
    let failed = repo.events("spec_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["details"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("agent.timeout")),
        "{failed:?}"
    );
    assert!(containers("chant.spec", &id).is_empty(), "container left");
}

#[test]
fn doctor_follows_links_inside_the_image_and_names_a_link_to_nothing() {
    let Some(_) = image() else { return };
    // As npm installs a CLI: a link on PATH into node_modules, here a chain of an absolute
    // and a relative link; one link to nothing, one loop.
    let linked = common::image::build_with(
        &common::image::Layout {
            name: "chant-test-linked-agents",
            files: Vec::new(),
            dirs: &[],
            links: &[
                ("usr/bin/claude", "/opt/claude"),
                ("opt/claude", "../usr/lib/node_modules/cli/bin/cli.js"),
                ("usr/bin/codex", "/usr/lib/node_modules/gone/codex.js"),
                ("usr/bin/gemini", "gemini-again"),
                ("usr/bin/gemini-again", "gemini"),
            ],
        },
        vec![(
            "usr/lib/node_modules/cli/bin/cli.js".into(),
            b"#!/bin/sh\necho cli\n".to_vec(),
            0,
        )],
    )
    .expect("image");
    let (repo, _) = setup(&linked, &["greet.sh"], "", "");
    let doctor = |command: &str| {
        repo.write_config(&format!(
            "agent:\n  sandbox: docker\n  command: [\"{command}\"]\n  docker:\n    image: {linked}\n"
        ));
        repo.chant(&["doctor"])
    };
    for command in ["claude", "/usr/bin/claude"] {
        doctor(command)
            .assert_ok()
            .stdout_has("/usr/bin/claude, found (→ /usr/lib/node_modules/cli/bin/cli.js)")
            .stdout_has("agent.sandbox is docker: usable");
    }
    doctor("codex")
        .assert_code(1)
        .stdout_has("missing: /usr/bin/codex → /usr/lib/node_modules/gone/codex.js")
        .stdout_has("agent.sandbox is docker: NOT usable");
    doctor("gemini")
        .assert_code(1)
        .stdout_has("agent.sandbox is docker: NOT usable");
}
