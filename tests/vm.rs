//! The `vm` level with a real qemu guest (microvm, TCG here), booted per run.
//! Skips loudly when qemu, a kernel or busybox-static is missing, unless
//! `CHANT_REQUIRE_VM=1` (CI sets it after installing them).

mod common;

use std::path::{Path, PathBuf};

use common::{crate_path, TestRepo};

fn vm_available() -> bool {
    let qemu = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let kernel = std::fs::read_dir("/boot")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        })
        .unwrap_or(false);
    let busybox = Path::new("/bin/busybox").exists();
    if qemu && kernel && busybox {
        return true;
    }
    if std::env::var_os("CHANT_REQUIRE_VM").is_some() {
        panic!("CHANT_REQUIRE_VM is set but qemu ({qemu}), a /boot/vmlinuz-* kernel ({kernel}) or /bin/busybox ({busybox}) is missing");
    }
    eprintln!("\n*** SKIPPING vm tests: install qemu-system-x86, linux-image-cloud-amd64 and busybox-static (or set CHANT_REQUIRE_VM=1 to fail instead) ***\n");
    false
}

/// A repository whose agent runs `script` (a fixture) from the guest image at /agent.
fn setup(script: &str, extra: &str) -> (TestRepo, String, PathBuf) {
    let repo = TestRepo::initialised();
    let image = repo.tmp.path().join("image");
    std::fs::create_dir_all(image.join("agent")).expect("image");
    std::fs::copy(
        crate_path(&format!("fixtures/agents/{script}")),
        image.join("agent").join(script),
    )
    .expect("copy agent");
    repo.write_config(&format!(
        "agent:\n  sandbox: vm\n  command: [sh, /agent/{script}]\n  timeout: 60s\n  vm:\n    image: {}\n    memory: 256M\n    accel: tcg\n{extra}",
        image.display()
    ));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "vm config"]);
    let id = repo.add_spec("Greet", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    (repo, id, image)
}

#[test]
fn a_good_agent_lands_through_a_vm() {
    if !vm_available() {
        return;
    }
    let (repo, id, _) = setup("greet.sh", "");
    let run = repo.chant(&["work", &id]).assert_ok();
    assert!(run.stdout().contains("greet: done"), "{}", run.stdout());
    let branch = format!("chant/{id}");
    assert_eq!(
        repo.git(&["show", &format!("{branch}:hello.txt")]),
        "Hello from the agent!\n"
    );
    assert!(repo
        .git(&["log", "-1", "--format=%B", &branch])
        .contains("Chant-Sandbox: vm"));
}

