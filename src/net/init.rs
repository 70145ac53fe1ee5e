//! The relay as the first process of a docker run's container: `git chant relay --listen
//! 127.0.0.1:3128 --socket … --run-as UID:GID -- PROGRAM ARGS…`. One container start per
//! run instead of two (a relay container, then the agent's joining its namespace).
//!
//! It starts as root in the container with exactly CAP_SETUID, CAP_SETGID and CAP_SETPCAP
//! (everything else dropped by the engine, no-new-privileges set), and:
//! 1. binds the listening socket, so nothing else can take the port;
//! 2. forks the agent's process, which empties its capability bounding set, its
//!    supplementary groups and all capability sets, takes the agent's uid:gid (real,
//!    effective and saved), sets no_new_privs, checks it holds no capability at all, waits
//!    until the relay has dropped its own privileges, and only then executes the program;
//! 3. drops its own privileges the same way to a user of its own (`nobody`, or the id
//!    below when the agent is `nobody`), never the agent's, keeping CAP_KILL alone, and
//!    makes itself non-dumpable: the agent can neither signal, ptrace nor read the memory
//!    or `/proc` files of the relay, and the relay can still signal the agent;
//! 4. hands every accepted connection to the proxy ([`super::relay::hand_over`]), reaps
//!    every process orphaned in the container (it is their init), forwards SIGTERM, SIGINT
//!    and SIGHUP (`docker stop`, `docker kill -s`) to the agent's process group (the agent
//!    leads one of its own), and exits with the agent's status (128 + signal when it was
//!    killed) once the agent ends — in one thread polling the listener and a signalfd.
//!
//! Being the container's first process makes it fail closed: if it dies the kernel kills
//! every other process of the container, the agent first of all, and the run ends with
//! the relay's status. It never prints on standard output (that is the agent's); its own
//! failures are reported to the caller, which prints them on standard error.

use std::ffi::{CString, OsString};
use std::io;
use std::mem::size_of;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The status when the agent's program could not be executed (as a shell says it).
pub const CANNOT_EXEC: i32 = 127;
/// The status when the relay itself failed (as `docker run` says its own failures).
pub const RELAY_FAILED: i32 = 125;

/// Why the agent did not run, and the status to exit with.
#[derive(Debug)]
pub struct Failure {
    pub status: i32,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure {
            status: RELAY_FAILED,
            message: e.to_string(),
        }
    }
}

/// Who the agent runs as, and what.
#[derive(Debug, Clone)]
pub struct Agent {
    pub uid: u32,
    pub gid: u32,
    pub argv: Vec<OsString>,
}

/// `UID:GID`, numeric, neither of them root.
pub fn parse_id(text: &str) -> Result<(u32, u32), String> {
    let parsed = text
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)));
    match parsed {
        Some((u, g)) if u != 0 && g != 0 => Ok((u, g)),
        Some(_) => Err(format!("'{text}': the agent never runs as root")),
        None => Err(format!("'{text}' is not UID:GID (two numbers)")),
    }
}

/// The signals the relay passes on to the agent's process group: as the container's
/// first process it gets what `docker stop` and `docker kill -s` send, and the kernel
/// never acts on them for it (an init with no handler ignores them).
const FORWARDED: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// The relay's own id once the agent started: `nobody` (65534), or 65533 when the agent is
/// `nobody` — never the agent's.
pub fn relay_id(agent: u32) -> u32 {
    if agent == 65534 {
        65533
    } else {
        65534
    }
}

