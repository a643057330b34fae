//! The per-connection reader loop of a subscribed client: classifies every
//! server frame with the system's protocol, answers protocol-level pings
//! (Socket.IO), times events against their send timestamp and hands the
//! observations to the shared [`Recorder`] in small batches (one lock per
//! batch of messages that were already buffered).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::frame::Frame;
use crate::latency::{Batch, Recorder, unix_nanos};
use crate::protocol::System;

/// At most this many already-buffered messages are handled per lock.
const MAX_BATCH: usize = 64;
/// How long a requested close may take before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Records one message; returns whether it was a ping to answer.
fn observe(system: System, msg: &Message, batch: &mut Batch, record_from: u64) -> bool {
    let bytes: &[u8] = match msg {
        Message::Text(t) => t.as_bytes(),
        Message::Binary(b) => b,
        _ => return false,
    };
    match system.classify(bytes) {
        Frame::Event { t } => batch.event(t, unix_nanos(), record_from),
        Frame::Lagged => batch.lagged(),
        Frame::Disconnect => batch.disconnect(),
        Frame::Ping => return true,
        Frame::Reply { .. } | Frame::Other => {}
    }
    false
}

/// Reads `ws` until the server closes it or `shutdown` turns true, recording
/// into shard `key` of `rec`. An unrequested end counts as a closed connection.
pub async fn run(
    mut ws: WebSocketStream<TcpStream>,
    system: System,
    key: usize,
    rec: Arc<Recorder>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch = Batch::default();
    if *shutdown.borrow_and_update() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
        return;
    }
    // Created once: a `changed()` future per message would register with and leave
    // the channel's waiter list (a lock shared by every connection) each time.
    let mut stop = std::pin::pin!(shutdown.changed());
    loop {
        let mut next = tokio::select! {
            biased;
            _ = &mut stop => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
                return;
            }
            m = ws.next() => m,
        };
        let record_from = rec.record_from();
        let mut handled = 0;
        let mut pings = 0;
        loop {
            match next {
                Some(Ok(msg)) => pings += usize::from(observe(system, &msg, &mut batch, record_from)),
                Some(Err(_)) | None => {
                    rec.apply(key, &mut batch);
                    rec.connection_closed();
                    return;
                }
            }
            handled += 1;
            if handled >= MAX_BATCH {
                break;
            }
            // Take messages that are already decoded or buffered without waiting.
            match ws.next().now_or_never() {
                Some(m) => next = m,
                None => break,
            }
        }
        rec.apply(key, &mut batch);
        if let Some(pong) = system.pong() {
            for _ in 0..pings {
                if ws.send(Message::text(pong)).await.is_err() {
                    rec.connection_closed();
                    return;
                }
            }
        }
    }
}
