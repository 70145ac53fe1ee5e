//! Throughput of the egress proxy: a 100 MB download from a server on 127.0.0.1 through
//! chant's proxy (HTTP forward, and the CONNECT tunnel https uses), and through the relay
//! a sandbox uses (TCP → relay → Unix socket → proxy), against the same download with no
//! proxy, measured in the same run. Target: ≥ 0.8× the direct download.
//!
//! Run: `cargo bench --bench network`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use git_chant::net::{relay, EgressPolicy, EgressProxy};
use git_chant::pattern::HostRules;

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
