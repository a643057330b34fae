//! Shared state of a running sidecar, handed to every HTTP handler and connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::Backend;
use crate::connection::Connections;
use crate::hub::Hub;
use crate::live_config::ConfigStore;
use crate::metrics::Metrics;
use crate::policy::rate_limit::{PublishLimiter, RateLimits};
use crate::publish::Publisher;
use crate::sinks::SinkRunner;

/// Everything request handlers and sessions share.
#[derive(Debug)]
pub struct SidecarState {
    pub namespace: String,
    pub pod_name: String,
    pub config: Arc<ConfigStore>,
    pub backend: Backend,
    pub hub: Arc<Hub>,
    pub publisher: Arc<Publisher>,
    pub limits: Arc<RateLimits>,
    pub metrics: Arc<Metrics>,
    pub connections: Connections,
    /// Cancelled on SIGTERM: sessions drain and disconnect.
    pub shutdown: CancellationToken,
    /// Every connection task, awaited on shutdown.
    pub tracker: TaskTracker,
    ready: AtomicBool,
    pub started: Instant,
}

impl SidecarState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        namespace: String,
        pod_name: String,
        config: Arc<ConfigStore>,
        backend: Backend,
        hub: Arc<Hub>,
        limits: Arc<RateLimits>,
        metrics: Arc<Metrics>,
    ) -> Self {
        // Publish limits hold across sidecars when the backend is shared.
        let publish_limits = match &backend {
            Backend::Memory(_) => PublishLimiter::Local(limits.clone()),
            Backend::Redis(redis) => PublishLimiter::Shared(redis.buckets()),
        };
        // The sinks publish routed events and dead letters through the publisher that owns them.
        let publisher = Arc::new_cyclic(|publisher| Publisher {
            config: config.clone(),
            backend: backend.clone(),
            limits: publish_limits,
            metrics: metrics.clone(),
            sinks: Arc::new(SinkRunner::new(publisher.clone(), config.clone(), metrics.clone())),
        });
        Self {
            namespace,
            pod_name,
            config,
            backend,
            hub,
            publisher,
            limits,
            metrics,
            connections: Connections::default(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            ready: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    /// Ready: config loaded, backend reachable, not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.backend.is_ready() && !self.shutdown.is_cancelled()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
