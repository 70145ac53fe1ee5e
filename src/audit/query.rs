//! Compliance queries over the ledger: filters by actor, spec, event and time, served from
//! the derived index (see [`super::index`]) and confirmed against the commits themselves.
//!
//! Results come oldest first (ledger order); `limit` keeps the most recent ones. Output
//! formats (text table, JSON array, JSON lines, CSV) are rendered to strings here; the CLI
//! prints them. This module never prints and never changes the ledger.

use std::sync::{mpsc, Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use git2::{Oid, Repository};

use super::chain::canonical;
use super::entry::{Entry, FIELDS};
use super::index::{self, Corrupt, Record};
use super::ledger::{self, Stored};
use super::objects::Objects;
use super::AuditError;

/// How `--spec` matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecMatch {
    /// A resolved, full id.
    Exact(String),
    /// Unresolved input (the spec file may be gone): a suffix or substring of the id.
    Part(String),
}

impl SpecMatch {
    fn matches(&self, id: Option<&str>) -> bool {
        match (self, id) {
            (SpecMatch::Exact(want), Some(id)) => {
                id == want
                    || id
                        .strip_prefix(want.as_str())
                        .is_some_and(|r| r.starts_with('.'))
            }
            (SpecMatch::Part(part), Some(id)) => id.contains(part.as_str()),
            _ => false,
        }
    }
}

/// A query.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub actor: Option<String>,
    pub spec: Option<SpecMatch>,
    /// Any of these events (empty: all).
    pub events: Vec<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<usize>,
}

impl Filter {
    fn matches_fields(&self, ts: i64, event: &str, spec: Option<&str>, actor: &str) -> bool {
        self.since.is_none_or(|s| ts >= s.timestamp())
            && self.until.is_none_or(|u| ts <= u.timestamp())
            && (self.events.is_empty() || self.events.iter().any(|e| e == event))
            && self.actor.as_deref().is_none_or(|a| a == actor)
            && self.spec.as_ref().is_none_or(|s| s.matches(spec))
    }

    fn matches_record(&self, r: &Record) -> bool {
        self.matches_fields(r.ts, &r.event(), r.spec_id().as_deref(), &r.actor())
    }

    fn matches_entry(&self, e: &Entry) -> bool {
        let ts = DateTime::parse_from_rfc3339(e.ts()).map_or(0, |t| t.timestamp());
        self.matches_fields(ts, e.event(), e.spec_id(), e.actor())
    }
}

/// Runs `filter` over the ledger of `repo`.
pub fn run(repo: &Repository, filter: &Filter) -> Result<Vec<Stored>, AuditError> {
    let index = index::refresh(repo)?;
    match scan(repo, filter, &index)? {
        Ok(found) => Ok(found),
        Err(_) => {
            // A derived file went wrong: build it again from the ref and ask once more.
            let index = index::rebuild(repo)?;
            match scan(repo, filter, &index)? {
                Ok(found) => Ok(found),
                Err(Corrupt(why)) => Err(AuditError::Broken {
                    commit: index.head.map(|h| h.to_string()).unwrap_or_default(),
                    reason: format!("the query index, rebuilt from the ledger, {why}"),
                }),
            }
        }
    }
}

/// A record the index says matches, and the commit the index lists just before it (`None`:
/// it is the oldest; unknown when the scan stopped right after it).
struct Candidate {
    commit: Oid,
    older: Option<Option<Oid>>,
}

/// One pass over the index, newest first, reading back each matching commit as it is
/// found. The outer error is the ledger's; the inner one says the index cannot be believed.
fn scan(
    repo: &Repository,
    filter: &Filter,
    index: &index::Index,
) -> Result<Result<Vec<Stored>, Corrupt>, AuditError> {
    std::thread::scope(|scope| {
        let mut reader = Reader::new(repo, scope)?;
        let candidates = match candidates(filter, index, |commit| reader.push(commit)) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let read = reader.finish()?;
        // The index only points; each commit says what its entry is, and where it links.
        let mut out = Vec::with_capacity(read.len());
        for (candidate, (stored, parent)) in candidates.iter().zip(read) {
            if !filter.matches_entry(&stored.entry) {
                return Ok(Err(Corrupt(format!(
                    "lists {} as matching, but its entry does not",
                    candidate.commit
                ))));
            }
            if candidate.older.is_some_and(|older| older != parent) {
                return Ok(Err(Corrupt(format!(
                    "lists something else before {}, not its parent",
                    candidate.commit
                ))));
            }
            out.push(stored);
        }
        out.reverse();
        Ok(Ok(out))
    })
}

