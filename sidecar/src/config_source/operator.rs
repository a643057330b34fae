//! `--operator URL`: the config of this sidecar's namespace is pushed by the operator on
//! its config stream (`GET /v1/sidecars/stream?namespace=NS&pod=NAME`, WebSocket, see
//! [`eventcast_api::config_stream`]).
//!
//! - Every `snapshot` is checked (namespace), made live ([`LiveConfig::build`]), cached
//!   on disk ([`ConfigCache`]) and answered with `ack`; one that cannot be made live is
//!   answered with `nack` and the last good config keeps serving.
//! - Fail-static: a cached config is served at start, before the operator answers; with
//!   none, the sidecar serves an empty config and stays unready until the first
//!   snapshot is live. While the operator is away the live config keeps serving.
//! - The stream is reopened with jittered exponential backoff ([`ReconnectBackoff`]).
//! - Every [`LOAD_EVERY`] (and right after connecting) the sidecar reports its load.
//! - `purge` deletes a deleted topic's stored data from the backend.

use std::sync::Arc;
use std::time::Duration;

use eventcast_api::CompiledConfig;
use eventcast_api::config_stream::{OperatorMessage, STREAM_PATH, SidecarLoad, SidecarMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::cache::{CachedConfig, ConfigCache};
use super::reconnect::ReconnectBackoff;
use crate::live_config::LiveConfig;
use crate::metrics::Metrics;
use crate::state::SidecarState;

/// How often the sidecar reports its load.
pub const LOAD_EVERY: Duration = Duration::from_secs(5);
/// Longest a connection attempt (TCP + WebSocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that stayed up this long resets the reconnect backoff.
const STABLE_AFTER: Duration = Duration::from_secs(5);
/// Longest the close handshake may hold up shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the operator source could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("--operator {url:?}: {reason}")]
    Url { url: String, reason: &'static str },
    #[error("empty config for namespace {namespace:?}: {message}")]
    Empty { namespace: String, message: String },
}

/// Builds `ws://host:port/v1/sidecars/stream?namespace=NS&pod=NAME` from the operator's
/// base URL (`http://` or `ws://`; TLS is not built into this sidecar).
pub fn stream_url(base: &str, namespace: &str, pod: &str) -> Result<String, OperatorError> {
    let bad = |reason| OperatorError::Url {
        url: base.to_owned(),
        reason,
    };
    let base = base.trim().trim_end_matches('/');
    if base.starts_with("https://") || base.starts_with("wss://") {
        return Err(bad(
            "TLS (https/wss) is not supported by this build; use http:// (e.g. inside the mesh)",
        ));
    }
    let Some(rest) = base.strip_prefix("http://").or_else(|| base.strip_prefix("ws://")) else {
        return Err(bad("expected http://host:port or ws://host:port"));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad("no host"));
    }
    if rest.contains(['?', '#']) {
        return Err(bad("no query or fragment allowed"));
    }
    Ok(format!(
        "ws://{rest}{STREAM_PATH}?namespace={}&pod={}",
        query_escape(namespace),
        query_escape(pod)
    ))
}

/// Percent-encodes everything but unreserved characters (namespaces and pod names are
/// DNS names, so normally nothing).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The config served before the operator has answered.
#[derive(Debug)]
pub struct Initial {
    pub live: LiveConfig,
    /// Loaded from the state directory: serve (and be ready) at once.
    pub cached: bool,
}

/// The operator config source of one sidecar: set up before the server starts (URL
/// checked, cache read), then [`OperatorSource::run`] as a task.
#[derive(Debug)]
pub struct OperatorSource {
    url: String,
    namespace: String,
    cache: Option<ConfigCache>,
    /// A config (cached or pushed) has been live: "already live" snapshots need no work.
    have_config: bool,
}

impl OperatorSource {
    pub fn new(
        base_url: &str,
        state_dir: Option<&std::path::Path>,
        namespace: &str,
        pod: &str,
    ) -> Result<Self, OperatorError> {
        Ok(Self {
            url: stream_url(base_url, namespace, pod)?,
            namespace: namespace.to_owned(),
            cache: state_dir.map(|d| ConfigCache::new(d, namespace)),
            have_config: false,
        })
    }

