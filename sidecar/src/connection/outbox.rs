//! A connection's outbound queues: control frames (replies, pongs, notices) first, then
//! one FIFO queue per priority class, higher classes always first.
//!
//! Fan-out pushes here from whatever task published the event; the connection's writer
//! drains in batches. The lock is a short, uncontended critical section (one push) and
//! is never held across an await. Under backpressure events are shed: a full class
//! drops its oldest event, and when the byte budget is exceeded the lowest non-empty
//! class loses its oldest first. Every shed event is counted and recorded as a lag range
//! for a `lagged` notice. Critical events are never shed: if one cannot be queued the
//! outbox closes so the connection is ended with a reason and the client recovers.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use eventcast_api::Priority;
use eventcast_api::protocol::ServerFrame;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::socket::{Backlog, DirectWrite, Socket};
use crate::event::SharedEvent;

/// Why the outbox stopped accepting events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: String,
    pub reconnect: bool,
}

/// One frame to write.
#[derive(Debug)]
pub enum Outgoing {
    Control(Utf8Bytes),
    /// A `lagged` notice (counted apart from other control frames).
    Lagged(Utf8Bytes),
    Event(Arc<SharedEvent>),
}

/// Result of queueing an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// Written to the socket at once (the connection was idle; see `socket`).
    Sent,
    /// Queued, but this many older events were shed to make room.
    QueuedWithShed(usize),
    /// The outbox is closing (now or before); nothing was queued.
    Closing,
}

#[derive(Debug)]
struct LagRange {
    topic: Arc<str>,
    from: u64,
    to: u64,
}

#[derive(Debug, Default)]
struct Inner {
    control: VecDeque<Utf8Bytes>,
    /// Events replayed from history for recovery: bounded by retention rather than by
    /// the live caps, and written before live events so offsets stay in order.
    replay: VecDeque<Arc<SharedEvent>>,
    classes: [VecDeque<Arc<SharedEvent>>; 5],
    events: usize,
    bytes: usize,
    lagged: Vec<LagRange>,
    closing: Option<CloseReason>,
    /// Counted in the sidecar's [`Backlog`](super::socket::Backlog).
    backlogged: bool,
}

impl Inner {
    fn is_empty(&self) -> bool {
        self.control.is_empty() && self.events == 0 && self.lagged.is_empty() && self.replay.is_empty()
    }

    /// Nothing queued and not closing: a frame may bypass the queues.
    fn is_idle(&self) -> bool {
        self.is_empty() && self.closing.is_none()
    }

    fn record_lag(&mut self, ev: &SharedEvent) {
        ev.metrics.shed[ev.priority().index()].inc();
        if let Some(r) = self.lagged.iter_mut().find(|r| r.topic == ev.topic) {
            r.from = r.from.min(ev.offset);
            r.to = r.to.max(ev.offset);
        } else {
            self.lagged.push(LagRange {
                topic: ev.topic.clone(),
                from: ev.offset,
                to: ev.offset,
            });
        }
    }

    fn pop_class(&mut self, class: usize) -> Option<Arc<SharedEvent>> {
        let ev = self.classes[class].pop_front()?;
        self.events -= 1;
        self.bytes -= ev.frame.len();
        Some(ev)
    }
}

/// The outbound queues of one connection.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    notify: Notify,
    max_bytes: usize,
    /// The connection's socket, for writing events to an idle connection at once.
    socket: Option<Arc<Socket>>,
    /// Where this connection is counted while frames wait in its queues (the socket's
    /// count, held apart so that counting is testable without a WebSocket).
    backlog: Option<Arc<Backlog>>,
}

/// Critical is index 0; `Priority::index` of the lowest class.
const LOWEST: usize = 4;

