//! The fake's "pod": the Job's container run for real in Docker, exactly as the Job
//! describes it, its output collected for the log endpoint.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::{lock, with_run, Ctx};

/// Runs the container of Job `job` as the Job describes it, named `<job>-pod`.
pub(super) fn start_pod(ctx: &Ctx, job_name: &str) {
    let name = format!("{job_name}-pod");
    lock(ctx).containers.push(name.clone());
    let Some((job, secret_env)) = with_run(ctx, job_name, |run| {
        run.pod_started = true;
        (run.job.clone(), run.secret_env.clone())
    }) else {
        return;
    };
    let name = name.as_str();
    let pod = &job["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--name", name]);
    if let Some(uid) = sc["runAsUser"].as_i64() {
        let gid = pod["securityContext"]["runAsGroup"].as_i64().unwrap_or(uid);
        cmd.args(["--user", &format!("{uid}:{gid}")]);
    }
    if sc["readOnlyRootFilesystem"] == true {
        cmd.arg("--read-only");
    }
    if sc["capabilities"]["drop"][0] == "ALL" {
        cmd.args(["--cap-drop", "ALL"]);
    }
    if sc["allowPrivilegeEscalation"] == false {
        cmd.args(["--security-opt", "no-new-privileges"]);
    }
    cmd.args(["--network", "none"]);
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        if let Some(path) = m["mountPath"].as_str() {
            cmd.args(["--tmpfs", &format!("{path}:rw,exec,mode=1777")]);
        }
    }
    for b in &ctx.binds {
        cmd.arg("-v")
            .arg(format!("{}:{}", b.display(), b.display()));
    }
    // The git server's side of a `file://` push (its hook), not part of the pod.
    cmd.arg("-v").arg(crate::image::server_side());
    if let Some(w) = c["workingDir"].as_str() {
        cmd.args(["--workdir", w]);
    }
    for e in c["env"].as_array().into_iter().flatten() {
        cmd.arg("-e").arg(format!(
            "{}={}",
            e["name"].as_str().unwrap_or_default(),
            e["value"].as_str().unwrap_or_default()
        ));
    }
    for (k, v) in &secret_env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    let command: Vec<String> = c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    if let Some((first, rest)) = command.split_first() {
        cmd.arg("--entrypoint").arg(first);
        cmd.arg(c["image"].as_str().unwrap_or_default());
        cmd.args(rest);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let state = Arc::clone(&ctx.state);
    let name_owned = name.to_string();
    let key = job_name.to_string();
    // Applies a change to this Job's record.
    let update = move |state: &Arc<std::sync::Mutex<super::State>>,
                       f: &mut dyn FnMut(&mut super::Run)| {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(run) = s.jobs.get_mut(&key) {
            f(run);
        }
    };
    std::thread::spawn(move || {
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                update(&state, &mut |run| {
                    run.output
                        .extend_from_slice(format!("fake: docker run failed: {e}\n").as_bytes());
                    run.exit = Some(127);
                });
                return;
            }
        };
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|mut r| {
            let state = Arc::clone(&state);
            let update = update.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    update(&state, &mut |run| run.output.extend_from_slice(&buf[..n]));
                }
            })
        })
        .collect();
        // A DELETE may come before `docker run` has created the container: keep removing
        // it until it is gone.
        let name = name_owned;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(_) => break None,
            }
            let mut deleted = false;
            update(&state, &mut |run| deleted = run.deleted);
            if deleted {
                let _ = Command::new("docker")
                    .args(["rm", "-f", &name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        for r in readers {
            let _ = r.join();
        }
        let code = status.and_then(|s| s.code()).unwrap_or(137);
        update(&state, &mut |run| run.exit = Some(code));
    });
}

pub(super) fn base64_decode(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            continue;
        };
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
