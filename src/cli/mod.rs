//! The command line: argument structs (clap) and one short `run` per subcommand.
//!
//! This is the edge of the program: the only place that prints, and the one place where
//! errors become exit codes (see [`crate::error`]).

// First: its printing macros are used by every module below.
#[macro_use]
mod output;

mod add;
mod approve;
mod audit;
mod cancel;
mod config;
mod demo;
mod doctor;
mod exec;
mod hooks;
mod init;
mod list;
mod man;
mod relay;
mod show;
mod work;
mod work_all;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::error::Result;

const ABOUT: &str = "Hand work to AI coding agents without handing over the keys.";

const LONG_ABOUT: &str = "\
Hand work to AI coding agents without handing over the keys.

A unit of work is a spec (.chant/specs/<id>.md). Agents work on their own branch
(chant/<id>) in a sandboxed clone, and every significant action lands in a hash-chained
audit ledger kept in this repository on refs/chant/audit.";

const AFTER_HELP: &str = "\
Examples:
  git chant init                          set up .chant/ in this repository
  git chant add \"Fix login redirect\" --target src/auth.rs
  git chant list --status pending
  git chant show x7m                      any unique part of an id works
  git chant config set agent.sandbox docker
  git chant audit --last 7d               what happened this week (refs/chant/audit)
  git chant audit verify                  check the ledger's hash chain
  git chant demo                          the whole flow in a throwaway repository
  git chant doctor                        which sandbox levels can run here

Exit codes: 0 success, 1 the operation ran and said no, 2 bad usage or input.";

/// `git chant` — the top-level command.
#[derive(Debug, Parser)]
#[command(
    name = "git-chant",
    bin_name = "git chant",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Init(init::Args),
    Add(add::Args),
    List(list::Args),
    Show(show::Args),
    Work(work::Args),
    Cancel(cancel::Args),
    Approve(approve::Args),
    Exec(exec::Args),
    Hooks(hooks::Args),
    Hook(hooks::HookArgs),
    #[command(hide = true)]
    Relay(relay::Args),
    Config(config::Args),
    Audit(Box<audit::Args>),
    Demo(demo::Args),
    Doctor(doctor::Args),
    Completions(man::CompletionsArgs),
    Man(man::ManArgs),
}

/// Runs the program with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away: nothing to say, nobody to say it to.
        Err(crate::Error::ClosedPipe) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Dispatches to the subcommand; returns the exit code on success paths that can still
/// say "no" (1).
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Init(args) => init::run(args),
        Command::Add(args) => add::run(args),
        Command::List(args) => list::run(args),
        Command::Show(args) => show::run(args),
        Command::Work(args) => work::run(args),
        Command::Cancel(args) => cancel::run(args),
        Command::Approve(args) => approve::run(args),
        Command::Exec(args) => exec::run(args),
        Command::Hooks(args) => hooks::run(args),
        Command::Hook(args) => hooks::hook(args),
        Command::Relay(args) => relay::run(args),
        Command::Config(args) => config::run(args),
        Command::Audit(args) => audit::run(*args),
        Command::Demo(args) => demo::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Completions(args) => man::completions(args),
        Command::Man(args) => man::man(args),
    }
}

/// The clap command tree, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}
