//! Fan-out from Redis to this sidecar's local subscribers.
//!
//! One fred `SubscriberClient` holds the sidecar's sharded subscriptions: a topic's
//! channel is SSUBSCRIBEd when the hub gets its first local subscriber ([`Listener::listen`])
//! and SUNSUBSCRIBEd after the last leaves ([`Listener::unlisten`]). One task
//! ([`Listener::run`]) receives every message and hands events to the hub strictly in
//! offset order per topic, the origin sidecar included: the append script publishes,
//! and every sidecar delivers what comes back, so all sidecars deliver in the same order.
//!
//! Pub/sub is lossy: messages are dropped while a connection is down, while a slot moves
//! (the server ends the subscription) or when this task falls behind. An
//! [`OffsetTracker`] per topic detects a missing offset and the gap is filled from the
//! history stream before the newer event is delivered. Three more paths catch losses no
//! later message reveals: after every reconnect or cluster topology change (seen by the
//! subscriber or the command client) all channels are subscribed again and every topic
//! is compared with its head; after the message buffer overflowed every topic is
//! compared at once; and a periodic check compares each topic's head with what was
//! delivered, and when events older than one check interval are still missing,
//! subscribes again and fills the gap. That last path covers a subscription the server
//! ended silently: when a slot moves or its master is demoted Redis sends an unsolicited
//! SUNSUBSCRIBE, which fred does not surface.
//!
//! Start of a topic's feed: `listen` subscribes, then reads the head position and
//! sends it to the task, which starts delivery after it (messages that arrived
//! meanwhile are held and then classified like any other). Local subscribers read
//! their history only after the feed is ready (the backend's `read` waits for it), so
//! every event after their read arrives live; their recovery gate drops the overlap.
//!
//! Subscribe and unsubscribe calls are serialized by one async lock, and an
//! unsubscribe is skipped when the topic was listened to again meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{EventInterface, PubsubInterface};
use fred::prelude::Value;
use fred::types::Message;
use parking_lot::Mutex;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::payload::Payload;
use super::store::Store;
use super::tracker::{Next, OffsetTracker};
use crate::event::SharedEvent;
use crate::hub::Hub;
use crate::live_config::ConfigStore;
use crate::metrics::Metrics;

/// Messages held per topic while its feed starts; beyond this they are dropped and the
/// gap is filled from history.
const MAX_HELD: usize = 1024;
/// Events read per history request while filling a gap.
const FILL_BATCH: usize = 500;
/// Quiet time after a reconnect or topology change before subscribing again.
const RESUBSCRIBE_SETTLE: Duration = Duration::from_millis(100);
/// Control requests waiting for the listener task (full: `listen` waits; an unlisten
/// is dropped and the periodic check unsubscribes the orphaned channel).
const CONTROL_QUEUE: usize = 1024;

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Requests to the listener task.
#[derive(Debug)]
enum Control {
    /// A feed's subscription is in place and this is the head it starts after.
    Ready {
        topic: Arc<str>,
        head: Option<(Arc<str>, u64)>,
        done: oneshot::Sender<()>,
    },
    /// The hub has no local subscriber left for this topic.
    Unlisten(Arc<str>),
}

/// Why the listener compares topics with their heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Periodic: act on events missing for a whole interval.
    Periodic,
    /// Messages were dropped: fill every gap now.
    Lagged,
    /// A connection came back: subscribe every channel again, then fill every gap.
    Reconnected,
}

/// A topic being listened to.
#[derive(Debug)]
struct Feed {
    tracker: OffsetTracker,
    /// Delivery has started (the head after subscribing is known).
    ready: watch::Sender<bool>,
    /// Raw payloads that arrived before the feed was ready.
    held: Vec<Vec<u8>>,
    /// Head seen at the previous periodic check.
    mark: Option<(Arc<str>, u64)>,
}

impl Feed {
    fn new() -> Self {
        Self {
            tracker: OffsetTracker::new(),
            ready: watch::Sender::new(false),
            held: Vec::new(),
            mark: None,
        }
    }

    fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }
}

