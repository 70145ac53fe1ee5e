//! The run's NetworkPolicy. A NetworkPolicy selects addresses and ports, never host names:
//! with an allowlist, its hosts' ports are opened and the names recorded in an annotation
//! for an FQDN-aware engine (docs/kubernetes.md).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::manifests::labels;
use crate::config::NetworkConfig;

/// Egress: DNS (the agent and git name their hosts), the repository's port, and HTTPS —
/// or, with `agent.network.enabled`, the ports of `allowed_hosts`. A NetworkPolicy cannot
/// name hosts; the allowlist is also put in an annotation for an FQDN-aware policy engine
/// (docs/kubernetes.md).
pub fn policy(
    mut metadata: ObjectMeta,
    network: &NetworkConfig,
    repo_url: &str,
    name: &str,
) -> NetworkPolicy {
    let mut ports: Vec<u16> = vec![443];
    if network.enabled {
        ports = network
            .allowed_hosts
            .0
            .patterns()
            .iter()
            .map(|h| host_port(h.as_str()))
            .collect();
    }
    if let Some(p) = url_port(repo_url) {
        ports.push(p);
    }
    ports.sort_unstable();
    ports.dedup();
    let anywhere = vec![
        NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "0.0.0.0/0".into(),
                except: None,
            }),
            ..Default::default()
        },
        NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "::/0".into(),
                except: None,
            }),
            ..Default::default()
        },
    ];
    let port = |protocol: &str, p: u16| NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(i32::from(p))),
        end_port: None,
    };
    if network.enabled {
        let hosts: Vec<&str> = network
            .allowed_hosts
            .0
            .patterns()
            .iter()
            .map(|h| h.as_str())
            .collect();
        metadata.annotations = Some(BTreeMap::from([(
            "chant.dev/allowed-hosts".to_string(),
            hosts.join(","),
        )]));
    }
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels(name)),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            // No ingress rule: nothing may connect to the pod.
            ingress: Some(Vec::new()),
            egress: Some(
                std::iter::once(NetworkPolicyEgressRule {
                    to: None,
                    ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
                })
                // An empty port list would match every port: no ports, no rule.
                .chain((!ports.is_empty()).then(|| NetworkPolicyEgressRule {
                    to: Some(anywhere),
                    ports: Some(ports.into_iter().map(|p| port("TCP", p)).collect()),
                }))
                .collect(),
            ),
        }),
    }
}

/// The port of a host pattern (`host:port`), 443 when it names none.
fn host_port(pattern: &str) -> u16 {
    split_host(pattern).1
}

/// A host pattern's name (brackets of an IPv6 address kept off) and port, 443 when it
/// names none.
pub(super) fn split_host(pattern: &str) -> (&str, u16) {
    if let Some(rest) = pattern.strip_prefix('[') {
        let (name, tail) = rest.split_once(']').unwrap_or((rest, ""));
        let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
        return (name, port.unwrap_or(443));
    }
    match pattern.rsplit_once(':') {
        Some((name, p)) if !name.contains(':') => match p.parse() {
            Ok(port) => (name, port),
            Err(_) => (pattern, 443),
        },
        _ => (pattern, 443),
    }
}

/// The TCP port a repository URL connects to (None for `file://` and local paths).
pub fn url_port(url: &str) -> Option<u16> {
    let (scheme, rest) = match url.split_once("://") {
        Some(parts) => parts,
        // scp-like `git@host:path` is ssh.
        None if url.contains('@') && url.contains(':') => return Some(22),
        None => return None,
    };
    let default = match scheme {
        "https" => 443,
        "http" => 80,
        "ssh" | "git+ssh" => 22,
        "git" => 9418,
        _ => return None,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    Some(
        host.rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(default),
    )
}
