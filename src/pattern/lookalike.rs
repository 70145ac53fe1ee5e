//! Names that some file system treats as another name.
//!
//! A tree written on Linux is checked out on macOS and Windows too, where `.GIT`,
//! `.g\u{200c}it` (HFS+ ignores some code points), `.git.` and `.git::$INDEX_ALLOCATION`
//! (NTFS trims trailing dots and spaces and reads `:` as a stream) and `GIT~1` (an NTFS 8.3
//! short name) all name `.git`. git's own rules are the reference: `is_hfs_dotgit` in
//! git's utf8.c and `is_ntfs_dotgit` / `is_ntfs_dot_generic` in path.c, which `git fsck`
//! and `verify_path` apply. This module only answers questions about one path component;
//! it never touches a file system.

/// Code points HFS+ ignores in names (git's `next_hfs_char`).
const HFS_IGNORED: &[char] = &[
    '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
    '\u{202e}', '\u{206a}', '\u{206b}', '\u{206c}', '\u{206d}', '\u{206e}', '\u{206f}', '\u{feff}',
];

/// A name git itself gives meaning to, or chant's own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `.git`: a repository's metadata.
    Git,
    /// `.gitmodules`: submodule URLs and paths.
    GitModules,
    /// `.gitattributes`: filters and diff drivers, which can run programs.
    GitAttributes,
    /// `.gitignore`.
    GitIgnore,
    /// `.mailmap`.
    Mailmap,
    /// `.chant`: chant's configuration and specs.
    Chant,
}

impl Special {
    /// The name as git spells it.
    pub fn name(self) -> &'static str {
        match self {
            Special::Git => ".git",
            Special::GitModules => ".gitmodules",
            Special::GitAttributes => ".gitattributes",
            Special::GitIgnore => ".gitignore",
            Special::Mailmap => ".mailmap",
            Special::Chant => ".chant",
        }
    }

    const ALL: [Special; 6] = [
        Special::Git,
        Special::GitModules,
        Special::GitAttributes,
        Special::GitIgnore,
        Special::Mailmap,
        Special::Chant,
    ];

    /// The name without its dot, and the fall-back NTFS short name prefix git hard-codes
    /// for it (none for `.git`, whose only short name is `git~1`, nor for `.chant`).
    fn needle(self) -> (&'static str, Option<&'static str>) {
        match self {
            Special::Git => ("git", None),
            Special::GitModules => ("gitmodules", Some("gi7eba")),
            Special::GitAttributes => ("gitattributes", Some("gi7d29")),
            Special::GitIgnore => ("gitignore", Some("gi250a")),
            Special::Mailmap => ("mailmap", Some("maba30")),
            Special::Chant => ("chant", None),
        }
    }
}

/// Which special name `component` is on some file system, if any.
pub fn special(component: &str) -> Option<Special> {
    Special::ALL.into_iter().find(|s| is_special(component, *s))
}

/// True when `component` names `special` on HFS+ or NTFS (or is it exactly).
pub fn is_special(component: &str, special: Special) -> bool {
    let (needle, fallback) = special.needle();
    if special == Special::Git {
        return is_hfs_dot(component, needle) || is_ntfs_dotgit(component);
    }
    is_hfs_dot(component, needle) || is_ntfs_dot(component, needle, fallback)
}

/// git's `is_hfs_dot_generic` for one component: `.` + `needle`, ignoring the code points
/// HFS+ ignores and ASCII case.
fn is_hfs_dot(component: &str, needle: &str) -> bool {
    let mut chars = component.chars().filter(|c| !HFS_IGNORED.contains(c));
    if chars.next() != Some('.') {
        return false;
    }
    for want in needle.chars() {
        match chars.next() {
            Some(c) if c.is_ascii() && c.to_ascii_lowercase() == want => {}
            _ => return false,
        }
    }
    chars.next().is_none()
}

/// The rest of an NTFS name after a match: only spaces and dots, then the end or a `:`
/// (an alternate data stream).
fn only_spaces_and_periods(rest: &[u8]) -> bool {
    for &c in rest {
        match c {
            b':' => return true,
            b' ' | b'.' => {}
            _ => return false,
        }
    }
    true
}

/// git's `is_ntfs_dotgit`: `.git` or `git~1`, any case, then only spaces and dots.
fn is_ntfs_dotgit(component: &str) -> bool {
    let b = component.as_bytes();
    let rest = if b.len() >= 4 && b[0] == b'.' && b[1..4].eq_ignore_ascii_case(b"git") {
        &b[4..]
    } else if b.len() >= 5 && b[..3].eq_ignore_ascii_case(b"git") && &b[3..5] == b"~1" {
        &b[5..]
    } else {
        return false;
    };
    only_spaces_and_periods(rest)
}

/// git's `is_ntfs_dot_generic`: `.needle`, its regular short name (the first six
/// characters, `~1`…`~4`) or its fall-back short name (two characters of `fallback`, four
/// hex digits, `~` and a digit), any case, then only spaces and dots.
fn is_ntfs_dot(component: &str, needle: &str, fallback: Option<&str>) -> bool {
    let b = component.as_bytes();
    let n = needle.len();
    if b.len() > n && b[0] == b'.' && b[1..=n].eq_ignore_ascii_case(needle.as_bytes()) {
        return only_spaces_and_periods(&b[n + 1..]);
    }
    let short = needle.len().min(6);
    if b.len() >= short + 2
        && b[..short].eq_ignore_ascii_case(&needle.as_bytes()[..short])
        && b[short] == b'~'
        && (b'1'..=b'4').contains(&b[short + 1])
    {
        return only_spaces_and_periods(&b[short + 2..]);
    }
    let Some(prefix) = fallback.map(str::as_bytes) else {
        return false;
    };
    // The fall-back form: up to six characters of `prefix`, `~`, then digits, eight in all.
    let mut i = 0;
    let mut saw_tilde = false;
    while i < 8 {
        let Some(&c) = b.get(i) else { return false };
        if saw_tilde {
            if !c.is_ascii_digit() {
                return false;
            }
        } else if c == b'~' {
            i += 1;
            match b.get(i) {
                Some(d) if (b'1'..=b'9').contains(d) => saw_tilde = true,
                _ => return false,
            }
        } else if i >= 6 || c & 0x80 != 0 || c.to_ascii_lowercase() != prefix[i] {
            return false;
        }
        i += 1;
    }
    only_spaces_and_periods(&b[8..])
}

