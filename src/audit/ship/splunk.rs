//! `splunk`: entries as events through the HTTP Event Collector.
//!
//! One `POST URL/services/collector/event` per batch with `Authorization: Splunk TOKEN`
//! (the token from the variable `audit.ship_to.token_env` names), the body being one event
//! object per entry: `time` (epoch seconds of the entry), `source` `git-chant`, `sourcetype`
//! `chant:audit`, `index` when set, and the entry (with its `hash`) as `event`. HEC has no
//! document id: a batch resent after a lost acknowledgement is indexed twice, each copy with
//! the same `hash` (search with `dedup hash`).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{document, Failure, Item};
use crate::config::ShipTo;

/// HEC's event endpoint, appended to `audit.ship_to.url` unless already there.
pub const EVENT_PATH: &str = "/services/collector/event";

pub struct Splunk {
    client: reqwest::Client,
    url: String,
    index: Option<String>,
    token: String,
}

impl Splunk {
    pub(crate) fn new(to: &ShipTo, env: &HashMap<String, String>) -> Result<Self, String> {
        let base = to
            .url
            .clone()
            .ok_or("url is required (audit.ship_to.url)")?
            .trim_end_matches('/')
            .to_string();
        let url = if base.ends_with(EVENT_PATH) {
            base
        } else {
            format!("{base}{EVENT_PATH}")
        };
        let token = super::token(to, env)?
            .ok_or("token_env is required for splunk: name the variable that holds the HEC token (audit.ship_to.token_env)")?;
        Ok(Splunk {
            client: crate::net::client(None)?,
            url,
            index: to.index.clone(),
            token,
        })
    }

    pub(crate) async fn send(&self, batch: &[Item<'_>]) -> Result<(), Failure> {
        let mut body = String::new();
        for item in batch {
            let time = chrono::DateTime::parse_from_rfc3339(item.stored.entry.ts())
                .map(|t| t.timestamp())
                .unwrap_or(0);
            let mut event = json!({
                "time": time,
                "source": "git-chant",
                "sourcetype": "chant:audit",
                "event": document(item),
            });
            if let Some(index) = &self.index {
                event["index"] = Value::String(index.clone());
            }
            body.push_str(&event.to_string());
            body.push('\n');
        }
        let response = self
            .client
            .post(&self.url)
            .header("Authorization", format!("Splunk {}", self.token))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                Failure::retry(format!(
                    "cannot reach {}: {}",
                    self.url,
                    crate::net::describe(&e)
                ))
            })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        if status == 200 {
            return Ok(());
        }
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let said = answer["text"]
            .as_str()
            .map(|t| format!(": {t}"))
            .unwrap_or_default();
        let hint = if status == 401 || status == 403 {
            "; check the HEC token in the variable audit.ship_to.token_env names"
        } else {
            ""
        };
        Err(Failure::http(
            status,
            format!("{} answered HTTP {status}{said}{hint}", self.url),
        ))
    }
}