/// Listens on `listen`, starts `agent` and hands every connection to the proxy's handoff
/// socket `socket` until the agent ends; returns the agent's exit status. Errors are the
/// relay's own (it could not listen, fork, or drop its privileges); the agent is killed
/// then, never left running without the relay.
pub fn run(listen: SocketAddr, socket: &Path, agent: &Agent) -> Result<i32, Failure> {
    let other = |message: String| Failure {
        status: RELAY_FAILED,
        message,
    };
    if agent.uid == 0 || agent.gid == 0 {
        return Err(other("the agent never runs as root".into()));
    }
    let argv: Vec<CString> = agent
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| other("the agent's command holds a NUL byte".into()))?;
    if argv.is_empty() {
        return Err(other("no command to run after '--'".into()));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(other(
            "the relay must start as root in the container (with CAP_SETUID, CAP_SETGID and CAP_SETPCAP) to start the agent as another user".into(),
        ));
    }
    let listener =
        TcpListener::bind(listen).map_err(|e| other(format!("cannot listen on {listen}: {e}")))?;
    let mut pointers: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    pointers.push(std::ptr::null());
    // `failed`: the child writes why it could not start the program (closed by a
    // successful exec). `go`: closed by the relay once it dropped its own privileges.
    let (failed_r, failed_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    // SIGCHLD and the forwarded signals are taken through a descriptor (polled beside the
    // listener, one thread in all): blocked from before the fork, so an agent that ends at
    // once, or a `docker stop` that comes early, is not missed. The agent gets the mask
    // it would have had.
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut chld: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointers.
    unsafe {
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        for signal in FORWARDED {
            libc::sigaddset(&mut chld, signal);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &chld, &mut before);
    }
    // SAFETY: this process has a single thread here (nothing before spawned one), so the
    // child may call anything; it calls only raw system calls and `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error().into());
    }
    if pid == 0 {
        // The child: becomes the agent, or says why not and exits.
        // SAFETY: descriptors owned by this process; pointers into live buffers.
        unsafe {
            libc::close(failed_r);
            libc::close(go_w);
            libc::sigprocmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
            let (step, errno) = become_agent(agent.uid, agent.gid, go_r, pointers.as_ptr());
            let mut message = [0u8; 5];
            message[0] = step as u8;
            message[1..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(failed_w, message.as_ptr().cast(), message.len());
            libc::_exit(CANNOT_EXEC);
        }
    }
    // SAFETY: the child's ends, not used here. The child makes its own process group too
    // (whichever comes first): the group signals are forwarded to.
    unsafe {
        libc::close(failed_w);
        libc::close(go_r);
        libc::setpgid(pid, pid);
    }
    let kill_agent = || {
        // SAFETY: `pid` is this process's child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    };
    let id = relay_id(agent.uid);
    let gid = relay_id(agent.gid);
    // SAFETY: no allocation-sensitive state is involved; plain system calls.
    if let Err((step, errno)) = unsafe { drop_privileges(id, gid, true) } {
        kill_agent();
        return Err(other(format!(
            "cannot drop the relay's privileges ({}): {}",
            step.what(),
            io::Error::from_raw_os_error(errno)
        )));
    }
    // SAFETY: our end; closing it lets the child execute the program.
    unsafe { libc::close(go_w) };
    let mut message = [0u8; 5];
    let got = read_full(failed_r, &mut message);
    // SAFETY: our end, read.
    unsafe { libc::close(failed_r) };
    if got == message.len() {
        let step = Step::from(message[0]);
        let errno = i32::from_ne_bytes([message[1], message[2], message[3], message[4]]);
        let status = wait_for(pid)?;
        let program = agent.argv[0].to_string_lossy();
        return Err(Failure {
            status: if step == Step::Exec {
                CANNOT_EXEC
            } else {
                RELAY_FAILED
            },
            message: if step == Step::Exec {
                format!(
                    "cannot run {program} in the container: {} (is it in the image, on PATH?)",
                    io::Error::from_raw_os_error(errno)
                )
            } else {
                format!(
                    "cannot start {program} as {}:{} ({}): {} (status {status})",
                    agent.uid,
                    agent.gid,
                    step.what(),
                    io::Error::from_raw_os_error(errno)
                )
            },
        });
    }
    Ok(serve_until_exit(&listener, socket, &chld, pid)?)
}

/// Hands every connection `listener` accepts to `socket` and reaps every child (the relay
/// is the container's init: orphans come to it) until `pid` ends; its exit status, or
/// 128 + the signal that killed it. One thread: nothing to spawn once the agent runs (an
/// agent that used up the process limit cannot keep the relay from serving).
fn serve_until_exit(
    listener: &TcpListener,
    socket: &Path,
    chld: &libc::sigset_t,
    pid: libc::pid_t,
) -> io::Result<i32> {
    // SAFETY: `chld` is a valid set; the descriptor is owned below.
    let signals = unsafe { libc::signalfd(-1, chld, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if signals < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened, owned here only.
    let signals = unsafe { OwnedFd::from_raw_fd(signals) };
    listener.set_nonblocking(true)?;
    loop {
        if let Some(status) = reap(pid)? {
            return Ok(status);
        }
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfd entries.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[1].revents != 0 {
            // Drained; which children ended is asked of waitpid. A forwarded signal goes to
            // the agent's group (to the agent alone when its group is gone).
            let mut info = [0u8; 128];
            // SAFETY: reads at most 128 bytes (one signalfd_siginfo) into `info`.
            while unsafe { libc::read(signals.as_raw_fd(), info.as_mut_ptr().cast(), 128) } > 0 {
                let signo = i32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                if FORWARDED.contains(&signo) {
                    // SAFETY: signals `pid`'s group (or `pid`), this process's child.
                    unsafe {
                        if libc::kill(-pid, signo) != 0 {
                            libc::kill(pid, signo);
                        }
                    }
                }
            }
        }
        if fds[0].revents != 0 {
            while let Ok((client, _)) = listener.accept() {
                // Accepted sockets do not inherit O_NONBLOCK on Linux; the proxy sets its own.
                super::relay::hand_over(&client, socket);
            }
        }
    }
}

/// Reaps the children that ended; `pid`'s status once it is among them.
fn reap(pid: libc::pid_t) -> io::Result<Option<i32>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into `status`.
        let reaped = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if reaped < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if reaped == 0 {
            return Ok(None);
        }
        if reaped == pid {
            if libc::WIFEXITED(status) {
                return Ok(Some(libc::WEXITSTATUS(status)));
            }
            if libc::WIFSIGNALED(status) {
                return Ok(Some(128 + libc::WTERMSIG(status)));
            }
        }
    }
}

/// Reaps every child (the relay is the container's init: orphans come to it) until `pid`
/// ends; its exit status, or 128 + the signal that killed it.
fn wait_for(pid: libc::pid_t) -> io::Result<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into `status`.
        let reaped = unsafe { libc::waitpid(-1, &mut status, 0) };
        if reaped < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if reaped != pid {
            continue;
        }
        if libc::WIFEXITED(status) {
            return Ok(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(128 + libc::WTERMSIG(status));
        }
    }
}

