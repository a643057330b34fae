//! Where topics' history, offsets, epochs, idempotency keys and presence live. The
//! backend also owns delivery order: it hands each accepted event to the hub in offset
//! order. `memory` is the embedded single-node default.

pub mod memory;

use std::sync::Arc;

use serde::Serialize;

use crate::event::{SharedEvent, StoredEvent};
use crate::live_config::LiveTopic;

pub use memory::MemoryBackend;

/// Backend failures. The memory backend cannot fail today; the variant exists for the
/// networked backends so callers already map it to `503` with `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend unavailable: {0}")]
    Unavailable(String),
}

/// Result of appending an event.
#[derive(Clone, Debug)]
pub struct Appended {
    pub offset: u64,
    pub epoch: Arc<str>,
    /// The idempotency key was seen before; offset/epoch are the original's.
    pub duplicate: bool,
    /// The event as appended (`None` for a duplicate), for server-side subscriptions.
    pub event: Option<Arc<SharedEvent>>,
}

/// A slice of history.
#[derive(Debug)]
pub struct HistoryRead {
    pub epoch: Arc<str>,
    /// Oldest retained offset (`last + 1` when nothing is retained).
    pub first: u64,
    /// Latest offset assigned (0 before the first event).
    pub last: u64,
    /// Events with offset > the requested one, oldest first, at most the limit.
    pub events: Vec<Arc<SharedEvent>>,
}

/// One client present on a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    pub session: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Unix ms.
    pub connected_at: u64,
}

/// The configured backend.
#[derive(Clone, Debug)]
pub enum Backend {
    Memory(Arc<MemoryBackend>),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
        }
    }

    pub fn is_ready(&self) -> bool {
        match self {
            Backend::Memory(_) => true,
        }
    }

    /// Appends (assigning the next offset) unless `stored.event.id` was already accepted
    /// within retention, then fans out to local subscribers.
    pub async fn append(&self, topic: &LiveTopic, stored: StoredEvent, dedup: bool) -> Result<Appended, BackendError> {
        match self {
            Backend::Memory(m) => Ok(m.append(topic, stored, dedup)),
        }
    }

    /// Events after `after`, at most `limit`.
    pub async fn read(&self, topic: &LiveTopic, after: u64, limit: usize) -> Result<HistoryRead, BackendError> {
        match self {
            Backend::Memory(m) => Ok(m.read(topic, after, limit)),
        }
    }

    /// Records a presence entry; true when it is new.
    pub async fn presence_join(&self, topic: &LiveTopic, entry: PresenceEntry) -> Result<bool, BackendError> {
        match self {
            Backend::Memory(m) => Ok(m.presence_join(&topic.name, entry)),
        }
    }

    /// Removes a session's presence; true when it was present.
    pub async fn presence_leave(&self, topic: &str, session: &str) -> Result<bool, BackendError> {
        match self {
            Backend::Memory(m) => Ok(m.presence_leave(topic, session)),
        }
    }

    pub async fn presence_list(&self, topic: &str) -> Result<Vec<PresenceEntry>, BackendError> {
        match self {
            Backend::Memory(m) => Ok(m.presence_list(topic)),
        }
    }

    /// Forgets topics no longer configured.
    pub fn retain_topics(&self, keep: &dyn Fn(&str) -> bool) {
        match self {
            Backend::Memory(m) => m.retain_topics(keep),
        }
    }
}
