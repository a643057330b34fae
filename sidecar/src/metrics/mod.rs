//! Every Prometheus metric of the sidecar, named `eventcast_*`, created in this one
//! module. Per-topic handles are resolved once per topic ([`TopicMetrics`]) so the
//! fan-out path increments plain atomics instead of looking up label values.

mod event_counts;

use std::sync::Arc;

pub use event_counts::{ByPriority, Count};
use event_counts::{EventCounts, TopicTable};

use eventcast_api::Priority;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0,
];

/// Handles for one topic, indexed by `Priority::index()` where per class.
#[derive(Debug)]
pub struct TopicMetrics {
    /// Events accepted (see `event_counts` for why these two are not prometheus handles).
    pub events_in: ByPriority,
    /// Deliveries written to clients.
    pub events_out: ByPriority,
    pub shed: [IntCounter; 5],
    pub expired: IntCounter,
    pub acks: IntCounter,
    pub redeliveries: IntCounter,
    pub dead_lettered: IntCounter,
}

impl TopicMetrics {
    /// Unregistered handles, for unit tests.
    #[cfg(test)]
    pub fn detached(_topic: &str) -> Arc<Self> {
        let c = || IntCounter::new("detached", "detached").expect("valid metric name");
        Arc::new(Self {
            events_in: ByPriority::default(),
            events_out: ByPriority::default(),
            shed: std::array::from_fn(|_| c()),
            expired: c(),
            acks: c(),
            redeliveries: c(),
            dead_lettered: c(),
        })
    }
}

/// Handles for one server-side subscription; counts are of events.
#[derive(Clone, Debug)]
pub struct SubscriptionMetrics {
    /// Accepted by the webhook (2xx).
    pub delivered: IntCounter,
    /// Republished into the destination topic.
    pub routed: IntCounter,
    /// Published to the dead-letter topic after the webhook refused or never answered.
    pub dead_lettered: IntCounter,
    /// Lost: no dead-letter topic, or the dead letter or routed copy could not be published.
    pub failed: IntCounter,
    /// Skipped because the event's TTL passed before delivery.
    pub expired: IntCounter,
    /// Failed webhook attempts that were retried.
    pub retries: IntCounter,
    /// Matched but never delivered (queue full, subscription removed, shutdown).
    pub dropped: IntCounter,
}

/// The sidecar's registry and metric families.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub connections: IntGauge,
    pub connections_opened: IntCounterVec,
    pub subscriptions: IntGauge,
    pub shed: IntCounterVec,
    pub expired: IntCounterVec,
    pub acks: IntCounterVec,
    pub redeliveries: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub rejected: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub lagged: IntCounter,
    /// Event frames written straight from the fan-out to an idle connection.
    pub direct_writes: IntCounter,
    pub disconnects: IntCounterVec,
    pub client_frames: IntCounterVec,
    pub publish_latency: Histogram,
    pub delivery_latency: [Histogram; 5],
    pub queue_depth: IntGauge,
    pub config_reloads: IntCounterVec,
    pub config_info: IntGaugeVec,
    /// 1 while the config stream to the operator is open (`--operator`).
    pub operator_connected: IntGauge,
    pub config_stream_reconnects: IntCounter,
    pub config_nacks: IntCounter,
    pub backend_errors: IntCounterVec,
    pub redis_client_restarts: IntCounterVec,
    pub replica_waits: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
    pub subscription_dropped: IntCounterVec,
    pub subscription_retries: IntCounterVec,
    topics: TopicTable,
}

macro_rules! reg {
    ($registry:expr, $metric:expr) => {{
        let m = $metric.map_err(|e| e.to_string())?;
        $registry.register(Box::new(m.clone())).map_err(|e| e.to_string())?;
        m
    }};
}

