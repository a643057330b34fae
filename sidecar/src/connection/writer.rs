//! The write half of a connection: drains the outbox in batches (many frames, one
//! flush), sends heartbeats, enforces the idle timeout and token expiry, redelivers
//! unacked events and dead-letters them after their retries, and on shutdown flushes
//! what is queued before a `disconnect` with `reconnect: true`.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use eventcast_api::protocol::{PublishRequest, ServerFrame, disconnect_code};
use serde_json::json;
use tokio::time::{sleep_until, timeout};

use super::acks::Due;
use super::outbox::{CloseReason, Outgoing};
use super::session::Shared;
use super::socket::Socket;
use crate::event::{SharedEvent, unix_ms};
use crate::publish::Origin;

/// How long shutdown waits for a connection's queue to drain.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365);

#[derive(Debug)]
struct WriteError;

/// Turns taken frames into messages, counting deliveries and tracking acks.
fn to_messages(shared: &Shared, batch: &mut Vec<Outgoing>, out: &mut VecDeque<Message>) {
    let metrics = &shared.state.metrics;
    let now = Instant::now();
    for item in batch.drain(..) {
        let msg = match item {
            Outgoing::Control(text) => Message::Text(text),
            Outgoing::Lagged(text) => {
                metrics.lagged.inc();
                Message::Text(text)
            }
            Outgoing::Event(ev) => {
                ev.count_delivery(metrics, now);
                if ev.ack.is_some() {
                    shared.acks.lock().on_sent(&ev, now);
                }
                Message::Text(ev.frame.clone())
            }
        };
        out.push_back(msg);
    }
}

/// Writes everything queued now (and finishes a flush a direct write left); `Err`
/// when the socket is gone or stuck for `flush_timeout`.
async fn drain(
    socket: &Socket,
    shared: &Shared,
    batch: &mut Vec<Outgoing>,
    pending: &mut VecDeque<Message>,
    max_batch: usize,
    flush_timeout: Duration,
) -> Result<(), WriteError> {
    let outbox = &shared.info.outbox;
    loop {
        let taken = socket.begin_drain(|| outbox.take_batch(max_batch, unix_ms(), batch));
        to_messages(shared, batch, pending);
        match timeout(flush_timeout, poll_fn(|cx| socket.poll_send(cx, pending))).await {
            Ok(Ok(())) => {}
            _ => return Err(WriteError),
        }
        if taken == 0 && socket.end_drain(|| outbox.drained()) {
            return Ok(());
        }
    }
}