/// The step of dropping privileges (or starting the program) that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    Bounding = 1,
    Groups,
    Gid,
    Uid,
    Capabilities,
    NoNewPrivs,
    Check,
    Wait,
    Exec,
}

impl Step {
    fn from(b: u8) -> Step {
        match b {
            1 => Step::Bounding,
            2 => Step::Groups,
            3 => Step::Gid,
            4 => Step::Uid,
            5 => Step::Capabilities,
            6 => Step::NoNewPrivs,
            7 => Step::Check,
            8 => Step::Wait,
            _ => Step::Exec,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Step::Bounding => "emptying the capability bounding set needs CAP_SETPCAP",
            Step::Groups => "clearing the supplementary groups needs CAP_SETGID",
            Step::Gid => "setting the group needs CAP_SETGID",
            Step::Uid => "setting the user needs CAP_SETUID",
            Step::Capabilities => "clearing the capability sets",
            Step::NoNewPrivs => "setting no_new_privs",
            Step::Check => "a capability was still held after dropping them all",
            Step::Wait => "waiting for the relay",
            Step::Exec => "executing the program",
        }
    }
}

/// In the forked child: drops everything, waits for the relay, executes the program.
/// Returns only on failure. Only raw system calls: the child of a fork.
///
/// # Safety
/// `argv` is a NULL-terminated array of pointers to NUL-terminated strings; `go` is open.
unsafe fn become_agent(
    uid: u32,
    gid: u32,
    go: libc::c_int,
    argv: *const *const libc::c_char,
) -> (Step, i32) {
    // Its own process group, for the relay to forward signals to all of it.
    libc::setpgid(0, 0);
    if let Err(failed) = drop_privileges(uid, gid, false) {
        return failed;
    }
    // Rust ignores SIGPIPE in its programs, and an ignored signal stays ignored across
    // exec: the agent gets the default, as it would as the container's first process.
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    // Only once the relay dropped its own privileges (it closes its end: EOF).
    let mut byte = 0u8;
    loop {
        let n = libc::read(go, (&mut byte as *mut u8).cast(), 1);
        if n >= 0 {
            break;
        }
        let errno = errno();
        if errno != libc::EINTR {
            return (Step::Wait, errno);
        }
    }
    libc::close(go);
    // The relay ends with its children: if it dies before the agent, the agent goes too
    // (as the container's init it takes every process with it anyway).
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    libc::execvp(*argv, argv);
    (Step::Exec, errno())
}

