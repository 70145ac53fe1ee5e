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
        "net=lo ",
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
