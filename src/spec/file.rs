//! One spec file, `.chant/specs/<id>.md`, in chant's on-disk format: YAML front matter
//! (`type`, `status`, `target_files`, `depends_on`, `labels`, …) and a markdown body whose
//! first `# ` heading is the title. Keys git-chant does not know are kept as written.

use serde_yaml_ng::{Mapping, Value};

use super::{SpecError, SpecId};
use crate::config::{join_front_matter, parse_yaml, split_front_matter};

/// A parsed spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub id: SpecId,
    /// The front matter, in file order, unknown keys included.
    pub front: Mapping,
    pub body: String,
}

impl Spec {
    /// Parses the text of `<id>.md`.
    pub fn parse(id: SpecId, text: &str) -> Result<Spec, SpecError> {
        let file = format!(".chant/specs/{id}.md");
        let doc = split_front_matter(text).ok_or_else(|| SpecError::Malformed {
            file: file.clone(),
            message: "front matter opened with '---' is never closed".into(),
        })?;
        let front = match parse_yaml(&file, doc.yaml) {
            Ok(Value::Mapping(map)) => map,
            Ok(Value::Null) => Mapping::new(),
            Ok(_) => {
                return Err(SpecError::Malformed {
                    file,
                    message: "front matter is not a mapping of keys".into(),
                })
            }
            Err(e) => {
                return Err(SpecError::Malformed {
                    file,
                    message: e.to_string(),
                })
            }
        };
        Ok(Spec {
            id,
            front,
            body: doc.body.to_string(),
        })
    }

    /// A new spec with chant's default front matter and body.
    pub fn new(id: SpecId, title: &str, targets: &[String], body: Option<&str>) -> Spec {
        let mut front = Mapping::new();
        front.insert("type".into(), "code".into());
        front.insert("status".into(), "pending".into());
        if !targets.is_empty() {
            front.insert(
                "target_files".into(),
                Value::Sequence(targets.iter().map(|t| Value::from(t.as_str())).collect()),
            );
        }
        let mut text = String::new();
        let given = body.unwrap_or("").trim();
        let given_title = first_heading(given);
        if given_title != Some(title) {
            text.push_str(&format!("# {title}\n\n"));
        }
        if !given.is_empty() {
            text.push_str(given);
            text.push_str("\n\n");
        }
        if !given.contains("## Acceptance Criteria") {
            text.push_str("## Acceptance Criteria\n\n- [ ] The change described above is implemented\n- [ ] Tests cover it and pass\n");
        }
        Spec {
            id,
            front,
            body: text,
        }
    }

    /// The file text.
    pub fn to_text(&self) -> String {
        let yaml = if self.front.is_empty() {
            String::new()
        } else {
            serde_yaml_ng::to_string(&self.front).unwrap_or_default()
        };
        join_front_matter(&yaml, &self.body)
    }

    /// The first `# ` heading of the body, or the id when there is none.
    pub fn title(&self) -> &str {
        first_heading(&self.body).unwrap_or(self.id.as_str())
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.front.get(key).and_then(Value::as_str)
    }

    fn list(&self, key: &str) -> Vec<String> {
        match self.front.get(key) {
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.trim_matches('`').to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            Some(Value::String(s)) => vec![s.trim_matches('`').to_string()],
            _ => Vec::new(),
        }
    }

    /// The `status` the file declares (`pending` when absent).
    pub fn declared_status(&self) -> &str {
        self.text("status").unwrap_or("pending")
    }

    pub fn kind(&self) -> &str {
        self.text("type").unwrap_or("code")
    }

    /// Target files (chant sometimes writes them in backticks; those are removed).
    pub fn target_files(&self) -> Vec<String> {
        self.list("target_files")
    }

    pub fn depends_on(&self) -> Vec<String> {
        self.list("depends_on")
    }

    pub fn labels(&self) -> Vec<String> {
        self.list("labels")
    }
}

fn first_heading(body: &str) -> Option<&str> {
    body.lines()
        .find_map(|l| l.strip_prefix("# "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
