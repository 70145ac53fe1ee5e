//! Handing a connection over: the docker relay accepts the agent's TCP connection inside
//! the sandbox's network namespace and passes its descriptor to the proxy over a Unix
//! socket (`SCM_RIGHTS`). The proxy then reads and writes the agent's socket itself: no
//! byte passes through the relay, and the data path is as short as for a program on the
//! host.
//!
//! It owns the two ends of that exchange and what the proxy accepts through it: exactly
//! one descriptor, which must be a TCP stream socket (anything else is closed and
//! refused). It never reads or writes the connection it hands over, and never prints.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// The one byte that carries the descriptor (a message must hold at least one).
const MARK: u8 = b'H';

/// Room for the control message of exactly one descriptor.
fn control_len() -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize }
}

/// Sends `conn`'s descriptor over `via` (the proxy's handoff socket); the caller may close
/// its own copy after.
pub fn send(via: &UnixStream, conn: BorrowedFd<'_>) -> io::Result<()> {
    let mut byte = [MARK];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = vec![0u8; control_len()];
    // SAFETY: an all-zero msghdr is valid; its pointers are set to live buffers below.
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    // SAFETY: the control buffer has room for one header and one descriptor (CMSG_SPACE).
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        if header.is_null() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), conn.as_raw_fd());
    }
    loop {
        // SAFETY: `msg` points at buffers that outlive the call.
        let n = unsafe { libc::sendmsg(via.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        match n {
            1 => return Ok(()),
            0 => return Err(io::ErrorKind::WriteZero.into()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Receives one handed-over connection from `via`: a TCP stream socket, or an error (and
/// whatever descriptor came is closed).
pub fn receive(via: &UnixStream) -> io::Result<TcpStream> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = vec![0u8; control_len()];
    // SAFETY: as in `send`.
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    let n = loop {
        // SAFETY: `msg` points at buffers that outlive the call; descriptors received are
        // close-on-exec. More than one descriptor truncates the control data, and the
        // kernel closes the ones that did not fit.
        let n = unsafe { libc::recvmsg(via.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut received = None;
    // SAFETY: walking the control messages recvmsg filled in, within msg_controllen.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header);
                let len = (*header).cmsg_len as usize - (data as usize - header as usize);
                for i in 0..len / size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    // Owned now, so closed unless it is the one kept.
                    let owned = OwnedFd::from_raw_fd(fd);
                    if received.is_none() {
                        received = Some(owned);
                    }
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    let refuse = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    if n != 1 || byte[0] != MARK || msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(refuse("not one handed-over connection"));
    }
    let fd = received.ok_or_else(|| refuse("no descriptor came with the handoff"))?;
    if !is_tcp_stream(&fd) {
        return Err(refuse("the handed-over descriptor is not a TCP connection"));
    }
    Ok(TcpStream::from(fd))
}

fn is_tcp_stream(fd: &OwnedFd) -> bool {
    let option = |name: libc::c_int| -> Option<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(value)
    };
    option(libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && matches!(
            option(libc::SO_DOMAIN),
            Some(libc::AF_INET | libc::AF_INET6)
        )
        && option(libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::fd::AsFd;

    #[test]
    fn a_tcp_connection_handed_over_is_the_same_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("c");
        let (accepted, _) = listener.accept().expect("accept");
        let (a, b) = UnixStream::pair().expect("pair");
        send(&a, accepted.as_fd()).expect("send");
        drop(accepted);
        let mut got = receive(&b).expect("receive");
        client.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        got.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"ping");
    }

    #[test]
    fn what_is_not_a_tcp_connection_is_refused() {
        // A file, a Unix socket, a pipe, and plain bytes with no descriptor at all.
        let file = tempfile::tempfile().expect("file");
        let (unix, _other) = UnixStream::pair().expect("pair");
        let (pipe_r, _pipe_w) = {
            let mut fds = [0; 2];
            // SAFETY: pipe writes two descriptors into `fds`.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: both were just opened and are owned here.
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
        };
        for fd in [file.as_fd(), unix.as_fd(), pipe_r.as_fd()] {
            let (a, b) = UnixStream::pair().expect("pair");
            send(&a, fd).expect("send");
            assert!(receive(&b).is_err());
        }
        let (mut a, b) = UnixStream::pair().expect("pair");
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
        assert!(receive(&b).is_err());
    }
}
