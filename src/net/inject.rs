//! Secret injection (`agent.secrets.inject`): which hosts the proxy terminates TLS for, the
//! per-run CA it does that with, the verified TLS it opens toward the real upstream, and
//! the byte-level swaps between placeholders and values.
//!
//! It owns the run CA's private key, in memory only: never written to a file, never
//! exported (only the CA *certificate* leaves, in [`Injection::bundle_pem`]). It must never
//! decide on anything but the inject hosts: every other host stays a plain tunnel in
//! `proxy.rs`, never decrypted. No value ever goes into an error, a log or `Debug` output.

use std::collections::HashMap;
use std::fmt;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, GeneralSubtree,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned};

use crate::pattern::HostRules;
use crate::secrets::Placeholder;

/// How long the TLS handshake with the real upstream may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why injection could not be set up. Never holds a secret value.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("agent.network.upstream_ca: cannot read {}: {source}", path.display())]
    UpstreamCaRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("agent.network.upstream_ca: {} holds no PEM certificate chant can use ({reason}); give a file of '-----BEGIN CERTIFICATE-----' blocks", path.display())]
    UpstreamCaBad { path: PathBuf, reason: String },
    #[error("cannot make the run's CA for agent.secrets.inject: {0}")]
    Ca(String),
}

impl InjectError {
    /// 2 for a bad `upstream_ca` (input), 1 when the CA itself could not be made.
    pub fn exit_code(&self) -> u8 {
        match self {
            InjectError::Ca(_) => 1,
            _ => 2,
        }
    }
}

/// One injected secret and the hosts its value may go to.
#[derive(Debug, Clone)]
pub struct InjectedSecret {
    pub secret: Placeholder,
    pub hosts: HostRules,
}

