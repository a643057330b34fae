//! The `eventcast.v1` WebSocket protocol and the local publish API bodies: one JSON
//! object per message. Client frames are parsed here once; server frames are built here
//! (event frames are serialized once per topic and shared by every connection).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::filter::FilterCondition;
use crate::priority::Priority;

/// WebSocket subprotocol name.
pub const SUBPROTOCOL: &str = "eventcast.v1";

/// A client's request id (number or string), echoed in the reply.
pub type RequestId = Value;

/// Position in a topic's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub offset: u64,
    pub epoch: String,
}

/// Who an event is for; empty lists mean everyone. A connection receives the event when
/// it matches any listed user, device or session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Targets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<String>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.devices.is_empty() && self.sessions.is_empty()
    }
}

/// An event as published (local API body, batch item, or WebSocket `publish.event`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishRequest {
    /// Idempotency key: accepted once per topic within retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_ack: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `POST /v1/events:batch` body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest {
    pub events: Vec<BatchItem>,
}

/// One item of a batch: the topic plus the event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub topic: String,
    #[serde(flatten)]
    pub event: PublishRequest,
}

/// `202` body of a publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAccepted {
    pub id: String,
    pub topic: String,
    pub offset: u64,
    pub epoch: String,
    /// True when the id was already accepted; the original position is returned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Error body: `{"error":{"code","message"}}` over HTTP, `error` in WebSocket replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Stable error codes.
pub mod error_code {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const FORBIDDEN: &str = "forbidden";
    pub const UNKNOWN_TOPIC: &str = "unknown_topic";
    pub const TOO_LARGE: &str = "too_large";
    pub const SCHEMA_VIOLATION: &str = "schema_violation";
    pub const CONTENT_REJECTED: &str = "content_rejected";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const LIMIT_EXCEEDED: &str = "limit_exceeded";
    pub const NOT_SUBSCRIBED: &str = "not_subscribed";
    pub const NOT_FOUND: &str = "not_found";
    pub const INTERNAL: &str = "internal";
}

/// Codes of `disconnect` frames (also the WebSocket close code).
pub mod disconnect_code {
    /// Token invalid; do not reconnect with the same token.
    pub const UNAUTHORIZED: u16 = 4001;
    /// Token expired; reconnect with a fresh one.
    pub const TOKEN_EXPIRED: u16 = 4002;
    /// Not allowed to connect.
    pub const FORBIDDEN: u16 = 4003;
    /// Frames that are not protocol messages (e.g. binary).
    pub const PROTOCOL_ERROR: u16 = 4004;
    /// Server shutting down; reconnect (to another instance) and recover.
    pub const SHUTDOWN: u16 = 4005;
    /// Nothing heard from the client within the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 4006;
    /// Pod connection limit reached; reconnect later.
    pub const TOO_MANY_CONNECTIONS: u16 = 4007;
    /// The client could not keep up with critical events; reconnect and recover.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// A message over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 4009;
    /// Connection attempts too fast; reconnect later.
    pub const RATE_LIMITED: u16 = 4029;
}

/// `subscribe` request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeRequest {
    #[serde(default)]
    pub id: Option<RequestId>,
    /// Topic name or pattern (`chat.*`, `**`).
    pub topic: String,
    /// Event type patterns; empty means all.
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub filter: Vec<FilterCondition>,
    #[serde(default)]
    pub min_priority: Option<Priority>,
    /// Recover from this position (exact topic names only).
    #[serde(default)]
    pub since: Option<StreamPosition>,
}

/// A client -> server frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ClientFrame {
    Auth {
        token: String,
    },
    Subscribe(SubscribeRequest),
    Unsubscribe {
        #[serde(default)]
        id: Option<RequestId>,
        topic: String,
    },
    Publish {
        #[serde(default)]
        id: Option<RequestId>,
        topic: String,
        event: PublishRequest,
    },
    Ack {
        topic: String,
        offsets: Vec<u64>,
    },
    Presence {
        #[serde(default)]
        id: Option<RequestId>,
        topic: String,
    },
    Ping {
        #[serde(default)]
        id: Option<RequestId>,
    },
}

#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<RequestId>,
}

/// Parses a client frame; on failure returns the request id (if one could be read) with
/// a message saying what was wrong.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, (Option<RequestId>, String)> {
    serde_json::from_str(text).map_err(|e| {
        let id = serde_json::from_str::<IdOnly>(text).ok().and_then(|i| i.id);
        (id, format!("malformed frame: {e}"))
    })
}

