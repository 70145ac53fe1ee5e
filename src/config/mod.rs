//! `.chant/config.md`: YAML front matter holding all configuration, markdown prose after it.
//!
//! Owns reading, validating and editing the file. Loading parses every value once into the
//! typed [`Config`]; nothing else in the program reads the YAML. Errors name the file, the
//! key path, the bad value and what is allowed; they are all exit code 2.

mod edit;
mod frontmatter;
mod lenient;
mod model;
mod read;
pub mod template;
mod units;

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

pub use edit::set_in_text;
pub use frontmatter::{join as join_front_matter, split as split_front_matter, Document};
pub use model::*;
pub use units::{ByteSize, Cpu, Span};

/// The configuration file, relative to the work tree root.
pub const CONFIG_PATH: &str = ".chant/config.md";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: no such key '{key}'{hint}")]
    UnknownKey {
        file: String,
        key: String,
        hint: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(file: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// A configuration together with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The file, or None when there is none (defaults apply).
    pub path: Option<PathBuf>,
}

/// Loads `<root>/.chant/config.md`; a missing file means all defaults.
pub fn load(root: &Path) -> Result<Loaded, ConfigError> {
    let path = root.join(CONFIG_PATH);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Loaded {
            config: parse(CONFIG_PATH, &text)?,
            path: Some(path),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Loaded {
            config: Config::defaults(),
            path: None,
        }),
        Err(source) => Err(ConfigError::Io {
            file: CONFIG_PATH.to_string(),
            source,
        }),
    }
}

/// Parses the text of a config file; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let doc = split_front_matter(text).ok_or_else(|| ConfigError::Syntax {
        file: file.to_string(),
        message: "front matter opened with '---' is never closed; add a '---' line after the YAML"
            .into(),
    })?;
    let value = parse_yaml(file, doc.yaml)?;
    Config::from_yaml(file, &value)
}

/// Parses front matter YAML (leniently about `*`-leading globs, see `lenient`).
pub fn parse_yaml(file: &str, yaml: &str) -> Result<Value, ConfigError> {
    if yaml.trim().is_empty() {
        return Ok(Value::Null);
    }
    let text = lenient::quote_star_values(yaml);
    serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Syntax {
        file: file.to_string(),
        message: match e.location() {
            // +1: the front matter starts after the opening `---` line.
            Some(loc) => format!(
                "line {}: YAML error: {}",
                loc.line() + 1,
                e.to_string().split(" at line").next().unwrap_or_default()
            ),
            None => format!("YAML error: {e}"),
        },
    })
}

/// The effective value of a dotted key (e.g. `agent.docker.memory`) as JSON.
pub fn get(config: &Config, key: &str) -> Result<serde_json::Value, ConfigError> {
    let tree = serde_json::to_value(config).map_err(|e| ConfigError::Syntax {
        file: CONFIG_PATH.to_string(),
        message: e.to_string(),
    })?;
    let mut node = &tree;
    let mut walked = Vec::new();
    for part in key.split('.') {
        let next = match node {
            serde_json::Value::Object(map) => map.get(part),
            serde_json::Value::Array(items) => {
                part.parse::<usize>().ok().and_then(|i| items.get(i))
            }
            _ => None,
        };
        match next {
            Some(child) => {
                node = child;
                walked.push(part);
            }
            None => {
                let hint = match node {
                    serde_json::Value::Object(map) => {
                        let known: Vec<&str> = map.keys().map(String::as_str).collect();
                        match read::closest(part, &known) {
                            Some(k) if walked.is_empty() => format!("; did you mean '{k}'?"),
                            Some(k) => format!("; did you mean '{}.{k}'?", walked.join(".")),
                            None => format!("; keys here: {}", known.join(", ")),
                        }
                    }
                    _ => format!("; '{}' holds a single value", walked.join(".")),
                };
                return Err(ConfigError::UnknownKey {
                    file: CONFIG_PATH.to_string(),
                    key: key.to_string(),
                    hint,
                });
            }
        }
    }
    Ok(node.clone())
}

/// Every leaf key path of the model (for docs and suggestions), e.g. `agent.docker.memory`.
pub fn key_paths() -> Vec<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    // `audit.ship_to` is absent by default; show its keys too.
    let mut model = Config::defaults();
    model.audit.ship_to = Some(ShipTo {
        kind: ShipType::S3,
        bucket: None,
        prefix: None,
        url: None,
        index: None,
        token_env: None,
    });
    let mut out = Vec::new();
    if let Ok(tree) = serde_json::to_value(model) {
        walk("", &tree, &mut out);
    }
    out
}
