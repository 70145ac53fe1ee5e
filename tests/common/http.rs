//! A tiny HTTP server on 127.0.0.1 for network tests: answers every request with a fixed
//! body and counts the requests it served. It never listens beyond loopback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Server {
    pub port: u16,
    hits: Arc<AtomicUsize>,
}

impl Server {
    /// Serves `body` (plus a newline) on a free loopback port until the test ends.
    pub fn start(body: &str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        let body = format!("{body}\n");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let counted = Arc::clone(&counted);
                let body = body.clone();
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = write!(
                        conn,
                        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Server { port, hits }
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
        self.hits.load(Ordering::SeqCst)
    }
}