/// The event object inside an `event` frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339 publish time.
    pub time: String,
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub data: Value,
    #[serde(default)]
    pub requires_ack: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
}

/// A server -> client frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ServerFrame {
    Reply {
        #[serde(default)]
        id: Option<RequestId>,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorBody>,
    },
    Event {
        topic: String,
        offset: u64,
        epoch: String,
        event: DeliveredEvent,
    },
    Lagged {
        topic: String,
        from: u64,
        to: u64,
    },
    Pong {
        #[serde(default)]
        id: Option<RequestId>,
    },
    Disconnect {
        code: u16,
        reason: String,
        reconnect: bool,
    },
}

impl ServerFrame {
    pub fn ok(id: Option<RequestId>, result: Value) -> Self {
        ServerFrame::Reply {
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: Option<RequestId>, code: &str, message: impl Into<String>) -> Self {
        ServerFrame::Reply {
            id,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                retry_after_ms: None,
            }),
        }
    }

    /// JSON text of the frame. Serializing these types cannot fail (string keys only).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"op":"reply","ok":false}"#.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_frames_parse_as_documented() {
        let f = parse_client_frame(
            r#"{"op":"subscribe","id":1,"topic":"chat.room-42","types":["message.*"],
                "filter":[{"field":"data.lang","op":"eq","value":"en"}],"minPriority":"normal",
                "since":{"offset":120,"epoch":"e1"}}"#,
        )
        .expect("subscribe");
        let ClientFrame::Subscribe(s) = f else {
            panic!("not subscribe")
        };
        assert_eq!(s.id, Some(json!(1)));
        assert_eq!(s.min_priority, Some(Priority::Normal));
        assert_eq!(
            s.since,
            Some(StreamPosition {
                offset: 120,
                epoch: "e1".into()
            })
        );
        assert_eq!(s.filter.len(), 1);

        for text in [
            r#"{"op":"unsubscribe","id":2,"topic":"chat.room-42"}"#,
            r#"{"op":"publish","id":3,"topic":"chat.room-42","event":{"type":"message.sent","data":{}}}"#,
            r#"{"op":"ack","topic":"chat.room-42","offsets":[121,122]}"#,
            r#"{"op":"presence","id":4,"topic":"chat.room-42"}"#,
            r#"{"op":"ping","id":5}"#,
            r#"{"op":"auth","token":"abc"}"#,
        ] {
            parse_client_frame(text).expect(text);
        }
    }

    #[test]
    fn malformed_frames_keep_the_request_id() {
        let (id, msg) = parse_client_frame(r#"{"op":"subscribe","id":"r7"}"#).expect_err("missing topic");
        assert_eq!(id, Some(json!("r7")));
        assert!(msg.contains("topic"), "{msg}");
        let (id, _) = parse_client_frame("{not json").expect_err("garbage");
        assert_eq!(id, None);
        assert!(parse_client_frame(r#"{"op":"launch","id":1}"#).is_err());
    }

    #[test]
    fn server_frames_serialize_as_documented() {
        let reply = ServerFrame::ok(Some(json!(1)), json!({"offset": 122, "epoch": "e1", "recovered": true}));
        assert_eq!(
            serde_json::to_value(&reply).expect("ser"),
            json!({"op":"reply","id":1,"ok":true,"result":{"offset":122,"epoch":"e1","recovered":true}})
        );
        let err = ServerFrame::err(Some(json!(3)), error_code::FORBIDDEN, "no");
        assert_eq!(
            serde_json::to_value(&err).expect("ser"),
            json!({"op":"reply","id":3,"ok":false,"error":{"code":"forbidden","message":"no"}})
        );
        let lagged = ServerFrame::Lagged {
            topic: "t".into(),
            from: 130,
            to: 188,
        };
        assert_eq!(lagged.to_json(), r#"{"op":"lagged","topic":"t","from":130,"to":188}"#);
        let d = ServerFrame::Disconnect {
            code: disconnect_code::SHUTDOWN,
            reason: "bye".into(),
            reconnect: true,
        };
        assert_eq!(
            d.to_json(),
            r#"{"op":"disconnect","code":4005,"reason":"bye","reconnect":true}"#
        );
    }

    #[test]
    fn batch_items_flatten_the_event() {
        let b: BatchRequest =
            serde_json::from_value(json!({"events":[{"topic":"a","type":"x","data":1,"priority":"high"}]}))
                .expect("batch");
        assert_eq!(b.events[0].topic, "a");
        assert_eq!(b.events[0].event.priority, Some(Priority::High));
    }
}