/// True when `component` has the shape of an NTFS 8.3 short name (`PROGRA~1`,
/// `CREDEN~1.JSO`): on Windows such a name can be another, existing file's second name,
/// so a change that writes it may write that file.
pub fn looks_like_short_name(component: &str) -> bool {
    let (base, ext) = match component.rsplit_once('.') {
        Some((b, e)) if !b.is_empty() => (b, Some(e)),
        _ => (component, None),
    };
    let Some((stem, digits)) = base.rsplit_once('~') else {
        return false;
    };
    !stem.is_empty()
        && stem.chars().count() <= 6
        && !digits.is_empty()
        && digits.bytes().all(|d| d.is_ascii_digit())
        && stem.chars().count() + 1 + digits.len() <= 8
        && ext.is_none_or(|e| e.chars().count() <= 3)
}

/// `component` as macOS and Windows file systems resolve it, apart from case: without the
/// code points HFS+ ignores, without an NTFS stream suffix (`:…`) and without trailing
/// dots and spaces. A name that would fold to nothing is kept as it is.
pub fn fold(component: &str) -> String {
    let kept: String = component
        .chars()
        .filter(|c| !HFS_IGNORED.contains(c))
        .collect();
    let before_stream = match kept.find(':') {
        Some(i) if i > 0 => &kept[..i],
        _ => kept.as_str(),
    };
    let trimmed = before_stream.trim_end_matches(['.', ' ']);
    if trimmed.is_empty() || trimmed == "." {
        component.to_string()
    } else {
        trimmed.to_string()
    }
}

/// [`fold`] applied to every `/`-separated component of `path`.
pub fn fold_path(path: &str) -> String {
    path.split('/').map(fold).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_dot_git_is_dot_git() {
        for name in [
            ".git",
            ".GIT",
            ".Git",
            ".g\u{200c}it",
            "\u{feff}.git",
            ".git\u{200d}",
            ".gi\u{206f}T",
            ".git.",
            ".git ",
            ".git. . .",
            ".git::$INDEX_ALLOCATION",
            ".git:stream",
            "git~1",
            "GIT~1",
            "Git~1. ",
        ] {
            assert_eq!(special(name), Some(Special::Git), "{name:?}");
        }
        for name in [
            ".gitx", "git", "git~2", ".gi", "x.git", ".git~1", ".github", ".gitkeep",
        ] {
            assert_ne!(special(name), Some(Special::Git), "{name:?}");
        }
    }

    #[test]
    fn every_spelling_of_the_git_dot_files_is_caught() {
        let cases = [
            (".gitmodules", Special::GitModules),
            (".GITMODULES", Special::GitModules),
            (".gitmodules.", Special::GitModules),
            (".gitmodules ::$DATA", Special::GitModules),
            (".git\u{200c}modules", Special::GitModules),
            ("gitmod~1", Special::GitModules),
            ("GITMOD~4", Special::GitModules),
            ("gi7eba~1", Special::GitModules),
            ("GI7EBA~9", Special::GitModules),
            (".gitattributes", Special::GitAttributes),
            (".GitAttributes  ", Special::GitAttributes),
            ("gitatt~1", Special::GitAttributes),
            ("gi7d29~3", Special::GitAttributes),
            (".gitignore", Special::GitIgnore),
            ("gitign~1", Special::GitIgnore),
            ("gi250a~1", Special::GitIgnore),
            (".mailmap", Special::Mailmap),
            ("mailma~1", Special::Mailmap),
            ("maba30~2", Special::Mailmap),
            (".chant", Special::Chant),
            (".CHANT", Special::Chant),
            (".chant.", Special::Chant),
            (".cha\u{200c}nt", Special::Chant),
            ("chant~1", Special::Chant),
        ];
        for (name, want) in cases {
            assert_eq!(special(name), Some(want), "{name:?}");
        }
        for name in [
            "gitmodules",
            ".gitmodulesx",
            "gitmod~5",
            "gitmod~",
            ".chantx",
            "chant",
            ".mailmap2",
        ] {
            assert_eq!(special(name), None, "{name:?}");
        }
    }

    #[test]
    fn short_names_are_recognised() {
        for name in ["PROGRA~1", "creden~1.jso", "A~1", "x~12", "GIT~1"] {
            assert!(looks_like_short_name(name), "{name}");
        }
        for name in [
            "backup~",
            "~1",
            "file.txt",
            "toolongname~1",
            "a~b",
            "a~1.long",
        ] {
            assert!(!looks_like_short_name(name), "{name}");
        }
    }

    #[test]
    fn folding_drops_what_macos_and_windows_drop() {
        assert_eq!(fold(".env."), ".env");
        assert_eq!(fold(".env  . "), ".env");
        assert_eq!(fold(".env::$DATA"), ".env");
        assert_eq!(fold(".e\u{200c}nv"), ".env");
        assert_eq!(fold(".."), "..");
        assert_eq!(fold("..."), "...");
        assert_eq!(fold_path("secrets./a.key "), "secrets/a.key");
    }
}
