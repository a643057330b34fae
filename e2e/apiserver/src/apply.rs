//! Server-side apply and `managedFields`.
//!
//! Every write records which manager owns which fields: an Update entry per manager
//! for create/update/patch (the manager takes the fields it changed, others lose
//! them), an Apply entry per manager for apply patches (exactly the fields of its
//! applied configuration). Applying a field another manager owns with a different value
//! is a conflict (409 with one cause per field) unless `force=true`, which takes
//! ownership; fields a manager applied before and no longer applies are removed when
//! nobody else owns them. Main-resource and `status` entries are kept apart, as status
//! fields are reset on main-resource writes and vice versa. The entries live in
//! `metadata.managedFields` exactly as the apiserver writes them (`fieldsType: FieldsV1`).

use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::fieldset::{self, FieldSet, ListType, Seg, Shape};
use crate::object::{self, Part};
use crate::registry::ResourceInfo;
use crate::request::Params;
use crate::status::{ApiError, Cause};

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    set: FieldSet,
}

impl Entry {
    /// The manager as conflict messages print it:
    /// `"kubectl" with subresource "scale" using apps/v1 at 2024-01-01T00:00:00Z`.
    fn printed(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {sub:?}"));
        }
        out.push_str(&format!(" using {}", self.api_version));
        if self.operation == "Update" && !self.time.is_empty() {
            out.push_str(&format!(" at {}", self.time));
        }
        out
    }

    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.as_deref() == subresource
    }
}

fn read_entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or("").into(),
                    operation: e["operation"].as_str().unwrap_or("Update").into(),
                    api_version: e["apiVersion"].as_str().unwrap_or("").into(),
                    time: e["time"].as_str().unwrap_or("").into(),
                    subresource: e.get("subresource").and_then(Value::as_str).map(String::from),
                    set: fieldset::from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_entries(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fieldset::to_fields_v1(&e.set),
            });
            if let Some(sub) = e.subresource {
                v["subresource"] = json!(sub);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// The field manager of a non-apply write: `fieldManager`, else the user agent's
/// program name (as the apiserver derives it).
pub fn manager_name(params: &Params, headers: &HeaderMap, _operation: &str) -> String {
    if let Some(m) = &params.field_manager {
        return m.clone();
    }
    let ua = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    ua.split('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn subresource_of(part: Part) -> Option<&'static str> {
    match part {
        Part::Main => None,
        Part::Status => Some("status"),
        Part::Scale => Some("scale"),
    }
}

/// Whether a path belongs to the part of the object a write may change.
fn in_part(info: &ResourceInfo, part: Part, path: &[Seg]) -> bool {
    let is_status = path.first() == Some(&Seg::Field("status".into()));
    match part {
        Part::Main | Part::Scale => !(info.status && is_status),
        Part::Status => is_status,
    }
}

fn fields_of(info: &ResourceInfo, part: Part, obj: &Value) -> FieldSet {
    let shape = Shape::new(info);
    fieldset::of_object(&shape, obj)
        .into_iter()
        .filter(|p| in_part(info, part, p))
        .collect()
}

/// Records an Update by `manager` of `obj` (from `old`, or a create) in `managedFields`.
/// An empty manager records nothing (apply already did).
pub fn track_update(info: &ResourceInfo, obj: &mut Value, old: Option<&Value>, manager: &str, part: Part) {
    if manager.is_empty() {
        return;
    }
    let shape = Shape::new(info);
    // Client-supplied managedFields replace the stored ones, as on the apiserver.
    let base = if obj.pointer("/metadata/managedFields").is_some() {
        &*obj
    } else {
        old.unwrap_or(&*obj)
    };
    let mut entries = read_entries(base);
    let new_set = fields_of(info, part, obj);
    let old_set = old.map(|o| fields_of(info, part, o)).unwrap_or_default();
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| {
            let before = old.and_then(|o| fieldset::value_at(&shape, o, p));
            if p.last() == Some(&Seg::Own) {
                before.is_none()
            } else {
                before != fieldset::value_at(&shape, obj, p)
            }
        })
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        write_entries(obj, entries);
        return;
    }
    let sub = subresource_of(part);
    for e in &mut entries {
        e.set.retain(|p| !removed.contains(p));
        if !e.is(manager, "Update", sub) {
            e.set.retain(|p| !changed.contains(p));
        }
    }
    let now = object::now();
    match entries.iter_mut().find(|e| e.is(manager, "Update", sub)) {
        Some(e) => {
            e.set.extend(changed);
            e.time = now;
            e.api_version = info.api_version();
        }
        None if !changed.is_empty() => entries.push(Entry {
            manager: manager.into(),
            operation: "Update".into(),
            api_version: info.api_version(),
            time: now,
            subresource: sub.map(String::from),
            set: changed,
        }),
        None => {}
    }
    write_entries(obj, entries);
}

/// Checks the type and name of an apply configuration.
fn check_config(info: &ResourceInfo, name: &str, config: &Value) -> Result<Value, ApiError> {
    let mut config = config.clone();
    let map = config
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the apply configuration must be an object"))?;
    for field in ["apiVersion", "kind"] {
        if map.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(format!(
                "{field} must be set in the apply configuration"
            )));
        }
    }
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        if meta.get("managedFields").is_some_and(|m| !m.is_null()) {
            return Err(ApiError::invalid(
                &info.group,
                &info.kind,
                name,
                &[Cause::forbidden("metadata.managedFields", "must be nil")],
            ));
        }
        meta.remove("managedFields");
    }
    Ok(config)
}

