//! Command-line flags (each also an `EVENTCAST_*` environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::ArgPredicate;
use clap::{ArgGroup, Parser, ValueEnum};

use crate::backend::redis::{RedisEndpoint, RedisError, RedisSettings, parse_nodes};

/// Storage and fan-out backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Embedded, single node: history, offsets and presence in this process.
    Memory,
    /// Redis Cluster (or one Redis node): shared by every sidecar of a deployment.
    Redis,
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
#[command(group(ArgGroup::new("config_source").required(true).args(["manifests", "operator"])))]
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
    pub manifests: Option<PathBuf>,
    /// The operator's config stream, `http://host:port` (or `ws://`); the config of
    /// `--namespace` is pushed from there instead of read from `--manifests`.
    #[arg(long, env = "EVENTCAST_OPERATOR")]
    pub operator: Option<String>,
    /// With `--operator`: where the last good config is kept, so a restart serves it at
    /// once even while the operator is away.
    #[arg(long = "state-dir", env = "EVENTCAST_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Backend: `memory` unless a Redis is given.
    #[arg(
        long,
        env = "EVENTCAST_BACKEND",
        value_enum,
        default_value_t = BackendKind::Memory,
        default_value_ifs = [
            ("redis_cluster", ArgPredicate::IsPresent, "redis"),
            ("redis_url", ArgPredicate::IsPresent, "redis"),
        ]
    )]
    pub backend: BackendKind,
    /// Redis Cluster seed nodes, `host:port,host:port,...` (the rest are discovered).
    #[arg(
        long = "redis-cluster",
        env = "EVENTCAST_REDIS_CLUSTER",
        value_delimiter = ',',
        conflicts_with = "redis_url"
    )]
    pub redis_cluster: Vec<String>,
    /// One Redis node for development, e.g. `redis://127.0.0.1:6379`.
    #[arg(long = "redis", env = "EVENTCAST_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Longest a Redis command may take before the operation fails with 503.
    #[arg(long, env = "EVENTCAST_REDIS_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub redis_timeout: Duration,
    /// How often each topic followed through Redis is compared with its head (events a
    /// sidecar missed are delivered after at most two intervals).
    #[arg(long, env = "EVENTCAST_REDIS_CHECK_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub redis_check_interval: Duration,
    /// How long an append of a critical event or to an atLeastOnce topic waits for a Redis replica.
    #[arg(long, env = "EVENTCAST_REDIS_REPLICA_WAIT", default_value = "500ms", value_parser = parse_duration)]
    pub redis_replica_wait: Duration,
    /// Presence entries of a sidecar that stopped refreshing them (it died) expire after this.
    #[arg(long, env = "EVENTCAST_PRESENCE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub presence_ttl: Duration,
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

/// Where the config comes from (exactly one of `--manifests` / `--operator`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--manifests DIR`.
    Manifests(PathBuf),
    /// `--operator URL` with the optional `--state-dir`.
    Operator { url: String, state_dir: Option<PathBuf> },
}

impl Settings {
    /// The config source; `None` when neither (or both) flags are set, which the flag
    /// parser rules out (settings built in code can still get it wrong).
    pub fn config_source(&self) -> Option<ConfigSource> {
        match (&self.manifests, &self.operator) {
            (Some(dir), None) => Some(ConfigSource::Manifests(dir.clone())),
            (None, Some(url)) => Some(ConfigSource::Operator {
                url: url.clone(),
                state_dir: self.state_dir.clone(),
            }),
            _ => None,
        }
    }

    /// Redis backend settings; `None` for the memory backend.
    pub fn redis(&self) -> Result<Option<RedisSettings>, RedisError> {
        if self.backend != BackendKind::Redis {
            return Ok(None);
        }
        let endpoint = match (&self.redis_url, self.redis_cluster.is_empty()) {
            (Some(url), _) => RedisEndpoint::Single(url.clone()),
            (None, false) => RedisEndpoint::Cluster(parse_nodes(&self.redis_cluster)?),
            (None, true) => return Err(RedisError::NoNodes),
        };
        Ok(Some(RedisSettings {
            endpoint,
            namespace: self.namespace.clone(),
            timeout: self.redis_timeout,
            check_every: self.redis_check_interval.max(Duration::from_millis(100)),
            presence_ttl: self.presence_ttl,
            replica_wait: self.redis_replica_wait,
        }))
    }

