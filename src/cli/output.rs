//! The terminal, as commands write to it: stdout for results, stderr for progress and
//! errors.
//!
//! Writing here never panics (`println!` does, on a closed pipe: exit 101). A closed or
//! failing stdout ends the command early with [`Error::ClosedPipe`], which the binary's edge
//! turns into a quiet exit 0 — as `git log | head` and ripgrep behave. It is an ordinary
//! error value, so it unwinds through the command like any other: locks are released and no
//! ledger write is cut short (ledger writes never go through here). A failing stderr is
//! ignored: there is nowhere left to say anything.
//!
//! Every command prints through [`outln!`]/[`out!`] and [`errln!`]/[`err!`]; `print!` and
//! friends are denied crate-wide (clippy `print_stdout`, `print_stderr`).

use std::fmt;
use std::io::Write;

use crate::error::Error;

/// Writes `args` to stdout; a closed pipe (or any write error) is [`Error::ClosedPipe`]
/// or an I/O error naming stdout.
pub fn write_out(args: fmt::Arguments<'_>) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// Writes raw bytes to stdout, with the errors of [`write_out`].
pub fn write_out_bytes(bytes: &[u8]) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// Writes `args` to stderr, ignoring failure (stderr is where failures would be told).
pub fn write_err(args: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// What a failed write to stdout means: the reader went away, or something else failed.
pub fn stdout_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::ClosedPipe
    } else {
        Error::io("(stdout)", e)
    }
}

/// `println!` that returns early from the enclosing function (which must return
/// `Result<_, crate::Error>`) when stdout is closed, instead of panicking.
macro_rules! outln {
    () => { $crate::cli::output::write_out(format_args!("\n"))? };
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// `print!` with the early return of [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::write_out(format_args!($($arg)*))? };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    () => { $crate::cli::output::write_err(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::cli::output::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that never panics.
macro_rules! err {
    ($($arg:tt)*) => { $crate::cli::output::write_err(format_args!($($arg)*)) };
}
