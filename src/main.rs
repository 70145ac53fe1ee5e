//! The `git-chant` binary: a thin shell over the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    git_chant::cli::main()
}
