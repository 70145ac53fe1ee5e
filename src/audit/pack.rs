//! A minimal pack file writer (version 2, no deltas) for batch appends: thousands of
//! commits become one file that git's own indexer then checks and indexes.
//!
//! Writing loose objects costs a file per entry, and libgit2's pack builder spends most of
//! its time searching for deltas that tiny ledger commits do not need. This module only
//! serialises objects; it never touches the repository.

use flate2::{Compress, Compression, FlushCompress, Status};
use git2::{ObjectType, Oid};
use sha1::{Digest, Sha1};

/// Object type number of a commit in the pack format.
const OBJ_COMMIT: u8 = 1;

pub struct Writer {
    buf: Vec<u8>,
    count: u32,
    /// One zlib stream, reset per object: setting one up allocates and clears ~256 KiB,
    /// which would cost more than compressing a ledger commit.
    zlib: Compress,
}

impl Writer {
    pub fn new(expected: usize) -> Writer {
        let mut buf = Vec::with_capacity(12 + expected * 512);
        buf.extend_from_slice(b"PACK");
        buf.extend_from_slice(&2u32.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes()); // object count, patched in finish()
        Writer {
            buf,
            count: 0,
            zlib: Compress::new(Compression::fast(), true),
        }
    }

    /// Adds a commit object; returns its id.
    pub fn add_commit(&mut self, data: &[u8]) -> std::io::Result<Oid> {
        let oid = Oid::hash_object(ObjectType::Commit, data)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // Type and size header: 3 type bits and 4 size bits, then 7 size bits a byte.
        let mut size = data.len();
        let mut byte = (OBJ_COMMIT << 4) | (size & 0x0f) as u8;
        size >>= 4;
        while size > 0 {
            self.buf.push(byte | 0x80);
            byte = (size & 0x7f) as u8;
            size >>= 7;
        }
        self.buf.push(byte);
        self.zlib.reset();
        let start_in = self.zlib.total_in();
        loop {
            // zlib's bound for stored data plus headroom; grows if ever short.
            self.buf.reserve(data.len() + data.len() / 8 + 64);
            let consumed = (self.zlib.total_in() - start_in) as usize;
            let status = self
                .zlib
                .compress_vec(&data[consumed..], &mut self.buf, FlushCompress::Finish)
                .map_err(std::io::Error::other)?;
            if status == Status::StreamEnd {
                break;
            }
        }
        self.count += 1;
        Ok(oid)
    }

    /// The complete pack: header with the count, objects, SHA-1 trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[8..12].copy_from_slice(&self.count.to_be_bytes());
        let digest = Sha1::digest(&self.buf);
        self.buf.extend_from_slice(&digest);
        self.buf
    }
}