    /// The stream URL this source connects to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The cached config when there is a usable one, else an empty config of the namespace.
    pub fn initial(&mut self, metrics: &Metrics) -> Result<Initial, OperatorError> {
        if let Some(cache) = &self.cache
            && let Some(cached) = cache.load()
        {
            if cached.config.namespace != self.namespace {
                tracing::warn!(path = %cache.path().display(), cached = %cached.config.namespace, namespace = %self.namespace, "config cache is of another namespace; ignoring it");
            } else {
                match LiveConfig::build(cached.config, metrics) {
                    Ok(live) => {
                        tracing::info!(version = %cached.version, topics = live.topics.len(), path = %cache.path().display(), "serving the cached config until the operator answers");
                        self.have_config = true;
                        return Ok(Initial { live, cached: true });
                    }
                    Err(e) => {
                        tracing::warn!(path = %cache.path().display(), error = %e, "cached config cannot be served; ignoring it");
                    }
                }
            }
        }
        let empty = CompiledConfig {
            namespace: self.namespace.clone(),
            ..CompiledConfig::default()
        };
        let live = LiveConfig::build(empty, metrics).map_err(|e| OperatorError::Empty {
            namespace: self.namespace.clone(),
            message: e.to_string(),
        })?;
        tracing::info!(url = %self.url, "no cached config: not ready until the operator sends one");
        Ok(Initial { live, cached: false })
    }

