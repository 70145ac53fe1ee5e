//! The host's end of the gate channel: a Unix socket served for the whole run, one thread
//! per connection, every request handed to the [`Judge`]. It decides nothing itself and
//! never runs a command.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{parse_request, Answer, Asked, Judge, Report, MAX_REPLY, MAX_REQUEST};

/// How long a client may take to send its request once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; past it a connection is closed unanswered (the client
/// refuses). Nested `$CHANT_EXEC` calls hold one each while their command runs.
const MAX_CONNECTIONS: usize = 64;

/// The served socket; dropping it stops serving and removes the socket file.
pub struct GateServer {
    socket: PathBuf,
    /// The listener too, to wake the accept loop even when the socket file is gone.
    wake: UnixListener,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl GateServer {
    /// Serves `socket` (created now, mode 0600: the caller hands it to the sandbox's user)
    /// until dropped.
    pub fn start(socket: &Path, judge: Arc<dyn Judge>) -> io::Result<GateServer> {
        let listener = bind(socket)?;
        let wake = listener.try_clone()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let live = Arc::new(AtomicUsize::new(0));
        let accept = std::thread::Builder::new()
            .name("chant-gate".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    if live.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                        live.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let judge = Arc::clone(&judge);
                    let live = Arc::clone(&live);
                    let spawned = std::thread::Builder::new()
                        .name("chant-gate-conn".into())
                        .spawn(move || {
                            serve(client, judge.as_ref());
                            live.fetch_sub(1, Ordering::SeqCst);
                        });
                    if spawned.is_err() {
                        // The connection was dropped with the closure: the client refuses.
                        continue;
                    }
                }
            })?;
        Ok(GateServer {
            socket: socket.to_path_buf(),
            wake,
            stop,
            accept: Some(accept),
        })
    }

    /// The socket's path on the host.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for GateServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop (accept fails at once), which then sees the flag.
        use std::os::fd::AsRawFd;
        // SAFETY: shutdown(2) on a descriptor this value owns until it is dropped below.
        unsafe {
            libc::shutdown(self.wake.as_raw_fd(), libc::SHUT_RDWR);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Socket paths are limited to 107 bytes; a longer one is bound through the directory's
/// descriptor (`/proc/self/fd/N/name`).
fn bind(socket: &Path) -> io::Result<UnixListener> {
    if socket.as_os_str().len() < 100 {
        return UnixListener::bind(socket);
    }
    let (dir, name) = split(socket)?;
    let dir = std::fs::File::open(dir)?;
    use std::os::fd::AsRawFd;
    UnixListener::bind(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// Connects to `socket`, long paths as [`bind`] does.
pub(super) fn connect(socket: &Path) -> io::Result<UnixStream> {
    if socket.as_os_str().len() < 100 {
        return UnixStream::connect(socket);
    }
    let (dir, name) = split(socket)?;
    let dir = std::fs::File::open(dir)?;
    use std::os::fd::AsRawFd;
    UnixStream::connect(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

fn split(socket: &Path) -> io::Result<(&Path, String)> {
    match (socket.parent(), socket.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name.to_string_lossy().into_owned())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a socket path", socket.display()),
        )),
    }
}

fn serve(mut client: UnixStream, judge: &dyn Judge) {
    let _ = client.set_read_timeout(Some(REQUEST_TIMEOUT));
    let asked = match read_line(&mut client, MAX_REQUEST) {
        Ok(line) => parse_request(&line),
        Err(why) => Asked::Unreadable {
            why,
            shown: String::new(),
        },
    };
    let mut answer = judge.decide(&asked);
    if matches!(asked, Asked::Unreadable { .. }) && answer.allow {
        // Whatever the judge says, what cannot be read never runs.
        answer = Answer {
            allow: false,
            reason: Some("the request could not be read".into()),
        };
    }
    let started = Instant::now();
    let sent = write_line(&mut client, &answer);
    if !answer.allow || !matches!(asked, Asked::Run { .. }) {
        return;
    }
    // The command runs in the sandbox as long as it needs; the sandbox's end closes this.
    let _ = client.set_read_timeout(None);
    let exit_code = match sent {
        Ok(()) => read_line(&mut client, MAX_REPLY)
            .ok()
            .and_then(|line| serde_json::from_slice::<Report>(&line).ok())
            .map(|r| r.exit_code),
        Err(_) => None,
    };
    judge.ran(&asked, exit_code, started.elapsed().as_millis() as u64);
}

/// One line (without its `\n`) of at most `limit` bytes; a longer one, a timeout or an
/// early end is an error saying so.
pub(super) fn read_line(stream: &mut UnixStream, limit: usize) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) if line.is_empty() => return Err("the connection ended before a line".into()),
            Ok(0) => return Err("the connection ended in the middle of a line".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the line failed ({e})")),
        };
        if let Some(end) = buf[..n].iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            return if line.len() > limit {
                Err(format!("the line is longer than {limit} bytes"))
            } else {
                Ok(line)
            };
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() > limit {
            return Err(format!("the line is longer than {limit} bytes"));
        }
    }
}

