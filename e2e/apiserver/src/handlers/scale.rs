//! The `scale` subresource (`autoscaling/v1` Scale): reads and writes the replica count
//! at the resource's `specReplicasPath`; nothing else of the object changes, and a
//! `resourceVersion` in the Scale is a precondition like on any update.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::write::{apply_patch, decode_patch, finish_update};
use super::{respond, storage_key};
use crate::jsonpath;
use crate::object::Part;
use crate::patch::PatchType;
use crate::registry::ResourceInfo;
use crate::request::{self, Params, Target};
use crate::server::App;
use crate::status::{ApiError, Cause};

fn selector_string(info: &ResourceInfo, obj: &Value) -> Option<String> {
    if info.group == "apps" {
        let labels = obj.pointer("/spec/selector/matchLabels").and_then(Value::as_object)?;
        let mut parts: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        parts.sort();
        return Some(parts.join(","));
    }
    let path = info.scale.as_ref()?.label_selector_path.as_deref()?;
    jsonpath::first(path, obj).and_then(|v| v.as_str().map(String::from))
}

/// The Scale view of an object.
fn to_scale(info: &ResourceInfo, obj: &Value) -> Result<Value, ApiError> {
    let scale = info.scale.as_ref().ok_or_else(ApiError::no_route)?;
    let replicas = jsonpath::first(&scale.spec_replicas_path, obj)
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let observed = jsonpath::first(&scale.status_replicas_path, obj)
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut status = json!({"replicas": observed});
    if let Some(sel) = selector_string(info, obj) {
        status["selector"] = json!(sel);
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"), "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": replicas},
        "status": status,
    }))
}

/// `GET .../scale`.
pub fn get(app: &App, target: &Target) -> Result<Response, ApiError> {
    let info = &target.info;
    let name = target.name()?;
    let key = storage_key(info, target.namespace.as_deref(), name);
    let obj = app
        .store
        .read(|s| s.get(&key).cloned())
        .ok_or_else(|| ApiError::not_found(&info.group, &info.resource, name))?;
    Ok(respond(StatusCode::OK, &to_scale(info, &obj)?))
}

/// Writes a new Scale (computed from the current one by `change`).
fn write_scale(
    app: &App,
    target: &Target,
    params: &Params,
    manager: &str,
    change: impl FnOnce(&Value) -> Result<Value, ApiError>,
) -> Result<Response, ApiError> {
    let info = &target.info;
    let name = target.name()?;
    let key = storage_key(info, target.namespace.as_deref(), name);
    let scale_info = info.scale.clone().ok_or_else(ApiError::no_route)?;
    let obj = app.store.write(|s| {
        let current = s
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&info.group, &info.resource, name))?;
        let scale = change(&to_scale(info, &current)?)?;
        let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                name,
                &[Cause::invalid(
                    "spec.replicas",
                    &json!(replicas),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut new = (*current).clone();
        jsonpath::set(&scale_info.spec_replicas_path, &mut new, json!(replicas))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(rv) = scale
            .pointer("/metadata/resourceVersion")
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        {
            new["metadata"]["resourceVersion"] = rv.clone();
        }
        finish_update(s, info, key.clone(), &current, new, Part::Scale, false, params, manager).map(|(o, _)| o)
    })?;
    Ok(respond(StatusCode::OK, &to_scale(info, &obj)?))
}

/// `PUT .../scale`.
pub fn update(
    app: &App,
    target: &Target,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let body = request::decode_body(headers, body)?;
    let manager = crate::apply::manager_name(params, headers, "Update");
    write_scale(app, target, params, &manager, |_| Ok(body))
}

/// `PATCH .../scale`.
pub fn patch(
    app: &App,
    target: &Target,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (ptype, doc) = decode_patch(&target.info, headers, body)?;
    let manager = crate::apply::manager_name(params, headers, "Update");
    write_scale(app, target, params, &manager, |current| match ptype {
        PatchType::Apply => Ok(crate::patch::merge(current, &doc)),
        other => apply_patch(other, current, &doc),
    })
}
