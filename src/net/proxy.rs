//! The egress proxy: HTTP forwarding (`GET http://host/…`) and `CONNECT host:port`
//! tunnels, to hosts the [`EgressPolicy`] allows, for one run.
//!
//! It listens on a Unix socket that carries connections as bytes (what the vm level's
//! relay connects to), on a Unix socket that takes connections handed over as descriptors
//! (the docker relay's, see [`super::handoff`]: the proxy then serves the agent's socket
//! itself) and on a loopback TCP port (levels none and permissions, which run on the host). Names
//! are resolved with the host's resolver, so `/etc/hosts` entries work. Every refusal is
//! answered with a `403` saying why, and kept for the ledger; allowed connections are
//! counted per host.
//!
//! CONNECTs to the hosts of `agent.secrets.inject` are the one exception to "a tunnel is
//! opaque": those are terminated (`inject.rs`, `intercept.rs`); every other CONNECT is
//! spliced through untouched, only its first bytes (those sent with the CONNECT) searched
//! for placeholders.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::inject::Injection;
use super::intercept::{self, Recorder};
use super::{join, Decision, Duplex, EgressPolicy};

/// A request head larger than this is refused.
const MAX_HEAD: usize = 32 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the relay may take to hand a connection over once it connected.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to an allowed host may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a terminated connection may sit idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Refusals kept one by one; beyond, they are only counted (an agent retrying in a loop
/// must not flood the ledger).
const MAX_REFUSALS: usize = 200;
/// Connections served at once (a thread each); more are answered `503` and closed.
const MAX_CONNECTIONS: usize = 256;

/// One refused connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub host: String,
    pub port: u16,
    pub reason: String,
    /// The injected secret whose placeholder was sent where it is never substituted.
    pub secret: Option<String>,
}

/// What the proxy saw during the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressReport {
    /// `host:port` → connections made.
    pub allowed: BTreeMap<String, u64>,
    /// The first refusals, in order.
    pub refused: Vec<Refusal>,
    /// Refusals past [`MAX_REFUSALS`], only counted.
    pub refused_more: u64,
    /// `host:port` → injected secret's name → requests that had its value put in.
    pub injected: BTreeMap<String, BTreeMap<String, u64>>,
}

struct Shared {
    policy: EgressPolicy,
    report: Mutex<EgressReport>,
    stop: AtomicBool,
    active: AtomicUsize,
    /// Addresses never forwarded to, whatever the policy says (a Docker engine on TCP).
    never: Vec<SocketAddr>,
    /// `agent.secrets.inject`: the hosts whose TLS is terminated, and the secrets.
    injection: Option<Arc<Injection>>,
}

impl Shared {
    fn refuse(&self, refusal: Refusal) {
        let mut report = lock(&self.report);
        if report.refused.len() < MAX_REFUSALS {
            report.refused.push(refusal);
        } else {
            report.refused_more += 1;
        }
    }

    /// Records every placeholder in `bytes` sent toward `host:port` outside a terminated
    /// connection, where it is never substituted.
    fn scan(&self, host: &str, port: u16, bytes: &[u8], how: &str) {
        let Some(injection) = &self.injection else {
            return;
        };
        for name in injection.placeholders_in(bytes) {
            self.leaked(host, port, name, how);
        }
    }
}

impl Recorder for Shared {
    fn injected(&self, host: &str, port: u16, name: &str) {
        *lock(&self.report)
            .injected
            .entry(format!("{}:{port}", host.to_ascii_lowercase()))
            .or_default()
            .entry(name.to_string())
            .or_default() += 1;
    }

    fn refused(&self, host: &str, port: u16, reason: &str) {
        self.refuse(Refusal {
            host: host.to_string(),
            port,
            reason: reason.to_string(),
            secret: None,
        });
    }

    fn leaked(&self, host: &str, port: u16, name: &str, how: &str) {
        self.refuse(Refusal {
            host: host.to_string(),
            port,
            reason: format!(
                "the placeholder of injected secret {name} was sent {how}; it was not substituted"
            ),
            secret: Some(name.to_string()),
        });
    }
}

/// A running proxy; it stops when dropped.
pub struct EgressProxy {
    shared: Arc<Shared>,
    socket: PathBuf,
    handoff: PathBuf,
    tcp: SocketAddr,
}

