//! Command-line flags (each also an `EVENTCAST_OPERATOR_*` environment variable).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// eventcast-operator: compiles Topic, Subscription and BroadcastPolicy resources into
/// the config every sidecar runs, and reports status on them.
#[derive(Clone, Debug, Parser)]
#[command(name = "eventcast-operator", version, about)]
pub struct Settings {
    /// Config stream listener: sidecars connect to `/v1/sidecars/stream`.
    #[arg(long, env = "EVENTCAST_OPERATOR_CONFIG_STREAM", default_value = "0.0.0.0:8081")]
    pub config_stream: SocketAddr,
    /// Metrics and probes listener: `/metrics`, `/healthz`, `/readyz`.
    #[arg(long, env = "EVENTCAST_OPERATOR_METRICS", default_value = "0.0.0.0:9091")]
    pub metrics: SocketAddr,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "EVENTCAST_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the coordination.k8s.io/v1 Lease used for leader election.
    #[arg(long, env = "EVENTCAST_OPERATOR_LEASE_NAME", default_value = "eventcast-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (in a pod: its own namespace).
    #[arg(long, env = "EVENTCAST_OPERATOR_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (in a pod: its name). Default: hostname + pid.
    #[arg(long, env = "EVENTCAST_OPERATOR_IDENTITY")]
    pub identity: Option<String>,
    /// How long a leader's Lease stays valid without renewal; a replica takes over a dead
    /// leader's Lease after this.
    #[arg(long, env = "EVENTCAST_OPERATOR_LEASE_DURATION", default_value = "6s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// Every this often, configs are pushed again and every status recomputed (repairs drift).
    #[arg(long, env = "EVENTCAST_OPERATOR_RESYNC", default_value = "5m", value_parser = parse_duration)]
    pub resync_interval: Duration,
    /// Shortest time between two status writes to one resource.
    #[arg(long, env = "EVENTCAST_OPERATOR_STATUS_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub status_interval: Duration,
    /// After this replica becomes leader, status writes wait this long so sidecars that
    /// were connected to the previous leader can reconnect first (no status churn on an
    /// operator restart or failover).
    #[arg(long, env = "EVENTCAST_OPERATOR_STARTUP_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub startup_grace: Duration,
    /// How often autoscaling (BroadcastPolicy `spec.autoscaling`) looks at the load.
    #[arg(long, env = "EVENTCAST_OPERATOR_AUTOSCALE_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub autoscale_interval: Duration,
    /// Changes arriving within this window are compiled together.
    #[arg(long, env = "EVENTCAST_OPERATOR_DEBOUNCE", default_value = "50ms", value_parser = parse_duration)]
    pub debounce: Duration,
    /// Status writes in flight at once.
    #[arg(long, env = "EVENTCAST_OPERATOR_STATUS_CONCURRENCY", default_value_t = 16)]
    pub status_concurrency: usize,
    /// Log format.
    #[arg(long, env = "EVENTCAST_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "EVENTCAST_OPERATOR_LOG", default_value = "info")]
    pub log: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<eventcast_api::duration::Duration>()
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

impl Settings {
    /// This replica's Lease identity.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "eventcast-operator".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }

    /// Settings for an in-process operator on ephemeral loopback ports (tests, benches).
    pub fn for_tests() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            config_stream: any,
            metrics: any,
            namespace: None,
            lease_name: "eventcast-operator".to_owned(),
            lease_namespace: "default".to_owned(),
            identity: None,
            lease_duration: Duration::from_secs(4),
            resync_interval: Duration::from_secs(300),
            status_interval: Duration::from_millis(500),
            startup_grace: Duration::from_secs(2),
            autoscale_interval: Duration::from_millis(500),
            debounce: Duration::from_millis(20),
            status_concurrency: 16,
            log_format: LogFormat::Text,
            log: "warn".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let s = Settings::try_parse_from(["eventcast-operator"]).expect("defaults parse");
        assert_eq!(s.config_stream, SocketAddr::from(([0, 0, 0, 0], 8081)));
        assert_eq!(s.metrics, SocketAddr::from(([0, 0, 0, 0], 9091)));
        assert_eq!(s.resync_interval, Duration::from_secs(300));
        let s = Settings::try_parse_from(["eventcast-operator", "--status-interval", "5s", "--namespace", "demo"])
            .expect("flags parse");
        assert_eq!(s.status_interval, Duration::from_secs(5));
        assert_eq!(s.namespace.as_deref(), Some("demo"));
        assert!(Settings::try_parse_from(["eventcast-operator", "--resync", "soon"]).is_err());
    }
}
