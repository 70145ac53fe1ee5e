//! A tiny HTTP/1.1 server on 127.0.0.1 for protocol-level fakes (Vault, the Kubernetes API,
//! GCS, Elasticsearch, Splunk HEC): each test gives a handler that checks what the real
//! service checks and answers as it would. Every request is kept for assertions. One
//! request per connection (`Connection: close`), which every client here handles, unless
//! asked to serve as the model APIs do (connections kept alive, event streams chunked).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path with the query, as sent.
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An answer: status, content type, body.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, value: serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A running fake. Dropping it leaves the thread parked on `accept` until the test ends.
pub struct FakeServer {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Request>>>,
    /// Connections accepted (TLS ones counted once the handshake started).
    pub connections: Arc<AtomicUsize>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        FakeServer::serve(listener, handler)
    }

    /// Serves on a listener bound elsewhere (e.g. inside a network namespace, see
    /// `common::netns`): the socket stays in the namespace it was bound in.
    pub fn serve(
        listener: TcpListener,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> FakeServer {
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        let handler: Arc<Handler> = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                let seen = Arc::clone(&seen);
                let handler = Arc::clone(&handler);
                std::thread::spawn(move || serve(stream, &seen, handler.as_ref(), false));
            }
        });
        FakeServer {
            port,
            requests,
            connections,
        }
    }

    /// The same over HTTPS, with the certificate and key in PEM files (fixtures/tls/).
    pub fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        FakeServer::serve_tls(listener, cert, key, false, handler)
    }

    /// [`FakeServer::start_tls`] on a listener bound elsewhere (e.g. inside a network
    /// namespace, see `common::netns`). With `like_an_api`, as the model APIs serve: a
    /// connection carries requests until the client closes it or asks to (`Connection:
    /// close`), and a `text/event-stream` body goes out chunked, one event per chunk,
    /// each flushed on its own.
    pub fn serve_tls(
        listener: TcpListener,
        cert: &std::path::Path,
        key: &std::path::Path,
        like_an_api: bool,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> FakeServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        git_chant::net::install_tls_provider();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("cert file")
            .collect::<Result<_, _>>()
            .expect("certs");
        let key = PrivateKeyDer::from_pem_file(key).expect("key file");
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server config"),
        );
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        let handler: Arc<Handler> = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Ok(conn) = rustls::ServerConnection::new(Arc::clone(&config)) else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let seen = Arc::clone(&seen);
                let handler = Arc::clone(&handler);
                std::thread::spawn(move || {
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    serve(&mut tls, &seen, handler.as_ref(), like_an_api);
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        FakeServer {
            port,
            requests,
            connections,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

fn serve(
    stream: impl Read + Write,
    seen: &Mutex<Vec<Request>>,
    handler: &Handler,
    like_an_api: bool,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request {
            method,
            path,
            headers,
            body,
        };
        let again = like_an_api
            && !request
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let response = handler(&request);
        seen.lock().expect("lock").push(request);
        let out = reader.get_mut();
        let chunked = like_an_api && response.content_type == "text/event-stream";
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {}", response.body.len())
        };
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Type: {}\r\n{framing}\r\nConnection: {}\r\n",
            response.status,
            response.content_type,
            if again { "keep-alive" } else { "close" }
        );
        for (k, v) in &response.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = out.write_all(head.as_bytes());
        if chunked {
            let _ = out.flush();
            let mut rest = &response.body[..];
            while !rest.is_empty() {
                // One event: through the blank line that ends it.
                let end = rest
                    .windows(2)
                    .position(|w| w == b"\n\n")
                    .map_or(rest.len(), |i| i + 2);
                let _ = write!(out, "{:x}\r\n", end);
                let _ = out.write_all(&rest[..end]);
                let _ = out.write_all(b"\r\n");
                let _ = out.flush();
                rest = &rest[end..];
            }
            let _ = out.write_all(b"0\r\n\r\n");
        } else {
            let _ = out.write_all(&response.body);
        }
        let _ = out.flush();
        if !again {
            return;
        }
    }
}

/// A loopback port with nothing listening (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A plain HTTP/1.1 request to a loopback server (test set-up: creating a bucket, listing
/// objects): the status and the body.
pub fn request(method: &str, port: u16, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body).expect("write");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("read");
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |i| i + 4);
    let status = String::from_utf8_lossy(&out[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let head_text = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    let mut body = out[split..].to_vec();
    if head_text.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = &data[(end + 2).min(data.len())..];
    }
    out
}

/// A server that answers every request with one fixed body (plus a newline), for the
/// network allowlist's tests: which server was reached, and how often.
pub struct Server {
    pub port: u16,
    fake: FakeServer,
}

impl Server {
    pub fn start(body: &str) -> Server {
        let body = format!("{body}\n").into_bytes();
        let fake = FakeServer::start(move |_| Response {
            status: 200,
            content_type: "text/plain",
            body: body.clone(),
            headers: Vec::new(),
        });
        Server {
            port: fake.port,
            fake,
        }
    }

    pub fn url(&self) -> String {
        self.url_at("127.0.0.1")
    }

    /// The URL with another name for this machine (e.g. `localhost`).
    pub fn url_at(&self, host: &str) -> String {
        format!("http://{host}:{}/", self.port)
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.fake.requests().len()
    }
}

/// What fixtures/agents/net-probe.sh found (its `net.txt` on `chant/<id>`), as key → value.
pub fn net_probe(repo: &super::TestRepo, id: &str) -> std::collections::HashMap<String, String> {
    repo.git(&["show", &format!("chant/{id}:net.txt")])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The probe reached the allowed server through the proxy (plain HTTP and CONNECT) and was
/// refused the other one both ways, at the proxy `proxy` the agent was given.
pub fn assert_only_allowed_reached(found: &std::collections::HashMap<String, String>, proxy: &str) {
    assert_eq!(found["proxy"], proxy, "{found:?}");
    assert_eq!(found["allowed"], "allowed-ok", "{found:?}");
    assert_eq!(found["tunnel-allowed"], "allowed-ok", "{found:?}");
    for refused in ["refused", "tunnel-refused"] {
        assert!(
            found[refused].contains("not in agent.network.allowed_hosts"),
            "{refused}: {found:?}"
        );
    }
}