/// Everything the proxy needs to inject secrets for one run.
pub struct Injection {
    secrets: Vec<InjectedSecret>,
    ca_cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    upstream: Arc<ClientConfig>,
    system_roots: Vec<CertificateDer<'static>>,
    servers: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl fmt::Debug for Injection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Injection")
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

impl Injection {
    /// Makes the run's CA (in memory) and the upstream verifier: the system roots plus the
    /// certificates of `upstream_ca`, when given.
    pub fn new(
        secrets: Vec<InjectedSecret>,
        upstream_ca: Option<&Path>,
    ) -> Result<Injection, InjectError> {
        let system_roots = rustls_native_certs::load_native_certs().certs;
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(system_roots.iter().cloned());
        if let Some(path) = upstream_ca {
            let pem = std::fs::read(path).map_err(|source| InjectError::UpstreamCaRead {
                path: path.to_path_buf(),
                source,
            })?;
            let bad = |reason: String| InjectError::UpstreamCaBad {
                path: path.to_path_buf(),
                reason,
            };
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no certificate found".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut upstream = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| InjectError::Ca(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        upstream.alpn_protocols = vec![b"http/1.1".to_vec()];

        let ca_err = |e: rcgen::Error| InjectError::Ca(e.to_string());
        let key = KeyPair::generate().map_err(ca_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(ca_err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(
            DnType::CommonName,
            "git-chant run CA (one run, key in memory)",
        );
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params);
        params.name_constraints = Some(constraints(
            secrets
                .iter()
                .flat_map(|s| s.hosts.patterns())
                .map(|p| subtree(p.as_str())),
        ));
        let ca_cert = params.self_signed(&key).map_err(ca_err)?.der().clone();
        Ok(Injection {
            secrets,
            ca_cert,
            issuer: Issuer::new(params, key),
            upstream: Arc::new(upstream),
            system_roots,
            servers: Mutex::new(HashMap::new()),
        })
    }

    /// The injected secrets.
    pub fn secrets(&self) -> &[InjectedSecret] {
        &self.secrets
    }

    /// Whether CONNECTs to `host:port` are terminated (some secret goes there).
    pub fn intercepts(&self, host: &str, port: u16) -> bool {
        self.secrets
            .iter()
            .any(|s| s.hosts.find(host, port).is_some())
    }

    /// The run CA's certificate, PEM.
    pub fn ca_pem(&self) -> String {
        pem_encode(&self.ca_cert)
    }

    /// What the sandbox trusts: the system roots, then the run CA (PEM).
    pub fn bundle_pem(&self) -> String {
        let mut out = String::new();
        for cert in &self.system_roots {
            out.push_str(&pem_encode(cert));
        }
        out.push_str(&self.ca_pem());
        out
    }

    /// The server side for the agent's TLS to `host`: a leaf for that name signed by the
    /// run CA, made once per host.
    pub(crate) fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, String> {
        let mut servers = self
            .servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(config) = servers.get(host) {
            return Ok(Arc::clone(config));
        }
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let err = |e: rcgen::Error| format!("cannot issue a certificate for {host}: {e}");
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(vec![name.to_string()]).map_err(err)?;
        // The name is in the SAN only: a common name would be checked by some clients
        // against the CA's DNS constraints even for an IP address.
        params.distinguished_name = DistinguishedName::new();
        set_validity(&mut params);
        let leaf = params.signed_by(&key, &self.issuer).map_err(err)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), self.ca_cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(|e| format!("cannot serve TLS for {host}: {e}"))?;
        // HTTP/1.1 only: the proxy reads requests one by one.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        servers.insert(host.to_string(), Arc::clone(&config));
        Ok(config)
    }

    /// TLS to the real `host` over `tcp`, its certificate verified; the handshake is done
    /// before this returns, so nothing is ever sent to an upstream that did not verify.
    pub(crate) fn connect_upstream(
        &self,
        host: &str,
        port: u16,
        mut tcp: TcpStream,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|e| format!("'{host}' is not a name TLS can verify: {e}"))?;
        let mut conn = ClientConnection::new(Arc::clone(&self.upstream), name)
            .map_err(|e| format!("TLS to {host}:{port}: {e}"))?;
        let _ = tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                return Err(format!(
                    "TLS to {host}:{port} failed, nothing was sent: {e}; if it is a private endpoint, add its CA to agent.network.upstream_ca"
                ));
            }
        }
        let _ = tcp.set_read_timeout(None);
        Ok(StreamOwned::new(conn, tcp))
    }

    /// The secrets whose value may go to `host:port`.
    pub(crate) fn for_host(&self, host: &str, port: u16) -> Vec<&Placeholder> {
        self.secrets
            .iter()
            .filter(|s| s.hosts.find(host, port).is_some())
            .map(|s| &s.secret)
            .collect()
    }

    /// The names of the secrets whose placeholder appears in `bytes`.
    pub(crate) fn placeholders_in(&self, bytes: &[u8]) -> Vec<&str> {
        self.secrets
            .iter()
            .filter(|s| memchr::memmem::find(bytes, s.secret.placeholder().as_bytes()).is_some())
            .map(|s| s.secret.name.as_str())
            .collect()
    }

    /// A swapper that turns every secret's value back into its placeholder (responses).
    pub(crate) fn hide_values(&self) -> Swap {
        Swap::new(
            self.secrets
                .iter()
                .map(|s| {
                    (
                        s.secret.value().as_bytes().to_vec(),
                        s.secret.placeholder().as_bytes().to_vec(),
                    )
                })
                .collect(),
        )
    }
}

