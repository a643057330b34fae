//! The controllers a real control plane runs, reduced to what API semantics depend on
//! and run synchronously after every write (inside the same store transaction, so a
//! test never races them):
//!
//! - apiextensions: CRD status (`NamesAccepted`, `Established`) and the served resources;
//!   on CRD deletion its custom resources are deleted, then the cleanup finalizer removed;
//! - namespace lifecycle: a deleted namespace is `Terminating` until its contents are gone;
//! - finalizers: an object with `deletionTimestamp` and no finalizers left is removed;
//! - garbage collector (background propagation): objects whose every owner is gone are deleted.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::crd;
use crate::object::{finalizers, is_deleting, mark_deleting};
use crate::store::{EventType, ObjectKey, State};

const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRDS: &str = "customresourcedefinitions";

/// Most passes one write may trigger (a chain of owner references, say) before giving up.
const MAX_PASSES: usize = 32;

/// Converges the state after a write transaction that started at version `since`.
pub fn reconcile(state: &mut State, since: u64) {
    let mut seen = since;
    for _ in 0..MAX_PASSES {
        let before = state.current_rv();
        let changes = state.retained_changes_since(seen);
        seen = before;
        let crds_changed = changes
            .iter()
            .any(|c| c.key.group == CRD_GROUP && c.key.resource == CRDS);
        let removed_uids: Vec<String> = changes
            .iter()
            .filter(|c| c.kind == EventType::Deleted)
            .filter_map(|c| {
                c.object
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .collect();
        let touched: Vec<ObjectKey> = changes
            .iter()
            .filter(|c| c.kind == EventType::Modified)
            .map(|c| c.key.clone())
            .collect();
        if crds_changed {
            crd_status(state);
            refresh_registry(state);
        }
        for key in touched {
            finish_deletion(state, &key);
        }
        terminate_namespaces(state);
        cleanup_crds(state);
        if !removed_uids.is_empty() {
            collect_garbage(state, &removed_uids);
        }
        if state.current_rv() == before {
            break;
        }
    }
}

fn crd_status(state: &mut State) {
    let keys: Vec<ObjectKey> = state
        .objects_of(CRD_GROUP, CRDS, None)
        .map(|(k, _)| k.clone())
        .collect();
    for key in keys {
        let Some(current) = state.get(&key).cloned() else {
            continue;
        };
        if let Some(status) = crd::desired_status(&current) {
            let mut updated = (*current).clone();
            if let Some(map) = updated.as_object_mut() {
                map.insert("status".into(), status);
            }
            state.put(key, updated);
        }
    }
}

/// Recomputes the served custom resources from the stored CRDs.
pub fn refresh_registry(state: &mut State) {
    let crds: Vec<Value> = state
        .objects_of(CRD_GROUP, CRDS, None)
        .map(|(_, v)| (**v).clone())
        .collect();
    let served = crd::served_resources(crds.iter());
    state.registry.set_custom(served);
}

/// Removes an object whose deletion was pending and whose finalizers are all gone.
fn finish_deletion(state: &mut State, key: &ObjectKey) {
    let Some(obj) = state.get(key) else { return };
    let namespace_pending = key.group.is_empty()
        && key.resource == "namespaces"
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
    if is_deleting(obj) && finalizers(obj).is_empty() && !namespace_pending {
        state.remove(key);
    }
}

/// Deletes an object as a client DELETE would: marks it if it has finalizers, else removes it.
pub fn delete_object(state: &mut State, key: &ObjectKey) {
    let Some(obj) = state.get(key).cloned() else { return };
    if is_deleting(&obj) {
        return;
    }
    if finalizers(&obj).is_empty() && !(key.group.is_empty() && key.resource == "namespaces") {
        state.remove(key);
        return;
    }
    let Some(info) = state.registry.versions_of(&key.group, &key.resource).into_iter().next() else {
        state.remove(key);
        return;
    };
    let mut marked = mark_deleting(&info, &obj);
    if key.group.is_empty() && key.resource == "namespaces" {
        marked["status"] = json!({"phase": "Terminating"});
    }
    state.put(key.clone(), marked);
}

fn terminate_namespaces(state: &mut State) {
    let terminating: Vec<ObjectKey> = state
        .objects_of("", "namespaces", None)
        .filter(|(_, v)| is_deleting(v))
        .map(|(k, _)| k.clone())
        .collect();
    for ns_key in terminating {
        let contents = state.keys_in_namespace(&ns_key.name);
        for key in &contents {
            delete_object(state, key);
        }
        if state.keys_in_namespace(&ns_key.name).is_empty() {
            state.remove(&ns_key);
        }
    }
}

fn cleanup_crds(state: &mut State) {
    let deleting: Vec<(ObjectKey, Value)> = state
        .objects_of(CRD_GROUP, CRDS, None)
        .filter(|(_, v)| is_deleting(v))
        .map(|(k, v)| (k.clone(), (**v).clone()))
        .collect();
    for (key, crd_obj) in deleting {
        let group = crd_obj
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let plural = crd_obj
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let instances: Vec<ObjectKey> = state
            .objects_of(&group, &plural, None)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &instances {
            delete_object(state, k);
        }
        let remaining = state.objects_of(&group, &plural, None).count();
        if remaining == 0 && finalizers(&crd_obj).iter().any(|f| f == crd::CLEANUP_FINALIZER) {
            let mut updated = crd_obj.clone();
            if let Some(list) = updated
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                list.retain(|f| f != crd::CLEANUP_FINALIZER);
            }
            if finalizers(&updated).is_empty() {
                state.remove(&key);
            } else {
                state.put(key, updated);
            }
        }
    }
}

fn collect_garbage(state: &mut State, removed: &[String]) {
    let removed: HashSet<&str> = removed.iter().map(String::as_str).collect();
    let mut live: HashSet<String> = HashSet::new();
    let mut dependents = Vec::new();
    for key in state.all_keys() {
        let Some(obj) = state.get(&key) else { continue };
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
            live.insert(uid.to_string());
        }
        let owners: Vec<String> = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| r.get("uid").and_then(Value::as_str))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        if owners.iter().any(|o| removed.contains(o.as_str())) {
            dependents.push((key, owners));
        }
    }
    for (key, owners) in dependents {
        if owners.iter().all(|o| !live.contains(o)) {
            delete_object(state, &key);
        }
    }
}