#[test]
fn the_guest_is_contained_and_boots_clean_every_time() {
    if !vm_available() {
        return;
    }
    let (repo, id, _) = setup(
        "vm-probe.sh",
        "  secrets:\n    expose: [AGENT_API_KEY, HOST_PATH]\n",
    );
    let host_path = repo.root.display().to_string();
    let run = |id: &str| {
        common::Run(
            repo.chant_cmd(&["work", id])
                .env("AGENT_API_KEY", "sk-vm-secret-1234")
                .env("HOST_PATH", &host_path)
                .env("DATABASE_URL", "postgres://hidden")
                .output()
                .expect("run"),
        )
        .assert_ok()
    };
    let out = run(&id);
    assert!(!out.stdout().contains("sk-vm-secret-1234"));
    let probe = repo.git(&["show", &format!("chant/{id}:probe.txt")]);
    for want in [
        "uid=1000",
        "net=eth0 lo ",
        "etc=readonly",
        "marker=fresh",
        "workspace=/workspace",
        "home=/home/agent",
        "clone=/workspace",
        "secret=present",
        "hidden=none",
    ] {
        assert!(probe.contains(want), "{want} not in:\n{probe}");
    }
    // A second spec, a second boot: nothing of the first run survived.
    let id2 = repo.add_spec("Again", &[]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec 2"]);
    run(&id2);
    let probe = repo.git(&["show", &format!("chant/{id2}:probe.txt")]);
    assert!(probe.contains("marker=fresh"), "{probe}");
}

#[test]
fn policy_violations_from_the_guest_land_nothing() {
    if !vm_available() {
        return;
    }
    let (repo, id, _) = setup("escape-symlink.sh", "");
    repo.chant(&["work", &id])
        .assert_code(1)
        .stderr_has("policy violation");
    let v = repo.events("policy_violation");
    assert!(
        v.iter().any(|e| e["details"]["path"] == "passwd-link"),
        "{v:?}"
    );
    assert_eq!(repo.rev(&format!("chant/{id}")), repo.rev("main"));
}

#[test]
fn timeout_kills_the_vm() {
    if !vm_available() {
        return;
    }
    let (repo, id, image) = setup("greet.sh", "");
    make_agent_hang(&image);
    let config = repo
        .read(".chant/config.md")
        .replace("timeout: 60s", "timeout: 8s");
    repo.write(".chant/config.md", &config);
    repo.git(&["commit", "--quiet", "-am", "short timeout"]);
    let scratch = scratch_dir(&repo);
    let out = repo
        .chant_cmd(&["work", &id])
        .env("TMPDIR", &scratch)
        .output()
        .expect("run");
    let run = common::Run(out).assert_code(1);
    assert!(run.stderr().contains("agent.timeout"), "{}", run.stderr());
    assert!(!qemu_running(&scratch), "qemu is still running");
    assert_nothing_left(&scratch);
}

#[test]
fn a_program_missing_from_the_image_is_an_input_error() {
    if !vm_available() {
        return;
    }
    let (repo, id, _) = setup("greet.sh", "");
    let config = repo.read(".chant/config.md").replace(
        "command: [sh, /agent/greet.sh]",
        "command: [/agent/nope.sh]",
    );
    repo.write(".chant/config.md", &config);
    repo.git(&["commit", "--quiet", "-am", "bad agent"]);
    repo.chant(&["work", &id])
        .assert_code(2)
        .stderr_has("is not in the vm image");
}

#[test]
fn ctrl_c_stops_the_vm_and_leaves_nothing() {
    if !vm_available() {
        return;
    }
    let (repo, id, image) = setup("greet.sh", "");
    make_agent_hang(&image);
    let scratch = scratch_dir(&repo);
    let child = repo
        .chant_cmd(&["work", &id])
        .env("TMPDIR", &scratch)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until qemu runs, then interrupt chant as a terminal's Ctrl-C would.
    common::wait_for("qemu running", || qemu_running(&scratch));
    common::ctrl_c(child).assert_code(1);
    assert_eq!(
        repo.events("spec_failed")[0]["details"]["reason"],
        "interrupted"
    );
    assert!(!qemu_running(&scratch), "qemu survived Ctrl-C");
    assert_nothing_left(&scratch);
}

/// Replaces the image's agent with one that never finishes.
fn make_agent_hang(image: &Path) {
    std::fs::write(
        image.join("agent/greet.sh"),
        "#!/bin/sh\necho sleeping\nsleep 600\n",
    )
    .expect("write");
}

/// An empty folder to pass as the run's TMPDIR, where the VM keeps its scratch files (so
/// the test can find its qemu by path, and see that nothing is left behind).
fn scratch_dir(repo: &TestRepo) -> PathBuf {
    let scratch = repo.tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");
    scratch
}

/// True while a process (qemu) has a path below `scratch` on its command line.
fn qemu_running(scratch: &Path) -> bool {
    let out = std::process::Command::new("pgrep")
        .args(["-f", scratch.to_str().expect("utf8")])
        .output()
        .expect("pgrep");
    !out.stdout.is_empty()
}

fn assert_nothing_left(scratch: &Path) {
    let left: Vec<_> = std::fs::read_dir(scratch)
        .expect("scratch")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "scratch files left behind: {left:?}");
}

