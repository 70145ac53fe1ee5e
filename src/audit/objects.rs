//! Reads commit objects straight out of the repository's pack files, for walks over a long
//! ledger, where libgit2's general reader spends most of its time setting up and tearing
//! down a zlib stream per object.
//!
//! Only the common case is handled here: a whole (not deltified) commit in a version 2
//! pack index with SHA-1 ids. Everything else — loose objects, deltas, alternates, odd or
//! damaged files — goes to libgit2, so this reader is never the one that decides an
//! object is missing or corrupt. Unlike libgit2 (which hashes every object it reads) it
//! does not check that the bytes hash to the id: callers do, with [`hashes_to`], where
//! it can run off the walking thread (verify's workers, [`super::ledger::read_linked`]).
//! A walk reads the parent from bytes not yet checked, so [`LoopCheck`] keeps a forged
//! object from sending it round in circles.

use std::fs::File;
use std::path::Path;
use std::sync::{mpsc, Mutex};

use flate2::{Decompress, FlushDecompress, Status};
use git2::{ObjectType, Oid, Repository};
use memmap2::Mmap;
use sha1::{Digest, Sha1};

use super::AuditError;

/// Object type number of a commit in the pack format.
const OBJ_COMMIT: u8 = 1;
/// Larger commits are left to libgit2 (a ledger commit is well under 4 KiB).
const MAX_FAST: usize = 1 << 20;

/// Reads commits by id: from the packs when it can, else through libgit2's object database.
pub struct Objects<'r> {
    odb: git2::Odb<'r>,
    packs: Vec<Pack>,
    /// The pack the last object came from: a ledger's neighbours mostly share a pack.
    last: usize,
    zlib: Decompress,
}

/// One pack and its index, mapped read-only. Git never rewrites a pack in place (new
/// packs are renamed into place; `git gc` unlinks old ones, which keeps a mapping valid).
struct Pack {
    idx: Mmap,
    data: Mmap,
    count: usize,
}

impl<'r> Objects<'r> {
    /// Opens the packs of `repo`. A pack that cannot be mapped or does not look right is
    /// skipped: its objects are then read through libgit2.
    pub fn open(repo: &'r Repository) -> Result<Objects<'r>, git2::Error> {
        let odb = repo.odb()?;
        let mut packs = Vec::new();
        // A linked worktree's objects live in the main repository's git dir.
        let pack_dir = repo.commondir().join("objects").join("pack");
        if let Ok(dir) = std::fs::read_dir(pack_dir) {
            for entry in dir.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "idx") {
                    if let Some(pack) = Pack::open(&path) {
                        packs.push(pack);
                    }
                }
            }
        }
        // Biggest first: most lookups hit the pack holding most of the ledger.
        packs.sort_by_key(|p| std::cmp::Reverse(p.count));
        Ok(Objects {
            odb,
            packs,
            last: 0,
            zlib: Decompress::new(true),
        })
    }

    /// Reads object `oid` into `out` (replacing its contents) and returns its type (a
    /// commit, unless the ledger is broken). Errors are libgit2's (missing or unreadable
    /// objects).
    pub fn read(&mut self, oid: Oid, out: &mut Vec<u8>) -> Result<ObjectType, git2::Error> {
        out.clear();
        let order =
            std::iter::once(self.last).chain((0..self.packs.len()).filter(|i| *i != self.last));
        for i in order {
            let Some(pack) = self.packs.get(i) else { break };
            if let Some(offset) = pack.find(oid) {
                self.last = i;
                if pack.inflate_commit(offset, &mut self.zlib, out) {
                    return Ok(ObjectType::Commit);
                }
                break;
            }
        }
        let object = self.odb.read(oid)?;
        out.clear();
        out.extend_from_slice(object.data());
        Ok(object.kind())
    }
}

