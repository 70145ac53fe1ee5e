//! Secret sources: the `--secrets-from` URIs and reading them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::{dotenv::parse_dotenv, is_valid_name, Origin, Secrets, SecretsError};

/// The schemes chant reads today, for messages.
pub const SUPPORTED_SCHEMES: &str =
    "env:, dotenv:PATH, dir:PATH, vault://MOUNT/PATH, k8s://NAMESPACE/SECRET";

/// One place secrets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `env:` — the process environment (UTF-8 entries only).
    Env,
    /// `dotenv:PATH` — a `.env` file (see [`super::parse_dotenv`]).
    Dotenv(PathBuf),
    /// `dir:PATH` — a mounted Kubernetes Secret volume: one file per key, the file name is
    /// the key. Dot entries (`..data`, `..2024_01_01_…`) are Kubernetes' own bookkeeping and
    /// are skipped; the key files are symlinks into them and are followed.
    Dir(PathBuf),
    /// `vault://MOUNT/PATH` — one secret of a Vault key/value engine (v1 or v2).
    Vault { mount: String, path: String },
    /// `k8s://NAMESPACE/SECRET` — a Kubernetes Secret, through the API server.
    K8s { namespace: String, name: String },
}

impl SecretSource {
    /// Parses a `--secrets-from` URI; unknown schemes are refused naming the supported ones.
    pub fn parse(uri: &str) -> Result<SecretSource, SecretsError> {
        let bad = |reason: &str| SecretsError::BadUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = uri.strip_prefix("vault://") {
            return match rest.trim_matches('/').split_once('/') {
                Some((mount, path)) if !mount.is_empty() && !path.is_empty() => {
                    Ok(SecretSource::Vault {
                        mount: mount.to_string(),
                        path: path.trim_matches('/').to_string(),
                    })
                }
                _ => Err(bad(
                    "write it as vault://MOUNT/PATH, e.g. vault://secret/chant/agent",
                )),
            };
        }
        if let Some(rest) = uri.strip_prefix("k8s://") {
            return match rest.split_once('/') {
                Some((ns, name))
                    if is_k8s_name(ns) && is_k8s_name(name) =>
                {
                    Ok(SecretSource::K8s {
                        namespace: ns.to_string(),
                        name: name.to_string(),
                    })
                }
                _ => Err(bad("write it as k8s://NAMESPACE/SECRET with Kubernetes names (lower-case letters, digits, '-', '.'), e.g. k8s://default/chant-secrets")),
            };
        }
        let Some((scheme, arg)) = uri.split_once(':') else {
            return Err(if uri == "env" {
                bad("write it as 'env:'")
            } else {
                bad(&format!(
                    "has no scheme; did you mean 'dotenv:{uri}'? Supported: {SUPPORTED_SCHEMES}"
                ))
            });
        };
        match scheme {
            "env" if arg.is_empty() => Ok(SecretSource::Env),
            "env" => Err(bad("env: takes no argument; it reads the whole environment (use agent.secrets.expose to choose)")),
            "dotenv" | "dir" if arg.is_empty() => Err(bad(&format!("{scheme}: needs a path, e.g. '{scheme}:.env'"))),
            "dotenv" => Ok(SecretSource::Dotenv(PathBuf::from(arg))),
            "dir" => Ok(SecretSource::Dir(PathBuf::from(arg))),
            _ => Err(SecretsError::UnknownScheme {
                uri: uri.to_string(),
            }),
        }
    }
}

impl std::str::FromStr for SecretSource {
    type Err = SecretsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecretSource::parse(s)
    }
}

/// Reads `sources` in order, later values replacing earlier ones. Relative paths are taken
/// from `root`. With no sources: the process environment, then `root/.env` when it exists
/// (the seed's Solo tier: "source .env && chant work").
pub fn collect(sources: &[SecretSource], root: &Path) -> Result<Secrets, SecretsError> {
    collect_with_env(sources, root, std::env::vars_os())
}

