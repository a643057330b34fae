//! An in-process sidecar on ephemeral loopback ports, with its own manifest directory
//! (a fresh temp dir, or an existing directory such as `examples/`), on the backend
//! that `EVENTCAST_TEST_BACKEND` names ([`Backend`]): the behavioural suite is one suite,
//! run against each backend.
//!
//! **Redis.** With `EVENTCAST_TEST_BACKEND=redis`, every sidecar uses the real Redis
//! Cluster of `EVENTCAST_TEST_REDIS_CLUSTER` (see [`crate::redis_cluster`]) in a
//! namespace of its own (`t-<16 hex digits>`). The backend's keys start with
//! `ec:<namespace>:`, so each sidecar finds fresh topics (offset 1, empty history, no
//! presence, no idempotency keys, full rate-limit buckets) although the tests use fixed
//! topic names, run in parallel and leave their data in the cluster: no flushing, no
//! serialization. Each sidecar also holds [`RedisCluster::shared`] for its lifetime, so
//! it never runs while a test of its process changes the cluster's topology.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use eventcast_sidecar::server::{self, Running};
use eventcast_sidecar::settings::Settings;
use serde_json::Value;
use tempfile::TempDir;

use crate::http::HttpReply;
use crate::redis_cluster::{self, RedisCluster, SharedGuard};
use crate::ws::{ConnectOptions, WsClient};

/// Names the backend [`TestSidecar`]s run on: `memory` (the default) or `redis`.
pub const ENV_BACKEND: &str = "EVENTCAST_TEST_BACKEND";

/// The backend the behavioural suite runs against ([`ENV_BACKEND`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded in-process backend.
    Memory,
    /// The Redis Cluster of `EVENTCAST_TEST_REDIS_CLUSTER`.
    Redis,
}

impl Backend {
    /// The backend named by [`ENV_BACKEND`]; [`Backend::Memory`] when it is unset or empty.
    ///
    /// # Panics
    /// When it names another backend.
    pub fn from_env() -> Self {
        match std::env::var(ENV_BACKEND).as_deref().map(str::trim) {
            Err(_) | Ok("" | "memory") => Self::Memory,
            Ok("redis") => Self::Redis,
            Ok(other) => panic!("{ENV_BACKEND}={other:?}: expected `memory` or `redis`"),
        }
    }

    /// Whether the suite runs against Redis.
    pub fn is_redis() -> bool {
        Self::from_env() == Self::Redis
    }

    /// The name the sidecar reports (`/v1/stats` `backend`) and `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

/// For the rare test that cannot hold on the Redis backend: says so on stderr, with
/// `reason`, and returns `true` when the suite runs against Redis (the test then returns).
///
/// ```ignore
/// if skip_on_redis("...why...") { return; }
/// ```
pub fn skip_on_redis(reason: &str) -> bool {
    let skip = Backend::is_redis();
    if skip {
        eprintln!("skipped on redis: {reason}");
    }
    skip
}

/// A namespace no other sidecar (of this or an earlier run) uses: a DNS label.
fn unique_namespace() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one((n, std::process::id(), SystemTime::now()));
    format!("t-{random:016x}")
}

/// Settings for a sidecar on `manifests`, on the backend of [`ENV_BACKEND`], with the
/// guard a Redis-backed sidecar holds.
async fn settings(manifests: PathBuf) -> (Settings, Option<SharedGuard>) {
    let settings = Settings::for_tests(manifests);
    match Backend::from_env() {
        Backend::Memory => (settings, None),
        Backend::Redis => {
            let nodes = std::env::var(redis_cluster::ENV_NODES)
                .ok()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| {
                    panic!(
                        "{ENV_BACKEND}=redis needs {} (the Redis Cluster's nodes, host:port,...): \
                         start one with `bash e2e/redis-cluster.sh start` and export \
                         {}=$(bash e2e/redis-cluster.sh nodes), or run scripts/test.sh",
                        redis_cluster::ENV_NODES,
                        redis_cluster::ENV_NODES,
                    )
                });
            let guard = RedisCluster::shared().await;
            let mut settings = settings.with_redis_cluster(nodes.trim());
            settings.namespace = unique_namespace();
            (settings, Some(guard))
        }
    }
}

