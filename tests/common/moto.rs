//! moto in server mode: a real S3-protocol server on 127.0.0.1 for the audit shipping tests.
//!
//! Found through `CHANT_MOTO_SERVER`, `PATH` (`moto_server`) or /work/.venv-moto; when absent
//! the caller skips with a loud message, unless `CHANT_REQUIRE_MOTO=1` (CI), which fails.
//! Install: `python3 -m venv VENV && VENV/bin/pip install 'moto[server]'`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running moto_server, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn program() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHANT_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let venv = PathBuf::from("/work/.venv-moto/bin/moto_server");
        venv.is_file().then_some(venv)
    })
}

pub fn start() -> Option<Moto> {
    let Some(program) = program() else {
        assert!(
            std::env::var("CHANT_REQUIRE_MOTO").as_deref() != Ok("1"),
            "CHANT_REQUIRE_MOTO=1 but moto_server was not found (CHANT_MOTO_SERVER, PATH, /work/.venv-moto)"
        );
        eprintln!("\n!!!!!!!! SKIPPED: the S3 shipping test needs moto_server (pip install 'moto[server]'); set CHANT_MOTO_SERVER or CHANT_REQUIRE_MOTO=1 !!!!!!!!\n");
        return None;
    };
    let port = super::http::closed_port();
    let child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto { child, port };
    super::wait_for("moto_server listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some(moto)
}
