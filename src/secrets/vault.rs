//! `vault://MOUNT/PATH`: one secret of HashiCorp Vault's key/value engine, over its HTTP API.
//!
//! As the `vault kv get` CLI does, the engine version is asked per mount
//! (`GET /v1/sys/internal/ui/mounts/MOUNT/PATH` → `data.path`, `data.options.version`):
//! KV v2 reads `/v1/MOUNT/data/PATH` and unwraps `data.data`, KV v1 reads `/v1/MOUNT/PATH`
//! → `data`. Settings come from Vault's own variables: `VAULT_ADDR` (required),
//! `VAULT_TOKEN` (else `~/.vault-token`, as written by `vault login`), `VAULT_NAMESPACE`,
//! `VAULT_CACERT`. Never prints; no error holds a value or the token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{is_valid_name, SecretsError};

/// Where to find Vault and how to authenticate, from the environment given.
struct Settings {
    addr: String,
    token: String,
    namespace: Option<String>,
    ca_file: Option<PathBuf>,
}

impl Settings {
    fn from_env(uri: &str, env: &HashMap<String, String>) -> Result<Settings, SecretsError> {
        let input = |reason: String| SecretsError::SourceInput {
            uri: uri.to_string(),
            reason,
        };
        let addr = env
            .get("VAULT_ADDR")
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                input("VAULT_ADDR is not set; export VAULT_ADDR=https://vault.example.com:8200 (the address `vault status` uses)".into())
            })?
            .trim_end_matches('/')
            .to_string();
        if !(addr.starts_with("http://") || addr.starts_with("https://")) {
            return Err(input(format!(
                "VAULT_ADDR '{addr}' must start with https:// (or http:// for a dev server)"
            )));
        }
        let token = match env.get("VAULT_TOKEN").filter(|t| !t.is_empty()) {
            Some(t) => t.trim().to_string(),
            None => {
                let file = env.get("HOME").map(|h| Path::new(h).join(".vault-token"));
                match file.and_then(|f| std::fs::read_to_string(f).ok()) {
                    Some(t) if !t.trim().is_empty() => t.trim().to_string(),
                    _ => {
                        return Err(input(
                            "no Vault token: set VAULT_TOKEN or run `vault login` (which writes ~/.vault-token)".into(),
                        ))
                    }
                }
            }
        };
        Ok(Settings {
            addr,
            token,
            namespace: env
                .get("VAULT_NAMESPACE")
                .filter(|n| !n.is_empty())
                .cloned(),
            ca_file: env
                .get("VAULT_CACERT")
                .filter(|c| !c.is_empty())
                .map(PathBuf::from),
        })
    }
}

/// Reads the secret `path` of the engine mounted at `mount`: its string values by key.
pub(super) fn read(
    uri: &str,
    mount: &str,
    path: &str,
    env: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, SecretsError> {
    let settings = Settings::from_env(uri, env)?;
    let client = crate::net::client(settings.ca_file.as_deref()).map_err(|reason| {
        SecretsError::SourceInput {
            uri: uri.to_string(),
            reason: format!("VAULT_CACERT: {reason}"),
        }
    })?;
    crate::net::block_on(read_async(uri, mount, path, &settings, &client)).map_err(|reason| {
        SecretsError::Unavailable {
            uri: uri.to_string(),
            reason,
        }
    })?
}

async fn read_async(
    uri: &str,
    mount: &str,
    path: &str,
    settings: &Settings,
    client: &reqwest::Client,
) -> Result<Vec<(String, String)>, SecretsError> {
    // Which engine version, and where the mount really ends (it may hold a '/').
    let full = format!("{mount}/{path}");
    let (status, body) = get(
        uri,
        settings,
        client,
        &format!("sys/internal/ui/mounts/{full}"),
    )
    .await?;
    let (mount, version) = match status {
        200 => {
            let data = &body["data"];
            let mount = data["path"]
                .as_str()
                .map(|p| p.trim_end_matches('/').to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| mount.to_string());
            let version = data["options"]["version"]
                .as_str()
                .unwrap_or("1")
                .to_string();
            (mount, version)
        }
        // Vault before 0.10 has no such endpoint: KV v1 then, as the CLI assumes.
        404 => (mount.to_string(), "1".to_string()),
        _ => return Err(http_error(uri, status, &body, "the mounts endpoint")),
    };
    let rest = full
        .strip_prefix(&mount)
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(path);
    let api_path = if version == "2" {
        format!("{mount}/data/{rest}")
    } else {
        format!("{mount}/{rest}")
    };
    let (status, body) = get(uri, settings, client, &api_path).await?;
    if status != 200 {
        return Err(http_error(uri, status, &body, &api_path));
    }
    let data = if version == "2" {
        &body["data"]["data"]
    } else {
        &body["data"]
    };
    let Some(map) = data.as_object() else {
        return Err(SecretsError::SourceInput {
            uri: uri.to_string(),
            reason: format!(
                "{api_path} has no key/value data (KV v{version}); is it a secret and not a folder?"
            ),
        });
    };
    let mut out = Vec::with_capacity(map.len());
    for (key, value) in map {
        if !is_valid_name(key) {
            return Err(SecretsError::InvalidName {
                origin: PathBuf::from(uri),
                name: key.clone(),
            });
        }
        let Value::String(value) = value else {
            return Err(SecretsError::SourceInput {
                uri: uri.to_string(),
                reason: format!(
                    "the value of '{key}' is {}, not a string; store it as a string (`vault kv put {full} {key}=...`)",
                    kind(value)
                ),
            });
        };
        out.push((key.clone(), value.clone()));
    }
    out.sort();
    Ok(out)
}

/// One GET with the token (and namespace): the status and the JSON body (Null if none).
async fn get(
    uri: &str,
    settings: &Settings,
    client: &reqwest::Client,
    api_path: &str,
) -> Result<(u16, Value), SecretsError> {
    let url = format!("{}/v1/{api_path}", settings.addr);
    let mut request = client.get(&url).header("X-Vault-Token", &settings.token);
    if let Some(ns) = &settings.namespace {
        request = request.header("X-Vault-Namespace", ns);
    }
    let response = request
        .send()
        .await
        .map_err(|e| SecretsError::Unavailable {
            uri: uri.to_string(),
            reason: format!(
                "cannot reach Vault at {}: {}; check VAULT_ADDR and that Vault is up",
                settings.addr,
                crate::net::describe(&e)
            ),
        })?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| SecretsError::Unavailable {
            uri: uri.to_string(),
            reason: format!(
                "reading Vault's answer failed: {}",
                crate::net::describe(&e)
            ),
        })?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// The error for a non-200 answer. Vault's `errors` texts are messages, not values.
fn http_error(uri: &str, status: u16, body: &Value, what: &str) -> SecretsError {
    let said = body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|s| !s.is_empty())
        .map(|s| format!(" (Vault said: {s})"))
        .unwrap_or_default();
    let uri = uri.to_string();
    match status {
        403 => SecretsError::Unavailable {
            uri,
            reason: format!("permission denied (HTTP 403) reading {what}{said}; check the token (VAULT_TOKEN or ~/.vault-token), VAULT_NAMESPACE, and that its policy grants read there"),
        },
        404 => SecretsError::SourceInput {
            uri,
            reason: format!("no secret at {what} (HTTP 404){said}; check the mount and path (`vault kv get` lists them)"),
        },
        _ => SecretsError::Unavailable {
            uri,
            reason: format!("Vault answered HTTP {status} for {what}{said}"),
        },
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
