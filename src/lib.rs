//! git-chant: hand work to AI coding agents without handing over the keys.
//!
//! The library holds every behaviour; the `git-chant` binary only parses the command line
//! (see [`cli`]) and maps errors to exit codes (see [`error`]).

// Only the CLI edge prints, through `cli::output`, which never panics on a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod agent;
pub mod atomic;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod confined;
pub mod error;
pub mod exec;
pub mod gate;
pub mod git;
pub mod hooks;
pub mod identity;
pub mod net;
pub mod pattern;
pub mod project;
pub mod sandbox;
pub mod secrets;
pub mod spec;
pub mod work;

pub use error::{Error, Result};
