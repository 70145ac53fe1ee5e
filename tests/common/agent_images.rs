//! Images holding the real agent CLIs for the docker level, built without a registry by
//! `docker import` (tests/common/image.rs) of each CLI's payload (tests/common/payload.rs:
//! its program with the libraries it loads, git and bash for the commands it runs), with
//! busybox for the rest. Each is built once per test binary (and kept by the engine while
//! nothing changes); None after a loud message when it cannot be, a failure under
//! `CHANT_REQUIRE_DOCKER=1`.

use std::sync::OnceLock;

use super::image::{build_with, once, Layout};
use super::payload::{self, Payload};

/// Builds the image `name` of `payload` (its host files at their paths, its moved and own
/// files as placed files, its links): its `name:tag`, or why it cannot be had.
pub fn image_of(name: &str, payload: Result<Payload, String>) -> Result<String, String> {
    let payload = payload?;
    let mut placed = Vec::new();
    for (path, host) in &payload.moved {
        placed.push((
            path.clone(),
            std::fs::read(host).map_err(|e| format!("{}: {e}", host.display()))?,
            super::image::mtime_of(host),
        ));
    }
    placed.extend(payload.written.into_iter().map(|(p, body)| (p, body, 0)));
    let links: Vec<(&str, &str)> = payload
        .links
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    build_with(
        &Layout {
            name,
            files: payload.files,
            dirs: &[],
            links: &links,
        },
        placed,
    )
}

/// The Codex CLI ([`payload::codex`]).
pub fn codex() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    once(&IMAGE, || image_of("chant-test-codex", payload::codex()))
}

/// opencode ([`payload::opencode`]).
pub fn opencode() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    once(&IMAGE, || {
        image_of("chant-test-opencode", payload::opencode())
    })
}

/// Gemini CLI ([`payload::gemini`]).
pub fn gemini() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    once(&IMAGE, || image_of("chant-test-gemini", payload::gemini()))
}

/// aider ([`payload::aider`]), its venv at [`payload::AIDER_VENV`].
pub fn aider() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    once(&IMAGE, || image_of("chant-test-aider", payload::aider()))
}
