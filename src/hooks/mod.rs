//! Git hooks: client-side (`pre-commit`, `pre-push`) and server-side (`pre-receive`)
//! branch protection and the append-only ledger. The scripts in `/hooks` only call
//! `git chant hook <name>`; the logic lives here.

pub mod client;
pub mod install;
pub mod protection;
mod secrets_scan;
pub mod server;
