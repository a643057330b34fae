//! The reconcile loop: namespaces marked dirty (by watches, sidecar acks, resync) are
//! compiled, their config published to the sidecars when its version changed, and
//! every resource's status recomputed and handed to the status writer. Changes that
//! arrive within the debounce window are handled together: applying 1,000 Topics
//! compiles the namespace a handful of times, not 1,000.

pub mod caches;
pub mod dirty;
pub mod events;
pub mod finalizer;
pub mod namespace;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventcast_api::crd::status::condition_type::{ACCEPTED, AUTOSCALING};
use eventcast_api::crd::{BroadcastPolicyStatus, ResourceStatus};
use kube::Resource;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use caches::Caches;
use dirty::Dirty;
use events::{Events, Note};
use namespace::{Compiled, NamespaceState, Object, Snapshot, topic_wire_name};

use crate::metrics::Metrics;
use crate::resource::ResourceKey;
use crate::status::conditions::{self, CommonStatus, Facts};
use crate::status::{StatusWriter, writer::backoff};
use crate::stream::Registry;

#[derive(Debug, Default)]
struct Namespace {
    state: NamespaceState,
    compiled: Option<Compiled>,
}

/// Everything the loop needs.
pub struct Reconciler {
    pub client: kube::Client,
    pub caches: Caches,
    pub registry: Arc<Registry>,
    pub writer: Arc<StatusWriter>,
    pub events: Events,
    pub dirty: Arc<Dirty>,
    pub metrics: Arc<Metrics>,
    pub leader: watch::Receiver<bool>,
    /// Autoscaling outcomes, for BroadcastPolicy status.
    pub autoscaling: crate::autoscale::Outcomes,
    pub debounce: Duration,
    pub resync_interval: Duration,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler").finish_non_exhaustive()
    }
}

fn common_of(status: Option<&ResourceStatus>) -> CommonStatus {
    status.map_or_else(CommonStatus::default, |s| CommonStatus {
        observed_generation: s.observed_generation,
        conditions: s.conditions.clone(),
        config_version: s.config_version.clone(),
        sidecars: s.sidecars.clone(),
        last_error: s.last_error.clone(),
    })
}

fn common_of_policy(status: Option<&BroadcastPolicyStatus>) -> CommonStatus {
    status.map_or_else(CommonStatus::default, |s| CommonStatus {
        observed_generation: s.observed_generation,
        conditions: s.conditions.clone(),
        config_version: s.config_version.clone(),
        sidecars: s.sidecars.clone(),
        last_error: s.last_error.clone(),
    })
}

fn resource_status(c: CommonStatus) -> ResourceStatus {
    ResourceStatus {
        observed_generation: c.observed_generation,
        conditions: c.conditions,
        config_version: c.config_version,
        sidecars: c.sidecars,
        last_error: c.last_error,
    }
}

/// Finalizer jobs in flight and their failure counts.
#[derive(Debug, Default)]
struct Jobs {
    in_flight: HashSet<ResourceKey>,
    failures: HashMap<ResourceKey, u32>,
}

