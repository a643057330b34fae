//! The hub: which local connections are subscribed to which topic, and fan-out of each
//! event to them.
//!
//! Subscriber lists are copy-on-write (`ArcSwap`): fan-out reads a snapshot without
//! locking, subscribe/unsubscribe (rare by comparison) replace the list under a per-topic
//! edit lock. An event's frame was serialized once before it gets here; each delivery
//! is a filter check and either an `Arc` clone pushed into the connection's outbox or,
//! for an idle connection, a write of the shared frame.

mod subscriber;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};

pub use subscriber::{Subscriber, SubscriberFilter};

use eventcast_api::protocol::ServerFrame;

use crate::event::SharedEvent;

/// How long one fan-out may spend writing to idle connections itself.
pub const DIRECT_WRITE_BUDGET: Duration = Duration::from_millis(10);

/// One topic's local subscribers. Channels are never removed, so a backend may keep the
/// handle (see [`Hub::channel`]) and skip the lookup by name on every publish.
#[derive(Debug, Default)]
pub struct Channel {
    subscribers: ArcSwap<Vec<Arc<Subscriber>>>,
    edit: Mutex<()>,
}

/// Local subscriptions by topic.
#[derive(Debug, Default)]
pub struct Hub {
    channels: RwLock<HashMap<Arc<str>, Arc<Channel>, foldhash::fast::RandomState>>,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    /// The topic's channel, created when missing.
    pub fn channel(&self, topic: &str) -> Arc<Channel> {
        if let Some(c) = self.channels.read().get(topic) {
            return c.clone();
        }
        self.channels.write().entry(Arc::from(topic)).or_default().clone()
    }

    /// Adds a subscriber (replacing one of the same connection). Returns true when it is
    /// the topic's first local subscriber (a backend may start listening then).
    pub fn add(&self, topic: &str, sub: Arc<Subscriber>) -> bool {
        let ch = self.channel(topic);
        let _edit = ch.edit.lock();
        let cur = ch.subscribers.load();
        let mut next: Vec<Arc<Subscriber>> = cur.iter().filter(|s| s.conn_id != sub.conn_id).cloned().collect();
        let first = next.is_empty();
        next.push(sub);
        ch.subscribers.store(Arc::new(next));
        first
    }

    /// Removes a connection's subscriber. Returns (removed, now_empty).
    pub fn remove(&self, topic: &str, conn_id: u64) -> (bool, bool) {
        let Some(ch) = self.channels.read().get(topic).cloned() else {
            return (false, true);
        };
        let _edit = ch.edit.lock();
        let cur = ch.subscribers.load();
        let next: Vec<Arc<Subscriber>> = cur.iter().filter(|s| s.conn_id != conn_id).cloned().collect();
        let removed = next.len() != cur.len();
        let empty = next.is_empty();
        ch.subscribers.store(Arc::new(next));
        (removed, empty)
    }

    /// Delivers to every local subscriber that wants the event; returns how many got it.
    ///
    /// Idle connections are written to directly (see `connection::socket`) for the first
    /// [`DIRECT_WRITE_BUDGET`] of a fan-out; the rest are queued for their writers. The
    /// fan-out runs under its topic's ordering lock, so the budget bounds how long a huge
    /// fan-out keeps the topic's next publish (and its thread) waiting on syscalls.
    pub fn fanout(&self, ev: &Arc<SharedEvent>) -> usize {
        let Some(ch) = self.channels.read().get(&*ev.topic).cloned() else {
            return 0;
        };
        Self::fanout_to(&ch, ev)
    }

    /// [`Hub::fanout`] to a channel the caller already holds.
    pub fn fanout_to(ch: &Channel, ev: &Arc<SharedEvent>) -> usize {
        let subs = ch.subscribers.load();
        // The frame was built just before its fan-out: no need for another clock read.
        let started = ev.received_at;
        let mut direct = true;
        let mut delivered = 0;
        for (i, s) in subs.iter().enumerate() {
            // A clock read every few subscribers is enough at ~10 us per direct write.
            if direct && i % 8 == 7 && started.elapsed() > DIRECT_WRITE_BUDGET {
                direct = false;
            }
            if s.wants(ev) {
                s.deliver(ev, direct);
                delivered += 1;
            }
        }
        delivered
    }

    /// Tells every local subscriber of `topic` that events `from..=to` will not be
    /// delivered (a backend could not get them); returns how many were told.
    pub fn lagged(&self, topic: &str, from: u64, to: u64) -> usize {
        let Some(ch) = self.channels.read().get(topic).cloned() else {
            return 0;
        };
        let frame = ServerFrame::Lagged {
            topic: topic.to_owned(),
            from,
            to,
        };
        let subs = ch.subscribers.load();
        for s in subs.iter() {
            s.outbox.push_control(&frame);
        }
        subs.len()
    }

    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.channels
            .read()
            .get(topic)
            .map_or(0, |c| c.subscribers.load().len())
    }

    /// Topics with at least one local subscriber.
    pub fn active_topics(&self) -> Vec<String> {
        self.channels
            .read()
            .iter()
            .filter(|(_, c)| !c.subscribers.load().is_empty())
            .map(|(t, _)| t.to_string())
            .collect()
    }
}
