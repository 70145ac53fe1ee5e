//! A protocol-level FAKE Kubernetes API server on loopback (HTTP/1.1, one thread per
//! connection): just enough of the API for chant's sequence, for any number of Jobs at once
//! (kept by name), every request recorded.
//!
//! - POST of a Job, ServiceAccount, Role, RoleBinding, Secret, NetworkPolicy: stored, given
//!   a uid and a resourceVersion, echoed back (201).
//! - PATCH of the Job (unsuspend): starts its "pod" — the Job's container run for real in
//!   Docker, exactly as the Job describes it (image, command, env + the Secret's data,
//!   runAsUser, readOnlyRootFilesystem, dropped capabilities, each volumeMount a tmpfs).
//! - GET `jobs?watch=true`: a chunked stream of newline-delimited watch events. The FIRST
//!   watch sends one event (the Job active, resourceVersion [`ACTIVE_VERSION`]) and then
//!   drops the connection mid-stream; later watches wait for the pod to end and send the
//!   Job's final condition (after [`Fake::expire_second_watch`], the second watch gets a
//!   `410 Gone` ERROR event instead).
//! - GET `pods?labelSelector=job-name=…`, `pods/NAME`, `pods/NAME/log?follow=true` (the
//!   container's output from its start, streamed as it arrives; after
//!   [`Fake::cut_first_log_after`], the first stream breaks after that many bytes).
//! - DELETE of the Job: removes the container.
//! - The network: a pod has only loopback (`--network none`), as if the cluster held
//!   nothing else — unless the test declared a destination with [`Fake::route`] and the
//!   run's NetworkPolicy lets egress reach its TCP port. Then the pod gets a network
//!   namespace of its own, held by a pause container as a kubelet's is, where 127.0.0.1:PORT
//!   is forwarded to the destination, and only that.
//!
//! Every request must carry `Authorization: Bearer <token>`, else 401.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

mod pod;
use pod::{base64_decode, start_pod};

/// The resourceVersion of the Job's "active" event, where a resumed watch must start.
pub const ACTIVE_VERSION: &str = "3";

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub raw_query: String,
    pub body: Value,
}

impl Request {
    pub fn line(&self) -> String {
        if self.raw_query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, self.raw_query)
        }
    }

    pub fn query(&self, key: &str) -> Option<String> {
        self.raw_query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| percent_decode(v))
        })
    }

    pub fn is_watch(&self) -> bool {
        self.query("watch").as_deref() == Some("true")
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(n) = u8::from_str_radix(hex, 16) {
                out.push(n);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Default)]
pub(super) struct State {
    requests: Vec<Request>,
    unauthorised: usize,
    /// The Jobs, by name (several at once with `--all-ready`).
    jobs: std::collections::BTreeMap<String, Run>,
    containers: Vec<String>,
    /// Answer each Job's second watch with `410 Gone` (its version "expired").
    expire_second_watch: bool,
    /// Break each Job's first log stream after this many bytes.
    cut_first_log: Option<usize>,
    /// What a pod reaches at 127.0.0.1:PORT when its NetworkPolicy allows that port.
    routes: Vec<(u16, std::net::SocketAddr)>,
}

/// One Job and its pod.
#[derive(Default)]
pub(super) struct Run {
    job: Value,
    secret_env: Vec<(String, String)>,
    /// The run's NetworkPolicy (Null: none was created).
    policy: Value,
    /// The ports the pod could reach, once it started.
    reached_ports: Vec<u16>,
    watches: usize,
    logs_served: usize,
    pod_started: bool,
    output: Vec<u8>,
    exit: Option<i32>,
    deleted: bool,
    started: Option<std::time::Instant>,
    ended: Option<std::time::Instant>,
}

