//! Signature checks for verification: git's allowed-signers file and SSHSIG signatures
//! checked in-process (OpenPGP and X.509 ones are handed to `git verify-commit`).
//!
//! Owns who may sign with which key. It never prints and never changes the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use git2::{Oid, Repository};
use ssh_key::{PublicKey, SshSig};

use super::sign::GIT_NAMESPACE;
use super::AuditError;

/// git's allowed-signers file: who may sign, with which key.
pub struct AllowedSigners {
    path: PathBuf,
    entries: Vec<(Vec<String>, PublicKey)>,
}

impl AllowedSigners {
    /// Loads `path`, or git config `gpg.ssh.allowedSignersFile` when `None`.
    pub fn load(repo: &Repository, path: Option<&Path>) -> Result<AllowedSigners, AuditError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let config = repo.config()?;
                match config.get_path("gpg.ssh.allowedSignersFile") {
                    Ok(p) => p,
                    Err(_) => {
                        return Err(AuditError::Invalid(
                            "--require-signatures needs an allowed-signers file: pass \
                             --allowed-signers FILE or set git config gpg.ssh.allowedSignersFile"
                                .into(),
                        ))
                    }
                }
            }
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| AuditError::Invalid(format!("allowed signers {}: {e}", path.display())))?;
        Ok(AllowedSigners {
            entries: parse_allowed_signers(&text),
            path,
        })
    }

    fn allows(&self, email: &str, key: &ssh_key::public::KeyData) -> bool {
        self.entries
            .iter()
            .any(|(principals, pk)| pk.key_data() == key && principals_allow(principals, email))
    }
}

/// Parses the `principals [options] keytype base64 [comment]` lines of an allowed-signers
/// file. Lines restricted by `namespaces=` to other namespaces are left out.
fn parse_allowed_signers(text: &str) -> Vec<(Vec<String>, PublicKey)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(key_at) = tokens
            .iter()
            .position(|t| t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-"))
        else {
            continue;
        };
        if key_at == 0 || key_at + 1 >= tokens.len() {
            continue;
        }
        let options = tokens[1..key_at].join(" ");
        if let Some(ns) = options.split("namespaces=\"").nth(1) {
            let list = ns.split('"').next().unwrap_or("");
            if !list.split(',').any(|n| n.trim() == GIT_NAMESPACE) {
                continue;
            }
        }
        let Ok(key) =
            PublicKey::from_openssh(&format!("{} {}", tokens[key_at], tokens[key_at + 1]))
        else {
            continue;
        };
        let principals = tokens[0]
            .trim_matches('"')
            .split(',')
            .map(str::to_string)
            .collect();
        out.push((principals, key));
    }
    out
}

/// Whether a line's comma-separated principals admit `email`, as ssh's
/// `match_pattern_list` decides: a negated pattern (`!evil@example.com`) that matches
/// refuses the line whatever else matches; otherwise any plain pattern that matches admits.
fn principals_allow(principals: &[String], email: &str) -> bool {
    let mut allowed = false;
    for p in principals {
        match p.strip_prefix('!') {
            Some(negated) if glob_match(negated, email) => return false,
            Some(_) => {}
            None => allowed |= glob_match(p, email),
        }
    }
    allowed
}

/// `*` and `?` patterns, as in ssh's allowed-signers principals.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// Checks the signature of ledger commit `commit` (`signature`: the `gpgsig` header and the
/// payload it signs) against `signers`, for the committer `email`.
pub fn check_signature(
    commit: Oid,
    signature: Option<&(String, Vec<u8>)>,
    email: &str,
    signers: &AllowedSigners,
    git_dir: &Path,
) -> Result<(), String> {
    let Some((sig_text, data)) = signature else {
        return Err("the entry is not signed (--require-signatures)".into());
    };
    if sig_text.starts_with("-----BEGIN SSH SIGNATURE-----") {
        let sshsig = SshSig::from_pem(sig_text.as_bytes())
            .map_err(|e| format!("malformed SSH signature: {e}"))?;
        if sshsig.namespace() != GIT_NAMESPACE {
            return Err(format!(
                "signed for namespace '{}', not 'git'",
                sshsig.namespace()
            ));
        }
        let key = PublicKey::new(sshsig.public_key().clone(), "");
        if !signers.allows(email, sshsig.public_key()) {
            return Err(format!(
                "signed by key {}, which {} does not allow for {email}",
                key.fingerprint(Default::default()),
                signers.path.display()
            ));
        }
        key.verify(GIT_NAMESPACE, data, &sshsig)
            .map_err(|_| "the signature does not match the commit (bad signature)".to_string())
    } else {
        // OpenPGP / X.509: let git and gpg judge, with the user's keyring.
        let status = Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["verify-commit", &commit.to_string()])
            .output()
            .map_err(|e| format!("cannot run git verify-commit: {e}"))?;
        if status.status.success() {
            Ok(())
        } else {
            Err(format!(
                "git verify-commit refused the signature: {}",
                String::from_utf8_lossy(&status.stderr).trim()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_glob() {
        assert!(glob_match("*@example.com", "a@example.com"));
        assert!(glob_match("a@example.com", "A@example.com"));
        assert!(!glob_match("b@example.com", "a@example.com"));
    }

    #[test]
    fn a_negated_principal_refuses_what_a_wider_pattern_admits() {
        let line = |text: &str| text.split(',').map(str::to_string).collect::<Vec<_>>();
        let list = line("!mallory@example.com,*@example.com");
        assert!(principals_allow(&list, "alice@example.com"));
        assert!(!principals_allow(&list, "mallory@example.com"));
        assert!(!principals_allow(&list, "MALLORY@example.com"));
        assert!(!principals_allow(
            &line("*@example.com,!m*"),
            "mallory@example.com"
        ));
        assert!(!principals_allow(
            &line("!alice@example.com"),
            "bob@example.com"
        ));
        assert!(!principals_allow(
            &line("!alice@example.com"),
            "alice@example.com"
        ));
    }
}