impl EgressProxy {
    /// Starts the proxy with its Unix sockets at `dir/proxy.sock` and `dir/handoff.sock`
    /// (`dir` must exist and be private to this run) and a TCP port on 127.0.0.1.
    pub fn start(policy: EgressPolicy, dir: &Path) -> io::Result<EgressProxy> {
        EgressProxy::start_injecting(policy, dir, None)
    }

    /// [`EgressProxy::start`], terminating TLS for the inject hosts of `injection` (their
    /// hosts must be allowed by `policy` too).
    pub fn start_injecting(
        policy: EgressPolicy,
        dir: &Path,
        injection: Option<Arc<Injection>>,
    ) -> io::Result<EgressProxy> {
        let socket = dir.join("proxy.sock");
        let unix = UnixListener::bind(&socket)?;
        // The relay runs as an unprivileged user of its own; the directory keeps the rest
        // of the machine from listing it.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))?;
        let handoff = dir.join("handoff.sock");
        let handoff_listener = UnixListener::bind(&handoff)?;
        std::fs::set_permissions(&handoff, std::fs::Permissions::from_mode(0o666))?;
        let tcp_listener = TcpListener::bind(("127.0.0.1", 0))?;
        let tcp = tcp_listener.local_addr()?;
        let shared = Arc::new(Shared {
            policy,
            report: Mutex::new(EgressReport::default()),
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            never: docker_tcp_endpoint(),
            injection,
        });
        spawn_accept(Arc::clone(&shared), move || unix.accept().map(|(s, _)| s));
        spawn_accept(Arc::clone(&shared), move || {
            tcp_listener.accept().map(|(s, _)| s)
        });
        spawn_accept(Arc::clone(&shared), move || {
            let (relay, _) = handoff_listener.accept()?;
            // The relay sends at once; nobody else can reach this socket, but a stuck
            // sender must not hold up the next connection.
            relay.set_read_timeout(Some(HANDOFF_TIMEOUT))?;
            let client = super::handoff::receive(&relay)?;
            let _ = client.set_nodelay(true);
            Ok(client)
        });
        Ok(EgressProxy {
            shared,
            socket,
            handoff,
            tcp,
        })
    }

    /// The Unix socket that carries connections as bytes (the vm level's relay).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The Unix socket that takes connections handed over as descriptors (the docker
    /// level's relay, `git chant relay --listen`).
    pub fn handoff(&self) -> &Path {
        &self.handoff
    }

    /// `http://127.0.0.1:PORT`, for programs on the host.
    pub fn url(&self) -> String {
        format!("http://{}", self.tcp)
    }

    /// What happened so far.
    pub fn report(&self) -> EgressReport {
        lock(&self.shared.report).clone()
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake both accept loops so they see the flag and end (not joined: a wake-up that
        // cannot connect must not hang the run; tunnels still open end with their peers).
        let _ = UnixStream::connect(&self.socket);
        let _ = UnixStream::connect(&self.handoff);
        let _ = TcpStream::connect(self.tcp);
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.handoff);
    }
}

fn lock(report: &Mutex<EgressReport>) -> MutexGuard<'_, EgressReport> {
    report
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn spawn_accept<S, F>(shared: Arc<Shared>, mut accept: F)
where
    S: Duplex + Timeouts,
    F: FnMut() -> io::Result<S> + Send + 'static,
{
    std::thread::spawn(move || loop {
        let client = accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut client) = client else { continue };
        if shared.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            let _ = respond(
                &mut client,
                503,
                "too many connections through the proxy at once",
            );
            continue;
        }
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            serve(&shared, client);
            shared.active.fetch_sub(1, Ordering::SeqCst);
        });
    });
}

