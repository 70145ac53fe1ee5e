//! Symbolic links inside an image (a vm guest's root, a directory or a `.tar`), followed the
//! way the guest's kernel would, for `git chant doctor` and the vm preflight: relative and
//! absolute targets, chains, links in the middle of a path, `..` never above the image's
//! root, at most [`MAX_LINKS`] links. Every lookup is a path *inside* the image answered by
//! the caller's [`Lookup`]: nothing here ever resolves a link on the host.

use std::collections::HashMap;
use std::path::Path;

/// At most this many links are followed for one path (as Linux's `ELOOP` limit).
pub const MAX_LINKS: usize = 40;

/// What one path of the image is (its last component not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Missing,
    File,
    Dir,
    Link(String),
}

/// Answers what an absolute, normalised path of the image (`/a/b`, no `.`, `..` or
/// link in its directories) is.
pub trait Lookup {
    fn lookup(&self, path: &str) -> Entry;
}

/// Where a path of the image leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A file, reached through links when `through_links` (its path inside the image).
    File { path: String, through_links: bool },
    /// Not there, or not a file; when links led there, `dangling_target` is the path they
    /// led to (inside the image).
    Missing { dangling_target: Option<String> },
    /// More than [`MAX_LINKS`] links: a loop.
    Loop,
}

/// Follows `path` (absolute inside the image) through `image`'s links.
pub fn resolve(image: &dyn Lookup, path: &str) -> Resolved {
    // Components still to walk (reversed: the next one last) and the resolved prefix.
    let mut todo: Vec<String> = split(path).into_iter().rev().collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    let mut last_target: Option<String> = None;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "." | "" => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        done.push(part);
        let here = format!("/{}", done.join("/"));
        match image.lookup(&here) {
            Entry::Link(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Resolved::Loop;
                }
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                last_target = Some(target.clone());
                todo.extend(split(&target).into_iter().rev());
            }
            Entry::Missing => {
                return Resolved::Missing {
                    dangling_target: last_target.map(|_| absolute(&done, &todo)),
                }
            }
            Entry::File if todo.iter().all(|p| p.is_empty() || p == ".") => {
                return Resolved::File {
                    path: here,
                    through_links: links > 0,
                }
            }
            // A file in the middle of a path: nothing below it.
            Entry::File => {
                return Resolved::Missing {
                    dangling_target: last_target.map(|_| absolute(&done, &todo)),
                }
            }
            Entry::Dir => {}
        }
    }
    // Ended on a directory (or the root): not a program.
    Resolved::Missing {
        dangling_target: None,
    }
}

fn split(path: &str) -> Vec<String> {
    path.split('/').map(str::to_string).collect()
}

/// The path being looked for when the walk stopped: the resolved part and what was left.
fn absolute(done: &[String], todo: &[String]) -> String {
    let rest = todo
        .iter()
        .rev()
        .filter(|p| !p.is_empty() && *p != ".")
        .cloned();
    format!(
        "/{}",
        done.iter()
            .cloned()
            .chain(rest)
            .collect::<Vec<_>>()
            .join("/")
    )
}

/// A directory on the host as an image's root: each path looked up with `lstat` under it,
/// its directories already resolved inside the image, so no host link is ever followed.
pub struct DirImage<'a>(pub &'a Path);

impl Lookup for DirImage<'_> {
    fn lookup(&self, path: &str) -> Entry {
        let host = self.0.join(path.trim_start_matches('/'));
        match std::fs::symlink_metadata(&host) {
            Err(_) => Entry::Missing,
            Ok(m) if m.file_type().is_symlink() => std::fs::read_link(&host)
                .map(|t| Entry::Link(t.to_string_lossy().into_owned()))
                .unwrap_or(Entry::Missing),
            Ok(m) if m.is_dir() => Entry::Dir,
            Ok(m) if m.is_file() => Entry::File,
            Ok(_) => Entry::Missing,
        }
    }
}

/// A `.tar` image's entries, read once (directories implied by deeper entries included).
pub struct TarImage(HashMap<String, Entry>);

impl TarImage {
    /// Reads the entries of the tar at `path`; None when it cannot be read.
    pub fn read(path: &Path) -> Option<TarImage> {
        let file = std::fs::File::open(path).ok()?;
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        for entry in archive.entries().ok()?.flatten() {
            let Ok(p) = entry.path() else { continue };
            let name = normalise(&p.to_string_lossy());
            if name == "/" {
                continue;
            }
            let kind = entry.header().entry_type();
            let value = if kind.is_symlink() {
                match entry.link_name() {
                    Ok(Some(t)) => Entry::Link(t.to_string_lossy().into_owned()),
                    _ => Entry::Missing,
                }
            } else if kind.is_dir() {
                Entry::Dir
            } else if kind.is_file() || kind.is_hard_link() {
                Entry::File
            } else {
                Entry::Missing
            };
            let mut dir = Path::new(&name).parent().map(Path::to_path_buf);
            while let Some(d) = dir {
                let text = d.to_string_lossy().into_owned();
                if text == "/" {
                    break;
                }
                entries.entry(text).or_insert(Entry::Dir);
                dir = d.parent().map(Path::to_path_buf);
            }
            entries.insert(name, value);
        }
        Some(TarImage(entries))
    }
}

