//! Connected sidecars, per namespace, and the config each runs.
//!
//! The reconciler publishes a namespace's config here; every connection of that
//! namespace watches it and sends the snapshot. Sidecars answer ack/nack, which lands
//! here too, so status computation can ask "which connected sidecars run a config at
//! least as new as sequence N". Versions are content hashes (unordered), so each
//! publication gets a sequence number; an acked version maps to the sequence of its
//! latest publication.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventcast_api::CompiledConfig;
use eventcast_api::config_stream::{OperatorMessage, SidecarLoad};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::peers::{Report, ReportedSidecar, is_fresh};
use crate::metrics::Metrics;

/// `(version, error)` of a rejected snapshot.
type Nack = (String, String);

/// Versions remembered per namespace for mapping acks to sequences.
const VERSIONS_KEPT: usize = 256;

/// The `snapshot` message serialized from borrowed parts: the same JSON as
/// `OperatorMessage::Snapshot` without copying a namespace's whole config to build it.
#[derive(serde::Serialize)]
#[serde(tag = "type", rename = "snapshot")]
struct SnapshotRef<'a> {
    version: &'a str,
    config: &'a CompiledConfig,
}

/// A config as published to a namespace's sidecars.
#[derive(Debug)]
pub struct Published {
    pub version: String,
    pub seq: u64,
    /// The serialized `snapshot` message, built once and shared (not copied) by every
    /// connection: with 10,000 Topics it is tens of MB.
    pub message: axum::extract::ws::Utf8Bytes,
}

/// What one connection knows about the sidecar behind it.
#[derive(Debug)]
struct Sidecar {
    namespace: String,
    pod: String,
    acked: Option<String>,
    /// Version and error of the last nack, cleared by a later ack.
    nacked: Option<(String, String)>,
    load: Option<SidecarLoad>,
    /// When each snapshot sequence was sent, for push latency.
    sent: Vec<(u64, Instant)>,
    commands: mpsc::Sender<OperatorMessage>,
}

#[derive(Debug)]
struct NamespaceStream {
    current: watch::Sender<Option<Arc<Published>>>,
    next_seq: u64,
    /// version -> sequence of its latest publication (oldest dropped beyond VERSIONS_KEPT).
    seq_of: HashMap<String, u64>,
}

impl NamespaceStream {
    fn new() -> Self {
        Self {
            current: watch::Sender::new(None),
            next_seq: 1,
            seq_of: HashMap::new(),
        }
    }
}

/// A connected sidecar as status computation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarView {
    pub pod: String,
    /// Sequence of the config it acked last (None: nothing acked, or a version this
    /// operator never published).
    pub acked_seq: Option<u64>,
    /// `(version, error)` of its last nack, if it has not acked anything since.
    pub nacked: Option<(String, String)>,
}

/// A namespace's stream state, for status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceView {
    /// Current version and its sequence.
    pub current: Option<(String, u64)>,
    pub sidecars: Vec<SidecarView>,
}

/// Why a purge could not be done.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PurgeError {
    #[error("no sidecar of namespace {0:?} is connected to delete the topic's data")]
    NoSidecar(String),
    #[error("the sidecar did not answer the purge within {0:?}")]
    Timeout(Duration),
    #[error("the sidecar's connection closed before it answered")]
    Disconnected,
    #[error("the sidecar could not delete the topic's data: {0}")]
    Failed(String),
}

/// Registration handle of one connection.
#[derive(Debug)]
pub struct Registration {
    pub id: u64,
    pub snapshots: watch::Receiver<Option<Arc<Published>>>,
    pub commands: mpsc::Receiver<OperatorMessage>,
}

/// Called with a namespace whenever its sidecars' state changed (status may change).
pub type OnChange = Arc<dyn Fn(&str) + Send + Sync>;