impl Pack {
    fn open(idx_path: &Path) -> Option<Pack> {
        let map = |path: &Path| -> Option<Mmap> {
            let file = File::open(path).ok()?;
            // SAFETY: pack files are immutable once in place (see `Pack`); every read
            // below is bounds-checked, so even a truncated file cannot be over-read.
            unsafe { Mmap::map(&file) }.ok()
        };
        let idx = map(idx_path)?;
        let data = map(&idx_path.with_extension("pack"))?;
        // Version 2 index: magic, version, 256 fan-out counts, then per object a 20-byte
        // id, a CRC and a 4-byte offset, then 8-byte offsets, then two 20-byte checksums.
        if idx.get(..8)? != b"\xfftOc\0\0\0\x02" || data.get(..4)? != b"PACK" {
            return None;
        }
        let count = be32(&idx, 8 + 255 * 4)? as usize;
        if idx.len() < 8 + 256 * 4 + count * 28 + 40 {
            return None; // not SHA-1 ids, or truncated
        }
        Some(Pack { idx, data, count })
    }

    /// The offset of `oid` in the pack, if the index lists it.
    fn find(&self, oid: Oid) -> Option<usize> {
        let id = oid.as_bytes();
        let first = usize::from(*id.first()?);
        let lo = if first == 0 {
            0
        } else {
            be32(&self.idx, 8 + (first - 1) * 4)? as usize
        };
        let hi = (be32(&self.idx, 8 + first * 4)? as usize).min(self.count);
        let names = self.idx.get(8 + 256 * 4..8 + 256 * 4 + self.count * 20)?;
        // Compare the first 8 bytes as a number, and all 20 only when those are equal.
        let key = u64::from_be_bytes(id.get(..8)?.try_into().ok()?);
        let (mut lo, mut hi) = (lo, hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let name = names.get(mid * 20..mid * 20 + 20)?;
            let prefix = u64::from_be_bytes(name.get(..8)?.try_into().ok()?);
            match prefix.cmp(&key).then_with(|| name.cmp(id)) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.offset(mid),
            }
        }
        None
    }

    fn offset(&self, i: usize) -> Option<usize> {
        let table = 8 + 256 * 4 + self.count * 24;
        let small = be32(&self.idx, table + i * 4)?;
        if small & 0x8000_0000 == 0 {
            return Some(small as usize);
        }
        let large = table + self.count * 4 + (small & 0x7fff_ffff) as usize * 8;
        let bytes = self.idx.get(large..large + 8)?;
        usize::try_from(u64::from_be_bytes(bytes.try_into().ok()?)).ok()
    }

    /// Inflates the whole commit at `offset` into `out`; false when the object is not
    /// one (a delta, another type, too big) or anything about it is off.
    fn inflate_commit(&self, offset: usize, zlib: &mut Decompress, out: &mut Vec<u8>) -> bool {
        // Type and size: 3 type bits and 4 size bits, then 7 size bits a byte.
        let Some(&first) = self.data.get(offset) else {
            return false;
        };
        if (first >> 4) & 7 != OBJ_COMMIT {
            return false;
        }
        let mut size = usize::from(first & 0x0f);
        let mut shift = 4;
        let mut at = offset;
        let mut byte = first;
        while byte & 0x80 != 0 {
            at += 1;
            let Some(&next) = self.data.get(at) else {
                return false;
            };
            byte = next;
            if shift > 28 {
                return false;
            }
            size |= usize::from(byte & 0x7f) << shift;
            shift += 7;
        }
        if size > MAX_FAST {
            return false;
        }
        let Some(input) = self.data.get(at + 1..) else {
            return false;
        };
        zlib.reset(true);
        // Room beyond the announced size: an object longer than its header says then
        // fails the length check (decompress_vec never grows `out`), and zlib keeps to
        // its fast loop, which wants ~260 bytes of room, up to the last byte.
        out.reserve_exact(size + 320);
        matches!(
            zlib.decompress_vec(input, out, FlushDecompress::Finish),
            Ok(Status::StreamEnd)
        ) && out.len() == size
    }
}

/// A commit as a walk read it.
pub struct Read {
    pub commit: Oid,
    /// The raw commit object (headers, blank line, message).
    pub data: Vec<u8>,
    /// The first parent as the walk saw it: the `parent` line right after `tree`.
    pub parent: Option<Oid>,
}

