//! Per-run container overhead of the docker level (create, attach, start, wait, remove,
//! through the Engine API) against `docker run --rm` of the same image and command via the
//! CLI with the same isolation flags, measured in the same run. Target: <= 1.0x.
//!
//! Needs a running engine, the `docker` CLI and Debian's static busybox (the image is
//! imported from it). Run: `cargo bench --bench docker` (`CHANT_BENCH_RUNS=20` for more).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use git_chant::sandbox::{Job, Outcome, OutputSink, Stream};

const IMAGE: &str = "chant-bench-busybox:latest";

struct Discard;

impl OutputSink for Discard {
    fn output(&mut self, _: Stream, _: &[u8]) {}
}

fn main() {
    let runs: usize = std::env::var("CHANT_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let tmp = tempfile::tempdir().expect("tmp");
    if let Err(why) = import_image(tmp.path()) {
        println!("docker bench skipped: {why}");
        return;
    }
    let workspace = tmp.path().join("workspace");
    std::fs::create_dir_all(&workspace).expect("workspace");
    let config = git_chant::config::parse(
        "bench",
        &format!("---\nagent:\n  sandbox: docker\n  docker:\n    image: {IMAGE}\n    memory: 256M\n    cpu: 1\n---\n"),
    )
    .expect("config");
    let sandbox = git_chant::sandbox::for_level(config.agent.sandbox, &config).expect("level");
    let job = Job {
        argv: vec!["true".into()],
        env: vec![("PATH".into(), "/bin".into())],
        workspace: workspace.clone(),
        timeout: Duration::from_secs(60),
        files: Vec::new(),
        hold_stdin: false,
        network: None,
        gate: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut api = Vec::new();
    let mut cli = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let outcome = sandbox.run(&job, &mut Discard, &stop).expect("run");
        assert_eq!(outcome, Outcome::Exited(0));
        api.push(t.elapsed());
        let t = Instant::now();
        docker_run(&workspace);
        cli.push(t.elapsed());
    }
    let a = median(&mut api);
    let c = median(&mut cli);
    println!(
        "container per run ({runs} runs, median): chant docker level {:.0} ms, docker run --rm {:.0} ms, ratio {:.2}x (target <= 1.0x)",
        a.as_secs_f64() * 1000.0,
        c.as_secs_f64() * 1000.0,
        a.as_secs_f64() / c.as_secs_f64()
    );
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The same isolation as the level gives (minus the labels and the log driver).
fn docker_run(workspace: &Path) {
    let status = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--read-only"])
        .args(["--tmpfs", "/tmp", "--tmpfs", "/home/agent"])
        .args(["--user", "65532:65532", "--cap-drop", "ALL"])
        .args(["--security-opt", "no-new-privileges", "--pids-limit", "512"])
        .args(["--memory", "256m", "--memory-swap", "256m", "--cpus", "1"])
        .arg("-v")
        .arg(format!("{}:/workspace", workspace.display()))
        .args(["-w", "/workspace", "--log-driver", "none", IMAGE, "true"])
        .stdout(Stdio::null())
        .status()
        .expect("docker run");
    assert!(status.success(), "docker run failed");
}

/// Imports busybox as the bench image through the CLI (the baseline needs it anyway).
fn import_image(tmp: &Path) -> Result<(), String> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .ok_or("no busybox (apt-get install busybox-static)")?;
    let root = tmp.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).map_err(|e| e.to_string())?;
    std::fs::copy(busybox, root.join("bin/busybox")).map_err(|e| e.to_string())?;
    for applet in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
            .map_err(|e| e.to_string())?;
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -c . | docker import - {IMAGE} >/dev/null",
            root.display()
        ))
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err("docker import failed (is the engine running and the docker CLI installed?)".into())
    }
}
