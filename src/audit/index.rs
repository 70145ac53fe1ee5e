//! The query index: a derived, append-only file of compact records under
//! `<git dir>/chant/audit/`, one line per ledger commit, oldest first:
//!
//! ```text
//! <max ts so far>\t<ts>\t<event>\t<spec_id or ->\t<actor>\t<commit>\n
//! ```
//!
//! (times in Unix seconds; `%`, tab and newlines percent-escaped). `index.head` holds the
//! indexed head, the record count and the byte length. The index is brought up to the
//! ref's head on every use — incrementally from the indexed head, or from scratch when the
//! head no longer descends from it — and never trusted over the ref: queries re-read each
//! matching entry from its commit and re-apply the filter. Losing or corrupting the index
//! costs a rebuild, nothing else. This module never prints.

use std::io::Write;
use std::path::PathBuf;

use chrono::DateTime;
use git2::{Oid, Repository};

use super::{ledger, AuditError};

/// One record of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The greatest `ts` of this record and all before it (lets a time-bounded query stop
    /// early while scanning newest first, even if clocks went backwards).
    pub max_ts: i64,
    pub ts: i64,
    pub event: String,
    pub spec_id: Option<String>,
    pub actor: String,
    pub commit: Oid,
}

/// The index, loaded and current with the ref.
pub struct Index {
    pub head: Option<Oid>,
    bytes: Vec<u8>,
}

impl Index {
    /// Records newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = Record> + '_ {
        self.bytes
            .strip_suffix(b"\n")
            .unwrap_or(&self.bytes)
            .rsplit(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(parse_line)
    }
}

fn dir(repo: &Repository) -> PathBuf {
    repo.path().join("chant").join("audit")
}

/// Loads the index of `repo`, bringing it up to date with `refs/chant/audit` first.
pub fn refresh(repo: &Repository) -> Result<Index, AuditError> {
    let head = ledger::head(repo)?;
    let dir = dir(repo);
    let data_path = dir.join("index");
    let head_path = dir.join("index.head");
    let Some(head) = head else {
        return Ok(Index {
            head: None,
            bytes: Vec::new(),
        });
    };
    let indexed = std::fs::read_to_string(&head_path)
        .ok()
        .and_then(|t| parse_head(&t));
    let bytes = match &indexed {
        Some((_, _, len)) => std::fs::read(&data_path)
            .ok()
            .filter(|b| b.len() as u64 >= *len)
            .map(|mut b| {
                b.truncate(*len as usize);
                b
            }),
        None => None,
    };
    // Cheap consistency checks: the last record is the indexed head and the record count
    // matches; anything else is rebuilt.
    let consistent = match (&indexed, &bytes) {
        (Some((oid, count, _)), Some(b)) => {
            last_commit(b) == Some(*oid)
                && b.iter().filter(|c| **c == b'\n').count() as u64 == *count
        }
        _ => false,
    };
    let (indexed, mut bytes) = if consistent {
        (indexed, bytes)
    } else {
        (None, None)
    };
    if let Some((oid, _, _)) = &indexed {
        if *oid == head {
            return Ok(Index {
                head: Some(head),
                bytes: bytes.unwrap_or_default(),
            });
        }
    }
    // Walk back from the head to the indexed head (or the root).
    let stop = indexed.as_ref().map(|(oid, _, _)| *oid);
    let mut new = Vec::new();
    let mut met = false;
    let mut next = Some(head);
    while let Some(oid) = next {
        if Some(oid) == stop {
            met = true;
            break;
        }
        let commit = repo.find_commit(oid)?;
        next = commit.parent_id(0).ok();
        let entry = ledger::parse_message(commit.message_bytes()).ok();
        new.push((oid, entry));
    }
    let mut count = indexed.as_ref().map_or(0, |(_, c, _)| *c);
    let rebuild = !met;
    if rebuild {
        bytes = Some(Vec::new());
        count = 0;
    }
    let mut bytes = bytes.unwrap_or_default();
    let appended_from = bytes.len();
    let mut max_ts = last_max_ts(&bytes);
    for (oid, entry) in new.into_iter().rev() {
        let (ts, event, spec, actor) = match &entry {
            Some(e) => (
                DateTime::parse_from_rfc3339(e.ts()).map_or(0, |t| t.timestamp()),
                e.event().to_string(),
                e.spec_id().map(str::to_string),
                e.actor().to_string(),
            ),
            None => (0, String::new(), None, String::new()),
        };
        max_ts = max_ts.max(ts);
        let line = format!(
            "{max_ts}\t{ts}\t{}\t{}\t{}\t{oid}\n",
            escape(&event),
            spec.as_deref().map_or_else(|| "-".to_string(), escape),
            escape(&actor)
        );
        bytes.extend_from_slice(line.as_bytes());
        count += 1;
    }
    // Persisting is best effort: a read-only git dir still gets correct answers.
    let _ = persist(
        &dir,
        &data_path,
        &head_path,
        &bytes,
        appended_from,
        rebuild,
        head,
        count,
    );
    Ok(Index {
        head: Some(head),
        bytes,
    })
}