/// [`collect`] with the process environment given (for tests and callers that already hold
/// a snapshot). Entries that are not UTF-8 are skipped: they cannot be matched by name globs
/// nor masked as text.
pub fn collect_with_env(
    sources: &[SecretSource],
    root: &Path,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Secrets, SecretsError> {
    let env: Vec<(String, String)> = env
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let defaults;
    let sources = if sources.is_empty() {
        let mut d = vec![SecretSource::Env];
        let dotenv = root.join(".env");
        if dotenv.is_file() {
            d.push(SecretSource::Dotenv(dotenv));
        }
        defaults = d;
        &defaults[..]
    } else {
        sources
    };
    let mut secrets = Secrets::new();
    let remote_env: HashMap<String, String> = env.iter().cloned().collect();
    for source in sources {
        match source {
            SecretSource::Env => {
                for (k, v) in &env {
                    secrets.insert(k.clone(), v.clone(), Origin::Env);
                }
            }
            SecretSource::Dotenv(path) => {
                let path = root.join(path);
                let text = fs::read(&path).map_err(|e| SecretsError::io(&path, e))?;
                let text = String::from_utf8(text)
                    .map_err(|_| SecretsError::NotText { file: path.clone() })?;
                for (k, v) in parse_dotenv(&path, &text)? {
                    secrets.insert(k, v, Origin::Dotenv(path.clone()));
                }
            }
            SecretSource::Dir(path) => {
                let path = root.join(path);
                for (k, v) in read_dir_source(&path)? {
                    secrets.insert(k, v, Origin::Dir(path.clone()));
                }
            }
            SecretSource::Vault { mount, path } => {
                let uri = format!("vault://{mount}/{path}");
                for (k, v) in super::vault::read(&uri, mount, path, &remote_env)? {
                    secrets.insert(k, v, Origin::Remote(uri.clone()));
                }
            }
            SecretSource::K8s { namespace, name } => {
                let uri = format!("k8s://{namespace}/{name}");
                for (k, v) in super::k8s::read(&uri, namespace, name, &remote_env)? {
                    secrets.insert(k, v, Origin::Remote(uri.clone()));
                }
            }
        }
    }
    Ok(secrets)
}

/// A Kubernetes object name (RFC 1123 subdomain): lower-case letters, digits, '-' and '.'.
fn is_k8s_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
}

/// Reads a mounted Secret volume: every regular file (symlinks followed) whose name does not
/// start with `.`. One trailing newline is removed (files written with `echo` have one; a
/// variable holding it would break most tools).
fn read_dir_source(dir: &Path) -> Result<Vec<(String, String)>, SecretsError> {
    let entries = fs::read_dir(dir).map_err(|e| SecretsError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SecretsError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(SecretsError::InvalidName {
                origin: dir.to_path_buf(),
                name: name.to_string_lossy().into_owned(),
            });
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = fs::metadata(&path).map_err(|e| SecretsError::io(&path, e))?;
        if !meta.is_file() {
            continue;
        }
        if !is_valid_name(name) {
            return Err(SecretsError::InvalidName {
                origin: dir.to_path_buf(),
                name: name.to_string(),
            });
        }
        let bytes = fs::read(&path).map_err(|e| SecretsError::io(&path, e))?;
        let mut value = String::from_utf8(bytes).map_err(|_| SecretsError::NotUtf8 {
            origin: dir.to_path_buf(),
            name: name.to_string(),
        })?;
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        out.push((name.to_string(), value));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_schemes() {
        assert_eq!(SecretSource::parse("env:").ok(), Some(SecretSource::Env));
        assert_eq!(
            SecretSource::parse("dotenv:.env.local").ok(),
            Some(SecretSource::Dotenv(".env.local".into()))
        );
        assert_eq!(
            SecretSource::parse("dir:/var/run/secrets/app").ok(),
            Some(SecretSource::Dir("/var/run/secrets/app".into()))
        );
    }

    #[test]
    fn parses_vault_and_k8s() {
        assert_eq!(
            SecretSource::parse("vault://secret/team/app").ok(),
            Some(SecretSource::Vault {
                mount: "secret".into(),
                path: "team/app".into()
            })
        );
        assert_eq!(
            SecretSource::parse("k8s://default/chant-secrets").ok(),
            Some(SecretSource::K8s {
                namespace: "default".into(),
                name: "chant-secrets".into()
            })
        );
        for uri in [
            "vault://secret",
            "vault://",
            "k8s://default",
            "k8s://Default/x",
            "k8s://a/b/c",
        ] {
            let e = SecretSource::parse(uri).expect_err(uri);
            assert_eq!(e.exit_code(), 2, "{uri}");
        }
    }

    #[test]
    fn unknown_and_malformed_uris() {
        for uri in [
            "s3://bucket/x",
            "file:/tmp/x",
            "dotenv:",
            "dir:",
            "env:FOO",
            ".env",
            "env",
        ] {
            let e = SecretSource::parse(uri).expect_err(uri);
            assert_eq!(e.exit_code(), 2, "{uri}");
        }
        let e = SecretSource::parse("s3://bucket").expect_err("unknown");
        assert!(e.to_string().contains(SUPPORTED_SCHEMES));
    }
}
