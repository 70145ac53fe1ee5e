//! The relay of a docker run with `agent.network.enabled`: the agent's container starts
//! `git chant relay` (this very program, see `selfmount`) as its first process, in the
//! container's own network namespace, which holds only `lo` (as without the network). The
//! relay listens on 127.0.0.1:3128, then starts the agent's program as the agent's user with
//! no privileges (`crate::net::init`), and hands each connection (its descriptor) to
//! chant's proxy on the host through a bind-mounted Unix socket. No route, no gateway, no
//! DNS: a direct connection to any address fails in the kernel.
//!
//! Why it is fail-closed: the port is bound before the agent exists; the container starts
//! as root with only CAP_SETUID, CAP_SETGID, CAP_SETPCAP and CAP_KILL (no-new-privileges
//! set), which the relay drops — all of them in the agent's process before it executes
//! anything, and in its own for a user that is not the agent's, keeping CAP_KILL to pass
//! `docker stop`'s SIGTERM on to the agent — so the agent can neither signal, ptrace nor
//! read the relay. The relay is the container's init: if it dies, the kernel kills the agent
//! with it and the run fails with the relay's status. One container start per run, as
//! without the network (a sidecar relay container, joined by the agent's, cost two starts
//! in a row). The libraries of this program are listed (`ldd`) once per process.

use bollard::models::ContainerCreateBody;

use crate::net::RELAY_PORT;
use crate::sandbox::{Egress, SandboxError};

/// Where the relay's files appear in the container.
const DIR: &str = "/chant-relay";
/// What the container starts with: root, for the relay to start the agent as its user.
const ROOT: &str = "0:0";
/// The only capabilities the container gets, all dropped before the agent runs: to take
/// the agent's uid and gid, clear supplementary groups, empty the bounding set; and to
/// signal the agent (another user) from the relay, the only one that keeps it.
const CAPABILITIES: [&str; 4] = ["SETUID", "SETGID", "SETPCAP", "KILL"];

/// The proxy URL inside the agent's container.
pub fn proxy_url() -> String {
    format!("http://127.0.0.1:{RELAY_PORT}")
}

/// Makes `body` (the agent's container, its user `uid`:`gid`) start the relay for
/// `egress` first, which starts the agent's entrypoint and command as that user.
pub fn wrap(
    body: &mut ContainerCreateBody,
    egress: &Egress,
    uid: u32,
    gid: u32,
) -> Result<(), SandboxError> {
    let mut mounted = super::selfmount::at(DIR)?;
    mounted.binds.push(format!(
        "{}:{DIR}/handoff.sock:rw",
        super::mounts::host_path(&egress.handoff)?
    ));
    let mut entrypoint = mounted.command;
    entrypoint.extend([
        "relay".to_string(),
        "--socket".into(),
        format!("{DIR}/handoff.sock"),
        "--listen".into(),
        format!("127.0.0.1:{RELAY_PORT}"),
        "--run-as".into(),
        format!("{uid}:{gid}"),
        "--".into(),
    ]);
    entrypoint.extend(body.entrypoint.take().unwrap_or_default());
    body.entrypoint = Some(entrypoint);
    let env = body.env.get_or_insert_with(Vec::new);
    env.extend(
        crate::net::proxy_env(&proxy_url())
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    // The engine fills in HOME from the container user's entry, root's now: the agent
    // gets what it would have as its own (unlisted) user.
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push("HOME=/".into());
    }
    body.user = Some(ROOT.into());
    let host = body.host_config.get_or_insert_with(Default::default);
    host.binds
        .get_or_insert_with(Vec::new)
        .extend(mounted.binds);
    host.cap_add = Some(CAPABILITIES.iter().map(|c| c.to_string()).collect());
    Ok(())
}
