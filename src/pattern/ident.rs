//! Whole-name globs for identities and branch names (`protection.agents`,
//! `protection.branches`): `agent-*`, `ci-bot`, `release/*`.
//!
//! `*` matches any run of characters (`/` included) and `?` one; `[…]` and `{a,b}` work as
//! in globset. Matching is case-sensitive and covers the whole name. A pattern that could
//! never match what it is meant to (empty, spaces around it) or that does not compile is
//! refused when the configuration loads: a rule that silently matches nothing would turn
//! an agent into a person or leave a branch unprotected.

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::PatternError;

/// A compiled list of whole-name globs.
#[derive(Debug, Clone)]
pub struct IdentityRules {
    patterns: Vec<String>,
    set: GlobSet,
}

impl IdentityRules {
    /// Compiles `raw`; the first pattern that is refused is named with the reason.
    pub fn new<S: AsRef<str>>(raw: &[S]) -> Result<Self, PatternError> {
        let mut builder = GlobSetBuilder::new();
        let mut patterns = Vec::with_capacity(raw.len());
        for p in raw {
            let p = p.as_ref();
            if p.trim().is_empty() {
                return Err(PatternError::new(p, "is empty and matches no name"));
            }
            if p.trim() != p {
                return Err(PatternError::new(
                    p,
                    "has spaces around it, so no name matches it; remove them",
                ));
            }
            if p.chars().any(char::is_control) {
                return Err(PatternError::new(p, "contains a control character"));
            }
            let glob = Glob::new(p)
                .map_err(|e| PatternError::new(p, format!("is not a valid glob: {}", e.kind())))?;
            builder.add(glob);
            patterns.push(p.to_string());
        }
        let set = builder
            .build()
            .map_err(|e| PatternError::new(&patterns.join(", "), e.to_string()))?;
        Ok(IdentityRules { patterns, set })
    }

    /// True when `name` matches any pattern.
    pub fn is_match(&self, name: &str) -> bool {
        self.set.is_match(name)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

impl Default for IdentityRules {
    fn default() -> Self {
        IdentityRules {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }
}

impl PartialEq for IdentityRules {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_crosses_slashes_and_matches_the_whole_name() {
        let r = IdentityRules::new(&["agent-*", "release/*", "ci-bot"]).expect("valid");
        assert!(r.is_match("agent-7"));
        assert!(r.is_match("agent-k8s/worker"));
        assert!(r.is_match("release/2026/q1"));
        assert!(r.is_match("ci-bot"));
        assert!(!r.is_match("my-agent-7"));
        assert!(!r.is_match("ci-bot2"));
        assert!(!r.is_match("Agent-7"));
    }

    #[test]
    fn patterns_that_cannot_match_are_refused() {
        for bad in [
            "",
            " ",
            "agent-[",
            "bot-{a",
            "agent-*\n",
            " agent-*",
            "agent-* ",
            "a\u{7}b",
        ] {
            let err = IdentityRules::new(&["ok", bad]).expect_err(bad);
            assert_eq!(err.pattern, bad, "{err}");
        }
    }
}
