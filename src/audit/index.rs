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
//! matching entry from its commit, re-apply the filter, and check that the record before
//! it in the index is that commit's parent.
//!
//! Records are read newest first, from the end of the file backwards, so a query bounded
//! in time reads only the tail it needs (the `max ts` column says where to stop). A record
//! that does not parse, a count that does not add up at the start of the file, or a broken
//! link makes a [`Corrupt`] error: the caller rebuilds with [`rebuild`] and asks again.
//! Losing or corrupting the index costs a rebuild, nothing else. Updates hold an advisory
//! lock (`flock`) on the index directory, which the kernel drops when a process dies: no
//! lock file is ever left behind. This module never prints.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use chrono::DateTime;
use git2::{Oid, Repository};

use super::objects::{self, Read, Step};
use super::{ledger, AuditError};

/// How much of the file one backwards read takes.
const CHUNK: u64 = 256 * 1024;

/// One record of the index, borrowed from the bytes read; fields are unescaped on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The greatest `ts` of this record and all before it (lets a time-bounded query stop
    /// early while scanning newest first, even if clocks went backwards).
    pub max_ts: i64,
    pub ts: i64,
    event: &'a str,
    spec_id: &'a str,
    actor: &'a str,
    /// The commit's id, checked when asked for.
    commit: &'a str,
}

impl<'a> Record<'a> {
    pub fn event(&self) -> Cow<'a, str> {
        unescape(self.event)
    }

    pub fn spec_id(&self) -> Option<Cow<'a, str>> {
        (self.spec_id != "-").then(|| unescape(self.spec_id))
    }

    pub fn actor(&self) -> Cow<'a, str> {
        unescape(self.actor)
    }

    pub fn commit(&self) -> Result<Oid, Corrupt> {
        match Oid::from_str(self.commit) {
            Ok(oid) if self.commit.len() == 40 => Ok(oid),
            _ => Err(Corrupt(format!("'{}' is not a commit id", self.commit))),
        }
    }
}

/// The index disagrees with itself or with the ledger; [`rebuild`] mends it.
#[derive(Debug)]
pub struct Corrupt(pub String);

/// The index, current with the ref: the persisted file (up to its recorded length) and
/// whatever could not be persisted (a read-only git dir), which follows it.
pub struct Index {
    pub head: Option<Oid>,
    count: u64,
    file: Option<File>,
    file_len: u64,
    unpersisted: Vec<u8>,
}

impl Index {
    /// Records newest first.
    pub fn newest_first(&self) -> Records<'_> {
        self.records(CHUNK)
    }

    fn records(&self, chunk: u64) -> Records<'_> {
        Records {
            index: self,
            chunk,
            start: self.file_len + self.unpersisted.len() as u64,
            buf: Vec::new(),
            cut: usize::MAX,
            seen: 0,
        }
    }

    /// Bytes `[start, end)` of the file followed by the unpersisted records.
    fn read_range(&self, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
        let mut out = vec![0; (end - start) as usize];
        let in_file = end.min(self.file_len).saturating_sub(start) as usize;
        if in_file > 0 {
            match &self.file {
                Some(f) => f.read_exact_at(&mut out[..in_file], start)?,
                None => return Err(std::io::ErrorKind::NotFound.into()),
            }
        }
        let from = start.max(self.file_len) - self.file_len;
        let to = end - self.file_len.min(end);
        if to > from {
            out[in_file..].copy_from_slice(&self.unpersisted[from as usize..to as usize]);
        }
        Ok(out)
    }
}

/// Records newest first, read from the end backwards a chunk at a time.
pub struct Records<'i> {
    index: &'i Index,
    chunk: u64,
    /// Offset of `buf[0]`: everything before it is still unread.
    start: u64,
    /// Unread bytes ending at a record's end (or the record returned last, from `cut` on).
    buf: Vec<u8>,
    cut: usize,
    seen: u64,
}

