//! `git chant relay` (hidden): the sandbox side of the egress proxy. The docker level runs
//! it in a sidecar sharing the agent's network namespace; the vm level has qemu start it
//! for each guest connection. Not for people to run.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::net::relay;

/// Carry connections to the egress proxy's Unix socket.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  (started by the docker and vm levels when agent.network.enabled; not run by hand)
  git chant relay --socket /tmp/chant-net-x/handoff.sock --listen 127.0.0.1:3128
  git chant relay --socket /tmp/chant-net-x/proxy.sock      one connection on stdin/stdout")]
pub struct Args {
    /// The proxy's Unix socket: its handoff socket with --listen, else its byte socket.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Listen here and hand every connection to the proxy (without it: relay standard
    /// input/output as bytes).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
}

pub fn run(args: Args) -> Result<u8> {
    let served = match args.listen {
        Some(addr) => relay::serve_tcp(addr, &args.socket),
        None => relay::stdio(&args.socket),
    };
    served.map_err(|e| Error::io(&args.socket, e))?;
    Ok(0)
}