/// Read timeouts on either kind of client.
trait Timeouts {
    fn read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Timeouts for TcpStream {
    fn read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}

impl Timeouts for UnixStream {
    fn read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}

/// One client connection: one request, then a tunnel or one forwarded exchange.
fn serve<S: Duplex + Timeouts>(shared: &Shared, mut client: S) {
    let _ = client.read_timeout(Some(HEAD_TIMEOUT));
    let Ok((head, rest)) = read_head(&mut client) else {
        let _ = respond(
            &mut client,
            400,
            "bad request: no complete HTTP request head",
        );
        return;
    };
    let request = match Request::parse(&head) {
        Ok(r) => r,
        Err(why) => {
            let _ = respond(&mut client, 400, &why);
            return;
        }
    };
    let upstream = match open(shared, &request.host, request.port) {
        Ok(s) => s,
        Err(Refused::Policy(reason)) => {
            let _ = respond(
                &mut client,
                403,
                &format!(
                    "egress to {}:{} refused: {reason}",
                    request.host, request.port
                ),
            );
            return;
        }
        Err(Refused::Unreachable(why)) => {
            let _ = respond(&mut client, 502, &why);
            return;
        }
    };
    let _ = client.read_timeout(None);
    let mut upstream = upstream;
    if request.connect {
        let terminated = shared
            .injection
            .as_deref()
            .filter(|i| i.intercepts(&request.host, request.port));
        if let Some(injection) = terminated {
            terminate(shared, injection, client, rest, upstream, &request);
            return;
        }
        let mut seen = head.clone();
        seen.extend_from_slice(&rest);
        shared.scan(
            &request.host,
            request.port,
            &seen,
            "in a CONNECT to a host it is not injected for, or the first bytes of its tunnel",
        );
    } else {
        let mut seen = head.clone();
        seen.extend_from_slice(&rest);
        shared.scan(
            &request.host,
            request.port,
            &seen,
            "in a plain-HTTP request (values are only put in over TLS to their inject hosts)",
        );
    }
    let sent = if request.connect {
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
    } else {
        upstream.write_all(&request.forwarded_head())
    };
    if sent.is_err() || upstream.write_all(&rest).is_err() {
        return;
    }
    let _ = join(client, upstream);
}

/// A CONNECT to an inject host: TLS to the real upstream first (verified; on failure the
/// agent gets a `502` and the upstream nothing), then TLS with the agent under the run CA,
/// then HTTP/1.1 request by request.
fn terminate<S: Duplex + Timeouts>(
    shared: &Shared,
    injection: &Injection,
    mut client: S,
    rest: Vec<u8>,
    upstream: TcpStream,
    request: &Request,
) {
    let (host, port) = (request.host.as_str(), request.port);
    let upstream = match injection.connect_upstream(host, port, upstream) {
        Ok(u) => u,
        Err(why) => {
            let _ = respond(&mut client, 502, &why);
            return;
        }
    };
    let config = match injection.server_config(host) {
        Ok(c) => c,
        Err(why) => {
            let _ = respond(&mut client, 502, &why);
            return;
        }
    };
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        let _ = respond(&mut client, 502, "cannot start TLS toward the agent");
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let _ = client.read_timeout(Some(IDLE_TIMEOUT));
    let client = rustls::StreamOwned::new(
        conn,
        Prefixed {
            pre: rest,
            at: 0,
            inner: client,
        },
    );
    intercept::serve(injection, shared, host, port, client, upstream);
}

/// A stream whose first bytes were already read (they came with the CONNECT head).
struct Prefixed<S> {
    pre: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: Read> Read for Prefixed<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.pre.len() {
            let n = buf.len().min(self.pre.len() - self.at);
            buf[..n].copy_from_slice(&self.pre[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Prefixed<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Refused {
    Policy(String),
    Unreachable(String),
}

/// Decides, resolves, checks the addresses and connects; records the outcome.
fn open(shared: &Shared, host: &str, port: u16) -> Result<TcpStream, Refused> {
    let refuse = |reason: String| {
        shared.refuse(Refusal {
            host: host.to_string(),
            port,
            reason: reason.clone(),
            secret: None,
        });
        Refused::Policy(reason)
    };
    let exact = match shared.policy.decide(host, port) {
        Decision::Allow { exact, .. } => exact,
        Decision::Deny(reason) => return Err(refuse(reason)),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match (bare, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Err(Refused::Unreachable(format!("cannot resolve {host}: {e}"))),
    };
    if addrs.is_empty() {
        return Err(Refused::Unreachable(format!("{host} has no address")));
    }
    for addr in &addrs {
        if shared.never.contains(addr) {
            return Err(refuse(format!(
                "{addr} is the Docker engine's API, never reachable from a sandbox"
            )));
        }
        if let Err(reason) = shared.policy.check_address(exact, addr.ip()) {
            return Err(refuse(reason));
        }
    }
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                *lock(&shared.report)
                    .allowed
                    .entry(format!("{}:{port}", host.to_ascii_lowercase()))
                    .or_default() += 1;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Refused::Unreachable(format!(
        "cannot connect to {host}:{port}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// The request head (up to and including the blank line) and whatever followed it.
fn read_head(client: &mut impl Read) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf[searched_from..], b"\r\n\r\n") {
            let end = searched_from + end + 4;
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn respond(client: &mut impl Write, status: u16, message: &str) -> io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        503 => "Service Unavailable",
        _ => "Bad Gateway",
    };
    let body = format!("git-chant: {message}\n");
    write!(
        client,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    client.flush()
}

/// A proxy request, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    connect: bool,
    host: String,
    port: u16,
    /// For forwarded requests: the request line in origin form and the headers to send.
    method: String,
    path: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn parse(head: &[u8]) -> Result<Request, String> {
        let text = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
        let mut lines = text.split("\r\n");
        let line = lines.next().unwrap_or_default();
        let mut parts = line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("malformed request line '{line}'"));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(format!("unsupported protocol '{version}'"));
        }
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let connect = method.eq_ignore_ascii_case("CONNECT");
        let (authority, path, default_port) = if connect {
            (target, "", None)
        } else {
            let Some(rest) = target
                .get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
                .map(|_| &target[7..])
            else {
                return Err(format!(
                    "'{target}' is not an absolute http:// URL; send https through CONNECT"
                ));
            };
            let slash = rest.find(['/', '?']).unwrap_or(rest.len());
            (&rest[..slash], &rest[slash..], Some(80))
        };
        let (host, port) = split_authority(authority, default_port)?;
        Ok(Request {
            connect,
            host,
            port,
            method: method.to_string(),
            path: if path.is_empty() || path.starts_with('?') {
                format!("/{path}")
            } else {
                path.to_string()
            },
            version: version.to_string(),
            headers,
        })
    }

    /// The head sent to the origin: origin-form request line, no proxy headers, one
    /// exchange per connection (a second request cannot ride to another host).
    fn forwarded_head(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, self.path, self.version);
        let mut has_host = false;
        for (k, v) in &self.headers {
            let lower = k.to_ascii_lowercase();
            if lower.starts_with("proxy-") || lower == "connection" || lower == "keep-alive" {
                continue;
            }
            has_host |= lower == "host";
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has_host {
            out.push_str(&format!("Host: {}:{}\r\n", self.host, self.port));
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

/// `host:port`, `[v6]:port`, or a bare host when a default port is given.
fn split_authority(authority: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    if authority.contains('@') {
        return Err("credentials in the URL are not forwarded".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or("unclosed '[' in the host")?;
        let after = &rest[end + 1..];
        (&authority[..end + 2], after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("bad port '{p}'"))?,
        (None, Some(d)) => d,
        (None, None) => return Err(format!("'{authority}' has no port")),
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("bad host '{host}'"));
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// The TCP address of the Docker engine when `DOCKER_HOST` names one.
fn docker_tcp_endpoint() -> Vec<SocketAddr> {
    let Ok(host) = std::env::var("DOCKER_HOST") else {
        return Vec::new();
    };
    let Some(rest) = host.strip_prefix("tcp://") else {
        return Vec::new();
    };
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connect_and_forward_requests() {
        let r = Request::parse(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("parses");
        assert!(r.connect);
        assert_eq!((r.host.as_str(), r.port), ("api.example.com", 443));
        let r = Request::parse(
            b"GET http://Example.com/a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\n\r\n",
        )
        .expect("parses");
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str()),
            ("example.com", 80, "/a/b?c=1")
        );
        let head = String::from_utf8(r.forwarded_head()).expect("utf8");
        assert_eq!(
            head,
            "GET /a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        );
        let r = Request::parse(b"GET http://[::1]:8080 HTTP/1.0\r\n\r\n").expect("parses");
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str()),
            ("[::1]", 8080, "/")
        );
    }

    #[test]
    fn refuses_what_is_not_a_proxy_request() {
        for bad in [
            &b"GET /index.html HTTP/1.1\r\n\r\n"[..],
            b"GET https://example.com/ HTTP/1.1\r\n\r\n",
            b"CONNECT example.com HTTP/1.1\r\n\r\n",
            b"GET http://user:pw@example.com/ HTTP/1.1\r\n\r\n",
            b"GET http://example.com:99999/ HTTP/1.1\r\n\r\n",
            b"BREW coffee\r\n\r\n",
        ] {
            assert!(
                Request::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
