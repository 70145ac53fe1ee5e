//! Throughput of the egress proxy: a 100 MB download from a server on 127.0.0.1 through
//! chant's proxy (HTTP forward, and the CONNECT tunnel https uses), and through the relay
//! a sandbox's relay uses (TCP → relay, which hands the connection to the proxy over a Unix
//! socket), against the same download with no proxy, measured in the same run. Target:
//! ≥ 0.8× the direct download. Then the same over TLS (a rustls client): straight to the
//! origin, through a CONNECT tunnel, and through the terminated path of an injected host
//! (the proxy decrypts, puts the secret in, re-encrypts), against the direct TLS download.
//!
//! Run: `cargo bench --bench network`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use git_chant::net::{relay, EgressPolicy, EgressProxy, InjectedSecret, Injection};
use git_chant::pattern::HostRules;
use git_chant::secrets::Placeholder;

const SIZE: usize = 100 << 20;
const RUNS: usize = 7;

fn main() {
    let server = serve(SIZE);
    let dir = tempfile::tempdir().expect("tmp");
    let allowed = HostRules::new(&[format!("127.0.0.1:{}", server.port())]).expect("rules");
    let proxy = EgressProxy::start(EgressPolicy::new(allowed, HostRules::default()), dir.path())
        .expect("proxy");
    let proxy_addr: SocketAddr = proxy
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("proxy address");
    let relay_addr = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("port");
        let addr = probe.local_addr().expect("addr");
        drop(probe);
        let socket = proxy.handoff().to_path_buf();
        std::thread::spawn(move || relay::serve_tcp(addr, &socket));
        addr
    };
    std::thread::sleep(Duration::from_millis(200));

    let url = format!("http://{server}/");
    let direct = || download(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n".into(), false);
    let forward = || {
        download(
            proxy_addr,
            format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n"),
            false,
        )
    };
    let tunnel = || {
        download(
            proxy_addr,
            format!("CONNECT {server} HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            true,
        )
    };
    let relayed = || {
        download(
            relay_addr,
            format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n"),
            false,
        )
    };

    // Interleaved, so that a noisy moment hurts every variant alike; best of RUNS each.
    let mut best = [Duration::MAX; 4];
    for _ in 0..RUNS {
        for (i, f) in [
            &direct as &dyn Fn() -> Duration,
            &forward,
            &tunnel,
            &relayed,
        ]
        .iter()
        .enumerate()
        {
            best[i] = best[i].min(f());
        }
    }
    let mbps = |d: Duration| SIZE as f64 / d.as_secs_f64() / (1 << 20) as f64;
    println!("100 MB from 127.0.0.1, best of {RUNS}:");
    let names = [
        "direct (no proxy)",
        "proxy, HTTP forward",
        "proxy, CONNECT tunnel",
        "relay + proxy (docker/vm path)",
    ];
    for (name, d) in names.iter().zip(best) {
        println!(
            "  {name:<32} {:>8.1} ms  {:>8.0} MB/s  {:.2}× direct",
            d.as_secs_f64() * 1e3,
            mbps(d),
            best[0].as_secs_f64() / d.as_secs_f64()
        );
    }
    let report = proxy.report();
    assert_eq!(report.refused.len(), 0);
    println!("  (proxy connections: {:?})", report.allowed);
    tls();
}

/// Direct TLS, a CONNECT tunnel and the terminated path of an injected host, to one origin
/// (its certificate names both `localhost` and `127.0.0.1`; `localhost` is the inject host).
fn tls() {
    git_chant::net::install_tls_provider();
    let origin = serve_tls(SIZE);
    let port = origin.port();
    let placeholder = Placeholder::new("API_KEY", "sk-bench-api03-RealValueRealValue0123456789")
        .expect("placeholder");
    let header = format!("Authorization: Bearer {}\r\n", placeholder.placeholder());
    let ca = crate_path("fixtures/tls/ca.pem");
    let injection = Injection::new(
        vec![InjectedSecret {
            secret: placeholder,
            hosts: HostRules::new(&[format!("localhost:{port}")]).expect("hosts"),
        }],
        Some(&ca),
    )
    .expect("injection");
    let bundle = roots(injection.bundle_pem().as_bytes());
    let test_ca = roots(&std::fs::read(&ca).expect("ca"));
    let dir = tempfile::tempdir().expect("tmp");
    let allowed = [format!("localhost:{port}"), format!("127.0.0.1:{port}")];
    let proxy = EgressProxy::start_injecting(
        EgressPolicy::new(
            HostRules::new(&allowed).expect("rules"),
            HostRules::default(),
        ),
        dir.path(),
        Some(Arc::new(injection)),
    )
    .expect("proxy");
    let proxy_addr: SocketAddr = proxy
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("proxy address");
    let direct = || tls_download(origin, None, "127.0.0.1", &test_ca, "");
    let tunnel = || {
        tls_download(
            proxy_addr,
            Some(&format!("127.0.0.1:{port}")),
            "127.0.0.1",
            &test_ca,
            "",
        )
    };
    let terminated = || {
        tls_download(
            proxy_addr,
            Some(&format!("localhost:{port}")),
            "localhost",
            &bundle,
            &header,
        )
    };
    let mut best = [Duration::MAX; 3];
    for _ in 0..RUNS {
        for (i, f) in [&direct as &dyn Fn() -> Duration, &tunnel, &terminated]
            .iter()
            .enumerate()
        {
            best[i] = best[i].min(f());
        }
    }
    println!("100 MB over TLS from 127.0.0.1 (rustls client), best of {RUNS}:");
    for (name, d) in [
        "direct TLS",
        "proxy, CONNECT tunnel",
        "proxy, terminated (injected)",
    ]
    .iter()
    .zip(best)
    {
        println!(
            "  {name:<32} {:>8.1} ms  {:>8.0} MB/s  {:.2}× direct",
            d.as_secs_f64() * 1e3,
            SIZE as f64 / d.as_secs_f64() / (1 << 20) as f64,
            best[0].as_secs_f64() / d.as_secs_f64()
        );
    }
    let report = proxy.report();
    assert_eq!(report.refused.len(), 0, "{:?}", report.refused);
    println!("  (values put in: {:?})", report.injected);
}

fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn roots(pem: &[u8]) -> Arc<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
        store.add(cert.expect("cert")).expect("root");
    }
    Arc::new(store)
}

