//! WebSocket connections: the registry of open ones, and (in submodules) each
//! connection's session loop, writer, subscriptions, outbound queues and ack tracking.

pub mod acks;
mod halves;
pub mod outbox;
pub mod session;
pub mod socket;
pub mod stream;
mod subscribe;
mod writer;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use self::outbox::Outbox;

/// What the rest of the sidecar may know about an open connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub id: u64,
    pub session: Arc<str>,
    pub ip: IpAddr,
    pub connected_at_ms: u64,
    pub outbox: Arc<Outbox>,
    pub subscriptions: AtomicUsize,
}

/// Open connections.
#[derive(Debug, Default)]
pub struct Connections {
    /// Connections whose writers have frames waiting (see `socket`).
    pub backlog: Arc<socket::Backlog>,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnInfo>>>,
    count: AtomicUsize,
}

impl Connections {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Reserves a slot if fewer than `max` are open.
    pub fn try_reserve(&self, max: usize) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    pub fn release(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn insert(&self, info: Arc<ConnInfo>) {
        self.open.lock().insert(info.id, info);
    }

    pub fn remove(&self, id: u64) {
        self.open.lock().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events waiting in all outboxes, and subscriptions, for stats.
    pub fn totals(&self) -> (usize, usize) {
        let open: Vec<Arc<ConnInfo>> = self.open.lock().values().cloned().collect();
        open.iter().fold((0, 0), |(q, s), c| {
            (q + c.outbox.queued(), s + c.subscriptions.load(Ordering::Relaxed))
        })
    }
}
