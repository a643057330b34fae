//! The per-connection reader loop of a subscribed client: classifies every
//! server frame with the system's protocol, answers protocol-level pings
//! (Socket.IO), times events against their send timestamp (at the kernel's
//! arrival stamp and at the read, see [`arrival`](crate::arrival)) and hands the
//! observations to the shared [`Recorder`] in small batches (one lock per
//! batch of messages that were already buffered).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::arrival::ArrivalStream;
use crate::frame::Frame;
use crate::latency::{Batch, Recorder, unix_nanos};
use crate::protocol::System;

/// At most this many already-buffered messages are handled per lock.
const MAX_BATCH: usize = 64;
/// How long a requested close may take before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Records one message that arrived at `arrived` (unix nanos); returns whether
/// it was a ping to answer.
fn observe(system: System, msg: &Message, arrived: u64, batch: &mut Batch, record_from: u64) -> bool {
    let bytes: &[u8] = match msg {
        Message::Text(t) => t.as_bytes(),
        Message::Binary(b) => b,
        _ => return false,
    };
    match system.classify(bytes) {
        Frame::Event { t } => batch.event(t, arrived, unix_nanos(), record_from),
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
    mut ws: WebSocketStream<ArrivalStream>,
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
    // Reads of the handshake and the subscribe reply are not events: count from here.
    let mut unstamped = ws.get_ref().unstamped();
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
                Some(Ok(msg)) => {
                    let arrived = ws.get_ref().last_arrival();
                    pings += usize::from(observe(system, &msg, arrived, &mut batch, record_from));
                }
                Some(Err(_)) | None => {
                    batch.unstamped_reads(ws.get_ref().unstamped() - unstamped);
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
        let now_unstamped = ws.get_ref().unstamped();
        batch.unstamped_reads(now_unstamped - unstamped);
        unstamped = now_unstamped;
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