pub struct Fake {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

struct Ctx {
    token: String,
    namespace: String,
    binds: Vec<PathBuf>,
    state: Arc<Mutex<State>>,
}

impl Fake {
    pub fn start(token: &str, namespace: &str, binds: Vec<PathBuf>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let ctx = Arc::new(Ctx {
            token: token.to_string(),
            namespace: namespace.to_string(),
            binds,
            state: Arc::clone(&state),
        });
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let ctx = Arc::clone(&ctx);
                std::thread::spawn(move || {
                    let _ = serve(&ctx, conn);
                });
            }
        });
        Fake { port, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    pub fn unauthorised(&self) -> usize {
        self.lock().unauthorised
    }

    /// From now on, each Job's second watch gets a `410 Gone` event, as when the server
    /// no longer has the requested resourceVersion.
    pub fn expire_second_watch(&self) {
        self.lock().expire_second_watch = true;
    }

    /// From now on, each Job's first log stream breaks (no final chunk) after `bytes`.
    pub fn cut_first_log_after(&self, bytes: usize) {
        self.lock().cut_first_log = Some(bytes);
    }

    /// Declares a destination in the fake cluster's network: a pod whose NetworkPolicy
    /// allows egress to TCP `port` reaches `target` at 127.0.0.1:`port` (pods have no DNS,
    /// so a URL names it by that address).
    pub fn route(&self, port: u16, target: std::net::SocketAddr) {
        self.lock().routes.push((port, target));
    }

    /// The ports of [`Fake::route`] each Job's pod was given, by Job name.
    pub fn reached_ports(&self) -> Vec<(String, Vec<u16>)> {
        self.lock()
            .jobs
            .iter()
            .map(|(n, r)| (n.clone(), r.reached_ports.clone()))
            .collect()
    }

    /// The uid of the (first) Job.
    pub fn job_uid(&self) -> Value {
        self.lock()
            .jobs
            .values()
            .next()
            .map(|r| r.job["metadata"]["uid"].clone())
            .unwrap_or(Value::Null)
    }

    /// When each Job was started (unsuspended) and deleted, by name.
    pub fn lifetimes(
        &self,
    ) -> Vec<(
        String,
        Option<std::time::Instant>,
        Option<std::time::Instant>,
    )> {
        self.lock()
            .jobs
            .iter()
            .map(|(n, r)| (n.clone(), r.started, r.ended))
            .collect()
    }

    /// Containers the fake started that still exist in the engine.
    pub fn pods_left(&self) -> Vec<String> {
        let names = self.lock().containers.clone();
        names
            .into_iter()
            .filter(|n| {
                Command::new("docker")
                    .args(["container", "inspect", n])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            })
            .collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        for name in self.lock().containers.clone() {
            let _ = Command::new("docker")
                .args(["rm", "-f", &name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn lock(ctx: &Ctx) -> std::sync::MutexGuard<'_, State> {
    ctx.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies `f` to the Job `name` (None when there is no such Job).
fn with_run<R>(ctx: &Ctx, name: &str, f: impl FnOnce(&mut Run) -> R) -> Option<R> {
    lock(ctx).jobs.get_mut(name).map(f)
}

fn serve(ctx: &Ctx, conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        if headers.get("authorization").map(String::as_str)
            != Some(format!("Bearer {}", ctx.token).as_str())
        {
            lock(ctx).unauthorised += 1;
            respond(&mut out, 401, &status(401, "Unauthorized"))?;
            continue;
        }
        let (path, raw_query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let request = Request {
            method,
            path,
            raw_query,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        };
        lock(ctx).requests.push(request.clone());
        if !route(ctx, &request, &mut out)? {
            return Ok(()); // a stream ended: the connection closes
        }
    }
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

fn respond(out: &mut TcpStream, code: u16, body: &Value) -> std::io::Result<()> {
    let text = body.to_string();
    write!(
        out,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    )?;
    out.flush()
}

/// A streamed response; the connection closes after it (said, so the client does not
/// reuse it).
fn start_stream(out: &mut TcpStream, kind: &str) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    out.flush()
}

fn chunk(out: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    write!(out, "{:x}\r\n", data.len())?;
    out.write_all(data)?;
    out.write_all(b"\r\n")?;
    out.flush()
}

fn end_stream(out: &mut TcpStream) -> std::io::Result<()> {
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

fn job_with(ctx: &Ctx, name: &str, version: &str, status: Value) -> Value {
    let mut job = with_run(ctx, name, |r| r.job.clone()).unwrap_or(Value::Null);
    job["metadata"]["resourceVersion"] = json!(version);
    job["status"] = status;
    job
}

/// The value of `key=VALUE` in a selector query parameter.
fn selected(r: &Request, param: &str, key: &str) -> String {
    r.query(param)
        .and_then(|s| s.strip_prefix(&format!("{key}=")).map(String::from))
        .unwrap_or_default()
}

/// Handles one request; false when the connection must close.
fn route(ctx: &Ctx, r: &Request, out: &mut TcpStream) -> std::io::Result<bool> {
    let ns = &ctx.namespace;
    let jobs = format!("/apis/batch/v1/namespaces/{ns}/jobs");
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let job_of = |p: &str| p.strip_prefix(&format!("{jobs}/")).map(String::from);
    let pod_of = |p: &str, tail: &str| {
        p.strip_prefix(&format!("{pods}/"))
            .and_then(|rest| rest.strip_suffix(tail))
            .and_then(|pod| pod.strip_suffix("-pod"))
            .map(String::from)
    };
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", p) if p == jobs => {
            let name = r.body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut job = r.body.clone();
            job["metadata"]["uid"] = json!(format!("uid-{name}"));
            job["metadata"]["resourceVersion"] = json!("1");
            lock(ctx).jobs.insert(
                name,
                Run {
                    job: job.clone(),
                    ..Default::default()
                },
            );
            respond(out, 201, &job)?;
        }
        ("POST", p) if p.starts_with("/api") => {
            let mut obj = r.body.clone();
            obj["metadata"]["uid"] = json!(format!("uid-{}", p.rsplit('/').next().unwrap_or("")));
            obj["metadata"]["resourceVersion"] = json!("1");
            if p.ends_with("/secrets") {
                let data: Vec<(String, String)> = r.body["data"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), base64_decode(v.as_str().unwrap_or(""))))
                            .collect()
                    })
                    .unwrap_or_default();
                let owner = r.body["metadata"]["ownerReferences"][0]["name"]
                    .as_str()
                    .unwrap_or_default();
                with_run(ctx, owner, |run| run.secret_env = data);
            }
            if p.ends_with("/networkpolicies") {
                let owner = r.body["metadata"]["ownerReferences"][0]["name"]
                    .as_str()
                    .unwrap_or_default();
                with_run(ctx, owner, |run| run.policy = r.body.clone());
            }
            respond(out, 201, &obj)?;
        }
        ("PATCH", p) if job_of(p).is_some() => {
            let name = job_of(p).unwrap_or_default();
            with_run(ctx, &name, |run| {
                run.job["spec"]["suspend"] = json!(false);
                run.started = Some(std::time::Instant::now());
            });
            start_pod(ctx, &name);
            respond(out, 200, &job_with(ctx, &name, "2", json!({})))?;
        }
        ("GET", p) if p == jobs && r.is_watch() => {
            let name = selected(r, "fieldSelector", "metadata.name");
            let watches = with_run(ctx, &name, |run| {
                run.watches += 1;
                run.watches
            })
            .unwrap_or(0);
            let first = watches == 1;
            start_stream(out, "application/json")?;
            if watches == 2 && lock(ctx).expire_second_watch {
                let event = json!({"type": "ERROR", "object": status(410, "Expired")});
                chunk(out, format!("{event}\n").as_bytes())?;
                end_stream(out)?;
                return Ok(false);
            }
            if first {
                let event = json!({"type": "MODIFIED", "object": job_with(ctx, &name, ACTIVE_VERSION, json!({"active": 1}))});
                chunk(out, format!("{event}\n").as_bytes())?;
                // Dropped mid-stream: no final chunk.
                let _ = out.shutdown(std::net::Shutdown::Both);
                return Ok(false);
            }
            let code = loop {
                let (exit, deleted) =
                    with_run(ctx, &name, |run| (run.exit, run.deleted)).unwrap_or((None, true));
                if let Some(code) = exit {
                    break Some(code);
                }
                if deleted {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if let Some(code) = code {
                let (kind, counts) = if code == 0 {
                    ("Complete", json!({"succeeded": 1}))
                } else {
                    ("Failed", json!({"failed": 1}))
                };
                let mut status = counts;
                status["conditions"] = json!([{"type": kind, "status": "True"}]);
                let event =
                    json!({"type": "MODIFIED", "object": job_with(ctx, &name, "4", status)});
                chunk(out, format!("{event}\n").as_bytes())?;
            }
            end_stream(out)?;
            return Ok(false);
        }
        ("GET", p) if p == jobs => {
            respond(
                out,
                200,
                &json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": "1"}, "items": []}),
            )?;
        }
        ("GET", p) if job_of(p).is_some() => {
            let name = job_of(p).unwrap_or_default();
            respond(out, 200, &job_with(ctx, &name, "4", json!({})))?;
        }
        ("GET", p) if p == pods => {
            let name = selected(r, "labelSelector", "job-name");
            let started = with_run(ctx, &name, |run| run.pod_started).unwrap_or(false);
            let items: Vec<Value> = if started {
                vec![pod(ctx, &name)]
            } else {
                Vec::new()
            };
            respond(
                out,
                200,
                &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "5"}, "items": items}),
            )?;
        }
        ("GET", p) if pod_of(p, "/log").is_some() => {
            let name = pod_of(p, "/log").unwrap_or_default();
            let first = with_run(ctx, &name, |run| {
                run.logs_served += 1;
                run.logs_served == 1
            })
            .unwrap_or(false);
            let cut = if first { lock(ctx).cut_first_log } else { None };
            start_stream(out, "text/plain")?;
            let mut sent = 0;
            if let Some(cut) = cut {
                // Wait for that much output (or the end), send it, and break the stream.
                let piece = loop {
                    let (have, done) = with_run(ctx, &name, |run| {
                        (run.output.clone(), run.exit.is_some() || run.deleted)
                    })
                    .unwrap_or((Vec::new(), true));
                    if have.len() >= cut || done {
                        break have[..cut.min(have.len())].to_vec();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                chunk(out, &piece)?;
                let _ = out.shutdown(std::net::Shutdown::Both);
                return Ok(false);
            }
            loop {
                let (new, done) = with_run(ctx, &name, |run| {
                    (
                        run.output[sent..].to_vec(),
                        run.exit.is_some() || run.deleted,
                    )
                })
                .unwrap_or((Vec::new(), true));
                if !new.is_empty() {
                    chunk(out, &new)?;
                    sent += new.len();
                } else if done {
                    break;
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            end_stream(out)?;
            return Ok(false);
        }
        ("GET", p) if pod_of(p, "").is_some() => {
            let name = pod_of(p, "").unwrap_or_default();
            respond(out, 200, &pod(ctx, &name))?;
        }
        ("DELETE", p) if job_of(p).is_some() => {
            let name = job_of(p).unwrap_or_default();
            with_run(ctx, &name, |run| {
                run.deleted = true;
                run.ended = Some(std::time::Instant::now());
            });
            for container in [format!("{name}-pod"), format!("{name}-pause")] {
                let _ = Command::new("docker")
                    .args(["rm", "-f", &container])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            respond(out, 200, &job_with(ctx, &name, "6", json!({})))?;
        }
        _ => respond(out, 404, &status(404, "NotFound"))?,
    }
    Ok(true)
}

fn pod(ctx: &Ctx, job: &str) -> Value {
    let exit = with_run(ctx, job, |run| run.exit).flatten();
    let state = match exit {
        Some(code) => json!({"terminated": {"exitCode": code}}),
        None => json!({"running": {}}),
    };
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("{job}-pod"), "namespace": ctx.namespace, "labels": {"job-name": job}},
           "status": {"containerStatuses": [{"name": "agent", "ready": exit.is_none(), "restartCount": 0,
              "image": "", "imageID": "", "state": state}]}})
}
