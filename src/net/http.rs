//! The HTTP client chant's network services share (Vault, Elasticsearch, Splunk HEC, and
//! object_store's S3/GCS under it), and running their async calls from chant's blocking code.
//!
//! One TLS stack for the whole binary: rustls with the `ring` provider (kube uses the same),
//! installed once as the process default so reqwest and object_store pick it up. Nothing
//! here prints or knows what it carries; callers word their own errors.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// How long one request may take before it counts as a failure (and is retried by callers
/// that retry).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes `ring` the process' rustls provider (once; later calls do nothing).
pub fn install_tls_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client with chant's timeouts, trusting the system roots plus the PEM
/// certificates in `ca_file` when given. Errors are worded for the caller to prefix.
pub fn client(ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    install_tls_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                format!(
                    "the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                )
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// Runs `future` to completion on a fresh single-threaded runtime. When the caller is itself
/// inside a runtime (where blocking on another would panic) it runs on a scoped thread.
pub fn block_on<F>(future: F) -> Result<F::Output, String>
where
    F: Future + Send,
    F::Output: Send,
{
    let run = move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(future))
            .map_err(|e| format!("cannot start the async runtime: {e}"))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|s| {
        s.spawn(run)
            .join()
            .unwrap_or_else(|_| Err("the network thread panicked".to_string()))
    })
}

/// A short description of a request error without the URL's query (which could carry a
/// credential) and with the underlying cause: "connection refused", "timed out", ….
pub fn describe(e: &reqwest::Error) -> String {
    let mut reason = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(cause) = last {
        reason.push_str(&format!(" ({cause})"));
    }
    reason
}
