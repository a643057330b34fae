//! Sharing sidecar state between operator replicas. Both replicas serve the config
//! stream, so a namespace's sidecars may be split between them, but only the leader
//! writes status. Each replica publishes the sidecars connected to it (and what they
//! acked or rejected) in a ConfigMap of its own in the Lease namespace, renewed every
//! few seconds; every replica watches the others' reports and counts their sidecars as
//! its own when computing status. A report not renewed for [`STALE_AFTER`] (its replica
//! died) is ignored; by then its sidecars have reconnected elsewhere.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::registry::Registry;

/// Label on every replica's report ConfigMap.
pub const REPORT_LABEL: &str = "eventcast.dev/sidecar-report";
/// How often a replica renews its report when nothing changed.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A report older than this is ignored.
pub const STALE_AFTER: Duration = Duration::from_secs(15);
/// How often local changes are checked for (and so the delay they reach the leader with).
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// One sidecar as reported by a replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedSidecar {
    pub namespace: String,
    pub pod: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nacked: Option<(String, String)>,
    /// Its last load report (autoscaling input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<eventcast_api::config_stream::SidecarLoad>,
}

/// A replica's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub identity: String,
    /// Unix seconds of the last renewal.
    pub renewed: u64,
    pub sidecars: Vec<ReportedSidecar>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether a report renewed at `renewed` (unix seconds) still counts.
pub fn is_fresh(renewed: u64) -> bool {
    unix_now().saturating_sub(renewed) <= STALE_AFTER.as_secs()
}

/// ConfigMap name of a replica's report (identities may hold characters names cannot).
pub fn report_name(identity: &str) -> String {
    let clean: String = identity
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    let clean = clean.trim_matches('-');
    let mut name = format!("eventcast-operator-sidecars-{clean}");
    name.truncate(253);
    name
}

fn same_membership(a: &[ReportedSidecar], b: &[ReportedSidecar]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.namespace == y.namespace && x.pod == y.pod && x.acked == y.acked && x.nacked == y.nacked)
}

/// Publishes this replica's report and follows the others' until shutdown.
pub async fn run(
    client: kube::Client,
    namespace: String,
    identity: String,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let name = report_name(&identity);
    let follow = follow(api.clone(), identity.clone(), registry.clone(), shutdown.clone());
    let publish = async {
        let mut last: Option<(Vec<ReportedSidecar>, std::time::Instant)> = None;
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let sidecars = registry.local_report();
            let due = match &last {
                None => true,
                // Load figures change all the time: only acks, nacks and membership make
                // an early write; loads travel with the periodic renewal.
                Some((prev, at)) => !same_membership(prev, &sidecars) || at.elapsed() >= RENEW_EVERY,
            };
            if !due {
                continue;
            }
            let report = Report {
                identity: identity.clone(),
                renewed: unix_now(),
                sidecars: sidecars.clone(),
            };
            let body = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {REPORT_LABEL: "true"}},
                "data": {"report": serde_json::to_string(&report).unwrap_or_default()},
            });
            match api
                .patch(
                    &name,
                    &PatchParams::apply("eventcast-operator").force(),
                    &Patch::Apply(body),
                )
                .await
            {
                Ok(_) => last = Some((sidecars, std::time::Instant::now())),
                Err(e) => tracing::warn!(error = %e, configmap = %name, "publishing this replica's sidecar report"),
            }
        }
    };
    tokio::join!(follow, publish);
    // Best effort: the others stop counting this replica's sidecars at once.
    if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
        tracing::debug!(error = %e, "deleting this replica's sidecar report");
    }
}

async fn follow(api: Api<ConfigMap>, identity: String, registry: Arc<Registry>, shutdown: CancellationToken) {
    let config = watcher::Config::default().labels(&format!("{REPORT_LABEL}=true"));
    let stream = watcher(api, config).default_backoff().applied_objects();
    let mut stream = std::pin::pin!(stream);
    let mut known: BTreeMap<String, Report> = BTreeMap::new();
    let mut expire = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = expire.tick() => {
                // A replica that died stops renewing: drop its report once stale.
                let before = known.len();
                known.retain(|_, r| is_fresh(r.renewed));
                if known.len() != before {
                    registry.set_remote(known.values().cloned().collect());
                }
            }
            next = stream.next() => {
                let Some(next) = next else { return };
                match next {
                    Ok(cm) => {
                        let Some(text) = cm.data.as_ref().and_then(|d| d.get("report")) else { continue };
                        match serde_json::from_str::<Report>(text) {
                            Ok(report) if report.identity != identity => {
                                known.insert(report.identity.clone(), report);
                                known.retain(|_, r| is_fresh(r.renewed));
                                registry.set_remote(known.values().cloned().collect());
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "ignoring a malformed sidecar report"),
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "watching sidecar reports; retrying"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_are_valid_object_names() {
        assert_eq!(report_name("op-a"), "eventcast-operator-sidecars-op-a");
        assert_eq!(
            report_name("Host_1.example:42"),
            "eventcast-operator-sidecars-host-1-example-42"
        );
        assert!(report_name(&"x".repeat(400)).len() <= 253);
    }

    #[test]
    fn old_reports_are_stale() {
        assert!(is_fresh(unix_now()));
        assert!(!is_fresh(unix_now() - STALE_AFTER.as_secs() - 1));
    }
}
