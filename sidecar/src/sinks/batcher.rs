//! Grouping a subscription's queued events into deliveries: up to `batchSize` events,
//! or whatever arrived within `batchInterval` of the first one. Realtime mode is a
//! batch of one sent as soon as it arrives.
//!
//! [`Batcher::next`] is cancel-safe: events taken off the queue wait in the batcher
//! itself, so a worker that stops in the middle of collecting (config change,
//! shutdown) still holds them and can hand them on or flush them.

use std::time::Duration;

use eventcast_api::config::SubscriptionDeliveryConfig;
use eventcast_api::crd::subscription::DeliveryMode;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Collects events into batches.
#[derive(Debug)]
pub struct Batcher<T> {
    max: usize,
    interval: Duration,
    pending: Vec<T>,
    /// When the pending batch is due; set when its first event arrives.
    due: Option<Instant>,
}

impl<T> Batcher<T> {
    pub fn new(max: usize, interval: Duration) -> Self {
        Self {
            max: max.max(1),
            interval,
            pending: Vec::new(),
            due: None,
        }
    }

    /// The batching of a subscription's delivery settings.
    pub fn for_delivery(delivery: &SubscriptionDeliveryConfig) -> Self {
        match delivery.mode {
            DeliveryMode::Realtime => Self::new(1, Duration::ZERO),
            DeliveryMode::Batched => Self::new(
                usize::try_from(delivery.batch_size).unwrap_or(usize::MAX),
                Duration::from_millis(delivery.batch_interval_ms),
            ),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Puts events back in front (a predecessor's unsent batch); they are due now.
    pub fn prepend(&mut self, mut events: Vec<T>) {
        if events.is_empty() {
            return;
        }
        events.append(&mut self.pending);
        self.pending = events;
        self.due = Some(Instant::now());
    }

    /// Events waiting for their batch to fill or fall due.
    pub fn take(&mut self) -> Vec<T> {
        self.due = None;
        std::mem::take(&mut self.pending)
    }

    /// The next batch: when `max` events are pending, or the interval since the first of
    /// them passed. `None` once the queue is closed and drained and nothing is pending.
    pub async fn next(&mut self, rx: &mut mpsc::Receiver<T>) -> Option<Vec<T>> {
        loop {
            if self.pending.len() >= self.max {
                let rest = self.pending.split_off(self.max);
                let batch = std::mem::replace(&mut self.pending, rest);
                self.due = (!self.pending.is_empty()).then(Instant::now);
                return Some(batch);
            }
            let received = match self.due {
                None => rx.recv().await,
                Some(due) => {
                    tokio::select! {
                        biased;
                        r = rx.recv() => r,
                        () = tokio::time::sleep_until(due) => return Some(self.take()),
                    }
                }
            };
            match received {
                Some(item) => {
                    if self.pending.is_empty() {
                        self.due = Some(Instant::now() + self.interval);
                    }
                    self.pending.push(item);
                }
                None if self.pending.is_empty() => return None,
                None => return Some(self.take()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batched(size: u32, interval_ms: u64) -> Batcher<u32> {
        Batcher::for_delivery(&SubscriptionDeliveryConfig {
            mode: DeliveryMode::Batched,
            batch_size: size,
            batch_interval_ms: interval_ms,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_when_full_without_waiting() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut b = batched(3, 60_000);
        for i in 0..7 {
            tx.send(i).await.expect("open");
        }
        let start = Instant::now();
        assert_eq!(b.next(&mut rx).await, Some(vec![0, 1, 2]));
        assert_eq!(b.next(&mut rx).await, Some(vec![3, 4, 5]));
        assert_eq!(start.elapsed(), Duration::ZERO, "full batches go at once");
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_a_partial_batch_when_the_interval_passes() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut b = batched(100, 200);
        tx.send(1).await.expect("open");
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            tx.send(2).await.expect("open");
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(3).await.expect("open");
            tx
        });
        let start = Instant::now();
        assert_eq!(b.next(&mut rx).await, Some(vec![1, 2]));
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(200),
            "due 200ms after the first event"
        );
        // The next batch's clock starts at its own first event (t=250ms).
        assert_eq!(b.next(&mut rx).await, Some(vec![3]));
        assert_eq!(start.elapsed(), Duration::from_millis(450));
        drop(sender.await.expect("sender"));
        assert_eq!(b.next(&mut rx).await, None, "closed and drained");
    }

    #[tokio::test(start_paused = true)]
    async fn realtime_sends_each_event_alone() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut b: Batcher<u32> = Batcher::for_delivery(&SubscriptionDeliveryConfig {
            mode: DeliveryMode::Realtime,
            batch_size: 100,
            batch_interval_ms: 200,
        });
        tx.send(1).await.expect("open");
        tx.send(2).await.expect("open");
        assert_eq!(b.max(), 1);
        assert_eq!(b.next(&mut rx).await, Some(vec![1]));
        assert_eq!(b.next(&mut rx).await, Some(vec![2]));
    }

    #[tokio::test(start_paused = true)]
    async fn closing_the_queue_flushes_what_is_pending() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut b = batched(10, 60_000);
        tx.send(1).await.expect("open");
        tx.send(2).await.expect("open");
        drop(tx);
        assert_eq!(b.next(&mut rx).await, Some(vec![1, 2]));
        assert_eq!(b.next(&mut rx).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_collection_keeps_its_events() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut b = batched(10, 1_000);
        tx.send(1).await.expect("open");
        let cut = tokio::time::timeout(Duration::from_millis(10), b.next(&mut rx)).await;
        assert!(cut.is_err(), "still collecting");
        assert_eq!(b.take(), vec![1]);
        b.prepend(vec![7, 8]);
        tx.send(9).await.expect("open");
        assert_eq!(
            b.next(&mut rx).await,
            Some(vec![7, 8, 9]),
            "prepended events are due now"
        );
    }
}
