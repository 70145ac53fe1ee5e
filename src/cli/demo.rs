//! `git chant demo`: the whole flow in a throwaway repository, as a newcomer would type it.
//!
//! Each step runs this very binary as a separate process in the demo repository, so what
//! the demo shows is exactly what a user gets.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// Run the whole flow in a throwaway repository
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Creates a temporary git repository, initialises git chant in it, adds a spec and
walks it through the flow with the default backends, printing each command as it
goes. The repository is kept so you can look around; its path is printed at the end.")]
pub struct Args {
    /// Create the demo repository here instead of a new temporary directory (must not exist)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<u8> {
    let exe = std::env::current_exe().map_err(|e| Error::io("(current executable)", e))?;
    let dir = match args.dir {
        Some(dir) => {
            if dir.exists() {
                return Err(Error::Usage(format!(
                    "--dir {}: already exists; pick a new path",
                    dir.display()
                )));
            }
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            dir
        }
        None => tempfile::Builder::new()
            .prefix("chant-demo-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?
            .keep(),
    };
    let demo = Demo {
        dir: &dir,
        exe: &exe,
    };
    println!("# A throwaway repository for the demo: {}", dir.display());
    demo.git(&["init", "--quiet", "--initial-branch=main"])?;
    demo.git(&["config", "user.name", "Demo User"])?;
    demo.git(&["config", "user.email", "demo@example.com"])?;
    std::fs::write(dir.join("README.md"), "# Demo project\n").map_err(|e| Error::io(&dir, e))?;
    demo.git(&["add", "README.md"])?;
    demo.git(&["commit", "--quiet", "-m", "Initial commit"])?;

    println!("\n# 1. Set up git chant (config, specs folder, ignore rules)");
    demo.chant(&["init"])?;
    println!("\n# 2. Describe a piece of work as a spec");
    let id = demo.chant(&["add", "Greet the user", "--target", "hello.txt"])?;
    let id = id.trim().to_string();
    let short = id.rsplit('-').next().unwrap_or(&id).to_string();
    println!("\n# 3. See what there is to do; any unique part of an id works");
    demo.chant(&["list"])?;
    demo.chant(&["show", &short])?;
    println!("\n# 4. Configuration lives in .chant/config.md");
    demo.chant(&["config", "get", "agent.sandbox"])?;
    demo.chant(&["config", "set", "agent.timeout", "30m"])?;
    println!("\n# 5. Every step above is in the audit ledger, readable with plain git");
    demo.show_git(&["log", "--format=%b", "refs/chant/audit"])?;
    demo.chant(&["audit"])?;
    demo.chant(&["audit", "verify"])?;

    println!("\nDone. Look around: cd {}", dir.display());
    println!("Remove it when finished: rm -rf {}", dir.display());
    Ok(0)
}

struct Demo<'a> {
    dir: &'a Path,
    exe: &'a Path,
}

impl Demo<'_> {
    fn git(&self, args: &[&str]) -> Result<()> {
        let status = Command::new("git")
            .args(args)
            .current_dir(self.dir)
            .status()
            .map_err(|e| {
                Error::Refused(format!(
                    "cannot run git (is it installed and on PATH?): {e}"
                ))
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Refused(format!(
                "git {} failed ({status})",
                args.join(" ")
            )))
        }
    }

    /// Runs `git <args>`, echoing the command and its output.
    fn show_git(&self, args: &[&str]) -> Result<()> {
        println!(
            "$ git {}",
            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
        );
        let output = Command::new("git")
            .args(args)
            .current_dir(self.dir)
            .output()
            .map_err(|e| Error::Refused(format!("cannot run git: {e}")))?;
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::Refused(format!(
                "git {} failed ({})",
                args.join(" "),
                output.status
            )))
        }
    }

    /// Runs `git chant <args>`, echoing the command and its output; returns stdout.
    fn chant(&self, args: &[&str]) -> Result<String> {
        println!(
            "$ git chant {}",
            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
        );
        let output = Command::new(self.exe)
            .args(args)
            .current_dir(self.dir)
            .output()
            .map_err(|e| Error::io(self.exe, e))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(Error::Refused(format!(
                "the demo step `git chant {}` failed ({})",
                args.join(" "),
                output.status
            )))
        }
    }
}

fn quote(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
    {
        arg.to_string()
    } else {
        format!("\"{arg}\"")
    }
}
