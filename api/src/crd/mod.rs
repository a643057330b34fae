//! The three custom resources of group `eventcast.dev/v1alpha1` and their shared parts.
//! Field names are the public API: extend, never rename.

pub mod broadcast_policy;
pub mod common;
pub mod status;
pub mod subscription;
pub mod topic;

pub use broadcast_policy::{BroadcastPolicy, BroadcastPolicySpec};
pub use status::{BroadcastPolicyStatus, ResourceStatus, SidecarCounts};
pub use subscription::{Subscription, SubscriptionSpec};
pub use topic::{Topic, TopicSpec};

/// API group of every Eventcast resource.
pub const GROUP: &str = "eventcast.dev";
/// API version of every Eventcast resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` string as written in manifests.
pub const API_VERSION: &str = "eventcast.dev/v1alpha1";
/// Annotation that stops reconciling a resource.
pub const PAUSED_ANNOTATION: &str = "eventcast.dev/paused";