/// All connected sidecars.
pub struct Registry {
    namespaces: Mutex<HashMap<String, NamespaceStream>>,
    sidecars: Mutex<BTreeMap<u64, Sidecar>>,
    purges: Mutex<HashMap<String, oneshot::Sender<Result<(), String>>>>,
    /// Sidecars connected to the other replicas, from their reports.
    remote: Mutex<Vec<Report>>,
    next_id: AtomicU64,
    resync: watch::Sender<u64>,
    on_change: OnChange,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sidecars", &self.sidecars.lock().len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(metrics: Arc<Metrics>, on_change: OnChange) -> Self {
        Self {
            namespaces: Mutex::new(HashMap::new()),
            sidecars: Mutex::new(BTreeMap::new()),
            purges: Mutex::new(HashMap::new()),
            remote: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            resync: watch::Sender::new(0),
            on_change,
            metrics,
        }
    }

    /// Makes `config` the namespace's current config. Returns its sequence, or None
    /// when that version is already current (nothing is pushed).
    pub fn publish(&self, namespace: &str, version: &str, config: &CompiledConfig) -> Option<u64> {
        let mut namespaces = self.namespaces.lock();
        let ns = namespaces
            .entry(namespace.to_owned())
            .or_insert_with(NamespaceStream::new);
        if ns.current.borrow().as_ref().is_some_and(|p| p.version == version) {
            return None;
        }
        let text = match serde_json::to_string(&SnapshotRef { version, config }) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(namespace, error = %e, "serializing a config snapshot");
                return None;
            }
        };
        let seq = ns.next_seq;
        ns.next_seq += 1;
        ns.seq_of.insert(version.to_owned(), seq);
        if ns.seq_of.len() > VERSIONS_KEPT {
            let min_keep = seq.saturating_sub(VERSIONS_KEPT as u64);
            ns.seq_of.retain(|_, s| *s > min_keep);
        }
        ns.current.send_replace(Some(Arc::new(Published {
            version: version.to_owned(),
            seq,
            message: axum::extract::ws::Utf8Bytes::from(text),
        })));
        self.metrics.config_pushes.with_label_values(&[namespace]).inc();
        self.metrics.set_config_version(namespace, version);
        Some(seq)
    }

    /// The namespace's current published config.
    pub fn current(&self, namespace: &str) -> Option<Arc<Published>> {
        self.namespaces
            .lock()
            .get(namespace)
            .and_then(|ns| ns.current.borrow().clone())
    }

    /// Registers a connection of `pod` in `namespace`.
    pub fn register(&self, namespace: &str, pod: &str) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let snapshots = self
            .namespaces
            .lock()
            .entry(namespace.to_owned())
            .or_insert_with(NamespaceStream::new)
            .current
            .subscribe();
        let (tx, rx) = mpsc::channel(16);
        self.sidecars.lock().insert(
            id,
            Sidecar {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                acked: None,
                nacked: None,
                load: None,
                sent: Vec::new(),
                commands: tx,
            },
        );
        self.update_connected_gauge(namespace);
        tracing::info!(namespace, pod, connection = id, "sidecar connected");
        (self.on_change)(namespace);
        Registration {
            id,
            snapshots,
            commands: rx,
        }
    }

    pub fn unregister(&self, id: u64) {
        let removed = self.sidecars.lock().remove(&id);
        if let Some(s) = removed {
            self.update_connected_gauge(&s.namespace);
            tracing::info!(namespace = %s.namespace, pod = %s.pod, connection = id, "sidecar disconnected");
            (self.on_change)(&s.namespace);
        }
    }

    fn update_connected_gauge(&self, namespace: &str) {
        let n = self
            .sidecars
            .lock()
            .values()
            .filter(|s| s.namespace == namespace)
            .count();
        self.metrics
            .connected_sidecars
            .with_label_values(&[namespace])
            .set(n as i64);
    }

    /// Records that snapshot `seq` was written to connection `id`.
    pub fn sent(&self, id: u64, seq: u64) {
        if let Some(s) = self.sidecars.lock().get_mut(&id) {
            s.sent.retain(|(q, _)| *q != seq);
            s.sent.push((seq, Instant::now()));
            if s.sent.len() > 8 {
                s.sent.remove(0);
            }
        }
    }

    pub fn ack(&self, id: u64, version: &str) {
        // Lock order: never hold `sidecars` while taking `namespaces` or the reverse.
        let Some(ns_name) = self.sidecars.lock().get(&id).map(|s| s.namespace.clone()) else {
            return;
        };
        let seq = self
            .namespaces
            .lock()
            .get(&ns_name)
            .and_then(|ns| ns.seq_of.get(version).copied());
        let changed = {
            let mut sidecars = self.sidecars.lock();
            let Some(s) = sidecars.get_mut(&id) else { return };
            if let Some(seq) = seq
                && let Some(pos) = s.sent.iter().position(|(q, _)| *q == seq)
            {
                let (_, at) = s.sent.remove(pos);
                self.metrics.push_latency.observe(at.elapsed().as_secs_f64());
            }
            let changed = s.acked.as_deref() != Some(version) || s.nacked.is_some();
            s.acked = Some(version.to_owned());
            s.nacked = None;
            tracing::debug!(namespace = %s.namespace, pod = %s.pod, version, "sidecar acked config");
            changed
        };
        self.metrics.acks.with_label_values(&[&ns_name]).inc();
        if changed {
            (self.on_change)(&ns_name);
        }
    }

    pub fn nack(&self, id: u64, version: &str, error: &str) {
        let namespace = {
            let mut sidecars = self.sidecars.lock();
            let Some(s) = sidecars.get_mut(&id) else { return };
            tracing::warn!(namespace = %s.namespace, pod = %s.pod, version, error, "sidecar rejected config");
            self.metrics.nacks.with_label_values(&[&s.namespace]).inc();
            s.nacked = Some((version.to_owned(), error.to_owned()));
            s.namespace.clone()
        };
        (self.on_change)(&namespace);
    }

    pub fn load(&self, id: u64, load: SidecarLoad) {
        if let Some(s) = self.sidecars.lock().get_mut(&id) {
            s.load = Some(load);
        }
    }

    /// Latest load reports of a namespace's sidecars whose pod name starts with
    /// `pod_prefix` (a Deployment's pods are named `<deployment>-...`), here and on the
    /// other replicas; all of the namespace's when none matches.
    pub fn loads_of(&self, namespace: &str, pod_prefix: &str) -> Vec<SidecarLoad> {
        let mut all: Vec<(String, SidecarLoad)> = self
            .sidecars
            .lock()
            .values()
            .filter(|s| s.namespace == namespace)
            .filter_map(|s| s.load.clone().map(|l| (s.pod.clone(), l)))
            .collect();
        for r in self.remote.lock().iter().filter(|r| is_fresh(r.renewed)) {
            for s in r.sidecars.iter().filter(|s| s.namespace == namespace) {
                if let Some(l) = &s.load
                    && !all.iter().any(|(pod, _)| *pod == s.pod)
                {
                    all.push((s.pod.clone(), l.clone()));
                }
            }
        }
        let matching: Vec<SidecarLoad> = all
            .iter()
            .filter(|(pod, _)| pod.starts_with(pod_prefix))
            .map(|(_, l)| l.clone())
            .collect();
        if matching.is_empty() {
            all.into_iter().map(|(_, l)| l).collect()
        } else {
            matching
        }
    }

    /// Stream state of one namespace.
    pub fn view(&self, namespace: &str) -> NamespaceView {
        // Lock order: `sidecars` first, released before `namespaces`.
        let mut sidecars: Vec<(String, Option<String>, Option<Nack>)> = self
            .sidecars
            .lock()
            .values()
            .filter(|s| s.namespace == namespace)
            .map(|s| (s.pod.clone(), s.acked.clone(), s.nacked.clone()))
            .collect();
        // Sidecars of other replicas; a pod connected here too counts once, as ours.
        let mut remote: Vec<(u64, &ReportedSidecar)> = Vec::new();
        let reports = self.remote.lock();
        for r in reports.iter().filter(|r| is_fresh(r.renewed)) {
            for s in r.sidecars.iter().filter(|s| s.namespace == namespace) {
                remote.push((r.renewed, s));
            }
        }
        remote.sort_by_key(|r| std::cmp::Reverse(r.0));
        for (_, s) in remote {
            if !sidecars.iter().any(|(pod, _, _)| *pod == s.pod) {
                sidecars.push((s.pod.clone(), s.acked.clone(), s.nacked.clone()));
            }
        }
        drop(reports);
        let namespaces = self.namespaces.lock();
        let ns = namespaces.get(namespace);
        let current = ns.and_then(|ns| ns.current.borrow().as_ref().map(|p| (p.version.clone(), p.seq)));
        let sidecars = sidecars
            .into_iter()
            .map(|(pod, acked, nacked)| SidecarView {
                pod,
                acked_seq: acked.and_then(|v| ns.and_then(|ns| ns.seq_of.get(&v).copied())),
                nacked,
            })
            .collect();
        NamespaceView { current, sidecars }
    }

    /// The sidecars connected to this replica, for its report to the other replicas.
    pub fn local_report(&self) -> Vec<ReportedSidecar> {
        let mut out: Vec<ReportedSidecar> = self
            .sidecars
            .lock()
            .values()
            .map(|s| ReportedSidecar {
                namespace: s.namespace.clone(),
                pod: s.pod.clone(),
                acked: s.acked.clone(),
                nacked: s.nacked.clone(),
                load: s.load.clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
        out
    }

    /// Replaces the other replicas' reports; namespaces whose sidecars changed get
    /// their statuses recomputed.
    pub fn set_remote(&self, reports: Vec<Report>) {
        let namespaces_of = |rs: &[Report]| {
            let mut m: BTreeMap<String, Vec<ReportedSidecar>> = BTreeMap::new();
            for r in rs {
                for s in &r.sidecars {
                    m.entry(s.namespace.clone()).or_default().push(s.clone());
                }
            }
            m
        };
        let after = namespaces_of(&reports);
        let old = std::mem::replace(&mut *self.remote.lock(), reports);
        let before = namespaces_of(&old);
        let mut changed: Vec<&String> = before
            .keys()
            .chain(after.keys())
            .filter(|ns| before.get(*ns) != after.get(*ns))
            .collect();
        changed.dedup();
        for ns in changed {
            (self.on_change)(ns);
        }
    }

    /// Namespaces with at least one connected sidecar.
    pub fn namespaces_with_sidecars(&self) -> Vec<String> {
        let mut out: Vec<String> = self.sidecars.lock().values().map(|s| s.namespace.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Makes every connection send its namespace's current snapshot again.
    pub fn resync(&self) {
        self.resync.send_modify(|n| *n += 1);
    }

    pub fn resync_signal(&self) -> watch::Receiver<u64> {
        self.resync.subscribe()
    }

    /// Asks one connected sidecar of `namespace` to delete everything stored for `topic`.
    pub async fn purge(&self, namespace: &str, topic: &str, timeout: Duration) -> Result<(), PurgeError> {
        let id = format!("purge-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let candidates: Vec<mpsc::Sender<OperatorMessage>> = self
            .sidecars
            .lock()
            .values()
            .filter(|s| s.namespace == namespace)
            .map(|s| s.commands.clone())
            .collect();
        let (tx, rx) = oneshot::channel();
        self.purges.lock().insert(id.clone(), tx);
        let msg = OperatorMessage::Purge {
            id: id.clone(),
            topic: topic.to_owned(),
        };
        let mut sent = false;
        for c in candidates {
            if c.try_send(msg.clone()).is_ok() {
                sent = true;
                break;
            }
        }
        if !sent {
            self.purges.lock().remove(&id);
            return Err(PurgeError::NoSidecar(namespace.to_owned()));
        }
        let result = tokio::time::timeout(timeout, rx).await;
        self.purges.lock().remove(&id);
        match result {
            Err(_) => Err(PurgeError::Timeout(timeout)),
            Ok(Err(_)) => Err(PurgeError::Disconnected),
            Ok(Ok(Err(e))) => Err(PurgeError::Failed(e)),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }

    /// A sidecar's answer to a purge.
    pub fn purged(&self, id: &str, error: Option<String>) {
        if let Some(tx) = self.purges.lock().remove(id) {
            let _ = tx.send(error.map_or(Ok(()), Err));
        }
    }

    /// Number of connected sidecars (all namespaces).
    pub fn connected(&self) -> usize {
        self.sidecars.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (Registry, Arc<Mutex<Vec<String>>>) {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = changes.clone();
        let r = Registry::new(
            Arc::new(Metrics::new().expect("metrics")),
            Arc::new(move |ns: &str| seen.lock().push(ns.to_owned())),
        );
        (r, changes)
    }

    fn config(ns: &str) -> CompiledConfig {
        CompiledConfig {
            namespace: ns.to_owned(),
            ..CompiledConfig::default()
        }
    }

    #[test]
    fn the_snapshot_is_the_documented_message() {
        let (r, _) = registry();
        r.publish("demo", "v-a", &config("demo"));
        let text = r.current("demo").expect("published").message.to_string();
        let parsed: OperatorMessage = serde_json::from_str(&text).expect("an operator message");
        assert_eq!(
            parsed,
            OperatorMessage::Snapshot {
                version: "v-a".into(),
                config: Box::new(config("demo"))
            }
        );
    }

    #[test]
    fn an_unchanged_version_is_not_pushed_again() {
        let (r, _) = registry();
        assert_eq!(r.publish("demo", "v-a", &config("demo")), Some(1));
        assert_eq!(r.publish("demo", "v-a", &config("demo")), None);
        assert_eq!(r.publish("demo", "v-b", &config("demo")), Some(2));
        // Going back to an earlier content gets a new sequence: it is a new push.
        assert_eq!(r.publish("demo", "v-a", &config("demo")), Some(3));
        assert_eq!(r.current("demo").map(|p| p.seq), Some(3));
    }

    #[test]
    fn acks_and_nacks_show_in_the_view() {
        let (r, changes) = registry();
        r.publish("demo", "v-a", &config("demo"));
        let a = r.register("demo", "pod-a");
        let b = r.register("demo", "pod-b");
        let _other = r.register("other", "pod-c");
        r.ack(a.id, "v-a");
        r.nack(b.id, "v-a", "bad schema");
        let view = r.view("demo");
        assert_eq!(view.current, Some(("v-a".to_owned(), 1)));
        assert_eq!(view.sidecars.len(), 2);
        assert_eq!(view.sidecars[0].acked_seq, Some(1));
        assert_eq!(view.sidecars[1].nacked, Some(("v-a".into(), "bad schema".into())));
        // A version this operator never published counts as unknown.
        r.ack(b.id, "v-unknown");
        assert_eq!(r.view("demo").sidecars[1].acked_seq, None);
        assert_eq!(r.view("demo").sidecars[1].nacked, None);
        r.unregister(a.id);
        assert_eq!(r.view("demo").sidecars.len(), 1);
        assert!(changes.lock().iter().filter(|n| *n == "demo").count() >= 4);
    }

    #[tokio::test]
    async fn purge_goes_to_a_sidecar_and_waits_for_its_answer() {
        let (r, _) = registry();
        let r = Arc::new(r);
        assert_eq!(
            r.purge("demo", "t", Duration::from_millis(50)).await,
            Err(PurgeError::NoSidecar("demo".into()))
        );
        let mut reg = r.register("demo", "pod-a");
        let r2 = r.clone();
        let answer = tokio::spawn(async move {
            let Some(OperatorMessage::Purge { id, topic }) = reg.commands.recv().await else {
                panic!("expected a purge command")
            };
            assert_eq!(topic, "t");
            r2.purged(&id, Some("redis down".into()));
            reg
        });
        assert_eq!(
            r.purge("demo", "t", Duration::from_secs(5)).await,
            Err(PurgeError::Failed("redis down".into()))
        );
        // The sidecar stays connected but never answers.
        let _reg = answer.await.expect("answer task");
        assert_eq!(
            r.purge("demo", "t", Duration::from_millis(30)).await,
            Err(PurgeError::Timeout(Duration::from_millis(30)))
        );
    }
}
