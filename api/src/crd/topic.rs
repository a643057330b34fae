//! `Topic` (short name `ect`): a stream of events with its retention, priority, delivery
//! guarantee, presence, access rules and optional payload schema.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::AccessRule;
use super::status::ResourceStatus;
use crate::duration::Duration;
use crate::priority::Priority;

/// Spec of a Topic. Every field is optional: a Topic with only `metadata.name` is a
/// private, normal-priority, at-most-once topic with default retention.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "eventcast.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "ResourceStatus",
    shortname = "ect",
    category = "eventcast",
    derive = "PartialEq",
    derive = "Default",
    doc = "A stream of events delivered to WebSocket clients and server-side subscriptions.",
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Priority","type":"string","jsonPath":".spec.defaultPriority"}"#,
    printcolumn = r#"{"name":"Delivery","type":"string","jsonPath":".spec.delivery.guarantee"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Programmed","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].status"}"#,
    printcolumn = r#"{"name":"Sidecars","type":"integer","jsonPath":".status.sidecars.acked"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Topic name used on the wire; defaults to `metadata.name`. Dots allowed (`chat.room-42`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 200),
        regex(pattern = r"^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$")
    )]
    pub name: Option<String>,
    /// Priority of events published without one. Default `normal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_priority: Option<Priority>,
    /// Largest accepted event (serialized JSON of the event), in bytes. Default 65536.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 64, max = 16_777_216))]
    pub max_event_bytes: Option<u32>,
    /// History kept for recovery and the history API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Delivery guarantee and acknowledgement settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// Track who is subscribed and emit `presence.join` / `presence.leave` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<bool>,
    /// Who may subscribe and who may publish from a WebSocket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<TopicAccess>,
    /// JSON Schema that the `data` of every published event must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::any_object")]
    pub schema: Option<Value>,
    /// What deleting the Topic does to its stored history. Default `Retain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// History retention: whichever limit is reached first trims the oldest events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Most events kept (0 keeps no history). Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1_000_000))]
    pub max_events: Option<u32>,
    /// Oldest event age kept. Default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

/// Delivery guarantee of a topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Guarantee {
    #[default]
    AtMostOnce,
    AtLeastOnce,
}

/// Delivery settings. Acks, timeouts and retries apply to `atLeastOnce` events
/// published with `requiresAck`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `atMostOnce` (default) or `atLeastOnce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarantee: Option<Guarantee>,
    /// Time a client has to ack before redelivery. Default 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_timeout: Option<Duration>,
    /// Redeliveries before dead-lettering. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub max_retries: Option<u32>,
    /// Topic receiving events that exhausted their retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

/// Access rules of a topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicAccess {
    /// Who may subscribe. Default: any authenticated connection, no anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<AccessRule>,
    /// Who may publish from a WebSocket. Default: nobody (apps publish through their
    /// sidecar's local API, which is always allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<AccessRule>,
}

/// What happens to stored history when the Topic is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}
