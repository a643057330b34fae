//! A config-stream client that behaves like a sidecar on the wire (acks or nacks every
//! snapshot, answers purges, reports load, reconnects) and records what it got. Tests
//! use it where a whole sidecar adds nothing, e.g. to make one sidecar reject a config.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use eventcast_api::CompiledConfig;
use eventcast_api::config_stream::{OperatorMessage, STREAM_PATH, SidecarLoad, SidecarMessage};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Default)]
struct Inner {
    snapshots: Mutex<Vec<(String, CompiledConfig)>>,
    purges: Mutex<Vec<String>>,
    nack_with: Mutex<Option<String>>,
    connected: AtomicBool,
    connects: AtomicUsize,
    /// Connections it reports in its load.
    load_connections: std::sync::atomic::AtomicU64,
}

/// A fake sidecar connected to one operator address.
#[derive(Debug)]
pub struct FakeSidecar {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for FakeSidecar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(url: &str, inner: &Inner) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    inner.connected.store(true, Ordering::SeqCst);
    inner.connects.fetch_add(1, Ordering::SeqCst);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            _ = tick.tick() => {
                let connections = inner.load_connections.load(Ordering::SeqCst);
                let load = SidecarMessage::Load(SidecarLoad { connections, ..SidecarLoad::default() });
                let text = serde_json::to_string(&load).unwrap_or_default();
                if let Err(e) = ws.send(Message::text(text)).await { break Err(e) }
            }
            msg = ws.next() => {
                let text = match msg {
                    None => break Ok(()),
                    Some(Err(e)) => break Err(e),
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) => break Ok(()),
                    Some(Ok(_)) => continue,
                };
                let Ok(parsed) = serde_json::from_str::<OperatorMessage>(text.as_str()) else { continue };
                let reply = match parsed {
                    OperatorMessage::Snapshot { version, config } => {
                        let nack = inner.nack_with.lock().clone();
                        inner.snapshots.lock().push((version.clone(), *config));
                        match nack {
                            Some(error) => SidecarMessage::Nack { version, error },
                            None => SidecarMessage::Ack { version },
                        }
                    }
                    OperatorMessage::Purge { id, topic } => {
                        inner.purges.lock().push(topic.clone());
                        SidecarMessage::Purged { id, topic, error: None }
                    }
                };
                let text = serde_json::to_string(&reply).unwrap_or_default();
                if let Err(e) = ws.send(Message::text(text)).await { break Err(e) }
            }
        }
    };
    inner.connected.store(false, Ordering::SeqCst);
    result
}

impl FakeSidecar {
    /// Connects to the operator's config stream at `addr` as `pod` of `namespace`, and
    /// keeps reconnecting every 100 ms while disconnected.
    pub fn connect(addr: std::net::SocketAddr, namespace: &str, pod: &str) -> Self {
        let inner = Arc::new(Inner::default());
        let url = format!("ws://{addr}{STREAM_PATH}?namespace={namespace}&pod={pod}");
        let task_inner = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let _ = session(&url, &task_inner).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { inner, task }
    }

    /// From now on, reject every snapshot with `error` (None: accept again).
    pub fn nack_with(&self, error: Option<&str>) {
        *self.inner.nack_with.lock() = error.map(str::to_owned);
    }

    /// From now on, report `connections` client connections in its load.
    pub fn report_connections(&self, connections: u64) {
        self.inner.load_connections.store(connections, Ordering::SeqCst);
    }

    /// The last snapshot received.
    pub fn latest(&self) -> Option<(String, CompiledConfig)> {
        self.inner.snapshots.lock().last().cloned()
    }

    /// Versions of every snapshot received, oldest first.
    pub fn versions(&self) -> Vec<String> {
        self.inner.snapshots.lock().iter().map(|(v, _)| v.clone()).collect()
    }

    /// Snapshots received so far.
    pub fn snapshot_count(&self) -> usize {
        self.inner.snapshots.lock().len()
    }

    /// Topics the operator asked this sidecar to purge.
    pub fn purges(&self) -> Vec<String> {
        self.inner.purges.lock().clone()
    }

    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::SeqCst)
    }

    /// How many times it connected.
    pub fn connects(&self) -> usize {
        self.inner.connects.load(Ordering::SeqCst)
    }

    /// Waits until the latest snapshot satisfies `check`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&CompiledConfig) -> bool) -> String {
        crate::eventually(what, timeout, || {
            let latest = self.latest();
            let ok = latest.filter(|(_, c)| check(c)).map(|(v, _)| v);
            async move { ok }
        })
        .await
    }
}