#[allow(clippy::too_many_arguments)]
fn persist(
    dir: &std::path::Path,
    data_path: &std::path::Path,
    head_path: &std::path::Path,
    bytes: &[u8],
    appended_from: usize,
    rebuild: bool,
    head: Oid,
    count: u64,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if rebuild {
        crate::atomic::replace(data_path, bytes)?;
    } else {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(data_path)?;
        // Drop anything past the recorded length (a crash between append and head write).
        file.set_len(appended_from as u64)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        file.write_all(&bytes[appended_from..])?;
        file.sync_data()?;
    }
    let text = format!("{head} {count} {}\n", bytes.len());
    crate::atomic::replace(head_path, text.as_bytes())
}

fn parse_head(text: &str) -> Option<(Oid, u64, u64)> {
    let mut parts = text.split_whitespace();
    let oid = Oid::from_str(parts.next()?).ok()?;
    let count = parts.next()?.parse().ok()?;
    let len = parts.next()?.parse().ok()?;
    Some((oid, count, len))
}

fn last_record(bytes: &[u8]) -> Option<Record> {
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let start = trimmed
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    parse_line(&trimmed[start..])
}

fn last_commit(bytes: &[u8]) -> Option<Oid> {
    last_record(bytes).map(|r| r.commit)
}

fn last_max_ts(bytes: &[u8]) -> i64 {
    last_record(bytes).map_or(i64::MIN, |r| r.max_ts)
}

fn parse_line(line: &[u8]) -> Option<Record> {
    let text = std::str::from_utf8(line).ok()?;
    let mut f = text.split('\t');
    let max_ts = f.next()?.parse().ok()?;
    let ts = f.next()?.parse().ok()?;
    let event = unescape(f.next()?);
    let spec = f.next()?;
    let spec_id = (spec != "-").then(|| unescape(spec));
    let actor = unescape(f.next()?);
    let commit = Oid::from_str(f.next()?).ok()?;
    Some(Record {
        max_ts,
        ts,
        event,
        spec_id,
        actor,
        commit,
    })
}

fn escape(text: &str) -> String {
    if !text.contains(['%', '\t', '\n', '\r']) && text != "-" {
        return text.to_string();
    }
    text.replace('%', "%25")
        .replace('\t', "%09")
        .replace('\n', "%0A")
        .replace('\r', "%0D")
        .replace('-', if text == "-" { "%2D" } else { "-" })
}

fn unescape(text: &str) -> String {
    if !text.contains('%') {
        return text.to_string();
    }
    text.replace("%09", "\t")
        .replace("%0A", "\n")
        .replace("%0D", "\r")
        .replace("%2D", "-")
        .replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        for s in ["plain", "a\tb", "100%", "-", "x\ny%0A"] {
            assert_eq!(unescape(&escape(s)), s);
        }
    }
}
