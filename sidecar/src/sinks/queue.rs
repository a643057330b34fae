//! The bounded queue between the publish path and a subscription's worker.
//!
//! Full-policy: **drop the newest**. Publishing never waits for a webhook: an event that
//! finds its subscription's queue full (or its worker gone) is counted in
//! `eventcast_subscription_dropped_total{subscription}` and logged at most once per
//! second per subscription with the number dropped since the last log line. The event
//! itself stays in its topic's history, so an operator can replay it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::IntCounter;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::event::{SharedEvent, unix_ms};

/// Events queued per subscription at most.
pub const CAPACITY: usize = 10_000;
/// Least time between two "dropped" log lines of one subscription.
const LOG_EVERY_MS: u64 = 1_000;

/// Sending side of a subscription's queue, shared by every publisher.
#[derive(Debug)]
pub struct Queue {
    subscription: Arc<str>,
    tx: mpsc::Sender<Arc<SharedEvent>>,
    dropped: IntCounter,
    /// Drops not yet reported in a log line.
    unlogged: AtomicU64,
    last_log_ms: AtomicU64,
}

impl Queue {
    pub fn channel(
        subscription: Arc<str>,
        capacity: usize,
        dropped: IntCounter,
    ) -> (Self, mpsc::Receiver<Arc<SharedEvent>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let queue = Self {
            subscription,
            tx,
            dropped,
            unlogged: AtomicU64::new(0),
            last_log_ms: AtomicU64::new(0),
        };
        (queue, rx)
    }

    /// Queues the event without waiting; false when it was dropped.
    pub fn offer(&self, ev: &Arc<SharedEvent>) -> bool {
        // Never `send().await` here: this runs on the publish path (see the module docs).
        let reason = match self.tx.try_send(ev.clone()) {
            Ok(()) => return true,
            Err(TrySendError::Full(_)) => "queue full",
            Err(TrySendError::Closed(_)) => "worker stopped",
        };
        self.dropped.inc();
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        let now = unix_ms();
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= LOG_EVERY_MS
            && self
                .last_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let dropped = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                subscription = %self.subscription,
                reason,
                dropped,
                capacity = self.tx.max_capacity(),
                topic = %ev.topic,
                offset = ev.offset,
                "subscription is not keeping up: dropping events (they remain in topic history)"
            );
        }
        false
    }

    /// The worker has gone (it stopped, or ended unexpectedly).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::fixtures::event;

    #[test]
    fn full_queue_drops_the_newest_and_counts_it() {
        let dropped = IntCounter::new("d", "d").expect("counter");
        let (q, mut rx) = Queue::channel("audit".into(), 2, dropped.clone());
        assert!(q.offer(&event("t", 1, "x")));
        assert!(q.offer(&event("t", 2, "x")));
        assert!(!q.offer(&event("t", 3, "x")));
        assert!(!q.offer(&event("t", 4, "x")));
        assert_eq!(dropped.get(), 2);
        assert_eq!(rx.try_recv().map(|e| e.offset).ok(), Some(1));
        assert_eq!(rx.try_recv().map(|e| e.offset).ok(), Some(2));
        assert!(rx.try_recv().is_err(), "the newest were dropped, not the oldest");
        assert!(q.offer(&event("t", 5, "x")), "room again once the worker took some");
    }

    #[test]
    fn closed_queue_counts_drops() {
        let dropped = IntCounter::new("d", "d").expect("counter");
        let (q, rx) = Queue::channel("audit".into(), 2, dropped.clone());
        drop(rx);
        assert!(q.is_closed());
        assert!(!q.offer(&event("t", 1, "x")));
        assert_eq!(dropped.get(), 1);
    }
}
