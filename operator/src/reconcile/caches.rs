//! Watch-backed caches of Topics, Subscriptions, BroadcastPolicies and Secrets. Every
//! change marks its namespace dirty; the reconciler compiles dirty namespaces.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eventcast_api::compiler::Secrets;
use eventcast_api::crd::{BroadcastPolicy, Subscription, Topic};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::dirty::Dirty;
use super::namespace::{Object, Snapshot};
use crate::metrics::Metrics;

/// The four caches.
#[derive(Clone)]
pub struct Caches {
    pub topics: Store<Topic>,
    pub subscriptions: Store<Subscription>,
    pub policies: Store<BroadcastPolicy>,
    pub secrets: Store<Secret>,
    synced: Arc<[AtomicBool; 4]>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("topics", &self.topics.len())
            .field("synced", &self.synced())
            .finish_non_exhaustive()
    }
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Annotation `kubectl apply` keeps a full copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the operator never reads before an object enters a cache: managed fields
/// and kubectl's last-applied copy are often larger than the object itself, and with
/// 10,000 Topics they would be most of the operator's memory.
fn slim<K: Resource>(o: &mut K) {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// What of an object goes into the compiled config besides its spec (whose changes bump
/// `generation`). An event that leaves this unchanged (a status write, most often our
/// own) needs a status pass, not a recompile of the whole namespace.
fn config_fingerprint<K: Resource>(o: &K) -> u64 {
    let meta = o.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    meta.resource_version
        .as_ref()
        .filter(|_| meta.generation.is_none())
        .hash(&mut h);
    h.finish()
}

/// What every reflector task shares.
#[derive(Clone)]
struct Shared {
    synced: Arc<[AtomicBool; 4]>,
    dirty: Arc<Dirty>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

fn spawn_reflector<K>(
    tasks: &mut JoinSet<()>,
    api: Api<K>,
    (writer, store): (reflector::store::Writer<K>, Store<K>),
    slot: usize,
    shared: Shared,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let kind = K::kind(&()).into_owned();
    let Shared {
        synced,
        dirty,
        metrics,
        shutdown,
    } = shared;
    // Runs one reflector until shutdown: events mark namespaces dirty; the first complete
    // list marks the cache synced. Watch errors back off (kube-runtime's default backoff).
    tasks.spawn(async move {
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(slim::<K>)
            .reflect(writer);
        let mut stream = std::pin::pin!(stream);
        // Per object (namespace, name): its config fingerprint when last seen.
        let mut seen: HashMap<(String, String), u64> = HashMap::new();
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = stream.next() => next,
            };
            let Some(event) = next else { return };
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    if let Some(ns) = o.namespace() {
                        let fingerprint = config_fingerprint(&o);
                        let changed = seen.insert((ns.clone(), o.name_any()), fingerprint) != Some(fingerprint);
                        // Secrets only matter where Eventcast resources live.
                        if slot != 3 || dirty.is_known(&ns) {
                            dirty.mark(&ns, changed);
                        }
                    }
                }
                Ok(watcher::Event::Delete(o)) => {
                    if let Some(ns) = o.namespace() {
                        seen.remove(&(ns.clone(), o.name_any()));
                        if slot != 3 || dirty.is_known(&ns) {
                            dirty.mark(&ns, true);
                        }
                    }
                }
                // A relist follows: what is still there comes again as InitApply, and
                // InitDone recompiles everything.
                Ok(watcher::Event::Init) => seen.clear(),
                Ok(watcher::Event::InitDone) => {
                    synced[slot].store(true, Ordering::Release);
                    metrics.resources.with_label_values(&[&kind]).set(store.len() as i64);
                    tracing::info!(kind = %kind, objects = store.len(), "cache synced");
                    for o in store.state() {
                        if let Some(ns) = o.namespace() {
                            dirty.mark(&ns, true);
                        }
                    }
                    dirty.kick();
                }
                Err(e) => {
                    metrics.watch_errors.inc();
                    tracing::warn!(kind = %kind, error = %e, "watch error; retrying with backoff");
                }
            }
        }
    });
}

impl Caches {
    /// Starts the watches. `namespace`: watch only that namespace.
    pub fn start(
        client: &kube::Client,
        namespace: Option<&str>,
        dirty: Arc<Dirty>,
        metrics: Arc<Metrics>,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> Self {
        let synced: Arc<[AtomicBool; 4]> = Arc::new(Default::default());
        let (topics, tw) = reflector::store();
        let (subscriptions, sw) = reflector::store();
        let (policies, pw) = reflector::store();
        let (secrets, xw) = reflector::store();
        let shared = Shared {
            synced: synced.clone(),
            dirty,
            metrics,
            shutdown: shutdown.clone(),
        };
        spawn_reflector::<Topic>(tasks, api(client, namespace), (tw, topics.clone()), 0, shared.clone());
        spawn_reflector::<Subscription>(
            tasks,
            api(client, namespace),
            (sw, subscriptions.clone()),
            1,
            shared.clone(),
        );
        spawn_reflector::<BroadcastPolicy>(tasks, api(client, namespace), (pw, policies.clone()), 2, shared.clone());
        spawn_reflector::<Secret>(tasks, api(client, namespace), (xw, secrets.clone()), 3, shared);
        Self {
            topics,
            subscriptions,
            policies,
            secrets,
            synced,
        }
    }

    /// Every cache has completed its first list: configs compiled now are complete.
    pub fn synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }

    /// Namespaces holding any Eventcast resource.
    pub fn namespaces(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        out.extend(self.topics.state().iter().filter_map(|o| o.namespace()));
        out.extend(self.subscriptions.state().iter().filter_map(|o| o.namespace()));
        out.extend(self.policies.state().iter().filter_map(|o| o.namespace()));
        out
    }

    /// The namespace's objects and Secrets as they are now.
    pub fn snapshot(&self, namespace: &str) -> Snapshot {
        let in_ns = |ns: Option<String>| ns.as_deref() == Some(namespace);
        let mut objects = Vec::new();
        for t in self.topics.state() {
            if in_ns(t.namespace()) {
                objects.push(Object::Topic(t));
            }
        }
        for s in self.subscriptions.state() {
            if in_ns(s.namespace()) {
                objects.push(Object::Subscription(s));
            }
        }
        for p in self.policies.state() {
            if in_ns(p.namespace()) {
                objects.push(Object::BroadcastPolicy(p));
            }
        }
        let mut secrets = Secrets::default();
        for s in self.secrets.state() {
            if in_ns(s.namespace()) {
                let mut data: std::collections::BTreeMap<String, Vec<u8>> = s
                    .data
                    .as_ref()
                    .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
                    .unwrap_or_default();
                // stringData is write-only on a real apiserver, but harmless to honour.
                if let Some(sd) = &s.string_data {
                    for (k, v) in sd {
                        data.entry(k.clone()).or_insert_with(|| v.clone().into_bytes());
                    }
                }
                secrets.insert(s.name_any(), data);
            }
        }
        Snapshot { objects, secrets }
    }
}