impl Outbox {
    /// `max_bytes` bounds the event frames queued (control frames are small and few).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            max_bytes,
            socket: None,
            backlog: None,
        }
    }

    /// An outbox whose events go straight to `socket` while the connection is idle.
    pub fn with_socket(max_bytes: usize, socket: Arc<Socket>) -> Self {
        Self {
            backlog: Some(socket.backlog().clone()),
            socket: Some(socket),
            ..Self::new(max_bytes)
        }
    }

    /// Counts this connection in the backlog once something waits in its queues.
    fn mark_waiting(&self, inner: &mut Inner) {
        if let Some(backlog) = &self.backlog
            && !inner.backlogged
        {
            inner.backlogged = true;
            backlog.add();
        }
    }

    /// Stops counting this connection once its queues are empty (or for good, `force`).
    fn unmark_waiting(&self, inner: &mut Inner, force: bool) {
        if let Some(backlog) = &self.backlog
            && inner.backlogged
            && (force || inner.is_empty())
        {
            inner.backlogged = false;
            backlog.sub();
        }
    }

    /// Leaves the backlog count (the connection ended, whatever it still holds).
    pub fn release(&self) {
        let mut inner = self.inner.lock();
        self.unmark_waiting(&mut inner, true);
    }

    /// Waits until something may be queued. A push that happens before this is awaited
    /// leaves a permit, so no wake-up is lost.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    fn wake_if(&self, was_empty: bool) {
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Queues a reply, pong or notice ahead of every event.
    pub fn push_control(&self, frame: &ServerFrame) {
        let text = Utf8Bytes::from(frame.to_json());
        let was_empty = {
            let mut inner = self.inner.lock();
            if inner.closing.is_some() {
                return;
            }
            let was_empty = inner.is_empty();
            inner.control.push_back(text);
            self.mark_waiting(&mut inner);
            was_empty
        };
        self.wake_if(was_empty);
    }

    /// Stops accepting events; the writer sends a `disconnect` frame with this reason and
    /// closes. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        {
            let mut inner = self.inner.lock();
            if inner.closing.is_some() {
                return;
            }
            inner.closing = Some(reason);
        }
        self.notify.notify_one();
    }

    pub fn closing(&self) -> Option<CloseReason> {
        self.inner.lock().closing.clone()
    }

    /// Queues an event in its class, shedding as described in the module docs, or
    /// writes it at once when the connection is idle.
    /// Takes a reference: a direct write needs no reference count of its own.
    pub fn enqueue(&self, ev: &Arc<SharedEvent>) -> Enqueued {
        if let Some(socket) = &self.socket {
            match socket.try_write_now(ev, || self.inner.lock().is_idle()) {
                DirectWrite::Written => return Enqueued::Sent,
                DirectWrite::NeedsWriter => {
                    self.notify.notify_one();
                    return Enqueued::Sent;
                }
                DirectWrite::Declined => {}
            }
        }
        self.queue(ev.clone())
    }

    /// Queues an event in its class (never writes it directly).
    pub fn queue(&self, ev: Arc<SharedEvent>) -> Enqueued {
        let class = ev.priority().index();
        let cap = ev.queue_cap.max(1) as usize;
        let mut shed = 0;
        let was_empty;
        {
            let mut inner = self.inner.lock();
            if inner.closing.is_some() {
                return Enqueued::Closing;
            }
            was_empty = inner.is_empty();
            if inner.classes[class].len() >= cap {
                if class == Priority::Critical.index() {
                    drop(inner);
                    self.close_slow_consumer(&ev);
                    return Enqueued::Closing;
                }
                if let Some(old) = inner.pop_class(class) {
                    inner.record_lag(&old);
                    shed += 1;
                }
            }
            inner.bytes += ev.frame.len();
            inner.events += 1;
            inner.classes[class].push_back(ev);
            self.mark_waiting(&mut inner);
            while inner.bytes > self.max_bytes {
                let Some(victim) = (1..=LOWEST).rev().find(|c| !inner.classes[*c].is_empty()) else {
                    // Only critical events remain and they exceed the budget.
                    let topic = inner.classes[0].back().map(|e| e.topic.clone());
                    drop(inner);
                    self.close(CloseReason {
                        code: eventcast_api::protocol::disconnect_code::SLOW_CONSUMER,
                        reason: format!(
                            "connection too slow for critical events on {}; reconnect and recover from history",
                            topic.as_deref().unwrap_or("a topic")
                        ),
                        reconnect: true,
                    });
                    return Enqueued::Closing;
                };
                if let Some(old) = inner.pop_class(victim) {
                    inner.record_lag(&old);
                    shed += 1;
                }
            }
        }
        self.wake_if(was_empty);
        if shed == 0 {
            Enqueued::Queued
        } else {
            Enqueued::QueuedWithShed(shed)
        }
    }

    /// Queues an event replayed from history. Replays are bounded by the topic's
    /// retention, not by the live queue caps, and go out before live events; the
    /// subscriber holds that topic's live events back until the replay is queued.
    pub fn enqueue_replay(&self, ev: Arc<SharedEvent>) -> Enqueued {
        let was_empty = {
            let mut inner = self.inner.lock();
            if inner.closing.is_some() {
                return Enqueued::Closing;
            }
            let was_empty = inner.is_empty();
            inner.replay.push_back(ev);
            self.mark_waiting(&mut inner);
            was_empty
        };
        self.wake_if(was_empty);
        Enqueued::Queued
    }

    fn close_slow_consumer(&self, ev: &SharedEvent) {
        self.close(CloseReason {
            code: eventcast_api::protocol::disconnect_code::SLOW_CONSUMER,
            reason: format!(
                "critical queue full on topic {} at offset {}; reconnect and recover from history",
                ev.topic, ev.offset
            ),
            reconnect: true,
        });
    }

    /// Moves up to `max` frames into `out`: control frames, then `lagged` notices, then
    /// events highest class first. Events whose TTL passed (`now_ms`) are skipped and
    /// counted. Returns how many frames were added.
    pub fn take_batch(&self, max: usize, now_ms: u64, out: &mut Vec<Outgoing>) -> usize {
        let start = out.len();
        let mut inner = self.inner.lock();
        while out.len() - start < max {
            let Some(c) = inner.control.pop_front() else { break };
            out.push(Outgoing::Control(c));
        }
        if inner.closing.is_some() {
            // Closing: only replies already queued still go out, before the disconnect.
            return out.len() - start;
        }
        while out.len() - start < max && !inner.lagged.is_empty() {
            let r = inner.lagged.remove(0);
            let notice = ServerFrame::Lagged {
                topic: r.topic.to_string(),
                from: r.from,
                to: r.to,
            };
            out.push(Outgoing::Lagged(Utf8Bytes::from(notice.to_json())));
        }
        while out.len() - start < max {
            let Some(ev) = inner.replay.pop_front() else { break };
            if ev.stored.is_expired_at(now_ms) {
                ev.metrics.expired.inc();
                continue;
            }
            out.push(Outgoing::Event(ev));
        }
        for class in 0..=LOWEST {
            while out.len() - start < max {
                let Some(ev) = inner.pop_class(class) else { break };
                if ev.stored.is_expired_at(now_ms) {
                    ev.metrics.expired.inc();
                    continue;
                }
                out.push(Outgoing::Event(ev));
            }
        }
        self.unmark_waiting(&mut inner, false);
        out.len() - start
    }

    /// Events waiting (for stats).
    pub fn queued(&self) -> usize {
        let inner = self.inner.lock();
        inner.events + inner.replay.len()
    }

    /// Whether anything is left to write.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().is_empty()
    }

    /// Whether a writer has nothing more to take: empty, or closing (events queued
    /// then are not written).
    pub fn drained(&self) -> bool {
        let inner = self.inner.lock();
        inner.is_empty() || inner.closing.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StoredEvent;
    use crate::metrics::TopicMetrics;
    use eventcast_api::protocol::DeliveredEvent;
    use serde_json::json;

    fn ev(topic: &str, offset: u64, p: Priority, cap: u32) -> Arc<SharedEvent> {
        let stored = StoredEvent {
            event: DeliveredEvent {
                id: format!("e{offset}"),
                event_type: "t".into(),
                time: "now".into(),
                priority: p,
                source: None,
                data: json!({"n": offset}),
                requires_ack: false,
                correlation_id: None,
                causation_id: None,
            },
            targets: None,
            expires_at_ms: None,
            published_at_ms: 0,
        };
        Arc::new(SharedEvent::new(
            topic.into(),
            offset,
            "e".into(),
            stored,
            cap,
            None,
            TopicMetrics::detached(topic),
        ))
    }

    fn drain(o: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        o.take_batch(usize::MAX, 0, &mut out);
        out.into_iter()
            .map(|f| match f {
                Outgoing::Control(c) | Outgoing::Lagged(c) => c.as_str().to_owned(),
                Outgoing::Event(e) => format!("{}@{}", e.topic, e.offset),
            })
            .collect()
    }

    #[test]
    fn higher_classes_first_fifo_within_class_control_before_all() {
        let o = Outbox::new(1 << 20);
        o.enqueue(&ev("a", 1, Priority::Low, 10));
        o.enqueue(&ev("a", 2, Priority::Critical, 10));
        o.enqueue(&ev("a", 3, Priority::Normal, 10));
        o.enqueue(&ev("a", 4, Priority::Critical, 10));
        o.enqueue(&ev("a", 5, Priority::Background, 10));
        o.push_control(&ServerFrame::Pong { id: None });
        assert_eq!(
            drain(&o),
            vec![r#"{"op":"pong","id":null}"#, "a@2", "a@4", "a@3", "a@1", "a@5"]
        );
        assert!(o.is_empty());
    }

    #[test]
    fn full_class_sheds_its_oldest_and_reports_lag() {
        let o = Outbox::new(1 << 20);
        for off in 1..=5 {
            o.enqueue(&ev("chat", off, Priority::Normal, 3));
        }
        let frames = drain(&o);
        assert_eq!(frames[0], r#"{"op":"lagged","topic":"chat","from":1,"to":2}"#);
        assert_eq!(&frames[1..], ["chat@3", "chat@4", "chat@5"]);
    }

    #[test]
    fn byte_budget_sheds_lowest_class_first() {
        let one = ev("hi", 1, Priority::Normal, 100).frame.len();
        let o = Outbox::new(one * 3);
        o.enqueue(&ev("bg", 1, Priority::Background, 100));
        o.enqueue(&ev("lo", 1, Priority::Low, 100));
        o.enqueue(&ev("hi", 1, Priority::High, 100));
        assert_eq!(
            o.enqueue(&ev("hi", 2, Priority::High, 100)),
            Enqueued::QueuedWithShed(1)
        );
        assert_eq!(
            o.enqueue(&ev("hi", 3, Priority::High, 100)),
            Enqueued::QueuedWithShed(1)
        );
        let frames = drain(&o);
        assert!(frames.contains(&r#"{"op":"lagged","topic":"bg","from":1,"to":1}"#.to_owned()));
        assert!(frames.contains(&r#"{"op":"lagged","topic":"lo","from":1,"to":1}"#.to_owned()));
        assert_eq!(frames.iter().filter(|f| f.starts_with("hi@")).count(), 3);
    }

    #[test]
    fn critical_is_never_shed_silently() {
        let o = Outbox::new(1 << 20);
        o.enqueue(&ev("orders", 1, Priority::Critical, 2));
        o.enqueue(&ev("orders", 2, Priority::Critical, 2));
        assert_eq!(o.enqueue(&ev("orders", 3, Priority::Critical, 2)), Enqueued::Closing);
        let reason = o.closing().expect("closing");
        assert_eq!(reason.code, eventcast_api::protocol::disconnect_code::SLOW_CONSUMER);
        assert!(reason.reconnect);
        assert!(reason.reason.contains("orders"));
        assert_eq!(o.enqueue(&ev("orders", 4, Priority::Low, 2)), Enqueued::Closing);
    }

    #[test]
    fn critical_over_byte_budget_closes() {
        let one = ev("x", 0, Priority::Critical, 100).frame.len();
        let o = Outbox::new(one);
        assert_eq!(o.enqueue(&ev("c", 1, Priority::Critical, 100)), Enqueued::Queued);
        assert_eq!(o.enqueue(&ev("c", 2, Priority::Critical, 100)), Enqueued::Closing);
        assert!(o.closing().is_some());
    }

    #[test]
    fn batches_respect_max_and_skip_expired() {
        let o = Outbox::new(1 << 20);
        for off in 1..=5 {
            o.enqueue(&ev("t", off, Priority::Normal, 10));
        }
        let mut out = Vec::new();
        assert_eq!(o.take_batch(2, 0, &mut out), 2);
        assert_eq!(o.queued(), 3);
        let mut stored = ev("t", 9, Priority::Normal, 10).stored.clone();
        stored.expires_at_ms = Some(100);
        let expiring = Arc::new(SharedEvent::new(
            "t".into(),
            9,
            "e".into(),
            stored,
            10,
            None,
            TopicMetrics::detached("t"),
        ));
        o.enqueue(&expiring);
        let mut out = Vec::new();
        assert_eq!(o.take_batch(10, 200, &mut out), 3, "expired event skipped");
    }

    #[test]
    fn replays_ignore_the_live_cap_and_go_first() {
        let o = Outbox::new(1 << 20);
        o.enqueue(&ev("other", 9, Priority::Critical, 2));
        for off in 1..=5 {
            assert_eq!(
                o.enqueue_replay(ev("orders", off, Priority::Critical, 2)),
                Enqueued::Queued
            );
        }
        assert_eq!(o.enqueue(&ev("orders", 6, Priority::Critical, 2)), Enqueued::Queued);
        assert!(o.closing().is_none());
        assert_eq!(
            drain(&o),
            vec![
                "orders@1", "orders@2", "orders@3", "orders@4", "orders@5", "other@9", "orders@6"
            ]
        );
    }

    #[test]
    fn a_connection_is_counted_in_the_backlog_while_frames_wait() {
        let backlog = Arc::new(Backlog::default());
        let counted = |max_bytes| Outbox {
            backlog: Some(backlog.clone()),
            ..Outbox::new(max_bytes)
        };
        let a = counted(1 << 20);
        let b = counted(1 << 20);
        a.enqueue(&ev("t", 1, Priority::Normal, 10));
        a.enqueue(&ev("t", 2, Priority::Normal, 10));
        a.push_control(&ServerFrame::Pong { id: None });
        assert_eq!(backlog.get(), 1, "once per connection, however much waits");
        b.enqueue_replay(ev("t", 1, Priority::Normal, 10));
        assert_eq!(backlog.get(), 2);
        let mut out = Vec::new();
        a.take_batch(2, 0, &mut out);
        assert_eq!(backlog.get(), 2, "a still has a frame waiting");
        a.take_batch(10, 0, &mut out);
        assert_eq!(backlog.get(), 1, "a drained");
        b.release();
        assert_eq!(backlog.get(), 0, "an ended connection leaves the count");
        b.release();
        assert_eq!(backlog.get(), 0, "only once");
    }

    #[tokio::test]
    async fn push_before_wait_is_not_lost() {
        let o = Outbox::new(1 << 20);
        o.enqueue(&ev("t", 1, Priority::Normal, 10));
        tokio::time::timeout(std::time::Duration::from_secs(1), o.notified())
            .await
            .expect("permit stored");
    }
}
