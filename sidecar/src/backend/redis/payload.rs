//! The delivery payload the append script publishes on a topic's sharded channel:
//! `<offset> <epoch> <stored event JSON>`, space separated. The offset and epoch lead so
//! a sidecar can order (and drop duplicates) before parsing the event, and the JSON is
//! passed through Lua untouched, so numbers in event data keep their exact text.

use crate::event::StoredEvent;

/// Why a payload could not be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not UTF-8")]
    NotUtf8,
    #[error("payload has no {0}")]
    Missing(&'static str),
    #[error("payload offset {0:?} is not a positive integer")]
    BadOffset(String),
    #[error("payload event: {0}")]
    Event(String),
}

/// A parsed payload whose event JSON is parsed only when it is delivered.
#[derive(Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    pub offset: u64,
    pub epoch: &'a str,
    pub event_json: &'a str,
}

impl<'a> Payload<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PayloadError> {
        let text = std::str::from_utf8(bytes).map_err(|_| PayloadError::NotUtf8)?;
        let (offset, rest) = text.split_once(' ').ok_or(PayloadError::Missing("epoch"))?;
        let (epoch, event_json) = rest.split_once(' ').ok_or(PayloadError::Missing("event"))?;
        let offset = offset
            .parse::<u64>()
            .ok()
            .filter(|o| *o > 0)
            .ok_or_else(|| PayloadError::BadOffset(offset.chars().take(32).collect()))?;
        if epoch.is_empty() {
            return Err(PayloadError::Missing("epoch"));
        }
        Ok(Self {
            offset,
            epoch,
            event_json,
        })
    }

    pub fn event(&self) -> Result<StoredEvent, PayloadError> {
        parse_stored(self.event_json)
    }
}

/// Parses a stored event as kept in Redis.
pub fn parse_stored(json: &str) -> Result<StoredEvent, PayloadError> {
    serde_json::from_str(json).map_err(|e| PayloadError::Event(e.to_string()))
}

/// The payload as the script builds it (for tests and documentation).
#[cfg(test)]
pub fn encode(offset: u64, epoch: &str, event_json: &str) -> String {
    format!("{offset} {epoch} {event_json}")
}

#[cfg(test)]
mod tests {
    use eventcast_api::Priority;
    use eventcast_api::protocol::DeliveredEvent;
    use serde_json::json;

    use super::*;

    fn stored() -> StoredEvent {
        StoredEvent {
            event: DeliveredEvent {
                id: "e1".into(),
                event_type: "message.sent".into(),
                time: "2026-01-01T00:00:00Z".into(),
                priority: Priority::Normal,
                source: None,
                data: json!({"text": "a b c", "n": 12345678901234567u64}),
                requires_ack: false,
                correlation_id: None,
                causation_id: None,
            },
            targets: None,
            expires_at_ms: None,
            published_at_ms: 42,
        }
    }

    #[test]
    fn round_trip() {
        let json = serde_json::to_string(&stored()).expect("json");
        let text = encode(7, "abc234", &json);
        let p = Payload::parse(text.as_bytes()).expect("parse");
        assert_eq!(p.offset, 7);
        assert_eq!(p.epoch, "abc234");
        assert_eq!(p.event_json, json);
        assert_eq!(p.event().expect("event"), stored());
    }

    #[test]
    fn rejects_malformed_payloads() {
        let cases: &[(&[u8], PayloadError)] = &[
            (b"", PayloadError::Missing("epoch")),
            (b"7", PayloadError::Missing("epoch")),
            (b"7 e1", PayloadError::Missing("event")),
            (b"7  {}", PayloadError::Missing("epoch")),
            (b"x e1 {}", PayloadError::BadOffset("x".into())),
            (b"0 e1 {}", PayloadError::BadOffset("0".into())),
            (b"-1 e1 {}", PayloadError::BadOffset("-1".into())),
            (b"\xff e1 {}", PayloadError::NotUtf8),
        ];
        for (bytes, want) in cases {
            assert_eq!(Payload::parse(bytes).err().as_ref(), Some(want), "{bytes:?}");
        }
        let p = Payload::parse(b"3 e1 {not json").expect("framing is fine");
        assert!(matches!(p.event(), Err(PayloadError::Event(_))));
    }
}
