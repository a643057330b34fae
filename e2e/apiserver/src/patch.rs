//! The non-apply patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and
//! strategic merge patch for built-in kinds, with the patch strategies of the list
//! fields those kinds use (containers by `name`, ports by `containerPort`/`port`, ...)
//! and the directives `kubectl apply` sends (`$patch`, `$retainKeys`,
//! `$setElementOrder/…`, `$deleteFromPrimitiveList/…`). Custom resources do not
//! support strategic merge; the apiserver answers 415 and so does this one.

use serde_json::{Map, Value};

/// The patch `Content-Type`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// From a request's media type.
    pub fn from_media(media: &str) -> Option<Self> {
        match media {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// A patch that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the JSON patch is not a list of operations: {0}")]
    JsonPatchFormat(serde_json::Error),
    #[error("the JSON patch failed: {0}")]
    JsonPatch(#[from] json_patch::PatchError),
    #[error("the strategic merge patch is invalid: {0}")]
    Strategic(String),
}

/// RFC 7386 merge patch.
pub fn merge(target: &Value, patch: &Value) -> Value {
    let mut doc = target.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// RFC 6902 JSON patch, with the apiserver's (evanphx/json-patch) reading of `test`:
/// a missing member tests equal to `null` — kube-runtime's finalizer helper relies on it.
/// All operations apply or none do.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(PatchError::JsonPatchFormat)?;
    let mut doc = target.clone();
    for op in ops.iter() {
        if let json_patch::PatchOperation::Test(test) = op
            && test.value.is_null()
            && doc.pointer(test.path.as_str()).is_none()
            && parent_exists(&doc, test.path.as_str())
        {
            continue;
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op))?;
    }
    Ok(doc)
}

/// Whether the object or array containing a JSON pointer's target exists.
fn parent_exists(doc: &Value, pointer: &str) -> bool {
    match pointer.rfind('/') {
        Some(0) => doc.is_object(),
        Some(i) => doc.pointer(&pointer[..i]).is_some_and(|p| p.is_object()),
        None => false,
    }
}

/// The list merge strategy of a field of a built-in kind, by field name and the name of
/// the list field that contains it.
fn merge_key(field: &str, parent_list: Option<&str>) -> Option<MergeKey> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "secrets"
        | "schedulingGates" => MergeKey::Key("name"),
        "volumeMounts" => MergeKey::Key("mountPath"),
        "volumeDevices" => MergeKey::Key("devicePath"),
        "ports" => {
            if matches!(
                parent_list,
                Some("containers" | "initContainers" | "ephemeralContainers")
            ) {
                MergeKey::Key("containerPort")
            } else {
                MergeKey::Key("port")
            }
        }
        "hostAliases" => MergeKey::Key("ip"),
        "topologySpreadConstraints" => MergeKey::Key("topologyKey"),
        "ownerReferences" => MergeKey::Key("uid"),
        "conditions" => MergeKey::Key("type"),
        "finalizers" => MergeKey::Primitive,
        _ => return None,
    })
}

/// The merge strategy of a built-in list field for server-side apply: `Some(Some(key))`
/// for an associative list, `Some(None)` for a set of scalars, `None` for atomic.
pub fn merge_key_name(field: &str, parent_list: Option<&str>) -> Option<Option<&'static str>> {
    match merge_key(field, parent_list)? {
        MergeKey::Key(k) => Some(Some(k)),
        MergeKey::Primitive => Some(None),
    }
}

#[derive(Clone, Copy, Debug)]
enum MergeKey {
    Key(&'static str),
    Primitive,
}

/// Strategic merge patch of a built-in object.
pub fn strategic(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let patch = patch
        .as_object()
        .ok_or_else(|| PatchError::Strategic("the patch must be an object".into()))?;
    let target = target.as_object().cloned().unwrap_or_default();
    Ok(merge_map(target, patch, None).map(Value::Object).unwrap_or(Value::Null))
}

fn merge_map(
    mut target: Map<String, Value>,
    patch: &Map<String, Value>,
    parent_list: Option<&str>,
) -> Option<Map<String, Value>> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => return None,
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            return Some(strip_directives(replaced));
        }
        _ => {}
    }
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (target.get_mut(field), value.as_array()) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if value.is_null() {
            target.remove(key);
            continue;
        }
        let merged = match (target.remove(key), value) {
            (Some(Value::Object(t)), Value::Object(p)) => merge_map(t, p, parent_list).map(Value::Object),
            (Some(Value::Array(t)), Value::Array(p)) => Some(Value::Array(merge_list(key, t, p, parent_list))),
            (_, Value::Object(p)) => merge_map(Map::new(), p, parent_list).map(Value::Object),
            (_, Value::Array(p)) => Some(Value::Array(merge_list(key, Vec::new(), p, parent_list))),
            (_, v) => Some(v.clone()),
        };
        if let Some(v) = merged {
            target.insert(key.clone(), v);
        }
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        target.retain(|k, _| keep.iter().any(|x| x == k));
    }
    for (key, order) in patch
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("$setElementOrder/")?, v.as_array()?)))
    {
        if let Some(Value::Array(list)) = target.get_mut(key) {
            reorder(list, order, merge_key(key, parent_list));
        }
    }
    Some(target)
}

