//! Signing ledger commits the way git signs commits.
//!
//! Honours `audit.sign` (auto|always|never) and git's own settings: `gpg.format` (openpgp,
//! ssh, x509), `user.signingkey`, `gpg.program` / `gpg.openpgp.program`, `gpg.ssh.program`,
//! `gpg.x509.program`. SSH ed25519 key files that are not passphrase-protected are
//! signed in-process (SSHSIG, namespace `git`, sha512 — what `ssh-keygen -Y sign` writes);
//! anything else (RSA keys — ssh-key 0.6 cannot sign with them —, agent keys, encrypted
//! keys, OpenPGP, X.509) goes to the external program
//! exactly as git would run it. This module never prints and never reads key material from
//! anywhere but the file the git config names.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use git2::Repository;
use ssh_key::{HashAlg, LineEnding, PrivateKey, SshSig};

use super::AuditError;
use crate::config::SignMode;

/// The SSHSIG namespace git uses for commits.
pub const GIT_NAMESPACE: &str = "git";

/// How entries get signed (or not).
pub enum Signer {
    /// Unsigned commits.
    Unsigned,
    /// An SSH private key file, signed in-process.
    SshKey {
        key: Box<PrivateKey>,
        path: PathBuf,
        /// For ed25519 keys: the expanded signing key, derived and checked once rather
        /// than per signature (that check costs more than the signature itself).
        ed25519: Option<Box<ed25519_dalek::SigningKey>>,
    },
    /// `gpg.ssh.program -Y sign -n git -f KEY` (agent keys, encrypted key files).
    SshProgram { program: String, key: String },
    /// `gpg.program --status-fd=2 -bsau KEY` (OpenPGP) or the X.509 program.
    Gpg { program: String, key: String },
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Signer {
    /// The signer `mode` and `repo`'s git config call for.
    pub fn from_config(repo: &Repository, mode: SignMode) -> Result<Signer, AuditError> {
        if mode == SignMode::Never {
            return Ok(Signer::Unsigned);
        }
        let config = repo.config()?;
        let get = |key: &str| config.get_string(key).ok().filter(|v| !v.trim().is_empty());
        let format = get("gpg.format").unwrap_or_else(|| "openpgp".into());
        let Some(key) = get("user.signingkey") else {
            return match mode {
                SignMode::Always => Err(AuditError::SignConfig(
                    "audit.sign is 'always' but no signing key is configured; set git config \
                     user.signingkey (and gpg.format ssh for an SSH key), or set audit.sign to auto"
                        .into(),
                )),
                _ => Ok(Signer::Unsigned),
            };
        };
        match format.as_str() {
            "ssh" => {
                let program = get("gpg.ssh.program").unwrap_or_else(|| "ssh-keygen".into());
                Ok(ssh_signer(&key, program))
            }
            "openpgp" => Ok(Signer::Gpg {
                program: get("gpg.openpgp.program")
                    .or_else(|| get("gpg.program"))
                    .unwrap_or_else(|| "gpg".into()),
                key,
            }),
            "x509" => Ok(Signer::Gpg {
                program: get("gpg.x509.program").unwrap_or_else(|| "gpgsm".into()),
                key,
            }),
            other => Err(AuditError::SignConfig(format!(
                "git config gpg.format is '{other}'; use openpgp, ssh or x509"
            ))),
        }
    }

    /// A signer for an SSH private key file, signed in-process.
    pub fn from_ssh_key_file(path: &Path) -> Result<Signer, AuditError> {
        let key = PrivateKey::read_openssh_file(path).map_err(|e| {
            AuditError::SignConfig(format!("{}: not an SSH private key: {e}", path.display()))
        })?;
        if key.is_encrypted() {
            return Err(AuditError::SignConfig(format!(
                "{}: the key is passphrase-protected; load it into ssh-agent and set \
                 user.signingkey to its public key",
                path.display()
            )));
        }
        let ed25519 = match key.key_data() {
            ssh_key::private::KeypairData::Ed25519(kp) => {
                ed25519_dalek::SigningKey::try_from(kp).ok().map(Box::new)
            }
            _ => None,
        };
        Ok(Signer::SshKey {
            key: Box::new(key),
            path: path.to_path_buf(),
            ed25519,
        })
    }

    pub fn is_signing(&self) -> bool {
        !matches!(self, Signer::Unsigned)
    }

    /// A short description for messages (never key material).
    pub fn describe(&self) -> String {
        match self {
            Signer::Unsigned => "unsigned".into(),
            Signer::SshKey { path, .. } => format!("ssh key {} (in-process)", path.display()),
            Signer::SshProgram { program, key } => format!("{program} -Y sign -f {key}"),
            Signer::Gpg { program, key } => format!("{program} -bsau {key}"),
        }
    }

    /// The armoured signature of `payload`, or `None` when unsigned.
    pub fn sign(&self, payload: &[u8]) -> Result<Option<String>, AuditError> {
        match self {
            Signer::Unsigned => Ok(None),
            Signer::SshKey { key, path, ed25519 } => {
                let sig = match ed25519 {
                    Some(sk) => sign_ed25519(sk, key, payload),
                    None => key.sign(GIT_NAMESPACE, HashAlg::Sha512, payload),
                };
                sig.and_then(|sig| sig.to_pem(LineEnding::LF))
                    .map(Some)
                    .map_err(|e| AuditError::SignFailed(format!("{}: {e}", path.display())))
            }
            Signer::SshProgram { program, key } => {
                let args = ["-Y", "sign", "-n", GIT_NAMESPACE, "-f", key.as_str()];
                run_signer(program, &args, payload, None).map(Some)
            }
            Signer::Gpg { program, key } => {
                let args = ["--status-fd=2", "-bsau", key.as_str()];
                run_signer(program, &args, payload, Some("[GNUPG:] SIG_CREATED ")).map(Some)
            }
        }
    }
}

/// SSHSIG over `payload` with a prepared ed25519 key: exactly what `PrivateKey::sign`
/// produces, without re-deriving the key each time.
fn sign_ed25519(
    sk: &ed25519_dalek::SigningKey,
    key: &PrivateKey,
    payload: &[u8],
) -> ssh_key::Result<SshSig> {
    use ed25519_dalek::Signer as _;
    let data = SshSig::signed_data(GIT_NAMESPACE, HashAlg::Sha512, payload)?;
    let signature = sk.sign(&data);
    SshSig::new(
        key.public_key().key_data().clone(),
        GIT_NAMESPACE,
        HashAlg::Sha512,
        ssh_key::Signature::new(ssh_key::Algorithm::Ed25519, signature.to_bytes().to_vec())?,
    )
}

/// `user.signingkey` for `gpg.format ssh`: a key file (private, or public with the private
/// key beside it) is used in-process when it can be; `key::…` literals, agent-only keys and
/// encrypted keys go to the program.
fn ssh_signer(key: &str, program: String) -> Signer {
    if key.starts_with("key::") || key.starts_with("ssh-") {
        return external_ssh(key, program);
    }
    let path = expand_home(key);
    let private = match path.to_str().and_then(|p| p.strip_suffix(".pub")) {
        Some(stem) => PathBuf::from(stem),
        None => path.clone(),
    };
    match Signer::from_ssh_key_file(&private) {
        // ssh-key 0.6 builds RSA private keys with the wrong primes (p twice) and fails
        // to sign, so RSA keys go to the program like agent keys do.
        Ok(Signer::SshKey { key, .. }) if key.algorithm().is_rsa() => {
            external_ssh(&path.to_string_lossy(), program)
        }
        Ok(signer) => signer,
        Err(_) => external_ssh(&path.to_string_lossy(), program),
    }
}

fn external_ssh(key: &str, program: String) -> Signer {
    Signer::SshProgram {
        program,
        key: key.to_string(),
    }
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn run_signer(
    program: &str,
    args: &[&str],
    payload: &[u8],
    expect_status: Option<&str>,
) -> Result<String, AuditError> {
    // A `key::` literal is handed over in a temporary file, as git does.
    let mut literal = None;
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if let Some(pos) = args.iter().position(|a| a.starts_with("key::")) {
        let mut file = tempfile::NamedTempFile::new()
            .map_err(|e| AuditError::SignFailed(format!("temporary key file: {e}")))?;
        let text = args[pos].trim_start_matches("key::").to_string();
        writeln!(file, "{text}")
            .map_err(|e| AuditError::SignFailed(format!("temporary key file: {e}")))?;
        args[pos] = file.path().to_string_lossy().into_owned();
        literal = Some(file);
    }
    let mut child = Command::new(program)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            AuditError::SignFailed(format!(
                "cannot run {program} (git config gpg.program / gpg.ssh.program): {e}"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(payload)
            .map_err(|e| AuditError::SignFailed(format!("{program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| AuditError::SignFailed(format!("{program}: {e}")))?;
    drop(literal);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let created = expect_status.is_none_or(|s| stderr.contains(s));
    if !out.status.success() || !created || out.stdout.is_empty() {
        return Err(AuditError::SignFailed(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            stderr.trim()
        )));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| AuditError::SignFailed(format!("{program} printed a non-UTF-8 signature")))
}