#[test]
fn with_network_enabled_the_guest_reaches_only_listed_hosts_through_the_proxy() {
    if !vm_available() {
        return;
    }
    let ok = common::http::Server::start("allowed-ok");
    let other = common::http::Server::start("second-server");
    let (repo, id, image) = setup("net-probe.sh", "");
    // 10.0.2.2 is qemu's alias for the host: the way out a guest would try first.
    repo.write_config(&format!(
        "agent:\n  sandbox: vm\n  command: [sh, /agent/net-probe.sh, \"{{prompt_file}}\", \"{}\", \"{}\", \"10.0.2.2:{}\"]\n  timeout: 90s\n  vm:\n    image: {}\n    memory: 256M\n    accel: tcg\n    network: allowlist\n  network:\n    enabled: true\n    allowed_hosts: [\"127.0.0.1:{}\"]\n",
        ok.url(),
        other.url(),
        other.port,
        image.display(),
        ok.port
    ));
    repo.git(&["commit", "--quiet", "-am", "probe the network"]);
    repo.chant(&["work", &id]).assert_ok();
    let found = common::http::net_probe(&repo, &id);
    common::http::assert_only_allowed_reached(&found, "http://10.0.2.100:3128");
    assert!(found["direct"].starts_with("failed"), "{found:?}");
    assert_eq!(found["routes"], "1", "only the guest's own link: {found:?}");
    assert_eq!(other.hits(), 0, "the second server was reached");
    assert_eq!(ok.hits(), 2);
    let refusals = repo.events("policy_violation");
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals.iter().all(|r| r["details"]["rule"] == "network"));
}

/// Copies `program` and the libraries it loads into `image` at their own paths.
fn install_with_libraries(image: &Path, program: &Path) {
    let ldd = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .expect("ldd");
    let libs = String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|t| t.starts_with('/'))
        .map(PathBuf::from)
        .collect::<Vec<_>>();
    for file in std::iter::once(program.to_path_buf()).chain(libs) {
        let inside = image.join(file.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(inside.parent().expect("parent")).expect("dir");
        std::fs::copy(&file, &inside).expect("copy");
    }
}

#[test]
fn an_injected_secret_reaches_the_origin_from_the_guest_which_holds_only_the_placeholder() {
    if !vm_available() {
        return;
    }
    const VALUE: &str = "sk-test-api03-RealValueRealValue0123456789xyz";
    let origin = common::http::FakeServer::start_tls(
        &crate_path("fixtures/tls/server.pem"),
        &crate_path("fixtures/tls/server.key"),
        |r| {
            let auth = r.header("authorization").unwrap_or("-").to_string();
            common::http::Response {
                status: 200,
                content_type: "text/plain",
                body: format!("seen {auth}\n").into_bytes(),
                headers: vec![("X-Seen", auth)],
            }
        },
    );
    let (repo, id, image) = setup("inject-probe.sh", "");
    install_with_libraries(&image, Path::new("/usr/bin/curl"));
    let host = format!("127.0.0.1:{}", origin.port);
    repo.write_config(&format!(
        "agent:\n  sandbox: vm\n  command: [sh, /agent/inject-probe.sh, \"{{prompt_file}}\", \"https://{host}/v1/messages\"]\n  timeout: 120s\n  vm:\n    image: {}\n    memory: 256M\n    accel: tcg\n    network: allowlist\n  network:\n    enabled: true\n    upstream_ca: {}\n  secrets:\n    inject:\n      API_KEY: [\"{host}\"]\n",
        image.display(),
        crate_path("fixtures/tls/ca.pem").display()
    ));
    repo.git(&["commit", "--quiet", "-am", "inject a secret"]);
    let run = common::Run(
        repo.chant_cmd(&["work", &id])
            .env("API_KEY", VALUE)
            .output()
            .expect("run git-chant"),
    );
    let printed = format!("{}{}", run.stdout(), run.stderr());
    run.assert_ok();
    // The origin got the value, once.
    let requests = origin.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {VALUE}").as_str())
    );
    // The guest held a placeholder of the same shape and saw only it come back.
    let probe = repo.git(&["show", &format!("chant/{id}:inject.txt")]);
    assert!(!probe.contains(VALUE), "{probe}");
    let env_line = probe
        .lines()
        .find(|l| l.starts_with("env="))
        .expect("env line");
    let placeholder = env_line.trim_start_matches("env=API_KEY=");
    assert!(
        placeholder.starts_with("sk-test-api03-") && placeholder.len() == VALUE.len(),
        "{probe}"
    );
    assert!(
        probe.contains(&format!("X-Seen: Bearer {placeholder}")),
        "{probe}"
    );
    assert!(
        probe
            .contains("ca=/run/chant/chant-ca.pem /run/chant/chant-ca.pem /run/chant/chant-ca.pem"),
        "{probe}"
    );
    assert!(probe.contains("keys-in-files=0"), "{probe}");
    assert!(!printed.contains(VALUE), "{printed}");
    assert!(!serde_json::to_string(&repo.ledger())
        .expect("json")
        .contains(VALUE));
    let completed = &repo.events("spec_completed")[0];
    assert_eq!(
        completed["details"]["injected"][&host]["API_KEY"], 1,
        "{completed}"
    );
}

