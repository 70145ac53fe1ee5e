//! The relay: the sandbox's only way out. It runs inside the sandbox's network namespace
//! (a docker sidecar sharing it) or as qemu's forward for a guest, and carries each
//! connection, as bytes, to the proxy's Unix socket on the host. It decides nothing.

use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::join;

/// What the relay prints once it accepts connections (the docker level waits for it).
pub const READY: &str = "chant-relay: listening";

/// Listens on `listen` and relays every connection to `socket`; runs until killed.
pub fn serve_tcp(listen: SocketAddr, socket: &Path) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    let mut out = io::stdout();
    writeln!(out, "{READY} on {listen}")?;
    out.flush()?;
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let socket = socket.to_path_buf();
        std::thread::spawn(move || {
            if let Ok(proxy) = UnixStream::connect(&socket) {
                let _ = client.set_nodelay(true);
                let _ = join(client, proxy);
            }
        });
    }
    Ok(())
}

/// Relays standard input and output (one connection, as qemu's `guestfwd` hands it over)
/// to `socket`.
pub fn stdio(socket: &Path) -> io::Result<()> {
    let proxy = UnixStream::connect(socket)?;
    let mut to_proxy = proxy.try_clone()?;
    // Unbuffered files on the standard descriptors: the standard handles buffer by line.
    let mut stdin = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let mut stdout = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let upstream = std::thread::spawn(move || {
        let _ = super::copy(&mut stdin, &mut to_proxy);
        let _ = to_proxy.shutdown(std::net::Shutdown::Write);
    });
    let mut from_proxy = proxy;
    let copied = super::copy(&mut from_proxy, &mut stdout);
    // The guest closed its side, or the proxy did: either way the connection is over.
    drop(upstream);
    copied.map(|_| ())
}