/// Starts a pending feed without a head if `listen` is dropped before it could.
struct StartGuard<'a> {
    listener: &'a Listener,
    topic: Option<Arc<str>>,
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        if let Some(topic) = self.topic.take() {
            let (done, _) = oneshot::channel();
            let _ = self.listener.control.try_send(Control::Ready {
                topic,
                head: None,
                done,
            });
        }
    }
}

/// The sidecar's sharded subscriptions and in-order delivery.
#[derive(Debug)]
pub struct Listener {
    subscriber: SubscriberClient,
    store: Arc<Store>,
    hub: Arc<Hub>,
    config: Arc<ConfigStore>,
    metrics: Arc<Metrics>,
    feeds: Mutex<HashMap<Arc<str>, Feed>>,
    /// Serializes SSUBSCRIBE/SUNSUBSCRIBE.
    ops: tokio::sync::Mutex<()>,
    control: mpsc::Sender<Control>,
    control_rx: Mutex<Option<mpsc::Receiver<Control>>>,
    check_every: Duration,
    timeout: Duration,
}

impl Listener {
    pub fn new(
        subscriber: SubscriberClient,
        store: Arc<Store>,
        hub: Arc<Hub>,
        config: Arc<ConfigStore>,
        metrics: Arc<Metrics>,
        check_every: Duration,
    ) -> Self {
        let (control, rx) = mpsc::channel(CONTROL_QUEUE);
        let timeout = store.timeout;
        Self {
            subscriber,
            store,
            hub,
            config,
            metrics,
            feeds: Mutex::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
            control,
            control_rx: Mutex::new(Some(rx)),
            check_every,
            timeout,
        }
    }

    pub fn subscriber(&self) -> &SubscriberClient {
        &self.subscriber
    }

    /// Starts listening to a topic (idempotent); returns once delivery of events after
    /// the current head is in place, or after the timeout when Redis does not answer.
    pub async fn listen(&self, topic: &str) {
        let waiting = {
            let mut feeds = self.feeds.lock();
            match feeds.get(topic) {
                Some(f) if f.is_ready() => return,
                Some(f) => Some(f.ready.subscribe()),
                None => {
                    feeds.insert(Arc::from(topic), Feed::new());
                    None
                }
            }
        };
        if let Some(mut ready) = waiting {
            let _ = tokio::time::timeout(self.timeout * 2, ready.wait_for(|r| *r)).await;
            return;
        }
        let topic: Arc<str> = Arc::from(topic);
        // Should this future be dropped halfway, the feed still starts (without a head).
        let mut guard = StartGuard {
            listener: self,
            topic: Some(topic.clone()),
        };
        let head = {
            let _ops = self.ops.lock().await;
            if !self.feeds.lock().contains_key(&topic) {
                return;
            }
            if self.subscribe(&topic).await {
                self.position(&topic).await
            } else {
                None
            }
        };
        guard.topic = None;
        let (done, finished) = oneshot::channel();
        let ready = Control::Ready {
            topic: topic.clone(),
            head,
            done,
        };
        if self.control.send(ready).await.is_err() {
            return;
        }
        if tokio::time::timeout(self.timeout * 2, finished).await.is_err() {
            tracing::warn!(topic = %topic, "listener did not confirm the subscription in time");
        }
    }

    /// Waits until a topic with local subscribers has its feed ready (starting it when
    /// needed), so a history read that follows misses nothing live.
    pub async fn ensure(&self, topic: &str) {
        if self.hub.subscriber_count(topic) > 0 {
            self.listen(topic).await;
        }
    }

    /// Stops listening to a topic (the unsubscribe happens on the listener task).
    pub fn unlisten(&self, topic: &str) {
        let removed = self.feeds.lock().remove(topic);
        if let Some(feed) = removed {
            // Wake anyone waiting on a feed that will never start.
            feed.ready.send_replace(true);
            if self.control.try_send(Control::Unlisten(Arc::from(topic))).is_err() {
                tracing::debug!(topic, "listener control queue full; the periodic check unsubscribes");
            }
        }
    }

