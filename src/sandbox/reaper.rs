//! Finding and killing every process a run started, including those that left its process
//! group and session (`setsid`, double fork, daemons).
//!
//! The mechanism is Linux's child subreaper: this process marks itself with
//! `PR_SET_CHILD_SUBREAPER`, so a process whose parent dies is re-parented to chant instead of
//! to init, and stays in chant's process tree whatever group or session it moved to. The
//! run's processes are then exactly chant's descendants, found by walking `/proc`.
//!
//! This module owns that walk and the kill loop. It must never signal a process outside this
//! process's tree, and never reap a child it did not find as an orphan of the run (the
//! program's own `Child` is reaped by its owner).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Marks this process as a child subreaper (Linux; a no-op error elsewhere).
pub fn become_subreaper() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and touches
        // no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "child subreapers exist only on Linux",
        ))
    }
}

/// One process of the tree, as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy)]
struct Proc {
    parent: libc::pid_t,
    zombie: bool,
}

/// Every process in `/proc`, by pid.
fn table() -> HashMap<libc::pid_t, Proc> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if let Some(p) = read_stat(pid) {
            out.insert(pid, p);
        }
    }
    out
}

/// Parses `/proc/<pid>/stat`: the command name is in parentheses and may itself hold
/// spaces and parentheses, so the fields are read after the last `)`.
fn read_stat(pid: libc::pid_t) -> Option<Proc> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let parent = fields.next()?.parse().ok()?;
    Some(Proc {
        parent,
        zombie: state == "Z" || state == "X",
    })
}

/// The descendants of `root` (not `root` itself): (pid, parent, zombie).
fn descendants(root: libc::pid_t) -> Vec<(libc::pid_t, Proc)> {
    let procs = table();
    let mut children: HashMap<libc::pid_t, Vec<libc::pid_t>> = HashMap::new();
    for (pid, p) in &procs {
        children.entry(p.parent).or_default().push(*pid);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if *child != root {
                out.push((*child, procs[child]));
                stack.push(*child);
            }
        }
    }
    out
}

/// The live (not yet exited) descendants of this process.
pub fn live_descendants() -> Vec<libc::pid_t> {
    descendants(own_pid())
        .into_iter()
        .filter(|(_, p)| !p.zombie)
        .map(|(pid, _)| pid)
        .collect()
}

fn own_pid() -> libc::pid_t {
    std::process::id() as libc::pid_t
}

/// Sends `signal` to every live descendant of this process.
pub fn signal_all(signal: libc::c_int) {
    for pid in live_descendants() {
        send(pid, signal);
    }
}

/// SIGKILLs every descendant of this process until none is left alive (or `within` has
/// passed), reaping the orphans among them; `owned` is the child whose `Child` handle reaps
/// it elsewhere. Returns how many were still alive at the end (0: all gone).
pub fn kill_all(owned: libc::pid_t, within: Duration) -> usize {
    let until = Instant::now() + within;
    loop {
        let own = own_pid();
        let mut alive = 0;
        for (pid, p) in descendants(own) {
            if p.zombie {
                if p.parent == own && pid != owned {
                    reap(pid);
                }
            } else {
                alive += 1;
                send(pid, libc::SIGKILL);
            }
        }
        if alive == 0 || Instant::now() >= until {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn send(pid: libc::pid_t, signal: libc::c_int) {
    if pid > 1 && pid != own_pid() {
        // SAFETY: kill has no memory-safety preconditions; pid is a descendant of ours.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid on a specific child pid with a valid status pointer; WNOHANG never
    // blocks.
    unsafe {
        libc::waitpid(pid, &mut status, libc::WNOHANG);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_parentheses_and_spaces_parses() {
        // Our own stat always parses; the parser reads after the last ')'.
        let me = read_stat(own_pid()).expect("own stat");
        assert!(!me.zombie);
        assert!(me.parent > 0);
    }
}
