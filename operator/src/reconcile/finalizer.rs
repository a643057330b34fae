//! Topic `deletionPolicy: Delete`: a finalizer holds a deleted Topic until a sidecar of
//! its namespace has purged the topic's stored data (history, offsets, idempotency
//! keys, presence); only sidecars hold backend credentials, so the operator asks one
//! over the config stream. With `Retain` (the default) no finalizer is set and the data
//! stays for a Topic of the same name created later.

use std::sync::Arc;
use std::time::Duration;

use eventcast_api::crd::Topic;
use eventcast_api::crd::topic::DeletionPolicy;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::events::{Events, Note};
use crate::metrics::Metrics;
use crate::stream::Registry;

/// Finalizer the operator sets on Topics with `deletionPolicy: Delete`.
pub const FINALIZER: &str = "eventcast.dev/topic-data";
const PURGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do about one Topic's finalizer.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Add,
    Remove,
    /// Purge the data of this wire name, then remove the finalizer.
    PurgeThenRemove(String),
    /// Deleted while another Topic of the namespace uses the same wire name: its data
    /// is that Topic's now, so only the finalizer goes.
    RemoveWithoutPurge,
}

fn has_finalizer(t: &Topic) -> bool {
    t.finalizers().iter().any(|f| f == FINALIZER)
}

/// Decides the finalizer action for `topic`; `name_in_use` tells whether another live
/// Topic of the namespace has the same wire name.
pub fn action(topic: &Topic, wire_name: &str, name_in_use: bool) -> Option<Action> {
    let has = has_finalizer(topic);
    let wants = topic.spec.deletion_policy == Some(DeletionPolicy::Delete);
    if topic.meta().deletion_timestamp.is_some() {
        return has.then(|| {
            if name_in_use {
                Action::RemoveWithoutPurge
            } else {
                Action::PurgeThenRemove(wire_name.to_owned())
            }
        });
    }
    match (wants, has) {
        (true, false) => Some(Action::Add),
        (false, true) => Some(Action::Remove),
        _ => None,
    }
}

/// Why a finalizer step failed.
#[derive(Debug, thiserror::Error)]
pub enum FinalizerError {
    #[error("updating finalizers: {0}")]
    Api(#[from] kube::Error),
    #[error("purging topic data: {0}")]
    Purge(#[from] crate::stream::PurgeError),
}

async fn set_finalizers(api: &Api<Topic>, topic: &Topic, finalizers: Vec<String>) -> Result<(), kube::Error> {
    // The resourceVersion makes this a compare-and-swap: a concurrent change gets 409
    // and the next reconcile decides again from fresh data.
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": topic.resource_version()}});
    api.patch(&topic.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Carries out `action` on `topic`.
pub async fn run(
    client: kube::Client,
    registry: Arc<Registry>,
    events: Events,
    metrics: Arc<Metrics>,
    topic: Arc<Topic>,
    action: Action,
) -> Result<(), FinalizerError> {
    let ns = topic.namespace().unwrap_or_default();
    let api: Api<Topic> = Api::namespaced(client, &ns);
    let mut finalizers = topic.finalizers().to_vec();
    match action {
        Action::Add => {
            finalizers.push(FINALIZER.to_owned());
            set_finalizers(&api, &topic, finalizers).await?;
        }
        Action::Remove | Action::RemoveWithoutPurge => {
            finalizers.retain(|f| f != FINALIZER);
            set_finalizers(&api, &topic, finalizers).await?;
        }
        Action::PurgeThenRemove(wire) => {
            let reference = topic.object_ref(&());
            if let Err(e) = registry.purge(&ns, &wire, PURGE_TIMEOUT).await {
                metrics.purges.with_label_values(&["error"]).inc();
                events.send(Note {
                    object: reference,
                    warning: true,
                    reason: "PurgeFailed",
                    action: "Purge",
                    message: format!("deleting the stored data of topic {wire:?}: {e}; retrying"),
                });
                return Err(e.into());
            }
            metrics.purges.with_label_values(&["ok"]).inc();
            tracing::info!(namespace = %ns, topic = %wire, "purged the data of a deleted topic");
            events.send(Note {
                object: reference,
                warning: false,
                reason: "Purged",
                action: "Purge",
                message: format!("deleted the stored data of topic {wire:?} (deletionPolicy: Delete)"),
            });
            finalizers.retain(|f| f != FINALIZER);
            set_finalizers(&api, &topic, finalizers).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(policy: &str, finalizer: bool, deleting: bool) -> Topic {
        let mut t: Topic = serde_yaml::from_str(&format!(
            "apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {{name: t, namespace: demo}}\nspec: {{deletionPolicy: {policy}}}\n"
        ))
        .expect("topic");
        if finalizer {
            t.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
        }
        if deleting {
            t.metadata.deletion_timestamp = Some(crate::status::conditions::now());
        }
        t
    }

    #[test]
    fn finalizer_follows_the_deletion_policy() {
        assert_eq!(action(&topic("Delete", false, false), "t", false), Some(Action::Add));
        assert_eq!(action(&topic("Delete", true, false), "t", false), None);
        assert_eq!(action(&topic("Retain", true, false), "t", false), Some(Action::Remove));
        assert_eq!(action(&topic("Retain", false, false), "t", false), None);
        assert_eq!(
            action(&topic("Delete", true, true), "t", false),
            Some(Action::PurgeThenRemove("t".into()))
        );
        assert_eq!(
            action(&topic("Delete", true, true), "t", true),
            Some(Action::RemoveWithoutPurge)
        );
        assert_eq!(action(&topic("Delete", false, true), "t", false), None);
    }
}