/// A running sidecar and the directory it reads manifests from.
///
/// Dropping it without [`TestSidecar::shutdown`] cancels the sidecar's shutdown token,
/// so its connections end with the test.
pub struct TestSidecar {
    running: Option<Running>,
    manifests: PathBuf,
    // Kept alive for the sidecar's lifetime; `None` for a directory the test did not create.
    _dir: Option<TempDir>,
    // On the Redis backend: no topology change while the sidecar runs (dropped after it).
    _cluster: Option<SharedGuard>,
    pub public_addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    namespace: String,
    http: reqwest::Client,
}

impl TestSidecar {
    /// Writes `files` (name, YAML) into a fresh directory and starts a sidecar on it.
    pub async fn start(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir for manifests");
        for (name, yaml) in files {
            std::fs::write(dir.path().join(name), yaml).expect("write manifest");
        }
        let path = dir.path().to_owned();
        Self::start_on(path, Some(dir)).await
    }

    /// Starts a sidecar on an existing manifest directory (not modified by the sidecar).
    pub async fn start_in(dir: &Path) -> Self {
        Self::start_on(dir.to_owned(), None).await
    }

    async fn start_on(manifests: PathBuf, dir: Option<TempDir>) -> Self {
        let (settings, cluster) = settings(manifests.clone()).await;
        let backend = settings.backend;
        let namespace = settings.namespace.clone();
        let running = server::start(settings).await.unwrap_or_else(|e| {
            panic!(
                "sidecar ({backend:?} backend) failed to start on {}: {e}",
                manifests.display()
            )
        });
        Self {
            public_addr: running.public_addr,
            local_addr: running.local_addr,
            metrics_addr: running.metrics_addr,
            running: Some(running),
            manifests,
            _dir: dir,
            _cluster: cluster,
            namespace,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("build HTTP client"),
        }
    }

