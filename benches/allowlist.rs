//! The docker level's allowlist (`agent.network.enabled`) against the same level without
//! it, each baseline measured in the same run:
//! - per run: a container running `true` started by its relay (the container's first
//!   process), against the same container without the network (target <= 1.2x);
//! - a 100 MB download with curl inside the container from a server on the host's
//!   loopback, through the relay and the proxy's plain CONNECT tunnel (`--proxytunnel`),
//!   against the same curl in a container on the host's network (target >= 0.8x); and over
//!   HTTPS through the injected path (the proxy terminates TLS, puts a secret in, and
//!   re-encrypts toward the origin) against the same curl over HTTPS directly; and the
//!   same tunnel from a container on the host's network to the proxy's TCP port (no relay),
//!   which tells the relay's share from the proxy's.
//!
//! Transfer times are curl's own (`%{time_total}`), so container start-up is not in them;
//! best and median of the runs are printed.
//! Needs a running engine, the `docker` CLI, Debian's static busybox and /usr/bin/curl.
//! Run: `cargo bench --bench allowlist` (`CHANT_BENCH_RUNS=N`, default 5): a release build,
//! whose binary is also the relay in the container. `cargo test --bench allowlist` runs the
//! debug build (the relay then too): the same for the tunnel (the relay only hands the
//! socket over, the kernel moves the bytes), slower for the injected path (rustls).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use git_chant::net::{EgressPolicy, EgressProxy, InjectedSecret, Injection};
use git_chant::pattern::HostRules;
use git_chant::sandbox::{Egress, Job, Outcome, OutputSink, Stream};

const IMAGE: &str = "chant-bench-curl:latest";
const SIZE: usize = 100 << 20;
const SECRET: &str = "sk-bench-api03-RealValueRealValue0123456789";

/// Keeps what the container printed on stdout.
#[derive(Default)]
struct Collect(Vec<u8>);

