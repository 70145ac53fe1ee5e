//! The run's egress proxy (`agent.network.enabled`): started before the agent, shared by
//! the agent and the validation commands, its refusals recorded as `policy_violation`
//! entries and its allowed connections counted in `spec_completed`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tempfile::TempDir;

use super::WorkError;
use crate::audit::NewEntry;
use crate::config::Config;
use crate::net::{EgressPolicy, EgressProxy, InjectedSecret, Injection};
use crate::sandbox::{Egress, EgressRoute};
use crate::secrets::Secrets;

/// The variables through which the usual TLS stacks (OpenSSL, curl, git, Node, Python
/// requests) take a CA bundle.
pub(super) const CA_VARIABLES: [&str; 5] = [
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// Variables for the agent's environment, name → value.
pub(super) type AgentEnv = Vec<(String, String)>;

/// The CA bundle's file name, beside the prompt (`/run/chant/` in a container).
pub(super) const CA_BUNDLE_FILE: &str = "chant-ca.pem";

/// `agent.secrets.inject` for this run: a placeholder per secret (for the agent's
/// environment, in config order) and the injection the proxy carries out; None when no
/// secret is injected or the network is off (`work::prepare` refuses that combination
/// before a run starts, as it does a level the proxy cannot reach — checked again here).
/// `root` is the repository root, which a relative `upstream_ca` is relative to.
pub(super) fn injection(
    config: &Config,
    secrets: &Secrets,
    root: &Path,
    route: EgressRoute,
) -> Result<Option<(AgentEnv, Arc<Injection>)>, WorkError> {
    let inject = &config.agent.secrets.inject;
    if inject.is_empty() || !config.agent.network.enabled {
        return Ok(None);
    }
    if let EgressRoute::Unreachable { inject: why, .. } = route {
        return Err(WorkError::Config(crate::config::ConfigError::Invalid {
            file: crate::config::CONFIG_PATH.to_string(),
            key: "agent.secrets.inject".into(),
            message: why.into(),
        }));
    }
    let placeholders = secrets.placeholders(&config.agent.secrets)?;
    let env = placeholders
        .iter()
        .map(|p| (p.name.clone(), p.placeholder().to_string()))
        .collect();
    let injected = placeholders
        .into_iter()
        .filter_map(|p| {
            let hosts = inject.get(&p.name)?.0.clone();
            Some(InjectedSecret { secret: p, hosts })
        })
        .collect();
    let upstream_ca = config
        .agent
        .network
        .upstream_ca
        .as_ref()
        .map(|p| root.join(p));
    let injection = Injection::new(injected, upstream_ca.as_deref())?;
    Ok(Some((env, Arc::new(injection))))
}

pub(super) struct RunProxy {
    proxy: EgressProxy,
    /// Holds the proxy's socket; short, in the temporary directory (socket paths are
    /// limited to 107 bytes).
    _dir: TempDir,
    recorded: usize,
    recorded_more: u64,
}

impl RunProxy {
    /// Starts the proxy when the config enables the network; None otherwise.
    pub(super) fn start(
        config: &Config,
        injection: Option<Arc<Injection>>,
        api_hosts: &[String],
    ) -> Result<Option<RunProxy>, WorkError> {
        let network = &config.agent.network;
        if !network.enabled {
            return Ok(None);
        }
        let dir = tempfile::Builder::new()
            .prefix("chant-net-")
            .tempdir()
            .map_err(|e| WorkError::io(&std::env::temp_dir(), e))?;
        // Others may pass through (the relay's own user must reach the socket) but not list.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .map_err(|e| WorkError::io(dir.path(), e))?;
        let policy = EgressPolicy::for_run(network, &config.agent.secrets, api_hosts);
        let proxy = EgressProxy::start_injecting(policy, dir.path(), injection)
            .map_err(|e| WorkError::io(dir.path(), e))?;
        Ok(Some(RunProxy {
            proxy,
            _dir: dir,
            recorded: 0,
            recorded_more: 0,
        }))
    }

    pub(super) fn egress(&self) -> Egress {
        Egress {
            socket: self.proxy.socket().to_path_buf(),
            handoff: self.proxy.handoff().to_path_buf(),
            url: self.proxy.url(),
        }
    }

    /// `policy_violation` entries for the refusals not recorded yet (`entry` makes a
    /// violation entry for this run).
    pub(super) fn new_refusals(&mut self, entry: impl Fn() -> NewEntry) -> Vec<NewEntry> {
        let report = self.proxy.report();
        let mut out: Vec<NewEntry> = report
            .refused
            .iter()
            .skip(self.recorded)
            .map(|r| {
                let e = entry()
                    .detail("rule", "network")
                    .detail("host", r.host.clone())
                    .detail("port", u64::from(r.port))
                    .detail("detail", r.reason.clone());
                match &r.secret {
                    Some(name) => e.detail("secret", name.clone()),
                    None => e,
                }
            })
            .collect();
        self.recorded = report.refused.len();
        if report.refused_more > self.recorded_more {
            // Past the first refusals they are only counted; one entry says how many.
            out.push(
                entry()
                    .detail("rule", "network")
                    .detail("detail", "more refused connections, not listed one by one")
                    .detail("count", report.refused_more - self.recorded_more),
            );
            self.recorded_more = report.refused_more;
        }
        out
    }

    /// `host:port` → injected secret's name → requests that had its value put in.
    pub(super) fn injected(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.proxy.report().injected
    }

    /// Host → connections the proxy made.
    pub(super) fn allowed_by_host(&self) -> BTreeMap<String, u64> {
        let mut by_host = BTreeMap::new();
        for (host_port, n) in self.proxy.report().allowed {
            let host = host_port
                .rsplit_once(':')
                .map_or(host_port.as_str(), |(h, _)| h)
                .to_string();
            *by_host.entry(host).or_default() += n;
        }
        by_host
    }
}
