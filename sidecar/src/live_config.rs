//! The running config: a compiled config plus what the sidecar derives from it once per
//! load (schema validators, JWT keys, per-topic metric handles and ack settings), so
//! requests never compile anything.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use eventcast_api::CompiledConfig;
use eventcast_api::config::TopicConfig;
use eventcast_api::crd::topic::Guarantee;
use tokio::sync::watch;

use crate::event::{AckPolicy, EncodedEvent, SharedEvent};
use crate::metrics::{Metrics, TopicMetrics};
use crate::policy::Authenticator;
use crate::policy::schema::SchemaValidator;

/// Why a compiled config could not be made live.
#[derive(Debug, thiserror::Error)]
pub enum LiveConfigError {
    #[error("topic {topic:?}: schema: {message}")]
    Schema { topic: String, message: String },
    #[error("auth: {0}")]
    Auth(String),
}

/// One topic, ready to serve.
#[derive(Debug)]
pub struct LiveTopic {
    pub name: Arc<str>,
    pub config: TopicConfig,
    pub schema: Option<SchemaValidator>,
    pub metrics: Arc<TopicMetrics>,
    pub ack: Option<Arc<AckPolicy>>,
    /// A backend's state for this topic, cached here so that a publish finds it without
    /// a lookup by name (whose cold hash-table and key lines showed on the many-topics
    /// profile). Weak: the backend owns the state and may drop it.
    pub backend_state: OnceLock<Weak<dyn Any + Send + Sync>>,
}

impl LiveTopic {
    pub fn new(config: TopicConfig, metrics: &Metrics) -> Result<Self, LiveConfigError> {
        let schema = config
            .schema
            .as_ref()
            .map(SchemaValidator::compile)
            .transpose()
            .map_err(|message| LiveConfigError::Schema {
                topic: config.name.clone(),
                message,
            })?;
        let ack = (config.delivery.guarantee == Guarantee::AtLeastOnce).then(|| {
            Arc::new(AckPolicy {
                timeout: Duration::from_millis(config.delivery.ack_timeout_ms),
                max_retries: config.delivery.max_retries,
                dead_letter_topic: config.delivery.dead_letter_topic.clone(),
            })
        });
        Ok(Self {
            name: Arc::from(config.name.as_str()),
            metrics: metrics.topic(&config.name),
            schema,
            ack,
            config,
            backend_state: OnceLock::new(),
        })
    }

    /// Builds the shared, serialized form of a stored event at its position.
    pub fn shared_event(&self, offset: u64, epoch: Arc<str>, event: impl Into<EncodedEvent>) -> SharedEvent {
        let event = event.into();
        let class = event.stored.event.priority.index();
        let ack = if event.stored.event.requires_ack {
            self.ack.clone()
        } else {
            None
        };
        SharedEvent::new(
            self.name.clone(),
            offset,
            epoch,
            event,
            self.config.queues[class].queue_size,
            ack,
            self.metrics.clone(),
        )
    }
}

/// A config made live.
#[derive(Debug)]
pub struct LiveConfig {
    pub version: String,
    pub compiled: CompiledConfig,
    pub topics: HashMap<String, Arc<LiveTopic>, foldhash::fast::RandomState>,
    pub auth: Authenticator,
    /// Largest client frame accepted (largest topic event limit plus envelope room).
    pub max_frame_bytes: usize,
}

impl LiveConfig {
    pub fn build(compiled: CompiledConfig, metrics: &Metrics) -> Result<Self, LiveConfigError> {
        let mut topics = HashMap::default();
        let mut max_event = 0usize;
        for t in compiled.topics.values() {
            max_event = max_event.max(t.max_event_bytes as usize);
            topics.insert(t.name.clone(), Arc::new(LiveTopic::new(t.clone(), metrics)?));
        }
        let auth = Authenticator::new(&compiled.auth).map_err(|e| LiveConfigError::Auth(e.to_string()))?;
        if compiled.connection.compression {
            // permessage-deflate is not available in the WebSocket stack this sidecar uses.
            tracing::warn!("a BroadcastPolicy enables compression; this sidecar sends frames uncompressed");
        }
        Ok(Self {
            version: compiled.version(),
            max_frame_bytes: max_event.max(4096) + 16 * 1024,
            compiled,
            topics,
            auth,
        })
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<LiveTopic>> {
        self.topics.get(name)
    }
}

/// Holds the live config: lock-free reads, and a watch so connections learn of changes.
#[derive(Debug)]
pub struct ConfigStore {
    current: ArcSwap<LiveConfig>,
    changed: watch::Sender<u64>,
}

impl ConfigStore {
    pub fn new(initial: LiveConfig) -> Self {
        Self {
            current: ArcSwap::from_pointee(initial),
            changed: watch::Sender::new(0),
        }
    }

    pub fn get(&self) -> Arc<LiveConfig> {
        self.current.load_full()
    }

    pub fn set(&self, next: LiveConfig) {
        self.current.store(Arc::new(next));
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
