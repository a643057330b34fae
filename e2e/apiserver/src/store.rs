//! The object store: every object of every resource, keyed by (group, resource,
//! namespace, name), one global monotonic `resourceVersion`, and a bounded log of
//! changes that watches read from and consistent list snapshots are rebuilt with.
//!
//! All state sits behind one mutex. Request handlers run their (synchronous, CPU-only)
//! read-modify-write under it so that precondition checks, the write and the change log
//! entry are atomic, exactly like an etcd transaction; nothing awaits while holding it.
//! Every committed change is also published, under the lock and so in version order, on
//! a bounded broadcast channel that open watches receive from (as the apiserver's watch
//! cache feeds each watcher). A watch that starts from a version older than the retained
//! log, or that falls more than the channel's capacity behind, gets `410 Expired` and
//! the client relists.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::registry::Registry;
use crate::status::ApiError;

/// Changes an open watch may fall behind by before it is closed with 410.
pub const WATCH_BUFFER: usize = 4096;

/// Identity of a stored object. Cluster-scoped objects have an empty namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Self {
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// Watch event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The `type` string of a watch event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: EventType,
    pub key: ObjectKey,
    /// The object after the change (for `Deleted`: its last state, with the deletion's version).
    pub object: Arc<Value>,
    /// The object before the change, if it existed: what list snapshots roll back to.
    pub prev: Option<Arc<Value>>,
}

/// The mutable state: objects, the version counter, the change log and the registry
/// derived from the stored CRDs.
#[derive(Debug)]
pub struct State {
    objects: BTreeMap<ObjectKey, Arc<Value>>,
    rv: u64,
    log: VecDeque<Arc<Change>>,
    window: usize,
    /// Highest version no longer in the log: reads from versions below it are 410.
    compacted: u64,
    /// Changes of the current write transaction, published when it ends.
    outbox: Vec<Arc<Change>>,
    pub registry: Registry,
}