/// What a walk does with the commit it comes to next.
pub enum Step {
    /// Stop before it.
    Stop,
    /// Read it and go on to its parent.
    Take,
    /// Read it and stop.
    TakeLast,
}

/// Commits per batch handed to a worker.
const BATCH: usize = 2048;

/// Walks the first parents from `head`, newest first, and runs `work` on every commit
/// taken. Reading is sequential (each commit names the next), so this thread only reads
/// and finds the parent while worker threads, one per core, run `work` on batches; the
/// results come back newest first. `step` is asked about each commit before it is read.
pub fn walk<T: Send>(
    repo: &Repository,
    head: Oid,
    mut step: impl FnMut(Oid) -> Step,
    work: impl Fn(Read) -> T + Sync,
) -> Result<Vec<T>, AuditError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (batch_tx, batch_rx) = mpsc::sync_channel::<(usize, Vec<Read>)>(workers * 2);
    let batch_rx = Mutex::new(batch_rx);
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<(usize, Vec<T>)>();
        for _ in 0..workers {
            let (batch_rx, done_tx, work) = (&batch_rx, done_tx.clone(), &work);
            scope.spawn(move || loop {
                let next = match batch_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok((index, batch)) = next else { return };
                let out = batch.into_iter().map(work).collect();
                if done_tx.send((index, out)).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        let read = (|| {
            let mut objects = Objects::open(repo)?;
            let mut batch = Vec::with_capacity(BATCH);
            let mut index = 0;
            let mut next = Some(head);
            let mut loops = LoopCheck::default();
            while let Some(oid) = next {
                loops.visit(oid)?;
                let last = match step(oid) {
                    Step::Stop => break,
                    Step::Take => false,
                    Step::TakeLast => true,
                };
                let mut data = Vec::new();
                let kind = objects.read(oid, &mut data)?;
                if kind != ObjectType::Commit {
                    return Err(not_a_commit(oid, kind));
                }
                let parent = first_parent(&data);
                next = if last { None } else { parent };
                batch.push(Read {
                    commit: oid,
                    data,
                    parent,
                });
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if batch_tx.send((index, full)).is_err() {
                        break;
                    }
                    index += 1;
                }
            }
            if !batch.is_empty() {
                let _ = batch_tx.send((index, batch));
            }
            Ok(())
        })();
        drop(batch_tx);
        let mut parts: Vec<(usize, Vec<T>)> = done_rx.iter().collect();
        read?;
        parts.sort_by_key(|(i, _)| *i);
        Ok(parts.into_iter().flat_map(|(_, v)| v).collect())
    })
}

/// Catches a walk that comes back to a commit it has already passed. A commit cannot be
/// its own ancestor, but objects whose bytes do not hash to their ids (a forged pack) can
/// make a loop, which would otherwise be walked forever. Brent's method: one comparison a
/// step, caught within twice the loop's length.
#[derive(Default)]
pub struct LoopCheck {
    mark: Option<Oid>,
    power: usize,
    since_mark: usize,
}

impl LoopCheck {
    /// Notes that the walk reached `oid`; an error if it has been round to it before.
    pub fn visit(&mut self, oid: Oid) -> Result<(), AuditError> {
        if self.mark == Some(oid) {
            return Err(AuditError::Broken {
                commit: oid.to_string(),
                reason: "the ledger loops back to this commit, so some object does not hash \
                         to its id (the object database is corrupt; `git fsck` says more)"
                    .into(),
            });
        }
        if self.since_mark == self.power {
            self.mark = Some(oid);
            self.power = (self.power * 2).max(1);
            self.since_mark = 0;
        }
        self.since_mark += 1;
        Ok(())
    }
}

/// The error for a ledger "commit" that is some other kind of object.
pub fn not_a_commit(oid: Oid, kind: ObjectType) -> AuditError {
    AuditError::Broken {
        commit: oid.to_string(),
        reason: format!("is a {kind}, not a commit"),
    }
}