impl Metrics {
    pub fn new() -> Result<Arc<Self>, String> {
        let r = Registry::new();
        let topic_prio = &["topic", "priority"];
        let delivery_latency_vec = reg!(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "eventcast_delivery_latency_seconds",
                    "Time from an event reaching this sidecar to its frame being written to a client, by priority"
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["priority"]
            )
        );
        let delivery_latency = Priority::HIGHEST_FIRST.map(|p| delivery_latency_vec.with_label_values(&[p.as_str()]));
        let topics = TopicTable::default();
        r.register(Box::new(EventCounts::new(topics.clone()).map_err(|e| e.to_string())?))
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Self {
            connections: reg!(r, IntGauge::new("eventcast_connections", "Open WebSocket connections")),
            connections_opened: reg!(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "eventcast_connections_opened_total",
                        "WebSocket connection attempts by result"
                    ),
                    &["result"]
                )
            ),
            subscriptions: reg!(
                r,
                IntGauge::new(
                    "eventcast_subscriptions",
                    "Active topic subscriptions of WebSocket clients"
                )
            ),
            shed: reg!(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "eventcast_shed_events_total",
                        "Deliveries dropped from slow connections' queues"
                    ),
                    topic_prio
                )
            ),
            expired: reg!(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "eventcast_expired_events_total",
                        "Deliveries skipped because the event's TTL passed"
                    ),
                    &["topic"]
                )
            ),
            acks: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("eventcast_acks_total", "Acknowledgements received"),
                    &["topic"]
                )
            ),
            redeliveries: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("eventcast_redeliveries_total", "Unacknowledged events sent again"),
                    &["topic"]
                )
            ),
            dead_lettered: reg!(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "eventcast_dead_lettered_total",
                        "Events moved to a dead-letter topic after max retries"
                    ),
                    &["topic"]
                )
            ),
            rejected: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("eventcast_events_rejected_total", "Publishes rejected, by reason"),
                    &["reason"]
                )
            ),
            rate_limited: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("eventcast_rate_limited_total", "Requests refused by rate limits"),
                    &["kind"]
                )
            ),
            lagged: reg!(
                r,
                IntCounter::new("eventcast_lagged_notices_total", "lagged notices sent to clients")
            ),
            direct_writes: reg!(
                r,
                IntCounter::new(
                    "eventcast_direct_writes_total",
                    "Event frames written from the fan-out to an idle connection without queueing"
                )
            ),
            disconnects: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("eventcast_disconnects_total", "Server-initiated disconnects by code"),
                    &["code"]
                )
            ),
            client_frames: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("eventcast_client_frames_total", "Frames received from clients by op"),
                    &["op"]
                )
            ),
            publish_latency: reg!(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "eventcast_publish_latency_seconds",
                        "Time to accept a publish (validate, store, fan out)"
                    )
                    .buckets(LATENCY_BUCKETS.to_vec())
                )
            ),
            delivery_latency,
            queue_depth: reg!(
                r,
                IntGauge::new("eventcast_queue_depth", "Frames waiting in connection queues")
            ),
            config_reloads: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("eventcast_config_reloads_total", "Config loads by result"),
                    &["result"]
                )
            ),
            config_info: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new("eventcast_config_info", "Running config version (value 1)"),
                    &["version"]
                )
            ),
            operator_connected: reg!(
                r,
                IntGauge::new(
                    "eventcast_operator_connected",
                    "1 while the config stream to the operator is open"
                )
            ),
            config_stream_reconnects: reg!(
                r,
                IntCounter::new(
                    "eventcast_config_stream_reconnects_total",
                    "Connection attempts to the operator's config stream after the first"
                )
            ),
            config_nacks: reg!(
                r,
                IntCounter::new(
                    "eventcast_config_nacks_total",
                    "Operator config snapshots rejected (answered with nack)"
                )
            ),
            backend_errors: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("eventcast_backend_errors_total", "Backend operation failures"),
                    &["op"]
                )
            ),
            redis_client_restarts: reg!(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "eventcast_redis_client_restarts_total",
                        "Connection tasks of the Redis clients restarted, by client (commands, durable, subscriber) and reason (task_ended: the task stopped by itself, unresponsive: commands timed out while a new connection worked)"
                    ),
                    &["client", "reason"]
                )
            ),
            replica_waits: reg!(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "eventcast_replica_wait_total",
                        "Appends of critical or atLeastOnce events that waited for a Redis replica, by result (acked, not_acked: no replica confirmed in time, failed: WAIT failed); the publish succeeds in every case"
                    ),
                    &["result"]
                )
            ),
            webhook_deliveries: reg!(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "eventcast_subscription_deliveries_total",
                        "Server-side subscription deliveries by result"
                    ),
                    &["subscription", "result"]
                )
            ),
            subscription_dropped: reg!(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "eventcast_subscription_dropped_total",
                        "Events a server-side subscription matched but never delivered (queue full, subscription removed, shutdown)"
                    ),
                    &["subscription"]
                )
            ),
            subscription_retries: reg!(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "eventcast_subscription_retries_total",
                        "Webhook delivery attempts that failed and were retried"
                    ),
                    &["subscription"]
                )
            ),
            registry: r,
            topics,
        }))
    }

    /// Per-topic handles, created on first use.
    pub fn topic(&self, topic: &str) -> Arc<TopicMetrics> {
        if let Some(m) = self.topics.read().get(topic) {
            return m.clone();
        }
        let mut map = self.topics.write();
        map.entry(topic.to_owned())
            .or_insert_with(|| {
                let by_prio =
                    |vec: &IntCounterVec| Priority::HIGHEST_FIRST.map(|p| vec.with_label_values(&[topic, p.as_str()]));
                Arc::new(TopicMetrics {
                    events_in: ByPriority::default(),
                    events_out: ByPriority::default(),
                    shed: by_prio(&self.shed),
                    expired: self.expired.with_label_values(&[topic]),
                    acks: self.acks.with_label_values(&[topic]),
                    redeliveries: self.redeliveries.with_label_values(&[topic]),
                    dead_lettered: self.dead_lettered.with_label_values(&[topic]),
                })
            })
            .clone()
    }

    /// Handles for one server-side subscription.
    pub fn subscription(&self, name: &str) -> SubscriptionMetrics {
        let result = |r: &str| self.webhook_deliveries.with_label_values(&[name, r]);
        SubscriptionMetrics {
            delivered: result("delivered"),
            routed: result("routed"),
            dead_lettered: result("dead_lettered"),
            failed: result("failed"),
            expired: result("expired"),
            retries: self.subscription_retries.with_label_values(&[name]),
            dropped: self.subscription_dropped.with_label_values(&[name]),
        }
    }

    /// Events accepted for publishing and deliveries written to clients, summed over
    /// topics and priorities since start.
    pub fn event_totals(&self) -> (u64, u64) {
        let topics = self.topics.read();
        topics
            .values()
            .fold((0, 0), |(i, o), t| (i + t.events_in.total(), o + t.events_out.total()))
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    pub fn set_config_version(&self, version: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[version]).set(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_eventcast_prefixed_and_renders() {
        let m = Metrics::new().expect("metrics");
        let t = m.topic("chat.room-1");
        t.events_in[Priority::High.index()].inc();
        m.connections.inc();
        m.publish_latency.observe(0.001);
        m.delivery_latency[0].observe(0.002);
        m.set_config_version("v-abc");
        let text = m.render();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            assert!(line.starts_with("eventcast_"), "{line}");
        }
        assert!(
            text.contains(r#"eventcast_events_in_total{priority="high",topic="chat.room-1"} 1"#),
            "{text}"
        );
        t.events_out[Priority::Low.index()].inc();
        t.events_out[Priority::Low.index()].inc();
        m.topic("a.first");
        let text = m.render();
        assert!(text.contains("# TYPE eventcast_events_out_total counter"), "{text}");
        assert!(text.contains(r#"eventcast_events_out_total{priority="low",topic="chat.room-1"} 2"#));
        assert!(text.contains(r#"eventcast_events_out_total{priority="critical",topic="a.first"} 0"#));
        assert_eq!(m.event_totals(), (1, 2));
        assert!(text.contains(r#"eventcast_config_info{version="v-abc"} 1"#));
        assert!(Arc::ptr_eq(&t, &m.topic("chat.room-1")));
    }
}
