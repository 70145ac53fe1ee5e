//! Compliance queries over the ledger: filters by actor, spec, event and time, served from
//! the derived index (see [`super::index`]) and confirmed against the commits themselves.
//!
//! Results come oldest first (ledger order); `limit` keeps the most recent ones. Output
//! formats (text table, JSON array, JSON lines, CSV) are rendered to strings here; the CLI
//! prints them. This module never prints and never changes the ledger.

use chrono::{DateTime, NaiveDate, Utc};
use git2::Repository;

use super::chain::canonical;
use super::entry::{Entry, FIELDS};
use super::index::{self, Record};
use super::ledger::{self, Stored};
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
        self.matches_fields(r.ts, &r.event, r.spec_id.as_deref(), &r.actor)
    }

    fn matches_entry(&self, e: &Entry) -> bool {
        let ts = DateTime::parse_from_rfc3339(e.ts()).map_or(0, |t| t.timestamp());
        self.matches_fields(ts, e.event(), e.spec_id(), e.actor())
    }
}

/// Runs `filter` over the ledger of `repo`.
pub fn run(repo: &Repository, filter: &Filter) -> Result<Vec<Stored>, AuditError> {
    let index = index::refresh(repo)?;
    let since = filter.since.map(|s| s.timestamp());
    let mut out = Vec::new();
    for record in index.newest_first() {
        if filter.limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        if since.is_some_and(|s| record.max_ts < s) {
            break; // nothing at or before this record is recent enough
        }
        if !filter.matches_record(&record) {
            continue;
        }
        // The index only points; the commit says what the entry is.
        let stored = ledger::read(repo, record.commit)?;
        if filter.matches_entry(&stored.entry) {
            out.push(stored);
        }
    }
    out.reverse();
    Ok(out)
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
