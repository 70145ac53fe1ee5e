//! The run's egress proxy (`agent.network.enabled`): started before the agent, shared by
//! the agent and the validation commands, its refusals recorded as `policy_violation`
//! entries and its allowed connections counted in `spec_completed`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use tempfile::TempDir;

use super::WorkError;
use crate::audit::NewEntry;
use crate::config::Config;
use crate::net::{EgressPolicy, EgressProxy};
use crate::sandbox::Egress;

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
    pub(super) fn start(config: &Config) -> Result<Option<RunProxy>, WorkError> {
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
        let proxy = EgressProxy::start(
            EgressPolicy::from_config(network, &config.agent.secrets),
            dir.path(),
        )
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
                entry()
                    .detail("rule", "network")
                    .detail("host", r.host.clone())
                    .detail("port", u64::from(r.port))
                    .detail("detail", r.reason.clone())
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