/// Empties the bounding set and the supplementary groups, takes `uid`:`gid` (real,
/// effective, saved), clears every capability set, sets no_new_privs (and, for the relay,
/// non-dumpable), and checks that no capability is left — but CAP_KILL for the relay, to
/// forward signals to the agent, a user not its own. Only raw system calls.
///
/// # Safety
/// Plain system calls on this process's credentials.
unsafe fn drop_privileges(uid: u32, gid: u32, relay: bool) -> Result<(), (Step, i32)> {
    for cap in 0..64 {
        if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
            match errno() {
                // Past the last capability this kernel knows.
                libc::EINVAL => break,
                e => return Err((Step::Bounding, e)),
            }
        }
    }
    if libc::setgroups(0, std::ptr::null()) != 0 {
        return Err((Step::Groups, errno()));
    }
    if libc::setresgid(gid, gid, gid) != 0 {
        return Err((Step::Gid, errno()));
    }
    // The relay keeps its permitted set across leaving root, to hold on to CAP_KILL.
    if relay && libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
        return Err((Step::Uid, errno()));
    }
    if libc::setresuid(uid, uid, uid) != 0 {
        return Err((Step::Uid, errno()));
    }
    // Leaving root clears the permitted and effective sets (the relay's permitted one
    // kept); every set is now made exactly what is left: nothing, or CAP_KILL.
    let mut header = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let kept = if relay {
        [
            CapData {
                effective: KILL_BIT,
                permitted: KILL_BIT,
                inheritable: 0,
            },
            CapData::default(),
        ]
    } else {
        [CapData::default(); 2]
    };
    if libc::syscall(
        libc::SYS_capset,
        &mut header as *mut CapHeader,
        kept.as_ptr(),
    ) != 0
    {
        return Err((Step::Capabilities, errno()));
    }
    if relay && libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0 {
        return Err((Step::Capabilities, errno()));
    }
    libc::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL,
        0,
        0,
        0,
    );
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
        return Err((Step::NoNewPrivs, errno()));
    }
    if relay && libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
        return Err((Step::NoNewPrivs, errno()));
    }
    let mut held = [CapData::default(); 2];
    let mut header = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    if libc::syscall(
        libc::SYS_capget,
        &mut header as *mut CapHeader,
        held.as_mut_ptr(),
    ) != 0
    {
        return Err((Step::Check, errno()));
    }
    let any = held.iter().zip(kept.iter()).any(|(d, k)| {
        d.effective != k.effective || d.permitted != k.permitted || d.inheritable != 0
    });
    let mut real = 0;
    let mut effective = 0;
    let mut saved = 0;
    libc::getresuid(&mut real, &mut effective, &mut saved);
    if any
        || [real, effective, saved] != [uid; 3]
        || libc::prctl(libc::PR_CAPBSET_READ, CAP_SETUID, 0, 0, 0) != 0
    {
        return Err((Step::Check, libc::EPERM));
    }
    Ok(())
}

const CAP_V3: u32 = 0x2008_0522;
const CAP_SETUID: libc::c_int = 7;
/// CAP_KILL (5) in the first word of the capability sets.
const KILL_BIT: u32 = 1 << 5;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn pipe() -> io::Result<(libc::c_int, libc::c_int)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors. Close-on-exec: the program gets
    // neither end.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// Reads until `buf` is full or end of file; the bytes read.
fn read_full(fd: libc::c_int, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: writes at most the rest of `buf`.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ if errno() == libc::EINTR => continue,
            _ => break,
        }
    }
    got
}

const _: () = assert!(size_of::<CapData>() == 12);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_two_numbers_and_never_root() {
        assert_eq!(parse_id("1000:1000"), Ok((1000, 1000)));
        for bad in ["0:1000", "1000:0", "1000", "a:b", "1000:1000:1", ""] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
        assert_eq!(relay_id(1000), 65534);
        assert_eq!(relay_id(65534), 65533);
    }
}
