//! `git chant completions` and `git chant man`.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Print a shell completion script
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant completions bash > ~/.local/share/bash-completion/completions/git-chant
  git chant completions zsh  > ~/.zfunc/_git-chant")]
pub struct CompletionsArgs {
    /// The shell
    shell: clap_complete::Shell,
}

/// Write man pages so that `git help chant` works
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant man --dir ~/.local/share/man/man1 && git help chant
  git chant man | man -l -")]
pub struct ManArgs {
    /// Write git-chant.1 and one page per subcommand into DIR instead of printing git-chant.1
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> Result<u8> {
    let mut cmd = super::command();
    // Generated into memory: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "git-chant", &mut script);
    super::output::write_out_bytes(&script)?;
    Ok(0)
}

pub fn man(args: ManArgs) -> Result<u8> {
    let cmd = super::command().name("git-chant");
    match args.dir {
        None => {
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(super::output::stdout_error)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| Error::io(&dir, e))?;
            outln!("Wrote man pages to {}; try: git help chant", dir.display());
        }
    }
    Ok(0)
}