/// Orders a merged list as `$setElementOrder` says; items it does not name keep their
/// relative order after the named ones.
fn reorder(list: &mut Vec<Value>, order: &[Value], key: Option<MergeKey>) {
    let identity = |item: &Value, hint: &Value| match key {
        Some(MergeKey::Key(k)) => item.get(k).is_some() && item.get(k) == hint.get(k),
        _ => item == hint,
    };
    let mut sorted = Vec::with_capacity(list.len());
    for hint in order {
        if let Some(pos) = list.iter().position(|item| identity(item, hint)) {
            sorted.push(list.remove(pos));
        }
    }
    sorted.append(list);
    *list = sorted;
}

fn strip_directives(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| match v {
            Value::Object(m) => (k, Value::Object(strip_directives(m))),
            other => (k, other),
        })
        .collect()
}

fn merge_list(field: &str, target: Vec<Value>, patch: &[Value], parent_list: Option<&str>) -> Vec<Value> {
    let replace_all = patch
        .iter()
        .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"));
    let strategy = merge_key(field, parent_list);
    if replace_all || strategy.is_none() {
        return patch
            .iter()
            .filter(|p| p.get("$patch").is_none())
            .map(|p| match p {
                Value::Object(m) => Value::Object(strip_directives(m.clone())),
                other => other.clone(),
            })
            .collect();
    }
    let mut out = target;
    match strategy {
        Some(MergeKey::Primitive) => {
            for p in patch {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        Some(MergeKey::Key(k)) => {
            for p in patch {
                let Some(pm) = p.as_object() else { continue };
                let id = pm.get(k);
                let pos = id.and_then(|id| out.iter().position(|t| t.get(k) == Some(id)));
                let delete = pm.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        let existing = out[i].as_object().cloned().unwrap_or_default();
                        match merge_map(existing, pm, Some(field)) {
                            Some(m) => out[i] = Value::Object(m),
                            None => {
                                out.remove(i);
                            }
                        }
                    }
                    (None, false) => {
                        if let Some(m) = merge_map(Map::new(), pm, Some(field)) {
                            out.push(Value::Object(m));
                        }
                    }
                }
            }
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_and_json_patch() {
        let t = json!({"a": 1, "b": {"c": 2}});
        assert_eq!(
            merge(&t, &json!({"b": {"c": null, "d": 3}})),
            json!({"a": 1, "b": {"d": 3}})
        );
        let p = json!([{"op": "replace", "path": "/a", "value": 5}, {"op": "add", "path": "/b/e", "value": [1]}]);
        assert_eq!(
            json_patch(&t, &p).expect("ok"),
            json!({"a": 5, "b": {"c": 2, "e": [1]}})
        );
        assert!(json_patch(&t, &json!([{"op": "test", "path": "/a", "value": 9}])).is_err());
        // As kube-runtime's finalizer helper adds the first finalizer:
        let add = json!([{"op": "test", "path": "/b/f", "value": null}, {"op": "add", "path": "/b/f", "value": ["x"]}]);
        assert_eq!(
            json_patch(&t, &add).expect("missing tests as null")["b"]["f"],
            json!(["x"])
        );
        assert!(json_patch(&t, &json!([{"op": "test", "path": "/nope/f", "value": null}])).is_err());
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let t = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}]},
            {"name": "side", "image": "s:1"}]}}}});
        let p = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "new"}],
            "containers": [{"name": "app", "image": "a:2", "ports": [{"containerPort": 81}]},
                {"name": "new", "image": "n:1"}, {"name": "side", "$patch": "delete"}]}}}});
        let out = strategic(&t, &p).expect("ok");
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs.as_array().map(Vec::len), Some(2));
        assert_eq!(cs[0]["image"], "a:2");
        assert_eq!(
            cs[0]["ports"].as_array().map(Vec::len),
            Some(2),
            "ports merged by containerPort"
        );
        assert_eq!(cs[1]["name"], "new");
    }

    #[test]
    fn strategic_replaces_unkeyed_lists_and_handles_directives() {
        let t = json!({"metadata": {"finalizers": ["a"]}, "rules": [{"verbs": ["get"]}], "data": {"x": "1", "y": "2"}});
        let p = json!({"metadata": {"finalizers": ["b"]}, "rules": [{"verbs": ["list"]}], "data": {"x": null},
            "$deleteFromPrimitiveList/tags": ["z"]});
        let out = strategic(&t, &p).expect("ok");
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(out["rules"], json!([{"verbs": ["list"]}]));
        assert_eq!(out["data"], json!({"y": "2"}));
        let out = strategic(
            &json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        )
        .expect("ok");
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }
}
