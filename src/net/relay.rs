//! The relay: the sandbox's only way out. It runs inside the sandbox's network namespace
//! (at docker as the container's first process, see [`super::init`]), where it accepts
//! each connection and hands its
//! descriptor to the proxy's handoff socket on the host ([`super::handoff`]: the proxy
//! serves the socket itself, no byte passes through the relay); or as qemu's forward for a
//! guest, where it carries one connection, as bytes, to the proxy's byte socket. It
//! decides nothing.

use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::handoff;

/// What the relay prints once it accepts connections (the docker level waits for it).
pub const READY: &str = "chant-relay: listening";

/// Listens on `listen` and hands every connection to the proxy's handoff socket `socket`;
/// runs until killed. A connection that cannot be handed over is closed (fail-closed: the
/// client sees its connection end, nothing else).
pub fn serve_tcp(listen: SocketAddr, socket: &Path) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    let mut out = io::stdout();
    writeln!(out, "{READY} on {listen}")?;
    out.flush()?;
    serve(listener, socket);
    Ok(())
}

/// Hands every connection `listener` accepts to the proxy's handoff socket `socket`,
/// forever.
pub fn serve(listener: TcpListener, socket: &Path) {
    loop {
        match listener.accept() {
            Ok((client, _)) => hand_over(&client, socket),
            // Out of descriptors or memory for a moment: not a reason to spin.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

/// Hands `client` to the proxy's handoff socket `socket`; a connection that cannot be
/// handed over is closed when the caller drops it. Connecting and sending one message
/// take microseconds.
pub fn hand_over(client: &TcpStream, socket: &Path) {
    if let Ok(proxy) = UnixStream::connect(socket) {
        let _ = handoff::send(&proxy, client.as_fd());
    }
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
