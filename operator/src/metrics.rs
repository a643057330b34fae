//! The operator's Prometheus metrics (`eventcast_operator_*`).

use parking_lot::Mutex;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::collections::HashMap;

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub connected_sidecars: IntGaugeVec,
    pub config_pushes: IntCounterVec,
    config_version: IntGaugeVec,
    versions: Mutex<HashMap<String, String>>,
    pub push_latency: Histogram,
    pub acks: IntCounterVec,
    pub nacks: IntCounterVec,
    pub status_writes: IntCounterVec,
    pub status_write_errors: IntCounterVec,
    pub resources: IntGaugeVec,
    pub leader: IntGauge,
    pub purges: IntCounterVec,
    pub watch_errors: IntCounter,
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "eventcast_operator_reconciles_total",
                "Namespace reconciles (compile + push + status).",
            ),
            &["namespace"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "eventcast_operator_reconcile_errors_total",
                "Errors met while reconciling, by kind of error.",
            ),
            &["error"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "eventcast_operator_reconcile_duration_seconds",
                "Time to compile a namespace and compute its statuses.",
            )
            .buckets(latency_buckets()),
            &["namespace"],
        )?;
        let connected_sidecars = IntGaugeVec::new(
            Opts::new(
                "eventcast_operator_connected_sidecars",
                "Sidecars connected to this replica's config stream.",
            ),
            &["namespace"],
        )?;
        let config_pushes = IntCounterVec::new(
            Opts::new(
                "eventcast_operator_config_pushes_total",
                "New config versions published to a namespace's sidecars.",
            ),
            &["namespace"],
        )?;
        let config_version = IntGaugeVec::new(
            Opts::new(
                "eventcast_operator_config_version_info",
                "Current config version of a namespace (value 1).",
            ),
            &["namespace", "version"],
        )?;
        let push_latency = Histogram::with_opts(
            HistogramOpts::new(
                "eventcast_operator_push_latency_seconds",
                "From sending a snapshot to a sidecar to its ack.",
            )
            .buckets(latency_buckets()),
        )?;
        let acks = IntCounterVec::new(
            Opts::new("eventcast_operator_config_acks_total", "Snapshots acked by sidecars."),
            &["namespace"],
        )?;
        let nacks = IntCounterVec::new(
            Opts::new(
                "eventcast_operator_config_nacks_total",
                "Snapshots rejected by sidecars.",
            ),
            &["namespace"],
        )?;
        let status_writes = IntCounterVec::new(
            Opts::new("eventcast_operator_status_writes_total", "Status subresource writes."),
            &["kind"],
        )?;
        let status_write_errors = IntCounterVec::new(
            Opts::new(
                "eventcast_operator_status_write_errors_total",
                "Failed status writes (retried with backoff).",
            ),
            &["kind"],
        )?;
        let resources = IntGaugeVec::new(
            Opts::new(
                "eventcast_operator_resources",
                "Resources in the operator's cache, by kind.",
            ),
            &["kind"],
        )?;
        let leader = IntGauge::new(
            "eventcast_operator_leader",
            "1 while this replica holds the leader Lease (writes status).",
        )?;
        let purges = IntCounterVec::new(
            Opts::new(
                "eventcast_operator_topic_purges_total",
                "Deleted Topics whose stored data was purged (deletionPolicy: Delete), by result.",
            ),
            &["result"],
        )?;
        let watch_errors = IntCounter::new(
            "eventcast_operator_watch_errors_total",
            "Errors from Kubernetes watches (retried with backoff).",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(connected_sidecars.clone()))?;
        registry.register(Box::new(config_pushes.clone()))?;
        registry.register(Box::new(config_version.clone()))?;
        registry.register(Box::new(push_latency.clone()))?;
        registry.register(Box::new(acks.clone()))?;
        registry.register(Box::new(nacks.clone()))?;
        registry.register(Box::new(status_writes.clone()))?;
        registry.register(Box::new(status_write_errors.clone()))?;
        registry.register(Box::new(resources.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(purges.clone()))?;
        registry.register(Box::new(watch_errors.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            connected_sidecars,
            config_pushes,
            config_version,
            versions: Mutex::new(HashMap::new()),
            push_latency,
            acks,
            nacks,
            status_writes,
            status_write_errors,
            resources,
            leader,
            purges,
            watch_errors,
        })
    }

    /// Keeps exactly one `config_version_info` series per namespace.
    pub fn set_config_version(&self, namespace: &str, version: &str) {
        let mut versions = self.versions.lock();
        if let Some(old) = versions.insert(namespace.to_owned(), version.to_owned()) {
            let _ = self.config_version.remove_label_values(&[namespace, &old]);
        }
        self.config_version.with_label_values(&[namespace, version]).set(1);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_version_series_per_namespace() {
        let m = Metrics::new().expect("metrics");
        m.set_config_version("demo", "v-a");
        m.set_config_version("demo", "v-b");
        let text = m.render();
        assert!(text.contains(r#"eventcast_operator_config_version_info{namespace="demo",version="v-b"} 1"#));
        assert!(!text.contains("v-a"));
    }
}
