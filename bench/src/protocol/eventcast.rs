//! Eventcast's client protocol v1: WebSocket subprotocol `eventcast.v1`, a
//! `{"op":"subscribe","id":1,"topic":T}` request answered by
//! `{"op":"reply","id":1,"ok":...}`, then `{"op":"event",...}` frames (parsed by
//! [`crate::frame`]); events are published with
//! `POST /v1/topics/{topic}/events` (or `POST /v1/events:batch`).

use anyhow::anyhow;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::arrival::ArrivalStream;
use crate::connections::{AttemptError, transient};
use crate::frame::{Frame, classify};

/// The WebSocket subprotocol of the client protocol.
pub const SUBPROTOCOL: &str = "eventcast.v1";
/// Default public WebSocket endpoint of a local sidecar.
pub const DEFAULT_WS: &str = "ws://127.0.0.1:8080/v1/ws";
/// Default local publish API of a local sidecar.
pub const DEFAULT_PUBLISH: &str = "http://127.0.0.1:7070";

/// Sends the subscribe request and waits for its reply.
pub(crate) async fn subscribe(ws: &mut WebSocketStream<ArrivalStream>, topic: &str) -> Result<(), AttemptError> {
    let req = serde_json::json!({"op": "subscribe", "id": 1, "topic": topic}).to_string();
    ws.send(Message::text(req))
        .await
        .map_err(|e| transient(anyhow::Error::new(e).context("sending subscribe")))?;
    loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                return Err(transient(anyhow::Error::new(e).context("awaiting subscribe reply")));
            }
            None => return Err(transient(anyhow!("closed before the subscribe reply"))),
        };
        let bytes: &[u8] = match &msg {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
            Message::Close(c) => {
                return Err(transient(anyhow!("closed before the subscribe reply: {c:?}")));
            }
            _ => continue,
        };
        match classify(bytes) {
            Frame::Reply {
                id: Some(1), ok: true, ..
            } => return Ok(()),
            Frame::Reply {
                id: Some(1),
                ok: false,
                error,
            } => {
                return Err(AttemptError::Fatal(anyhow!(
                    "subscribe to {topic:?} refused: {}",
                    error.unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
                )));
            }
            Frame::Disconnect => {
                return Err(transient(anyhow!("disconnected: {}", String::from_utf8_lossy(bytes))));
            }
            _ => {}
        }
    }
}