#[test]
fn the_agents_own_key_is_injected_by_default_in_the_guest() {
    if !vm_available() {
        return;
    }
    use sha2::Digest;
    const VALUE: &str = "sk-ant-api03-RealValueRealValue0123456789xyz";
    let api = common::http::FakeServer::start_tls(
        &crate_path("fixtures/tls/server.pem"),
        &crate_path("fixtures/tls/server.key"),
        |_| common::http::Response {
            status: 200,
            content_type: "text/plain",
            body: b"ok\n".to_vec(),
            headers: Vec::new(),
        },
    );
    let (repo, id, image) = setup("key-probe.sh", "");
    install_with_libraries(&image, Path::new("/usr/bin/curl"));
    // Run as Claude Code: its key is injected with no inject entry at all.
    repo.write_config(&format!(
        "agent:\n  kind: claude\n  sandbox: vm\n  command: [sh, /agent/key-probe.sh, -p]\n  timeout: 120s\n  vm:\n    image: {}\n    memory: 256M\n    accel: tcg\n    network: allowlist\n  network:\n    enabled: true\n    upstream_ca: {}\n",
        image.display(),
        crate_path("fixtures/tls/ca.pem").display()
    ));
    repo.git(&["commit", "--quiet", "-am", "run as claude"]);
    let run = common::Run(
        repo.chant_cmd(&["work", &id])
            .env("ANTHROPIC_API_KEY", VALUE)
            .env(
                "ANTHROPIC_BASE_URL",
                format!("https://127.0.0.1:{}", api.port),
            )
            .output()
            .expect("run git-chant"),
    );
    let printed = format!("{}{}", run.stdout(), run.stderr());
    run.assert_ok();
    let requests = api.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].header("x-api-key"), Some(VALUE));
    let probe = repo.git(&["show", &format!("chant/{id}:key.txt")]);
    assert!(!probe.contains(VALUE), "{probe}");
    let sha = hex::encode(sha2::Sha256::digest(VALUE.as_bytes()));
    assert!(!probe.contains(&sha), "the guest held the key:\n{probe}");
    for want in [
        "has-key=yes".to_string(),
        format!("key-len={}", VALUE.len()),
        "key-prefix=sk-ant-api03-".to_string(),
    ] {
        assert!(probe.contains(&want), "{want} not in:\n{probe}");
    }
    assert!(!printed.contains(VALUE), "{printed}");
}

#[test]
fn network_enabled_with_an_isolated_vm_is_an_input_error() {
    if !vm_available() {
        return;
    }
    let (repo, id, _) = setup(
        "greet.sh",
        "  network:\n    enabled: true\n    allowed_hosts: [example.com]\n",
    );
    repo.chant(&["work", &id])
        .assert_code(2)
        .stderr_has("agent.vm.network: allowlist");
}

#[test]
fn the_guest_never_writes_the_clones_git_metadata() {
    if !vm_available() {
        return;
    }
    let (repo, id, _) = setup("vm-plant-git.sh", "");
    let run = repo.chant(&["work", &id, "--keep"]).assert_ok();
    let stderr = run.stderr();
    let clone = stderr
        .lines()
        .find_map(|l| l.strip_prefix("chant: the clone is kept for inspection at "))
        .map(|p| PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!("no kept clone: {stderr}"));
    let config = std::fs::read_to_string(clone.join(".git/config")).expect("config");
    assert!(!config.contains("fsmonitor = touch"), "{config}");
    assert!(!clone.join(".git/hooks/post-index-change").exists());
    assert!(!clone.join(".git/commondir").exists());
    let status = repo
        .git_in(&clone, &[], &["status", "--porcelain"])
        .assert_ok()
        .stdout();
    assert!(status.contains("?? change.txt"), "{status}");
    assert_eq!(
        repo.git(&["show", &format!("chant/{id}:change.txt")]),
        "honest change\n"
    );
}

