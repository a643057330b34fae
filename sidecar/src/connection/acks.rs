//! Acknowledgement tracking for `atLeastOnce` events on one connection: what was sent
//! and not yet acked, when to send it again, and when to give up and dead-letter it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::event::SharedEvent;

#[derive(Debug)]
struct Pending {
    ev: Arc<SharedEvent>,
    /// Sends so far (1 after the first delivery).
    sends: u32,
    deadline: Instant,
}

/// What to do with an unacked event whose deadline passed.
#[derive(Debug)]
pub enum Due {
    Redeliver(Arc<SharedEvent>),
    /// Retries exhausted; `sends` deliveries were made.
    DeadLetter {
        ev: Arc<SharedEvent>,
        sends: u32,
    },
}

/// Pending acks of one connection.
#[derive(Debug, Default)]
pub struct AckTracker {
    pending: HashMap<(Arc<str>, u64), Pending>,
    // Lazy deletion: entries whose pending record is gone or has a later deadline are skipped.
    deadlines: BinaryHeap<Reverse<(Instant, Arc<str>, u64)>>,
}

impl AckTracker {
    /// Records that `ev` was written (first send or a redelivery).
    pub fn on_sent(&mut self, ev: &Arc<SharedEvent>, now: Instant) {
        let Some(policy) = &ev.ack else { return };
        let deadline = now + policy.timeout;
        let key = (ev.topic.clone(), ev.offset);
        let entry = self.pending.entry(key).or_insert_with(|| Pending {
            ev: ev.clone(),
            sends: 0,
            deadline,
        });
        entry.sends += 1;
        entry.deadline = deadline;
        self.deadlines.push(Reverse((deadline, ev.topic.clone(), ev.offset)));
    }

    /// Removes acked offsets; returns how many were pending.
    pub fn ack(&mut self, topic: &str, offsets: &[u64]) -> usize {
        let topic: Arc<str> = Arc::from(topic);
        offsets
            .iter()
            .filter(|o| self.pending.remove(&(topic.clone(), **o)).is_some())
            .count()
    }

    /// Forgets everything of a topic (after unsubscribe).
    pub fn forget_topic(&mut self, topic: &str) {
        self.pending.retain(|(t, _), _| &**t != topic);
    }

    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, topic, offset))) = self.deadlines.peek() {
            match self.pending.get(&(topic.clone(), *offset)) {
                Some(p) if p.deadline == *at => return Some(*at),
                _ => {
                    self.deadlines.pop();
                }
            }
        }
        None
    }

    /// Entries whose deadline is at or before `now`. Redeliveries stay pending until
    /// `on_sent` is called for them again; dead-lettered ones are removed.
    pub fn take_due(&mut self, now: Instant) -> Vec<Due> {
        let mut due = Vec::new();
        while let Some(Reverse((at, topic, offset))) = self.deadlines.peek().cloned() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let key = (topic, offset);
            let Some(p) = self.pending.get(&key) else { continue };
            if p.deadline != at {
                continue;
            }
            let max_retries = p.ev.ack.as_ref().map_or(0, |a| a.max_retries);
            if p.sends > max_retries {
                if let Some(p) = self.pending.remove(&key) {
                    due.push(Due::DeadLetter {
                        ev: p.ev,
                        sends: p.sends,
                    });
                }
            } else {
                due.push(Due::Redeliver(p.ev.clone()));
            }
        }
        due
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AckPolicy, StoredEvent};
    use crate::metrics::TopicMetrics;
    use eventcast_api::Priority;
    use eventcast_api::protocol::DeliveredEvent;
    use std::time::Duration;

    fn ev(offset: u64, max_retries: u32) -> Arc<SharedEvent> {
        let stored = StoredEvent {
            event: DeliveredEvent {
                id: format!("e{offset}"),
                event_type: "t".into(),
                time: "now".into(),
                priority: Priority::Critical,
                source: None,
                data: serde_json::Value::Null,
                requires_ack: true,
                correlation_id: None,
                causation_id: None,
            },
            targets: None,
            expires_at_ms: None,
            published_at_ms: 0,
        };
        let ack = Some(Arc::new(AckPolicy {
            timeout: Duration::from_millis(100),
            max_retries,
            dead_letter_topic: Some("dlq".into()),
        }));
        Arc::new(SharedEvent::new(
            "orders".into(),
            offset,
            "e".into(),
            stored,
            10,
            ack,
            TopicMetrics::detached("o"),
        ))
    }

    #[test]
    fn acked_events_are_not_redelivered() {
        let mut t = AckTracker::default();
        let now = Instant::now();
        t.on_sent(&ev(1, 3), now);
        t.on_sent(&ev(2, 3), now);
        assert_eq!(t.ack("orders", &[1, 7]), 1);
        let due = t.take_due(now + Duration::from_millis(150));
        assert!(matches!(due.as_slice(), [Due::Redeliver(e)] if e.offset == 2));
        assert_eq!(t.ack("orders", &[2]), 1);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn retries_then_dead_letter() {
        let mut t = AckTracker::default();
        let e = ev(5, 2);
        let mut now = Instant::now();
        t.on_sent(&e, now);
        for _ in 0..2 {
            now += Duration::from_millis(100);
            assert_eq!(t.next_deadline(), Some(now));
            let due = t.take_due(now);
            assert!(matches!(due.as_slice(), [Due::Redeliver(_)]));
            t.on_sent(&e, now);
        }
        now += Duration::from_millis(100);
        let due = t.take_due(now);
        assert!(matches!(due.as_slice(), [Due::DeadLetter { sends: 3, .. }]));
        assert!(t.is_empty());
    }

    #[test]
    fn events_without_ack_policy_are_ignored() {
        let mut t = AckTracker::default();
        let mut e = ev(1, 1).stored.clone();
        e.event.requires_ack = false;
        let plain = Arc::new(SharedEvent::new(
            "x".into(),
            1,
            "e".into(),
            e,
            1,
            None,
            TopicMetrics::detached("x"),
        ));
        t.on_sent(&plain, Instant::now());
        assert!(t.is_empty());
    }
}
