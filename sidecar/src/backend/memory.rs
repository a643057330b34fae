//! The embedded in-memory backend: per-topic logs with offsets, an epoch chosen when the
//! log is created (so a restarted sidecar never claims to continue an old stream),
//! retention by count and age, idempotency keys, and presence.
//!
//! Appending and fan-out happen under the topic's lock, which is what makes every
//! connection see a topic's events in offset order. The lock is a plain mutex held for
//! a bounded, non-async stretch (append + fan-out), never across an await.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use rand::Rng;

use super::{Appended, HistoryRead, PresenceEntry};
use crate::event::{EncodedEvent, SharedEvent, unix_ms};
use crate::hub::{Channel, Hub};
use crate::live_config::LiveTopic;

/// Idempotency keys kept at most, per topic, even when retention allows more.
const MAX_IDEMPOTENCY_KEYS: usize = 100_000;

/// A fresh random epoch name.
pub(crate) fn new_epoch() -> Arc<str> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let s: String = (0..10)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    Arc::from(s)
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug)]
struct TopicLog {
    epoch: Arc<str>,
    /// Next offset to assign; offsets start at 1.
    next: u64,
    /// Retained events with their publish time beside them, so that trimming (on every
    /// append) reads the time without touching the oldest event's cold memory.
    events: VecDeque<(u64, Arc<SharedEvent>)>,
    /// The topic's local subscribers, held so that fan-out skips the hub's lookup.
    channel: Arc<Channel>,
    /// Dropped from the backend (purge, topic no longer configured): a topic that
    /// cached this log must look its log up again.
    purged: bool,
    ids: HashMap<String, u64>,
    id_order: VecDeque<(u64, String)>,
}

impl TopicLog {
    fn new(channel: Arc<Channel>) -> Self {
        Self {
            epoch: new_epoch(),
            next: 1,
            events: VecDeque::new(),
            channel,
            purged: false,
            ids: HashMap::new(),
            id_order: VecDeque::new(),
        }
    }

    fn trim(&mut self, topic: &LiveTopic, now_ms: u64) {
        let r = topic.config.retention;
        let cutoff = now_ms.saturating_sub(r.max_age_ms);
        while self
            .events
            .front()
            .is_some_and(|(at, _)| *at < cutoff || self.events.len() > r.max_events as usize)
        {
            self.events.pop_front();
        }
        let max_ids = (r.max_events as usize).clamp(1000, MAX_IDEMPOTENCY_KEYS);
        while self
            .id_order
            .front()
            .is_some_and(|(at, _)| *at < cutoff || self.id_order.len() > max_ids)
        {
            if let Some((_, id)) = self.id_order.pop_front() {
                self.ids.remove(&id);
            }
        }
    }

    fn first(&self) -> u64 {
        self.events.front().map_or(self.next, |(_, e)| e.offset)
    }
}

/// In-memory backend state.
#[derive(Debug)]
pub struct MemoryBackend {
    hub: Arc<Hub>,
    logs: RwLock<FastMap<String, Arc<Mutex<TopicLog>>>>,
    presence: Mutex<HashMap<String, HashMap<String, PresenceEntry>>>,
}

