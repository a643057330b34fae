//! Command-line flags (each also an `EVENTCAST_*` environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Storage and fan-out backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Embedded, single node: history, offsets and presence in this process.
    Memory,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// eventcast-sidecar: delivers events to WebSocket clients and takes publishes from the app.
#[derive(Clone, Debug, Parser)]
#[command(name = "eventcast-sidecar", version, about)]
pub struct Settings {
    /// Public listener: WebSocket `/v1/ws`, `/healthz`, `/readyz`.
    #[arg(long, env = "EVENTCAST_PUBLIC", default_value = "0.0.0.0:8080")]
    pub public: SocketAddr,
    /// Local listener for the app: the publish, history, presence and stats API.
    #[arg(long, env = "EVENTCAST_LOCAL", default_value = "127.0.0.1:7070")]
    pub local: SocketAddr,
    /// Metrics listener: `/metrics`.
    #[arg(long, env = "EVENTCAST_METRICS", default_value = "0.0.0.0:9090")]
    pub metrics: SocketAddr,
    /// Directory of Topic/Subscription/BroadcastPolicy (and v1 Secret) manifests; watched for changes.
    #[arg(long, env = "EVENTCAST_MANIFESTS")]
    pub manifests: PathBuf,
    /// Backend.
    #[arg(long, env = "EVENTCAST_BACKEND", value_enum, default_value_t = BackendKind::Memory)]
    pub backend: BackendKind,
    /// Namespace whose resources this sidecar serves.
    #[arg(long, env = "EVENTCAST_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Pod name, for stats and logs.
    #[arg(long, env = "EVENTCAST_POD_NAME", default_value = "local")]
    pub pod_name: String,
    /// Log format.
    #[arg(long, env = "EVENTCAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "EVENTCAST_LOG", default_value = "info")]
    pub log: String,
    /// Longest a graceful shutdown waits for connections to drain.
    #[arg(long, env = "EVENTCAST_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<eventcast_api::duration::Duration>()
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

impl Settings {
    /// Settings for an in-process sidecar on ephemeral loopback ports (tests, benches).
    pub fn for_tests(manifests: PathBuf) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            public: any,
            local: any,
            metrics: any,
            manifests,
            backend: BackendKind::Memory,
            namespace: "default".to_owned(),
            pod_name: "test".to_owned(),
            log_format: LogFormat::Text,
            log: "warn".to_owned(),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}