/// The records of `index` that `filter` selects, newest first; `found` hears of each as
/// soon as it is seen.
fn candidates(
    filter: &Filter,
    index: &index::Index,
    mut found: impl FnMut(Oid),
) -> Result<Vec<Candidate>, Corrupt> {
    let since = filter.since.map(|s| s.timestamp());
    // Only records naming a wanted event (or actor) are worth parsing; the newest, the one
    // after a candidate (its link is checked) and the first too old (it ends the scan) are
    // parsed whatever they hold.
    let texts: Vec<&String> = if filter.events.is_empty() {
        filter.actor.iter().collect()
    } else {
        filter.events.iter().collect()
    };
    let needles: Vec<memchr::memmem::Finder<'static>> = texts
        .iter()
        .map(|t| memchr::memmem::Finder::new(&index::field_needle(t)).into_owned())
        .collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut newest = true;
    let mut records = index.newest_first();
    loop {
        let must = newest || candidates.last().is_some_and(|c| c.older.is_none());
        let wanted = |line: &[u8]| {
            must || needles.is_empty()
                || needles.iter().any(|n| n.find(line).is_some())
                || since.is_some_and(|s| index::max_ts(line).is_none_or(|m| m < s))
        };
        let Some(record) = records.next_record_where(wanted) else {
            break;
        };
        let record = record?;
        let commit = record.commit()?;
        if newest && Some(commit) != index.head {
            return Err(Corrupt("does not end at the ledger's head".into()));
        }
        newest = false;
        if let Some(last) = candidates.last_mut().filter(|c| c.older.is_none()) {
            last.older = Some(Some(commit));
        }
        if filter.limit.is_some_and(|l| candidates.len() >= l)
            || since.is_some_and(|s| record.max_ts < s)
        {
            break; // enough, or nothing at or before this record is recent enough
        }
        if filter.matches_record(&record) {
            found(commit);
            candidates.push(Candidate {
                commit,
                older: None,
            });
        }
    }
    // The scan read on past every candidate but the oldest record of all, if that matched.
    if let Some(last) = candidates.last_mut().filter(|c| c.older.is_none()) {
        last.older = Some(None);
    }
    Ok(candidates)
}

/// This many matches are read on the scanning thread before any worker starts; after
/// that they are queued in batches of [`BATCH`] (a message per entry would cost a thread
/// wake-up each).
const INLINE: usize = 256;
const BATCH: usize = 128;

type Read = Result<(Stored, Option<Oid>), AuditError>;
/// Matches with their positions in the result.
type Batch = Vec<(usize, Oid)>;
type Queue = Arc<Mutex<mpsc::Receiver<Batch>>>;
/// Entries read, with their positions.
type Done = Vec<(usize, Read)>;

/// Reads matching entries (with their parents) while the scan goes on. Inflating commits
/// is most of a long query's time: past the first [`INLINE`] matches, batches go to a
/// queue that worker threads drain, and the scanning thread joins them once the scan is
/// over. Each thread has its own handle on the repository (a `Repository` is not shared
/// between threads).
struct Reader<'scope, 'env> {
    repo: &'env Repository,
    objects: Objects<'env>,
    scope: &'scope std::thread::Scope<'scope, 'env>,
    done: Vec<Option<Read>>,
    /// Matches not yet queued, with their positions.
    batch: Batch,
    queue: Option<(mpsc::Sender<Batch>, Queue)>,
    results: (mpsc::Sender<Done>, mpsc::Receiver<Done>),
}

/// Takes batches off `queue` and reads them with `repo` until the queue is closed and empty.
fn drain(
    objects: &mut Objects<'_>,
    queue: &Mutex<mpsc::Receiver<Batch>>,
    results: &mpsc::Sender<Done>,
) {
    loop {
        let batch = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(batch) = batch else { return };
        let read = batch
            .into_iter()
            .map(|(n, commit)| (n, ledger::read_linked(objects, commit)))
            .collect();
        if results.send(read).is_err() {
            return;
        }
    }
}

impl<'scope, 'env> Reader<'scope, 'env> {
    fn new(
        repo: &'env Repository,
        scope: &'scope std::thread::Scope<'scope, 'env>,
    ) -> Result<Self, AuditError> {
        Ok(Reader {
            repo,
            objects: Objects::open(repo)?,
            scope,
            done: Vec::new(),
            batch: Vec::new(),
            queue: None,
            results: mpsc::channel(),
        })
    }

