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

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The three CRDs as served to Kubernetes.
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    let mut topic = Topic::crd();
    // Every Topic field is optional, so `spec` may be omitted; the apiserver fills in `{}`.
    for v in &mut topic.spec.versions {
        if let Some(schema) = v.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            if let Some(required) = schema.required.as_mut() {
                required.retain(|r| r != "spec");
            }
            if let Some(spec) = schema.properties.as_mut().and_then(|p| p.get_mut("spec")) {
                spec.default = Some(
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(serde_json::json!({})),
                );
            }
        }
    }
    vec![topic, Subscription::crd(), BroadcastPolicy::crd()]
}

/// The three CRDs as YAML documents, with the file name each is checked in under.
pub fn generated_crds() -> Vec<(String, String)> {
    crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            let body = serde_yaml::to_string(&crd).unwrap_or_default();
            let yaml = format!(
                "# Generated from eventcast-api by `cargo run -p eventcast-api --bin crdgen`; do not edit.\n{body}"
            );
            (file, yaml)
        })
        .collect()
}
