//! Socket.IO 4 over a raw WebSocket (Engine.IO protocol v4, WebSocket transport
//! only, default namespace `/`), against the peer server in
//! `bench/peers/socketio/server.js`.
//!
//! Handshake: `GET /socket.io/?EIO=4&transport=websocket` upgrades directly; the
//! server sends the Engine.IO open packet `0{"sid":..,"pingInterval":..}`, the
//! client connects to the namespace with `40` and gets `40{"sid":..}` (or a
//! connect error `44{...}`), then emits `421["subscribe","<topic>"]` (ack id 1)
//! and waits for the acknowledgement `431[{"ok":true}]`: the socket has joined
//! the topic's room. Events arrive as `42["event",<published body>]`. The
//! server pings with `2` every `pingInterval` and closes connections that do
//! not answer `3`, so the subscriber loop answers pings ([`Frame::Ping`]).
//!
//! Publishing is `POST /publish/{topic}` on the same server, whose body the
//! server emits to the room as-is.

use anyhow::anyhow;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::arrival::ArrivalStream;
use crate::connections::{AttemptError, transient};
use crate::endpoint::{HttpEndpoint, percent_encode};
use crate::frame::{Frame, event_t};

/// Default Engine.IO WebSocket URL of a local peer server (`PORT=3000`).
pub const DEFAULT_WS: &str = "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket";
/// Engine.IO pong, the answer to a ping `2`.
pub const PONG: &str = "3";
/// Engine.IO ping sent by the server.
const PING: &[u8] = b"2";
/// Socket.IO connect to the default namespace.
const CONNECT: &str = "40";
/// Ack id of the subscribe emit.
const SUBSCRIBE_ACK_ID: u64 = 1;

/// `POST` path of the peer server's publish endpoint for `topic`.
pub fn publish_path(endpoint: &HttpEndpoint, topic: &str) -> String {
    format!("{}/publish/{}", endpoint.prefix, percent_encode(topic))
}

/// Leading ASCII digits of `b` as a number, and the rest.
fn split_id(b: &[u8]) -> (Option<u64>, &[u8]) {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let id = std::str::from_utf8(&b[..n]).ok().and_then(|s| s.parse().ok());
    (id, &b[n..])
}

/// `43<id>[...]` acknowledgement: `ok` unless its first argument has `"ok":false`
/// or an `error`.
fn ack(rest: &[u8]) -> Frame {
    let (id, args) = split_id(rest);
    let Ok(serde_json::Value::Array(args)) = serde_json::from_slice::<serde_json::Value>(args) else {
        return Frame::Other;
    };
    let first = args.first();
    let error = first.and_then(|a| a.get("error")).map(ToString::to_string);
    let ok = error.is_none() && first.and_then(|a| a.get("ok")).and_then(serde_json::Value::as_bool) != Some(false);
    Frame::Reply { id, ok, error }
}

/// Whether a `42` event payload (`[name, args...]`) is named `"event"`; returns
/// the arguments part.
fn event_args(b: &[u8]) -> Option<&[u8]> {
    let rest = b.strip_prefix(b"[")?;
    let start = rest.iter().position(|c| !c.is_ascii_whitespace())?;
    rest[start..].strip_prefix(br#""event""#)
}

/// Classifies one Engine.IO packet (one WebSocket text message).
pub fn classify(b: &[u8]) -> Frame {
    match b {
        PING => Frame::Ping,
        // Engine.IO close, Socket.IO disconnect / connect error.
        b"1" => Frame::Disconnect,
        [b'4', b'1', ..] | [b'4', b'4', ..] => Frame::Disconnect,
        [b'4', b'2', rest @ ..] => {
            // Events from the server carry no ack id; tolerate one anyway.
            let (_, payload) = split_id(rest);
            match event_args(payload) {
                Some(args) => Frame::Event { t: event_t(args) },
                None => Frame::Other,
            }
        }
        [b'4', b'3', rest @ ..] => ack(rest),
        _ => Frame::Other,
    }
}

/// The next text or binary message's payload, answering pings on the way.
async fn next_packet(ws: &mut WebSocketStream<ArrivalStream>, awaiting: &str) -> Result<Vec<u8>, AttemptError> {
    loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(transient(anyhow::Error::new(e).context(format!("awaiting {awaiting}")))),
            None => return Err(transient(anyhow!("closed while awaiting {awaiting}"))),
        };
        let payload = match msg {
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Binary(b) => b.to_vec(),
            Message::Close(c) => return Err(transient(anyhow!("closed while awaiting {awaiting}: {c:?}"))),
            _ => continue,
        };
        if payload == PING {
            ws.send(Message::text(PONG))
                .await
                .map_err(|e| transient(anyhow::Error::new(e).context("answering ping")))?;
            continue;
        }
        return Ok(payload);
    }
}