/// A flattened Debian-like image: merged /usr (`bin -> usr/bin`, `lib -> usr/lib`), its own
/// /etc/passwd and /etc/group (with `extra_user`, when given), no shell of its own unless
/// `sh` holds one, and the probe agent at /agent.
fn debian_like(image: &Path, extra_user: &str, sh: Option<&str>) {
    for d in [
        "usr/bin",
        "usr/lib",
        "usr/sbin",
        "usr/local/bin",
        "etc",
        "home",
        "root",
        "agent",
    ] {
        std::fs::create_dir_all(image.join(d)).expect("dir");
    }
    for (link, target) in [("bin", "usr/bin"), ("lib", "usr/lib"), ("sbin", "usr/sbin")] {
        std::os::unix::fs::symlink(target, image.join(link)).expect("link");
    }
    std::fs::write(
        image.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n{extra_user}"),
    )
    .expect("passwd");
    std::fs::write(
        image.join("etc/group"),
        "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n",
    )
    .expect("group");
    if let Some(text) = sh {
        std::fs::write(image.join("usr/bin/sh"), text).expect("sh");
        std::fs::set_permissions(
            image.join("usr/bin/sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
    }
}

#[test]
fn images_with_their_own_passwd_run_the_agent_as_uid_1000_and_it_can_write_the_workspace() {
    if !vm_available() {
        return;
    }
    for extra_user in ["", "agent:x:1234:1234::/home/agent:/bin/sh\n"] {
        let (repo, id, image) = setup("vm-probe.sh", "");
        let probe = std::fs::read(image.join("agent/vm-probe.sh")).expect("probe");
        std::fs::remove_dir_all(&image).expect("reset image");
        debian_like(&image, extra_user, None);
        std::fs::write(image.join("agent/vm-probe.sh"), probe).expect("probe");
        let run = repo.chant(&["work", &id]);
        assert_eq!(run.code(), 0, "{extra_user:?}: {}", run.stderr());
        let found = repo.git(&["show", &format!("chant/{id}:probe.txt")]);
        for want in [
            "uid=1000",
            "etc=readonly",
            "workspace=/workspace",
            "home=/home/agent",
        ] {
            assert!(
                found.contains(want),
                "{extra_user:?}: {want} not in:\n{found}"
            );
        }
    }
}

#[test]
fn an_image_that_cannot_start_a_shell_is_a_clear_failure() {
    if !vm_available() {
        return;
    }
    let (repo, id, image) = setup("greet.sh", "");
    let greet = std::fs::read(image.join("agent/greet.sh")).expect("greet");
    std::fs::remove_dir_all(&image).expect("reset image");
    debian_like(&image, "", Some("this is not a program\n"));
    std::fs::write(image.join("agent/greet.sh"), greet).expect("greet");
    let run = repo.chant(&["work", &id]).assert_code(1);
    assert!(
        run.stderr().contains("cannot run the agent") && run.stderr().contains("uid:gid 1000:1000"),
        "{}",
        run.stderr()
    );
    let failed = repo.events("spec_failed");
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["details"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("cannot run the agent")));
    assert!(!repo.exists(&format!(".chant/.locks/{id}.lock")));
}

// ---- The command gate in the guest: `$CHANT_EXEC` through qemu's one forward ----

/// Counts the connections a loopback listener accepts (none may come from a guest).
fn connection_counter() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for _ in listener.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

/// Processes carrying a guest connection to a gate socket below `root`.
fn bridges_of(root: &Path) -> Vec<String> {
    processes_with(&root.display().to_string())
        .into_iter()
        .filter(|c| c.contains("--bridge"))
        .collect()
}

/// Command lines (NUL-separated arguments joined by spaces) of processes holding `token`.
fn processes_with(token: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(token))
        .collect()
}

