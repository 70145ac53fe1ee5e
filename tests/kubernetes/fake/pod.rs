//! The fake's "pod": the Job's container run for real in Docker, exactly as the Job
//! describes it, its output collected for the log endpoint.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{lock, with_run, Ctx};

/// Runs the container of Job `job` as the Job describes it, named `<job>-pod`.
pub(super) fn start_pod(ctx: &Ctx, job_name: &str) {
    let name = format!("{job_name}-pod");
    lock(ctx).containers.push(name.clone());
    let Some((job, secret_env, policy)) = with_run(ctx, job_name, |run| {
        run.pod_started = true;
        (run.job.clone(), run.secret_env.clone(), run.policy.clone())
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
    let routes: Vec<_> = lock(ctx)
        .routes
        .iter()
        .copied()
        .filter(|(port, _)| egress_allows(&policy, *port))
        .collect();
    if routes.is_empty() {
        cmd.args(["--network", "none"]);
    } else {
        match network(ctx, job_name, c, &routes) {
            Ok(holder) => {
                cmd.args(["--network", &format!("container:{holder}")]);
                with_run(ctx, job_name, |run| {
                    run.reached_ports = routes.iter().map(|(p, _)| *p).collect();
                });
            }
            Err(e) => {
                eprintln!("!!! fake: the pod's network: {e}; it gets none");
                cmd.args(["--network", "none"]);
            }
        }
    }
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

/// Whether the NetworkPolicy `policy` lets a pod open TCP connections to `port` anywhere
/// (an egress rule without `to`, or to 0.0.0.0/0; without `ports`, or naming it). No
/// policy: a cluster without one lets everything out, but a pod here reaches only what a
/// test routed, so that counts as allowed too.
fn egress_allows(policy: &Value, port: u16) -> bool {
    if policy.is_null() {
        return true;
    }
    let types = policy["spec"]["policyTypes"].as_array();
    if !types.is_some_and(|t| t.iter().any(|t| t == "Egress")) {
        return true;
    }
    policy["spec"]["egress"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| {
            let anywhere = match rule["to"].as_array() {
                None => true,
                Some(peers) => peers.iter().any(|p| p["ipBlock"]["cidr"] == "0.0.0.0/0"),
            };
            let port_ok = match rule["ports"].as_array() {
                None => true,
                Some(ports) if ports.is_empty() => true,
                Some(ports) => ports.iter().any(|p| {
                    p["protocol"].as_str().unwrap_or("TCP") == "TCP"
                        && p["port"].as_u64() == Some(u64::from(port))
                }),
            };
            anywhere && port_ok
        })
}

/// The pod's network namespace, held by a pause container (named `<job>-pause`, as a
/// kubelet's sandbox holds a pod's), with 127.0.0.1:PORT forwarded to each route's
/// destination; its name.
fn network(
    ctx: &Ctx,
    job_name: &str,
    container: &Value,
    routes: &[(u16, std::net::SocketAddr)],
) -> Result<String, String> {
    let name = format!("{job_name}-pause");
    lock(ctx).containers.push(name.clone());
    let out = Command::new("docker")
        .args(["run", "-d", "--rm", "--name", &name, "--network", "none"])
        .args(["--user", "65534:65534", "--read-only", "--cap-drop", "ALL"])
        .args(["--entrypoint", "sleep"])
        .arg(container["image"].as_str().unwrap_or_default())
        .arg("100000")
        .output()
        .map_err(|e| format!("docker run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker run {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}}", &name])
        .output()
        .map_err(|e| format!("docker inspect: {e}"))?;
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("no pid for {name}"))?;
    let netns = crate::common::netns::Netns::of_process(pid);
    for (port, target) in routes {
        let listener = netns.bind_at(*port)?;
        let target = *target;
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                std::thread::spawn(move || forward(client, target));
            }
        });
    }
    Ok(name)
}

/// Carries one connection both ways between the pod and `target`.
fn forward(client: std::net::TcpStream, target: std::net::SocketAddr) {
    let Ok(upstream) = std::net::TcpStream::connect(target) else {
        return;
    };
    let (Ok(mut client_in), Ok(mut upstream_out)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut upstream_out);
        let _ = upstream_out.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream, mut client) = (upstream, client);
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
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
