//! Agent output on its way to the terminal and the run log, with every secret masked.

use std::path::Path;

use super::{Reporter, WorkError};
use crate::agent::Observer;
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

/// Agent output on its way to the terminal and the run log, with secrets masked. With an
/// observer (the agent adapter's output reader), the terminal shows what the observer
/// makes of the masked output; the run log keeps it whole.
pub(super) struct RedactingSink<'r> {
    reporter: &'r mut dyn Reporter,
    log: std::fs::File,
    out: crate::secrets::StreamRedactor,
    err: crate::secrets::StreamRedactor,
    observer: Option<&'r mut dyn Observer>,
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
            observer: None,
        }
    }

    /// Lets `observer` read the masked output and choose what the terminal shows.
    pub(super) fn observed_by(mut self, observer: &'r mut dyn Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    fn emit(&mut self, stream: Stream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        use std::io::Write;
        let _ = self.log.write_all(bytes);
        let shown = self
            .observer
            .as_mut()
            .and_then(|o| o.observe(stream, bytes));
        match shown {
            Some(shown) if shown.is_empty() => {}
            Some(shown) => self.reporter.agent_output(stream, &shown),
            None => self.reporter.agent_output(stream, bytes),
        }
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
