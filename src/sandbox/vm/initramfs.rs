//! The guest's initramfs: a gzip'd `newc` cpio archive, the format the kernel unpacks, and
//! the agent image (a directory or a `.tar`) copied into it.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::transfer::clean_relative;
use super::SandboxError;

/// A minimal writer of the `newc` cpio format the kernel unpacks as initramfs.
/// Compressed with gzip (fast level): busybox and the modules shrink to a third, which the
/// guest then has less to read before it starts.
pub(super) struct Cpio {
    out: flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>>,
    ino: u32,
}

impl Cpio {
    pub(super) fn create(path: &Path) -> std::io::Result<Cpio> {
        Ok(Cpio {
            out: flate2::write::GzEncoder::new(
                std::io::BufWriter::new(std::fs::File::create(path)?),
                flate2::Compression::fast(),
            ),
            ino: 1,
        })
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], mtime: u32) -> std::io::Result<()> {
        let name = name.trim_start_matches('/');
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            mtime,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        pad(&mut self.out, 110 + name.len() + 1)?;
        self.out.write_all(data)?;
        pad(&mut self.out, data.len())
    }

    pub(super) fn dir(&mut self, name: &str, perm: u32) -> std::io::Result<()> {
        self.entry(name, 0o040000 | (perm & 0o7777), &[], 0)
    }

    pub(super) fn file(&mut self, name: &str, data: &[u8], perm: u32) -> std::io::Result<()> {
        self.file_at(name, data, perm, 0)
    }

    /// A file of the image, with its own modification time (seconds): what keys a cache on
    /// it (Python's bytecode names its source's mtime) stays valid in the guest.
    pub(super) fn file_at(
        &mut self,
        name: &str,
        data: &[u8],
        perm: u32,
        mtime: u64,
    ) -> std::io::Result<()> {
        let mtime = u32::try_from(mtime).unwrap_or(u32::MAX);
        self.entry(name, 0o100000 | (perm & 0o7777), data, mtime)
    }

    pub(super) fn symlink(&mut self, name: &str, target: &str) -> std::io::Result<()> {
        self.entry(name, 0o120777, target.as_bytes(), 0)
    }

    pub(super) fn finish(mut self) -> std::io::Result<()> {
        self.entry("TRAILER!!!", 0, &[], 0)?;
        self.out.finish()?.flush()
    }
}

fn pad(out: &mut impl Write, len: usize) -> std::io::Result<()> {
    let rem = (4 - len % 4) % 4;
    out.write_all(&[0u8; 3][..rem])
}

/// True for a path of chant's own root-only `/chant` (the job, the HOME seed, the error
/// report), which nothing of an image may provide: a file there would be taken for chant's.
fn is_chants(name: &str) -> bool {
    name == "chant" || name.starts_with("chant/")
}

/// Adds an image (a directory or a `.tar`) to the initramfs, without anything under `/chant`
/// ([`is_chants`]); returns the paths it holds (relative, whatever their kind), so that
/// chant does not put a directory over a link.
pub(super) fn add_image(cpio: &mut Cpio, image: &Path) -> Result<HashSet<String>, SandboxError> {
    let mut provided = HashSet::new();
    if image.is_dir() {
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for entry in std::fs::read_dir(image.join(&rel))? {
                let entry = entry?;
                let r = rel.join(entry.file_name());
                let name = r.to_string_lossy().into_owned();
                if is_chants(&name) {
                    continue;
                }
                provided.insert(name.clone());
                let meta = std::fs::symlink_metadata(entry.path())?;
                if meta.is_dir() {
                    cpio.dir(&name, 0o755)?;
                    stack.push(r);
                } else if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(entry.path())?;
                    cpio.symlink(&name, &target.to_string_lossy())?;
                } else if meta.is_file() {
                    let mtime = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs());
                    cpio.file_at(
                        &name,
                        &std::fs::read(entry.path())?,
                        meta.permissions().mode() & 0o7777,
                        mtime,
                    )?;
                }
            }
        }
        return Ok(provided);
    }
    let mut archive = tar::Archive::new(std::fs::File::open(image)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(rel) = clean_relative(&entry.path()?) else {
            continue;
        };
        let name = rel.to_string_lossy().into_owned();
        if name.is_empty() || is_chants(&name) {
            continue;
        }
        provided.insert(name.clone());
        let mode = entry.header().mode().unwrap_or(0o644);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            cpio.dir(&name, mode)?;
        } else if kind.is_symlink() {
            if let Some(t) = entry.link_name()? {
                cpio.symlink(&name, &t.to_string_lossy())?;
            }
        } else if kind.is_file() {
            let mtime = entry.header().mtime().unwrap_or(0);
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            cpio.file_at(&name, &bytes, mode, mtime)?;
        }
    }
    Ok(provided)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// The newc header fields of `name` in the gzipped archive at `path`.
    fn header_of(path: &Path, name: &str) -> Option<Vec<u32>> {
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).ok()?)
            .read_to_end(&mut bytes)
            .ok()?;
        let mut at = 0;
        while at + 110 <= bytes.len() {
            let text = std::str::from_utf8(&bytes[at..at + 110]).ok()?;
            let fields: Vec<u32> = (0..13)
                .map(|i| u32::from_str_radix(&text[6 + 8 * i..14 + 8 * i], 16).unwrap_or(0))
                .collect();
            let (size, namesize) = (fields[6] as usize, fields[11] as usize);
            let entry = std::str::from_utf8(&bytes[at + 110..at + 110 + namesize - 1]).ok()?;
            if entry == name {
                return Some(fields);
            }
            let data = (at + 110 + namesize).div_ceil(4) * 4;
            at = (data + size).div_ceil(4) * 4;
        }
        None
    }

    #[test]
    fn an_image_file_keeps_its_modification_time_in_the_guest() {
        let dir = tempfile::tempdir().expect("tmp");
        let image = dir.path().join("image");
        std::fs::create_dir_all(image.join("lib")).expect("mkdir");
        let file = image.join("lib/mod.py");
        std::fs::write(&file, "x = 1\n").expect("write");
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(when))
            .expect("set mtime");
        // The same file in a tar image.
        let tar_path = dir.path().join("image.tar");
        let mut tar = tar::Builder::new(std::fs::File::create(&tar_path).expect("tar"));
        let mut h = tar::Header::new_gnu();
        h.set_size(6);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        tar.append_data(&mut h, "lib/mod.py", &b"x = 1\n"[..])
            .expect("append");
        tar.finish().expect("finish");
        for (source, mtime) in [(&image, 1_700_000_000), (&tar_path, 1_600_000_000)] {
            let out = dir.path().join("initrd.gz");
            let mut cpio = Cpio::create(&out).expect("create");
            add_image(&mut cpio, source).expect("add");
            cpio.finish().expect("finish");
            let fields = header_of(&out, "lib/mod.py").expect("the file is in the archive");
            assert_eq!(fields[5], mtime, "{}", source.display());
        }
    }
}
