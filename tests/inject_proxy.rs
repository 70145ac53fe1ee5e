//! Secrets usable, never readable, at the proxy: the agent sends a placeholder, the real
//! HTTPS origin (on loopback, test CA) receives the value, and only toward the inject host;
//! the agent never gets the value back; bad upstream certificates and ambiguous requests
//! fail closed; streams stream and connections are kept alive.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use git_chant::net::{EgressPolicy, EgressProxy, InjectedSecret, Injection};
use git_chant::pattern::HostRules;
use git_chant::secrets::Placeholder;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const VALUE: &str = "sk-test-api03-RealValueRealValue0123456789xyz";
const OTHER: &str = "ghp_OtherSecretValue0123456789abcdef";

/// What the origin received: one request head (plus its body) per entry.
type Seen = Arc<Mutex<Vec<String>>>;

/// An HTTPS origin on 127.0.0.1 with the test certificate. `/echo` answers with what it
/// received (headers and body), in a header and in the body; `/sse` sends one event, waits
/// for `go`, then the last one; every connection is kept alive.
struct Origin {
    port: u16,
    seen: Seen,
    go: mpsc::Sender<()>,
}

fn origin() -> Origin {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(common::crate_path("fixtures/tls/server.pem"))
            .expect("cert file")
            .collect::<Result<_, _>>()
            .expect("certs");
    let key =
        PrivateKeyDer::from_pem_file(common::crate_path("fixtures/tls/server.key")).expect("key");
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Seen = Arc::default();
    let (go, wait) = mpsc::channel::<()>();
    let wait = Arc::new(Mutex::new(wait));
    let recorded = Arc::clone(&seen);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let (config, seen, wait) = (
                Arc::clone(&config),
                Arc::clone(&recorded),
                Arc::clone(&wait),
            );
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).expect("conn");
                let tls = rustls::StreamOwned::new(conn, tcp);
                let mut tls = BufReader::new(tls);
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        match tls.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    if tls.read_exact(&mut body).is_err() {
                        return;
                    }
                    let received = format!("{head}{}", String::from_utf8_lossy(&body));
                    seen.lock().expect("seen").push(received.clone());
                    let out = tls.get_mut();
                    if let Some(n) = head
                        .strip_prefix("GET /big/")
                        .and_then(|r| r.split(' ').next())
                        .and_then(|n| n.parse::<usize>().ok())
                    {
                        let _ = write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
                        let block = vec![b'x'; 256 * 1024];
                        let mut left = n;
                        while left > 0 {
                            let k = left.min(block.len());
                            if out.write_all(&block[..k]).is_err() {
                                return;
                            }
                            left -= k;
                        }
                        let _ = out.flush();
                        continue;
                    }
                    if head.starts_with("GET /sse") {
                        let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
                        let first = b"data: first\n\n";
                        let _ = write!(out, "{:x}\r\n", first.len());
                        let _ = out.write_all(first);
                        let _ = out.write_all(b"\r\n");
                        let _ = out.flush();
                        // The last event only after the client has the first.
                        let got = wait
                            .lock()
                            .expect("wait")
                            .recv_timeout(Duration::from_secs(10));
                        let last: &[u8] = if got.is_ok() {
                            b"data: last\n\n"
                        } else {
                            b"data: timed out\n\n"
                        };
                        let _ = write!(out, "{:x}\r\n", last.len());
                        let _ = out.write_all(last);
                        let _ = out.write_all(b"\r\n0\r\n\r\n");
                        let _ = out.flush();
                        continue;
                    }
                    let auth = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Authorization: "))
                        .unwrap_or("-")
                        .to_string();
                    let _ = write!(
                        out,
                        "HTTP/1.1 200 OK\r\nX-Seen: {auth}\r\nContent-Length: {}\r\n\r\n{received}",
                        received.len()
                    );
                    let _ = out.flush();
                }
            });
        }
    });
    Origin { port, seen, go }
}

struct Setup {
    proxy: EgressProxy,
    origin: Origin,
    api: Placeholder,
    other: Placeholder,
    bundle: String,
    _dir: tempfile::TempDir,
}

