//! Which egress connections the agent may make: `agent.network.allowed_hosts` and
//! `denied_hosts`, decided first on the name the agent asked for, then on the addresses
//! that name resolves to.

use std::net::IpAddr;

use crate::config::{NetworkConfig, SecretsConfig};
use crate::pattern::HostRules;

/// The rules of one run.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allowed: HostRules,
    denied: HostRules,
}

/// What the policy says about a host the agent asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by this pattern; `exact` when it names that one host (not `*` or `*.domain`).
    Allow { pattern: String, exact: bool },
    /// Refused, with the reason the agent and the ledger are told.
    Deny(String),
}

impl EgressPolicy {
    pub fn new(allowed: HostRules, denied: HostRules) -> Self {
        EgressPolicy { allowed, denied }
    }

    /// `allowed_hosts`, plus the hosts of `agent.secrets.inject` (allowed automatically),
    /// and `denied_hosts`.
    pub fn from_config(network: &NetworkConfig, secrets: &SecretsConfig) -> Self {
        Self::for_run(network, secrets, &[])
    }

    /// [`EgressPolicy::from_config`], also allowing `api_hosts`: the model API hosts of the
    /// run's agent adapter (`api.anthropic.com`, or `ANTHROPIC_BASE_URL`'s host), which an
    /// agent needs whenever it has a network at all. `denied_hosts` still win over them. An
    /// API host that is not a valid pattern is left out, so the proxy refuses it (and the
    /// refusal is recorded, naming it) rather than allowing more than was asked.
    pub fn for_run(network: &NetworkConfig, secrets: &SecretsConfig, api_hosts: &[String]) -> Self {
        let configured = network
            .allowed_hosts
            .0
            .patterns()
            .iter()
            .chain(secrets.inject.values().flat_map(|h| h.0.patterns()))
            .map(|p| p.as_str().to_string())
            .collect::<Vec<_>>();
        let api: Vec<String> = api_hosts
            .iter()
            .filter(|h| HostRules::new(std::slice::from_ref(*h)).is_ok())
            .cloned()
            .collect();
        let all: Vec<String> = configured.iter().chain(&api).cloned().collect();
        // Every pattern was parsed once already; parsing the same text again cannot fail.
        let allowed = HostRules::new(&all).unwrap_or_else(|_| network.allowed_hosts.0.clone());
        EgressPolicy::new(allowed, network.denied_hosts.0.clone())
    }

    /// Decides on `host:port` as the agent named it.
    ///
    /// `denied_hosts` win over `allowed_hosts`, except a bare `*` there, which only says
    /// "everything not allowed is denied" (the default anyway). An IP literal is allowed only
    /// by a pattern naming that address.
    pub fn decide(&self, host: &str, port: u16) -> Decision {
        let host = host.trim_end_matches('.');
        if let Some(p) = self
            .denied
            .patterns()
            .iter()
            .find(|p| !p.is_any() && p.matches(host, port))
        {
            return Decision::Deny(format!("denied by agent.network.denied_hosts '{p}'"));
        }
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok();
        // A pattern naming this very host first: it also allows internal addresses.
        let patterns = self.allowed.patterns();
        let found = patterns
            .iter()
            .find(|p| p.is_exact() && p.matches(host, port))
            .or_else(|| patterns.iter().find(|p| p.matches(host, port)));
        match found {
            Some(p) if literal && !p.is_exact() => Decision::Deny(format!(
                "{host} is an IP address; only an entry naming it in agent.network.allowed_hosts allows it"
            )),
            Some(p) => Decision::Allow {
                pattern: p.to_string(),
                exact: p.is_exact(),
            },
            None => Decision::Deny(format!(
                "{host}:{port} is not in agent.network.allowed_hosts"
            )),
        }
    }

    /// Checks an address the allowed name resolved to. A name allowed by a family pattern
    /// (`*`, `*.domain`) must not lead to this machine, its local networks or a cloud
    /// metadata service: a DNS answer cannot widen the allowlist.
    pub fn check_address(&self, exact: bool, addr: IpAddr) -> Result<(), String> {
        if addr.is_unspecified() || addr.is_multicast() {
            return Err(format!("{addr} is not a host address"));
        }
        if !exact && is_internal(addr) {
            return Err(format!(
                "the name resolves to {addr}, an internal address; name the host exactly in agent.network.allowed_hosts to allow it"
            ));
        }
        Ok(())
    }
}

