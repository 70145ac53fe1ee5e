//! Network egress for the agent (`agent.network`): an allowlisting HTTP/CONNECT proxy chant
//! runs on the host for one run ([`EgressProxy`]), the relay that carries a sandbox's
//! connections to it over a Unix socket ([`relay`]), and the rules both follow
//! ([`EgressPolicy`]).
//!
//! The sandbox never gets a route of its own: a docker agent shares a network namespace
//! holding only `lo` with the relay, a vm guest's only peer is qemu's forward to the relay.
//! Whatever the agent sends leaves the machine only as the proxy's own connection, made
//! after the policy allowed the name and the addresses it resolved to.

pub mod policy;
pub mod proxy;
pub mod relay;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;

pub use policy::{Decision, EgressPolicy};
pub use proxy::{EgressProxy, EgressReport, Refusal};

/// The port the relay listens on inside a sandbox.
pub const RELAY_PORT: u16 = 3128;

/// The proxy variables for a program that reaches the proxy at `url`, in both cases (curl
/// and busybox read only the lowercase ones). Nothing bypasses the proxy.
pub fn proxy_env(url: &str) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        env.push((name.to_string(), url.to_string()));
        env.push((name.to_ascii_lowercase(), url.to_string()));
    }
    env.push(("NO_PROXY".into(), String::new()));
    env.push(("no_proxy".into(), String::new()));
    env
}

/// A connection that can be read and written from two threads at once.
pub(crate) trait Duplex: Read + Write + Send + Sized + 'static {
    fn split(&self) -> io::Result<Self>;
    fn close_write(&self);
}

impl Duplex for TcpStream {
    fn split(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Duplex for UnixStream {
    fn split(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Copies both ways between `a` and `b` until both directions ended; returns the bytes
/// copied from `b` to `a`.
pub(crate) fn join<A: Duplex, B: Duplex>(a: A, b: B) -> io::Result<u64> {
    let (mut a_read, mut b_write) = (a.split()?, b.split()?);
    let upstream = std::thread::spawn(move || {
        let _ = copy(&mut a_read, &mut b_write);
        b_write.close_write();
    });
    let (mut a, mut b) = (a, b);
    let down = copy(&mut b, &mut a);
    a.close_write();
    let _ = upstream.join();
    down
}

/// `io::copy` with a buffer sized for bulk transfers.
pub(crate) fn copy(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}
