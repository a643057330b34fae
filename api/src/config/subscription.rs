//! Compiled server-side subscription.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crd::subscription::DeliveryMode;
use crate::filter::FilterCondition;
use crate::pattern::PatternSet;
use crate::priority::Priority;

/// One Subscription resource, validated; `filter` compiles (checked by the compiler).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionConfig {
    pub name: String,
    pub topics: PatternSet,
    pub event_types: PatternSet,
    pub filter: Vec<FilterCondition>,
    pub min_priority: Priority,
    pub delivery: SubscriptionDeliveryConfig,
    pub sink: SinkConfig,
}

/// Realtime or batched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionDeliveryConfig {
    pub mode: DeliveryMode,
    pub batch_size: u32,
    pub batch_interval_ms: u64,
}

/// Where matching events go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SinkConfig {
    Webhook {
        url: String,
        /// Static headers merged with the `headersFrom` Secret.
        headers: BTreeMap<String, String>,
        timeout_ms: u64,
        retry: RetryConfig,
        dead_letter_topic: Option<String>,
    },
    Topic {
        name: String,
    },
}

/// Exponential backoff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub initial_interval_ms: u64,
    pub max_interval_ms: u64,
}
