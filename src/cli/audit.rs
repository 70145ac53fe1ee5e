//! `git chant audit`: query, verify, record and sync the ledger on refs/chant/audit.

use std::path::PathBuf;

use git2::Repository;
use serde_json::Value;

use crate::audit::query::{self, Filter, Format, SpecMatch};
use crate::audit::{self, AuditError, Event, NewEntry, Signer, VerifyOptions};
use crate::config::{Config, Span};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::project::Project;
use crate::spec::SpecStore;

/// Review, verify and append to the audit ledger (refs/chant/audit)
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
Examples:
  git chant audit --actor alex --last 30d        who worked on what
  git chant audit --spec 001                     what happened to a spec
  git chant audit --event policy_violation --since 2026-01-01 --format csv
  git chant audit --event spec_started --event spec_completed --format jsonl | jq .
  git chant audit verify --require-signatures
  git chant audit record command_run --spec x7m --details '{\"command\":\"make\",\"exit_code\":0}'
  git chant audit sync                           reconcile with origin and push
  git chant audit ship --dry-run                 what audit.ship_to has not received yet

Entries come oldest first; --limit keeps the most recent N. The ledger is plain git:
  git log --format=%b refs/chant/audit | jq -c 'select(.event == \"spec_failed\")'"
)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    query: QueryArgs,
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// Only entries by this actor
    #[arg(long, value_name = "A")]
    actor: Option<String>,
    /// Only entries about this spec (any id form: full, suffix, today's number)
    #[arg(long, value_name = "ID")]
    spec: Option<String>,
    /// Only these events (repeatable)
    #[arg(long = "event", value_name = "E")]
    events: Vec<String>,
    /// Only the last span of time, e.g. 7d, 30d, 90d
    #[arg(long, value_name = "SPAN", conflicts_with = "since")]
    last: Option<String>,
    /// Only entries at or after T (2026-01-22 or RFC 3339)
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only entries at or before T (a date means the end of that day)
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    format: FormatArg,
    /// At most N entries (the most recent)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Text,
    Json,
    Jsonl,
    Csv,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Check every hash, link and (optionally) signature of the ledger
    Verify {
        /// Every entry must carry a valid signature by an allowed signer
        #[arg(long)]
        require_signatures: bool,
        /// The allowed-signers file (default: git config gpg.ssh.allowedSignersFile)
        #[arg(long, value_name = "FILE")]
        allowed_signers: Option<PathBuf>,
        /// Verify from this ledger commit on, instead of from the last verified head
        #[arg(long, value_name = "COMMIT")]
        from: Option<String>,
    },
    /// Append an entry (a low-level command for scripts)
    Record {
        /// Event name, e.g. command_run
        event: String,
        /// The spec the entry is about (any id form)
        #[arg(long, value_name = "ID")]
        spec: Option<String>,
        /// A JSON object of details (integers only, no floats)
        #[arg(long, value_name = "JSON")]
        details: Option<String>,
        /// The agent, e.g. provider/model-name
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
        /// The sandbox level
        #[arg(long, value_name = "LEVEL")]
        sandbox: Option<String>,
    },
    /// Send the entries audit.ship_to has not received yet (S3, GCS, Elasticsearch, Splunk)
    #[command(after_help = "\
Examples:
  git chant audit ship                 send what is pending, oldest first
  git chant audit ship --dry-run       count what is pending; send nothing

Entries go in order, in batches, each retried with backoff; .git/chant/ship-cursor.json
remembers the last entry the target acknowledged: after a failure the next run resends
only the unacknowledged batch and skips nothing. Ids come from entry hashes (S3/GCS object keys,
Elasticsearch _id; Splunk gets a hash field). Credentials come from the platform's own
variables (AWS_*, GOOGLE_APPLICATION_CREDENTIALS) or the variable ship_to.token_env names.
`git chant work` ships at the end of each run too. Exit 1 when the target is down or
refuses (nothing is lost: the ledger is whole and the next ship resumes); 2 when
audit.ship_to is unset or incomplete.")]
    Ship {
        /// Show what is pending; send nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Fetch the remote ledger, re-chain unpublished local entries on top of it, and push
    Sync {
        /// The remote to sync with
        #[arg(long, default_value = "origin")]
        remote: String,
    },
}

