//! `git chant work --all-ready [--parallel N]`: every ready spec as its own run — its own
//! `git chant work <id>` process, lock, clone, ledger entries (and, at the kubernetes
//! level, its own Job) — at most N at once. Each run's lines are prefixed with its spec's
//! short id. Ctrl-C reaches the runs (same process group); SIGTERM is passed on to them.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::project::Project;
use crate::spec::SpecStore;

/// Runs the ready specs; `args` are passed on to each `work <id>`.
pub fn run(
    project: &Project,
    parallel: usize,
    args: &[String],
    stop: &Arc<AtomicBool>,
) -> Result<u8> {
    let store = SpecStore::new(project.specs_dir());
    // One malformed spec is named and skipped; it does not stop the others.
    let mut specs = Vec::new();
    for (_, spec) in store.each()? {
        match spec {
            Ok(s) => specs.push(s),
            Err(e) => errln!("chant: skipping a spec that cannot be read: {e}"),
        }
    }
    let ledger = crate::spec::status::of_repository(&project.repo);
    let ready: Vec<String> = crate::spec::status::ready(&specs, &ledger)
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    if ready.is_empty() {
        errln!("chant: no spec is ready (pending, with every depends_on completed)");
        return Ok(0);
    }
    let parallel = parallel.max(1);
    errln!(
        "chant: {} ready spec(s), at most {parallel} at once: {}",
        ready.len(),
        ready.join(", ")
    );
    let exe = std::env::current_exe().map_err(|e| Error::io("(current executable)", e))?;
    let mut queue = ready.into_iter();
    let mut running: Vec<(String, Child, Vec<std::thread::JoinHandle<()>>)> = Vec::new();
    let mut results: Vec<(String, i32)> = Vec::new();
    let mut passed_on = false;
    loop {
        while running.len() < parallel && !stop.load(Ordering::SeqCst) {
            let Some(id) = queue.next() else { break };
            let mut child = Command::new(&exe)
                .arg("work")
                .arg(&id)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| Error::io(exe.clone(), e))?;
            let short = id.rsplit('-').next().unwrap_or(&id).to_string();
            let mut pumps = Vec::new();
            if let Some(out) = child.stdout.take() {
                pumps.push(pump(out, format!("[{short}] "), false));
            }
            if let Some(err) = child.stderr.take() {
                pumps.push(pump(err, format!("[{short}] "), true));
            }
            running.push((id, child, pumps));
        }
        if running.is_empty() {
            break;
        }
        if stop.load(Ordering::SeqCst) && !passed_on {
            passed_on = true;
            for (_, child, _) in &running {
                if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
            }
        }
        let mut i = 0;
        while i < running.len() {
            match running[i].1.try_wait() {
                Ok(Some(status)) => {
                    let (id, _, pumps) = running.swap_remove(i);
                    for p in pumps {
                        let _ = p.join();
                    }
                    results.push((id, status.code().unwrap_or(1)));
                }
                Ok(None) => i += 1,
                Err(e) => return Err(Error::io("(waiting for a run)", e)),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    results.sort();
    for (id, code) in &results {
        let what = match code {
            0 => "completed",
            2 => "refused (input error)",
            _ => "failed or cancelled",
        };
        errln!("chant: {id}: {what} (exit {code})");
    }
    let skipped = queue.count();
    if skipped > 0 {
        errln!("chant: {skipped} spec(s) not started (interrupted)");
    }
    Ok(results
        .iter()
        .map(|(_, c)| u8::try_from(*c).unwrap_or(1))
        .max()
        .unwrap_or(0)
        .max(u8::from(skipped > 0)))
}

/// Copies a run's output line by line with `prefix`.
fn pump(
    from: impl std::io::Read + Send + 'static,
    prefix: String,
    to_stderr: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        while reader
            .read_until(b'\n', &mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            let mut out: Box<dyn Write> = if to_stderr {
                Box::new(std::io::stderr().lock())
            } else {
                Box::new(std::io::stdout().lock())
            };
            let _ = out.write_all(prefix.as_bytes());
            let _ = out.write_all(&line);
            if !line.ends_with(b"\n") {
                let _ = out.write_all(b"\n");
            }
            line.clear();
        }
    })
}