impl OutputSink for Collect {
    fn output(&mut self, stream: Stream, bytes: &[u8]) {
        if stream == Stream::Stdout {
            self.0.extend_from_slice(bytes);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The docker level mounts the running program as the relay: here, this bench.
    if args.get(1).map(String::as_str) == Some("relay") {
        relay(&args);
        return;
    }
    let runs: usize = std::env::var("CHANT_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let tmp = tempfile::tempdir().expect("tmp");
    if let Err(why) = import_image(tmp.path()) {
        println!("allowlist bench skipped: {why}");
        return;
    }
    git_chant::net::install_tls_provider();
    let plain = serve(None);
    let tls = serve(Some(tls_config()));
    let ca = crate_path("fixtures/tls/ca.pem");

    let placeholder = git_chant::secrets::Placeholder::new("API_KEY", SECRET).expect("placeholder");
    let header = format!("Authorization: Bearer {}", placeholder.placeholder());
    let injection = Injection::new(
        vec![InjectedSecret {
            secret: placeholder,
            hosts: HostRules::new(&[tls.to_string()]).expect("rules"),
        }],
        Some(&ca),
    )
    .expect("injection");
    let bundle = injection.bundle_pem().into_bytes();
    let policy = EgressPolicy::new(
        HostRules::new(&[plain.to_string(), tls.to_string()]).expect("rules"),
        HostRules::default(),
    );
    let net_dir = tempfile::Builder::new()
        .prefix("chant-bench-")
        .tempdir()
        .expect("dir");
    let proxy = EgressProxy::start_injecting(policy, net_dir.path(), Some(Arc::new(injection)))
        .expect("proxy");
    let egress = Egress {
        socket: proxy.socket().to_path_buf(),
        handoff: proxy.handoff().to_path_buf(),
        url: proxy.url(),
    };

    let workspace = tmp.path().join("workspace");
    std::fs::create_dir_all(&workspace).expect("workspace");
    let config = git_chant::config::parse(
        "bench",
        &format!("---\nagent:\n  sandbox: docker\n  docker:\n    image: {IMAGE}\n    memory: 256M\n    cpu: 1\n---\n"),
    )
    .expect("config");
    let sandbox = git_chant::sandbox::for_level(config.agent.sandbox, &config).expect("level");
    let stop = Arc::new(AtomicBool::new(false));
    let job = |argv: &[&str], network: Option<Egress>| Job {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![
            ("PATH".into(), "/bin:/usr/bin".into()),
            ("CURL_CA_BUNDLE".into(), "/run/chant/chant-ca.pem".into()),
        ],
        workspace: workspace.clone(),
        timeout: Duration::from_secs(120),
        files: vec![(PathBuf::from("/run/chant/chant-ca.pem"), bundle.clone())],
        hold_stdin: false,
        network,
        gate: None,
    };
    let run = |job: &Job| -> (Duration, String) {
        let mut out = Collect::default();
        let started = Instant::now();
        let outcome = sandbox.run(job, &mut out, &stop).expect("run");
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&out.0).into_owned();
        assert_eq!(outcome, Outcome::Exited(0), "{text}");
        (took, text)
    };

    // Per-run cost: `true`, with and without the relay.
    let alone = job(&["true"], None);
    let beside = job(&["true"], Some(egress.clone()));
    run(&beside); // warm: ldd, page cache
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(3) * 2 {
        without.push(run(&alone).0);
        with.push(run(&beside).0);
    }
    let (a, b) = (median(&mut without), median(&mut with));
    println!(
        "docker level per run ({} runs each, median): without the allowlist {:.0} ms, with it {:.0} ms, ratio {:.2}x (target <= 1.2x)",
        without.len(),
        ms(a),
        ms(b),
        ms(b) / ms(a)
    );

    // 100 MB with curl inside the container.
    let write_out = "%{time_total} %{size_download}\n";
    let plain_url = format!("http://{plain}/");
    let tls_url = format!("https://{tls}/");
    let tunnel = job(
        &[
            "curl",
            "-sS",
            "--proxytunnel",
            "-o",
            "/dev/null",
            "-w",
            write_out,
            &plain_url,
        ],
        Some(egress.clone()),
    );
    let injected = job(
        &[
            "curl",
            "-sS",
            "-H",
            &header,
            "-o",
            "/dev/null",
            "-w",
            write_out,
            &tls_url,
        ],
        Some(egress.clone()),
    );
    let mut times: [Vec<f64>; 5] = Default::default();
    for _ in 0..runs {
        let round = [
            curl_direct(&plain_url, None, &[]),
            curl_time(&run(&tunnel).1),
            curl_direct(&tls_url, Some(&ca), &[]),
            curl_time(&run(&injected).1),
            curl_direct(&plain_url, None, &["--proxytunnel", "-x", &proxy.url()]),
        ];
        for (all, t) in times.iter_mut().zip(round) {
            all.push(t);
        }
    }
    let best: Vec<f64> = times
        .iter()
        .map(|t| t.iter().copied().fold(f64::MAX, f64::min))
        .collect();
    let middle: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    let mbps = |s: f64| SIZE as f64 / s / (1 << 20) as f64;
    println!("100 MB with curl inside the container, best of {runs} (median in brackets):");
    for (name, i, base, target) in [
        ("direct, http (host network)", 0, 0, ""),
        ("relay + proxy, CONNECT tunnel", 1, 0, " (target >= 0.8x)"),
        ("direct, https (host network)", 2, 2, ""),
        ("relay + proxy, injected https", 3, 2, ""),
        ("host network + proxy, tunnel", 4, 0, " (no relay)"),
    ] {
        println!(
            "  {name:<32} {:>8.1} ms  {:>7.0} MB/s  {:.2}x direct  [{:.1} ms, {:.2}x]{target}",
            best[i] * 1e3,
            mbps(best[i]),
            best[base] / best[i],
            middle[i] * 1e3,
            middle[base] / middle[i],
        );
    }
    let report = proxy.report();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    println!(
        "  (proxy: {:?} connections, {:?} injected)",
        report.allowed, report.injected
    );
}

/// `relay --socket PATH --listen ADDR --run-as UID:GID -- COMMAND…`, as the docker level
/// starts it: the container's first process, which starts the command.
fn relay(args: &[String]) {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_default()
    };
    let listen: SocketAddr = value("--listen").parse().expect("--listen");
    let socket = PathBuf::from(value("--socket"));
    let (uid, gid) = git_chant::net::init::parse_id(&value("--run-as")).expect("--run-as");
    let argv = args
        .iter()
        .skip_while(|a| *a != "--")
        .skip(1)
        .map(Into::into)
        .collect();
    let agent = git_chant::net::init::Agent { uid, gid, argv };
    let status = match git_chant::net::init::run(listen, &socket, &agent) {
        Ok(status) => status,
        Err(failure) => {
            eprintln!("relay: {failure}");
            failure.status
        }
    };
    std::process::exit(status);
}

fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// curl's `%{time_total}` from what it printed, after checking the size.
fn curl_time(out: &str) -> f64 {
    let mut words = out.split_whitespace();
    let (Some(t), Some(n)) = (words.next(), words.next()) else {
        panic!("curl printed {out:?}");
    };
    assert_eq!(n.parse::<usize>().ok(), Some(SIZE), "short download: {out}");
    t.parse().expect("time_total")
}

/// The same curl in the same image and limits, on the host's network, straight to `url`.
fn curl_direct(url: &str, ca: Option<&Path>, extra: &[&str]) -> f64 {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--network", "host", "--read-only"])
        .args(["--user", "65532:65532", "--cap-drop", "ALL"])
        .args(["--security-opt", "no-new-privileges", "--pids-limit", "512"])
        .args(["--memory", "256m", "--memory-swap", "256m", "--cpus", "1"])
        .args(["--log-driver", "none"]);
    if let Some(ca) = ca {
        cmd.arg("-v").arg(format!("{}:/ca.pem:ro", ca.display()));
        cmd.args(["-e", "CURL_CA_BUNDLE=/ca.pem"]);
    }
    let out = cmd
        .args([IMAGE, "curl", "-sS", "-o", "/dev/null"])
        .args(extra)
        .arg("-w")
        .arg("%{time_total} %{size_download}\n")
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .expect("docker run");
    curl_time(&String::from_utf8_lossy(&out.stdout))
}

/// Serves SIZE bytes to every request on 127.0.0.1 (TLS with `tls`), one exchange per
/// connection.
fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body: &'static [u8] = Box::leak(vec![b'x'; SIZE].into_boxed_slice());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let tls = tls.clone();
            std::thread::spawn(move || match tls {
                Some(config) => {
                    let Ok(server) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut s = rustls::StreamOwned::new(server, conn);
                    answer(&mut s, body);
                    s.conn.send_close_notify();
                    let _ = s.flush();
                }
                None => {
                    let mut conn = conn;
                    answer(&mut conn, body);
                }
            });
        }
    });
    addr
}

