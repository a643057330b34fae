//! `BroadcastPolicy` (short name `ecp`): cross-cutting rules for the topics it selects
//! (auth, rate limits, priority queues, content rules, connections, autoscaling).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LabelSelector, SecretKeyRef};
use super::status::BroadcastPolicyStatus;
use crate::duration::Duration;

/// Spec of a BroadcastPolicy.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "eventcast.dev",
    version = "v1alpha1",
    kind = "BroadcastPolicy",
    namespaced,
    status = "BroadcastPolicyStatus",
    shortname = "ecp",
    category = "eventcast",
    derive = "PartialEq",
    derive = "Default",
    doc = "Auth, rate limits, queues, content rules, connection limits and autoscaling for selected topics.",
    printcolumn = r#"{"name":"Topics","type":"integer","jsonPath":".status.selectedTopics"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.autoscaling.desiredReplicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastPolicySpec {
    /// Topic name patterns this policy applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Label selector over Topic resources (combined with `topics` by OR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_selector: Option<LabelSelector>,
    /// How WebSocket clients authenticate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// Publish and connection rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    /// Per-priority queue sizes and latency targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priorities: Option<PrioritySettings>,
    /// Content rules applied on publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentRules>,
    /// Connection limits and timers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionSettings>,
    /// Write coalescing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
    /// WebSocket compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Replica recommendations for the Deployment running the sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
}

/// Authentication settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
}

/// JWT verification: HS256 with `secretRef`, or RS256 with `publicKeyRef` (PEM).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.publicKeyRef)").message("set exactly one of secretRef (HS256) or publicKeyRef (RS256)"))]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// Required `iss` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Required `aud` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// HMAC secret for HS256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// PEM public key for RS256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_ref: Option<SecretKeyRef>,
    /// Which claims carry the user, device and roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<ClaimMapping>,
    /// Allowed clock skew. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway: Option<Duration>,
}

/// Claim names for identity. Defaults: `sub`, `device_id`, `roles`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<String>,
}

/// Rate limits by key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.perUser) || has(self.perUser.eventsPerSecond)").message("perUser limits published events: set eventsPerSecond"))]
#[x_kube(validation = Rule::new("!has(self.perDevice) || has(self.perDevice.eventsPerSecond)").message("perDevice limits published events: set eventsPerSecond"))]
#[x_kube(validation = Rule::new("!has(self.perIP) || has(self.perIP.eventsPerSecond) || has(self.perIP.connectionsPerSecond)").message("perIP: set eventsPerSecond, connectionsPerSecond or both"))]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_user: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_device: Option<RateLimit>,
    /// Wire name `perIP`, as in the design's manifests (camelCase would give `perIp`).
    #[serde(rename = "perIP", default, skip_serializing_if = "Option::is_none")]
    pub per_ip: Option<RateLimit>,
}

/// A token bucket: sustained rate plus burst.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Published events per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001))]
    pub events_per_second: Option<f64>,
    /// New WebSocket connections per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001))]
    pub connections_per_second: Option<f64>,
    /// Bucket size. Default: one second of the rate, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub burst: Option<u32>,
}

/// Settings per priority class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrioritySettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<PriorityClassSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<PriorityClassSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normal: Option<PriorityClassSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<PriorityClassSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<PriorityClassSettings>,
}

/// Queue size and latency target of one priority class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriorityClassSettings {
    /// Events queued per connection before shedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub queue_size: Option<u32>,
    /// Delivery latency target, reported in metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_target: Option<Duration>,
}

/// Content rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContentRules {
    /// Largest accepted event; the smaller of this and the Topic's wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 64, max = 16_777_216))]
    pub max_event_bytes: Option<u32>,
    /// Fields removed from events before storage and delivery (`data.password`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact_fields: Vec<String>,
    /// Reject events whose string values contain script content (`<script`, `javascript:`, inline handlers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_scripts: Option<bool>,
}

/// Connection settings (pod-wide; the strictest value among policies wins).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.heartbeatInterval) || !has(self.idleTimeout) || duration(self.heartbeatInterval) < duration(self.idleTimeout)").message("heartbeatInterval must be shorter than idleTimeout"))]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSettings {
    /// Server heartbeat (WebSocket ping) interval. Default 25s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<Duration>,
    /// Close connections silent for this long. Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_subscriptions_per_connection: Option<u32>,
    /// Default 50000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections_per_pod: Option<u32>,
}

/// Write coalescing per connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Batching {
    /// Most frames written per flush. Default 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_batch: Option<u32>,
    /// Longest a frame waits for companions before a flush. Default 0 (flush at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<Duration>,
}

/// WebSocket permessage-deflate settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Compression {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_bytes: Option<u32>,
}

/// Autoscaling of the Deployment running the sidecars.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[x_kube(validation = Rule::new("has(self.targetConnectionsPerPod) || has(self.targetEventsPerSecondPerPod)").message("set targetConnectionsPerPod, targetEventsPerSecondPerPod or both"))]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    pub target_ref: ScaleTargetRef,
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_connections_per_pod: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_events_per_second_per_pod: Option<u32>,
    /// Default 3m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_cooldown: Option<Duration>,
    /// Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_cooldown: Option<Duration>,
}

/// Target of autoscaling (a resource with a `scale` subresource).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// Default `Deployment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
}
