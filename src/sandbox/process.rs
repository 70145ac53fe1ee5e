//! Running a program in its own process group: streamed output, a timeout, a stop flag,
//! and no process left behind when it ends.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::{Job, Outcome, OutputSink, SandboxError, Stream};

/// How long a program gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

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
    let mut child = Command::new(program)
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
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SandboxError::ProgramNotFound {
                program: program.clone(),
            },
            _ => SandboxError::Spawn {
                program: program.clone(),
                source,
            },
        })?;
    let pgid = child.id() as libc::pid_t;
    // Kept (never written) until the program ends; dropped with this frame.
    let _stdin = child.stdin.take();
    let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(pump(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(pump(err, Stream::Stderr, tx.clone()));
    }
    drop(tx);

    let deadline = Instant::now() + job.timeout;
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(25)) {
            Ok((stream, bytes)) => sink.output(stream, &bytes),
            Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let Some(status) = child.try_wait()? {
            break Outcome::Exited(exit_code(status));
        }
        if stop.load(Ordering::SeqCst) {
            terminate(&mut child, pgid);
            break Outcome::Interrupted;
        }
        if Instant::now() >= deadline {
            terminate(&mut child, pgid);
            break Outcome::TimedOut;
        }
    };
    // Whatever the program left running in its group (daemons, backgrounded jobs) goes too;
    // that also closes the pipes they might hold open.
    kill_group(pgid, libc::SIGKILL);
    for (stream, bytes) in rx.iter() {
        sink.output(stream, &bytes);
    }
    for reader in readers {
        let _ = reader.join();
    }
    Ok(outcome)
}

fn pump(
    mut source: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<(Stream, Vec<u8>)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((stream, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// SIGTERM to the group, then SIGKILL after a grace period; reaps the child.
fn terminate(child: &mut Child, pgid: libc::pid_t) {
    kill_group(pgid, libc::SIGTERM);
    let until = Instant::now() + GRACE;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_group(pgid, libc::SIGKILL);
    let _ = child.wait();
}

fn kill_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions; a negative pid names the
        // process group we created for this program (never our own group).
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}