impl MemoryBackend {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            logs: RwLock::new(FastMap::default()),
            presence: Mutex::new(HashMap::new()),
        }
    }

    /// The topic's log, from the topic's cache when it holds one (see
    /// `LiveTopic::backend_state`).
    fn topic_log(&self, topic: &LiveTopic) -> Arc<Mutex<TopicLog>> {
        if let Some(log) = topic
            .backend_state
            .get()
            .and_then(Weak::upgrade)
            .and_then(|state| state.downcast::<Mutex<TopicLog>>().ok())
        {
            return log;
        }
        let log = self.log(&topic.name);
        let state: Arc<dyn Any + Send + Sync> = log.clone();
        // Set once per live topic; a purged log's entry stays dead and misses from then on.
        let _ = topic.backend_state.set(Arc::downgrade(&state));
        log
    }

    fn log(&self, topic: &str) -> Arc<Mutex<TopicLog>> {
        if let Some(l) = self.logs.read().get(topic) {
            return l.clone();
        }
        self.logs
            .write()
            .entry(topic.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(TopicLog::new(self.hub.channel(topic)))))
            .clone()
    }

    pub fn append(&self, topic: &LiveTopic, event: EncodedEvent, dedup: bool) -> Appended {
        let log = self.topic_log(topic);
        let mut l = log.lock();
        if l.purged {
            // Purged after the topic cached it: append to the topic's current log.
            drop(l);
            let log = self.log(&topic.name);
            let mut l = log.lock();
            return Self::append_locked(&mut l, topic, event, dedup);
        }
        Self::append_locked(&mut l, topic, event, dedup)
    }

    fn append_locked(l: &mut TopicLog, topic: &LiveTopic, event: EncodedEvent, dedup: bool) -> Appended {
        // Accepted by the pipeline microseconds ago: its time is "now" for trimming.
        let now = event.stored.published_at_ms;
        l.trim(topic, now);
        if dedup && let Some(&offset) = l.ids.get(&event.stored.event.id) {
            return Appended {
                offset,
                epoch: l.epoch.clone(),
                duplicate: true,
                event: None,
            };
        }
        let offset = l.next;
        l.next += 1;
        if dedup {
            l.ids.insert(event.stored.event.id.clone(), offset);
            l.id_order
                .push_back((event.stored.published_at_ms, event.stored.event.id.clone()));
        }
        let published_at = event.stored.published_at_ms;
        let shared = Arc::new(topic.shared_event(offset, l.epoch.clone(), event));
        if topic.config.retention.max_events > 0 {
            l.events.push_back((published_at, shared.clone()));
            l.trim(topic, now);
        }
        Hub::fanout_to(&l.channel, &shared);
        Appended {
            offset,
            epoch: l.epoch.clone(),
            duplicate: false,
            event: Some(shared),
        }
    }

    pub fn read(&self, topic: &LiveTopic, after: u64, limit: usize) -> HistoryRead {
        let log = self.log(&topic.name);
        let mut l = log.lock();
        l.trim(topic, unix_ms());
        let first = l.first();
        let skip = after.saturating_add(1).saturating_sub(first);
        let events = l
            .events
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect();
        HistoryRead {
            epoch: l.epoch.clone(),
            first,
            last: l.next - 1,
            events,
        }
    }

    pub fn presence_join(&self, topic: &str, entry: PresenceEntry) -> bool {
        let mut p = self.presence.lock();
        let entries = p.entry(topic.to_owned()).or_default();
        if entries.contains_key(&entry.session) {
            return false;
        }
        entries.insert(entry.session.clone(), entry);
        true
    }

    pub fn presence_leave(&self, topic: &str, session: &str) -> bool {
        let mut p = self.presence.lock();
        let Some(entries) = p.get_mut(topic) else { return false };
        let removed = entries.remove(session).is_some();
        if entries.is_empty() {
            p.remove(topic);
        }
        removed
    }

    pub fn presence_list(&self, topic: &str) -> Vec<PresenceEntry> {
        let mut list: Vec<PresenceEntry> = self
            .presence
            .lock()
            .get(topic)
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default();
        list.sort_by(|a, b| (a.connected_at, &a.session).cmp(&(b.connected_at, &b.session)));
        list
    }

    /// Forgets everything stored for `topic` (history, offsets, idempotency keys,
    /// presence). Its next append creates a new log under a new epoch, so a client
    /// recovering from an old position gets `recovered: false`, never other data.
    pub fn purge_topic(&self, topic: &str) {
        if let Some(log) = self.logs.write().remove(topic) {
            log.lock().purged = true;
        }
        self.presence.lock().remove(topic);
    }

    pub fn retain_topics(&self, keep: &dyn Fn(&str) -> bool) {
        self.logs.write().retain(|t, log| {
            let keep = keep(t);
            if !keep {
                log.lock().purged = true;
            }
            keep
        });
        self.presence.lock().retain(|t, _| keep(t));
    }
}
