//! Webhook request bodies. Each event is
//! `{"subscription", "topic", "offset", "epoch", "event": {...}}` with the event object
//! exactly as WebSocket clients receive it; realtime deliveries POST one such object,
//! batched deliveries a JSON array of them. A body is serialized once and reused by
//! every retry.

use bytes::Bytes;
use eventcast_api::protocol::DeliveredEvent;
use serde::Serialize;

use crate::event::SharedEvent;

/// One event as a webhook receives it.
#[derive(Serialize)]
struct WebhookEvent<'a> {
    subscription: &'a str,
    topic: &'a str,
    offset: u64,
    epoch: &'a str,
    event: &'a DeliveredEvent,
}

impl<'a> WebhookEvent<'a> {
    fn new(subscription: &'a str, ev: &'a SharedEvent) -> Self {
        Self {
            subscription,
            topic: &ev.topic,
            offset: ev.offset,
            epoch: &ev.epoch,
            event: &ev.stored.event,
        }
    }
}

/// Body of a delivery: an object for a realtime subscription, an array when batched.
pub fn encode<E: AsRef<SharedEvent>>(
    subscription: &str,
    events: &[E],
    as_array: bool,
) -> Result<Bytes, serde_json::Error> {
    let items: Vec<WebhookEvent<'_>> = events
        .iter()
        .map(|e| WebhookEvent::new(subscription, e.as_ref()))
        .collect();
    let bytes = match (as_array, items.as_slice()) {
        (false, [one]) => serde_json::to_vec(one)?,
        _ => serde_json::to_vec(&items)?,
    };
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::sinks::fixtures::event;

    #[test]
    fn realtime_body_is_one_object() {
        let body = encode("audit", &[event("chat", 4, "message.sent")], false).expect("encodes");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            json!({
                "subscription": "audit",
                "topic": "chat",
                "offset": 4,
                "epoch": "ep1",
                "event": {
                    "id": "id-4",
                    "type": "message.sent",
                    "time": "2026-01-01T00:00:00Z",
                    "priority": "high",
                    "source": "app",
                    "data": {"n": 4},
                    "requiresAck": false,
                    "correlationId": "corr-1"
                }
            })
        );
    }

    #[test]
    fn batched_body_is_an_array_even_of_one() {
        let evs = [event("chat", 1, "a"), event("chat", 2, "b")];
        let v: Value = serde_json::from_slice(&encode("s", &evs, true).expect("encodes")).expect("json");
        let offsets: Vec<u64> = v
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|e| e["offset"].as_u64())
            .collect();
        assert_eq!(offsets, [1, 2]);
        let v: Value = serde_json::from_slice(&encode("s", &evs[..1], true).expect("encodes")).expect("json");
        assert_eq!(v.as_array().map(Vec::len), Some(1));
    }
}
