//! Compiled topic: the Topic spec with defaults applied and its BroadcastPolicy merged in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DeletionPolicyConfig;
use crate::crd::topic::Guarantee;
use crate::priority::Priority;

/// Everything a sidecar needs to serve one topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// Wire name (`chat.room-42`).
    pub name: String,
    /// `metadata.name` of the Topic resource.
    pub resource: String,
    pub default_priority: Priority,
    /// Effective limit: the smaller of the Topic's and its policy's.
    pub max_event_bytes: u32,
    pub retention: RetentionConfig,
    pub delivery: DeliveryConfig,
    pub presence: bool,
    pub subscribe: AccessConfig,
    /// `None`: WebSocket clients may not publish.
    pub publish: Option<AccessConfig>,
    /// JSON Schema for event `data`; validated to compile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    pub deletion_policy: DeletionPolicyConfig,
    /// BroadcastPolicies applied (sorted); empty when none selects the topic.
    pub policies: Vec<String>,
    pub limits: TopicLimits,
    /// Per-class connection queue settings, indexed by `Priority::index()`.
    pub queues: [QueueClass; 5],
    pub content: ContentConfig,
    /// Topic labels (for policy selection and metrics).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Retention limits; whichever is hit first trims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionConfig {
    pub max_events: u32,
    pub max_age_ms: u64,
}

/// Delivery guarantee and ack settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryConfig {
    pub guarantee: Guarantee,
    pub ack_timeout_ms: u64,
    pub max_retries: u32,
    pub dead_letter_topic: Option<String>,
}

/// An access rule; see [`crate::crd::common::AccessRule`].
pub type AccessConfig = crate::crd::common::AccessRule;

/// A token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateSpec {
    pub per_second: f64,
    pub burst: u32,
}

/// Publish rate limits that apply to this topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicLimits {
    /// Policy whose buckets these are: topics sharing a policy share buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_user: Option<RateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_device: Option<RateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_ip: Option<RateSpec>,
}

/// Queue length and latency target of one priority class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueClass {
    pub queue_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_target_ms: Option<u64>,
}

impl QueueClass {
    pub const fn default_for(p: Priority) -> Self {
        Self {
            queue_size: p.default_queue_size(),
            latency_target_ms: p.default_latency_target_ms(),
        }
    }

    pub const fn defaults() -> [QueueClass; 5] {
        [
            Self::default_for(Priority::Critical),
            Self::default_for(Priority::High),
            Self::default_for(Priority::Normal),
            Self::default_for(Priority::Low),
            Self::default_for(Priority::Background),
        ]
    }
}

/// Content rules applied on publish.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentConfig {
    /// Paths under `data` to remove (each a list of segments, without the `data` prefix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<Vec<String>>,
    #[serde(default)]
    pub deny_scripts: bool,
}
