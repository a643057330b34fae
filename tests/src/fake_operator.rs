//! A stand-in for the operator's config stream (`GET /v1/sidecars/stream`, WebSocket)
//! on an ephemeral loopback port: it sends the current snapshot to every sidecar that
//! connects and whatever the test pushes later, and records every message the sidecars
//! send (`ack`, `nack`, `load`, `purged`) plus how each connection ended.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use eventcast_api::CompiledConfig;
use eventcast_api::config_stream::{OperatorMessage, STREAM_PATH};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Recorded {
    /// Messages from sidecars, in arrival order; connection ends as `{"closed": code}`.
    messages: Vec<Value>,
    /// Query parameters of every accepted connection.
    connections: Vec<HashMap<String, String>>,
}

struct Shared {
    snapshot: Mutex<Option<String>>,
    push: broadcast::Sender<String>,
    recorded: Mutex<Recorded>,
    changed: Notify,
    stop: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running fake operator.
pub struct FakeOperator {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for FakeOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOperator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeOperator {
    /// Starts on an ephemeral loopback port.
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (e.g. the port of an operator that was stopped), retrying the
    /// bind for a few seconds.
    pub async fn start_on(addr: SocketAddr) -> Self {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("binding the fake operator on {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("binding the fake operator on {addr}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("fake operator address");
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(None),
            push: broadcast::channel(64).0,
            recorded: Mutex::new(Recorded::default()),
            changed: Notify::new(),
            stop: CancellationToken::new(),
        });
        let app = Router::new()
            .route(STREAM_PATH, get(upgrade))
            .with_state(shared.clone());
        let stop = shared.stop.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        Self { addr, shared, server }
    }

    /// The URL a sidecar's `--operator` takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes `config` the current snapshot (sent to sidecars that connect later) and
    /// pushes it to the connected ones.
    pub fn send_snapshot(&self, version: &str, config: &CompiledConfig) {
        let text = serde_json::to_string(&OperatorMessage::Snapshot {
            version: version.to_owned(),
            config: Box::new(config.clone()),
        })
        .expect("encode snapshot");
        *lock(&self.shared.snapshot) = Some(text.clone());
        let _ = self.shared.push.send(text);
    }

    /// Asks the connected sidecars to purge `topic`.
    pub fn send_purge(&self, id: &str, topic: &str) {
        let text = serde_json::to_string(&OperatorMessage::Purge {
            id: id.to_owned(),
            topic: topic.to_owned(),
        })
        .expect("encode purge");
        let _ = self.shared.push.send(text);
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Value> {
        lock(&self.shared.recorded).messages.clone()
    }

    /// Query parameters of every connection accepted so far.
    pub fn connections(&self) -> Vec<HashMap<String, String>> {
        lock(&self.shared.recorded).connections.clone()
    }

    /// The first message (received before or within `timeout`) that `pred` accepts.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if let Some(found) = lock(&self.shared.recorded).messages.iter().find(|m| pred(m)) {
                return Some(found.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// The answer to the snapshot of `version` (`ack` or `nack`).
    pub async fn answer_to(&self, version: &str, timeout: Duration) -> Option<Value> {
        self.wait_for(timeout, |m| {
            matches!(m["type"].as_str(), Some("ack" | "nack")) && m["version"] == version
        })
        .await
    }

    /// Closes every connection (close frame, code 1001) and stops listening.
    pub async fn stop(self) {
        self.shared.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.server).await;
    }
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    lock(&shared.recorded).connections.push(query);
    ws.on_upgrade(move |socket| session(socket, shared))
}

async fn session(mut socket: WebSocket, shared: Arc<Shared>) {
    let mut pushes = shared.push.subscribe();
    let current = lock(&shared.snapshot).clone();
    if let Some(snapshot) = current
        && socket.send(Message::Text(snapshot.into())).await.is_err()
    {
        return;
    }
    let record = |v: Value| {
        lock(&shared.recorded).messages.push(v);
        shared.changed.notify_waiters();
    };
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => {
                let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: 1001,
                    reason: "operator stopping".into(),
                }))).await;
                return;
            }
            push = pushes.recv() => match push {
                Ok(text) => if socket.send(Message::Text(text.into())).await.is_err() { return },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    record(serde_json::from_str(text.as_str()).unwrap_or_else(|_| json!({"unparsed": text.as_str()})));
                }
                Some(Ok(Message::Close(frame))) => {
                    record(json!({"closed": frame.map(|f| f.code)}));
                    return;
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => {
                    record(json!({"closed": null}));
                    return;
                }
            },
        }
    }
}
