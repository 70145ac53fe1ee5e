//! Repository path patterns with `.gitignore`-like meaning.
//!
//! - `dir/` names a directory and everything below it.
//! - A pattern that names a directory also covers its contents (`secrets` covers
//!   `secrets/a.txt`).
//! - `*` and `?` never cross `/`; `**` does.
//! - [`Anchoring::Anywhere`] (deny lists, sensitive files): a pattern without an inner `/`
//!   matches at any depth (`*.key` matches `a/b/c.key`), as in `.gitignore`.
//! - [`Anchoring::Root`] (allow lists): every pattern is anchored at the repository root,
//!   so `src/` allows `src/x` but not `vendor/src/x` — an allow list must not widen itself.
//! - [`Anchoring::Anywhere`] lists also match a path as macOS and Windows resolve it: any
//!   case, without the code points HFS+ ignores, NTFS stream suffixes and trailing dots and
//!   spaces (`.ENV`, `.env.`, `.env::$DATA` are `.env` there; see [`super::lookalike`]).
//!   Allow lists match exactly: folding would only widen them.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::PatternError;

/// How patterns without an inner `/` are anchored (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchoring {
    Root,
    Anywhere,
}

/// A compiled list of path patterns.
#[derive(Debug, Clone)]
pub struct PathRules {
    patterns: Vec<String>,
    /// For each glob in `set`, the index of the pattern it came from.
    owners: Vec<usize>,
    set: GlobSet,
    /// For deny lists: the same globs, case-insensitive, matched against the folded path.
    folded: Option<GlobSet>,
}

