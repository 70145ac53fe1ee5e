//! `s3` and `gcs`: one JSON object per entry, through the `object_store` crate.
//!
//! Key: `PREFIX/YYYY-MM-DD/SEQ-HASH.json` — the entry's date, its position in the ledger
//! (ten digits, so keys list in ledger order) and its hash: a resent entry overwrites itself.
//! Credentials and endpoints come only from the platforms' standard variables: every
//! `AWS_*` the AWS tools read (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, …), `GOOGLE_APPLICATION_CREDENTIALS` /
//! `GOOGLE_SERVICE_ACCOUNT`, and `STORAGE_EMULATOR_HOST` (Google's variable for a local
//! emulator, where requests go unsigned as Google's own libraries send them).

use std::collections::HashMap;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use super::{document, Failure, Item, Stored};
use crate::config::{ShipTo, ShipType};

/// Puts in flight at once within a batch.
const CONCURRENCY: usize = 16;

/// A bucket and a key prefix.
pub struct ObjectTarget {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

/// `audit.ship_to.prefix` without surrounding slashes (empty when unset).
pub fn prefix(to: &ShipTo) -> String {
    to.prefix
        .as_deref()
        .unwrap_or("")
        .trim_matches('/')
        .to_string()
}

/// The object key of the `seq`th ledger entry under `prefix`.
pub fn key(prefix: &str, seq: usize, stored: &Stored) -> String {
    let date = stored.entry.ts().get(..10).unwrap_or("unknown-date");
    let name = format!("{date}/{seq:010}-{}.json", stored.entry.hash());
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

impl ObjectTarget {
    pub(crate) fn new(to: &ShipTo, env: &HashMap<String, String>) -> Result<Self, String> {
        crate::net::install_tls_provider();
        let bucket = to
            .bucket
            .clone()
            .ok_or("bucket is required (audit.ship_to.bucket)")?;
        // chant retries whole batches itself (see `Options`); one layer of retries only.
        let retry = RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        };
        let store: Arc<dyn ObjectStore> = match to.kind {
            ShipType::Gcs => {
                let mut b = GoogleCloudStorageBuilder::new().with_bucket_name(&bucket);
                for (k, v) in env.iter().filter(|(k, _)| k.starts_with("GOOGLE_")) {
                    if let Ok(key) = k.to_ascii_lowercase().parse::<GoogleConfigKey>() {
                        b = b.with_config(key, v);
                    }
                }
                if let Some(host) = env.get("STORAGE_EMULATOR_HOST").filter(|h| !h.is_empty()) {
                    let url = if host.contains("://") {
                        host.trim_end_matches('/').to_string()
                    } else {
                        format!("http://{host}")
                    };
                    // Emulators take no credentials; never ask a metadata server for one.
                    let anonymous = object_store::StaticCredentialProvider::new(
                        object_store::gcp::GcpCredential {
                            bearer: String::new(),
                        },
                    );
                    b = b
                        .with_base_url(&url)
                        .with_credentials(Arc::new(anonymous))
                        .with_skip_signature(true)
                        .with_client_options(
                            object_store::ClientOptions::new()
                                .with_allow_http(url.starts_with("http://")),
                        );
                }
                Arc::new(
                    b.with_retry(retry)
                        .build()
                        .map_err(|e| format!("cannot set up GCS for bucket {bucket}: {e}"))?,
                )
            }
            _ => {
                let mut b = AmazonS3Builder::new().with_bucket_name(&bucket);
                for (k, v) in env.iter().filter(|(k, _)| k.starts_with("AWS_")) {
                    if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        b = b.with_config(key, v);
                    }
                }
                let endpoint = env
                    .get("AWS_ENDPOINT_URL_S3")
                    .or_else(|| env.get("AWS_ENDPOINT_URL"));
                if let Some(endpoint) = endpoint {
                    b = b.with_endpoint(endpoint);
                    if endpoint.starts_with("http://") {
                        b = b.with_allow_http(true);
                    }
                }
                Arc::new(
                    b.with_retry(retry)
                        .build()
                        .map_err(|e| format!("cannot set up S3 for bucket {bucket}: {e}; set AWS_REGION and the AWS_* credentials"))?,
                )
            }
        };
        Ok(ObjectTarget {
            store,
            prefix: prefix(to),
        })
    }

    pub(crate) async fn send(&self, batch: &[Item<'_>]) -> Result<(), Failure> {
        for group in batch.chunks(CONCURRENCY) {
            let puts = group.iter().map(|item| async move {
                let mut body = serde_json::to_vec(&document(item))
                    .map_err(|e| Failure::fatal(format!("cannot encode an entry: {e}")))?;
                body.push(b'\n');
                let key = key(&self.prefix, item.seq, item.stored);
                self.store
                    .put(&ObjectPath::from(key.as_str()), PutPayload::from(body))
                    .await
                    .map(|_| ())
                    .map_err(|e| failure(&key, e))
            });
            for result in futures_util::future::join_all(puts).await {
                result?;
            }
        }
        Ok(())
    }
}

fn failure(key: &str, e: object_store::Error) -> Failure {
    let reason = format!("put {key}: {e}");
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Failure::fatal(format!(
            "{reason}; check the credentials' write access to the bucket"
        )),
        _ => Failure::retry(reason),
    }
}