/// Loopback, private, link-local (cloud metadata at 169.254.169.254) and unique-local.
fn is_internal(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            a.is_loopback() || a.is_private() || a.is_link_local() || a.is_broadcast() || {
                // 100.64.0.0/10, carrier-grade NAT, often a cluster's internal range.
                let o = a.octets();
                o[0] == 100 && (o[1] & 0xc0) == 64
            }
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = a.segments()[0];
            a.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str], denied: &[&str]) -> EgressPolicy {
        EgressPolicy::new(
            HostRules::new(allowed).expect("valid"),
            HostRules::new(denied).expect("valid"),
        )
    }

    fn allowed(d: &Decision) -> bool {
        matches!(d, Decision::Allow { .. })
    }

    #[test]
    fn the_agents_api_hosts_are_allowed_for_its_run_and_denied_hosts_still_win() {
        let network = |allowed: &[&str], denied: &[&str]| NetworkConfig {
            enabled: true,
            allowed_hosts: crate::config::HostList(HostRules::new(allowed).expect("valid")),
            denied_hosts: crate::config::HostList(HostRules::new(denied).expect("valid")),
            upstream_ca: None,
        };
        let secrets = SecretsConfig {
            expose: Default::default(),
            hide: Default::default(),
            inject: Default::default(),
            inject_agent_keys: true,
        };
        let api = vec![
            "api.anthropic.com".to_string(),
            "127.0.0.1:8080".to_string(),
            "bad host name".to_string(),
        ];
        let p = EgressPolicy::for_run(&network(&["registry.npmjs.org"], &[]), &secrets, &api);
        assert!(allowed(&p.decide("api.anthropic.com", 443)));
        assert!(allowed(&p.decide("127.0.0.1", 8080)));
        assert!(!allowed(&p.decide("127.0.0.1", 8081)));
        assert!(allowed(&p.decide("registry.npmjs.org", 443)));
        assert!(!allowed(&p.decide("evil.example", 443)));
        // Without the adapter's hosts, only what the config says.
        let p = EgressPolicy::for_run(&network(&["registry.npmjs.org"], &[]), &secrets, &[]);
        assert!(!allowed(&p.decide("api.anthropic.com", 443)));
        // denied_hosts win over an API host too.
        let p = EgressPolicy::for_run(&network(&[], &["api.anthropic.com"]), &secrets, &api);
        assert!(!allowed(&p.decide("api.anthropic.com", 443)));
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let p = EgressPolicy::default();
        assert!(!allowed(&p.decide("example.com", 443)));
    }

    #[test]
    fn allowlist_forms() {
        let p = policy(
            &["api.anthropic.com", "registry.npmjs.org:443", "*.pypi.org"],
            &[],
        );
        assert!(allowed(&p.decide("api.anthropic.com", 443)));
        assert!(allowed(&p.decide("API.Anthropic.com.", 80)));
        assert!(allowed(&p.decide("registry.npmjs.org", 443)));
        assert!(!allowed(&p.decide("registry.npmjs.org", 80)));
        assert!(allowed(&p.decide("files.pypi.org", 443)));
        assert!(!allowed(&p.decide("pypi.org", 443)));
        assert!(!allowed(&p.decide("evil-api.anthropic.com", 443)));
    }

    #[test]
    fn denied_wins_but_a_bare_star_only_closes_the_rest() {
        let p = policy(&["*.example.com"], &["secret.example.com"]);
        assert_eq!(
            p.decide("secret.example.com", 443),
            Decision::Deny("denied by agent.network.denied_hosts 'secret.example.com'".into())
        );
        assert!(allowed(&p.decide("www.example.com", 443)));
        let p = policy(&["api.example.com"], &["*"]);
        assert!(allowed(&p.decide("api.example.com", 443)));
        assert!(!allowed(&p.decide("other.example.com", 443)));
    }

    #[test]
    fn ip_literals_only_when_named() {
        let p = policy(&["*", "127.0.0.1:8080"], &[]);
        assert!(!allowed(&p.decide("10.0.0.1", 80)));
        assert!(!allowed(&p.decide("[::1]", 80)));
        assert!(allowed(&p.decide("127.0.0.1", 8080)));
        assert!(!allowed(&p.decide("127.0.0.1", 8081)));
    }

    #[test]
    fn family_patterns_never_reach_internal_addresses() {
        let p = policy(&[], &[]);
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "::1",
            "::ffff:127.0.0.1",
            "fd00::1",
        ] {
            let addr: IpAddr = internal.parse().expect("address");
            assert!(p.check_address(false, addr).is_err(), "{internal}");
            assert!(p.check_address(true, addr).is_ok(), "{internal}");
        }
        assert!(p
            .check_address(false, "93.184.215.14".parse().expect("address"))
            .is_ok());
        assert!(p
            .check_address(true, "0.0.0.0".parse().expect("address"))
            .is_err());
    }
}
