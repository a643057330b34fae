//! Where topics' history, offsets, epochs, idempotency keys and presence live. The
//! backend also owns delivery order: it hands each accepted event to the hub in offset
//! order. `memory` is the embedded single-node default; `redis` shares everything
//! between the sidecars of a deployment through Redis Cluster.

pub mod memory;
pub mod redis;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::event::{EncodedEvent, SharedEvent};
use crate::live_config::LiveTopic;

pub use memory::MemoryBackend;
pub use redis::RedisBackend;

/// Backend failures; callers answer both with `503` and `Retry-After`. The memory
/// backend cannot fail.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The store does not answer (outage, failover in progress, timeout).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this sidecar cannot use.
    #[error("backend error: {0}")]
    Protocol(String),
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    pub session: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Unix ms.
    pub connected_at: u64,
}

/// The configured backend.
#[derive(Clone, Debug)]
pub enum Backend {
    Memory(Arc<MemoryBackend>),
    Redis(Arc<RedisBackend>),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    pub fn is_ready(&self) -> bool {
        match self {
            Backend::Memory(_) => true,
            Backend::Redis(r) => r.is_ready(),
        }
    }

    /// Appends (assigning the next offset) unless the event's id was already accepted
    /// within retention. The memory backend fans out to local subscribers before it
    /// returns; the Redis backend's listener delivers when the event comes back from
    /// the topic's channel.
    pub async fn append(&self, topic: &LiveTopic, event: EncodedEvent, dedup: bool) -> Result<Appended, BackendError> {
        match self {
            Backend::Memory(m) => Ok(m.append(topic, event, dedup)),
            // Boxed: the Redis call's future is kilobytes, and inline it would make every
            // publish future that large, moved (copied) as such on the memory backend too.
            Backend::Redis(r) => Box::pin(r.append(topic, event, dedup)).await,
        }
    }

    /// Appends several events to one topic, in order, as [`Backend::append`] would one
    /// by one; on Redis in one round trip (one script call), all or none.
    pub async fn append_many(
        &self,
        topic: &LiveTopic,
        events: Vec<(EncodedEvent, bool)>,
    ) -> Result<Vec<Appended>, BackendError> {
        match self {
            Backend::Memory(m) => Ok(events
                .into_iter()
                .map(|(event, dedup)| m.append(topic, event, dedup))
                .collect()),
            Backend::Redis(r) => Box::pin(r.append_many(topic, events)).await,
        }
    }

    /// Events after `after`, at most `limit`.
    pub async fn read(&self, topic: &LiveTopic, after: u64, limit: usize) -> Result<HistoryRead, BackendError> {
        match self {
            Backend::Memory(m) => Ok(m.read(topic, after, limit)),
            Backend::Redis(r) => r.read(topic, after, limit).await,
        }
    }

    /// The hub got a topic's first local subscriber: start receiving its events (before
    /// the subscriber reads history, so nothing in between is missed). The memory
    /// backend fans out directly and needs nothing.
    pub async fn listen(&self, topic: &LiveTopic) {
        match self {
            Backend::Memory(_) => {}
            Backend::Redis(r) => r.listen(topic).await,
        }
    }

    /// The hub's last local subscriber of a topic left.
    pub fn unlisten(&self, topic: &str) {
        match self {
            Backend::Memory(_) => {}
            Backend::Redis(r) => r.unlisten(topic),
        }
    }

    /// Records a presence entry; true when it is new.
    pub async fn presence_join(&self, topic: &LiveTopic, entry: PresenceEntry) -> Result<bool, BackendError> {
        match self {
            Backend::Memory(m) => Ok(m.presence_join(&topic.name, entry)),
            Backend::Redis(r) => r.presence_join(&topic.name, &entry).await,
        }
    }

    /// Removes a session's presence; true when it was present.
    pub async fn presence_leave(&self, topic: &str, session: &str) -> Result<bool, BackendError> {
        match self {
            Backend::Memory(m) => Ok(m.presence_leave(topic, session)),
            Backend::Redis(r) => r.presence_leave(topic, session).await,
        }
    }

    pub async fn presence_list(&self, topic: &str) -> Result<Vec<PresenceEntry>, BackendError> {
        match self {
            Backend::Memory(m) => Ok(m.presence_list(topic)),
            Backend::Redis(r) => r.presence_list(topic).await,
        }
    }

    /// Deletes everything stored for `topic` (history, offsets and epoch, idempotency
    /// keys, presence), for a Topic deleted with `deletionPolicy: Delete`. The next
    /// append starts a new epoch.
    pub async fn purge_topic(&self, topic: &str) -> Result<(), BackendError> {
        match self {
            Backend::Memory(m) => {
                m.purge_topic(topic);
                Ok(())
            }
            Backend::Redis(r) => r.purge_topic(topic).await,
        }
    }

    /// Forgets topics no longer configured.
    pub fn retain_topics(&self, keep: &dyn Fn(&str) -> bool) {
        match self {
            Backend::Memory(m) => m.retain_topics(keep),
            Backend::Redis(r) => r.retain_topics(keep),
        }
    }

    /// Starts the backend's background tasks (none for memory), owned by `tasks` and
    /// stopped by `shutdown`.
    pub fn spawn_tasks(&self, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        match self {
            Backend::Memory(_) => {}
            Backend::Redis(r) => r.spawn_tasks(tasks, shutdown),
        }
    }

    /// Releases connections after the sidecar stopped serving.
    pub async fn close(&self) {
        match self {
            Backend::Memory(_) => {}
            Backend::Redis(r) => r.close().await,
        }
    }
}