/// Creates an object from an apply configuration: the applier owns its fields.
pub fn apply_create(
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    config: &Value,
    manager: &str,
) -> Result<Value, ApiError> {
    let config = check_config(info, name, config)?;
    let mut obj = config.clone();
    if let Some(map) = obj.as_object_mut() {
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("name".into(), Value::String(name.into()));
        }
    }
    let mut obj = object::prepare_create(info, namespace, obj)?;
    let set = fields_of(info, Part::Main, &config);
    let entry = Entry {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version: info.api_version(),
        time: object::now(),
        subresource: None,
        set,
    };
    write_entries(&mut obj, vec![entry]);
    Ok(obj)
}

/// Merges an apply configuration into an object with the list semantics of the kind.
fn merge(shape: &Shape<'_>, current: Option<&Value>, config: &Value, fields: &mut Vec<String>) -> Value {
    match (current, config) {
        (Some(Value::Object(cur)), Value::Object(cfg)) => {
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            if shape.atomic_map(&refs) {
                return config.clone();
            }
            let mut out: Map<String, Value> = cur.clone();
            for (k, v) in cfg {
                if v.is_null() {
                    out.remove(k);
                    continue;
                }
                fields.push(k.clone());
                let merged = merge(shape, cur.get(k), v, fields);
                fields.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(cur)), Value::Array(cfg)) => {
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            match shape.list_type(&refs) {
                ListType::Atomic => config.clone(),
                ListType::Set => {
                    let mut out = cur.clone();
                    for item in cfg {
                        if !out.contains(item) {
                            out.push(item.clone());
                        }
                    }
                    Value::Array(out)
                }
                ListType::Map(keys) => {
                    let mut out = cur.clone();
                    fields.push("[]".into());
                    for item in cfg {
                        let key = fieldset::item_key(item, &keys);
                        match out.iter().position(|c| fieldset::item_key(c, &keys) == key) {
                            Some(i) => {
                                let merged = merge(shape, Some(&out[i]), item, fields);
                                out[i] = merged;
                            }
                            None => out.push(item.clone()),
                        }
                    }
                    fields.pop();
                    Value::Array(out)
                }
            }
        }
        _ => config.clone(),
    }
}

