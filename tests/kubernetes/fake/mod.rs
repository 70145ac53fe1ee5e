//! A protocol-level FAKE Kubernetes API server on loopback (HTTP/1.1, one thread per
//! connection): just enough of the API for chant's sequence, every request recorded.
//!
//! - POST of a Job, ServiceAccount, Role, RoleBinding, Secret, NetworkPolicy: stored, given
//!   a uid and a resourceVersion, echoed back (201).
//! - PATCH of the Job (unsuspend): starts its "pod" — the Job's container run for real in
//!   Docker, exactly as the Job describes it (image, command, env + the Secret's data,
//!   runAsUser, readOnlyRootFilesystem, dropped capabilities, each volumeMount a tmpfs).
//! - GET `jobs?watch=true`: a chunked stream of newline-delimited watch events. The FIRST
//!   watch sends one event (the Job active, resourceVersion [`ACTIVE_VERSION`]) and then
//!   drops the connection mid-stream; later watches wait for the pod to end and send the
//!   Job's final condition.
//! - GET `pods?labelSelector=job-name=…`, `pods/NAME`, `pods/NAME/log?follow=true` (the
//!   container's output, streamed as it arrives).
//! - DELETE of the Job: removes the container.
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
struct State {
    requests: Vec<Request>,
    unauthorised: usize,
    job: Value,
    secret_env: Vec<(String, String)>,
    watches: usize,
    pod_started: bool,
    output: Vec<u8>,
    exit: Option<i32>,
    deleted: bool,
    containers: Vec<String>,
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

    pub fn job_uid(&self) -> Value {
        self.lock().job["metadata"]["uid"].clone()
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

fn start_stream(out: &mut TcpStream, kind: &str) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nTransfer-Encoding: chunked\r\n\r\n"
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

fn job_with(ctx: &Ctx, version: &str, status: Value) -> Value {
    let mut job = lock(ctx).job.clone();
    job["metadata"]["resourceVersion"] = json!(version);
    job["status"] = status;
    job
}

/// Handles one request; false when the connection must close.
fn route(ctx: &Ctx, r: &Request, out: &mut TcpStream) -> std::io::Result<bool> {
    let ns = &ctx.namespace;
    let jobs = format!("/apis/batch/v1/namespaces/{ns}/jobs");
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let job_name = lock(ctx).job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pod_name = format!("{job_name}-pod");
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", p) if p == jobs => {
            let mut job = r.body.clone();
            job["metadata"]["uid"] = json!("uid-job-1");
            job["metadata"]["resourceVersion"] = json!("1");
            lock(ctx).job = job.clone();
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
                lock(ctx).secret_env = data;
            }
            respond(out, 201, &obj)?;
        }
        ("PATCH", p) if p == format!("{jobs}/{job_name}") => {
            {
                let mut s = lock(ctx);
                s.job["spec"]["suspend"] = json!(false);
            }
            start_pod(ctx, &pod_name);
            respond(out, 200, &job_with(ctx, "2", json!({})))?;
        }
        ("GET", p) if p == jobs && r.is_watch() => {
            let first = {
                let mut s = lock(ctx);
                s.watches += 1;
                s.watches == 1
            };
            start_stream(out, "application/json")?;
            if first {
                let event = json!({"type": "MODIFIED", "object": job_with(ctx, ACTIVE_VERSION, json!({"active": 1}))});
                chunk(out, format!("{event}\n").as_bytes())?;
                // Dropped mid-stream: no final chunk.
                let _ = out.shutdown(std::net::Shutdown::Both);
                return Ok(false);
            }
            let code = loop {
                let (exit, deleted) = {
                    let s = lock(ctx);
                    (s.exit, s.deleted)
                };
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
                let event = json!({"type": "MODIFIED", "object": job_with(ctx, "4", status)});
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
        ("GET", p) if p == format!("{jobs}/{job_name}") => {
            respond(out, 200, &job_with(ctx, "4", json!({})))?;
        }
        ("GET", p) if p == pods => {
            let started = lock(ctx).pod_started;
            let items: Vec<Value> = if started {
                vec![pod(ctx, &pod_name, &job_name)]
            } else {
                Vec::new()
            };
            respond(
                out,
                200,
                &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "5"}, "items": items}),
            )?;
        }
        ("GET", p) if p == format!("{pods}/{pod_name}/log") => {
            start_stream(out, "text/plain")?;
            let mut sent = 0;
            loop {
                let (new, done) = {
                    let s = lock(ctx);
                    (s.output[sent..].to_vec(), s.exit.is_some() || s.deleted)
                };
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
        ("GET", p) if p == format!("{pods}/{pod_name}") => {
            respond(out, 200, &pod(ctx, &pod_name, &job_name))?;
        }
        ("DELETE", p) if p == format!("{jobs}/{job_name}") => {
            lock(ctx).deleted = true;
            let _ = Command::new("docker")
                .args(["rm", "-f", &pod_name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            respond(out, 200, &job_with(ctx, "6", json!({})))?;
        }
        _ => respond(out, 404, &status(404, "NotFound"))?,
    }
    Ok(true)
}

fn pod(ctx: &Ctx, name: &str, job: &str) -> Value {
    let exit = lock(ctx).exit;
    let state = match exit {
        Some(code) => json!({"terminated": {"exitCode": code}}),
        None => json!({"running": {}}),
    };
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ctx.namespace, "labels": {"job-name": job}},
           "status": {"containerStatuses": [{"name": "agent", "ready": exit.is_none(), "restartCount": 0,
              "image": "", "imageID": "", "state": state}]}})
}
