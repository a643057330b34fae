//! Autoscaling of a BroadcastPolicy's target (`spec.autoscaling`): every few seconds the
//! leader reads the target Deployment's `scale` subresource and its sidecars' load
//! reports, decides ([`decide`]) and sets the scale. The outcome goes into the policy's
//! `status.autoscaling` and its `AutoscalingHealthy` condition, never into `Ready`.

pub mod decide;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventcast_api::crd::status::AutoscalingStatus;
use eventcast_api::crd::{BroadcastPolicy, PAUSED_ANNOTATION};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::reconcile::caches::Caches;
use crate::reconcile::dirty::Dirty;
use crate::reconcile::events::{Events, Note};
use crate::resource::{Kind, ResourceKey};
use crate::stream::Registry;

/// The latest autoscaling outcome of one policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: AutoscalingStatus,
    pub healthy: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Outcomes by policy, read by the status computation.
pub type Outcomes = Arc<Mutex<HashMap<ResourceKey, Outcome>>>;

/// The autoscaling loop and what it needs.
pub struct Autoscaler {
    pub client: kube::Client,
    pub caches: Caches,
    pub registry: Arc<Registry>,
    pub dirty: Arc<Dirty>,
    pub events: Events,
    pub leader: watch::Receiver<bool>,
    pub every: Duration,
    pub outcomes: Outcomes,
}

impl std::fmt::Debug for Autoscaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autoscaler")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Seconds since an RFC 3339 time (the status' `lastScaleTime`, so cooldowns survive an
/// operator restart or a leader change).
fn since_rfc3339(s: &str) -> Option<Duration> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds();
    u64::try_from(secs).ok().map(Duration::from_secs)
}

impl Autoscaler {
    /// Runs until shutdown; only the leader acts.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_scale: HashMap<ResourceKey, (Instant, String)> = HashMap::new();
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !*self.leader.borrow() || !self.caches.synced() {
                continue;
            }
            let policies = self.caches.policies.state();
            let mut seen = Vec::new();
            for p in policies {
                let Some(ns) = p.namespace() else { continue };
                let key = ResourceKey::new(Kind::BroadcastPolicy, &ns, &p.name_any());
                let paused = p.annotations().get(PAUSED_ANNOTATION).is_some_and(|v| v == "true");
                if p.spec.autoscaling.is_none() || paused || p.meta().deletion_timestamp.is_some() {
                    continue;
                }
                seen.push(key.clone());
                let outcome = self.one(&p, &ns, &key, &mut last_scale).await;
                let changed = self.outcomes.lock().insert(key, outcome.clone()) != Some(outcome);
                if changed {
                    self.dirty.mark(&ns, false);
                }
            }
            self.outcomes.lock().retain(|k, _| seen.contains(k));
            last_scale.retain(|k, _| seen.contains(k));
        }
    }

    async fn one(
        &self,
        policy: &BroadcastPolicy,
        ns: &str,
        key: &ResourceKey,
        last_scale: &mut HashMap<ResourceKey, (Instant, String)>,
    ) -> Outcome {
        let Some(spec) = &policy.spec.autoscaling else {
            return unhealthy("NotConfigured", "no spec.autoscaling".into(), None);
        };
        let previous = policy.status.as_ref().and_then(|s| s.autoscaling.clone());
        // This replica's own record first: the status may not show its last write yet.
        let last_time = last_scale
            .get(key)
            .map(|(_, t)| t.clone())
            .or_else(|| previous.as_ref().and_then(|a| a.last_scale_time.clone()));
        if spec.target_ref.kind != "Deployment" {
            return unhealthy(
                "UnsupportedTarget",
                format!(
                    "spec.autoscaling.targetRef.kind {:?}: only Deployment is supported",
                    spec.target_ref.kind
                ),
                last_time,
            );
        }
        let name = &spec.target_ref.name;
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let current = match api.get_scale(name).await {
            Ok(scale) => scale.spec.and_then(|s| s.replicas).unwrap_or(0),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                return unhealthy("TargetNotFound", format!("Deployment {ns}/{name} not found"), last_time);
            }
            Err(e) => {
                return unhealthy(
                    "ScaleReadFailed",
                    format!("reading the scale of {name}: {e}"),
                    last_time,
                );
            }
        };
        let loads = self.registry.loads_of(ns, &format!("{name}-"));
        let since = last_scale
            .get(key)
            .map(|(at, _)| at.elapsed())
            .or_else(|| last_time.as_deref().and_then(since_rfc3339));
        let decision = decide::decide(spec, current, &loads, since);
        let mut status = AutoscalingStatus {
            current_replicas: Some(current),
            desired_replicas: Some(decision.desired),
            last_scale_time: last_time,
            reason: Some(decision.reason.clone()),
        };
        if decision.scale {
            let patch = Patch::Merge(json!({"spec": {"replicas": decision.desired}}));
            match api.patch_scale(name, &PatchParams::default(), &patch).await {
                Ok(_) => {
                    tracing::info!(policy = %key, deployment = %name, from = current, to = decision.desired, "scaled: {}", decision.reason);
                    let at = rfc3339_now();
                    last_scale.insert(key.clone(), (Instant::now(), at.clone()));
                    status.current_replicas = Some(decision.desired);
                    status.last_scale_time = Some(at);
                    self.events.send(Note {
                        object: policy.object_ref(&()),
                        warning: false,
                        reason: "Scaled",
                        action: "Scale",
                        message: format!("Deployment {name}: {}", decision.reason),
                    });
                }
                Err(e) => {
                    return unhealthy(
                        "ScaleFailed",
                        format!("setting the scale of {name} to {}: {e}", decision.desired),
                        status.last_scale_time,
                    );
                }
            }
        }
        Outcome {
            status,
            healthy: true,
            reason: if decision.scale { "Scaled" } else { "Stable" },
            message: decision.reason,
        }
    }
}

fn unhealthy(reason: &'static str, message: String, last_scale_time: Option<String>) -> Outcome {
    Outcome {
        status: AutoscalingStatus {
            last_scale_time,
            reason: Some(message.clone()),
            ..AutoscalingStatus::default()
        },
        healthy: false,
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_scale_time_round_trips() {
        let now = rfc3339_now();
        let since = since_rfc3339(&now).expect("parses");
        assert!(since < Duration::from_secs(5));
        assert!(since_rfc3339("not a time").is_none());
    }
}
