//! One connection's subscription to one topic: its filter, the recovery gate that holds
//! live events back while missed ones are replayed from history, and the watermark that
//! keeps delivery exactly-once in offset order afterwards: with a networked backend a
//! live event can arrive after the history read already returned it, and must not be
//! delivered twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eventcast_api::Priority;
use eventcast_api::filter::Filter;
use eventcast_api::pattern::PatternSet;
use parking_lot::Mutex;

use crate::connection::outbox::{Enqueued, Outbox};
use crate::event::SharedEvent;

/// What a subscriber wants of a topic's events.
#[derive(Clone, Debug, Default)]
pub struct SubscriberFilter {
    pub types: PatternSet,
    pub filter: Filter,
    pub min_priority: Option<Priority>,
}

/// A connection subscribed to a topic.
#[derive(Debug)]
pub struct Subscriber {
    pub conn_id: u64,
    pub session: Arc<str>,
    pub user: Option<Arc<str>>,
    pub device: Option<Arc<str>>,
    pub filter: SubscriberFilter,
    pub outbox: Arc<Outbox>,
    recovering: AtomicBool,
    held: Mutex<Vec<Arc<SharedEvent>>>,
    /// Epoch and offset of the newest event queued (live or replayed); older offsets of
    /// the same epoch are dropped. Touched only by the topic's (serialized) fan-out.
    watermark: Mutex<Option<(Arc<str>, u64)>>,
}

impl Subscriber {
    /// A subscriber; with `recovering` set, live events are held until
    /// [`Subscriber::finish_recovery`].
    pub fn new(
        conn_id: u64,
        session: Arc<str>,
        user: Option<Arc<str>>,
        device: Option<Arc<str>>,
        filter: SubscriberFilter,
        outbox: Arc<Outbox>,
        recovering: bool,
    ) -> Self {
        Self {
            conn_id,
            session,
            user,
            device,
            filter,
            outbox,
            recovering: AtomicBool::new(recovering),
            held: Mutex::new(Vec::new()),
            watermark: Mutex::new(None),
        }
    }

    /// Filter, priority, type and targeting checks.
    pub fn wants(&self, ev: &SharedEvent) -> bool {
        let e = &ev.stored.event;
        self.filter.min_priority.is_none_or(|min| e.priority >= min)
            && self.filter.types.matches(&e.event_type)
            && ev.targets_match(self.user.as_deref(), self.device.as_deref(), &self.session)
            && (self.filter.filter.is_empty() || self.filter.filter.matches(&ev.view()))
    }

    /// Queues a live event (or holds it while recovering); with `direct`, an idle
    /// connection may get it written at once.
    pub fn deliver(&self, ev: &Arc<SharedEvent>, direct: bool) -> Enqueued {
        if self.recovering.load(Ordering::Acquire) {
            let mut held = self.held.lock();
            // Re-check under the lock: recovery may have finished meanwhile.
            if self.recovering.load(Ordering::Acquire) {
                held.push(ev.clone());
                return Enqueued::Queued;
            }
        }
        self.enqueue_live(ev, direct)
    }

    /// Queues an event newer than the watermark; drops one already queued.
    fn enqueue_live(&self, ev: &Arc<SharedEvent>, direct: bool) -> Enqueued {
        {
            let mut mark = self.watermark.lock();
            match &mut *mark {
                Some((epoch, offset)) if Arc::ptr_eq(epoch, &ev.epoch) || **epoch == *ev.epoch => {
                    if ev.offset <= *offset {
                        return Enqueued::Queued;
                    }
                    // Same epoch: keep its `Arc` (no reference count traffic per event).
                    *offset = ev.offset;
                }
                _ => *mark = Some((ev.epoch.clone(), ev.offset)),
            }
        }
        if direct {
            self.outbox.enqueue(ev)
        } else {
            self.outbox.queue(ev.clone())
        }
    }

    /// Ends recovery at `position` (epoch and the last offset the client has, from
    /// history or its own `since`; `None` when unknown): queues held live events newer
    /// than it and switches to live delivery, keeping offset order.
    pub fn finish_recovery(&self, position: Option<(&Arc<str>, u64)>) {
        let mut held = self.held.lock();
        *self.watermark.lock() = position.map(|(epoch, offset)| (epoch.clone(), offset));
        for ev in held.drain(..) {
            self.enqueue_live(&ev, true);
        }
        self.recovering.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StoredEvent;
    use crate::metrics::TopicMetrics;
    use eventcast_api::protocol::DeliveredEvent;

    fn ev(epoch: &str, offset: u64) -> Arc<SharedEvent> {
        let stored = StoredEvent {
            event: DeliveredEvent {
                id: format!("e{offset}"),
                event_type: "t".into(),
                time: "now".into(),
                priority: Priority::Normal,
                source: None,
                data: serde_json::Value::Null,
                requires_ack: false,
                correlation_id: None,
                causation_id: None,
            },
            targets: None,
            expires_at_ms: None,
            published_at_ms: 0,
        };
        Arc::new(SharedEvent::new(
            "t".into(),
            offset,
            epoch.into(),
            stored,
            100,
            None,
            TopicMetrics::detached("t"),
        ))
    }

    fn subscriber(outbox: &Arc<Outbox>) -> Subscriber {
        Subscriber::new(
            1,
            "s".into(),
            None,
            None,
            SubscriberFilter::default(),
            outbox.clone(),
            true,
        )
    }

    #[test]
    fn live_events_already_replayed_are_not_delivered_twice() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let sub = subscriber(&outbox);
        sub.deliver(&ev("e1", 5), true);
        sub.deliver(&ev("e1", 6), true);
        let epoch: Arc<str> = "e1".into();
        // History returned up to 6; event 6 arrives live again after recovery ended.
        sub.finish_recovery(Some((&epoch, 6)));
        sub.deliver(&ev("e1", 6), true);
        sub.deliver(&ev("e1", 7), true);
        sub.deliver(&ev("e1", 7), true);
        assert_eq!(outbox.queued(), 1, "only offset 7 is new");
    }

    #[test]
    fn a_new_epoch_starts_over() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let sub = subscriber(&outbox);
        let epoch: Arc<str> = "e1".into();
        sub.finish_recovery(Some((&epoch, 40)));
        sub.deliver(&ev("e2", 1), true);
        sub.deliver(&ev("e2", 2), true);
        assert_eq!(outbox.queued(), 2);
    }
}