async fn send(ws: &mut WebSocketStream<ArrivalStream>, text: String, what: &str) -> Result<(), AttemptError> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| transient(anyhow::Error::new(e).context(format!("sending {what}"))))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Engine.IO open, namespace connect, `subscribe` emit and its ack.
pub(crate) async fn subscribe(ws: &mut WebSocketStream<ArrivalStream>, topic: &str) -> Result<(), AttemptError> {
    loop {
        let p = next_packet(ws, "the Engine.IO open packet").await?;
        match p.first() {
            Some(b'0') => break,
            Some(b'1') => return Err(transient(anyhow!("Engine.IO closed before open"))),
            _ => {}
        }
    }
    send(ws, CONNECT.to_owned(), "namespace connect").await?;
    loop {
        let p = next_packet(ws, "the namespace connect reply").await?;
        if p.starts_with(b"40") {
            break;
        }
        if p.starts_with(b"44") {
            return Err(AttemptError::Fatal(anyhow!("namespace connect refused: {}", lossy(&p))));
        }
        if p == b"1" || p.starts_with(b"41") {
            return Err(transient(anyhow!(
                "disconnected before the namespace connect: {}",
                lossy(&p)
            )));
        }
    }
    let topic_json =
        serde_json::to_string(topic).map_err(|e| AttemptError::Fatal(anyhow::Error::new(e).context("topic")))?;
    send(
        ws,
        format!("42{SUBSCRIBE_ACK_ID}[\"subscribe\",{topic_json}]"),
        "subscribe",
    )
    .await?;
    loop {
        let p = next_packet(ws, "the subscribe ack").await?;
        match classify(&p) {
            Frame::Reply { id, ok: true, .. } if id == Some(SUBSCRIBE_ACK_ID) => return Ok(()),
            Frame::Reply { id, ok: false, error } if id == Some(SUBSCRIBE_ACK_ID) => {
                return Err(AttemptError::Fatal(anyhow!(
                    "subscribe to {topic:?} refused: {}",
                    error.unwrap_or_else(|| lossy(&p))
                )));
            }
            Frame::Disconnect => return Err(transient(anyhow!("disconnected: {}", lossy(&p)))),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        let f = br#"42["event",{"type":"bench.tick","data":{"t":1700000000123456789,"pad":"xx"}}]"#;
        assert_eq!(
            classify(f),
            Frame::Event {
                t: Some(1_700_000_000_123_456_789)
            }
        );
        assert_eq!(classify(br#"42[ "event",{"x":1}]"#), Frame::Event { t: None });
        assert_eq!(
            classify(br#"427["event",{"data":{"t":5}}]"#),
            Frame::Event { t: Some(5) }
        );
        assert_eq!(classify(br#"42["other",{"data":{"t":5}}]"#), Frame::Other);
        assert_eq!(classify(b"42"), Frame::Other);
    }

    #[test]
    fn control_packets() {
        assert_eq!(classify(b"2"), Frame::Ping);
        assert_eq!(classify(b"3"), Frame::Other);
        assert_eq!(classify(b"1"), Frame::Disconnect);
        assert_eq!(classify(b"41"), Frame::Disconnect);
        assert_eq!(classify(br#"44{"message":"no"}"#), Frame::Disconnect);
        assert_eq!(classify(br#"0{"sid":"a","pingInterval":25000}"#), Frame::Other);
        assert_eq!(classify(br#"40{"sid":"b"}"#), Frame::Other);
        assert_eq!(classify(b""), Frame::Other);
    }

    #[test]
    fn acks() {
        assert_eq!(
            classify(br#"431[{"ok":true}]"#),
            Frame::Reply {
                id: Some(1),
                ok: true,
                error: None
            }
        );
        assert!(matches!(
            classify(br#"431[{"ok":false,"error":"bad topic"}]"#),
            Frame::Reply { id: Some(1), ok: false, error: Some(ref e) } if e.contains("bad topic")
        ));
        assert_eq!(
            classify(b"43[]"),
            Frame::Reply {
                id: None,
                ok: true,
                error: None
            }
        );
        assert_eq!(classify(b"431[not json"), Frame::Other);
        assert_eq!(classify(b"4399999999999999999999999[{}]"), classify(b"43[{}]"));
    }

    #[test]
    fn mangled_input_never_panics() {
        let f: &[u8] = br#"42["event",{"type":"bench.tick","data":{"t":123,"pad":"x"}}]"#;
        for end in 0..=f.len() {
            let _ = classify(&f[..end]);
            let _ = classify(&f[end..]);
        }
    }
}
