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
Examples:
  git chant demo
  git chant demo --dir /tmp/my-demo

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
    outln!("# A throwaway repository for the demo: {}", dir.display());
    demo.git(&["init", "--quiet", "--initial-branch=main"])?;
    demo.git(&["config", "user.name", "Demo User"])?;
    demo.git(&["config", "user.email", "demo@example.com"])?;
    std::fs::write(dir.join("README.md"), "# Demo project\n").map_err(|e| Error::io(&dir, e))?;
    demo.git(&["add", "README.md"])?;
    demo.git(&["commit", "--quiet", "-m", "Initial commit"])?;

    outln!("\n# 1. Set up git chant (config, specs folder, ignore rules)");
    demo.chant(&["init"])?;
    outln!("\n# 2. Describe a piece of work as a spec");
    let id = demo.chant(&["add", "Greet the user", "--target", "hello.txt"])?;
    let id = id.trim().to_string();
    let short = id.rsplit('-').next().unwrap_or(&id).to_string();
    outln!("\n# 3. See what there is to do; any unique part of an id works");
    demo.chant(&["list"])?;
    demo.chant(&["show", &short])?;
    outln!("\n# 4. Configuration lives in .chant/config.md; the demo uses a bundled example agent");
    demo.chant(&["config", "get", "agent.sandbox"])?;
    let agent = dir.join(".git").join("chant-demo-agent.sh");
    write_agent(&agent)?;
    demo.chant(&[
        "config",
        "set",
        "agent.command",
        &format!("[{}]", agent.display()),
    ])?;
    demo.git(&["add", ".chant"])?;
    demo.git(&["commit", "--quiet", "-m", "Add chant config and spec"])?;
    outln!("\n# 5. Run the agent on the spec: a sandboxed clone, its own branch, a policy check");
    demo.chant_live(&["work", &short])?;
    outln!("\n# 6. The result is a commit on chant/<id>; main did not move");
    demo.show_git(&["log", "--oneline", "--graph", "--decorate", "--branches"])?;
    demo.show_git(&["show", "--stat", "--format=%B", &format!("chant/{id}")])?;
    outln!("\n# 7. Every step above is in the audit ledger, readable with plain git");
    demo.show_git(&["log", "--format=%b", "-3", "refs/chant/audit"])?;
    demo.chant(&["audit", "--spec", &short])?;
    demo.chant(&["audit", "verify"])?;

    outln!("\nDone. Look around: cd {}", dir.display());
    outln!("Remove it when finished: rm -rf {}", dir.display());
    Ok(0)
}

/// The bundled example agent (fixtures/agents/greet.sh), written out for the demo.
const DEMO_AGENT: &str = include_str!("../../fixtures/agents/greet.sh");

fn write_agent(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, DEMO_AGENT).map_err(|e| Error::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(path, e))
}

struct Demo<'a> {
    dir: &'a Path,
    exe: &'a Path,
}

impl Demo<'_> {
    fn git(&self, args: &[&str]) -> Result<()> {
        let status = Command::new("git")
            .args(args)
            .env("GIT_PAGER", "cat")
            .env("PATH", self.path_with_exe())
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

    /// `PATH` with this binary's folder first, so the hooks `init` installed find it even
    /// when git-chant is not installed yet.
    fn path_with_exe(&self) -> std::ffi::OsString {
        let mut dirs: Vec<PathBuf> = self
            .exe
            .parent()
            .map(Path::to_path_buf)
            .into_iter()
            .collect();
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs).unwrap_or_default()
    }

    /// Runs `git <args>`, echoing the command and its output.
    fn show_git(&self, args: &[&str]) -> Result<()> {
        outln!(
            "$ git {}",
            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
        );
        self.git(args)
    }

    /// Runs `git chant <args>` with its output going straight to the terminal.
    fn chant_live(&self, args: &[&str]) -> Result<()> {
        outln!(
            "$ git chant {}",
            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
        );
        let status = Command::new(self.exe)
            .args(args)
            .current_dir(self.dir)
            .status()
            .map_err(|e| Error::io(self.exe, e))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Refused(format!(
                "the demo step `git chant {}` failed ({status})",
                args.join(" ")
            )))
        }
    }

    /// Runs `git chant <args>`, echoing the command and its output; returns stdout.
    fn chant(&self, args: &[&str]) -> Result<String> {
        outln!(
            "$ git chant {}",
            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
        );
        let output = Command::new(self.exe)
            .args(args)
            .current_dir(self.dir)
            .output()
            .map_err(|e| Error::io(self.exe, e))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        out!("{stdout}");
        err!("{}", String::from_utf8_lossy(&output.stderr));
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