impl Records<'_> {
    /// The next record, newest first; `None` after the oldest.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, Corrupt>> {
        self.next_record_where(|_| true)
    }

    /// The next record whose raw line `wanted` accepts; the others are passed over without
    /// being parsed (a query's cheap pre-filter: most records of a window do not match).
    pub fn next_record_where(
        &mut self,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Option<Result<Record<'_>, Corrupt>> {
        // The record returned last time is still at the end of `buf`: drop it now.
        self.buf.truncate(self.cut);
        self.cut = usize::MAX;
        loop {
            let body = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            let line_start = match memchr::memrchr(b'\n', body) {
                Some(i) => Some(i + 1),
                None if self.start == 0 => (!body.is_empty()).then_some(0),
                None => None,
            };
            if let Some(from) = line_start {
                let end = body.len();
                if !wanted(&body[from..]) {
                    self.seen += 1;
                    self.buf.truncate(from);
                    continue;
                }
                self.buf.truncate(end);
                self.cut = from;
                self.seen += 1;
                let seen = self.seen;
                return Some(
                    parse_line(&self.buf[from..]).ok_or_else(|| {
                        Corrupt(format!("record {seen} from the end does not parse"))
                    }),
                );
            }
            if self.start == 0 {
                if self.seen != self.index.count {
                    let why = format!(
                        "{} records, index.head says {}",
                        self.seen, self.index.count
                    );
                    self.seen = self.index.count; // said once; the next call ends
                    return Some(Err(Corrupt(why)));
                }
                return None;
            }
            let from = self.start.saturating_sub(self.chunk);
            match self.index.read_range(from, self.start) {
                Ok(mut chunk) => {
                    chunk.extend_from_slice(&self.buf);
                    self.buf = chunk;
                    self.start = from;
                }
                Err(e) => return Some(Err(Corrupt(format!("cannot read the index: {e}")))),
            }
        }
    }
}

fn dir(repo: &Repository) -> PathBuf {
    repo.path().join("chant").join("audit")
}

/// What `index.head` says, checked against the data file.
struct Indexed {
    head: Oid,
    count: u64,
    len: u64,
    file: File,
    max_ts: i64,
}

/// Reads `index.head` and checks it against the data file: long enough, and its last record
/// is the indexed head. `None` when anything is missing or off.
fn indexed(dir: &Path) -> Option<Indexed> {
    let text = std::fs::read_to_string(dir.join("index.head")).ok()?;
    let mut parts = text.split_whitespace();
    let head = Oid::from_str(parts.next()?).ok()?;
    let count = parts.next()?.parse().ok()?;
    let len: u64 = parts.next()?.parse().ok()?;
    let file = File::open(dir.join("index")).ok()?;
    if file.metadata().ok()?.len() < len || len == 0 {
        return None;
    }
    // The last record, read the way queries read (a record may be longer than one read).
    let probe = Index {
        head: None,
        count,
        file: Some(file),
        file_len: len,
        unpersisted: Vec::new(),
    };
    let (last, max_ts) = {
        let mut records = probe.records(4096);
        let record = records.next_record()?.ok()?;
        (record.commit().ok()?, record.max_ts)
    };
    (last == head).then_some(Indexed {
        head,
        count,
        len,
        file: probe.file?,
        max_ts,
    })
}

/// Loads the index of `repo`, bringing it up to date with `refs/chant/audit` first.
pub fn refresh(repo: &Repository) -> Result<Index, AuditError> {
    let Some(head) = ledger::head(repo)? else {
        return Ok(Index::empty());
    };
    let dir = dir(repo);
    match indexed(&dir) {
        Some(i) if i.head == head => update(repo, &dir, head, Some(i)),
        _ => {
            // Someone has to write: one process at a time, and whoever waited looks again.
            let _lock = DirLock::take(&dir);
            update(repo, &dir, head, indexed(&dir))
        }
    }
}

/// Throws the index away and builds it again from the ref.
pub fn rebuild(repo: &Repository) -> Result<Index, AuditError> {
    let Some(head) = ledger::head(repo)? else {
        return Ok(Index::empty());
    };
    let dir = dir(repo);
    let _lock = DirLock::take(&dir);
    update(repo, &dir, head, None)
}

impl Index {
    fn empty() -> Index {
        Index {
            head: None,
            count: 0,
            file: None,
            file_len: 0,
            unpersisted: Vec::new(),
        }
    }
}

