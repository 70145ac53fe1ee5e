//! Reading the YAML tree into typed values, with errors that name the key path.
//!
//! A [`Section`] wraps one mapping. Every `get_*` call both reads a key and marks it as
//! known; [`Section::finish`] then refuses any key nobody asked for, suggesting the closest
//! known one. The list of known keys is therefore exactly the keys the model reads.

use std::cell::RefCell;

use serde_yaml_ng::{Mapping, Value};

use super::ConfigError;

/// One mapping of the configuration, at `path` (e.g. `agent.docker`).
pub struct Section<'v> {
    file: &'v str,
    path: String,
    map: Option<&'v Mapping>,
    asked: RefCell<Vec<&'static str>>,
}

impl<'v> Section<'v> {
    /// The top of the document.
    pub fn root(file: &'v str, value: &'v Value) -> Result<Self, ConfigError> {
        match value {
            Value::Null => Ok(Section::absent(file, String::new())),
            Value::Mapping(map) => Ok(Section::present(file, String::new(), map)),
            other => Err(ConfigError::invalid(
                file,
                "(top level)",
                format!("expected a mapping of keys, found {}", kind(other)),
            )),
        }
    }

    fn absent(file: &'v str, path: String) -> Self {
        Section {
            file,
            path,
            map: None,
            asked: RefCell::new(Vec::new()),
        }
    }

    fn present(file: &'v str, path: String, map: &'v Mapping) -> Self {
        Section {
            file,
            path,
            map: Some(map),
            asked: RefCell::new(Vec::new()),
        }
    }

    /// The full key path of `key` in this section.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// An error about `key` in this section.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.file, &self.key_path(key), message)
    }

    /// The raw value of `key` (None when absent or null), marking the key as known.
    pub fn raw(&self, key: &'static str) -> Option<&'v Value> {
        self.asked.borrow_mut().push(key);
        let value = self.map?.get(key)?;
        (!value.is_null()).then_some(value)
    }

    /// A nested mapping; absent or null reads as an empty section.
    pub fn section(&self, key: &'static str) -> Result<Section<'v>, ConfigError> {
        match self.raw(key) {
            None => Ok(Section::absent(self.file, self.key_path(key))),
            Some(Value::Mapping(map)) => Ok(Section::present(self.file, self.key_path(key), map)),
            Some(other) => Err(self.error(
                key,
                format!("expected a mapping of keys, found {}", kind(other)),
            )),
        }
    }

    pub fn bool(&self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(key, format!("'{}' is not true or false", show(other)))),
        }
    }

    /// A scalar read as text (numbers too: `cpu: 1` and `cpu: "1"` mean the same).
    pub fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(value) => scalar_text(value).map(Some).ok_or_else(|| {
                self.error(
                    key,
                    format!("expected a single value, found {}", kind(value)),
                )
            }),
        }
    }

    /// A scalar parsed by `parse`, whose error message is prefixed with the key path.
    pub fn parse<T>(
        &self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.string(key)? {
            None => Ok(None),
            Some(text) => parse(&text).map(Some).map_err(|m| self.error(key, m)),
        }
    }

    /// One of a fixed set of words.
    pub fn choice<T: Copy>(
        &self,
        key: &'static str,
        options: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        self.parse(key, |text| {
            options
                .iter()
                .find(|(name, _)| *name == text)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                    format!("'{text}' is not one of {}", names.join(", "))
                })
        })
    }

    /// A list of scalars.
    pub fn strings(&self, key: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|item| {
                    scalar_text(item).ok_or_else(|| {
                        self.error(
                            key,
                            format!("list items must be single values, found {}", kind(item)),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.error(
                key,
                format!(
                    "expected a list (e.g. [a, b] or '- a' lines), found {}",
                    kind(other)
                ),
            )),
        }
    }

    /// Refuses keys that were never asked for, naming the closest known key.
    pub fn finish(&self) -> Result<(), ConfigError> {
        let Some(map) = self.map else { return Ok(()) };
        let asked = self.asked.borrow();
        for key in map.keys() {
            let name = scalar_text(key).unwrap_or_else(|| show(key));
            if asked.iter().any(|k| *k == name) {
                continue;
            }
            let hint = closest(&name, &asked)
                .map(|k| format!("; did you mean '{}'?", self.key_path(k)))
                .unwrap_or_else(|| {
                    let mut known: Vec<&str> = asked.clone();
                    known.sort_unstable();
                    known.dedup();
                    format!("; known keys here: {}", known.join(", "))
                });
            return Err(self.error(&name, format!("unknown key{hint}")));
        }
        Ok(())
    }
}

/// The known key most similar to `name`, if any is reasonably close.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_text(&t.value),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn show(value: &Value) -> String {
    scalar_text(value).unwrap_or_else(|| kind(value).to_string())
}
