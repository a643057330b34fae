//! Backend health: whether Redis answers. Every operation reports its outcome here; a
//! failure counts in `eventcast_backend_errors_total{op}` and, when it is about the
//! connection (I/O, timeout, cluster down or moving), marks the backend unavailable
//! until an operation or the periodic probe succeeds again. Readiness (`/readyz`)
//! follows it, and callers get [`BackendError::Unavailable`] (HTTP 503 with
//! `Retry-After`).
//!
//! The probe also tells a stuck command client from an outage: when its pings time out
//! [`UNRESPONSIVE_PROBES`] times in a row while a new connection to the cluster answers,
//! it asks the [`Supervisor`] to restart the client's connection task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::interfaces::ClientLike;
use fred::prelude::{Builder, Client, ClientState, Error, ErrorKind};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::supervisor::Supervisor;
use crate::backend::BackendError;
use crate::metrics::Metrics;

/// How often the probe checks Redis while it is failing (and, less often, while healthy).
const PROBE_FAILING: Duration = Duration::from_millis(500);
const PROBE_HEALTHY: Duration = Duration::from_secs(5);
/// Probe pings timing out in a row before a new connection is tried for comparison.
const UNRESPONSIVE_PROBES: u32 = 2;

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
    /// Builds a client like `client`, for the comparison connection of the probe.
    builder: Builder,
    supervisor: Arc<Supervisor>,
    failing: AtomicBool,
    /// Wakes the probe when an operation fails, so it does not wait out its healthy pace.
    became_failing: Notify,
    metrics: Arc<Metrics>,
}

impl Health {
    pub fn new(client: Client, builder: Builder, supervisor: Arc<Supervisor>, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            builder,
            supervisor,
            failing: AtomicBool::new(false),
            became_failing: Notify::new(),
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
                self.became_failing.notify_one();
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
    /// shows without traffic; restarts a command client that is stuck (see the module
    /// doc).
    pub async fn run_probe(self: Arc<Self>, timeout: Duration, shutdown: CancellationToken) {
        let mut timeouts = 0u32;
        loop {
            let failing = self.failing.load(Ordering::Acquire);
            let wait = if failing { PROBE_FAILING } else { PROBE_HEALTHY };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.became_failing.notified(), if !failing => {}
            }
            let options = fred::prelude::Options {
                timeout: Some(timeout),
                max_attempts: Some(1),
                ..Default::default()
            };
            let probe = self.client.with_options(&options);
            let ping = probe.ping::<String>(None);
            match ping.await {
                Ok(_) => {
                    timeouts = 0;
                    self.succeeded();
                }
                Err(e) => {
                    self.failed("probe", &e);
                    timeouts = if e.kind() == &ErrorKind::Timeout {
                        timeouts + 1
                    } else {
                        0
                    };
                }
            }
            if timeouts >= UNRESPONSIVE_PROBES {
                timeouts = 0;
                let fresh = tokio::select! {
                    () = shutdown.cancelled() => return,
                    fresh = self.fresh_connection_answers(timeout) => fresh,
                };
                if fresh {
                    tracing::warn!(
                        probes = UNRESPONSIVE_PROBES,
                        "redis command client unresponsive while a new connection answers; restarting it"
                    );
                    self.supervisor.restart_unresponsive();
                }
            }
        }
    }

    /// Whether a new client connects to the cluster and answers a ping within twice
    /// `timeout`. Its connection task is owned here and aborted before returning.
    async fn fresh_connection_answers(&self, timeout: Duration) -> bool {
        let client = match self.builder.build() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "building a redis client to compare with");
                return false;
            }
        };
        // Aborted when dropped: on return, and when shutdown drops this future.
        let _task = AbortOnDropHandle::new(client.connect());
        let answered = tokio::time::timeout(timeout * 2, async {
            client.wait_for_connect().await?;
            client.ping::<String>(None).await
        })
        .await;
        matches!(answered, Ok(Ok(_)))
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