/// GET / over TLS to `name` at `addr` (through a CONNECT to `connect` first, when given),
/// extra header lines `headers`; reads the whole body and checks its size.
fn tls_download(
    addr: SocketAddr,
    connect: Option<&str>,
    name: &str,
    roots: &Arc<rustls::RootCertStore>,
    headers: &str,
) -> Duration {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).expect("connect");
    if let Some(target) = connect {
        write!(tcp, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").expect("connect");
        let head = read_head(&mut tcp);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(Arc::clone(roots))
        .with_no_client_auth();
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), server).expect("tls");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The host the CONNECT named, port included (a terminated connection refuses any other).
    let host = connect.map_or_else(|| format!("{name}:{}", addr.port()), str::to_string);
    write!(tls, "GET / HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n").expect("request");
    tls.flush().expect("flush");
    let head = read_head(&mut tls);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut buf = vec![0u8; 256 * 1024];
    let mut body = 0usize;
    while body < SIZE {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body += n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(body, SIZE, "short TLS download from {addr}");
    started.elapsed()
}

/// The head of an HTTP message, read byte by byte (nothing after it is consumed).
fn read_head(conn: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Serves `size` bytes over TLS (fixtures/tls/server.pem) to every request.
fn serve_tls(size: usize) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(crate_path("fixtures/tls/server.pem"))
            .expect("cert file")
            .collect::<Result<_, _>>()
            .expect("certs");
    let key = PrivateKeyDer::from_pem_file(crate_path("fixtures/tls/server.key")).expect("key");
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body: &'static [u8] = Box::leak(vec![b'x'; size].into_boxed_slice());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let Ok(server) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(server, conn);
                let _ = read_head(&mut tls);
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
                );
                let _ = tls.write_all(body);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    addr
}

/// Sends `request` to `addr` and reads the whole answer; checks its size.
fn download(addr: SocketAddr, request: String, tunnel: bool) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(request.as_bytes()).expect("send");
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    loop {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n;
    }
    let head = if tunnel { 39 } else { 0 };
    assert!(
        total >= SIZE + head,
        "short download from {addr}: {total} bytes"
    );
    started.elapsed()
}

/// Serves `size` bytes to every request (HTTP/1.0-style: the connection closes after).
fn serve(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = vec![b'x'; size];
    let body: &'static [u8] = Box::leak(body.into_boxed_slice());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
                );
                let _ = conn.write_all(body);
            });
        }
    });
    addr
}
