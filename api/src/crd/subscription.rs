//! `Subscription` (short name `ecs`): a declarative server-side consumer that routes
//! matching events to a webhook or into another topic.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::SecretRef;
use super::status::ResourceStatus;
use crate::duration::Duration;
use crate::filter::FilterCondition;
use crate::priority::Priority;

/// Spec of a Subscription.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "eventcast.dev",
    version = "v1alpha1",
    kind = "Subscription",
    namespaced,
    status = "ResourceStatus",
    shortname = "ecs",
    category = "eventcast",
    derive = "PartialEq",
    derive = "Default",
    doc = "A server-side consumer: routes matching events to a webhook or another topic.",
    printcolumn = r#"{"name":"Topics","type":"string","jsonPath":".spec.topics"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.delivery.mode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSpec {
    /// Topic name patterns (`chat.*`, `**`).
    #[schemars(length(min = 1))]
    pub topics: Vec<String>,
    /// Event type patterns (`message.*`); empty means every type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Conditions that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<FilterCondition>,
    /// Lowest priority delivered. Default `background` (everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_priority: Option<Priority>,
    /// Realtime or batched delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<SubscriptionDelivery>,
    /// Where matching events go.
    pub sink: Sink,
}

/// Delivery mode of a subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryMode {
    #[default]
    Realtime,
    Batched,
}

/// How events are grouped before reaching the sink.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionDelivery {
    /// `realtime` (default) or `batched`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<DeliveryMode>,
    /// Most events per batch (batched mode). Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000))]
    pub batch_size: Option<u32>,
    /// Longest wait before a partial batch is sent (batched mode). Default 200ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_interval: Option<Duration>,
}

/// The sink: exactly one of `webhook` or `topic`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.webhook) != has(self.topic)").message("set exactly one of webhook or topic"))]
#[serde(rename_all = "camelCase")]
pub struct Sink {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicSink>,
}

/// POST matching events as JSON to a URL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSink {
    /// http or https URL.
    pub url: String,
    /// Secret whose keys/values are sent as request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_from: Option<SecretRef>,
    /// Static request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout. Default 2s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retry with exponential backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Topic receiving events the webhook never accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

/// Exponential backoff with jitter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Attempts including the first. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: Option<u32>,
    /// First backoff. Default 200ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_interval: Option<Duration>,
    /// Backoff cap. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<Duration>,
}

/// Route matching events into another topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicSink {
    /// Destination topic name.
    pub name: String,
}
