//! Backend health: whether Redis answers. Every operation reports its outcome here; a
//! failure counts in `eventcast_backend_errors_total{op}` and, when it is about the
//! connection (I/O, timeout, cluster down or moving), marks the backend unavailable
//! until an operation or the periodic probe succeeds again. Readiness (`/readyz`)
//! follows it, and callers get [`BackendError::Unavailable`] (HTTP 503 with
//! `Retry-After`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::interfaces::ClientLike;
use fred::prelude::{Client, ClientState, Error, ErrorKind};
use tokio_util::sync::CancellationToken;

use crate::backend::BackendError;
use crate::metrics::Metrics;

/// How often the probe checks Redis while it is failing (and, less often, while healthy).
const PROBE_FAILING: Duration = Duration::from_millis(500);
const PROBE_HEALTHY: Duration = Duration::from_secs(5);

/// Whether an error says Redis (or the part of the cluster holding a key) is unreachable.
pub fn is_outage(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Backpressure => true,
        ErrorKind::Cluster | ErrorKind::Routing => true,
        _ => {
            let d = e.details();
            ["CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN", "READONLY"]
                .iter()
                .any(|p| d.starts_with(p))
        }
    }
}

/// Connection health of one backend.
#[derive(Debug)]
pub struct Health {
    client: Client,
    failing: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Health {
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            failing: AtomicBool::new(false),
            metrics,
        }
    }

    /// Connected and the last operation (or probe) succeeded.
    pub fn is_ready(&self) -> bool {
        self.client.state() == ClientState::Connected && !self.failing.load(Ordering::Acquire)
    }

    pub fn succeeded(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            tracing::info!("redis backend available again");
        }
    }

    /// Counts a failed operation and turns it into the error callers see.
    pub fn failed(&self, op: &'static str, e: &Error) -> BackendError {
        self.metrics.backend_errors.with_label_values(&[op]).inc();
        if is_outage(e) {
            if !self.failing.swap(true, Ordering::AcqRel) {
                tracing::warn!(op, error = %e, "redis backend unavailable");
            }
            BackendError::Unavailable(format!("redis {op}: {e}"))
        } else {
            tracing::warn!(op, error = %e, "redis operation failed");
            BackendError::Unavailable(format!("redis {op} failed: {e}"))
        }
    }

    /// Counts a reply that does not have the expected shape (a bug or foreign data).
    pub fn bad_reply(&self, op: &'static str, what: &str) -> BackendError {
        self.metrics.backend_errors.with_label_values(&[op]).inc();
        tracing::warn!(op, what, "unexpected reply from redis");
        BackendError::Protocol(format!("redis {op}: unexpected reply: {what}"))
    }

    /// Pings Redis periodically so readiness recovers without traffic, and an outage
    /// shows without traffic.
    pub async fn run_probe(self: Arc<Self>, timeout: Duration, shutdown: CancellationToken) {
        loop {
            let wait = if self.failing.load(Ordering::Acquire) {
                PROBE_FAILING
            } else {
                PROBE_HEALTHY
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let options = fred::prelude::Options {
                timeout: Some(timeout),
                max_attempts: Some(1),
                ..Default::default()
            };
            let probe = self.client.with_options(&options);
            let ping = probe.ping::<String>(None);
            match ping.await {
                Ok(_) => self.succeeded(),
                Err(e) => {
                    self.failed("probe", &e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_errors() {
        assert!(is_outage(&Error::new(ErrorKind::IO, "connection reset")));
        assert!(is_outage(&Error::new(ErrorKind::Timeout, "timed out")));
        assert!(is_outage(&Error::new(
            ErrorKind::Unknown,
            "CLUSTERDOWN The cluster is down"
        )));
        assert!(is_outage(&Error::new(ErrorKind::Unknown, "TRYAGAIN Multiple keys")));
        assert!(!is_outage(&Error::new(ErrorKind::InvalidArgument, "ERR bad args")));
        assert!(!is_outage(&Error::new(ErrorKind::Unknown, "ERR Error running script")));
    }
}