impl PathRules {
    /// Compiles `patterns`; an invalid one is refused with the reason.
    pub fn new<S: AsRef<str>>(patterns: &[S], anchoring: Anchoring) -> Result<Self, PatternError> {
        let mut builder = GlobSetBuilder::new();
        let mut folded = GlobSetBuilder::new();
        let mut kept = Vec::with_capacity(patterns.len());
        let mut owners = Vec::new();
        for raw in patterns {
            let raw = raw.as_ref();
            for glob in expand(raw, anchoring)? {
                owners.push(kept.len());
                let compiled = GlobBuilder::new(&glob)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| {
                        PatternError::new(raw, format!("is not a valid glob: {}", e.kind()))
                    })?;
                builder.add(compiled);
                if anchoring == Anchoring::Anywhere {
                    let insensitive = GlobBuilder::new(&glob)
                        .literal_separator(true)
                        .backslash_escape(true)
                        .case_insensitive(true)
                        .build()
                        .map_err(|e| {
                            PatternError::new(raw, format!("is not a valid glob: {}", e.kind()))
                        })?;
                    folded.add(insensitive);
                }
            }
            kept.push(raw.to_string());
        }
        let set = builder
            .build()
            .map_err(|e| PatternError::new(&kept.join(", "), e.to_string()))?;
        let folded = match anchoring {
            Anchoring::Anywhere => Some(
                folded
                    .build()
                    .map_err(|e| PatternError::new(&kept.join(", "), e.to_string()))?,
            ),
            Anchoring::Root => None,
        };
        Ok(PathRules {
            patterns: kept,
            owners,
            set,
            folded,
        })
    }

    /// An empty list, matching nothing.
    pub fn empty() -> Self {
        PathRules {
            patterns: Vec::new(),
            owners: Vec::new(),
            set: GlobSet::empty(),
            folded: None,
        }
    }

    /// True when `path` (relative, `/`-separated) matches any pattern.
    pub fn is_match(&self, path: &str) -> bool {
        self.first_match(path).is_some()
    }

    /// The first pattern (as written) that matches `path`, for messages.
    pub fn first_match(&self, path: &str) -> Option<&str> {
        let path = path.trim_start_matches("./");
        let exact = self.set.matches(path).into_iter().min();
        let first = match (exact, &self.folded) {
            (Some(i), _) => i,
            (None, Some(folded)) => folded
                .matches(super::lookalike::fold_path(path))
                .into_iter()
                .min()?,
            (None, None) => return None,
        };
        Some(self.patterns[self.owners[first]].as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as the user wrote them.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

impl PartialEq for PathRules {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

/// Turns one user pattern into the globs that implement the module's rules.
fn expand(raw: &str, anchoring: Anchoring) -> Result<Vec<String>, PatternError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(PatternError::new(raw, "is empty"));
    }
    if trimmed.contains('\0') || trimmed.contains('\\') && !trimmed.contains("\\*") {
        return Err(PatternError::new(
            raw,
            "contains a backslash or NUL; use '/' as separator",
        ));
    }
    let body = trimmed.trim_start_matches("./").trim_end_matches('/');
    let body = body.strip_prefix('/').unwrap_or(body);
    if body.is_empty() {
        return Err(PatternError::new(raw, "names no path"));
    }
    if body.split('/').any(|part| part == "..") {
        return Err(PatternError::new(raw, "leaves the repository ('..')"));
    }
    let anchored = anchoring == Anchoring::Root || trimmed.starts_with('/') || body.contains('/');
    let base = if anchored || body.starts_with("**") {
        body.to_string()
    } else {
        format!("**/{body}")
    };
    Ok(vec![base.clone(), format!("{base}/**")])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(p: &[&str], a: Anchoring) -> PathRules {
        PathRules::new(p, a).expect("valid patterns")
    }

    #[test]
    fn directory_patterns_cover_contents() {
        let r = rules(&["credentials/", "secrets"], Anchoring::Anywhere);
        assert!(r.is_match("credentials/aws.json"));
        assert!(r.is_match("deep/credentials/x"));
        assert!(r.is_match("secrets/a/b"));
        assert!(!r.is_match("credentials.md"));
    }

    #[test]
    fn basename_globs_match_anywhere_but_star_stops_at_slash() {
        let r = rules(&["*.key", ".env*"], Anchoring::Anywhere);
        assert!(r.is_match("a/b/server.key"));
        assert!(r.is_match(".env.production"));
        assert!(r.is_match("app/.env"));
        assert!(!r.is_match("keys.txt"));
        let anchored = rules(&["src/*.rs"], Anchoring::Anywhere);
        assert!(anchored.is_match("src/main.rs"));
        assert!(!anchored.is_match("src/a/main.rs"));
        assert!(!anchored.is_match("x/src/main.rs"));
    }

    #[test]
    fn allow_lists_are_anchored_at_the_root() {
        let r = rules(&["src/", "tests/"], Anchoring::Root);
        assert!(r.is_match("src/lib.rs"));
        assert!(r.is_match("tests/a/b.rs"));
        assert!(!r.is_match("vendor/src/lib.rs"));
        assert_eq!(r.first_match("tests/x"), Some("tests/"));
    }

    #[test]
    fn deny_lists_match_what_macos_and_windows_would_write_over() {
        let r = rules(&[".env*", "*.key", "credentials/"], Anchoring::Anywhere);
        for path in [
            ".ENV",
            ".Env.production",
            ".env.",
            ".env ",
            ".env::$DATA",
            ".e\u{200c}nv",
            "a/SERVER.KEY",
            "a/server.key.",
            "CREDENTIALS/aws.json",
            "credentials./aws.json",
            "Credentials /aws.json",
        ] {
            assert!(r.is_match(path), "{path}");
        }
        assert!(!r.is_match("environment.md"));
        let allow = rules(&["src/"], Anchoring::Root);
        assert!(!allow.is_match("SRC/x.rs"), "allow lists never widen");
        assert!(!allow.is_match("src./x.rs"), "allow lists never widen");
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(PathRules::new(&[""], Anchoring::Root).is_err());
        assert!(PathRules::new(&["../x"], Anchoring::Root).is_err());
        assert!(PathRules::new(&["a/[b"], Anchoring::Root).is_err());
    }
}