    /// Keeps the config stream open until `state.shutdown`, reconnecting with backoff.
    /// `on_applied` runs for every config about to go live (as for `--manifests`).
    pub async fn run(mut self, state: Arc<SidecarState>, on_applied: impl Fn(&LiveConfig) + Send + 'static) {
        let mut backoff = ReconnectBackoff::default();
        let mut load = LoadMeter::default();
        let mut attempts: u64 = 0;
        // Failed attempts since the last connection: the first of a streak and every
        // tenth are warnings, the rest debug (the operator may be away for long).
        let mut failing: u64 = 0;
        let stop = state.shutdown.clone();
        loop {
            if attempts > 0 {
                state.metrics.config_stream_reconnects.inc();
            }
            attempts += 1;
            let connect = tokio::select! {
                () = stop.cancelled() => return,
                r = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(self.url.as_str())) => r,
            };
            match connect {
                Ok(Ok((ws, _response))) => {
                    failing = 0;
                    tracing::info!(url = %self.url, "connected to the operator's config stream");
                    state.metrics.operator_connected.set(1);
                    let since = Instant::now();
                    let end = self.session(ws, &state, &on_applied, &mut load).await;
                    state.metrics.operator_connected.set(0);
                    match end {
                        SessionEnd::Shutdown => {
                            tracing::info!("config stream closed: shutting down");
                            return;
                        }
                        SessionEnd::Lost(reason) => {
                            tracing::warn!(url = %self.url, %reason, version = %state.config.get().version, "config stream lost; serving the last good config");
                        }
                    }
                    if since.elapsed() >= STABLE_AFTER {
                        backoff.reset();
                    }
                }
                Ok(Err(e)) => {
                    failing += 1;
                    if failing == 1 || failing.is_multiple_of(10) {
                        tracing::warn!(url = %self.url, error = %e, failing, "cannot reach the operator");
                    } else {
                        tracing::debug!(url = %self.url, error = %e, failing, "cannot reach the operator");
                    }
                }
                Err(_) => {
                    failing += 1;
                    tracing::warn!(url = %self.url, failing, "connecting to the operator timed out");
                }
            }
            let delay = backoff.next_delay(&mut rand::rng());
            tracing::debug!(?delay, "reconnecting to the operator");
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session<S>(
        &mut self,
        ws: S,
        state: &Arc<SidecarState>,
        on_applied: &impl Fn(&LiveConfig),
        load: &mut LoadMeter,
    ) -> SessionEnd
    where
        S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
            + Unpin,
    {
        let (mut tx, mut rx) = ws.split();
        // The first tick is immediate: a load report right after connecting.
        let mut tick = tokio::time::interval(LOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reply = tokio::select! {
                () = state.shutdown.cancelled() => {
                    let close = Message::Close(Some(CloseFrame {
                        code: CloseCode::Away,
                        reason: "sidecar shutting down".into(),
                    }));
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        if tx.send(close).await.is_ok() {
                            // Wait for the operator's close reply (or the end of the stream).
                            while let Some(Ok(m)) = rx.next().await {
                                if m.is_close() {
                                    break;
                                }
                            }
                        }
                    })
                    .await;
                    return SessionEnd::Shutdown;
                }
                _ = tick.tick() => SidecarMessage::Load(load.sample(state)),
                msg = rx.next() => match msg {
                    None => return SessionEnd::Lost("closed by the operator".into()),
                    Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<OperatorMessage>(text.as_str()) {
                        Ok(OperatorMessage::Snapshot { version, config }) => {
                            self.apply(version, *config, state, on_applied).await
                        }
                        Ok(OperatorMessage::Purge { id, topic }) => purge(id, topic, state).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable message from the operator; ignored");
                            continue;
                        }
                    },
                    Some(Ok(Message::Close(frame))) => {
                        tracing::info!(?frame, "the operator closed the config stream");
                        // The close reply goes out on the next read, which then ends the stream.
                        continue;
                    }
                    // Pings are answered by the WebSocket layer; nothing else is expected.
                    Some(Ok(_)) => continue,
                },
            };
            let text = match serde_json::to_string(&reply) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "encoding a config stream message");
                    continue;
                }
            };
            if let Err(e) = tx.send(Message::text(text)).await {
                return SessionEnd::Lost(format!("sending: {e}"));
            }
        }
    }

    /// Makes a snapshot live; the answer is `ack` or `nack`.
    async fn apply(
        &mut self,
        version: String,
        config: CompiledConfig,
        state: &Arc<SidecarState>,
        on_applied: &impl Fn(&LiveConfig),
    ) -> SidecarMessage {
        let metrics = &state.metrics;
        let nack = |error: String| {
            metrics.config_nacks.inc();
            metrics.config_reloads.with_label_values(&["error"]).inc();
            tracing::warn!(%version, %error, live = %state.config.get().version, "operator config rejected; keeping the last good config");
            SidecarMessage::Nack {
                version: version.clone(),
                error,
            }
        };
        if config.namespace != self.namespace {
            return nack(format!(
                "snapshot is for namespace {:?}, this sidecar serves {:?}",
                config.namespace, self.namespace
            ));
        }
        if self.have_config && config.version() == state.config.get().version {
            metrics.config_reloads.with_label_values(&["unchanged"]).inc();
            state.set_ready(true);
            return SidecarMessage::Ack { version };
        }
        let cached = CachedConfig {
            version: version.clone(),
            config,
        };
        let (to_build, m) = (cached.config.clone(), metrics.clone());
        let live = match tokio::task::spawn_blocking(move || LiveConfig::build(to_build, &m)).await {
            Ok(Ok(live)) => live,
            Ok(Err(e)) => return nack(e.to_string()),
            Err(e) => return nack(format!("building the config failed: {e}")),
        };
        tracing::info!(%version, topics = live.topics.len(), "operator config applied");
        metrics.config_reloads.with_label_values(&["ok"]).inc();
        metrics.set_config_version(&live.version);
        on_applied(&live);
        state.config.set(live);
        self.have_config = true;
        state.set_ready(true);
        if let Some(cache) = self.cache.clone() {
            match tokio::task::spawn_blocking(move || cache.store(&cached)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "config is live but could not be cached"),
                Err(e) => tracing::warn!(error = %e, "config cache task failed"),
            }
        }
        SidecarMessage::Ack { version }
    }
}

/// Deletes a topic's stored data; the answer is `purged`.
async fn purge(id: String, topic: String, state: &SidecarState) -> SidecarMessage {
    let error = match state.backend.purge_topic(&topic).await {
        Ok(()) => {
            tracing::info!(%topic, %id, "topic data purged at the operator's request");
            None
        }
        Err(e) => {
            tracing::warn!(%topic, %id, error = %e, "purging topic data failed");
            Some(e.to_string())
        }
    };
    SidecarMessage::Purged { id, topic, error }
}