/// Applies a configuration to the (served form of the) current object: conflicts,
/// merge, removal of fields the manager stopped applying, ownership.
pub fn apply_update(
    info: &ResourceInfo,
    current: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    part: Part,
) -> Result<Value, ApiError> {
    let name = object::name_of(current).to_string();
    let mut config = check_config(info, &name, config)?;
    if let (Part::Main, true, Some(map)) = (part, info.status, config.as_object_mut()) {
        map.remove("status");
    }
    let shape = Shape::new(info);
    let sub = subresource_of(part);
    let mut entries = read_entries(current);
    let applied = fields_of(info, part, &config);

    let mut conflicts: Vec<(String, String, fieldset::Path)> = Vec::new();
    // (manager name, manager as printed, path)
    for e in entries.iter().filter(|e| !e.is(manager, "Apply", sub)) {
        for p in e.set.intersection(&applied) {
            if p.last() == Some(&Seg::Own) {
                continue;
            }
            if fieldset::value_at(&shape, current, p) != fieldset::value_at(&shape, &config, p) {
                conflicts.push((e.manager.clone(), e.printed(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let shown: Vec<(String, String)> = conflicts
            .iter()
            .map(|(_, m, p)| (m.clone(), fieldset::display(p)))
            .collect();
        return Err(ApiError::apply_conflict(&info.group, &info.kind, &name, &shown));
    }
    for (m, _, p) in &conflicts {
        for e in entries.iter_mut().filter(|e| e.manager == *m) {
            e.set.remove(p);
        }
    }

    let mut merged = merge(&shape, Some(current), &config, &mut Vec::new());
    let previous: FieldSet = entries
        .iter()
        .find(|e| e.is(manager, "Apply", sub))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let mut dropped: Vec<&fieldset::Path> = previous
        .difference(&applied)
        .filter(|p| {
            !entries
                .iter()
                .any(|e| !e.is(manager, "Apply", sub) && e.set.contains(*p))
        })
        .collect();
    // Whole items and maps go first: a list-map item is found by its key fields, so
    // removing those fields first would leave an empty, unaddressable item behind.
    dropped.sort_by_key(|p| (p.last() != Some(&Seg::Own), std::cmp::Reverse(p.len())));
    for p in dropped {
        fieldset::remove_at(&shape, &mut merged, p);
    }

    let now = object::now();
    match entries.iter_mut().find(|e| e.is(manager, "Apply", sub)) {
        // An unchanged apply keeps its entry (and time), so it can be a no-op write.
        Some(e) if e.set == applied && e.api_version == info.api_version() => {}
        Some(e) => {
            e.set = applied;
            e.time = now;
            e.api_version = info.api_version();
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: "Apply".into(),
            api_version: info.api_version(),
            time: now,
            subresource: sub.map(String::from),
            set: applied,
        }),
    }
    write_entries(&mut merged, entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn cm_info() -> std::sync::Arc<ResourceInfo> {
        Registry::default().find("", "v1", "configmaps").expect("cm")
    }

    #[allow(clippy::needless_pass_by_value)]
    fn cfg(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
    }

    #[test]
    fn apply_owns_conflicts_and_removes() {
        let info = cm_info();
        let obj =
            apply_create(&info, Some("default"), "c", &cfg(json!({"a": "1", "b": "2"})), "alice").expect("create");
        assert_eq!(obj["metadata"]["managedFields"][0]["manager"], "alice");
        assert_eq!(
            obj["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]["f:a"],
            json!({})
        );
        // bob applies a different value for a: conflict, then forced.
        let err = apply_update(&info, &obj, &cfg(json!({"a": "9"})), "bob", false, Part::Main).expect_err("conflict");
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"alice\" using v1: .data.a"
        );
        let err =
            apply_update(&info, &obj, &cfg(json!({"a": "9", "b": "8"})), "bob", false, Part::Main).expect_err("two");
        assert_eq!(
            err.message,
            "Apply failed with 2 conflicts: conflicts with \"alice\" using v1:\n- .data.a\n- .data.b"
        );
        let obj = apply_update(&info, &obj, &cfg(json!({"a": "9"})), "bob", true, Part::Main).expect("forced");
        assert_eq!(obj["data"]["a"], "9");
        // Same value: shared ownership, no conflict.
        let obj = apply_update(&info, &obj, &cfg(json!({"b": "2"})), "carol", false, Part::Main).expect("shared");
        // alice stops applying b; carol still owns it, so it stays. alice's a moved to bob.
        let obj = apply_update(&info, &obj, &cfg(json!({})), "alice", false, Part::Main).expect("reapply");
        assert_eq!(obj["data"], json!({"a": "9", "b": "2"}));
        // carol stops applying b and nobody else owns it: removed.
        let obj = apply_update(&info, &obj, &cfg(json!({})), "carol", false, Part::Main).expect("drop");
        assert_eq!(obj["data"], json!({"a": "9"}));
    }

    #[test]
    fn updates_take_changed_fields() {
        let info = cm_info();
        let obj = apply_create(&info, Some("default"), "c", &cfg(json!({"a": "1"})), "alice").expect("create");
        let mut new = obj.clone();
        new["data"]["a"] = json!("2");
        track_update(&info, &mut new, Some(&obj), "kubectl-edit", Part::Main);
        let managers: Vec<&str> = new["metadata"]["managedFields"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(managers, ["kubectl-edit"], "alice lost her only field to the update");
        let ok = apply_update(&info, &new, &cfg(json!({"a": "3"})), "alice", false, Part::Main)
            .expect_err("conflict with the editor");
        assert!(ok.message.contains("\"kubectl-edit\""));
    }
}
