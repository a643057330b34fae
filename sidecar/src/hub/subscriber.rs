//! One connection's subscription to one topic: its filter, and the recovery gate that
//! holds live events back while missed ones are replayed from history.

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

    /// Queues a live event (or holds it while recovering).
    pub fn deliver(&self, ev: &Arc<SharedEvent>) -> Enqueued {
        if self.recovering.load(Ordering::Acquire) {
            let mut held = self.held.lock();
            // Re-check under the lock: recovery may have finished meanwhile.
            if self.recovering.load(Ordering::Acquire) {
                held.push(ev.clone());
                return Enqueued::Queued;
            }
        }
        self.outbox.enqueue(ev.clone())
    }

    /// Ends recovery: queues held live events newer than `replayed_up_to` (older ones
    /// were replayed from history) and switches to live delivery, keeping offset order.
    pub fn finish_recovery(&self, replayed_up_to: u64) {
        let mut held = self.held.lock();
        for ev in held.drain(..) {
            if ev.offset > replayed_up_to {
                self.outbox.enqueue(ev);
            }
        }
        self.recovering.store(false, Ordering::Release);
    }
}