/// A proxy injecting `API_KEY` toward `localhost:<origin>` and `GH_TOKEN` toward a host
/// that is never used here; `127.0.0.1:<origin>` (the same server, another name) is only
/// allowed. `trust_origin` gives it the test CA as agent.network.upstream_ca.
fn setup(trust_origin: bool) -> Setup {
    let origin = origin();
    let port = origin.port;
    let api = Placeholder::new("API_KEY", VALUE).expect("placeholder");
    let other = Placeholder::new("GH_TOKEN", OTHER).expect("placeholder");
    let inject_host = format!("localhost:{port}");
    let secrets = vec![
        InjectedSecret {
            secret: api.clone(),
            hosts: HostRules::new(&[inject_host.as_str()]).expect("hosts"),
        },
        InjectedSecret {
            secret: other.clone(),
            hosts: HostRules::new(&["github.invalid"]).expect("hosts"),
        },
    ];
    let ca = common::crate_path("fixtures/tls/ca.pem");
    let injection =
        Injection::new(secrets, trust_origin.then_some(ca.as_path())).expect("injection");
    let bundle = injection.bundle_pem();
    let allowed = [inject_host, format!("127.0.0.1:{port}")];
    let policy = EgressPolicy::new(
        HostRules::new(&allowed).expect("allowed"),
        HostRules::default(),
    );
    let dir = tempfile::tempdir().expect("dir");
    let proxy =
        EgressProxy::start_injecting(policy, dir.path(), Some(Arc::new(injection))).expect("proxy");
    Setup {
        proxy,
        origin,
        api,
        other,
        bundle,
        _dir: dir,
    }
}

impl Setup {
    fn proxy_addr(&self) -> String {
        self.proxy.url().trim_start_matches("http://").to_string()
    }

    /// CONNECT through the proxy; the proxy's answer line and the open stream.
    fn connect(&self, host: &str) -> (String, TcpStream) {
        let mut tcp = TcpStream::connect(self.proxy_addr()).expect("proxy");
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        write!(
            tcp,
            "CONNECT {host}:{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
            self.origin.port
        )
        .expect("connect");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut byte).expect("read") == 0 {
                break;
            }
            head.push(byte[0]);
        }
        (String::from_utf8_lossy(&head).to_string(), tcp)
    }

    /// TLS through a CONNECT to `host`, trusting only `roots_pem` (as the sandbox would).
    fn tls(
        &self,
        host: &str,
        roots_pem: &str,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let (answer, tcp) = self.connect(host);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = ServerName::try_from(host.to_string()).expect("name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        rustls::StreamOwned::new(conn, tcp)
    }

    fn seen(&self) -> Vec<String> {
        self.origin.seen.lock().expect("seen").clone()
    }
}

/// One response read off `r`: head and Content-Length body.
fn response(r: &mut impl BufRead) -> (String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("read") == 0 {
            break;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().expect("length"))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).expect("body");
    (head, String::from_utf8_lossy(&body).to_string())
}

#[test]
fn the_origin_gets_the_value_while_the_agent_only_ever_holds_the_placeholder() {
    let s = setup(true);
    let lh = format!("localhost:{}", s.origin.port);
    let tls = s.tls("localhost", &s.bundle);
    let mut tls = BufReader::new(tls);
    let ph = s.api.placeholder();
    let body = format!("body keeps {ph}");
    // Several requests on one connection (keep-alive), the placeholder in the request line
    // and headers each time; in the body it must stay as it is.
    for i in 0..3 {
        write!(
            tls.get_mut(),
            "POST /echo?key={ph}&n={i} HTTP/1.1\r\nHost: {lh}\r\nAuthorization: Bearer {ph}\r\nAccept-Encoding: gzip, br\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("request");
        tls.get_mut().flush().expect("flush");
        let (head, echoed) = response(&mut tls);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        // The origin echoed the value in a header and in the body: the agent sees neither.
        assert!(
            !head.contains(VALUE) && !echoed.contains(VALUE),
            "{head}{echoed}"
        );
        assert!(head.contains(&format!("X-Seen: Bearer {ph}")), "{head}");
    }
    let seen = s.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (i, got) in seen.iter().enumerate() {
        assert!(
            got.starts_with(&format!("POST /echo?key={VALUE}&n={i} ")),
            "{got}"
        );
        assert!(
            got.contains(&format!("Authorization: Bearer {VALUE}")),
            "{got}"
        );
        assert!(
            got.ends_with(&format!("body keeps {ph}")),
            "never in the body: {got}"
        );
        // Asked for uncompressed, so an echoed value can be swapped out of the body too.
        assert!(
            !got.to_ascii_lowercase().contains("accept-encoding"),
            "{got}"
        );
    }
    let report = s.proxy.report();
    let host = format!("localhost:{}", s.origin.port);
    assert_eq!(report.injected[&host]["API_KEY"], 3, "{report:?}");
    assert!(report.refused.is_empty(), "{report:?}");
}

#[test]
fn another_secrets_placeholder_toward_an_inject_host_is_not_substituted_and_is_recorded() {
    let s = setup(true);
    let lh = format!("localhost:{}", s.origin.port);
    let mut tls = BufReader::new(s.tls("localhost", &s.bundle));
    let gh = s.other.placeholder();
    write!(
        tls.get_mut(),
        "GET /echo HTTP/1.1\r\nHost: {lh}\r\nAuthorization: token {gh}\r\n\r\n"
    )
    .expect("request");
    let (head, _) = response(&mut tls);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = s.seen();
    assert!(
        seen[0].contains(&format!("Authorization: token {gh}")),
        "{seen:?}"
    );
    assert!(!seen[0].contains(OTHER), "{seen:?}");
    let refused = s.proxy.report().refused;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].secret.as_deref(), Some("GH_TOKEN"));
    assert!(!refused[0].reason.contains(OTHER));
}