impl Reconciler {
    /// Runs until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut namespaces: HashMap<String, Namespace> = HashMap::new();
        let mut last_events: HashMap<ResourceKey, (bool, String)> = HashMap::new();
        let jobs = Arc::new(Mutex::new(Jobs::default()));
        let mut job_tasks: JoinSet<()> = JoinSet::new();
        let mut resync = tokio::time::interval(self.resync_interval.max(Duration::from_secs(1)));
        resync.tick().await;
        let mut leader = self.leader.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.dirty.wait() => {}
                _ = resync.tick() => {
                    tracing::debug!("periodic resync: pushing configs again, recomputing statuses");
                    self.registry.resync();
                    self.dirty.mark_all();
                }
                changed = leader.changed() => {
                    if changed.is_err() { break; }
                    // A new leader recomputes everything; a replica that stopped leading
                    // just stops writing.
                    if *leader.borrow_and_update() {
                        self.dirty.mark_all();
                    }
                }
                Some(_) = job_tasks.join_next(), if !job_tasks.is_empty() => continue,
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.debounce) => {}
            }
            if !self.caches.synced() {
                continue;
            }
            let batch = self.dirty.take();
            let leading = *self.leader.borrow();
            for (ns, recompile) in batch {
                let started = Instant::now();
                let snapshot = self.caches.snapshot(&ns);
                if snapshot.objects.is_empty() && self.registry.view(&ns).sidecars.is_empty() {
                    // Nothing left here: forget the namespace (its config stays published
                    // for any sidecar that connects later, as an empty one on recompile).
                    if namespaces.remove(&ns).is_some() {
                        self.publish(&ns, &mut Namespace::default(), &snapshot);
                    }
                    continue;
                }
                let entry = namespaces.entry(ns.clone()).or_default();
                if recompile || entry.compiled.is_none() || self.registry.current(&ns).is_none() {
                    self.publish(&ns, entry, &snapshot);
                } else {
                    entry.state.refresh(&ns, &snapshot);
                }
                if leading {
                    self.statuses(&ns, entry, &snapshot, &mut last_events);
                    self.finalizers(&ns, &snapshot, &jobs, &mut job_tasks, &shutdown);
                }
                self.metrics.reconciles.with_label_values(&[&ns]).inc();
                self.metrics
                    .reconcile_duration
                    .with_label_values(&[&ns])
                    .observe(started.elapsed().as_secs_f64());
            }
        }
        job_tasks.shutdown().await;
    }

    fn publish(&self, ns: &str, entry: &mut Namespace, snapshot: &Snapshot) {
        let compiled = entry.state.compile(ns, snapshot);
        let config = &compiled.output.config;
        let version = config.version();
        let new_seq = self.registry.publish(ns, &version, config);
        if new_seq.is_some() {
            tracing::info!(
                namespace = ns,
                %version,
                topics = config.topics.len(),
                subscriptions = config.subscriptions.len(),
                rejected = compiled.errors.len(),
                "config published"
            );
        }
        if let Some(current) = self.registry.current(ns) {
            entry
                .state
                .record_published(ns, &compiled.output, current.seq, &current.version);
        }
        for errors in compiled.errors.values() {
            for e in errors {
                tracing::debug!(namespace = ns, resource = %e.resource, field = %e.field, reason = e.reason.as_str(), "rejected: {}", e.message);
            }
        }
        // The config itself lives on in the published snapshot; statuses need only the
        // errors and policy selections, so the compiled copy is not kept twice.
        let mut compiled = compiled;
        compiled.output.config = eventcast_api::CompiledConfig::default();
        entry.compiled = Some(compiled);
    }

    fn statuses(
        &self,
        ns: &str,
        entry: &Namespace,
        snapshot: &Snapshot,
        last_events: &mut HashMap<ResourceKey, (bool, String)>,
    ) {
        let Some(compiled) = &entry.compiled else { return };
        let view = self.registry.view(ns);
        let now = conditions::now();
        let no_errors = Vec::new();
        for obj in &snapshot.objects {
            if obj.is_deleting() {
                continue;
            }
            let key = obj.key(ns);
            let existing = match obj {
                Object::Topic(t) => common_of(t.status.as_ref()),
                Object::Subscription(s) => common_of(s.status.as_ref()),
                Object::BroadcastPolicy(p) => common_of_policy(p.status.as_ref()),
            };
            let desired = if obj.is_paused() {
                conditions::paused(&existing, obj.generation(), &now)
            } else {
                let errors = compiled.errors.get(&key).unwrap_or(&no_errors);
                let error_refs: Vec<&eventcast_api::CompileError> = errors.iter().collect();
                let programmed = entry.state.programmed(&key);
                let in_config = programmed.filter(|p| p.generation == obj.generation() && errors.is_empty());
                let facts = Facts {
                    namespace: ns,
                    generation: obj.generation(),
                    errors: &error_refs,
                    programmed_since: in_config.map(|p| p.since),
                    programmed_version: in_config.map(|p| &*p.version),
                    serving_generation: if errors.is_empty() {
                        None
                    } else {
                        programmed.and_then(|p| p.generation)
                    },
                    view: &view,
                };
                let desired = conditions::compute(&existing, &facts, &now);
                self.accepted_event(obj, &key, &existing, &desired, last_events);
                desired
            };
            // Typed comparison: most resources are unchanged on most reconciles, and
            // building JSON for all of them is what large namespaces would pay for.
            match obj {
                Object::Topic(t) => self.write_if_changed(&key, t.status.as_ref(), &resource_status(desired)),
                Object::Subscription(s) => self.write_if_changed(&key, s.status.as_ref(), &resource_status(desired)),
                Object::BroadcastPolicy(p) => {
                    let old = p.status.clone().unwrap_or_default();
                    let mut desired = desired;
                    let outcome = self.autoscaling.lock().get(&key).cloned();
                    let autoscaling = match (&p.spec.autoscaling, outcome) {
                        (None, _) => {
                            desired.conditions.retain(|c| c.type_ != AUTOSCALING);
                            None
                        }
                        (Some(_), Some(o)) => {
                            conditions::set_condition(
                                &mut desired.conditions,
                                AUTOSCALING,
                                o.healthy,
                                o.reason,
                                o.message,
                                obj.generation(),
                                &now,
                            );
                            Some(o.status)
                        }
                        (Some(_), None) => old.autoscaling.clone(),
                    };
                    let status = BroadcastPolicyStatus {
                        observed_generation: desired.observed_generation,
                        conditions: desired.conditions,
                        config_version: desired.config_version,
                        sidecars: desired.sidecars,
                        last_error: desired.last_error,
                        selected_topics: if obj.is_paused() {
                            old.selected_topics
                        } else {
                            compiled.output.policy_selections.get(&obj.name()).copied()
                        },
                        autoscaling,
                    };
                    self.write_if_changed(&key, p.status.as_ref(), &status);
                }
            }
        }
        let present: HashSet<ResourceKey> = snapshot.objects.iter().map(|o| o.key(ns)).collect();
        last_events.retain(|k, _| k.namespace != ns || present.contains(k));
    }

    /// Queues `desired` as the status of `key` unless the object already shows it.
    fn write_if_changed<S: PartialEq + serde::Serialize>(&self, key: &ResourceKey, current: Option<&S>, desired: &S) {
        if current == Some(desired) {
            self.writer.discard(key);
        } else {
            self.writer.submit(key, desired);
        }
    }

    /// A Kubernetes Event when a resource's acceptance changes.
    fn accepted_event(
        &self,
        obj: &Object,
        key: &ResourceKey,
        existing: &CommonStatus,
        desired: &CommonStatus,
        last_events: &mut HashMap<ResourceKey, (bool, String)>,
    ) {
        let find = |s: &CommonStatus| {
            s.conditions
                .iter()
                .find(|c| c.type_ == ACCEPTED)
                .map(|c| (c.status == "True", c.message.clone()))
        };
        let Some(now) = find(desired) else { return };
        let before = find(existing);
        if before.as_ref() == Some(&now) || last_events.get(key) == Some(&now) {
            return;
        }
        // A new resource that is simply valid makes no Event (applying 10,000 Topics
        // should not make 10,000 Events); rejections and recoveries always do.
        if now.0 && before.is_none() {
            last_events.insert(key.clone(), now);
            return;
        }
        let object = match obj {
            Object::Topic(t) => t.object_ref(&()),
            Object::Subscription(s) => s.object_ref(&()),
            Object::BroadcastPolicy(p) => p.object_ref(&()),
        };
        let generation = obj.generation().unwrap_or_default();
        let note = if now.0 {
            Note {
                object,
                warning: false,
                reason: "Accepted",
                action: "Compile",
                message: format!("generation {generation} accepted"),
            }
        } else {
            tracing::warn!(resource = %key, generation, "rejected: {}", now.1);
            Note {
                object,
                warning: true,
                reason: "Rejected",
                action: "Compile",
                message: format!("generation {generation} rejected: {}", now.1),
            }
        };
        self.events.send(note);
        last_events.insert(key.clone(), now);
    }

    fn finalizers(
        &self,
        ns: &str,
        snapshot: &Snapshot,
        jobs: &Arc<Mutex<Jobs>>,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) {
        let live_names: HashSet<String> = snapshot
            .objects
            .iter()
            .filter_map(|o| match o {
                Object::Topic(t) if !o.is_deleting() => Some(topic_wire_name(t)),
                _ => None,
            })
            .collect();
        for obj in &snapshot.objects {
            let Object::Topic(topic) = obj else { continue };
            let wire = topic_wire_name(topic);
            let Some(action) = finalizer::action(topic, &wire, live_names.contains(&wire)) else {
                continue;
            };
            let key = obj.key(ns);
            if !jobs.lock().in_flight.insert(key.clone()) {
                continue;
            }
            let (client, registry, events, metrics, dirty) = (
                self.client.clone(),
                self.registry.clone(),
                self.events.clone(),
                self.metrics.clone(),
                self.dirty.clone(),
            );
            let (topic, jobs, stop, ns) = (topic.clone(), jobs.clone(), shutdown.clone(), ns.to_owned());
            tasks.spawn(async move {
                let result = finalizer::run(client, registry, events, metrics.clone(), topic, action).await;
                let wait = match &result {
                    Ok(()) => {
                        jobs.lock().failures.remove(&key);
                        None
                    }
                    Err(e) => {
                        metrics.reconcile_errors.with_label_values(&["finalizer"]).inc();
                        let failures = {
                            let mut j = jobs.lock();
                            let f = j.failures.entry(key.clone()).or_insert(0);
                            *f += 1;
                            *f
                        };
                        let wait = backoff(failures);
                        tracing::warn!(resource = %key, error = %e, retry_in = ?wait, "finalizer step failed");
                        Some(wait)
                    }
                };
                // After a success the watch brings the change and marks the namespace;
                // after a failure, try again once the backoff passed.
                if let Some(wait) = wait {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                    jobs.lock().in_flight.remove(&key);
                    dirty.mark(&ns, false);
                } else {
                    jobs.lock().in_flight.remove(&key);
                }
            });
        }
    }
}
