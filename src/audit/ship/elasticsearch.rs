//! `elasticsearch`: entries as documents through the `_bulk` API.
//!
//! One `POST URL/_bulk` per batch, `Content-Type: application/x-ndjson`, an `index` action
//! per entry with `_index` = `audit.ship_to.index` (default `chant-audit`) and `_id` = the
//! entry hash, so a resent entry replaces itself. `_bulk` answers 200 even when items fail:
//! every item's status is checked. With `token_env`, that variable holds an API key sent as
//! `Authorization: ApiKey …` (the encoded form Elasticsearch prints when it creates one).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{document, Failure, Item};
use crate::config::ShipTo;

/// The index when `audit.ship_to.index` is unset.
pub const DEFAULT_INDEX: &str = "chant-audit";

pub struct Elasticsearch {
    client: reqwest::Client,
    url: String,
    index: String,
    api_key: Option<String>,
}

/// The index entries go to.
pub fn index(to: &ShipTo) -> String {
    to.index
        .clone()
        .unwrap_or_else(|| DEFAULT_INDEX.to_string())
}

impl Elasticsearch {
    pub(crate) fn new(to: &ShipTo, env: &HashMap<String, String>) -> Result<Self, String> {
        let url = to
            .url
            .clone()
            .ok_or("url is required (audit.ship_to.url)")?
            .trim_end_matches('/')
            .to_string();
        Ok(Elasticsearch {
            client: crate::net::client(None)?,
            url,
            index: index(to),
            api_key: super::token(to, env)?,
        })
    }

    pub(crate) async fn send(&self, batch: &[Item<'_>]) -> Result<(), Failure> {
        let mut body = String::new();
        for item in batch {
            let action = json!({"index": {"_index": self.index, "_id": item.stored.entry.hash()}});
            body.push_str(&action.to_string());
            body.push('\n');
            body.push_str(&document(item).to_string());
            body.push('\n');
        }
        let url = format!("{}/_bulk", self.url);
        let mut request = self
            .client
            .post(&url)
            .header("Content-Type", "application/x-ndjson")
            .body(body);
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("ApiKey {key}"));
        }
        let response = request.send().await.map_err(|e| {
            Failure::retry(format!("cannot reach {url}: {}", crate::net::describe(&e)))
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| {
            Failure::retry(format!(
                "reading {url}'s answer: {}",
                crate::net::describe(&e)
            ))
        })?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status != 200 {
            let said = answer["error"]["reason"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let hint = if status == 401 || status == 403 {
                "; check the API key in the variable audit.ship_to.token_env names"
            } else {
                ""
            };
            return Err(Failure::http(
                status,
                format!("{url} answered HTTP {status}{said}{hint}"),
            ));
        }
        let Some(items) = answer["items"].as_array() else {
            return Err(Failure::retry(format!(
                "{url} answered without an items list"
            )));
        };
        if items.len() != batch.len() {
            return Err(Failure::retry(format!(
                "{url} answered {} items for {} entries",
                items.len(),
                batch.len()
            )));
        }
        let mut retry = false;
        let mut failed = Vec::new();
        for item in items {
            let result = &item["index"];
            let code = result["status"].as_u64().unwrap_or(0) as u16;
            if (200..300).contains(&code) {
                continue;
            }
            retry |= code == 429 || code >= 500;
            failed.push(format!(
                "{} (HTTP {code}: {})",
                result["_id"].as_str().unwrap_or("?"),
                result["error"]["reason"]
                    .as_str()
                    .or(result["error"]["type"].as_str())
                    .unwrap_or("no reason given")
            ));
        }
        if failed.is_empty() {
            return Ok(());
        }
        let reason = format!(
            "{} of {} entries were refused by {url}: {}",
            failed.len(),
            batch.len(),
            failed.join("; ")
        );
        Err(if retry {
            Failure::retry(reason)
        } else {
            Failure::fatal(reason)
        })
    }
}