#[test]
fn in_a_vm_the_host_gate_decides_records_and_the_allowed_command_runs_in_the_guest() {
    if !vm_available() {
        return;
    }
    let (port, reached) = connection_counter();
    let (repo, id, _) = setup("vm-gate.sh", "");
    let config = repo.read(".chant/config.md").replace(
        "command: [sh, /agent/vm-gate.sh]",
        &format!("command: [sh, /agent/vm-gate.sh, \"{{prompt_file}}\", \"10.0.2.2:{port}\"]\n  commands:\n    denied: [\"touch *\"]"),
    );
    repo.write(".chant/config.md", &config);
    repo.git(&["commit", "--quiet", "-am", "use the gate"]);
    let run = repo.chant(&["work", &id]);
    let show = format!("{}\n{}", run.stdout(), run.stderr());
    let run = run.assert_ok();
    let branch = format!("chant/{id}");
    let gate = repo.git(&["show", &format!("{branch}:gate.txt")]);
    let show = format!("{gate}\n{show}");
    // Ran in the guest (where chant's /init is), with its own exit code.
    assert_eq!(
        repo.git(&["show", &format!("{branch}:ran.txt")]),
        "inside\n",
        "{show}"
    );
    assert!(gate.contains("allowed=3\n"), "{show}");
    // Refused: never ran, said why, exited 1.
    assert!(gate.contains("denied=1\n"), "{show}");
    assert!(gate.contains("non-utf8=1\n"), "{show}");
    let landed = repo.git(&["ls-tree", "-r", "--name-only", &branch]);
    for never in ["denied-probe", "bad", "forged-probe"] {
        assert!(!landed.contains(never), "{never} ran: {landed}");
    }
    let stderr = repo.git(&["show", &format!("{branch}:gate-stderr.txt")]);
    assert!(
        stderr.contains("command refused: 'touch denied-probe' (touch *)"),
        "{stderr}"
    );
    assert!(gate.contains("forged-env=0\n"), "{show}");
    // A hook result the host refused is counted there, never silent.
    assert!(gate.contains("bad-result=1\n"), "{show}");
    assert!(
        run.stderr()
            .contains("the agent's hooks could not reach chant's gate 1 time(s)"),
        "{show}"
    );
    assert_eq!(
        repo.events("spec_completed")[0]["details"]["hook_errors"],
        1,
        "{show}"
    );
    // Whatever is written straight onto the channel is refused with an answer.
    for hostile in ["garbage", "forged-fields"] {
        assert!(
            gate.contains(&format!("{hostile}={{\"allow\":false,\"reason\":")),
            "{hostile}: {show}"
        );
    }
    assert!(gate.contains("after-flood=0\n"), "{show}");
    // Nothing else is reachable: not the host, not the proxy's port, no route out.
    assert!(gate.contains("host=failed\n"), "{show}");
    assert!(gate.contains("proxy=failed\n"), "{show}");
    assert!(gate.contains("net=eth0 lo \n"), "{show}");
    assert!(gate.contains("routes=1\n"), "{show}");
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the guest reached the host"
    );

    let runs = repo.events("command_run");
    let via_gate: Vec<_> = runs
        .iter()
        .filter(|e| e["details"]["via"] == "gate")
        .collect();
    let find = |command: &str| {
        via_gate
            .iter()
            .find(|e| e["details"]["command"] == command)
            .unwrap_or_else(|| panic!("{command} is not recorded: {via_gate:#?}"))
    };
    let allowed = find("sh -c test -e /init && echo inside > ran.txt; exit 3");
    assert_eq!(allowed["details"]["decision"], "allowed");
    assert_eq!(allowed["details"]["exit_code"], 3);
    assert!(allowed["details"]["duration_ms"].is_u64(), "{allowed}");
    assert_eq!(allowed["details"]["cwd"], "/workspace");
    assert_eq!(allowed["sandbox"], "vm");
    assert_eq!(allowed["spec_id"], id.as_str());
    let refused = find("touch denied-probe");
    assert_eq!(refused["details"]["decision"], "refused");
    assert_eq!(refused["details"]["rule"], "touch *");
    assert!(refused["details"].get("exit_code").is_none(), "{refused}");
    let rule_has = |text: &str| {
        via_gate
            .iter()
            .filter(|e| {
                e["details"]["decision"] == "refused"
                    && e["details"]["rule"]
                        .as_str()
                        .is_some_and(|r| r.contains(text))
            })
            .count()
    };
    assert_eq!(rule_has("not UTF-8"), 1, "{via_gate:#?}");
    assert_eq!(rule_has("not one the gate reads"), 2, "{via_gate:#?}");
    assert!(rule_has("unknown field `actor`") == 1, "{via_gate:#?}");
    // Each of the 30 silent connections was refused and recorded.
    assert_eq!(rule_has("ended before a line"), 30, "{via_gate:#?}");
    let trues = via_gate
        .iter()
        .filter(|e| e["details"]["command"] == "true" && e["details"]["exit_code"] == 0)
        .count();
    assert_eq!(trues, 2, "{via_gate:#?}");
    // The run's own actor and session, whatever the guest's environment or request claims.
    let started = &repo.events("spec_started")[0];
    for e in &via_gate {
        assert_eq!(e["session"], started["session"], "{e}");
        assert_eq!(e["actor"], started["actor"], "{e}");
    }
    assert!(repo
        .events("policy_violation")
        .iter()
        .any(|v| v["details"]["rule"] == "agent.commands" && v["details"]["pattern"] == "touch *"));
    repo.chant(&["audit", "verify"]).assert_ok();
    // Nothing of the channel outlives the run: its socket and qemu's bridge processes.
    assert!(
        !run.stdout().contains("\"allow\""),
        "the channel's lines reached the terminal"
    );
    let sockets = std::fs::read_dir(repo.path(".git/chant/runs"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|d| d.path().join("gate.sock").exists())
        .count();
    assert_eq!(sockets, 0, "the gate's socket outlived the run");
    common::wait_for("the bridges ended", || bridges_of(&repo.root).is_empty());
}