/// The run CA's name constraints for the inject hosts' subtrees: a leaf for any other DNS
/// name fails verification in the sandbox, whatever the proxy might be made to issue.
///
/// IP addresses are constrained only where no inject host is one: then every IP address
/// is excluded. An IP subtree beside an IP-address leaf makes older BoringSSL — the TLS of
/// Bun-built CLIs such as Claude Code and opencode — refuse the certificate outright
/// (`UNSUPPORTED_CONSTRAINT_TYPE`: it implements no IP constraints), so for an inject host
/// given as an address the CA carries no IP constraint at all and the proxy's own rule
/// (leaves only for inject hosts) is what holds.
fn constraints(subtrees: impl Iterator<Item = GeneralSubtree>) -> NameConstraints {
    let (ips, mut names): (Vec<_>, Vec<_>) =
        subtrees.partition(|s| matches!(s, GeneralSubtree::IpAddress(_)));
    if names.is_empty() {
        // No DNS name at all: only the reserved `.invalid` (RFC 2606), which nothing real
        // is; an empty permitted list would be malformed.
        names.push(GeneralSubtree::DnsName("invalid".into()));
    }
    let excluded_subtrees = if ips.is_empty() {
        ["0.0.0.0".parse(), "::".parse()]
            .into_iter()
            .flatten()
            .map(|ip: std::net::IpAddr| {
                GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(ip, 0))
            })
            .collect()
    } else {
        Vec::new()
    };
    NameConstraints {
        permitted_subtrees: names,
        excluded_subtrees,
    }
}

/// The name-constraint subtree of a host pattern (`host`, `host:port`, `[v6]:port`,
/// `*.domain`): the port plays no part in certificates.
fn subtree(pattern: &str) -> GeneralSubtree {
    let host = if let Some(rest) = pattern.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match pattern.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => pattern,
        }
    };
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(ip, bits))
        }
        Err(_) => GeneralSubtree::DnsName(host.trim_start_matches("*.").to_string()),
    }
}

