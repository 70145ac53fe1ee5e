//! Running a program in its own session: streamed output, a timeout and a stop flag that
//! always win, and no process left behind when it ends (see [`super::reaper`]).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::{reaper, Job, Outcome, OutputSink, SandboxError, Stream};

/// How long a program gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// How long the SIGKILL sweep keeps looking for (and killing) processes of the run.
const KILL_WITHIN: Duration = Duration::from_secs(5);

/// How long output is still read once every process of the run is gone.
const DRAIN: Duration = Duration::from_millis(500);

/// How often the stop flag and the timeout are looked at while nothing happens.
const POLL: Duration = Duration::from_millis(25);

/// Finds `program` the way `execvp` would with `path` (a `PATH` value).
pub fn find_program(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return is_executable(p).then(|| p.to_path_buf());
    }
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `job` locally (working directory = the workspace, environment = exactly `job.env`).
///
/// The program starts in a session of its own (no controlling terminal), with this process
/// as child subreaper (see [`reaper`]). When it exits, runs past `job.timeout` or `stop` is
/// set, every process it left behind is killed — whatever group or session it moved to —
/// before this returns, and output is read for at most [`DRAIN`] more: a process that passed
/// its stdout to something outside the tree cannot hold the run open.
pub fn run(
    job: &Job,
    sink: &mut dyn OutputSink,
    stop: &Arc<AtomicBool>,
) -> Result<Outcome, SandboxError> {
    let Some(program) = job.argv.first() else {
        return Err(SandboxError::ProgramNotFound {
            program: String::new(),
        });
    };
    // Orphans of the program (double forks, daemons) become our children, not init's.
    reaper::become_subreaper()?;
    let mut command = Command::new(program);
    command
        .args(&job.argv[1..])
        .env_clear()
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&job.workspace)
        .stdin(if job.hold_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and touches no memory; it runs in the forked
    // child before exec. A new session is also a new process group, with no terminal.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => SandboxError::ProgramNotFound {
            program: program.clone(),
        },
        _ => SandboxError::Spawn {
            program: program.clone(),
            source,
        },
    })?;
    let pid = child.id() as libc::pid_t;
    // Kept (never written) until the program ends; dropped with this frame.
    let _stdin = child.stdin.take();
    let (tx, rx) = mpsc::channel::<Event>();
    if let Some(out) = child.stdout.take() {
        pump(out, Stream::Stdout, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        pump(err, Stream::Stderr, tx.clone());
    }
    // The program's end arrives on the same channel as its output, the moment it happens.
    // The thread owns the `Child` and reaps it; the reaper sweep below leaves it alone.
    std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(Event::Exited(status));
    });

    // The stop flag is set from a signal handler, so it is looked at between events.
    let deadline = Instant::now() + job.timeout;
    let (outcome, ended) = loop {
        match rx.recv_timeout(POLL) {
            Ok(Event::Output(stream, bytes)) => sink.output(stream, &bytes),
            // A wait that fails (nothing of ours reaps it) counts as an unknown exit.
            Ok(Event::Exited(status)) => {
                break (Outcome::Exited(status.map_or(-1, exit_code)), true);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Every sender gone without an exit: only a panicked thread can do that.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
        }
        if stop.load(Ordering::SeqCst) {
            break (Outcome::Interrupted, terminate(pid, &rx, sink));
        }
        if Instant::now() >= deadline {
            break (Outcome::TimedOut, terminate(pid, &rx, sink));
        }
    };
    // Whatever the program left running (daemons, backgrounded jobs, setsid children) goes
    // too; that also closes the pipes they held open.
    let survivors = reaper::kill_all(pid, KILL_WITHIN);
    if !ended {
        // Killed by the sweep: its waiter thread reaps it now.
        wait_exit(&rx, sink, Instant::now() + KILL_WITHIN);
    }
    // What was written before the end is still passed on, for a bounded time only.
    let until = Instant::now() + DRAIN;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Event::Output(stream, bytes)) => sink.output(stream, &bytes),
            Ok(Event::Exited(_)) => {}
            Err(_) => break,
        }
    }
    if survivors > 0 {
        sink.output(
            Stream::Stderr,
            format!("chant: {survivors} process(es) of the run did not die within {KILL_WITHIN:?} of SIGKILL\n")
                .as_bytes(),
        );
    }
    Ok(outcome)
}

/// What the run's threads report: output as it comes, and the program's end.
enum Event {
    Output(Stream, Vec<u8>),
    Exited(std::io::Result<std::process::ExitStatus>),
}

fn pump(mut source: impl Read + Send + 'static, stream: Stream, tx: mpsc::Sender<Event>) {
    // Detached: a reader blocked on a pipe someone outside the tree still holds must not
    // hold up the run; it ends with the pipe (or the process).
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Event::Output(stream, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// SIGTERM to the program's group and every process of the run, then waits (passing output
/// on) until the program is gone or the grace period is over; the caller's SIGKILL sweep
/// follows either way. True when the program's end was seen.
fn terminate(pgid: libc::pid_t, rx: &mpsc::Receiver<Event>, sink: &mut dyn OutputSink) -> bool {
    kill_group(pgid, libc::SIGTERM);
    reaper::signal_all(libc::SIGTERM);
    wait_exit(rx, sink, Instant::now() + GRACE)
}

/// Passes output on until the program's end is reported (true) or `until` passes (false).
fn wait_exit(rx: &mpsc::Receiver<Event>, sink: &mut dyn OutputSink, until: Instant) -> bool {
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Event::Output(stream, bytes)) => sink.output(stream, &bytes),
            Ok(Event::Exited(_)) => return true,
            Err(_) => return false,
        }
    }
    false
}

fn kill_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions; a negative pid names the
        // process group (and session) we created for this program, never our own.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}