pub fn run(args: Args) -> Result<u8> {
    match args.action {
        None => run_query(args.query),
        Some(Action::Verify {
            require_signatures,
            allowed_signers,
            from,
        }) => run_verify(require_signatures, allowed_signers, from),
        Some(Action::Record {
            event,
            spec,
            details,
            agent,
            sandbox,
        }) => run_record(&event, spec, details, agent, sandbox),
        Some(Action::Sync { remote }) => run_sync(&remote),
        Some(Action::Ship { dry_run }) => run_ship(dry_run),
    }
}

/// Settings for commands that read the whole ledger: each entry is read once, so libgit2's
/// object cache only costs; and the ledger's own sha256 chain checks every byte of every
/// entry, so re-hashing each object with SHA-1 on read adds nothing to what verify proves.
fn tune_for_ledger_walks() {
    git2::opts::enable_caching(false);
    git2::opts::strict_hash_verification(false);
}

/// The repository of the current directory, bare or not.
fn open_repo() -> Result<Repository> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    match Project::discover_from(&cwd) {
        Ok(p) => Ok(p.repo),
        Err(crate::project::ProjectError::Bare { git_dir }) => Ok(Repository::open(git_dir)?),
        Err(e) => Err(e.into()),
    }
}

fn run_record(
    event: &str,
    spec: Option<String>,
    details: Option<String>,
    agent: Option<String>,
    sandbox: Option<String>,
) -> Result<u8> {
    let Some(kind) = Event::parse(event) else {
        let names: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
        return Err(Error::Usage(format!(
            "unknown event '{event}'; one of: {}",
            names.join(", ")
        )));
    };
    let details = match details {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(Error::Usage(
                    "--details must be a JSON object, e.g. '{\"command\":\"make\"}'".into(),
                ))
            }
            Err(e) => return Err(Error::Usage(format!("--details is not valid JSON: {e}"))),
        },
    };
    let project = Project::discover()?;
    let config = project.config()?;
    let mut entry = NewEntry::new(kind);
    entry.details = details;
    entry.agent = agent;
    entry.sandbox = sandbox;
    if let Some(input) = spec {
        let store = SpecStore::new(project.specs_dir());
        entry.spec_id = Some(store.resolve(&input)?.as_str().to_string());
    }
    let identity = Identity::resolve(Some(&project.repo))?;
    let appended = audit::append(&project, &config, &identity, vec![entry])?;
    for w in &appended.warnings {
        errln!("warning: {w}");
    }
    if let Some(s) = appended.entries.last() {
        outln!("{} {}", s.commit, s.entry.subject());
    }
    Ok(0)
}

fn run_verify(
    require_signatures: bool,
    allowed_signers: Option<PathBuf>,
    from: Option<String>,
) -> Result<u8> {
    tune_for_ledger_walks();
    let repo = open_repo()?;
    let from = match from {
        None => None,
        Some(rev) => Some(
            repo.revparse_single(&rev)
                .and_then(|o| o.peel_to_commit())
                .map_err(|_| Error::Usage(format!("--from {rev}: no such commit")))?
                .id(),
        ),
    };
    let opts = VerifyOptions {
        require_signatures,
        allowed_signers,
        from,
        checkpoint: Some(audit::verify::default_checkpoint(&repo)),
        head: None,
    };
    let v = audit::verify(&repo, &opts)?;
    let mut line = format!("verified {} entries; head {}", v.entries, v.head);
    match v.since {
        Some(since) if since == v.head => line.push_str(" (unchanged since the last verify)"),
        Some(since) => line.push_str(&format!(" (new since the last verified head {since})")),
        None => {}
    }
    if require_signatures {
        line.push_str(&format!("; {} signatures checked", v.signatures));
    }
    outln!("{line}");
    Ok(0)
}

