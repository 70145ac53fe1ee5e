//! Following the pod's log: `pods/NAME/log?follow=true`, written to the sink as it arrives
//! (the sink masks secrets). A stream that breaks while the pod runs is reopened; the log
//! then starts again from its beginning, so the bytes already shown are skipped.

use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::io::{AsyncBufRead, AsyncReadExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};

use super::manifests::CONTAINER;
use crate::sandbox::{OutputSink, Stream};

type LogReader = Pin<Box<dyn AsyncBufRead + Send>>;

/// A broken stream is reopened after this long (at most once per interval).
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// The followed log of a Job's pod.
pub struct LogTail {
    pods: Api<Pod>,
    job: String,
    /// The pod, once found.
    pub pod: Option<String>,
    reader: Option<LogReader>,
    /// Bytes written to the sink so far.
    shown: u64,
    /// Bytes still to skip at the start of a reopened stream.
    skip: u64,
    retry_at: Option<Instant>,
}

impl LogTail {
    pub fn new(pods: Api<Pod>, job: &str) -> Self {
        LogTail {
            pods,
            job: job.to_string(),
            pod: None,
            reader: None,
            shown: 0,
            skip: 0,
            retry_at: None,
        }
    }

    /// Opens (or reopens) the stream when there is none and it is time to try.
    pub async fn ensure_open(&mut self) {
        if self.reader.is_some() || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if self.pod.is_none() {
            let list = self
                .pods
                .list(&ListParams::default().labels(&format!("job-name={}", self.job)))
                .await;
            self.pod = list
                .ok()
                .and_then(|l| l.items.into_iter().next())
                .and_then(|p| p.metadata.name);
        }
        let Some(pod) = &self.pod else { return };
        let lp = LogParams {
            container: Some(CONTAINER.into()),
            follow: true,
            ..Default::default()
        };
        match self.pods.log_stream(pod, &lp).await {
            Ok(reader) => {
                self.reader = Some(Box::pin(reader));
                self.skip = self.shown;
            }
            Err(_) => self.retry_at = Some(Instant::now() + REOPEN_AFTER),
        }
    }

    pub fn is_open(&self) -> bool {
        self.reader.is_some()
    }

    /// Reads the next piece (pending forever while no stream is open); false when the
    /// stream ended or broke.
    pub async fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        let reader = match self.reader.as_mut() {
            Some(r) => r,
            None => return std::future::pending().await,
        };
        match reader.read(buf).await {
            Ok(n) if n > 0 => Some(n),
            _ => None,
        }
    }

    /// Handles what `read` returned.
    pub fn handle(&mut self, read: Option<usize>, buf: &[u8], sink: &mut dyn OutputSink) {
        let Some(n) = read else {
            self.reader = None;
            self.retry_at = Some(Instant::now() + REOPEN_AFTER);
            return;
        };
        let piece = &buf[..n];
        let skipped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(n);
        self.skip -= skipped as u64;
        if skipped < n {
            sink.output(Stream::Stdout, &piece[skipped..]);
            self.shown += (n - skipped) as u64;
        }
    }

    /// After the pod ended: whatever is still to come, for at most `limit`.
    pub async fn drain(&mut self, sink: &mut dyn OutputSink, limit: Duration) {
        self.retry_at = None;
        self.ensure_open().await;
        let mut buf = vec![0u8; 8192];
        let drain = async {
            while self.reader.is_some() {
                let read = self.read(&mut buf).await;
                let ended = read.is_none();
                self.handle(read, &buf, sink);
                if ended {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(limit, drain).await;
    }
}