    /// `ws://.../v1/ws` on the public listener.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.public_addr)
    }

    /// A URL on the local (app-facing) listener, `path` starting with `/`.
    pub fn local_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.local_addr)
    }

    /// A URL on the public listener (health probes).
    pub fn public_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public_addr)
    }

    /// `http://.../metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// The namespace the sidecar serves.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The manifest directory the sidecar watches (the state directory of a sidecar
    /// configured by an operator).
    pub fn manifest_dir(&self) -> &Path {
        &self.manifests
    }

    /// Replaces (or adds) a manifest file atomically, as `kubectl`-style tooling or a
    /// ConfigMap volume update would: written beside it under a name the sidecar ignores,
    /// then renamed over it.
    pub fn write_manifest(&self, name: &str, yaml: &str) {
        let tmp = self.manifests.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, yaml).expect("write manifest");
        std::fs::rename(&tmp, self.manifests.join(name)).expect("rename manifest into place");
    }

    /// Connects an anonymous WebSocket client.
    pub async fn client(&self) -> WsClient {
        WsClient::connect(&self.ws_url()).await
    }

    /// Connects a client authenticated by `?token=`.
    pub async fn client_with_token(&self, token: &str) -> WsClient {
        WsClient::connect_with(
            &self.ws_url(),
            ConnectOptions {
                token: Some(token.to_owned()),
                ..ConnectOptions::default()
            },
        )
        .await
        .expect("connect with ?token=")
    }

    /// `POST` a JSON body to the local API.
    pub async fn post(&self, path: &str, body: &Value) -> HttpReply {
        HttpReply::from(self.http.post(self.local_url(path)).json(body)).await
    }

    /// `POST` a JSON body to the local API with extra headers.
    pub async fn post_with_headers(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> HttpReply {
        let mut req = self.http.post(self.local_url(path)).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        HttpReply::from(req).await
    }

    /// `POST` raw bytes (for malformed bodies).
    pub async fn post_raw(&self, path: &str, body: &str) -> HttpReply {
        HttpReply::from(
            self.http
                .post(self.local_url(path))
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    /// `POST /v1/topics/{topic}/events`.
    pub async fn publish(&self, topic: &str, event: &Value) -> HttpReply {
        self.post(&format!("/v1/topics/{topic}/events"), event).await
    }

    /// Publishes and asserts `202`; returns the body (`id`, `topic`, `offset`, `epoch`).
    pub async fn publish_ok(&self, topic: &str, event: &Value) -> Value {
        let r = self.publish(topic, event).await;
        assert_eq!(r.status, 202, "publish to {topic} refused: {}", r.body);
        r.body
    }

    /// `GET` on the local API.
    pub async fn get(&self, path: &str) -> HttpReply {
        HttpReply::from(self.http.get(self.local_url(path))).await
    }

    /// `GET` any URL.
    pub async fn get_url(&self, url: &str) -> HttpReply {
        HttpReply::from(self.http.get(url)).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let r = self.get_url(&self.metrics_url()).await;
        assert_eq!(r.status, 200, "GET /metrics");
        r.text
    }

    /// Names of the topics the sidecar currently serves (`GET /v1/topics`).
    pub async fn topic_names(&self) -> Vec<String> {
        let r = self.get("/v1/topics").await;
        assert_eq!(r.status, 200, "GET /v1/topics: {}", r.body);
        r.body["topics"]
            .as_array()
            .expect("topics is an array")
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Graceful shutdown: returns when the sidecar has drained and stopped.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

impl Drop for TestSidecar {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.state.shutdown.cancel();
        }
    }
}

// Additive: a sidecar on settings of the test's choosing (the Redis backend's tests
// start theirs through `redis_sidecar.rs`). Kept apart from the constructors above.
impl TestSidecar {
    /// Writes `files` (name, YAML) into a fresh directory and starts a sidecar on the
    /// settings `settings` makes for that directory (e.g. `Settings::for_tests(dir)`
    /// with a Redis Cluster).
    pub async fn start_with_settings(files: &[(&str, &str)], settings: impl FnOnce(PathBuf) -> Settings) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir for manifests");
        for (name, yaml) in files {
            std::fs::write(dir.path().join(name), yaml).expect("write manifest");
        }
        let manifests = dir.path().to_owned();
        let settings = settings(manifests.clone());
        let namespace = settings.namespace.clone();
        let running = server::start(settings)
            .await
            .unwrap_or_else(|e| panic!("sidecar failed to start on {}: {e}", manifests.display()));
        Self {
            public_addr: running.public_addr,
            local_addr: running.local_addr,
            metrics_addr: running.metrics_addr,
            running: Some(running),
            manifests,
            _dir: Some(dir),
            // The caller chose the backend and takes its own cluster guard.
            _cluster: None,
            namespace,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("build HTTP client"),
        }
    }
}

// Additive: a sidecar configured by an operator (`--operator URL --state-dir DIR`).
impl TestSidecar {
    /// Starts a sidecar on the backend of [`ENV_BACKEND`] that takes its config from
    /// the operator at `operator_url` (`http://host:port`) and caches it in `state_dir`.
    /// `namespace`: `None` for the backend's usual choice (`default` on memory, a fresh
    /// one on Redis); a second sidecar that must find the first one's cache passes the
    /// first one's [`TestSidecar::namespace`]. Start-up does not wait for the operator.
    pub async fn start_with_operator(operator_url: &str, state_dir: &Path, namespace: Option<&str>) -> Self {
        let (mut settings, cluster) = settings(state_dir.to_owned()).await;
        settings.manifests = None;
        settings.operator = Some(operator_url.to_owned());
        settings.state_dir = Some(state_dir.to_owned());
        if let Some(ns) = namespace {
            ns.clone_into(&mut settings.namespace);
        }
        let namespace = settings.namespace.clone();
        let running = server::start(settings)
            .await
            .unwrap_or_else(|e| panic!("sidecar failed to start on operator {operator_url}: {e}"));
        Self {
            public_addr: running.public_addr,
            local_addr: running.local_addr,
            metrics_addr: running.metrics_addr,
            running: Some(running),
            manifests: state_dir.to_owned(),
            _dir: None,
            _cluster: cluster,
            namespace,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("build HTTP client"),
        }
    }
}
