//! `git chant relay` (hidden): the sandbox side of the egress proxy. The docker level runs
//! it as the first process of the agent's container (`--run-as … -- PROGRAM…`: it listens,
//! then starts the agent as another user, see `net::init`); the vm level has qemu start it
//! for each guest connection. Not for people to run.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::net::{init, relay};

/// Carry connections to the egress proxy's Unix socket.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  (started by the docker and vm levels when agent.network.enabled; not run by hand)
  git chant relay --socket /h.sock --listen 127.0.0.1:3128 --run-as 1000:1000 -- agent args
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
    /// With --listen, started as root: run the command after `--` as this user, with no
    /// privileges, and exit with its status.
    #[arg(
        long,
        value_name = "UID:GID",
        requires = "listen",
        requires = "command"
    )]
    run_as: Option<String>,
    /// The agent's command (with --run-as).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

pub fn run(args: Args) -> Result<u8> {
    if let (Some(listen), Some(id)) = (args.listen, &args.run_as) {
        let (uid, gid) = init::parse_id(id).map_err(Error::Usage)?;
        let agent = init::Agent {
            uid,
            gid,
            argv: args.command,
        };
        return Ok(match init::run(listen, &args.socket, &agent) {
            Ok(status) => u8::try_from(status).unwrap_or(u8::MAX),
            Err(failure) => {
                errln!("git-chant relay: {failure}");
                u8::try_from(failure.status).unwrap_or(u8::MAX)
            }
        });
    }
    let served = match args.listen {
        Some(addr) => relay::serve_tcp(addr, &args.socket),
        None => relay::stdio(&args.socket),
    };
    served.map_err(|e| Error::io(&args.socket, e))?;
    Ok(0)
}