/// Brings `indexed` (or nothing) up to `head` and persists what it can.
fn update(
    repo: &Repository,
    dir: &Path,
    head: Oid,
    indexed: Option<Indexed>,
) -> Result<Index, AuditError> {
    let indexed = match indexed {
        Some(i) if i.head == head => {
            return Ok(Index {
                head: Some(head),
                count: i.count,
                file: Some(i.file),
                file_len: i.len,
                unpersisted: Vec::new(),
            })
        }
        other => other,
    };
    // Walk back from the head to the indexed head (or the root); workers turn each
    // commit into its record (all but the running max, which needs the order).
    let stop = indexed.as_ref().map(|i| i.head);
    let mut met = false;
    let step = |oid: Oid| {
        if Some(oid) == stop {
            met = true;
            Step::Stop
        } else {
            Step::Take
        }
    };
    let new = objects::walk(repo, head, step, |read| record_of(&read))?;
    let base = if met { indexed } else { None };
    let mut max_ts = base.as_ref().map_or(i64::MIN, |i| i.max_ts);
    let mut lines = Vec::with_capacity(new.iter().map(|(_, rest)| rest.len() + 12).sum());
    for (ts, rest) in new.iter().rev() {
        max_ts = max_ts.max(*ts);
        lines.extend_from_slice(max_ts.to_string().as_bytes());
        lines.push(b'\t');
        lines.extend_from_slice(rest);
    }
    let count = base.as_ref().map_or(0, |i| i.count) + new.len() as u64;
    let (file, file_len) = match base {
        Some(i) => (Some(i.file), i.len),
        None => (None, 0),
    };
    // Persisting is best effort: a read-only git dir still gets correct answers.
    let (file, file_len, unpersisted) = match persist(dir, file_len, &lines, head, count) {
        Ok(file) => (Some(file), file_len + lines.len() as u64, Vec::new()),
        Err(_) => (file, file_len, lines),
    };
    Ok(Index {
        head: Some(head),
        count,
        file,
        file_len,
        unpersisted,
    })
}

/// A commit's record without its leading running max: its `ts` and the rest of the line.
/// An entry that does not parse gets an empty record, and the bytes are not hashed: the
/// index is a hint, and queries read and check the commit of every record they use.
fn record_of(read: &Read) -> (i64, Vec<u8>) {
    #[derive(serde::Deserialize)]
    struct Fields<'a> {
        #[serde(borrow, default)]
        ts: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        event: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        spec_id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        actor: Option<Cow<'a, str>>,
    }
    let message = objects::message(&read.data);
    // Fast path: only the four fields, as strings; anything else (a field of another
    // type, a duplicate key, a body that is not an object) takes the full parse.
    let body = objects::body(message)
        .filter(|b| b.starts_with('{'))
        .and_then(|b| serde_json::from_str::<Fields>(b).ok());
    let full;
    let (ts, event, spec, actor) = match &body {
        Some(f) => (
            f.ts.as_deref().unwrap_or(""),
            f.event.as_deref().unwrap_or(""),
            f.spec_id.as_deref(),
            f.actor.as_deref().unwrap_or(""),
        ),
        None => {
            full = ledger::parse_message(message).ok();
            match &full {
                Some(e) => (e.ts(), e.event(), e.spec_id(), e.actor()),
                None => ("", "", None, ""),
            }
        }
    };
    let ts = DateTime::parse_from_rfc3339(ts).map_or(0, |t| t.timestamp());
    let line = format!(
        "{ts}\t{}\t{}\t{}\t{}\n",
        escape(event),
        spec.map_or_else(|| "-".to_string(), escape),
        escape(actor),
        read.commit
    );
    (ts, line.into_bytes())
}

/// Writes `lines` after the first `keep` bytes of the data file (replacing it when `keep`
/// is 0), then the head file; returns the data file opened for reading.
fn persist(dir: &Path, keep: u64, lines: &[u8], head: Oid, count: u64) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join("index");
    if keep == 0 {
        crate::atomic::replace(&data, lines)?;
    } else {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(false)
            .open(&data)?;
        // Drop anything past the recorded length (a crash between append and head write).
        file.set_len(keep)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        file.write_all(lines)?;
        file.sync_data()?;
    }
    let text = format!("{head} {count} {}\n", keep + lines.len() as u64);
    crate::atomic::replace(&dir.join("index.head"), text.as_bytes())?;
    File::open(&data)
}

/// An exclusive `flock` on the index directory, released on drop or when the process
/// dies. Best effort: without the directory (read-only git dir) there is nothing to guard.
struct DirLock(Option<File>);

