//! Events inside the sidecar. A [`StoredEvent`] is what a backend keeps in history; a
//! [`SharedEvent`] is a stored event at its position in a topic with its `event` frame
//! serialized exactly once, shared (`Arc`) by every connection it is delivered to.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use eventcast_api::Priority;
use eventcast_api::filter::EventView;
use eventcast_api::protocol::{DeliveredEvent, Targets};
use serde::{Deserialize, Serialize};

use crate::metrics::{Metrics, TopicMetrics};

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An accepted event as kept in history (and, later, in Redis).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    pub event: DeliveredEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// Unix ms after which the event is no longer delivered (from `ttlMs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Unix ms when the sidecar accepted it.
    pub published_at_ms: u64,
}

impl StoredEvent {
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|t| now_ms >= t)
    }
}

/// Redelivery settings of an `atLeastOnce` topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckPolicy {
    pub timeout: std::time::Duration,
    pub max_retries: u32,
    pub dead_letter_topic: Option<String>,
}

/// A validated event with its `event` object serialized once: the publish pipeline
/// checks the size limit on these bytes and [`SharedEvent`] builds the delivery frame
/// around them, so an event is serialized once between request and socket.
#[derive(Clone, Debug)]
pub struct EncodedEvent {
    pub stored: StoredEvent,
    /// `stored.event` as compact JSON.
    pub json: String,
}

impl EncodedEvent {
    pub fn new(stored: StoredEvent) -> Self {
        // Only string-keyed maps and finite numbers reach here (parsed from JSON).
        let json = serde_json::to_string(&stored.event).unwrap_or_default();
        Self { stored, json }
    }
}

impl From<StoredEvent> for EncodedEvent {
    fn from(stored: StoredEvent) -> Self {
        Self::new(stored)
    }
}