fn run_query(q: QueryArgs) -> Result<u8> {
    tune_for_ledger_walks();
    let repo = open_repo()?;
    for e in &q.events {
        if Event::parse(e).is_none() {
            let names: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
            return Err(Error::Usage(format!(
                "--event {e}: unknown event; one of: {}",
                names.join(", ")
            )));
        }
    }
    let since = match (&q.last, &q.since) {
        (Some(last), _) => {
            let span = Span::parse(last).map_err(|m| Error::Usage(format!("--last {m}")))?;
            let d = chrono::Duration::from_std(span.duration())
                .map_err(|_| Error::Usage(format!("--last {last}: too long")))?;
            Some(crate::clock::now() - d)
        }
        (None, Some(t)) => {
            Some(query::parse_time(t, false).map_err(|m| Error::Usage(format!("--since {m}")))?)
        }
        (None, None) => None,
    };
    let until = match &q.until {
        Some(t) => {
            Some(query::parse_time(t, true).map_err(|m| Error::Usage(format!("--until {m}")))?)
        }
        None => None,
    };
    let spec = match &q.spec {
        None => None,
        Some(input) => Some(resolve_spec(&repo, input)?),
    };
    let filter = Filter {
        actor: q.actor,
        spec,
        events: q.events,
        since,
        until,
        limit: q.limit,
    };
    let entries = query::run(&repo, &filter)?;
    let format = match q.format {
        FormatArg::Text => Format::Text,
        FormatArg::Json => Format::Json,
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::Csv => Format::Csv,
    };
    if format == Format::Text && entries.is_empty() {
        errln!("No audit entries match.");
        return Ok(0);
    }
    out!("{}", query::render(&entries, format));
    Ok(0)
}

/// `--spec` input to a match: resolved against the spec files when there are some (as every
/// command resolves ids), else matched as a part of the recorded ids.
fn resolve_spec(repo: &Repository, input: &str) -> Result<SpecMatch> {
    crate::spec::check_input(input.trim()).map_err(Error::Usage)?;
    if let Some(root) = repo.workdir() {
        let store = SpecStore::new(root.join(".chant").join("specs"));
        match store.resolve(input) {
            Ok(id) => return Ok(SpecMatch::Exact(id.as_str().to_string())),
            Err(crate::spec::SpecError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(SpecMatch::Part(input.trim().to_string()))
}

fn run_sync(remote: &str) -> Result<u8> {
    let repo = open_repo()?;
    let config = match repo.workdir() {
        Some(root) => crate::config::load(root)?.config,
        None => Config::defaults(),
    };
    if repo.find_remote(remote).is_err() {
        return Err(Error::Usage(format!(
            "no remote named '{remote}'; `git remote -v` lists them"
        )));
    }
    let signer = Signer::from_config(&repo, config.audit.sign)?;
    let out = audit::sync(&repo, &signer, remote).map_err(|e| match e {
        AuditError::Sync(m) => Error::Refused(m),
        other => other.into(),
    })?;
    let head = out
        .head
        .map_or_else(|| "(none)".to_string(), |h| h.to_string());
    if out.rechained > 0 {
        outln!(
            "re-chained {} unpublished entries on top of {remote}'s ledger",
            out.rechained
        );
    }
    if out.fast_forwarded {
        outln!("fast-forwarded the local ledger to {remote}'s");
    }
    if out.pushed {
        outln!("pushed {} to {remote}; head {head}", audit::AUDIT_REF);
    } else {
        outln!("ledger in sync with {remote}; head {head}");
    }
    Ok(0)
}

fn run_ship(dry_run: bool) -> Result<u8> {
    use crate::audit::ship::{self, Options, ShipError};
    let project = Project::discover()?;
    let config = project.config()?;
    let Some(to) = &config.audit.ship_to else {
        return Err(ShipError::NotConfigured.into());
    };
    let options = Options {
        dry_run,
        ..Options::default()
    };
    let out = ship::ship(&project.repo, to, &ship::process_env(), &options)?;
    let last = out.last_hash.as_deref().unwrap_or("");
    match (dry_run, out.count) {
        (_, 0) => outln!("nothing to ship to {}: up to date", out.target),
        (true, n) => outln!("would ship {n} entries to {}; last hash {last}", out.target),
        (false, n) => outln!(
            "shipped {n} entries in {} batch(es) to {}; last hash {last}",
            out.batches,
            out.target
        ),
    }
    Ok(0)
}