impl Lookup for TarImage {
    fn lookup(&self, path: &str) -> Entry {
        self.0.get(path).cloned().unwrap_or(Entry::Missing)
    }
}

/// `./usr/bin/x`, `usr/bin/x/` → `/usr/bin/x`.
fn normalise(name: &str) -> String {
    let parts: Vec<&str> = name
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_image() -> tempfile::TempDir {
        use std::os::unix::fs::symlink;
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        for d in ["usr/bin", "usr/lib/node_modules/cli/bin", "opt", "loop"] {
            std::fs::create_dir_all(r.join(d)).expect("mkdir");
        }
        std::fs::write(r.join("usr/lib/node_modules/cli/bin/cli.js"), "x").expect("write");
        // A chain: absolute, then relative, then a directory link in the middle.
        symlink("/opt/claude", r.join("usr/bin/claude")).expect("link");
        symlink(
            "../usr/lib/node_modules/cli/bin/cli.js",
            r.join("opt/claude"),
        )
        .expect("link");
        symlink("/usr/lib/node_modules", r.join("opt/mods")).expect("link");
        symlink("/opt/mods/cli/bin/cli.js", r.join("usr/bin/via-dir")).expect("link");
        symlink(
            "/usr/lib/node_modules/gone/cli.js",
            r.join("usr/bin/dangling"),
        )
        .expect("link");
        symlink("a", r.join("loop/b")).expect("link");
        symlink("b", r.join("loop/a")).expect("link");
        // Out of the image by `..` and by an absolute host path: both stay inside.
        symlink("../../../../../../etc/hostname", r.join("usr/bin/up")).expect("link");
        symlink("/etc/hostname", r.join("usr/bin/host")).expect("link");
        std::fs::write(r.join("usr/bin/plain"), "x").expect("write");
        root
    }

    fn file(path: &str, through_links: bool) -> Resolved {
        Resolved::File {
            path: path.into(),
            through_links,
        }
    }

    #[test]
    fn chains_relative_absolute_and_directory_links_are_followed_inside_the_image() {
        let root = dir_image();
        let image = DirImage(root.path());
        let target = "/usr/lib/node_modules/cli/bin/cli.js";
        assert_eq!(resolve(&image, "/usr/bin/claude"), file(target, true));
        assert_eq!(resolve(&image, "/usr/bin/via-dir"), file(target, true));
        assert_eq!(
            resolve(&image, "/usr/bin/plain"),
            file("/usr/bin/plain", false)
        );
        assert_eq!(
            resolve(&image, "/usr/bin/dangling"),
            Resolved::Missing {
                dangling_target: Some("/usr/lib/node_modules/gone/cli.js".into())
            }
        );
        assert_eq!(resolve(&image, "/loop/a"), Resolved::Loop);
        assert_eq!(
            resolve(&image, "/usr/bin/none"),
            Resolved::Missing {
                dangling_target: None
            }
        );
        assert!(matches!(
            resolve(&image, "/usr/bin"),
            Resolved::Missing { .. }
        ));
    }

    #[test]
    fn a_link_never_leads_onto_the_hosts_files() {
        // /etc/hostname exists on the host, not in the image.
        let root = dir_image();
        let image = DirImage(root.path());
        for link in ["/usr/bin/up", "/usr/bin/host"] {
            assert_eq!(
                resolve(&image, link),
                Resolved::Missing {
                    dangling_target: Some("/etc/hostname".into())
                },
                "{link}"
            );
        }
    }

    #[test]
    fn a_tar_image_resolves_as_its_directory_does() {
        let root = dir_image();
        let tar_path = root.path().join("../image.tar");
        let tar_dir = tempfile::tempdir().expect("tempdir");
        let tar_path = tar_dir.path().join(tar_path.file_name().expect("name"));
        let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).expect("tar"));
        builder.follow_symlinks(false);
        builder.append_dir_all(".", root.path()).expect("append");
        builder.finish().expect("finish");
        drop(builder);
        let image = TarImage::read(&tar_path).expect("read");
        let dir = DirImage(root.path());
        for path in [
            "/usr/bin/claude",
            "/usr/bin/via-dir",
            "/usr/bin/plain",
            "/usr/bin/dangling",
            "/loop/a",
            "/usr/bin/up",
            "/usr/bin/host",
            "/usr/bin/none",
        ] {
            assert_eq!(resolve(&image, path), resolve(&dir, path), "{path}");
        }
    }
}
