//! The Redis Cluster backend: topics' history, offsets, epochs, idempotency keys and
//! presence live in Redis, so every sidecar of a deployment shares them, and events fan
//! out between sidecars over sharded pub/sub.
//!
//! - [`keys`]: one hash tag per topic, so a topic is one slot.
//! - [`scripts`]: the Lua scripts; `append.lua` does dedup + offset + history + trim +
//!   publish atomically, `read.lua` reads position and events atomically.
//! - [`store`]: running the scripts and checking their replies.
//! - [`listener`]: SSUBSCRIBE per topic with local subscribers, in-order delivery to the
//!   hub with gap filling from history.
//! - [`presence`]: shared presence with per-entry expiry.
//! - [`rate_limit`]: publish rate limits shared by all sidecars (GCRA script).
//! - [`health`]: outage detection, readiness, error metrics.
//! - [`supervisor`]: owns the clients' connection tasks and restarts one that ends or
//!   sticks (fred 10.1 ends it after a `-ASK` redirect, e.g. during a reshard).
//! - [`purge`]: deleting a deleted topic's keys (operator `purge`).
//!
//! `append` returns once the script ran; local delivery happens when the published
//! payload comes back through the listener, on the origin sidecar as on every other, so
//! all sidecars deliver a topic in the same offset order.

mod health;
mod keys;
mod listener;
mod payload;
mod presence;
mod purge;
mod rate_limit;
mod scripts;
mod store;
mod supervisor;
mod tracker;

use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::ClientLike;
use fred::prelude::{
    Builder, Client, Config, ConnectionConfig, PerformanceConfig, ReconnectPolicy, ServerConfig, TcpConfig,
};
use fred::types::ConnectHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::health::Health;
use self::keys::KeySpace;
use self::listener::Listener;
use self::presence::Presence;
use self::rate_limit::RedisBuckets;
use self::scripts::Scripts;
use self::store::{ReplicaAck, Store};
use self::supervisor::{Role, Supervisor};
use super::{Appended, BackendError, HistoryRead, PresenceEntry};
use eventcast_api::Priority;
use eventcast_api::crd::topic::Guarantee;

use crate::event::EncodedEvent;
use crate::hub::Hub;
use crate::live_config::{ConfigStore, LiveTopic};
use crate::metrics::Metrics;
use crate::policy::rate_limit::SharedBuckets;

/// Messages buffered between the subscriber connection and the listener task; when
/// the listener falls further behind, messages are dropped and filled from history.
const MESSAGE_BUFFER: usize = 16 * 1024;
/// How long start-up waits for the first connection before serving unready.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Clients (connections per node) for appends that wait for a replica.
const DURABLE_CLIENTS: usize = 4;

/// Where Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisEndpoint {
    /// Seed nodes of a Redis Cluster (the rest are discovered).
    Cluster(Vec<(String, u16)>),
    /// One Redis node (development), as a `redis://` URL.
    Single(String),
}

/// Settings of the Redis backend.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub endpoint: RedisEndpoint,
    /// Namespace whose topics this sidecar serves: part of every key.
    pub namespace: String,
    /// Longest one Redis command may take before the operation fails (503).
    pub timeout: Duration,
    /// How often the listener compares topics with their heads.
    pub check_every: Duration,
    /// Presence entries expire this long after their sidecar last refreshed them.
    pub presence_ttl: Duration,
    /// How long an append of a `critical` event or to an `atLeastOnce` topic waits
    /// for a replica to confirm it (`WAIT 1 <ms>`).
    pub replica_wait: Duration,
}

/// Why the backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis node {0:?} is not host:port")]
    BadNode(String),
    #[error("no redis nodes given")]
    NoNodes,
    #[error("redis configuration: {0}")]
    Config(#[source] fred::error::Error),
}

/// Parses `host:port` seed nodes (IPv6 as `[::1]:7000`).
pub fn parse_nodes<S: AsRef<str>>(nodes: &[S]) -> Result<Vec<(String, u16)>, RedisError> {
    let nodes: Vec<(String, u16)> = nodes
        .iter()
        .map(|n| n.as_ref().trim())
        .filter(|n| !n.is_empty())
        .map(|n| {
            let bad = || RedisError::BadNode(n.to_owned());
            let (host, port) = n.rsplit_once(':').ok_or_else(bad)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port: u16 = port.parse().map_err(|_| bad())?;
            if host.is_empty() || port == 0 {
                return Err(bad());
            }
            Ok((host.to_owned(), port))
        })
        .collect::<Result<_, _>>()?;
    if nodes.is_empty() {
        return Err(RedisError::NoNodes);
    }
    Ok(nodes)
}

/// The Redis backend of one sidecar.
#[derive(Debug)]
pub struct RedisBackend {
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    listener: Arc<Listener>,
    presence: Arc<Presence>,
    /// Owner of the fred clients' connection tasks (restarted when they end; awaited on
    /// close).
    supervisor: Arc<Supervisor>,
}