/// A stand-in for Codex CLI (the Codex adapter runs it as `codex exec …`): writes what its
/// seeded HOME holds into hello.txt, then says its turn completed as Codex's `--json` does.
const HOME_PROBE: &str = r#"#!/bin/sh
{
  echo "uid=$(id -u) home=$HOME"
  ls -ln "$HOME/.codex" | awk 'NR > 1 { print $3 ":" $4, $NF }'
  grep -c 'CHANT_EXEC' "$HOME/.codex/config.toml"
  cat "$HOME/.codex/planted" 2>/dev/null || echo "no planted file"
  if ls /chant/home >/dev/null 2>&1; then echo "seed readable"; else echo "seed closed"; fi
} > /workspace/hello.txt 2>&1
echo '{"type":"thread.started","thread_id":"t-1"}'
echo '{"type":"turn.completed","usage":{"input_tokens":1,"cached_input_tokens":0,"output_tokens":1}}'
"#;

#[test]
fn the_guest_home_starts_with_the_runs_home_files_owned_by_the_agent_and_nothing_of_the_image() {
    if !vm_available() {
        return;
    }
    let repo = TestRepo::initialised();
    let image = repo.tmp.path().join("image");
    let bin = image.join("usr/local/bin");
    std::fs::create_dir_all(&bin).expect("image");
    std::fs::write(bin.join("codex"), HOME_PROBE).expect("probe");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("codex"), std::fs::Permissions::from_mode(0o755))
            .expect("mode");
    }
    // A hostile image plants a config of its own where the agent's HOME will be.
    let planted = image.join("home/agent/.codex");
    std::fs::create_dir_all(&planted).expect("planted dir");
    std::fs::write(planted.join("config.toml"), "model_provider = \"evil\"\n").expect("plant");
    std::fs::write(planted.join("planted"), "planted by the image\n").expect("plant");
    // ...and in chant's own seed directory, to be copied into that HOME.
    let seeded = image.join("chant/home/.codex");
    std::fs::create_dir_all(&seeded).expect("seed dir");
    std::fs::write(seeded.join("planted"), "planted by the image\n").expect("plant");
    repo.write_config(&format!(
        "agent:\n  command: [codex]\n  timeout: 60s\n  vm:\n    image: {}\n    memory: 256M\n    accel: tcg\n    network: allowlist\n  network:\n    enabled: true\n  commands:\n    denied: [\"rm *\"]\n",
        image.display()
    ));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "vm config"]);
    let id = repo.add_spec("Greet", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    repo.chant(&["work", &id, "--sandbox", "vm"]).assert_ok();
    let said = repo.git(&["show", &format!("chant/{id}:hello.txt")]);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines,
        [
            "uid=1000 home=/home/agent",
            "1000:1000 config.toml",
            "1000:1000 rules",
            "1",
            "no planted file",
            "seed closed",
        ],
        "{said}"
    );
}
