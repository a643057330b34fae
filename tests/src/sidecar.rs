//! An in-process sidecar on ephemeral loopback ports, with its own manifest directory
//! (a fresh temp dir, or an existing directory such as `examples/`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eventcast_sidecar::server::{self, Running};
use eventcast_sidecar::settings::Settings;
use serde_json::Value;
use tempfile::TempDir;

use crate::http::HttpReply;
use crate::ws::{ConnectOptions, WsClient};

/// A running sidecar and the directory it reads manifests from.
///
/// Dropping it without [`TestSidecar::shutdown`] cancels the sidecar's shutdown token,
/// so its connections end with the test.
pub struct TestSidecar {
    running: Option<Running>,
    manifests: PathBuf,
    // Kept alive for the sidecar's lifetime; `None` for a directory the test did not create.
    _dir: Option<TempDir>,
    pub public_addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
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
        let running = server::start(Settings::for_tests(manifests.clone()))
            .await
            .unwrap_or_else(|e| panic!("sidecar failed to start on {}: {e}", manifests.display()));
        Self {
            public_addr: running.public_addr,
            local_addr: running.local_addr,
            metrics_addr: running.metrics_addr,
            running: Some(running),
            manifests,
            _dir: dir,
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

    /// The manifest directory the sidecar watches.
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
