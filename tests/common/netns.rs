//! A network namespace holding only `lo`, for tests that run a real agent CLI: the fake
//! model API listens on 127.0.0.1 inside it and the agent (directly, or under `git chant
//! work`) runs inside it too, so no lookup or connection can leave the machine even when a
//! variable pointing the CLI at the fake is missed.
//!
//! How: a long-lived `unshare --net sleep` child owns the namespace; a short-lived thread
//! enters it with setns(2), brings `lo` up and binds the listener (a socket belongs to the
//! namespace it was created in, so any thread may serve it); programs run inside through
//! `nsenter --net=/proc/PID/ns/net`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A network namespace with only a loopback interface. Dropped: its owner is killed.
pub struct Netns {
    /// None: the namespace is someone else's (see [`Netns::of_process`]).
    owner: Option<Child>,
    path: PathBuf,
}

impl Netns {
    /// Creates the namespace; None (with the reason) where this machine cannot (not root,
    /// no `unshare`/`nsenter`).
    pub fn new() -> Result<Netns, String> {
        for tool in ["unshare", "nsenter"] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                return Err(format!("`{tool}` (util-linux) is not installed"));
            }
        }
        let mut owner = Command::new("unshare")
            .args(["--net", "--", "sleep", "100000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start unshare: {e}"))?;
        let path = PathBuf::from(format!("/proc/{}/ns/net", owner.id()));
        let ours = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        // unshare(1) enters the namespace, then execs sleep: wait until the link differs.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = owner.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = owner.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("unshare --net failed ({status}): {}", err.trim()));
            }
            match std::fs::read_link(&path) {
                Ok(link) if link != ours => break,
                _ if std::time::Instant::now() > until => {
                    let _ = owner.kill();
                    let _ = owner.wait();
                    return Err("unshare --net did not enter a new namespace in 10 s".into());
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        let ns = Netns {
            owner: Some(owner),
            path,
        };
        ns.bind()?; // brings lo up, and proves setns works here
        Ok(ns)
    }

    /// The namespace process `pid` is in (e.g. a container's), which whoever made it keeps
    /// and removes.
    pub fn of_process(pid: u32) -> Netns {
        Netns {
            owner: None,
            path: PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }

    /// `/proc/PID/ns/net` of the namespace.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// A TCP listener on 127.0.0.1 (a free port) inside the namespace.
    pub fn bind(&self) -> Result<TcpListener, String> {
        self.bind_at(0)
    }

    /// A TCP listener on 127.0.0.1:`port` inside the namespace (0: a free port).
    pub fn bind_at(&self, port: u16) -> Result<TcpListener, String> {
        let path = self.path.clone();
        std::thread::spawn(move || -> Result<TcpListener, String> {
            use std::os::fd::AsRawFd;
            let ns = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            // SAFETY: setns(2) on a namespace fd we own; it changes only this thread, which
            // ends right after binding.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "setns({}): {} (tests with a real agent need root)",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
            loopback_up()?;
            TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind in netns: {e}"))
        })
        .join()
        .map_err(|_| "the netns thread panicked".to_string())?
    }

    /// `program` run inside the namespace (`nsenter --net=… -- program`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path.display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// The interfaces inside, as `/proc/net/dev` there lists them (for the test that proves
    /// only `lo` exists).
    pub fn interfaces(&self) -> Vec<String> {
        let out = self
            .command("cat")
            .arg("/proc/net/dev")
            .output()
            .expect("cat /proc/net/dev in the namespace");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|n| n.trim().to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(owner) = &mut self.owner {
            let _ = owner.kill();
            let _ = owner.wait();
        }
    }
}

/// Sets `lo` up in the calling thread's network namespace (SIOCSIFFLAGS, as `ip link set lo
/// up` does).
fn loopback_up() -> Result<(), String> {
    // SAFETY: a plain datagram socket used only for the two ioctls below, closed after.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: ifreq is plain data; the name is NUL-terminated within IFNAMSIZ.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo\0".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: ioctls on our socket with a valid ifreq.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) != 0 {
            Err("SIOCGIFFLAGS")
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) != 0 {
                Err("SIOCSIFFLAGS")
            } else {
                Ok(())
            }
        }
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    result.map_err(|op| format!("{op} on lo: {err}"))
}
