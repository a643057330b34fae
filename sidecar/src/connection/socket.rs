//! A connection's WebSocket, shared by its reader, its writer and the fan-out.
//!
//! Why shared: most deliveries reach a connection that has nothing queued and has not
//! been written to for a while (many topics, moderate rates). Waking the connection's
//! task for each of them costs a scheduler round trip per delivery and spreads a
//! publish's writes over time, so the receiving side goes back to sleep between them
//! and the kernel has to wake it again for each one. Such a delivery is instead written
//! straight from the fan-out, in the publishing task: one `send`, no wake-up.
//!
//! Direct writes never reorder anything: one is made only when the connection's queues
//! are empty and its writer holds nothing unflushed (`busy`), both checked under the
//! socket lock, which the writer also holds while it takes a batch from the queues.
//! A connection written to within the last [`COALESCE_WINDOW`] gets its events queued
//! instead, and so does every connection while many writers have frames waiting
//! ([`Backlog`], more than [`MAX_BACKLOG`]): a sidecar that is behind should not spend
//! a syscall per delivery; queued frames pile up and each writer then sends many per
//! syscall, which is what keeps fan-out to thousands of busy connections cheap.
//!
//! A direct write bypasses tungstenite: the event's frame is framed once per event
//! ([`SharedEvent::wire`]) and written to the connection's [`DirectStream`], which keeps
//! the stack's bytes and the direct ones from interleaving. Nothing is written directly
//! once a close frame went either way.
//!
//! The lock is a plain mutex held for synchronous stretches only (one poll of the
//! socket); the fan-out only ever `try_lock`s it and queues the event when it is taken.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{Sink, Stream};
use parking_lot::Mutex;

use super::stream::{DirectStream, RawWrite};
use crate::event::SharedEvent;
use crate::metrics::Metrics;

/// A connection written to more recently than this gets its events queued, so that a
/// burst shares one write.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(10);

/// Direct writes stop while more connections than this have frames waiting in their
/// queues (the writers are behind; see the module docs).
pub const MAX_BACKLOG: usize = 64;

/// How many connections have frames waiting in their queues, sidecar-wide.
#[derive(Debug, Default)]
pub struct Backlog(AtomicUsize);

impl Backlog {
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sub(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// The socket failed or is gone; the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketClosed;

/// Outcome of [`Socket::try_write_now`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectWrite {
    /// Not written: queue the event as usual.
    Declined,
    /// Handed to the kernel.
    Written,
    /// Accepted, but the kernel buffer was full (or the socket failed): the writer
    /// must be woken to finish the flush (or to end the connection).
    NeedsWriter,
}

#[derive(Debug)]
struct State {
    ws: Option<WebSocket>,
    /// The writer is draining the queues or frames are waiting for a flush.
    busy: bool,
    /// A direct write failed; the writer ends the connection.
    failed: bool,
    /// A close frame was sent or received: only the stack writes from now on.
    closing: bool,
    last_write: Option<Instant>,
}

/// The shared WebSocket of one connection.
#[derive(Debug)]
pub struct Socket {
    state: Mutex<State>,
    /// The TCP stream under `ws`, for direct writes; `None` when they are off (a policy
    /// asks writes to wait for batching, or the WebSocket is not alone on the stream).
    stream: Option<DirectStream>,
    metrics: Arc<Metrics>,
    backlog: Arc<Backlog>,
}

/// Messages waiting to be handed to the WebSocket, front first.
trait Pending {
    fn pop(&mut self) -> Option<Message>;
    fn put_back(&mut self, msg: Message);
}

impl Pending for VecDeque<Message> {
    fn pop(&mut self) -> Option<Message> {
        self.pop_front()
    }

    fn put_back(&mut self, msg: Message) {
        self.push_front(msg);
    }
}

/// Sends `pending` through the stack; notes a close frame in `closing`.
fn poll_send_all(
    ws: &mut WebSocket,
    closing: &mut bool,
    cx: &mut Context<'_>,
    pending: &mut impl Pending,
) -> Poll<Result<(), SocketClosed>> {
    let mut ws = Pin::new(ws);
    while let Some(msg) = pending.pop() {
        if matches!(msg, Message::Close(_)) {
            *closing = true;
        }
        match ws.as_mut().poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(Err(SocketClosed)),
            Poll::Pending => {
                pending.put_back(msg);
                return Poll::Pending;
            }
        }
        if ws.as_mut().start_send(msg).is_err() {
            return Poll::Ready(Err(SocketClosed));
        }
    }
    ws.poll_flush(cx).map_err(|_| SocketClosed)
}

