//! The host's end of the vm level's gate channel: qemu's `guestfwd` starts one process per
//! guest connection (`git chant exec --gate SOCKET --bridge`) with the connection as its
//! standard input and output, and this carries its bytes to and from the run's gate socket
//! unchanged. It reads nothing, decides nothing and never prints: qemu hands it the
//! connection as its standard error too, so anything it wrote would reach the guest, and
//! the guest's client refuses whatever is not the server's answer anyway.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use super::server::connect;
use super::{MAX_REPLY, MAX_REQUEST};

/// At most this many bytes go up: the request, then the report after an allowed command.
/// The server reads no more than that; the rest is not carried.
const MAX_UP: u64 = (MAX_REQUEST + MAX_REPLY + 2) as u64;

/// Carries this process's standard input to `socket` and the answers back to its standard
/// output, until either side ends the connection.
pub fn stdio(socket: &Path) -> io::Result<()> {
    silence_stderr();
    let gate = connect(socket)?;
    let mut up = gate.try_clone()?;
    let mut stdin = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let mut stdout = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    std::thread::spawn(move || {
        let _ = io::copy(&mut (&mut stdin).take(MAX_UP), &mut up);
        let _ = up.shutdown(std::net::Shutdown::Write);
    });
    let mut down = gate;
    let mut buf = [0u8; 8192];
    loop {
        let n = match down.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stdout.write_all(&buf[..n])?;
    }
}

/// Points standard error at `/dev/null`: it is the guest's connection (see the module doc).
fn silence_stderr() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2(2) onto descriptor 2 from a descriptor this function owns; nothing
        // else holds a reference to what descriptor 2 was.
        unsafe {
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
}
