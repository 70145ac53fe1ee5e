//! The specs of a project: listing, resolving short ids, creating new ones.

use std::path::{Path, PathBuf};

use super::{check_input, Spec, SpecError, SpecId};
use crate::clock;

/// One spec file: its id and the spec, or why it could not be read.
pub type SpecFile = (SpecId, Result<Spec, SpecError>);

/// The `.chant/specs/` directory of a project.
pub struct SpecStore {
    dir: PathBuf,
}

impl SpecStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpecStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a spec's file.
    pub fn path_of(&self, id: &SpecId) -> PathBuf {
        self.dir.join(format!("{id}.md"))
    }

    /// Every spec id present, sorted. Files whose names are not ids are ignored.
    pub fn ids(&self) -> Result<Vec<SpecId>, SpecError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(self.io_error(&self.dir, source)),
        };
        let mut ids: Vec<SpecId> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                let stem = name.to_str()?.strip_suffix(".md")?;
                SpecId::parse(stem)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Reads one spec. A file that is not UTF-8 text, or whose front matter does not
    /// parse, is bad input (exit 2) naming the file.
    pub fn load(&self, id: &SpecId) -> Result<Spec, SpecError> {
        let path = self.path_of(id);
        let bytes = std::fs::read(&path).map_err(|source| self.io_error(&path, source))?;
        let text = String::from_utf8(bytes).map_err(|e| SpecError::Malformed {
            file: path.display().to_string(),
            message: format!(
                "is not UTF-8 text (invalid byte at offset {}); re-save it as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        })?;
        Spec::parse(id.clone(), &text)
    }

    /// Every spec, sorted by id; the first one that cannot be read is an error.
    pub fn all(&self) -> Result<Vec<Spec>, SpecError> {
        self.ids()?.iter().map(|id| self.load(id)).collect()
    }

    /// Every spec file, sorted by id, each read on its own: one malformed spec does not
    /// hide the others (`list`, `work --all-ready`).
    pub fn each(&self) -> Result<Vec<SpecFile>, SpecError> {
        Ok(self
            .ids()?
            .into_iter()
            .map(|id| {
                let spec = self.load(&id);
                (id, spec)
            })
            .collect())
    }

    /// Resolves user input to an id as chant does: exact id, then unique suffix, then a
    /// 3-character input as today's sequence, then unique substring.
    pub fn resolve(&self, input: &str) -> Result<SpecId, SpecError> {
        let input = input.trim();
        check_input(input).map_err(SpecError::BadInput)?;
        let ids = self.ids()?;
        let today = clock::now_local().format("%Y-%m-%d").to_string();
        resolve_among(&ids, input, &today)
    }

    /// Creates a new spec file with a fresh id (never reusing one) and returns it.
    pub fn create(
        &self,
        title: &str,
        targets: &[String],
        body: Option<&str>,
    ) -> Result<Spec, SpecError> {
        let title = title.trim();
        if title.is_empty() || title.contains('\n') {
            return Err(SpecError::BadInput(
                "the title must be one non-empty line".into(),
            ));
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| self.io_error(&self.dir, source))?;
        let date = clock::now_local().format("%Y-%m-%d").to_string();
        let mut sequence = self
            .ids()?
            .iter()
            .filter(|id| id.date() == date)
            .map(SpecId::sequence)
            .max()
            .map_or(1, |n| n + 1);
        loop {
            let random = clock::random_base36(3);
            let id = SpecId::new(&date, sequence, &random).ok_or_else(|| {
                SpecError::BadInput(format!(
                    "no spec ids left for {date} (the per-day sequence is full)"
                ))
            })?;
            let spec = Spec::new(id, title, targets, body);
            let path = self.path_of(&spec.id);
            match crate::atomic::write_new(&path, spec.to_text().as_bytes()) {
                Ok(()) => return Ok(spec),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => sequence += 1,
                Err(source) => return Err(self.io_error(&path, source)),
            }
        }
    }

    fn io_error(&self, path: &Path, source: std::io::Error) -> SpecError {
        SpecError::Io {
            file: path.display().to_string(),
            source,
        }
    }
}

fn resolve_among(ids: &[SpecId], input: &str, today: &str) -> Result<SpecId, SpecError> {
    if let Some(id) = ids.iter().find(|id| id.as_str() == input) {
        return Ok(id.clone());
    }
    let pick = |matches: Vec<&SpecId>| -> Option<Result<SpecId, SpecError>> {
        match matches.as_slice() {
            [] => None,
            [one] => Some(Ok((*one).clone())),
            many => Some(Err(SpecError::Ambiguous {
                input: input.to_string(),
                candidates: many.iter().map(|id| id.to_string()).collect(),
            })),
        }
    };
    let suffix = ids
        .iter()
        .filter(|id| id.as_str().ends_with(input))
        .collect();
    if let Some(found) = pick(suffix) {
        return found;
    }
    if input.len() == 3 {
        let prefix = format!("{today}-{input}-");
        let todays = ids
            .iter()
            .filter(|id| id.as_str().starts_with(&prefix) && !id.as_str().contains('.'))
            .collect();
        if let Some(found) = pick(todays) {
            return found;
        }
    }
    let substring = ids
        .iter()
        .filter(|id| id.as_str().contains(input))
        .collect();
    pick(substring).unwrap_or_else(|| {
        Err(SpecError::NotFound {
            input: input.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<SpecId> {
        list.iter()
            .map(|s| SpecId::parse(s).expect("valid"))
            .collect()
    }

    #[test]
    fn resolution_order() {
        let all = ids(&[
            "2026-01-22-001-x7m",
            "2026-01-22-002-abc",
            "2026-01-23-001-q9z",
            "2026-01-22-001-x7m.1",
        ]);
        let r = |i: &str| resolve_among(&all, i, "2026-01-23").map(|id| id.to_string());
        assert_eq!(
            r("2026-01-22-001-x7m").ok().as_deref(),
            Some("2026-01-22-001-x7m")
        );
        assert_eq!(r("x7m").ok().as_deref(), Some("2026-01-22-001-x7m"));
        assert_eq!(r("x7m.1").ok().as_deref(), Some("2026-01-22-001-x7m.1"));
        assert_eq!(r("001").ok().as_deref(), Some("2026-01-23-001-q9z"));
        assert_eq!(r("22-002").ok().as_deref(), Some("2026-01-22-002-abc"));
        assert!(matches!(r("2026-01-22"), Err(SpecError::Ambiguous { .. })));
        assert!(matches!(r("zzz"), Err(SpecError::NotFound { .. })));
    }
}