/// Reads `metadata.resourceVersion` of an object as a number.
pub fn object_rv(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

impl State {
    fn new(window: usize) -> Self {
        Self {
            objects: BTreeMap::new(),
            rv: 0,
            log: VecDeque::new(),
            window: window.max(1),
            compacted: 0,
            outbox: Vec::new(),
            registry: Registry::default(),
        }
    }

    /// The latest committed version.
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// The oldest version a watch may start from.
    pub fn oldest_rv(&self) -> u64 {
        self.compacted
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Arc<Value>> {
        self.objects.get(key)
    }

    /// Stores `object` under `key` with the next version; records ADDED or MODIFIED.
    pub fn put(&mut self, key: ObjectKey, mut object: Value) -> Arc<Value> {
        self.rv += 1;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        let object = Arc::new(object);
        let prev = self.objects.insert(key.clone(), object.clone());
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Change {
            rv: self.rv,
            kind,
            key,
            object: object.clone(),
            prev,
        });
        object
    }

    /// Removes the object under `key`; records DELETED with a new version.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Arc<Value>> {
        let prev = self.objects.remove(key)?;
        self.rv += 1;
        let mut last = (*prev).clone();
        if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        let last = Arc::new(last);
        self.record(Change {
            rv: self.rv,
            kind: EventType::Deleted,
            key: key.clone(),
            object: last.clone(),
            prev: Some(prev),
        });
        Some(last)
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.outbox.push(change.clone());
        self.log.push_back(change);
        while self.log.len() > self.window {
            if let Some(old) = self.log.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// Objects of one stored resource, optionally one namespace, in key order.
    pub fn objects_of<'a>(
        &'a self,
        group: &'a str,
        resource: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Arc<Value>)> + 'a {
        let start = ObjectKey::new(group, resource, namespace.unwrap_or(""), "");
        self.objects.range(start..).take_while(move |(k, _)| {
            k.group == group && k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns)
        })
    }

    /// Every object in a namespace, across resources.
    pub fn keys_in_namespace(&self, namespace: &str) -> Vec<ObjectKey> {
        self.objects
            .keys()
            .filter(|k| k.namespace == namespace)
            .cloned()
            .collect()
    }

    /// Every stored key.
    pub fn all_keys(&self) -> Vec<ObjectKey> {
        self.objects.keys().cloned().collect()
    }

    /// The objects of a resource as they were at version `at` (a consistent snapshot,
    /// rebuilt from the change log), or now when `at` is `None`.
    pub fn snapshot(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        at: Option<u64>,
    ) -> Result<Vec<(ObjectKey, Arc<Value>)>, ApiError> {
        let mut objects: BTreeMap<ObjectKey, Arc<Value>> = self
            .objects_of(group, resource, namespace)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(at) = at.filter(|at| *at < self.rv) {
            if at < self.compacted {
                return Err(ApiError::expired(at, self.compacted));
            }
            for change in self.log.iter().rev().take_while(|c| c.rv > at) {
                let k = &change.key;
                if k.group != group || k.resource != resource || namespace.is_some_and(|ns| k.namespace != ns) {
                    continue;
                }
                match &change.prev {
                    Some(prev) => objects.insert(k.clone(), prev.clone()),
                    None => objects.remove(k),
                };
            }
        }
        Ok(objects.into_iter().collect())
    }

    /// Changes after version `after`, or 410 when some of them are no longer retained.
    pub fn changes_since(&self, after: u64) -> Result<Vec<Arc<Change>>, ApiError> {
        if after < self.compacted {
            return Err(ApiError::expired(after, self.compacted));
        }
        let start = self.log.partition_point(|c| c.rv <= after);
        Ok(self.log.iter().skip(start).cloned().collect())
    }

    /// Changes after version `after` that are still retained (for the in-process controllers).
    pub fn retained_changes_since(&self, after: u64) -> Vec<Arc<Change>> {
        let start = self.log.partition_point(|c| c.rv <= after);
        self.log.iter().skip(start).cloned().collect()
    }

    fn to_snapshot(&self) -> Value {
        let objects: Vec<Value> = self
            .objects
            .iter()
            .map(|(k, v)| json!({"group": k.group, "resource": k.resource, "object": v}))
            .collect();
        json!({"resourceVersion": self.rv, "objects": objects})
    }
}

/// Errors loading or saving `--state`.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("reading state file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing state file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("state file {path} is not a state snapshot: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// The shared store.
#[derive(Debug)]
pub struct Store {
    state: Mutex<State>,
    changes: tokio::sync::broadcast::Sender<Arc<Change>>,
    state_file: Option<PathBuf>,
    /// Serialises snapshot writes so an older snapshot never overwrites a newer one.
    persist_lock: Mutex<u64>,
}

impl Store {
    /// An empty store keeping the last `window` changes for watches.
    pub fn new(window: usize) -> Self {
        // Full policy: a watcher more than this many changes behind is closed with 410.
        let (changes, _) = tokio::sync::broadcast::channel(WATCH_BUFFER);
        Self {
            state: Mutex::new(State::new(window)),
            changes,
            state_file: None,
            persist_lock: Mutex::new(0),
        }
    }

