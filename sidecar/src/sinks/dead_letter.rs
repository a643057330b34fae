//! Dead letters of webhook subscriptions: an event the webhook never accepted is
//! published to the subscription's `deadLetterTopic` as an `eventcast.deadletter` event
//! that carries the original event and why it failed, so it can be inspected through
//! the topic's history or consumed and replayed.
//!
//! A dead letter that itself fails at a webhook is not dead-lettered again: it already
//! sits in its dead-letter topic's history, and re-publishing it could bounce between
//! two subscriptions' dead-letter topics forever.

use eventcast_api::protocol::PublishRequest;
use serde_json::json;

use super::matcher::source_of;
use crate::event::SharedEvent;

/// Event type of dead letters (the same as for unacknowledged `atLeastOnce` events).
pub const DEAD_LETTER_TYPE: &str = "eventcast.deadletter";

/// Why events are being dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Delivery attempts made.
    pub attempts: u32,
    pub last_error: String,
    /// HTTP status of the last response, when there was one.
    pub status: Option<u16>,
}

/// Whether the event is a dead letter (from any subscription or topic).
pub fn is_dead_letter(ev: &SharedEvent) -> bool {
    ev.stored.event.event_type == DEAD_LETTER_TYPE
}

/// The dead letter of `ev` for `subscription`: same priority and correlation, caused by
/// the original event.
pub fn request(subscription: &str, ev: &SharedEvent, failure: &Failure) -> PublishRequest {
    let mut data = json!({
        "subscription": subscription,
        "topic": &*ev.topic,
        "offset": ev.offset,
        "epoch": &*ev.epoch,
        "attempts": failure.attempts,
        "lastError": &failure.last_error,
        "event": &ev.stored.event,
    });
    if let Some(status) = failure.status {
        data["status"] = json!(status);
    }
    PublishRequest {
        event_type: DEAD_LETTER_TYPE.to_owned(),
        data,
        priority: Some(ev.priority()),
        source: Some(source_of(subscription)),
        correlation_id: ev.stored.event.correlation_id.clone(),
        causation_id: Some(ev.stored.event.id.clone()),
        ..PublishRequest::default()
    }
}

#[cfg(test)]
mod tests {
    use eventcast_api::Priority;

    use super::*;
    use crate::sinks::fixtures::event;

    #[test]
    fn carries_the_event_and_the_failure() {
        let ev = event("chat", 9, "message.sent");
        let failure = Failure {
            attempts: 1,
            last_error: "HTTP 400 Bad Request: nope".into(),
            status: Some(400),
        };
        let req = request("audit", &ev, &failure);
        assert_eq!(req.event_type, "eventcast.deadletter");
        assert_eq!(req.priority, Some(Priority::High));
        assert_eq!(req.source.as_deref(), Some("eventcast/subscription/audit"));
        assert_eq!(req.causation_id.as_deref(), Some("id-9"));
        assert_eq!(req.correlation_id.as_deref(), Some("corr-1"));
        assert_eq!(req.id, None, "a fresh id per dead letter");
        let d = &req.data;
        assert_eq!(d["subscription"], "audit");
        assert_eq!(d["topic"], "chat");
        assert_eq!(d["offset"], 9);
        assert_eq!(d["epoch"], "ep1");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["lastError"], "HTTP 400 Bad Request: nope");
        assert_eq!(d["status"], 400);
        assert_eq!(d["event"]["id"], "id-9");
        assert_eq!(d["event"]["type"], "message.sent");
    }

    #[test]
    fn status_is_absent_without_a_response() {
        let ev = event("chat", 1, "m");
        let failure = Failure {
            attempts: 5,
            last_error: "timed out".into(),
            status: None,
        };
        let req = request("audit", &ev, &failure);
        assert!(req.data.get("status").is_none());
        assert!(!is_dead_letter(&ev));
        assert!(is_dead_letter(&event("chat", 2, DEAD_LETTER_TYPE)));
    }
}
