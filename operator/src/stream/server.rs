//! The config stream endpoint: `GET /v1/sidecars/stream?namespace=NS&pod=NAME`,
//! upgraded to WebSocket. Sends the namespace's snapshot at once (when there is one)
//! and on every change or resync; reads acks, nacks, load reports and purge answers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eventcast_api::config_stream::{STREAM_PATH, SidecarMessage};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::registry::{Published, Registry};

/// A sidecar that sends nothing (it reports load every few seconds) for this long is
/// considered gone, so a half-open TCP connection cannot count as a connected sidecar.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// WebSocket pings keep idle paths (NAT, proxies) open.
const PING_EVERY: Duration = Duration::from_secs(10);
/// Largest message a sidecar may send.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
struct StreamState {
    registry: Arc<Registry>,
    shutdown: CancellationToken,
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    namespace: Option<String>,
    pod: Option<String>,
}

/// Router of the config stream listener.
pub fn router(registry: Arc<Registry>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route(STREAM_PATH, get(upgrade))
        .with_state(StreamState { registry, shutdown })
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({"error": {"code": "bad_request", "message": message}})),
    )
        .into_response()
}

/// Kubernetes object names: DNS-1123 labels/subdomains, at most 253 characters.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

async fn upgrade(State(state): State<StreamState>, Query(q): Query<StreamQuery>, ws: WebSocketUpgrade) -> Response {
    let (Some(namespace), Some(pod)) = (q.namespace, q.pod) else {
        return bad_request("query parameters `namespace` and `pod` are required");
    };
    if !valid_name(&namespace) || !valid_name(&pod) {
        return bad_request("`namespace` and `pod` must be Kubernetes object names");
    }
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(socket, namespace, pod, state))
}

async fn send_snapshot(socket: &mut WebSocket, registry: &Registry, id: u64, published: &Published) -> bool {
    let ok = socket.send(Message::Text(published.message.clone())).await.is_ok();
    if ok {
        registry.sent(id, published.seq);
    }
    ok
}

async fn serve(mut socket: WebSocket, namespace: String, pod: String, state: StreamState) {
    let registry = state.registry;
    let mut reg = registry.register(&namespace, &pod);
    let mut resync = registry.resync_signal();
    let current = reg.snapshots.borrow_and_update().clone();
    let mut ok = match current {
        Some(p) => send_snapshot(&mut socket, &registry, reg.id, &p).await,
        None => true,
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence = tokio::time::sleep(SILENCE_LIMIT);
    tokio::pin!(silence);
    while ok {
        tokio::select! {
            () = state.shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            changed = reg.snapshots.changed() => {
                if changed.is_err() { break; }
                let current = reg.snapshots.borrow_and_update().clone();
                if let Some(p) = current {
                    ok = send_snapshot(&mut socket, &registry, reg.id, &p).await;
                }
            }
            changed = resync.changed() => {
                if changed.is_err() { break; }
                let current = reg.snapshots.borrow().clone();
                if let Some(p) = current {
                    ok = send_snapshot(&mut socket, &registry, reg.id, &p).await;
                }
            }
            Some(cmd) = reg.commands.recv() => {
                match serde_json::to_string(&cmd) {
                    Ok(text) => ok = socket.send(Message::Text(Utf8Bytes::from(text))).await.is_ok(),
                    Err(e) => tracing::error!(error = %e, "serializing a sidecar command"),
                }
            }
            _ = ping.tick() => {
                ok = socket.send(Message::Ping(Default::default())).await.is_ok();
            }
            () = &mut silence => {
                tracing::warn!(%namespace, %pod, "sidecar silent for {SILENCE_LIMIT:?}; dropping its connection");
                break;
            }
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break };
                silence.as_mut().reset(tokio::time::Instant::now() + SILENCE_LIMIT);
                match msg {
                    Message::Text(text) => handle_message(&registry, reg.id, &namespace, &pod, text.as_str()),
                    Message::Close(_) => break,
                    Message::Binary(_) => tracing::warn!(%namespace, %pod, "ignoring a binary message on the config stream"),
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        }
    }
    registry.unregister(reg.id);
}

fn handle_message(registry: &Registry, id: u64, namespace: &str, pod: &str, text: &str) {
    match serde_json::from_str::<SidecarMessage>(text) {
        Ok(SidecarMessage::Ack { version }) => registry.ack(id, &version),
        Ok(SidecarMessage::Nack { version, error }) => registry.nack(id, &version, &error),
        Ok(SidecarMessage::Load(load)) => registry.load(id, load),
        Ok(SidecarMessage::Purged { id: purge, error, .. }) => registry.purged(&purge, error),
        Err(e) => tracing::warn!(namespace, pod, error = %e, "malformed message on the config stream; ignored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("demo"));
        assert!(valid_name("chat-app-7d9f.x"));
        assert!(!valid_name(""));
        assert!(!valid_name("Demo"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(254)));
    }
}
