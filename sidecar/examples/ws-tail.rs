//! A minimal `eventcast.v1` WebSocket client for trying the sidecar out: connects,
//! subscribes to one topic (optionally recovering from a position), and prints every
//! frame the server sends, one JSON object per line.
//!
//! ```sh
//! cargo run -q -p eventcast-sidecar --example ws-tail -- ws://127.0.0.1:8080/v1/ws chat.room-42
//! cargo run -q -p eventcast-sidecar --example ws-tail -- ws://127.0.0.1:8080/v1/ws chat.room-42 --since 3 --epoch EPOCH
//! EVENTCAST_TOKEN=... cargo run -q -p eventcast-sidecar --example ws-tail -- ws://127.0.0.1:8080/v1/ws orders.status --ack
//! ```
//!
//! With `--ack`, events that ask for an acknowledgement are acked as they arrive.

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(topic)) = (args.first(), args.get(1)) else {
        anyhow::bail!("usage: ws-tail WS_URL TOPIC [--since OFFSET --epoch EPOCH] [--ack]");
    };
    let auto_ack = args.iter().any(|a| a == "--ack");
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mut request = url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("eventcast.v1"));
    if let Ok(token) = std::env::var("EVENTCAST_TOKEN") {
        request
            .headers_mut()
            .insert("Authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let mut subscribe = json!({"op": "subscribe", "id": 1, "topic": topic});
    if let (Some(offset), Some(epoch)) = (flag("--since"), flag("--epoch")) {
        subscribe["since"] = json!({"offset": offset.parse::<u64>()?, "epoch": epoch});
    }
    ws.send(Message::text(subscribe.to_string())).await?;
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => {
                println!("{t}");
                let frame: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                if auto_ack && frame["op"] == "event" && frame["event"]["requiresAck"] == true {
                    let ack = json!({"op": "ack", "topic": frame["topic"], "offsets": [frame["offset"]]});
                    ws.send(Message::text(ack.to_string())).await?;
                }
            }
            Message::Close(frame) => {
                eprintln!("closed: {frame:?}");
                break;
            }
            _ => {}
        }
    }
    Ok(())
}