/// Valid from yesterday for 30 days: long enough for any run, short if ever copied.
fn set_validity(params: &mut CertificateParams) {
    use chrono::Datelike;
    let ymd = |d: chrono::DateTime<chrono::Utc>| {
        // Months are 1..=12 and days 1..=31 by construction.
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let now = chrono::Utc::now();
    params.not_before = ymd(now - chrono::Duration::days(1));
    params.not_after = ymd(now + chrono::Duration::days(30));
}

/// Same-length replacements over a stream of bytes: a match split across two chunks is
/// still found (the end of a chunk that could start a match is held back until the next).
pub(crate) struct Swap {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    held: Vec<u8>,
}

impl Swap {
    pub(crate) fn new(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Swap {
        Swap {
            pairs: pairs
                .into_iter()
                .filter(|(from, to)| !from.is_empty() && from.len() == to.len())
                .collect(),
            held: Vec::new(),
        }
    }

    /// Replaces in `bytes` at once (a whole head); true when something was replaced.
    pub(crate) fn all(&self, bytes: &mut [u8]) -> bool {
        let mut any = false;
        for (from, to) in &self.pairs {
            let mut at = 0;
            while let Some(i) = memchr::memmem::find(&bytes[at..], from) {
                bytes[at + i..at + i + from.len()].copy_from_slice(to);
                at += i + from.len();
                any = true;
            }
        }
        any
    }

    /// The next chunk of the stream, replaced; may hold back its last few bytes.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(chunk);
        self.all(&mut data);
        let keep = self
            .pairs
            .iter()
            .map(|(from, _)| partial_suffix(&data, from))
            .max()
            .unwrap_or(0);
        self.held = data.split_off(data.len() - keep);
        data
    }

    /// What was held back, at the end of the stream.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// The length of the longest end of `data` that is a proper start of `needle`.
fn partial_suffix(data: &[u8], needle: &[u8]) -> usize {
    let longest = needle.len().saturating_sub(1).min(data.len());
    (1..=longest)
        .rev()
        .find(|&n| data[data.len() - n..] == needle[..n])
        .unwrap_or(0)
}

fn pem_encode(der: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_match_split_across_chunks_is_still_swapped_and_nothing_else_is_delayed() {
        let mut swap = Swap::new(vec![(b"SECRETVALUE".to_vec(), b"PLACEHOLDER".to_vec())]);
        let mut out = swap.push(b"data: SECR");
        assert_eq!(out, b"data: ");
        out.extend(swap.push(b"ETVALUE and\n\n"));
        assert_eq!(out, b"data: PLACEHOLDER and\n\n");
        // An event that cannot start a match goes out whole, at once.
        assert_eq!(swap.push(b"event: done\n\n"), b"event: done\n\n");
        assert_eq!(swap.push(b"SEC"), b"");
        assert_eq!(swap.finish(), b"SEC");
    }

    /// A TLS handshake in memory: a client trusting only the run CA asks for `sni`, the
    /// server presents the proxy's leaf for `issued_for`.
    fn handshake(injection: &Injection, issued_for: &str, sni: &str) -> Result<(), String> {
        let mut roots = RootCertStore::empty();
        roots
            .add(injection.ca_cert.clone())
            .map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
        let mut c = ClientConnection::new(Arc::new(client), name).map_err(|e| e.to_string())?;
        let mut s = rustls::ServerConnection::new(injection.server_config(issued_for)?)
            .map_err(|e| e.to_string())?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).map_err(|e| e.to_string())?;
            s.read_tls(&mut buf.as_slice()).map_err(|e| e.to_string())?;
            s.process_new_packets().map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).map_err(|e| e.to_string())?;
            c.read_tls(&mut buf.as_slice()).map_err(|e| e.to_string())?;
            c.process_new_packets().map_err(|e| e.to_string())?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        Err("handshake did not finish".into())
    }

    fn injection_for(hosts: &[&str]) -> Injection {
        let secret = crate::secrets::Placeholder::new("K", "sk-0123456789abcdefXYZ").expect("p");
        let hosts = HostRules::new(hosts).expect("hosts");
        Injection::new(vec![InjectedSecret { secret, hosts }], None).expect("ca")
    }

    fn refused(injection: &Injection, host: &str) {
        let err = handshake(injection, host, host).expect_err(host);
        assert!(
            err.contains("certificate") || err.contains("Certificate"),
            "{host}: {err}"
        );
    }

    #[test]
    fn the_run_ca_vouches_for_the_inject_hosts_only() {
        let injection = injection_for(&["api.example.com:443", "*.example.org"]);
        for host in ["api.example.com", "a.example.org"] {
            handshake(&injection, host, host).unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        // A leaf for any other name or any address does not verify, even signed by the
        // run CA.
        for host in [
            "evil.example.net",
            "example.com",
            "api.example.com.evil.net",
            "127.0.0.1",
            "::1",
        ] {
            refused(&injection, host);
        }
    }

    fn constraints_for(hosts: &[&str]) -> NameConstraints {
        constraints(hosts.iter().map(|h| subtree(h)))
    }

    #[test]
    fn with_an_address_among_the_inject_hosts_the_ca_names_no_address_but_still_constrains_names() {
        // Older BoringSSL (Claude Code's TLS) refuses every IP-address leaf under a CA with
        // IP constraints: none are written, names stay constrained.
        let injection = injection_for(&["127.0.0.1:8443", "api.example.com"]);
        for host in ["127.0.0.1", "api.example.com"] {
            handshake(&injection, host, host).unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        refused(&injection, "evil.example.net");
        let only_an_address = injection_for(&["127.0.0.1:8443"]);
        handshake(&only_an_address, "127.0.0.1", "127.0.0.1").expect("the inject host");
        for host in ["api.example.com", "localhost"] {
            refused(&only_an_address, host);
        }
        for hosts in [&["127.0.0.1:8443", "api.example.com"][..], &["[::1]:443"]] {
            let c = constraints_for(hosts);
            for s in c.permitted_subtrees.iter().chain(&c.excluded_subtrees) {
                assert!(
                    !matches!(s, GeneralSubtree::IpAddress(_)),
                    "{hosts:?}: {s:?}"
                );
            }
        }
        // Only names: every address excluded, which BoringSSL never has to evaluate (a
        // leaf for a name holds no address).
        let c = constraints_for(&["api.example.com"]);
        assert_eq!(
            c.permitted_subtrees,
            [GeneralSubtree::DnsName("api.example.com".into())]
        );
        assert_eq!(c.excluded_subtrees.len(), 2, "{:?}", c.excluded_subtrees);
    }
}
