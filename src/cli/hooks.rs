//! `git chant hooks install|status` and `git chant hook <name>` (what the scripts call).

use std::io::Read;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::hooks::{client, install, protection, server};
use crate::identity::Identity;

/// Install or inspect git-chant's git hooks
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant hooks install                      pre-commit and pre-push in this clone
  git chant hooks install --server --dir /srv/git/app.git   pre-receive on a bare repository
  git chant hooks status

Client hooks catch mistakes early but can be skipped (--no-verify); the server hook is
the enforcement. An existing hook that is not git-chant's is kept as <name>.local and
chained; --force replaces it and keeps <name>.chant-backup.")]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Write the hook scripts into the hooks folder git uses (honours core.hooksPath)
    Install {
        /// Server side (pre-receive), for a bare repository
        #[arg(long)]
        server: bool,
        /// The repository (default: the current one)
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Replace foreign hooks (a backup is kept) instead of chaining them
        #[arg(long)]
        force: bool,
    },
    /// Show which hooks are installed
    Status {
        /// The repository (default: the current one)
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn open(dir: Option<PathBuf>) -> Result<git2::Repository> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    Ok(crate::project::open_repository(&dir)?)
}

pub fn run(args: Args) -> Result<u8> {
    match args.action {
        Action::Install { server, dir, force } => {
            let repo = open(dir)?;
            if server && !repo.is_bare() {
                return Err(Error::Usage(format!(
                    "--server installs into a bare repository; {} has a work tree",
                    repo.path().display()
                )));
            }
            let target = install::hooks_dir(&repo);
            let scripts = if server {
                install::SERVER
            } else {
                install::CLIENT
            };
            let done = install::install(&target, scripts, force)
                .map_err(|e| Error::Refused(e.to_string()))?;
            for (name, what) in done {
                let note = match what {
                    install::Installed::Written => "installed",
                    install::Installed::Unchanged => "already installed",
                    install::Installed::Chained => {
                        "installed; your existing hook runs after it as .local"
                    }
                    install::Installed::Replaced => {
                        "installed; your existing hook was saved as .chant-backup"
                    }
                };
                outln!("{}: {note}", target.join(&name).display());
            }
            Ok(0)
        }
        Action::Status { dir } => {
            let repo = open(dir)?;
            let target = install::hooks_dir(&repo);
            let scripts = if repo.is_bare() {
                install::SERVER
            } else {
                install::CLIENT
            };
            for (name, state) in install::status(&target, scripts) {
                let text = match state {
                    install::State::Missing => {
                        "not installed (git chant hooks install)".to_string()
                    }
                    install::State::Foreign => "a hook that is not git-chant's".to_string(),
                    install::State::Ours { current, chained } => format!(
                        "installed{}{}",
                        if current {
                            ""
                        } else {
                            " (outdated: run git chant hooks install)"
                        },
                        if chained { ", chains to .local" } else { "" }
                    ),
                };
                outln!("{name:<12} {text}");
            }
            Ok(0)
        }
    }
}

/// The entry point the installed hook scripts call
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  (called by the hook scripts; you do not run this by hand)
  echo \"$old $new refs/heads/main\" | git chant hook pre-receive")]
pub struct HookArgs {
    /// pre-commit, pre-push or pre-receive
    name: String,
    /// The arguments git passed to the hook
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn hook(args: HookArgs) -> Result<u8> {
    let mut input = String::new();
    if args.name != "pre-commit" {
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| Error::io("(stdin)", e))?;
    }
    match args.name.as_str() {
        "pre-commit" | "pre-push" => {
            let repo = git2::Repository::open_from_env()
                .map_err(|e| Error::Usage(format!("not in a repository: {e}")))?;
            let tip = repo.head().ok().and_then(|h| h.target());
            let config = match repo.workdir() {
                Some(root) => crate::config::load(root).map(|l| l.config)?,
                None => protection::config_at(&repo, tip)?,
            };
            let identity = Identity::resolve(Some(&repo))?;
            let verdict = if args.name == "pre-commit" {
                client::pre_commit(&repo, &config, &identity.actor)?
            } else {
                let remote = args.args.first().map(String::as_str).unwrap_or("origin");
                client::pre_push(
                    &repo,
                    &config,
                    &identity.actor,
                    remote,
                    &client::parse_push_input(&input),
                )?
            };
            for w in &verdict.warnings {
                errln!("chant: {w}");
            }
            for r in &verdict.refusals {
                errln!("chant: {r}");
            }
            Ok(u8::from(!verdict.refusals.is_empty()))
        }
        "pre-receive" => {
            // Pushed objects live in git's quarantine: only the environment shows them.
            let repo = git2::Repository::open_from_env()
                .map_err(|e| Error::Usage(format!("not in a repository: {e}")))?;
            // A policy that does not load refuses the push (exit 2); nothing is recorded,
            // since the policy that says how to record is the one that failed.
            let config = server::server_config(&repo)?;
            let pusher = crate::identity::pusher()?;
            let updates = server::parse_input(&input);
            let refusals = server::check(&repo, &config, &pusher, &updates);
            if refusals.is_empty() {
                return Ok(0);
            }
            for r in &refusals {
                errln!("chant: {r}");
            }
            // Record the rejection in the server's own ledger, through a handle that writes
            // to the real object store (the quarantine is discarded on rejection).
            let real = git2::Repository::open(repo.path())?;
            if let Err(e) = server::record_rejection(&real, &config, &pusher, &refusals, &updates) {
                errln!("chant: could not record the rejection in the ledger: {e}");
            }
            Ok(1)
        }
        other => Err(Error::Usage(format!(
            "unknown hook '{other}'; git chant handles pre-commit, pre-push and pre-receive"
        ))),
    }
}
