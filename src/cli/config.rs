//! `git chant config get|set`.

use crate::audit::{self, Event, NewEntry};
use crate::config::{self, CONFIG_PATH};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::project::Project;

/// Read or change .chant/config.md
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant config get agent.sandbox
  git chant config get agent.docker           a whole section, as YAML
  git chant config set agent.sandbox docker
  git chant config set agent.allowed_paths '[src/, tests/]'
  git chant config set agent.timeout 30m

`set` validates the new value, rewrites only that key in the front matter (comments
and prose stay), and refuses without writing anything when the result is invalid.")]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Print the effective value of a key (defaults included)
    Get {
        /// Dotted key, e.g. agent.sandbox
        key: String,
    },
    /// Set a key to a YAML value
    Set {
        /// Dotted key, e.g. agent.sandbox
        key: String,
        /// YAML value: a word, a number, true/false, or [a, b] for a list
        value: String,
    },
}

pub fn run(args: Args) -> Result<u8> {
    let project = Project::discover()?;
    match args.action {
        Action::Get { key } => {
            let cfg = project.config()?;
            let value = config::get(&cfg, &key)?;
            match value {
                serde_json::Value::String(s) => outln!("{s}"),
                serde_json::Value::Null => outln!("null"),
                v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_)) => outln!("{v}"),
                v => out!("{}", serde_yaml_ng::to_string(&v).unwrap_or_default()),
            }
            Ok(0)
        }
        Action::Set { key, value } => {
            project.require_initialised()?;
            let identity = Identity::resolve(Some(&project.repo))?;
            let path = project.root().join(CONFIG_PATH);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let before = project.config()?;
            let old = config::get(&before, &key).ok();
            let new_text = config::set_in_text(&text, &key, &value)?;
            let after = config::parse(CONFIG_PATH, &new_text)?;
            // The key must exist in the model (an unknown key was refused by the parse).
            let new = config::get(&after, &key)?;
            if old.as_ref() == Some(&new) && new_text == text {
                outln!("{key} is already {}; nothing changed.", show(&new));
                return Ok(0);
            }
            crate::atomic::replace(&path, new_text.as_bytes()).map_err(|e| Error::io(&path, e))?;
            let entry = NewEntry::new(Event::ConfigChanged)
                .detail("key", key.as_str())
                .detail("old", old.clone().unwrap_or(serde_json::Value::Null))
                .detail("new", new.clone());
            let appended = audit::append(&project, &after, &identity, vec![entry])?;
            for w in &appended.warnings {
                errln!("warning: {w}");
            }
            outln!(
                "{key}: {} -> {}",
                old.as_ref().map_or_else(|| "(unset)".to_string(), show),
                show(&new)
            );
            Ok(0)
        }
    }
}

fn show(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