    /// A store persisted to `path` after every write, loaded from it if it exists.
    pub fn with_state_file(window: usize, path: &Path) -> Result<Self, PersistError> {
        let mut store = Self::new(window);
        store.state_file = Some(path.to_path_buf());
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|source| PersistError::Read {
                path: path.into(),
                source,
            })?;
            let snapshot: Value = serde_json::from_str(&text).map_err(|e| PersistError::Format {
                path: path.into(),
                reason: e.to_string(),
            })?;
            let format_err = |reason: &str| PersistError::Format {
                path: path.into(),
                reason: reason.into(),
            };
            let rv = snapshot["resourceVersion"]
                .as_u64()
                .ok_or_else(|| format_err("no resourceVersion"))?;
            let objects = snapshot["objects"].as_array().ok_or_else(|| format_err("no objects"))?;
            let mut state = store.state.lock();
            for entry in objects {
                let group = entry["group"]
                    .as_str()
                    .ok_or_else(|| format_err("object without group"))?;
                let resource = entry["resource"]
                    .as_str()
                    .ok_or_else(|| format_err("object without resource"))?;
                let object = entry["object"].clone();
                let namespace = object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
                state
                    .objects
                    .insert(ObjectKey::new(group, resource, namespace, name), Arc::new(object));
            }
            state.rv = rv;
            state.compacted = rv;
            crate::lifecycle::refresh_registry(&mut state);
            drop(state);
            *store.persist_lock.lock() = rv;
        }
        Ok(store)
    }

    /// Runs `f` with exclusive access to the state; wakes watchers and persists if it wrote.
    pub fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (result, after, snapshot) = {
            let mut state = self.state.lock();
            let before = state.rv;
            let result = f(&mut state);
            if state.rv != before {
                crate::lifecycle::reconcile(&mut state, before);
            }
            for change in std::mem::take(&mut state.outbox) {
                // No receivers is fine: nobody is watching.
                let _ = self.changes.send(change);
            }
            let snapshot = (state.rv != before && self.state_file.is_some()).then(|| state.to_snapshot());
            (result, state.rv, snapshot)
        };
        if let Some(snapshot) = snapshot {
            self.persist(after, &snapshot);
        }
        result
    }

    /// Runs `f` with shared access to the state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.lock())
    }

    /// Runs `f` on the state and subscribes to the changes committed after it, atomically:
    /// the receiver gets exactly the changes `f` did not see.
    pub fn read_and_subscribe<R>(
        &self,
        f: impl FnOnce(&State) -> R,
    ) -> (R, tokio::sync::broadcast::Receiver<Arc<Change>>) {
        let state = self.state.lock();
        let result = f(&state);
        (result, self.changes.subscribe())
    }

    fn persist(&self, rv: u64, snapshot: &Value) {
        let Some(path) = &self.state_file else { return };
        let mut written = self.persist_lock.lock();
        if *written >= rv {
            return;
        }
        let tmp = path.with_extension("tmp");
        let result = std::fs::write(&tmp, snapshot.to_string()).and_then(|()| std::fs::rename(&tmp, path));
        match result {
            Ok(()) => *written = rv,
            Err(source) => {
                tracing::error!(error = %PersistError::Write { path: path.clone(), source }, "state not saved");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, v: i64) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "data": {"v": v}})
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("", "configmaps", "default", name)
    }

    #[test]
    fn versions_are_global_and_monotonic() {
        let store = Store::new(100);
        let a = store.write(|s| s.put(key("a"), obj("a", 1)));
        let b = store.write(|s| s.put(key("b"), obj("b", 1)));
        assert!(object_rv(&b) > object_rv(&a));
        let d = store.write(|s| s.remove(&key("a"))).expect("deleted");
        assert!(object_rv(&d) > object_rv(&b));
    }

    #[test]
    fn snapshot_rolls_back_to_a_version() {
        let store = Store::new(100);
        store.write(|s| s.put(key("a"), obj("a", 1)));
        let at = store.read(State::current_rv);
        store.write(|s| {
            s.put(key("a"), obj("a", 2));
            s.put(key("b"), obj("b", 1));
        });
        let then = store
            .read(|s| s.snapshot("", "configmaps", None, Some(at)))
            .expect("snapshot");
        assert_eq!(then.len(), 1);
        assert_eq!(then[0].1["data"]["v"], 1);
        let now = store.read(|s| s.snapshot("", "configmaps", None, None)).expect("now");
        assert_eq!(now.len(), 2);
    }

    #[test]
    fn old_versions_expire_out_of_the_window() {
        let store = Store::new(2);
        for i in 0..5 {
            store.write(|s| s.put(key("a"), obj("a", i)));
        }
        let err = store.read(|s| s.changes_since(1)).expect_err("expired");
        assert_eq!(err.code, 410);
        let recent = store.read(|s| s.changes_since(3)).expect("retained");
        assert_eq!(recent.len(), 2);
    }
}