#[test]
fn toward_a_host_that_is_only_allowed_the_tunnel_stays_opaque_and_the_placeholder_unchanged() {
    let s = setup(true);
    // The same server named 127.0.0.1 is not an inject host: a plain tunnel, so the client
    // must see the origin's own certificate (the test CA), not the run CA.
    let test_ca = std::fs::read_to_string(common::crate_path("fixtures/tls/ca.pem")).expect("ca");
    let mut tls = BufReader::new(s.tls("127.0.0.1", &test_ca));
    let ph = s.api.placeholder();
    write!(
        tls.get_mut(),
        "GET /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ph}\r\n\r\n"
    )
    .expect("request");
    let (head, _) = response(&mut tls);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = s.seen();
    assert!(
        seen[0].contains(&format!("Authorization: Bearer {ph}")),
        "{seen:?}"
    );
    assert!(!seen[0].contains(VALUE));
    assert!(s.proxy.report().injected.is_empty());
}

#[test]
fn a_placeholder_in_a_plain_http_request_is_never_substituted_and_is_recorded() {
    let s = setup(true);
    // Plain HTTP toward the inject host itself (values only ever go in over TLS), and a
    // tunnel to a host that is only allowed, the placeholder in the CONNECT or right after.
    let port = s.origin.port;
    let (api, gh) = (s.api.placeholder(), s.other.placeholder());
    for (request, how, secret) in [
        (
            format!("GET http://localhost:{port}/echo HTTP/1.1\r\nAuthorization: Bearer {api}\r\n\r\n"),
            "plain-HTTP",
            "API_KEY",
        ),
        (
            format!("GET http://localhost:{port}/echo HTTP/1.1\r\nProxy-Authorization: Bearer {gh}\r\n\r\n"),
            "plain-HTTP",
            "GH_TOKEN",
        ),
        (
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nX: {gh}\r\n\r\n"),
            "tunnel",
            "GH_TOKEN",
        ),
        (
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nProxy-Authorization: Bearer {api}\r\n\r\n"),
            "CONNECT",
            "API_KEY",
        ),
    ] {
        let before = s.proxy.report().refused.len();
        let mut tcp = TcpStream::connect(s.proxy_addr()).expect("proxy");
        tcp.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        tcp.write_all(request.as_bytes()).expect("send");
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out);
        let refused = s.proxy.report().refused;
        let new = &refused[before..];
        assert!(
            new.len() == 1 && new[0].reason.contains(how) && new[0].secret.as_deref() == Some(secret),
            "{how}: {refused:?}"
        );
    }
    assert!(s
        .seen()
        .iter()
        .all(|r| !r.contains(VALUE) && !r.contains(OTHER)));
}

#[test]
fn an_upstream_whose_certificate_does_not_verify_gets_nothing_and_the_agent_an_error() {
    let s = setup(false);
    let (answer, mut tcp) = s.connect("localhost");
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let mut rest = String::new();
    let _ = tcp.read_to_string(&mut rest);
    assert!(rest.contains("upstream_ca"), "{rest}");
    assert!(!rest.contains(VALUE));
    assert!(s.seen().is_empty(), "{:?}", s.seen());
}

