//! One subscription's worker task: takes events off its queue, groups them with the
//! [`Batcher`] and hands each batch to the sink, one delivery at a time (so a webhook
//! sees a subscription's events in the order they were queued).
//!
//! Stopping has two causes. When the subscription is changed or removed, the worker
//! finishes its in-flight delivery (at most [`GRACE`] more) and returns its queue and
//! unsent events as a [`Leftover`]: the worker of the changed subscription continues
//! from them; for a removed one they are counted as dropped. When the sidecar shuts
//! down, the worker flushes: it delivers what is pending and queued without waiting
//! for batch intervals, within the runner's bound.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::batcher::Batcher;
use super::route::TopicRoute;
use super::webhook::WebhookSink;
use crate::event::{SharedEvent, unix_ms};
use crate::metrics::SubscriptionMetrics;
use crate::publish::Publisher;

/// Longest an in-flight delivery may continue once its worker is told to stop.
pub const GRACE: Duration = Duration::from_secs(5);

/// Where a subscription's batches go.
#[derive(Debug)]
pub enum Sink {
    Webhook(Box<WebhookSink>),
    Topic {
        route: TopicRoute,
        publisher: std::sync::Weak<Publisher>,
    },
}

impl Sink {
    async fn deliver(&self, name: &str, batch: &[Arc<SharedEvent>], metrics: &SubscriptionMetrics) {
        match self {
            Sink::Webhook(w) => w.deliver(batch).await,
            Sink::Topic { route, publisher } => {
                let Some(publisher) = publisher.upgrade() else {
                    metrics.dropped.inc_by(batch.len() as u64);
                    return;
                };
                for ev in batch {
                    match route.route(&publisher, ev).await {
                        Ok(_) => metrics.routed.inc(),
                        Err(e) => {
                            metrics.failed.inc();
                            tracing::error!(
                                subscription = name,
                                topic = %ev.topic,
                                offset = ev.offset,
                                destination = route.destination(),
                                error = %e,
                                "routing an event into its destination topic failed"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Where a worker's events come from.
#[derive(Debug)]
pub enum Input {
    /// A new queue.
    Fresh(mpsc::Receiver<Arc<SharedEvent>>),
    /// The queue of the worker this one replaces, once that one has stopped.
    After(JoinHandle<Leftover>),
}

/// What a stopped worker leaves: its queue (unless it was flushed) and unsent events.
#[derive(Debug, Default)]
pub struct Leftover {
    pub rx: Option<mpsc::Receiver<Arc<SharedEvent>>>,
    pub pending: Vec<Arc<SharedEvent>>,
}

impl Leftover {
    /// Closes the queue and counts what was left in it and pending.
    pub fn discard(self) -> usize {
        let mut n = self.pending.len();
        if let Some(mut rx) = self.rx {
            rx.close();
            while rx.try_recv().is_ok() {
                n += 1;
            }
        }
        n
    }
}

/// A subscription's worker.
#[derive(Debug)]
pub struct Worker {
    pub name: Arc<str>,
    pub sink: Sink,
    pub batcher: Batcher<Arc<SharedEvent>>,
    pub metrics: SubscriptionMetrics,
    /// This subscription was changed or removed.
    pub stop: CancellationToken,
    /// The sidecar is shutting down.
    pub shutdown: CancellationToken,
}

impl Worker {
    pub async fn run(mut self, input: Input) -> Leftover {
        let mut rx = match input {
            Input::Fresh(rx) => rx,
            Input::After(previous) => match previous.await {
                Ok(Leftover { rx: Some(rx), pending }) => {
                    self.batcher.prepend(pending);
                    rx
                }
                Ok(Leftover { rx: None, pending }) => {
                    // The previous worker flushed (shutdown) or lost its queue.
                    if !pending.is_empty() {
                        self.deliver(pending).await;
                    }
                    return Leftover::default();
                }
                Err(e) => {
                    tracing::error!(subscription = %self.name, error = %e, "previous subscription worker failed; its queue is lost");
                    return Leftover::default();
                }
            },
        };
        loop {
            let batch = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return self.flush(rx).await,
                () = self.stop.cancelled() => {
                    return Leftover { rx: Some(rx), pending: self.batcher.take() };
                }
                batch = self.batcher.next(&mut rx) => batch,
            };
            match batch {
                Some(batch) => self.deliver(batch).await,
                // Every sender is gone: the runner was dropped.
                None => return Leftover::default(),
            }
        }
    }

    /// Delivers a batch, skipping expired events; once stopping, gives the delivery
    /// at most [`GRACE`] more.
    async fn deliver(&self, mut batch: Vec<Arc<SharedEvent>>) {
        let now = unix_ms();
        let before = batch.len();
        batch.retain(|ev| !ev.stored.is_expired_at(now));
        self.metrics.expired.inc_by((before - batch.len()) as u64);
        if batch.is_empty() {
            return;
        }
        let delivery = self.sink.deliver(&self.name, &batch, &self.metrics);
        tokio::pin!(delivery);
        tokio::select! {
            () = &mut delivery => return,
            () = self.stop.cancelled() => {}
            () = self.shutdown.cancelled() => {}
        }
        if tokio::time::timeout(GRACE, delivery).await.is_err() {
            self.metrics.dropped.inc_by(batch.len() as u64);
            tracing::warn!(
                subscription = %self.name,
                events = batch.len(),
                "stopping: abandoned a delivery still in progress"
            );
        }
    }

    /// Shutdown: delivers everything pending and queued, in batches, without waiting.
    async fn flush(mut self, mut rx: mpsc::Receiver<Arc<SharedEvent>>) -> Leftover {
        rx.close();
        let mut events = self.batcher.take();
        while let Ok(ev) = rx.try_recv() {
            events.push(ev);
        }
        if !events.is_empty() {
            tracing::info!(subscription = %self.name, events = events.len(), "shutdown: flushing subscription");
        }
        let max = self.batcher.max();
        while !events.is_empty() {
            let rest = events.split_off(events.len().min(max));
            self.deliver(std::mem::replace(&mut events, rest)).await;
        }
        Leftover::default()
    }
}
