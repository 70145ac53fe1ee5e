//! What `git chant doctor` says about the docker level: whether the engine answers and the
//! image is there and holds the agent program, and whether the relay for `agent.network` can be set up. It asks the
//! engine; it never creates a container.

use super::super::{Check, Checkup};

/// The checkup for `image`, naming the agent `program` the image must hold.
pub(super) fn checkup(image: &str, program: &str) -> Checkup {
    let probe = super::probe(image, program);
    match (&probe.engine, &probe.image, &probe.program) {
        (Err(e), _, _) => Checkup::failed(Check::missing(e.to_string())),
        (Ok(()), Some(Err(e)), _) | (Ok(()), _, Some(Err(e))) => Checkup::failed(Check::missing(
            format!("engine {} answers, but {e}", probe.host),
        )),
        (Ok(()), _, found) => Checkup::usable(Check::ok(format!(
            "engine {} (Docker {}), image {image} with the agent program at {}",
            probe.host,
            probe.version.as_deref().unwrap_or("?"),
            found
                .as_ref()
                .and_then(|f| f.as_ref().ok())
                .map_or("?", String::as_str)
        ))),
    }
}

/// Whether the relay that carries `agent.network` into the container can be set up here.
pub fn network_note() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    match crate::sandbox::process::find_program("ldd", &path) {
        Some(_) => "relay ready (ldd found)".into(),
        None => "no ldd on PATH, the relay cannot be set up (install libc-bin)".into(),
    }
}
