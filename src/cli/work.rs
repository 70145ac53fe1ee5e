//! `git chant work`: run an agent on a spec.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::audit::NewEntry;
use crate::config::{Config, SandboxLevel};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::project::Project;
use crate::sandbox::Stream;
use crate::work::{self, DryRun, Options, Verdict};

/// Run an agent on a spec in a sandboxed clone on its own branch
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant work x7m                          default level (agent.sandbox, else permissions)
  git chant work x7m --sandbox none           the agent runs as you (honour system)
  git chant work x7m --secrets-from dotenv:.env.agent --yes
  git chant work x7m --secrets-from vault://secret/chant/agent   (VAULT_ADDR, VAULT_TOKEN)
  git chant work x7m --keep                   keep the clone to inspect it
  git chant work x7m --dry-run                check and show the plan; create nothing
  git chant work x7m --sandbox kubernetes     one Job in agent.kubernetes.namespace
  git chant work x7m --sandbox kubernetes --dry-run | kubectl apply --dry-run=server -f -
                                              the run's manifests as YAML; contacts nothing
  git chant work --all-ready --parallel 4     every ready spec, at most 4 runs at once

The agent works in a clone under $XDG_CACHE_HOME/git-chant/clones/ (default
~/.cache/git-chant/clones/) on branch chant/<id>; your work tree, index and main
branch never change. What it leaves behind is checked against
policy; only an accepted change is committed on chant/<id>. Every step is recorded in
the audit ledger (git log refs/chant/audit). Exit 0 when the spec completed, 1 when it
failed or was cancelled, 2 on bad input. A spec is ready when it is pending and every
spec in its depends_on has completed; --all-ready exits with the worst of its runs.")]
pub struct Args {
    /// Spec id: full, unique suffix, today's sequence (3 characters) or unique substring
    #[arg(required_unless_present = "all_ready", conflicts_with = "all_ready")]
    id: Option<String>,
    /// Work every ready spec, each as its own run
    #[arg(long, conflicts_with = "dry_run")]
    all_ready: bool,
    /// With --all-ready: at most N runs at once
    #[arg(long, value_name = "N", requires = "all_ready", default_value_t = 1)]
    parallel: usize,
    /// Sandbox level (default: agent.sandbox from the config)
    #[arg(long, value_parser = parse_level)]
    sandbox: Option<SandboxLevel>,
    /// Where secrets come from: env:, dotenv:PATH, dir:PATH, vault://MOUNT/PATH,
    /// k8s://NAMESPACE/SECRET (repeatable; later wins)
    #[arg(long = "secrets-from", value_name = "URI")]
    secrets_from: Vec<String>,
    /// Proceed without asking when the spec targets sensitive files
    #[arg(long)]
    yes: bool,
    /// Keep the sandboxed clone after a successful run
    #[arg(long)]
    keep: bool,
    /// Check everything and show what would run; create and record nothing
    #[arg(long)]
    dry_run: bool,
}

fn parse_level(s: &str) -> std::result::Result<SandboxLevel, String> {
    s.parse()
}

