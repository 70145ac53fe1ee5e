//! `k8s://NAMESPACE/SECRET`: a Kubernetes Secret read through the API server with `kube`.
//!
//! The configuration is found as `kubectl` finds it: `KUBECONFIG` (its first file), else
//! `~/.kube/config`, else the in-cluster service account. The Secret's `data` (base64 on the
//! wire, decoded by k8s-openapi) and, when present, `stringData` become the pairs.
//! Never prints; no error holds a value or a token.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{is_valid_name, SecretsError};

/// Reads the Secret `name` of `namespace`: its values by key, sorted.
pub(super) fn read(
    uri: &str,
    namespace: &str,
    name: &str,
    env: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, SecretsError> {
    let kubeconfig = kubeconfig_path(env);
    crate::net::install_tls_provider();
    crate::net::block_on(read_async(uri, namespace, name, kubeconfig)).map_err(|reason| {
        SecretsError::Unavailable {
            uri: uri.to_string(),
            reason,
        }
    })?
}

/// The kubeconfig file `kubectl` would read, if any.
fn kubeconfig_path(env: &HashMap<String, String>) -> Option<PathBuf> {
    if let Some(list) = env.get("KUBECONFIG").filter(|k| !k.is_empty()) {
        return list.split(':').find(|p| !p.is_empty()).map(PathBuf::from);
    }
    let home = PathBuf::from(env.get("HOME")?).join(".kube").join("config");
    home.is_file().then_some(home)
}

async fn read_async(
    uri: &str,
    namespace: &str,
    name: &str,
    kubeconfig: Option<PathBuf>,
) -> Result<Vec<(String, String)>, SecretsError> {
    let input = |reason: String| SecretsError::SourceInput {
        uri: uri.to_string(),
        reason,
    };
    let config = match &kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                input(format!(
                    "cannot read the kubeconfig {}: {e}; check KUBECONFIG",
                    path.display()
                ))
            })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| input(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::incluster().map_err(|e| {
            input(format!(
                "no kubeconfig (KUBECONFIG unset, no ~/.kube/config) and not in a cluster ({e}); set KUBECONFIG"
            ))
        })?,
    };
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| input(format!("cannot set up the Kubernetes client: {e}")))?;
    let api: kube::Api<Secret> = kube::Api::namespaced(client, namespace);
    let secret = api.get(name).await.map_err(|e| match e {
        kube::Error::Api(r) if r.code == 403 => SecretsError::Unavailable {
            uri: uri.to_string(),
            reason: format!(
                "permission denied (HTTP 403) getting Secret {name} in namespace {namespace}: {}; the account needs `get` on secrets there (a Role with resourceNames: [{name}])",
                r.message
            ),
        },
        kube::Error::Api(r) if r.code == 401 => SecretsError::Unavailable {
            uri: uri.to_string(),
            reason: format!("the API server {server} refused the credentials (HTTP 401); refresh the kubeconfig's token"),
        },
        kube::Error::Api(r) if r.code == 404 => input(format!(
            "no Secret {name} in namespace {namespace} (HTTP 404); `kubectl get secrets -n {namespace}` lists them"
        )),
        kube::Error::Api(r) => SecretsError::Unavailable {
            uri: uri.to_string(),
            reason: format!("the API server answered HTTP {}: {}", r.code, r.message),
        },
        other => SecretsError::Unavailable {
            uri: uri.to_string(),
            reason: format!("cannot reach the Kubernetes API server {server}: {other}; check the kubeconfig's server and that the cluster is up"),
        },
    })?;
    let mut out: HashMap<String, String> = HashMap::new();
    for (key, bytes) in secret.data.unwrap_or_default() {
        let value = String::from_utf8(bytes.0).map_err(|_| SecretsError::NotUtf8 {
            origin: PathBuf::from(uri),
            name: key.clone(),
        })?;
        out.insert(key, value);
    }
    // The API server merges stringData into data on write; a Secret object that still
    // carries it (a manifest read back, a fake) means the same keys, stringData winning.
    for (key, value) in secret.string_data.unwrap_or_default() {
        out.insert(key, value);
    }
    let mut out: Vec<(String, String)> = out.into_iter().collect();
    if let Some((bad, _)) = out.iter().find(|(k, _)| !is_valid_name(k)) {
        return Err(SecretsError::InvalidName {
            origin: PathBuf::from(uri),
            name: bad.clone(),
        });
    }
    out.sort();
    Ok(out)
}
