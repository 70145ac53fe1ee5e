//! Agent output on its way to the terminal and the run log, with every secret masked.

use std::path::Path;

use super::{Reporter, WorkError};
use crate::sandbox::{OutputSink, Stream};

pub(super) fn open_log(path: &Path) -> Result<std::fs::File, WorkError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| WorkError::io(dir, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| WorkError::io(path, e))
}

/// Agent output on its way to the terminal and the run log, with secrets masked.
pub(super) struct RedactingSink<'r> {
    reporter: &'r mut dyn Reporter,
    log: std::fs::File,
    out: crate::secrets::StreamRedactor,
    err: crate::secrets::StreamRedactor,
}

impl<'r> RedactingSink<'r> {
    pub(super) fn new(
        reporter: &'r mut dyn Reporter,
        log: std::fs::File,
        redactor: &crate::secrets::Redactor,
    ) -> Self {
        RedactingSink {
            reporter,
            log,
            out: redactor.stream(),
            err: redactor.stream(),
        }
    }

    fn emit(&mut self, stream: Stream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        use std::io::Write;
        let _ = self.log.write_all(bytes);
        self.reporter.agent_output(stream, bytes);
    }

    /// Flushes what the redactors held back (end of a program's output).
    pub(super) fn finish(&mut self) {
        let out = self.out.finish();
        self.emit(Stream::Stdout, &out);
        let err = self.err.finish();
        self.emit(Stream::Stderr, &err);
    }
}

impl OutputSink for RedactingSink<'_> {
    fn output(&mut self, stream: Stream, bytes: &[u8]) {
        let clean = match stream {
            Stream::Stdout => self.out.push(bytes),
            Stream::Stderr => self.err.push(bytes),
        };
        self.emit(stream, &clean);
    }
}