/// The message of a raw commit: what follows the first blank line.
pub fn message(data: &[u8]) -> &[u8] {
    blank_line(data).map_or(&[], |i| &data[i + 2..])
}

/// The JSON body of a ledger commit's message (after the subject and a blank line),
/// without trailing newlines, when it is UTF-8.
pub fn body(message: &[u8]) -> Option<&str> {
    let i = blank_line(message)?;
    std::str::from_utf8(&message[i + 2..])
        .ok()
        .map(|b| b.trim_end_matches('\n'))
}

/// Where the first blank line (`\n\n`) of `data` starts.
pub fn blank_line(data: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', data).find(|&i| data.get(i + 1) == Some(&b'\n'))
}

/// The first parent of a raw commit, where git writes it: the line after `tree`.
pub fn first_parent(data: &[u8]) -> Option<Oid> {
    data.split(|b| *b == b'\n')
        .take(2)
        .find_map(|line| line.strip_prefix(b"parent "))
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|p| Oid::from_str(p).ok())
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// What is wrong with an object whose bytes do not hash to its id.
pub const NOT_ITS_ID: &str =
    "the object's content does not hash to its id (the object database is corrupt; `git fsck` says more)";

/// Whether `data` is the content of commit `oid` (git hashes `commit <len>\0<data>`).
pub fn hashes_to(oid: Oid, data: &[u8]) -> bool {
    use std::io::Write;
    let mut header = [0u8; 32];
    let room = {
        let mut rest = &mut header[..];
        if write!(rest, "commit {}\0", data.len()).is_err() {
            return false;
        }
        rest.len()
    };
    let mut sha = Sha1::new();
    sha.update(&header[..header.len() - room]);
    sha.update(data);
    sha.finalize().as_slice() == oid.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a commit with the empty tree on top of `parent` (none: a root commit).
    fn commit(repo: &Repository, parent: Option<Oid>, message: &str) -> Oid {
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(1_700_000_000, 0))
            .expect("sig");
        let tree = repo
            .find_tree(repo.treebuilder(None).expect("tb").write().expect("tree"))
            .expect("tree");
        let parent = parent.map(|p| repo.find_commit(p).expect("parent"));
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(None, &sig, &sig, message, &tree, &parents)
            .expect("commit")
    }

    /// Writes a pack `objects/pack/<name>-*.pack` (and its index) holding only `oid`.
    fn pack_one(dir: &Path, name: &str, oid: Oid) {
        let pack_dir = dir.join("objects").join("pack");
        std::fs::create_dir_all(&pack_dir).expect("pack dir");
        let out = Command::new("git")
            .args(["pack-objects", "-q", "--window=0"])
            .arg(pack_dir.join(name))
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                writeln!(child.stdin.take().expect("stdin"), "{oid}")?;
                child.wait_with_output()
            })
            .expect("pack-objects");
        assert!(out.status.success());
    }

    /// A repository with a line of `n` commits on `refs/chant/audit`, oldest first.
    fn repo_with_commits(n: usize) -> (tempfile::TempDir, Vec<Oid>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let mut commits: Vec<Oid> = Vec::new();
        for i in 0..n {
            // Similar messages, so that a repack with a window makes deltas of them.
            let msg = format!("entry {i}\n\n{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(300));
            commits.push(commit(&repo, commits.last().copied(), &msg));
        }
        let tip = *commits.last().expect("commits");
        repo.reference("refs/chant/audit", tip, true, "test")
            .expect("ref");
        (dir, commits)
    }

    /// Reads every commit with `Objects` and with libgit2; returns how many came from a
    /// pack without libgit2.
    fn read_all(dir: &Path, commits: &[Oid]) -> usize {
        let repo = Repository::open_bare(dir).expect("open");
        let mut objects = Objects::open(&repo).expect("objects");
        let odb = repo.odb().expect("odb");
        let mut fast = 0;
        let mut buf = Vec::new();
        for oid in commits {
            assert_eq!(
                objects.read(*oid, &mut buf).expect("read"),
                ObjectType::Commit
            );
            assert_eq!(buf, odb.read(*oid).expect("odb read").data(), "{oid}");
            assert!(hashes_to(*oid, &buf));
            let in_pack = objects.packs.iter().find_map(|p| p.find(*oid));
            if let Some(offset) = in_pack {
                let pack = objects
                    .packs
                    .iter()
                    .find(|p| p.find(*oid).is_some())
                    .expect("pack");
                let mut direct = Vec::new();
                if pack.inflate_commit(offset, &mut objects.zlib, &mut direct) {
                    assert_eq!(direct, buf);
                    fast += 1;
                }
            }
        }
        fast
    }

    #[test]
    fn reads_loose_whole_and_deltified_commits_as_libgit2_does() {
        let (dir, commits) = repo_with_commits(60);
        // Loose: all through libgit2.
        assert_eq!(read_all(dir.path(), &commits), 0);
        // Packed whole (no delta search): all from the pack.
        git(
            dir.path(),
            &["repack", "-a", "-d", "-f", "--window=0", "-q"],
        );
        assert_eq!(read_all(dir.path(), &commits), commits.len());
        // Packed with deltas: the deltas go through libgit2, the rest from the pack.
        git(
            dir.path(),
            &[
                "repack",
                "-a",
                "-d",
                "-f",
                "--window=50",
                "--depth=50",
                "-q",
            ],
        );
        let fast = read_all(dir.path(), &commits);
        assert!(
            fast < commits.len(),
            "expected some deltas, got {fast} whole"
        );
        assert!(fast > 0);
    }

    #[test]
    fn reads_through_64_bit_offsets_and_across_packs() {
        let (dir, commits) = repo_with_commits(40);
        git(
            dir.path(),
            &["repack", "-a", "-d", "-f", "--window=0", "-q"],
        );
        // A second pack with the newer half (the older half stays in the first).
        let (older, newer) = commits.split_at(20);
        let repo = Repository::open_bare(dir.path()).expect("open");
        let extra = commit(&repo, newer.last().copied(), "extra");
        pack_one(dir.path(), "extra", extra);
        let pack_dir = dir.path().join("objects").join("pack");
        // Every object of the first pack past byte 64 now sits behind a 64-bit offset.
        for idx in std::fs::read_dir(&pack_dir).expect("dir").flatten() {
            let path = idx.path();
            if path.extension().is_some_and(|e| e == "idx") {
                let pack = path.with_extension("pack");
                let tmp = dir.path().join("reindexed.idx");
                git(
                    dir.path(),
                    &[
                        "index-pack",
                        "--index-version=2,64",
                        "-o",
                        &tmp.to_string_lossy(),
                        &pack.to_string_lossy(),
                    ],
                );
                std::fs::rename(&tmp, &path).expect("rename");
            }
        }
        let mut all: Vec<Oid> = older.iter().chain(newer).copied().collect();
        all.push(extra);
        assert_eq!(read_all(dir.path(), &all), all.len());
        let objects = Objects::open(&repo).expect("objects");
        assert_eq!(objects.packs.len(), 2);
        let large = objects.packs.iter().any(|p| {
            (0..p.count).any(|i| {
                be32(&p.idx, 8 + 256 * 4 + p.count * 24 + i * 4)
                    .is_some_and(|o| o & 0x8000_0000 != 0)
            })
        });
        assert!(large, "no 64-bit offsets were written");
    }

    #[test]
    fn a_commit_that_does_not_hash_to_its_id_is_told_apart() {
        let (dir, commits) = repo_with_commits(2);
        let repo = Repository::open_bare(dir.path()).expect("open");
        let odb = repo.odb().expect("odb");
        let data = odb.read(commits[1]).expect("read").data().to_vec();
        assert!(hashes_to(commits[1], &data));
        assert!(!hashes_to(commits[0], &data));
        let mut edited = data.clone();
        let last = edited.len() - 2;
        edited[last] ^= 1;
        assert!(!hashes_to(commits[1], &edited));
    }

    #[test]
    fn a_linked_worktree_reads_the_main_repository_s_packs() {
        let (dir, commits) = repo_with_commits(3);
        git(
            dir.path(),
            &["repack", "-a", "-d", "-f", "--window=0", "-q"],
        );
        let tip = commits[2].to_string();
        let wt = dir.path().join("wt");
        git(
            dir.path(),
            &[
                "worktree",
                "add",
                "-q",
                "--detach",
                &wt.to_string_lossy(),
                &tip,
            ],
        );
        let repo = Repository::open(&wt).expect("open worktree");
        assert!(repo.is_worktree());
        let objects = Objects::open(&repo).expect("objects");
        assert_eq!(objects.packs.len(), 1);
    }

    #[test]
    fn a_walk_that_loops_through_a_forged_object_stops_with_an_error() {
        // A <- B, and a forged pack object labelled A whose bytes are a commit on top of B:
        // read through that pack, A's parent is B, and the walk would go round forever.
        let (dir, commits) = repo_with_commits(2);
        let (a, b) = (commits[0], commits[1]);
        let repo = Repository::open_bare(dir.path()).expect("open");
        let forged = commit(&repo, Some(b), "forged");
        pack_one(dir.path(), "forged", forged);
        let pack_dir = dir.path().join("objects").join("pack");
        let idx_path = std::fs::read_dir(&pack_dir)
            .expect("dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "idx"))
            .expect("idx");
        let mut idx = std::fs::read(&idx_path).expect("idx");
        let first = usize::from(a.as_bytes()[0]);
        for i in 0..256 {
            let count: u32 = if i >= first { 1 } else { 0 };
            idx[8 + i * 4..12 + i * 4].copy_from_slice(&count.to_be_bytes());
        }
        idx[8 + 1024..8 + 1024 + 20].copy_from_slice(a.as_bytes());
        let _ = std::fs::remove_file(&idx_path);
        std::fs::write(&idx_path, idx).expect("write idx");
        let repo = Repository::open_bare(dir.path()).expect("open");
        let mut seen = 0usize;
        let result = walk(
            &repo,
            b,
            |_| {
                seen += 1;
                assert!(seen < 1000, "the walk went round {seen} times");
                Step::Take
            },
            |read| read.commit,
        );
        match result {
            Err(AuditError::Broken { reason, .. }) => assert!(reason.contains("loops back")),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(v) => panic!("walked {} commits", v.len()),
        }
        // The entry-by-entry walk (sync, ship) ends too.
        let steps: Vec<String> = super::super::ledger::Walk::new(&repo, Some(b))
            .take(1000)
            .map(|r| match r {
                Ok(s) => s.commit.to_string(),
                Err(e) => e.to_string(),
            })
            .collect();
        assert!(steps.len() < 1000, "{steps:?}");
        // And a single read through this reader refuses the forged bytes.
        let mut objects = Objects::open(&repo).expect("objects");
        match super::super::ledger::read_linked(&mut objects, a) {
            Err(AuditError::Broken { reason, .. }) => assert_eq!(reason, NOT_ITS_ID),
            other => panic!("read the forged object: {:?}", other.map(|(s, _)| s.commit)),
        }
    }

    #[test]
    fn damaged_or_foreign_files_are_skipped_not_trusted() {
        let (dir, commits) = repo_with_commits(5);
        git(
            dir.path(),
            &["repack", "-a", "-d", "-f", "--window=0", "-q"],
        );
        let pack_dir = dir.path().join("objects").join("pack");
        // A truncated index and a stray file next to the real pack.
        std::fs::write(pack_dir.join("pack-0000.idx"), b"\xfftOc\0\0\0\x02short").expect("w");
        std::fs::write(pack_dir.join("pack-0000.pack"), b"PACK").expect("w");
        std::fs::write(pack_dir.join("notes.txt"), b"hello").expect("w");
        let repo = Repository::open_bare(dir.path()).expect("open");
        let objects = Objects::open(&repo).expect("objects");
        assert_eq!(objects.packs.len(), 1);
        assert_eq!(read_all(dir.path(), &commits), commits.len());
    }
}