    /// The topic's epoch and last offset, starting the epoch if the topic has none.
    async fn position(&self, topic: &str) -> Option<(Arc<str>, u64)> {
        let live = self.config.get().topic(topic).cloned()?;
        let read = self.store.read_raw(&live, u64::MAX, 0).await.ok()?;
        Some((read.epoch, read.last))
    }

    /// SSUBSCRIBEs a topic's channel; false (counted) when Redis refused or failed.
    async fn subscribe(&self, topic: &str) -> bool {
        match self.subscriber.ssubscribe(self.store.keys.channel(topic)).await {
            Ok(()) => true,
            Err(e) => {
                self.store.health.failed("subscribe", &e);
                false
            }
        }
    }

    /// The listener task: messages, control requests, reconnects and periodic checks,
    /// until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(mut control) = self.control_rx.lock().take() else {
            return;
        };
        let mut messages = self.subscriber.message_rx();
        let mut reconnects = self.subscriber.reconnect_rx();
        // Topology changes seen by either client (after MOVED, failovers, reconnects):
        // a slot may have moved away from the node holding a subscription.
        let mut moved = self.subscriber.cluster_change_rx();
        let mut moved_too = self.store.client.cluster_change_rx();
        let mut tick = tokio::time::interval(self.check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Reconnects and topology changes come in bursts: one check after they settle.
        let mut resubscribe_at: Option<tokio::time::Instant> = None;
        let settle = || Some(tokio::time::Instant::now() + RESUBSCRIBE_SETTLE);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                c = control.recv() => match c {
                    Some(c) => self.on_control(c).await,
                    None => return,
                },
                m = messages.recv() => match m {
                    Ok(m) => self.on_message(&m).await,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(dropped = n, "listener fell behind; filling gaps from history");
                        self.metrics.backend_errors.with_label_values(&["listener_lagged"]).inc();
                        self.check(Check::Lagged).await;
                    }
                    Err(RecvError::Closed) => return,
                },
                r = reconnects.recv() => match r {
                    Ok(server) => {
                        tracing::info!(%server, "redis subscriber reconnected; subscribing again");
                        resubscribe_at = resubscribe_at.or_else(settle);
                    }
                    Err(RecvError::Lagged(_)) => resubscribe_at = resubscribe_at.or_else(settle),
                    Err(RecvError::Closed) => return,
                },
                c = moved.recv() => if !matches!(c, Err(RecvError::Closed)) {
                    resubscribe_at = resubscribe_at.or_else(settle);
                },
                c = moved_too.recv() => if !matches!(c, Err(RecvError::Closed)) {
                    resubscribe_at = resubscribe_at.or_else(settle);
                },
                () = sleep_until_some(resubscribe_at) => {
                    resubscribe_at = None;
                    self.check(Check::Reconnected).await;
                }
                _ = tick.tick() => self.check(Check::Periodic).await,
            }
        }
    }

    async fn on_control(&self, c: Control) {
        match c {
            Control::Ready { topic, head, done } => {
                let held = {
                    let mut feeds = self.feeds.lock();
                    let Some(feed) = feeds.get_mut(&topic) else {
                        let _ = done.send(());
                        return;
                    };
                    if let Some((epoch, offset)) = &head {
                        feed.tracker.start_at(epoch, *offset);
                    }
                    std::mem::take(&mut feed.held)
                };
                for raw in held {
                    self.on_payload(&topic, &raw, true).await;
                }
                if let Some(feed) = self.feeds.lock().get(&topic) {
                    feed.ready.send_replace(true);
                }
                let _ = done.send(());
            }
            Control::Unlisten(topic) => {
                let _ops = self.ops.lock().await;
                if self.feeds.lock().contains_key(&topic) {
                    return;
                }
                if let Err(e) = self.subscriber.sunsubscribe(self.store.keys.channel(&topic)).await {
                    self.store.health.failed("unsubscribe", &e);
                }
            }
        }
    }

    async fn on_message(&self, m: &Message) {
        let Some(topic) = self.store.keys.topic_of_channel(&m.channel) else {
            return;
        };
        let raw: &[u8] = match &m.value {
            Value::String(s) => s.as_bytes(),
            Value::Bytes(b) => b,
            other => {
                tracing::warn!(topic, kind = ?other.kind(), "ignoring non-string message");
                return;
            }
        };
        self.on_payload(topic, raw, false).await;
    }

    /// Classifies one payload and delivers it (after filling a gap) or drops it.
    async fn on_payload(&self, topic: &str, raw: &[u8], starting: bool) {
        let payload = match Payload::parse(raw) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.backend_errors.with_label_values(&["payload"]).inc();
                tracing::warn!(topic, error = %e, "ignoring malformed delivery payload");
                return;
            }
        };
        let next = {
            let mut feeds = self.feeds.lock();
            let Some(feed) = feeds.get_mut(topic) else {
                return;
            };
            if !starting && !feed.is_ready() {
                if feed.held.len() < MAX_HELD {
                    feed.held.push(raw.to_vec());
                }
                return;
            }
            feed.tracker.classify(payload.epoch, payload.offset)
        };
        match next {
            Next::Duplicate => {}
            Next::Deliver => self.deliver_payload(topic, &payload),
            Next::Gap { after } => {
                self.fill(topic, after).await;
                let still = self
                    .feeds
                    .lock()
                    .get_mut(topic)
                    .map(|f| f.tracker.classify(payload.epoch, payload.offset));
                match still {
                    Some(Next::Deliver) => self.deliver_payload(topic, &payload),
                    Some(Next::Gap { after }) => {
                        // History could not fill it (trimmed, or Redis failed): subscribers
                        // are told (`lagged`, so they can try to recover), then the event
                        // goes out.
                        self.report_loss(topic, after + 1, payload.offset - 1);
                        self.deliver_payload(topic, &payload);
                    }
                    Some(Next::Duplicate) | None => {}
                }
            }
        }
    }

    fn deliver_payload(&self, topic: &str, payload: &Payload<'_>) {
        let config = self.config.get();
        let Some(live) = config.topic(topic) else {
            return;
        };
        match payload.event() {
            Ok(stored) => {
                let ev = Arc::new(live.shared_event(payload.offset, Arc::from(payload.epoch), stored));
                self.deliver(topic, &ev);
            }
            Err(e) => {
                self.metrics.backend_errors.with_label_values(&["payload"]).inc();
                tracing::warn!(topic, offset = payload.offset, error = %e, "skipping unreadable event");
                if let Some(feed) = self.feeds.lock().get_mut(topic) {
                    feed.tracker.delivered(payload.epoch, payload.offset);
                }
            }
        }
    }

    /// Hands one event to the hub and records it (the tracker moves under the lock
    /// only this task takes for delivery, so offsets stay in order).
    fn deliver(&self, topic: &str, ev: &Arc<SharedEvent>) {
        {
            let mut feeds = self.feeds.lock();
            let Some(feed) = feeds.get_mut(topic) else {
                return;
            };
            feed.tracker.delivered(&ev.epoch, ev.offset);
        }
        self.hub.fanout(ev);
    }

    /// Events `from..=to` cannot be delivered: counted, logged, and local subscribers get
    /// a `lagged` notice naming them.
    fn report_loss(&self, topic: &str, from: u64, to: u64) {
        self.metrics.backend_errors.with_label_values(&["gap"]).inc();
        let told = self.hub.lagged(topic, from, to);
        self.metrics.lagged.inc_by(told as u64);
        tracing::warn!(
            topic,
            from,
            to,
            "events missed by this sidecar are not in history any more"
        );
    }

    /// Delivers missing events after `after` from history, up to the current head.
    async fn fill(&self, topic: &str, mut after: u64) {
        loop {
            let Some(live) = self.config.get().topic(topic).cloned() else {
                return;
            };
            let read = match self.store.read(&live, after, FILL_BATCH).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(topic, error = %e, "filling a gap from history");
                    return;
                }
            };
            let (epoch, last) = {
                let mut feeds = self.feeds.lock();
                let Some(feed) = feeds.get_mut(topic) else {
                    return;
                };
                if feed.tracker.position().is_some_and(|(e, _)| **e != *read.epoch) {
                    // History restarted under a new epoch: deliver that epoch from its start.
                    feed.tracker.switch_epoch(&read.epoch);
                }
                match feed.tracker.position() {
                    Some((e, o)) => (e.clone(), o),
                    None => (read.epoch.clone(), after),
                }
            };
            if *epoch != *read.epoch {
                return;
            }
            if read.first > last.saturating_add(1) && read.last > last {
                self.report_loss(topic, last + 1, read.first - 1);
                if let Some(feed) = self.feeds.lock().get_mut(topic) {
                    feed.tracker.delivered(&read.epoch, read.first - 1);
                }
            }
            let mut progressed = false;
            for ev in read.events.iter().filter(|e| e.offset > last) {
                self.deliver(topic, ev);
                after = ev.offset;
                progressed = true;
            }
            if !progressed || read.events.len() < FILL_BATCH {
                return;
            }
        }
    }

    /// Compares every ready topic with its head and acts as `why` asks.
    async fn check(&self, why: Check) {
        let topics: Vec<Arc<str>> = self
            .feeds
            .lock()
            .iter()
            .filter(|(_, f)| f.is_ready())
            .map(|(t, _)| t.clone())
            .collect();
        if why == Check::Reconnected {
            let _ops = self.ops.lock().await;
            for t in &topics {
                if self.feeds.lock().contains_key(t) {
                    self.subscribe(t).await;
                }
            }
        }
        let heads = futures_util::future::join_all(topics.iter().map(|t| self.store.head(t))).await;
        for (topic, head) in topics.iter().zip(heads) {
            let Ok(Some((epoch, offset))) = head else {
                continue;
            };
            let (behind, stale, after) = {
                let mut feeds = self.feeds.lock();
                let Some(feed) = feeds.get_mut(topic) else {
                    continue;
                };
                if feed.tracker.position().is_none() {
                    // Started while Redis did not answer: start after the head now.
                    feed.tracker.start_at(&epoch, offset);
                    continue;
                }
                let behind = feed.tracker.is_behind(&epoch, offset);
                let stale = feed.mark.as_ref().is_some_and(|(e, o)| feed.tracker.is_behind(e, *o));
                feed.mark = Some((epoch.clone(), offset));
                if behind && feed.tracker.position().is_some_and(|(e, _)| **e != *epoch) {
                    feed.tracker.switch_epoch(&epoch);
                }
                let after = feed.tracker.position().map_or(0, |(_, o)| o);
                (behind, stale, after)
            };
            let act = match why {
                Check::Periodic => stale,
                Check::Lagged | Check::Reconnected => behind,
            };
            if !act {
                continue;
            }
            if why == Check::Periodic {
                tracing::info!(topic = %topic, "events missing for a whole check interval; subscribing again");
                let _ops = self.ops.lock().await;
                if self.feeds.lock().contains_key(topic) {
                    self.subscribe(topic).await;
                }
            }
            self.fill(topic, after).await;
        }
        if why == Check::Periodic {
            self.unsubscribe_orphans().await;
        }
    }

    /// Unsubscribes channels without a feed (an unlisten whose request was dropped).
    async fn unsubscribe_orphans(&self) {
        let _ops = self.ops.lock().await;
        let orphans: Vec<String> = {
            let feeds = self.feeds.lock();
            self.subscriber
                .tracked_shard_channels()
                .into_iter()
                .filter(|c| {
                    self.store
                        .keys
                        .topic_of_channel(c)
                        .is_none_or(|t| !feeds.contains_key(t))
                })
                .map(|c| c.to_string())
                .collect()
        };
        for channel in orphans {
            if let Err(e) = self.subscriber.sunsubscribe(channel).await {
                self.store.health.failed("unsubscribe", &e);
            }
        }
    }

    /// Topics listened to (for stats and tests).
    pub fn topics(&self) -> Vec<String> {
        self.feeds.lock().keys().map(ToString::to_string).collect()
    }
}