pub fn run(args: Args) -> Result<u8> {
    let project = Project::discover()?;
    project.require_initialised()?;
    let config = project.config()?;
    let identity = Identity::resolve(Some(&project.repo))?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| Error::io("(signal handler)", e))?;
    }
    if args.all_ready {
        let mut pass = Vec::new();
        if let Some(level) = args.sandbox {
            pass.extend(["--sandbox".to_string(), level.to_string()]);
        }
        for uri in &args.secrets_from {
            pass.extend(["--secrets-from".to_string(), uri.clone()]);
        }
        if args.yes {
            pass.push("--yes".into());
        }
        if args.keep {
            pass.push("--keep".into());
        }
        return super::work_all::run(&project, args.parallel, &pass, &stop);
    }
    let options = Options {
        spec: args.id.unwrap_or_default(),
        sandbox: args.sandbox,
        secrets_from: args.secrets_from,
        yes: args.yes,
        keep: args.keep,
        dry_run: args.dry_run,
    };
    if options.dry_run {
        let plan = match work::dry_run(&project, &identity, &options)? {
            DryRun::Documents(documents) => {
                // The documents alone on stdout, for `kubectl apply -f -`.
                out!("{documents}");
                errln!("chant: nothing was created, contacted or recorded (--dry-run)");
                return Ok(0);
            }
            DryRun::Plan(plan) => plan,
        };
        outln!("spec:      {} ({})", plan.id, plan.title);
        outln!("sandbox:   {}", plan.level);
        outln!("branch:    {} ({})", plan.branch, plan.start);
        outln!("command:   {}", plan.command.join(" "));
        outln!(
            "secrets:   {}",
            if plan.exposed.is_empty() {
                "none exposed".to_string()
            } else {
                plan.exposed.join(", ")
            }
        );
        if !plan.sensitive_targets.is_empty() {
            outln!(
                "sensitive: {} (asks before running; --yes to skip)",
                plan.sensitive_targets.join(", ")
            );
        }
        for v in &plan.validate {
            outln!("validate:  {v}");
        }
        outln!("Nothing was created or recorded (--dry-run).");
        return Ok(0);
    }
    let mut reporter = Terminal;
    let mut recorder = LedgerRecorder {
        project: &project,
        config: &config,
        identity: &identity,
    };
    let report = work::run(
        &project,
        &identity,
        &options,
        &mut reporter,
        &mut recorder,
        &stop,
    )?;
    let code = match &report.verdict {
        Verdict::Completed {
            commit: Some(commit),
            files,
        } => {
            errln!(
                "chant: spec {} completed: {} file(s) committed on {}{} as {}",
                report.id,
                files.len(),
                config.chant.branch_prefix,
                report.id,
                &commit[..commit.len().min(12)]
            );
            0
        }
        Verdict::Completed { commit: None, .. } => {
            errln!(
                "chant: spec {} completed with no changes (status `unchanged`; `git chant work {}` runs it again)",
                report.id,
                report.id
            );
            0
        }
        Verdict::Failed { reason } => {
            for v in &report.violations {
                errln!(
                    "chant: policy violation: {}: {} ({})",
                    v.path,
                    v.detail,
                    v.rule
                );
            }
            errln!("chant: spec {} failed: {reason}", report.id);
            1
        }
        Verdict::Cancelled { reason } => {
            errln!("chant: spec {} cancelled: {reason}", report.id);
            1
        }
    };
    if let Some(clone) = &report.clone {
        errln!(
            "chant: the clone is kept for inspection at {}",
            clone.display()
        );
    }
    if !report.log.as_os_str().is_empty() {
        errln!("chant: agent output log: {}", report.log.display());
    }
    Ok(code)
}

/// Progress on stderr, agent output passed through, questions on the terminal.
struct Terminal;

impl work::Reporter for Terminal {
    fn info(&mut self, line: &str) {
        errln!("chant: {line}");
    }

    fn warn(&mut self, line: &str) {
        errln!("{line}");
    }

    fn agent_output(&mut self, stream: Stream, bytes: &[u8]) {
        let _ = match stream {
            Stream::Stdout => std::io::stdout().write_all(bytes),
            Stream::Stderr => std::io::stderr().write_all(bytes),
        };
    }

    fn confirm(&mut self, question: &str) -> Option<bool> {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        err!("{question} ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).ok()?;
        Some(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }
}

/// Records to the audit ledger on refs/chant/audit.
struct LedgerRecorder<'a> {
    project: &'a Project,
    config: &'a Config,
    identity: &'a Identity,
}

impl work::Recorder for LedgerRecorder<'_> {
    fn record(&mut self, entries: Vec<NewEntry>) -> std::result::Result<(), String> {
        crate::audit::record_batch(self.project, self.config, self.identity, entries)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