impl RedisBackend {
    /// Creates the clients and starts connecting. Start-up waits a bounded time for the
    /// first connection; after that the sidecar serves unready until Redis answers.
    pub async fn connect(
        settings: &RedisSettings,
        hub: Arc<Hub>,
        config: Arc<ConfigStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RedisError> {
        let server_config = match &settings.endpoint {
            RedisEndpoint::Cluster(nodes) => Config {
                server: ServerConfig::new_clustered(nodes.clone()),
                ..Config::default()
            },
            RedisEndpoint::Single(url) => Config::from_url(url).map_err(RedisError::Config)?,
        };
        let mut builder = Builder::from_config(Config {
            // Keep retrying the first connection too: the sidecar serves unready meanwhile.
            fail_fast: false,
            ..server_config
        });
        builder
            .set_performance_config(PerformanceConfig {
                default_command_timeout: settings.timeout,
                broadcast_channel_capacity: MESSAGE_BUFFER,
                ..PerformanceConfig::default()
            })
            .set_connection_config(ConnectionConfig {
                connection_timeout: settings.timeout,
                internal_command_timeout: settings.timeout,
                tcp: TcpConfig {
                    nodelay: Some(true),
                    ..TcpConfig::default()
                },
                // Names connections in CLIENT LIST (the fred client id) for operators and tests.
                auto_client_setname: true,
                ..ConnectionConfig::default()
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 1000, 2));
        let client: Client = builder.build().map_err(RedisError::Config)?;
        let durable = builder.build_pool(DURABLE_CLIENTS).map_err(RedisError::Config)?;
        let subscriber = builder.build_subscriber_client().map_err(RedisError::Config)?;
        let supervisor = Arc::new(Supervisor::new(metrics.clone()));
        supervisor.start(Role::Commands, &client);
        supervisor.start(Role::Subscriber, &subscriber);
        for c in durable.clients() {
            supervisor.start(Role::Durable, c);
        }
        let waited = tokio::time::timeout(CONNECT_WAIT, async {
            client.wait_for_connect().await?;
            durable.wait_for_connect().await?;
            subscriber.wait_for_connect().await
        })
        .await;
        match waited {
            Ok(Ok(())) => tracing::info!(endpoint = ?settings.endpoint, "connected to redis"),
            Ok(Err(e)) => tracing::warn!(error = %e, "redis not reachable yet; serving unready until it is"),
            Err(_) => tracing::warn!("redis not reachable yet; serving unready until it is"),
        }

        let health = Arc::new(Health::new(
            client.clone(),
            builder.clone(),
            supervisor.clone(),
            metrics.clone(),
        ));
        let metrics_handle = metrics.clone();
        let store = Arc::new(Store {
            client,
            durable,
            scripts: Scripts::new(),
            health,
            timeout: settings.timeout,
            replica_wait: settings.replica_wait,
            keys: KeySpace::new(&settings.namespace),
        });
        let listener = Arc::new(Listener::new(
            subscriber,
            store.clone(),
            hub,
            config,
            metrics,
            settings.check_every,
        ));
        let presence = Arc::new(Presence::new(store.clone(), settings.presence_ttl));
        Ok(Self {
            metrics: metrics_handle,
            store,
            listener,
            presence,
            supervisor,
        })
    }

    /// Starts the listener, the health probe and the connection supervisor; they stop
    /// when `shutdown` is cancelled.
    pub fn spawn_tasks(&self, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        tasks.spawn(self.listener.clone().run(shutdown.clone()));
        tasks.spawn(self.supervisor.clone().run(shutdown.clone()));
        tasks.spawn(
            self.store
                .health
                .clone()
                .run_probe(self.store.timeout, shutdown.clone()),
        );
    }

    pub fn is_ready(&self) -> bool {
        self.store.health.is_ready()
    }

    /// Appends through the script; local fan-out happens when the published payload
    /// comes back to the listener. `critical` events and `atLeastOnce` topics then wait
    /// (bounded) for a replica; when none confirms, the publish still succeeds (the
    /// event is on the master) and `eventcast_replica_wait_total{result}` counts it.
    pub async fn append(&self, topic: &LiveTopic, event: EncodedEvent, dedup: bool) -> Result<Appended, BackendError> {
        let stored = &event.stored;
        let durable =
            stored.event.priority == Priority::Critical || topic.config.delivery.guarantee == Guarantee::AtLeastOnce;
        let reply = if durable {
            let (reply, ack) = self.store.append_durable(topic, stored, dedup).await?;
            if !reply.duplicate {
                self.metrics.replica_waits.with_label_values(&[ack.as_str()]).inc();
            }
            if ack != ReplicaAck::Acked {
                tracing::warn!(topic = %topic.name, offset = reply.offset, result = ack.as_str(), "no replica confirmed the append");
            }
            reply
        } else {
            self.store.append(topic, stored, dedup).await?
        };
        let event = (!reply.duplicate).then(|| Arc::new(topic.shared_event(reply.offset, reply.epoch.clone(), event)));
        Ok(Appended {
            offset: reply.offset,
            epoch: reply.epoch,
            duplicate: reply.duplicate,
            event,
        })
    }

    /// Appends several events to one topic with one script call (in order).
    pub async fn append_many(
        &self,
        topic: &LiveTopic,
        events: Vec<(EncodedEvent, bool)>,
    ) -> Result<Vec<Appended>, BackendError> {
        let durable = topic.config.delivery.guarantee == Guarantee::AtLeastOnce
            || events
                .iter()
                .any(|(e, _)| e.stored.event.priority == Priority::Critical);
        let replies = self.store.append_many(topic, &events, durable).await?;
        Ok(replies
            .into_iter()
            .zip(events)
            .map(|(reply, (encoded, _))| {
                let event = (!reply.duplicate)
                    .then(|| Arc::new(topic.shared_event(reply.offset, reply.epoch.clone(), encoded)));
                Appended {
                    offset: reply.offset,
                    epoch: reply.epoch,
                    duplicate: reply.duplicate,
                    event,
                }
            })
            .collect())
    }

    /// Reads history; for a topic with local subscribers, only once its feed is live.
    pub async fn read(&self, topic: &LiveTopic, after: u64, limit: usize) -> Result<HistoryRead, BackendError> {
        self.listener.ensure(&topic.name).await;
        self.store.read(topic, after, limit).await
    }

    pub async fn listen(&self, topic: &LiveTopic) {
        self.listener.listen(&topic.name).await;
    }

    pub fn unlisten(&self, topic: &str) {
        self.listener.unlisten(topic);
    }

    pub async fn presence_join(&self, topic: &str, entry: &PresenceEntry) -> Result<bool, BackendError> {
        self.presence.join(topic, entry).await
    }

    pub async fn presence_leave(&self, topic: &str, session: &str) -> Result<bool, BackendError> {
        self.presence.leave(topic, session).await
    }

    pub async fn presence_list(&self, topic: &str) -> Result<Vec<PresenceEntry>, BackendError> {
        self.presence.list(topic).await
    }

    /// Extends this sidecar's presence entries; returns those that were added again.
    pub async fn presence_refresh(&self) -> Vec<(Arc<str>, PresenceEntry)> {
        self.presence.refresh().await
    }

    /// Removes a topic's expired presence entries (of dead sidecars) and returns them.
    pub async fn presence_sweep(&self, topic: &str) -> Result<Vec<PresenceEntry>, BackendError> {
        self.presence.sweep(topic).await
    }

    pub fn presence_interval(&self) -> Duration {
        self.presence.refresh_every()
    }

    /// Deletes all of a topic's keys ([`purge`]).
    pub async fn purge_topic(&self, topic: &str) -> Result<(), BackendError> {
        self.store.purge(topic).await
    }

    pub fn retain_topics(&self, keep: &dyn Fn(&str) -> bool) {
        self.presence.retain_topics(keep);
    }

    /// Publish rate-limit buckets shared by all sidecars.
    pub fn buckets(&self) -> Arc<dyn SharedBuckets> {
        Arc::new(RedisBuckets::new(self.store.clone()))
    }

    /// Name of the subscriber's connections in `CLIENT LIST`.
    pub fn subscriber_name(&self) -> &str {
        self.listener.subscriber().id()
    }

    /// Topics this sidecar is subscribed to.
    pub fn listened_topics(&self) -> Vec<String> {
        self.listener.topics()
    }

    /// Closes the clients and waits (bounded) for their connection tasks.
    pub async fn close(&self) {
        // First, so the tasks that `QUIT` ends are not restarted.
        let handles: Vec<ConnectHandle> = self.supervisor.take_handles();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.listener.subscriber().quit().await;
            let _ = self.store.client.quit().await;
            let _ = self.store.durable.quit().await;
        })
        .await;
        for h in handles {
            let abort = h.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), h).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for RedisBackend {
    /// A sidecar dropped without `close` (a test, a failed start) must not leave fred's
    /// connection tasks reconnecting forever, even while a part of the backend (its
    /// rate-limit buckets, say) is still referenced.
    fn drop(&mut self) {
        for h in self.supervisor.take_handles() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_nodes() {
        let nodes = parse_nodes(&["127.0.0.1:7100", " redis-0.redis:6379 ", "[::1]:7001", ""]).expect("nodes");
        assert_eq!(
            nodes,
            vec![
                ("127.0.0.1".to_owned(), 7100),
                ("redis-0.redis".to_owned(), 6379),
                ("::1".to_owned(), 7001)
            ]
        );
        for bad in ["localhost", "host:", ":7000", "host:70000", "host:0"] {
            assert!(matches!(parse_nodes(&[bad]), Err(RedisError::BadNode(_))), "{bad}");
        }
        assert!(matches!(parse_nodes::<&str>(&[]), Err(RedisError::NoNodes)));
    }
}