    fn push(&mut self, commit: Oid) {
        let n = self.done.len();
        if n < INLINE {
            self.done
                .push(Some(ledger::read_linked(&mut self.objects, commit)));
            return;
        }
        self.done.push(None);
        self.batch.push((n, commit));
        if self.batch.len() >= BATCH {
            self.send();
        }
    }

    /// Queues the pending batch, starting the workers on first use: one fewer than the
    /// machine's cores (the scanning thread is the last one), at least one.
    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let (queue, _) = self.queue.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel();
            let rx = Arc::new(Mutex::new(rx));
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            for _ in 0..cores.clamp(2, 4) - 1 {
                let (rx, results) = (rx.clone(), self.results.0.clone());
                let path = self.repo.path().to_path_buf();
                self.scope.spawn(move || {
                    // A worker that cannot open the repository leaves the work to the others.
                    if let Ok(repo) = Repository::open(&path) {
                        if let Ok(mut objects) = Objects::open(&repo) {
                            drain(&mut objects, &rx, &results);
                        }
                    }
                });
            }
            (tx, rx)
        });
        // The receiving end lives as long as `self`: sending cannot fail.
        let _ = queue.send(std::mem::take(&mut self.batch));
    }

    /// Every entry pushed, in push order; the first error if any read failed.
    fn finish(mut self) -> Result<Vec<(Stored, Option<Oid>)>, AuditError> {
        self.send();
        let Reader {
            mut objects,
            mut done,
            queue,
            results: (tx, rx),
            ..
        } = self;
        if let Some((queue, shared)) = queue {
            drop(queue);
            drain(&mut objects, &shared, &tx);
        }
        drop(tx);
        for (n, read) in rx.into_iter().flatten() {
            if let Some(slot) = done.get_mut(n) {
                *slot = Some(read);
            }
        }
        done.into_iter()
            .map(|read| {
                read.unwrap_or_else(|| {
                    Err(AuditError::Missing("a query thread stopped early".into()))
                })
            })
            .collect()
    }
}

/// Parses `--since`/`--until`: a date (`2026-01-22`, midnight UTC; for `until` the end of
/// that day) or an RFC 3339 time.
pub fn parse_time(text: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let time = if end_of_day {
            d.and_hms_opt(23, 59, 59)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
        if let Some(time) = time {
            return Ok(time.and_utc());
        }
    }
    Err(format!(
        "'{t}' is not a date or time; write 2026-01-22 or 2026-01-22T15:30:00Z"
    ))
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Jsonl,
    Csv,
}

/// Renders `entries` in `format`.
pub fn render(entries: &[Stored], format: Format) -> String {
    match format {
        Format::Jsonl => {
            let mut out = String::new();
            for s in entries {
                out.push_str(&canonical(&s.entry.0));
                out.push('\n');
            }
            out
        }
        Format::Json => {
            let items: Vec<serde_json::Value> = entries
                .iter()
                .map(|s| serde_json::Value::Object(s.entry.0.clone()))
                .collect();
            let mut text = serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into());
            text.push('\n');
            text
        }
        Format::Csv => render_csv(entries),
        Format::Text => render_text(entries),
    }
}

fn render_csv(entries: &[Stored]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = FIELDS.to_vec();
    header.push("commit");
    let _ = w.write_record(&header);
    for s in entries {
        let mut row: Vec<String> = FIELDS
            .iter()
            .map(|k| match s.entry.0.get(*k) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(v)) => v.clone(),
                Some(serde_json::Value::Object(m)) => canonical(m),
                Some(v) => v.to_string(),
            })
            .collect();
        row.push(s.commit.to_string());
        let _ = w.write_record(&row);
    }
    w.into_inner()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn render_text(entries: &[Stored]) -> String {
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|s| {
            let e = &s.entry;
            let details = e.details().map(canonical).unwrap_or_default();
            let details = if details.chars().count() > 60 {
                format!("{}…", details.chars().take(59).collect::<String>())
            } else {
                details
            };
            [
                e.ts().to_string(),
                e.event().to_string(),
                e.spec_id().unwrap_or("-").to_string(),
                e.actor().to_string(),
                details,
            ]
        })
        .collect();
    let headers = ["TS", "EVENT", "SPEC", "ACTOR", "DETAILS"];
    let mut widths = headers.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()).take(4) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 4 {
                s.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                s.push_str(&" ".repeat(pad + 2));
            } else {
                s.push_str(cell);
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers);
    out.push('\n');
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
        out.push('\n');
    }
    out
}