    /// The same settings on the Redis backend with these cluster seed nodes
    /// (`host:port,host:port,...`).
    pub fn with_redis_cluster(mut self, nodes: &str) -> Self {
        self.backend = BackendKind::Redis;
        self.redis_cluster = nodes.split(',').map(str::to_owned).collect();
        self.redis_url = None;
        self
    }

    /// Settings for an in-process sidecar on ephemeral loopback ports (tests, benches).
    pub fn for_tests(manifests: PathBuf) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            public: any,
            local: any,
            metrics: any,
            manifests: Some(manifests),
            operator: None,
            state_dir: None,
            backend: BackendKind::Memory,
            redis_cluster: Vec::new(),
            redis_url: None,
            redis_timeout: Duration::from_secs(2),
            redis_check_interval: Duration::from_secs(2),
            redis_replica_wait: Duration::from_millis(500),
            presence_ttl: Duration::from_secs(30),
            namespace: "default".to_owned(),
            pod_name: "test".to_owned(),
            log_format: LogFormat::Text,
            log: "warn".to_owned(),
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    /// Settings for an in-process sidecar that takes its config from the operator at
    /// `operator_url` (`http://host:port`) and caches it in `state_dir`.
    pub fn for_tests_with_operator(operator_url: &str, state_dir: PathBuf) -> Self {
        Self {
            manifests: None,
            operator: Some(operator_url.to_owned()),
            state_dir: Some(state_dir),
            ..Self::for_tests(PathBuf::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Settings {
        let mut all = vec!["eventcast-sidecar", "--manifests", "/tmp/m"];
        all.extend_from_slice(args);
        Settings::try_parse_from(all).expect("valid flags")
    }

    #[test]
    fn backend_is_memory_unless_redis_is_given() {
        assert_eq!(parse(&[]).backend, BackendKind::Memory);
        assert!(parse(&[]).redis().expect("memory").is_none());
        let s = parse(&["--redis-cluster", "127.0.0.1:7100,127.0.0.1:7101"]);
        assert_eq!(s.backend, BackendKind::Redis);
        let r = s.redis().expect("valid").expect("redis");
        assert_eq!(
            r.endpoint,
            RedisEndpoint::Cluster(vec![("127.0.0.1".into(), 7100), ("127.0.0.1".into(), 7101)])
        );
        let s = parse(&["--backend", "redis", "--redis", "redis://127.0.0.1:6379"]);
        assert_eq!(
            s.redis().expect("valid").expect("redis").endpoint,
            RedisEndpoint::Single("redis://127.0.0.1:6379".into())
        );
        assert!(matches!(
            parse(&["--backend", "redis"]).redis(),
            Err(RedisError::NoNodes)
        ));
        let conflicting = Settings::try_parse_from([
            "eventcast-sidecar",
            "--manifests",
            "/tmp/m",
            "--redis-cluster",
            "a:1",
            "--redis",
            "redis://b:2",
        ]);
        assert!(conflicting.is_err());
    }

    #[test]
    fn exactly_one_config_source() {
        assert_eq!(
            parse(&[]).config_source(),
            Some(ConfigSource::Manifests(PathBuf::from("/tmp/m")))
        );
        let op = Settings::try_parse_from([
            "eventcast-sidecar",
            "--operator",
            "http://op:8081",
            "--state-dir",
            "/var/lib/ec",
        ])
        .expect("operator flags");
        assert_eq!(
            op.config_source(),
            Some(ConfigSource::Operator {
                url: "http://op:8081".into(),
                state_dir: Some(PathBuf::from("/var/lib/ec")),
            })
        );
        assert!(
            Settings::try_parse_from(["eventcast-sidecar"]).is_err(),
            "one is required"
        );
        assert!(
            Settings::try_parse_from(["eventcast-sidecar", "--manifests", "/m", "--operator", "http://op:8081"])
                .is_err(),
            "not both"
        );
        let t = Settings::for_tests_with_operator("http://127.0.0.1:1", PathBuf::from("/s"));
        assert!(matches!(t.config_source(), Some(ConfigSource::Operator { .. })));
    }
}