impl DirLock {
    fn take(dir: &Path) -> DirLock {
        let _ = std::fs::create_dir_all(dir);
        let file = File::open(dir).ok().filter(|f| {
            // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) == 0 }
        });
        DirLock(file)
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            // SAFETY: as above; closing the descriptor would release it too.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

/// The `max ts` of a raw record line, if it has one.
pub fn max_ts(line: &[u8]) -> Option<i64> {
    int(&line[..memchr::memchr(b'\t', line)?])
}

/// What a record line holds, tabs around, when one of its text fields is `text`: a
/// pre-filter for [`Records::next_record_where`] (it may also hit another field).
pub fn field_needle(text: &str) -> Vec<u8> {
    format!("\t{}\t", escape(text)).into_bytes()
}

/// Parses one record. Hot: a time-bounded query parses every record in its window, so this
/// splits bytes and checks UTF-8 only on the text fields.
fn parse_line(line: &[u8]) -> Option<Record<'_>> {
    let mut at = 0;
    let mut field = || {
        let len = line[at..].iter().position(|b| *b == b'\t')?;
        let f = &line[at..at + len];
        at += len + 1;
        Some(f)
    };
    let max_ts = int(field()?)?;
    let ts = int(field()?)?;
    let mut text = || std::str::from_utf8(field()?).ok();
    let (event, spec_id, actor) = (text()?, text()?, text()?);
    // The commit is the rest (no tab left, so nothing more follows).
    let commit = std::str::from_utf8(&line[at..]).ok()?;
    Some(Record {
        max_ts,
        ts,
        event,
        spec_id,
        actor,
        commit,
    })
}

/// A decimal integer, optionally negative.
fn int(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Some(if negative { -n } else { n })
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

fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.replace("%09", "\t")
            .replace("%0A", "\n")
            .replace("%0D", "\r")
            .replace("%2D", "-")
            .replace("%25", "%"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_str_parse_within_18_digits() {
        for s in [
            "0",
            "-1",
            "1795541512",
            "-62135596800",
            "999999999999999999",
        ] {
            assert_eq!(int(s.as_bytes()), s.parse().ok(), "{s}");
        }
        for s in ["", "-", "1a", "+1", "1 ", "1234567890123456789"] {
            assert_eq!(int(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn escaping_round_trips() {
        for s in ["plain", "a\tb", "100%", "-", "x\ny%0A"] {
            assert_eq!(unescape(&escape(s)), s);
        }
    }

    fn record(i: u8) -> String {
        let oid = Oid::hash_object(git2::ObjectType::Blob, &[i]).expect("oid");
        format!("{i}\t{i}\tcommand_run\t-\talex\t{oid}\n")
    }

    fn index_of(file: &[u8], unpersisted: &[u8], count: u64) -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index");
        std::fs::write(&path, file).expect("write");
        let index = Index {
            head: None,
            count,
            file: File::open(&path).ok(),
            file_len: file.len() as u64,
            unpersisted: unpersisted.to_vec(),
        };
        (dir, index)
    }

    #[test]
    fn reads_newest_first_across_chunks_and_the_unpersisted_tail() {
        let lines: Vec<String> = (0..40).map(record).collect();
        let file: String = lines[..30].concat();
        let extra: String = lines[30..].concat();
        let (_dir, index) = index_of(file.as_bytes(), extra.as_bytes(), 40);
        // Chunks smaller than a record, of odd sizes, and one that takes it all.
        for chunk in [7, 100, 333, CHUNK] {
            let mut records = index.records(chunk);
            let mut got = Vec::new();
            while let Some(r) = records.next_record() {
                got.push(r.map(|r| r.ts).unwrap_or(-1));
            }
            assert_eq!(got, (0..40).rev().collect::<Vec<i64>>(), "chunk {chunk}");
        }
    }

    #[test]
    fn a_last_record_longer_than_one_read_is_still_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let oid = Oid::hash_object(git2::ObjectType::Blob, b"x").expect("oid");
        let long = format!(
            "{}{}1\t1\tcommand_run\t-\t{}\t{oid}\n",
            record(0),
            record(1),
            "a".repeat(10_000)
        );
        std::fs::write(dir.path().join("index"), &long).expect("write");
        std::fs::write(
            dir.path().join("index.head"),
            format!("{oid} 3 {}\n", long.len()),
        )
        .expect("write");
        let found = indexed(dir.path()).expect("the index is consistent");
        assert_eq!((found.head, found.count, found.max_ts), (oid, 3, 1));
    }

    #[test]
    fn a_count_that_does_not_add_up_or_a_bad_line_is_corrupt() {
        let file: String = (0..3).map(record).collect();
        let ok = |index: &Index| {
            let mut records = index.newest_first();
            let mut results = Vec::new();
            while let Some(r) = records.next_record() {
                results.push(r.is_ok());
            }
            results
        };
        let (_dir, index) = index_of(file.as_bytes(), b"", 4);
        assert_eq!(ok(&index), [true, true, true, false]);
        let bad = format!("{}garbage\n{}", record(0), record(1));
        let (_dir, index) = index_of(bad.as_bytes(), b"", 3);
        assert_eq!(ok(&index), [true, false, true]);
    }
}
