//! The file sink: a mirror of ledger entries in `audit.file` (jsonl, json or text), rotated
//! daily into `<file>.YYYY-MM-DD` and pruned after `audit.retain`.
//!
//! The ref is the source of truth; this file is a convenience for log shippers and people
//! who grep. Every failure here comes back as a warning, never as an error, and never
//! undoes a ledger entry. Time comes from `crate::clock::now()`, so tests move it with
//! `CHANT_TIMESTAMP`. This module never prints.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::chain::canonical;
use super::ledger::Stored;
use crate::config::{AuditConfig, AuditFormat, Rotate};

/// Mirrors `stored` to the file sink of `config`, relative to the work tree `root`.
/// Returns the problems met (empty when all went well).
pub fn mirror(root: &Path, config: &AuditConfig, stored: &[Stored]) -> Vec<String> {
    let path = root.join(&config.file);
    let mut warnings = Vec::new();
    if let Err(e) = write(&path, config, stored, &mut warnings) {
        warnings.push(format!(
            "audit sink {}: {e} (the entries are safe on refs/chant/audit)",
            path.display()
        ));
    }
    warnings
}

fn write(
    path: &Path,
    config: &AuditConfig,
    stored: &[Stored],
    warnings: &mut Vec<String>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let now = crate::clock::now();
    let today = now.format("%Y-%m-%d").to_string();
    if config.rotate == Rotate::Daily {
        if let Some(day) = file_day(path) {
            if day != today {
                let target = rotated_name(path, &day);
                std::fs::rename(path, &target)?;
                let cutoff = (now
                    - chrono::Duration::from_std(config.retain.duration())
                        .unwrap_or(chrono::Duration::MAX))
                .date_naive();
                prune(path, cutoff, warnings);
            }
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    let mut text = String::new();
    match config.format {
        AuditFormat::Jsonl => {
            for s in stored {
                text.push_str(&canonical(&s.entry.0));
                text.push('\n');
            }
        }
        AuditFormat::Text => {
            for s in stored {
                text.push_str(&text_line(s));
                text.push('\n');
            }
        }
        AuditFormat::Json => {
            // A JSON array kept valid after every append: drop the closing "]\n" and
            // write the new entries and a new closing bracket.
            let len = file.metadata()?.len();
            let mut first = len == 0;
            if len >= 2 {
                let mut tail = [0u8; 2];
                file.seek(SeekFrom::Start(len - 2))?;
                file.read_exact(&mut tail)?;
                if &tail == b"]\n" {
                    file.set_len(len - 2)?;
                    first = len <= 4; // "[\n]\n"
                }
            }
            if len == 0 {
                text.push_str("[\n");
            }
            for s in stored {
                if !first {
                    text.push_str(",\n");
                }
                first = false;
                text.push_str(&canonical(&s.entry.0));
            }
            text.push_str("\n]\n");
        }
    }
    file.write_all(text.as_bytes())
}

/// One line of the text format.
pub fn text_line(s: &Stored) -> String {
    let e = &s.entry;
    let details = e.details().map(canonical).unwrap_or_default();
    format!(
        "{}  {:<16} {:<20} {:<12} {}",
        e.ts(),
        e.event(),
        e.spec_id().unwrap_or("-"),
        e.actor(),
        details
    )
}

/// The day (`YYYY-MM-DD`) of the first entry in the sink file, if it has one.
fn file_day(path: &Path) -> Option<String> {
    let mut head = vec![0u8; 4096];
    let mut file = std::fs::File::open(path).ok()?;
    let n = file.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    let start = match text.find("\"ts\":\"") {
        Some(i) => i + 6,
        None => 0, // the text format starts with the ts
    };
    let day = text.get(start..start + 10)?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .map(|_| day.to_string())
}

fn rotated_name(path: &Path, day: &str) -> PathBuf {
    let base = format!("{}.{day}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// Removes rotated files whose day is before `cutoff`.
fn prune(path: &Path, cutoff: NaiveDate, warnings: &mut Vec<String>) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{name}.");
    for entry in entries.filter_map(Result::ok) {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(day) = rest.get(..10) else { continue };
        let Ok(date) = NaiveDate::parse_from_str(day, "%Y-%m-%d") else {
            continue;
        };
        if date < cutoff {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                warnings.push(format!(
                    "audit sink: cannot prune {}: {e}",
                    entry.path().display()
                ));
            }
        }
    }
}