impl Socket {
    pub fn new(ws: WebSocket, stream: Option<DirectStream>, metrics: Arc<Metrics>, backlog: Arc<Backlog>) -> Self {
        Self {
            state: Mutex::new(State {
                ws: Some(ws),
                busy: false,
                failed: false,
                closing: false,
                last_write: None,
            }),
            stream,
            metrics,
            backlog,
        }
    }

    /// The sidecar-wide count this connection's queue is part of.
    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    /// Writes an event frame now when the connection is idle (see the module docs);
    /// `queues_empty` is asked under the socket lock, last.
    pub fn try_write_now(&self, ev: &SharedEvent, queues_empty: impl FnOnce() -> bool) -> DirectWrite {
        let Some(stream) = &self.stream else {
            return DirectWrite::Declined;
        };
        if ev.ack.is_some() || ev.stored.expires_at_ms.is_some() || self.backlog.get() > MAX_BACKLOG {
            return DirectWrite::Declined;
        }
        let Some(mut st) = self.state.try_lock() else {
            return DirectWrite::Declined;
        };
        let now = Instant::now();
        if st.busy
            || st.failed
            || st.closing
            || st.ws.is_none()
            || st.last_write.is_some_and(|t| now.duration_since(t) < COALESCE_WINDOW)
        {
            return DirectWrite::Declined;
        }
        if !queues_empty() {
            return DirectWrite::Declined;
        }
        let written = match stream.try_write(ev.wire()) {
            // The kernel buffer is full (or the stack has bytes in flight): queue instead.
            RawWrite::NotNow => return DirectWrite::Declined,
            RawWrite::Written => DirectWrite::Written,
            // The writer flushes the rest, or ends the connection.
            RawWrite::Partial => {
                st.busy = true;
                DirectWrite::NeedsWriter
            }
            RawWrite::Failed => {
                st.failed = true;
                return DirectWrite::NeedsWriter;
            }
        };
        st.last_write = Some(now);
        ev.count_delivery(&self.metrics, now);
        self.metrics.direct_writes.inc();
        written
    }

    /// Marks the writer busy and runs `take` (which moves queued frames out) under the
    /// socket lock, so that no direct write slips in ahead of what it took.
    pub fn begin_drain<R>(&self, take: impl FnOnce() -> R) -> R {
        let mut st = self.state.lock();
        st.busy = true;
        take()
    }

    /// Ends a drain when `queues_empty` (asked under the lock) says nothing is left;
    /// returns whether it ended.
    pub fn end_drain(&self, queues_empty: impl FnOnce() -> bool) -> bool {
        let mut st = self.state.lock();
        if !queues_empty() {
            return false;
        }
        st.busy = false;
        st.last_write = Some(Instant::now());
        true
    }

    /// Writes `pending` in order and flushes; `Ready(Ok)` once everything is with the kernel.
    pub fn poll_send(&self, cx: &mut Context<'_>, pending: &mut VecDeque<Message>) -> Poll<Result<(), SocketClosed>> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if st.failed {
            return Poll::Ready(Err(SocketClosed));
        }
        let Some(ws) = st.ws.as_mut() else {
            return Poll::Ready(Err(SocketClosed));
        };
        let r = poll_send_all(ws, &mut st.closing, cx, pending);
        if let Poll::Ready(Err(_)) = r {
            st.failed = true;
        }
        r
    }

    /// Sends `msgs` and flushes.
    pub async fn send(&self, msgs: impl IntoIterator<Item = Message>) -> Result<(), SocketClosed> {
        let mut pending: VecDeque<Message> = msgs.into_iter().collect();
        std::future::poll_fn(|cx| self.poll_send(cx, &mut pending)).await
    }

    /// Next message from the client; `None` when the socket is closed.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, axum::Error>>> {
        let mut st = self.state.lock();
        let r = match st.ws.as_mut() {
            Some(ws) => Pin::new(ws).poll_next(cx),
            None => Poll::Ready(None),
        };
        // tungstenite answers a close frame by itself; the connection is ending.
        if matches!(r, Poll::Ready(None | Some(Err(_)) | Some(Ok(Message::Close(_))))) {
            st.closing = true;
        }
        r
    }

    /// Drops the WebSocket (closing the TCP connection); later writes are declined.
    pub fn release(&self) {
        let ws = self.state.lock().ws.take();
        drop(ws);
    }
}

/// The reading side of a [`Socket`] as a stream of client messages.
#[derive(Debug, Clone)]
pub struct Incoming(pub Arc<Socket>);

impl Stream for Incoming {
    type Item = Result<Message, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