#[test]
fn the_agent_cannot_reach_an_inject_host_without_trusting_the_run_ca() {
    let s = setup(true);
    let lh = format!("localhost:{}", s.origin.port);
    let test_ca = std::fs::read_to_string(common::crate_path("fixtures/tls/ca.pem")).expect("ca");
    let mut tls = s.tls("localhost", &test_ca);
    let sent = write!(tls, "GET /echo HTTP/1.1\r\nHost: {lh}\r\n\r\n").and_then(|_| tls.flush());
    let mut buf = [0u8; 16];
    assert!(
        sent.is_err() || tls.read(&mut buf).is_err(),
        "a run CA cert must not verify as the origin's"
    );
    assert!(s.seen().is_empty());
}

#[test]
fn server_sent_events_stream_through_the_terminated_connection() {
    let s = setup(true);
    let lh = format!("localhost:{}", s.origin.port);
    let mut tls = BufReader::new(s.tls("localhost", &s.bundle));
    write!(tls.get_mut(), "GET /sse HTTP/1.1\r\nHost: {lh}\r\n\r\n").expect("request");
    tls.get_mut().flush().expect("flush");
    let mut got = String::new();
    while !got.contains("data: first\n\n") {
        let mut line = String::new();
        assert!(
            tls.read_line(&mut line).expect("read") > 0,
            "closed early: {got}"
        );
        got.push_str(&line);
    }
    // The origin sends the last event only now: a buffering proxy would never get here.
    s.origin.go.send(()).expect("go");
    while !got.contains("data: last") && !got.contains("timed out") {
        let mut line = String::new();
        assert!(
            tls.read_line(&mut line).expect("read") > 0,
            "closed early: {got}"
        );
        got.push_str(&line);
    }
    assert!(got.contains("data: last"), "{got}");
}

#[test]
fn oversized_ambiguous_and_misdirected_requests_are_refused_before_reaching_the_origin() {
    let s = setup(true);
    let lh = format!("localhost:{}", s.origin.port);
    let ph = s.api.placeholder();
    let huge = "a".repeat(40 * 1024);
    for (request, status) in [
        (format!("GET /echo HTTP/1.1\r\nHost: {lh}\r\nX-Big: {huge}\r\n\r\n"), "431"),
        (format!("POST /echo HTTP/1.1\r\nHost: {lh}\r\nAuthorization: Bearer {ph}\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"), "400"),
        (format!("POST /echo HTTP/1.1\r\nHost: {lh}\r\nAuthorization: Bearer {ph}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), "400"),
        (format!("POST /echo HTTP/1.1\r\nHost: {lh}\r\nTransfer-Encoding: chunked, identity\r\nAuthorization: Bearer {ph}\r\n\r\n"), "400"),
        (format!("GET /echo HTTP/1.1\r\nHost: {lh}\r\nX: a\r\n Authorization: Bearer {ph}\r\n\r\n"), "400"),
        (format!("GET /echo HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {ph}\r\n\r\n"), "421"),
        (format!("GET /echo HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ph}\r\n\r\n"), "421"),
        (format!("GET /echo HTTP/1.1\r\nHost: {lh}\r\nHost: evil.example\r\nAuthorization: Bearer {ph}\r\n\r\n"), "421"),
        (format!("GET /echo HTTP/1.1\r\nAuthorization: Bearer {ph}\r\n\r\n"), "421"),
        (format!("GET https://evil.example/echo HTTP/1.1\r\nHost: {lh}\r\nAuthorization: Bearer {ph}\r\n\r\n"), "421"),
        (format!("GET /echo HTTP/1.1\r\nHost: {lh}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nAuthorization: Bearer {ph}\r\n\r\n"), "501"),
    ] {
        let mut tls = BufReader::new(s.tls("localhost", &s.bundle));
        tls.get_mut().write_all(request.as_bytes()).expect("send");
        tls.get_mut().flush().expect("flush");
        let (head, _) = response(&mut tls);
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{status}: {head}");
    }
    assert!(s.seen().is_empty(), "{:?}", s.seen());
    // Requests aimed at another site behind the same front end are kept for the ledger.
    let refused = s.proxy.report().refused;
    assert_eq!(
        refused
            .iter()
            .filter(|r| r.reason.contains("Host") || r.reason.contains("not a path"))
            .count(),
        5,
        "{refused:?}"
    );
    assert!(refused.iter().all(|r| !r.reason.contains(VALUE)));
    assert!(s.proxy.report().injected.is_empty());
}