fn answer(conn: &mut (impl Read + Write), body: &[u8]) {
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
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(body);
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(crate_path("fixtures/tls/server.pem"))
            .expect("cert file")
            .collect::<Result<_, _>>()
            .expect("certs");
    let key = PrivateKeyDer::from_pem_file(crate_path("fixtures/tls/server.key")).expect("key");
    Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config"),
    )
}

/// Imports busybox and the host's curl (with the libraries it loads) as the bench image.
fn import_image(tmp: &Path) -> Result<(), String> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .ok_or("no busybox (apt-get install busybox-static)")?;
    let curl = Path::new("/usr/bin/curl");
    if !curl.is_file() {
        return Err("no /usr/bin/curl".into());
    }
    let root = tmp.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).map_err(|e| e.to_string())?;
    std::fs::copy(busybox, root.join("bin/busybox")).map_err(|e| e.to_string())?;
    for applet in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
            .map_err(|e| e.to_string())?;
    }
    let ldd = Command::new("ldd")
        .arg(curl)
        .output()
        .map_err(|e| e.to_string())?;
    let mut files = vec![curl.to_path_buf()];
    files.extend(
        String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|t| t.starts_with('/'))
            .map(PathBuf::from),
    );
    for file in files {
        let inside = root.join(file.strip_prefix("/").map_err(|e| e.to_string())?);
        if let Some(dir) = inside.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        // Follows links: the image gets the files themselves.
        std::fs::copy(&file, &inside).map_err(|e| format!("{}: {e}", file.display()))?;
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
