//! Environment variable name patterns (`AGENT_API_KEY`, `AWS_*`).

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::PatternError;

/// A compiled list of variable-name globs (case-sensitive, as environment names are).
#[derive(Debug, Clone)]
pub struct NameRules {
    patterns: Vec<String>,
    set: GlobSet,
}

impl NameRules {
    pub fn new<S: AsRef<str>>(raw: &[S]) -> Result<Self, PatternError> {
        let mut builder = GlobSetBuilder::new();
        let mut patterns = Vec::with_capacity(raw.len());
        for p in raw {
            let p = p.as_ref().trim();
            let valid = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '?' | '.' | '-'));
            if !valid {
                return Err(PatternError::new(
                    p,
                    "is not a variable name or glob (letters, digits, '_', '*', '?')",
                ));
            }
            let glob = Glob::new(p).map_err(|e| PatternError::new(p, e.kind().to_string()))?;
            builder.add(glob);
            patterns.push(p.to_string());
        }
        let set = builder
            .build()
            .map_err(|e| PatternError::new(&patterns.join(", "), e.to_string()))?;
        Ok(NameRules { patterns, set })
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.set.is_match(name)
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

impl Default for NameRules {
    fn default() -> Self {
        NameRules {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }
}

impl PartialEq for NameRules {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}
