//! The compiled config: what a namespace's Topic, Subscription and BroadcastPolicy
//! resources mean once defaults are applied, secrets resolved and policies merged onto
//! the topics they select. Sidecars run from it; the operator pushes it; its content
//! hash is its version.

mod subscription;
mod topic;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use subscription::{RetryConfig, SinkConfig, SubscriptionConfig, SubscriptionDeliveryConfig};
pub use topic::{
    AccessConfig, ContentConfig, DeliveryConfig, QueueClass, RateSpec, RetentionConfig, TopicConfig, TopicLimits,
};

use crate::crd::topic::DeletionPolicy;

/// A resource that went into a config, with the generation compiled.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

impl std::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Compiled config of one namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompiledConfig {
    pub namespace: String,
    /// Topics by wire name.
    pub topics: BTreeMap<String, TopicConfig>,
    /// Server-side subscriptions, sorted by resource name.
    pub subscriptions: Vec<SubscriptionConfig>,
    /// JWT verifiers, sorted by policy name.
    pub auth: Vec<JwtProvider>,
    /// Pod-wide connection settings.
    pub connection: ConnectionConfig,
    /// Resources (with generations) this config was compiled from.
    pub sources: Vec<ResourceRef>,
}

impl CompiledConfig {
    /// Content hash of the config: equal configs get equal versions however their
    /// resources were written, so an unchanged result pushes nothing.
    pub fn version(&self) -> String {
        let mut hasher = Sha256::new();
        // Serialization of these types cannot fail: no non-string map keys, no NaN
        // floats survive compilation (rates are validated finite).
        if let Ok(bytes) = serde_json::to_vec(self) {
            hasher.update(&bytes);
        }
        let digest = hasher.finalize();
        let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        format!("v-{hex}")
    }

    pub fn topic(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.get(name)
    }
}

/// Key material of a JWT verifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "alg")]
pub enum JwtKey {
    /// HS256 shared secret, base64 (standard alphabet).
    #[serde(rename = "HS256")]
    Hmac { secret: String },
    /// RS256 public key, PEM.
    #[serde(rename = "RS256")]
    Rsa { pem: String },
}

/// One JWT verifier, from one BroadcastPolicy's `auth.jwt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtProvider {
    /// BroadcastPolicy that defined it.
    pub policy: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub key: JwtKey,
    pub user_claim: String,
    pub device_claim: String,
    pub roles_claim: String,
    pub leeway_secs: u64,
}

/// Pod-wide connection settings: the strictest across all policies, or defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionConfig {
    pub heartbeat_interval_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_subscriptions_per_connection: u32,
    pub max_connections_per_pod: u32,
    /// New connections per client IP.
    pub per_ip: Option<RateSpec>,
    /// Frames written per flush.
    pub max_batch: u32,
    /// Longest a queued frame waits for companions before a flush.
    pub max_batch_delay_ms: u64,
    pub compression: bool,
    pub compression_threshold_bytes: u32,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 25_000,
            idle_timeout_ms: 60_000,
            max_subscriptions_per_connection: 100,
            max_connections_per_pod: 50_000,
            per_ip: None,
            max_batch: 64,
            max_batch_delay_ms: 0,
            compression: false,
            compression_threshold_bytes: 1024,
        }
    }
}

impl Default for DeletionPolicyConfig {
    fn default() -> Self {
        Self(DeletionPolicy::Retain)
    }
}

/// Wrapper so the config model carries the CRD's enum without re-declaring it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeletionPolicyConfig(pub DeletionPolicy);
