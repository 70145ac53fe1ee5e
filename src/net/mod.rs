//! The network: chant's own HTTP client for the services it talks to ([`http`]: Vault,
//! Elasticsearch, Splunk, object stores), and the agent's egress (`agent.network`): an
//! allowlisting HTTP/CONNECT proxy chant runs on the host for one run ([`EgressProxy`]),
//! the relay that hands a sandbox's connections to it over a Unix socket ([`relay`],
//! [`handoff`]), and
//! the rules both follow ([`EgressPolicy`]).
//!
//! The sandbox never gets a route of its own: a docker agent's container holds only `lo`,
//! with the relay as its first process ([`init`]), a vm guest's only peer is qemu's
//! forward to the relay.
//! Whatever the agent sends leaves the machine only as the proxy's own connection, made
//! after the policy allowed the name and the addresses it resolved to.

pub mod handoff;
pub mod http;
pub mod init;
pub mod inject;
mod intercept;
pub mod policy;
pub mod proxy;
pub mod relay;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

pub use http::{block_on, client, describe, install_tls_provider};
pub use inject::{InjectError, InjectedSecret, Injection};
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
pub(crate) trait Duplex: Read + Write + AsFd + Send + Sized + 'static {
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

/// Copies from `from` to `to` until end of file: in the kernel (`splice(2)` through a
/// pipe, no copy into this process) where both ends allow it, else through a buffer.
pub(crate) fn copy(from: &mut (impl Read + AsFd), to: &mut (impl Write + AsFd)) -> io::Result<u64> {
    match splice::copy(from.as_fd(), to.as_fd())? {
        Some(n) => Ok(n),
        None => buffered(from, to),
    }
}

fn buffered(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
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

/// Zero-copy forwarding between sockets (and the standard descriptors qemu hands the
/// relay): data moves from one socket's buffer to the other's through a pipe, never
/// through user space.
mod splice {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

    const CHUNK: usize = 1 << 20;

    /// Moves everything from `from` to `to`; the bytes moved, or None when the descriptors
    /// do not support splicing (found before anything moved, so nothing is lost).
    pub fn copy(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<Option<u64>> {
        let (read_end, write_end) = pipe()?;
        let mut total = 0u64;
        loop {
            let n = match splice(from.as_raw_fd(), write_end.as_raw_fd(), CHUNK) {
                Ok(0) => return Ok(Some(total)),
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && total == 0 => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut left = n;
            while left > 0 {
                match splice(read_end.as_raw_fd(), to.as_raw_fd(), left)? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    m => left -= m,
                }
            }
            total += n as u64;
        }
    }

    /// One `splice(2)` of up to `len` bytes, retried when a signal interrupts it.
    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        loop {
            // SAFETY: descriptors owned by the callers or this module; null offsets
            // (sockets and pipes have none).
            let n = unsafe {
                libc::splice(
                    from,
                    std::ptr::null_mut(),
                    to,
                    std::ptr::null_mut(),
                    len,
                    libc::SPLICE_F_MOVE,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    }

    fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors nobody else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A larger pipe moves more per call; the default (64 KiB) is only slower.
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
        Ok((r, w))
    }
}