/// `message` as one JSON line.
pub(super) fn write_line(
    stream: &mut UnixStream,
    message: &impl serde::Serialize,
) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::client::{self, Ask, Done};
    use super::*;

    /// Allows `ls` only; remembers what it was asked and told.
    #[derive(Default)]
    struct Seen {
        decided: Mutex<Vec<Asked>>,
        ran: Mutex<Vec<(Option<i32>, u64)>>,
    }

    impl Judge for Seen {
        fn decide(&self, asked: &Asked) -> Answer {
            self.decided.lock().expect("lock").push(asked.clone());
            let allow = match asked {
                Asked::Run { argv, .. } => argv[0] == "true" || argv[0] == "false",
                Asked::ClaudeHook { line, .. } => line == "ls",
                Asked::ClaudeHookResult { .. } => true,
                // A careless judge: the server must refuse these anyway.
                Asked::Unreadable { .. } => true,
            };
            Answer {
                allow,
                reason: (!allow).then(|| "no".to_string()),
            }
        }

        fn ran(&self, _asked: &Asked, exit_code: Option<i32>, duration_ms: u64) {
            self.ran
                .lock()
                .expect("lock")
                .push((exit_code, duration_ms));
        }
    }

    #[test]
    fn dropping_the_server_stops_it_even_when_its_socket_file_is_gone() {
        let (_dir, server, _judge) = serve();
        std::fs::remove_file(server.socket()).expect("rm");
        let (done, dropped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(server);
            let _ = done.send(());
        });
        assert!(
            dropped.recv_timeout(Duration::from_secs(5)).is_ok(),
            "drop hung"
        );
    }

    /// Waits (5 s at most) until the judge heard of `n` ended commands.
    fn ran_at_least(judge: &Seen, n: usize) {
        let until = Instant::now() + Duration::from_secs(5);
        while judge.ran.lock().expect("lock").len() < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn serve() -> (tempfile::TempDir, GateServer, Arc<Seen>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let judge = Arc::new(Seen::default());
        let server =
            GateServer::start(&dir.path().join("gate.sock"), judge.clone()).expect("serve");
        (dir, server, judge)
    }

    /// Sends raw `bytes`; the answer line, or None when the server closed without one.
    fn raw(server: &GateServer, bytes: &[u8]) -> Option<Answer> {
        let mut s = connect(server.socket()).expect("connect");
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let line = read_line(&mut s, MAX_REPLY).ok()?;
        serde_json::from_slice(&line).ok()
    }

    fn os(words: &[&str]) -> Vec<std::ffi::OsString> {
        words.iter().map(Into::into).collect()
    }

    #[test]
    fn an_allowed_command_runs_on_the_client_side_and_its_exit_code_reaches_the_judge() {
        let (_dir, server, judge) = serve();
        assert_eq!(
            client::ask(server.socket(), Ask::Run(os(&["false"]))),
            Done::Ran(1)
        );
        assert_eq!(
            client::ask(server.socket(), Ask::Run(os(&["true"]))),
            Done::Ran(0)
        );
        // The server reads the report after the client is done.
        ran_at_least(&judge, 2);
        let ran = judge.ran.lock().expect("lock").clone();
        assert_eq!(
            ran.iter().map(|r| r.0).collect::<Vec<_>>(),
            [Some(1), Some(0)]
        );
    }

    #[test]
    fn a_refused_command_never_runs_and_the_reason_reaches_the_client() {
        let (dir, server, judge) = serve();
        let probe = dir.path().join("probe");
        let line = format!("touch {}", probe.display());
        assert_eq!(
            client::ask(server.socket(), Ask::Run(os(&[&line]))),
            Done::Refused("no".into())
        );
        assert!(!probe.exists(), "the refused command ran");
        assert!(judge.ran.lock().expect("lock").is_empty());
    }

    #[test]
    fn the_claude_hook_is_answered_from_the_event_on_stdin() {
        let (_dir, server, _judge) = serve();
        let event = |c: &str| {
            serde_json::to_vec(
                &serde_json::json!({"tool_name": "Bash", "tool_input": {"command": c}}),
            )
            .expect("json")
        };
        let ask = |bytes: Vec<u8>| client::ask(server.socket(), Ask::ClaudeHook(bytes));
        assert_eq!(ask(event("ls")), Done::HookAllowed);
        assert_eq!(ask(event("rm -rf /")), Done::Refused("no".into()));
        assert!(matches!(ask(b"not json".to_vec()), Done::Refused(_)));
        assert!(matches!(ask(Vec::new()), Done::Refused(_)));
    }

    #[test]
    fn hostile_requests_are_refused_even_when_the_judge_would_allow_them() {
        let (_dir, server, judge) = serve();
        let refused = |bytes: &[u8]| {
            let answer = raw(&server, bytes);
            assert!(
                answer.as_ref().is_none_or(|a| !a.allow),
                "{:?} was allowed: {answer:?}",
                String::from_utf8_lossy(bytes)
            );
        };
        refused(b"{\"argv\":[\"true\"],\"cwd\":\"/\",\"allow\":true}\n");
        refused(b"{\"argv\":[\"true\"],\"cwd\":\"/\",\"actor\":\"mallory\"}\n");
        refused(b"{\"argv\":[\"true\\u0000\"],\"cwd\":\"/\"}\n");
        refused(b"{\"argv\":[\"tr\xffue\"],\"cwd\":\"/\"}\n");
        refused(b"garbage\n");
        refused(b"{\"argv\":[\"true\"],\"cwd\":\"/\"}"); // no newline: never complete
        refused(b"");
        let mut huge = b"{\"argv\":[\"".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_REQUEST + 10));
        huge.extend_from_slice(b"\"],\"cwd\":\"/\"}\n");
        refused(&huge);
        assert!(judge.ran.lock().expect("lock").is_empty());
        // Each one reached the judge, to be recorded.
        let decided = judge.decided.lock().expect("lock");
        assert_eq!(decided.len(), 8, "{decided:?}");
        assert!(decided
            .iter()
            .all(|a| matches!(a, Asked::Unreadable { .. })));
    }

    #[test]
    fn a_report_with_forged_fields_counts_as_no_report() {
        let (_dir, server, judge) = serve();
        let mut s = connect(server.socket()).expect("connect");
        s.write_all(b"{\"argv\":[\"true\"],\"cwd\":\"/w\"}\n")
            .expect("send");
        let answer: Answer =
            serde_json::from_slice(&read_line(&mut s, MAX_REPLY).expect("answer")).expect("json");
        assert!(answer.allow);
        s.write_all(b"{\"exit_code\":0,\"decision\":\"refused\"}\n")
            .expect("report");
        drop(s);
        ran_at_least(&judge, 1);
        assert_eq!(judge.ran.lock().expect("lock")[0].0, None);
    }

    #[test]
    fn no_socket_or_an_unreadable_answer_is_a_refusal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let gone = dir.path().join("gone.sock");
        assert!(matches!(
            client::ask(&gone, Ask::Run(os(&["true"]))),
            Done::Refused(r) if r.contains("unreachable")
        ));
        // A socket that answers garbage (or closes without a word).
        for answer in [
            &b"{\"allow\":\"yes\"}\n"[..],
            b"allow\n",
            b"{\"allow\":true,\"x\":1}\n",
            b"",
        ] {
            let path = dir.path().join("liar.sock");
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).expect("bind");
            let answer = answer.to_vec();
            let t = std::thread::spawn(move || {
                if let Ok((mut s, _)) = listener.accept() {
                    let _ = read_line(&mut s, MAX_REQUEST);
                    let _ = s.write_all(&answer);
                }
            });
            let probe = dir.path().join("probe");
            let line = format!("touch {}", probe.display());
            assert!(matches!(
                client::ask(&path, Ask::Run(os(&[&line]))),
                Done::Refused(_)
            ));
            assert!(!probe.exists(), "ran on a garbage answer");
            let _ = t.join();
        }
    }

    #[test]
    fn a_socket_path_longer_than_the_kernel_takes_is_served_through_its_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).expect("mkdir");
        let judge = Arc::new(Seen::default());
        let server = GateServer::start(&deep.join("gate.sock"), judge).expect("serve");
        assert!(server.socket().as_os_str().len() > 107);
        assert_eq!(
            client::ask(server.socket(), Ask::Run(os(&["true"]))),
            Done::Ran(0)
        );
    }
}