async fn send_disconnect(socket: &Socket, reason: &CloseReason) {
    let frame = ServerFrame::Disconnect {
        code: reason.code,
        reason: reason.reason.clone(),
        reconnect: reason.reconnect,
    };
    let close = CloseFrame {
        code: reason.code,
        // Close-frame reasons are limited to 123 bytes; the JSON frame carries the full text.
        reason: Utf8Bytes::from(truncate(&reason.reason, 120)),
    };
    let msgs = [
        Message::Text(Utf8Bytes::from(frame.to_json())),
        Message::Close(Some(close)),
    ];
    let _ = timeout(Duration::from_secs(1), socket.send(msgs)).await;
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

async fn dead_letter(shared: &Shared, ev: &SharedEvent, sends: u32) {
    ev.metrics.dead_lettered.inc();
    let Some(dlq) = ev.ack.as_ref().and_then(|a| a.dead_letter_topic.clone()) else {
        tracing::warn!(topic = %ev.topic, offset = ev.offset, "event exhausted its retries; no dead-letter topic configured");
        return;
    };
    let req = PublishRequest {
        event_type: "eventcast.deadletter".to_owned(),
        data: json!({
            "topic": &*ev.topic,
            "offset": ev.offset,
            "epoch": &*ev.epoch,
            "deliveries": sends,
            "session": &*shared.info.session,
            "event": &ev.stored.event,
        }),
        priority: Some(ev.priority()),
        source: Some("eventcast".to_owned()),
        correlation_id: ev.stored.event.correlation_id.clone(),
        causation_id: Some(ev.stored.event.id.clone()),
        ..PublishRequest::default()
    };
    if let Err(e) = shared.state.publisher.publish(&dlq, req, Origin::Internal).await {
        tracing::error!(topic = %ev.topic, offset = ev.offset, dead_letter_topic = %dlq, error = %e, "dead-lettering failed");
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + FAR_FUTURE
}

/// When a token expiring at `expiry` (unix seconds) runs out.
fn expiry_deadline(expiry: u64) -> tokio::time::Instant {
    let left = expiry.saturating_mul(1000).saturating_sub(unix_ms());
    tokio::time::Instant::now() + Duration::from_millis(left)
}

/// Runs until the connection closes.
pub(crate) async fn write_loop(socket: &Socket, shared: &Shared) {
    let outbox = shared.info.outbox.clone();
    let conn = shared.state.config.get().compiled.connection.clone();
    let heartbeat = Duration::from_millis(conn.heartbeat_interval_ms.max(100));
    let idle_timeout = Duration::from_millis(conn.idle_timeout_ms.max(200));
    let max_batch = conn.max_batch.max(1) as usize;
    // Batching.maxDelay: after a wake-up, wait briefly so more frames share one write.
    let coalesce = Duration::from_millis(conn.max_batch_delay_ms);
    let flush_timeout = idle_timeout;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut batch = Vec::new();
    let mut pending = VecDeque::new();
    let shutdown = shared.state.shutdown.clone();
    // Registered once: creating `cancelled()` per wake-up would lock the token's waiter
    // list (shared by every connection) twice per frame written.
    let mut cancelled = std::pin::pin!(shutdown.cancelled());

    loop {
        // A write to a stuck client must not hold up shutdown: on cancellation fall
        // through to the bounded drain-and-disconnect below.
        let written = tokio::select! {
            biased;
            r = drain(socket, shared, &mut batch, &mut pending, max_batch, flush_timeout) => r.is_ok(),
            () = &mut cancelled, if !shutdown.is_cancelled() => true,
        };
        if !written {
            return;
        }
        if let Some(reason) = outbox.closing() {
            Box::pin(send_disconnect(socket, &reason)).await;
            return;
        }
        // Timers are armed only when needed: a Sleep registered and cancelled on every
        // wake-up costs more than the frame write on a busy connection.
        let next_ack = shared.acks.lock().next_deadline();
        let expiry = shared.token_expiry.load(Ordering::Acquire);
        tokio::select! {
            biased;
            () = &mut cancelled => {
                let _ = Box::pin(timeout(SHUTDOWN_DRAIN, drain(socket, shared, &mut batch, &mut pending, max_batch, flush_timeout))).await;
                let reason = CloseReason {
                    code: disconnect_code::SHUTDOWN,
                    reason: "server shutting down; reconnect and recover".to_owned(),
                    reconnect: true,
                };
                outbox.close(reason.clone());
                Box::pin(send_disconnect(socket, &reason)).await;
                return;
            }
            () = outbox.notified() => {
                if !coalesce.is_zero() {
                    tokio::select! {
                        () = &mut cancelled => {}
                        () = tokio::time::sleep(coalesce) => {}
                    }
                }
            }
            _ = ticker.tick() => {
                let silent = unix_ms().saturating_sub(shared.last_seen.load(Ordering::Relaxed));
                if silent > idle_timeout.as_millis() as u64 {
                    outbox.close(CloseReason {
                        code: disconnect_code::IDLE_TIMEOUT,
                        reason: format!("no frames from the client for {}s", silent / 1000),
                        reconnect: true,
                    });
                } else if socket.send([Message::Ping(bytes::Bytes::new())]).await.is_err() {
                    return;
                }
            }
            () = sleep_until(next_ack.map_or_else(far_future, tokio::time::Instant::from_std)), if next_ack.is_some() => {
                let due = shared.acks.lock().take_due(Instant::now());
                for d in due {
                    match d {
                        Due::Redeliver(ev) => {
                            ev.metrics.redeliveries.inc();
                            outbox.enqueue(&ev);
                        }
                        Due::DeadLetter { ev, sends } => Box::pin(dead_letter(shared, &ev, sends)).await,
                    }
                }
            }
            () = sleep_until(expiry_deadline(expiry)), if expiry != 0 => {
                outbox.close(CloseReason {
                    code: disconnect_code::TOKEN_EXPIRED,
                    reason: "token expired; reconnect with a fresh token".to_owned(),
                    reconnect: true,
                });
            }
        }
    }
}