/// How a config stream connection ended.
#[derive(Debug)]
enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Turns the event counters into per-second rates between two load reports.
#[derive(Debug, Default)]
struct LoadMeter {
    /// (when, events in, events out) at the previous report.
    last: Option<(Instant, u64, u64)>,
}

impl LoadMeter {
    fn sample(&mut self, state: &SidecarState) -> SidecarLoad {
        let (events_in, events_out) = state.metrics.event_totals();
        let now = Instant::now();
        let (in_rate, out_rate) = self.last.map_or((0.0, 0.0), |(at, i, o)| {
            let secs = now.duration_since(at).as_secs_f64();
            (rate(i, events_in, secs), rate(o, events_out, secs))
        });
        self.last = Some((now, events_in, events_out));
        let (queued, _subscriptions) = state.connections.totals();
        SidecarLoad {
            connections: state.connections.len() as u64,
            events_in_per_second: in_rate,
            events_out_per_second: out_rate,
            queue_depth: queued as u64,
        }
    }
}

/// Per-second rate of a counter that went from `before` to `after` in `secs`.
#[allow(clippy::cast_precision_loss)]
fn rate(before: u64, after: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    after.saturating_sub(before) as f64 / secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls() {
        assert_eq!(
            stream_url("http://op.eventcast:8081", "team-a", "web-0").expect("http"),
            "ws://op.eventcast:8081/v1/sidecars/stream?namespace=team-a&pod=web-0"
        );
        assert_eq!(
            stream_url("ws://127.0.0.1:9/", "default", "a b").expect("ws"),
            "ws://127.0.0.1:9/v1/sidecars/stream?namespace=default&pod=a%20b"
        );
        for bad in [
            "https://op:8081",
            "wss://op",
            "op:8081",
            "ftp://op",
            "http://",
            "http://op?x=1",
        ] {
            assert!(
                matches!(stream_url(bad, "d", "p"), Err(OperatorError::Url { .. })),
                "{bad}"
            );
        }
        let tls = stream_url("https://op:8081", "d", "p").expect_err("tls");
        assert!(tls.to_string().contains("TLS"), "{tls}");
    }

    #[test]
    fn rates_from_counter_deltas() {
        assert!((rate(100, 150, 5.0) - 10.0).abs() < f64::EPSILON);
        assert!(rate(100, 100, 5.0).abs() < f64::EPSILON);
        assert!(
            rate(100, 90, 5.0).abs() < f64::EPSILON,
            "a reset counter is no negative rate"
        );
        assert!(rate(0, 10, 0.0).abs() < f64::EPSILON);
    }

    #[test]
    fn cached_config_of_another_namespace_or_corrupt_is_not_served() {
        let metrics = Metrics::new().expect("metrics");
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ConfigCache::new(dir.path(), "team-a");
        cache
            .store(&CachedConfig {
                version: "v-x".into(),
                config: CompiledConfig {
                    namespace: "team-b".into(),
                    ..CompiledConfig::default()
                },
            })
            .expect("store");
        let mut source = OperatorSource::new("http://127.0.0.1:1", Some(dir.path()), "team-a", "p").expect("source");
        let initial = source.initial(&metrics).expect("initial");
        assert!(!initial.cached);
        assert_eq!(initial.live.compiled.namespace, "team-a");

        std::fs::write(cache.path(), "not json").expect("corrupt");
        let initial = source.initial(&metrics).expect("initial");
        assert!(
            !initial.cached,
            "a corrupted cache falls back to waiting for the operator"
        );

        let good = CompiledConfig {
            namespace: "team-a".into(),
            ..CompiledConfig::default()
        };
        cache
            .store(&CachedConfig {
                version: "v-a".into(),
                config: good.clone(),
            })
            .expect("store");
        let initial = source.initial(&metrics).expect("initial");
        assert!(initial.cached);
        assert_eq!(initial.live.version, good.version());
    }
}