/// Appends `s` as a JSON string literal. Topic names and epochs need no escaping, so
/// they are copied as they are; anything else is escaped by serde_json.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// The `event` frame (`{"op":"event","topic":..,"offset":..,"epoch":..,"event":{..}}`)
/// assembled around the already serialized event.
fn event_frame(topic: &str, offset: u64, epoch: &str, event_json: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(event_json.len() + topic.len() + epoch.len() + 64);
    out.push_str(r#"{"op":"event","topic":"#);
    push_json_str(&mut out, topic);
    // Writing into a `String` cannot fail.
    let _ = write!(out, r#","offset":{offset},"epoch":"#);
    push_json_str(&mut out, epoch);
    out.push_str(r#","event":"#);
    out.push_str(event_json);
    out.push('}');
    out
}

/// `payload` as one unmasked, unfragmented WebSocket text frame (RFC 6455 section 5.2),
/// as a server sends it.
fn websocket_text_frame(payload: &[u8]) -> Vec<u8> {
    const FIN_TEXT: u8 = 0x81;
    let len = payload.len();
    let mut out = Vec::with_capacity(len + 10);
    out.push(FIN_TEXT);
    match u16::try_from(len) {
        Ok(short) if short < 126 => out.push(short as u8),
        Ok(medium) => {
            out.push(126);
            out.extend_from_slice(&medium.to_be_bytes());
        }
        Err(_) => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A stored event at its position, ready to deliver.
#[derive(Debug)]
pub struct SharedEvent {
    pub topic: Arc<str>,
    pub offset: u64,
    pub epoch: Arc<str>,
    pub stored: StoredEvent,
    /// The complete `event` frame.
    pub frame: Utf8Bytes,
    /// `frame` as WebSocket frame bytes, for direct writes (see [`SharedEvent::wire`]).
    wire: OnceLock<Box<[u8]>>,
    /// When this sidecar built the frame: start of delivery latency.
    pub received_at: Instant,
    /// Queue length allowed for this event's class on each connection (from the topic's policy).
    pub queue_cap: u32,
    /// Ack settings when connections must track acks for it (`atLeastOnce` topic and `requiresAck`).
    pub ack: Option<Arc<AckPolicy>>,
    pub metrics: Arc<TopicMetrics>,
}

impl SharedEvent {
    pub fn new(
        topic: Arc<str>,
        offset: u64,
        epoch: Arc<str>,
        event: impl Into<EncodedEvent>,
        queue_cap: u32,
        ack: Option<Arc<AckPolicy>>,
        metrics: Arc<TopicMetrics>,
    ) -> Self {
        let EncodedEvent { stored, json } = event.into();
        let frame = event_frame(&topic, offset, &epoch, &json);
        Self {
            topic,
            offset,
            epoch,
            stored,
            frame: Utf8Bytes::from(frame),
            wire: OnceLock::new(),
            received_at: Instant::now(),
            queue_cap,
            ack,
            metrics,
        }
    }

    /// The `event` frame framed for the wire, built by the first connection that writes
    /// it directly and shared by the rest (events that are only ever queued, or kept
    /// in history, never carry the copy).
    pub fn wire(&self) -> &[u8] {
        self.wire
            .get_or_init(|| websocket_text_frame(self.frame.as_str().as_bytes()).into_boxed_slice())
    }

    pub fn priority(&self) -> Priority {
        self.stored.event.priority
    }

    /// Counts one delivery of this event handed to a socket at `at` (events out and
    /// delivery latency), whichever path wrote it.
    pub fn count_delivery(&self, metrics: &Metrics, at: Instant) {
        let class = self.priority().index();
        self.metrics.events_out[class].inc();
        metrics.delivery_latency[class].observe(at.duration_since(self.received_at).as_secs_f64());
    }

    pub fn view(&self) -> EventView<'_> {
        let e = &self.stored.event;
        EventView {
            topic: &self.topic,
            id: &e.id,
            event_type: &e.event_type,
            source: e.source.as_deref(),
            priority: e.priority,
            correlation_id: e.correlation_id.as_deref(),
            causation_id: e.causation_id.as_deref(),
            data: &e.data,
        }
    }

    /// Whether a connection with this identity is among the event's targets.
    pub fn targets_match(&self, user: Option<&str>, device: Option<&str>, session: &str) -> bool {
        match &self.stored.targets {
            None => true,
            Some(t) if t.is_empty() => true,
            Some(t) => {
                user.is_some_and(|u| t.users.iter().any(|x| x == u))
                    || device.is_some_and(|d| t.devices.iter().any(|x| x == d))
                    || t.sessions.iter().any(|x| x == session)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(targets: Option<Targets>) -> StoredEvent {
        StoredEvent {
            event: DeliveredEvent {
                id: "e1".into(),
                event_type: "message.sent".into(),
                time: "2026-01-01T00:00:00Z".into(),
                priority: Priority::High,
                source: None,
                data: json!({"text": "hi"}),
                requires_ack: false,
                correlation_id: None,
                causation_id: None,
            },
            targets,
            expires_at_ms: Some(10),
            published_at_ms: 1,
        }
    }

    #[test]
    fn frame_is_the_documented_event_frame() {
        let ev = SharedEvent::new(
            "chat".into(),
            7,
            "e1".into(),
            stored(None),
            10,
            None,
            TopicMetrics::detached("chat"),
        );
        let v: serde_json::Value = serde_json::from_str(ev.frame.as_str()).expect("json");
        assert_eq!(v["op"], "event");
        assert_eq!(v["topic"], "chat");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["epoch"], "e1");
        assert_eq!(v["event"]["type"], "message.sent");
        assert_eq!(v["event"]["priority"], "high");
        assert_eq!(v["event"]["requiresAck"], false);
        assert!(ev.stored.is_expired_at(10));
        assert!(!ev.stored.is_expired_at(9));
    }

    /// Wire shape of an `event` frame, serialized by serde in one go: what the
    /// assembled frame must equal byte for byte.
    #[derive(Serialize)]
    struct EventFrame<'a> {
        op: &'static str,
        topic: &'a str,
        offset: u64,
        epoch: &'a str,
        event: &'a DeliveredEvent,
    }

    #[test]
    fn assembled_frame_equals_serde_output() {
        let mut s = stored(None);
        s.event.data = json!({"text": "quote \" backslash \\ newline \n \u{1} é", "n": [1, 2.5, null]});
        s.event.source = Some("app\"x".into());
        let odd = "q\" b\\ n\n r\r t\t b\u{8} f\u{c} c\u{1}\u{1f} é ✓";
        for (topic, epoch) in [("chat", "e1"), ("we\"ird\\topic", "ep\"och"), (odd, odd)] {
            let ev = SharedEvent::new(
                topic.into(),
                42,
                epoch.into(),
                s.clone(),
                1,
                None,
                TopicMetrics::detached(topic),
            );
            let expected = serde_json::to_string(&EventFrame {
                op: "event",
                topic,
                offset: 42,
                epoch,
                event: &s.event,
            })
            .expect("serializes");
            assert_eq!(ev.frame.as_str(), expected);
        }
    }

    #[test]
    fn wire_frames_match_tungstenite_at_every_length_encoding() {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload = "x".repeat(len);
            let mut expected = Vec::new();
            Frame::message(payload.clone(), OpCode::Data(Data::Text), true)
                .format(&mut expected)
                .expect("formats");
            assert_eq!(websocket_text_frame(payload.as_bytes()), expected, "length {len}");
        }
        let m = TopicMetrics::detached("t");
        let ev = SharedEvent::new("t".into(), 1, "e".into(), stored(None), 1, None, m);
        let wire = ev.wire();
        assert_eq!(&wire[wire.len() - ev.frame.len()..], ev.frame.as_str().as_bytes());
        assert!(std::ptr::eq(wire, ev.wire()), "framed once");
    }

    #[test]
    fn targets_match_any_listed_identity() {
        let m = TopicMetrics::detached("t");
        let open = SharedEvent::new("t".into(), 1, "e".into(), stored(None), 1, None, m.clone());
        assert!(open.targets_match(None, None, "s1"));
        let t = Targets {
            users: vec!["alice".into()],
            devices: vec!["d9".into()],
            sessions: vec!["s2".into()],
        };
        let ev = SharedEvent::new("t".into(), 1, "e".into(), stored(Some(t)), 1, None, m);
        assert!(ev.targets_match(Some("alice"), None, "s1"));
        assert!(ev.targets_match(Some("bob"), Some("d9"), "s1"));
        assert!(ev.targets_match(None, None, "s2"));
        assert!(!ev.targets_match(Some("bob"), Some("d1"), "s1"));
        assert!(!ev.targets_match(None, None, "s1"));
    }
}
