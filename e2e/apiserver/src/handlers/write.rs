//! `create`, `update` and `patch` (main resource and `status` subresource), with the
//! admission steps that apply to every write: namespace lifecycle, CRD validation,
//! custom resource schema validation/defaulting/pruning and CEL rules, built-in kind
//! validation, optimistic concurrency, no-op detection, and `dryRun=All`.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::{present, respond, storage_key};
use crate::apply;
use crate::conversion;
use crate::crd;
use crate::object::{self, Part};
use crate::patch::{self, PatchType};
use crate::registry::ResourceInfo;
use crate::request::{self, Params, Target};
use crate::schema;
use crate::server::App;
use crate::status::ApiError;
use crate::store::{ObjectKey, State};
use crate::validation;

/// Checks that a namespace exists and is not terminating before creating in it.
fn check_namespace(state: &State, info: &ResourceInfo, namespace: Option<&str>, name: &str) -> Result<(), ApiError> {
    let Some(ns) = namespace.filter(|_| info.namespaced) else {
        return Ok(());
    };
    match state.get(&ObjectKey::new("", "namespaces", "", ns)) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if object::is_deleting(n) => Err(ApiError::forbidden(
            &info.group,
            &info.resource,
            name,
            &format!("unable to create new content in namespace {ns} because it is being terminated"),
        )),
        Some(_) => Ok(()),
    }
}

/// Type-specific validation, defaulting and pruning of an object about to be stored.
/// Returns warnings for the `Warning` header.
fn admit(
    info: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
    params: &Params,
    part: Part,
) -> Result<Vec<String>, ApiError> {
    if info.group == "apiextensions.k8s.io" && info.resource == "customresourcedefinitions" {
        crd::default_crd(obj, old.is_none());
        let causes = crd::validate_crd(obj, old);
        if !causes.is_empty() {
            return Err(ApiError::invalid(
                &info.group,
                &info.kind,
                object::name_of(obj),
                &causes,
            ));
        }
    }
    if info.is_custom() {
        return schema::admit(info, obj, old, params.strict(), part);
    }
    if let Some(message) = validation::undecodable_data(info, obj) {
        return Err(ApiError::bad_request(message));
    }
    let causes = validation::builtin_causes(info, obj, old);
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            &info.group,
            &info.kind,
            object::name_of(obj),
            &causes,
        ));
    }
    Ok(Vec::new())
}

/// Stores `obj` (or, for a dry run, returns it as it would be stored).
fn commit(state: &mut State, key: ObjectKey, obj: Value, dry_run: bool) -> Value {
    if dry_run { obj } else { (*state.put(key, obj)).clone() }
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {w:?}")) {
            response.headers_mut().append("Warning", v);
        }
    }
    response
}

/// `POST` to a collection.
pub fn create(
    app: &App,
    target: &Target,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let info = &target.info;
    let body = request::decode_body(headers, body)?;
    let ns = target.namespace.as_deref();
    let manager = apply::manager_name(params, headers, "Update");
    let (obj, warnings) = app.store.write(|s| {
        let mut obj = object::prepare_create(info, ns, body)?;
        let name = object::name_of(&obj).to_string();
        check_namespace(s, info, ns, &name)?;
        let key = storage_key(info, ns, &name);
        if s.get(&key).is_some() {
            return Err(ApiError::already_exists(&info.group, &info.resource, &name));
        }
        let warnings = admit(info, &mut obj, None, params, Part::Main)?;
        let mut obj = conversion::to_storage(info, obj);
        apply::track_update(info, &mut obj, None, &manager, Part::Main);
        Ok((commit(s, key, obj, params.dry_run), warnings))
    })?;
    Ok(with_warnings(
        respond(StatusCode::CREATED, &present(info, &obj)),
        &warnings,
    ))
}

fn part_of(target: &Target) -> Part {
    if target.subresource.as_deref() == Some("status") {
        Part::Status
    } else {
        Part::Main
    }
}

/// Finishes an update of `current` (stored form) to `new` (served form) under the store
/// lock: metadata rules, admission, conversion, no-op detection, commit.
#[allow(clippy::too_many_arguments)]
pub fn finish_update(
    state: &mut State,
    info: &ResourceInfo,
    key: ObjectKey,
    current: &Value,
    new: Value,
    part: Part,
    rv_required: bool,
    params: &Params,
    manager: &str,
) -> Result<(Value, Vec<String>), ApiError> {
    let served_current = present(info, current);
    let mut new = object::prepare_update(info, &served_current, new, part, rv_required)?;
    let warnings = admit(info, &mut new, Some(&served_current), params, part)?;
    let mut new = conversion::to_storage(info, new);
    // Omitted managedFields keep the stored ones.
    if new.pointer("/metadata/managedFields").is_none()
        && let (Some(kept), Some(meta)) = (
            current.pointer("/metadata/managedFields"),
            new.get_mut("metadata").and_then(Value::as_object_mut),
        )
    {
        meta.insert("managedFields".into(), kept.clone());
    }
    if object::unchanged(current, &new) {
        return Ok((current.clone(), warnings));
    }
    apply::track_update(info, &mut new, Some(current), manager, part);
    Ok((commit(state, key, new, params.dry_run), warnings))
}

/// `PUT` of an object or its `status`.
pub fn update(
    app: &App,
    target: &Target,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let info = &target.info;
    let name = target.name()?;
    let body = request::decode_body(headers, body)?;
    let key = storage_key(info, target.namespace.as_deref(), name);
    let manager = apply::manager_name(params, headers, "Update");
    let (obj, warnings) = app.store.write(|s| {
        let current = s
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&info.group, &info.resource, name))?;
        finish_update(
            s,
            info,
            key.clone(),
            &current,
            body,
            part_of(target),
            info.is_custom(),
            params,
            &manager,
        )
    })?;
    Ok(with_warnings(respond(StatusCode::OK, &present(info, &obj)), &warnings))
}

/// Media types a custom resource accepts for PATCH.
const CUSTOM_PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];
const BUILTIN_PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Decodes a patch body and its type.
pub fn decode_patch(info: &ResourceInfo, headers: &HeaderMap, body: &[u8]) -> Result<(PatchType, Value), ApiError> {
    let media = request::content_type(headers);
    let accepted = if info.is_custom() {
        CUSTOM_PATCH_TYPES
    } else {
        BUILTIN_PATCH_TYPES
    };
    let ptype = PatchType::from_media(&media)
        .filter(|t| !(info.is_custom() && *t == PatchType::Strategic))
        .ok_or_else(|| ApiError::unsupported_media_type(&media, accepted))?;
    let doc: Value = if ptype == PatchType::Apply {
        serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
    };
    Ok((ptype, doc))
}

/// Applies a non-apply patch to the served form of `current`.
pub fn apply_patch(ptype: PatchType, current: &Value, doc: &Value) -> Result<Value, ApiError> {
    let bad = |e: patch::PatchError| ApiError::invalid_patch(e.to_string());
    match ptype {
        PatchType::Merge => Ok(patch::merge(current, doc)),
        PatchType::Json => patch::json_patch(current, doc).map_err(bad),
        PatchType::Strategic => patch::strategic(current, doc).map_err(bad),
        PatchType::Apply => Err(ApiError::internal("apply patches are handled by server-side apply")),
    }
}

/// `PATCH` of an object or its `status`.
pub fn patch(
    app: &App,
    target: &Target,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let info = &target.info;
    let name = target.name()?;
    let (ptype, doc) = decode_patch(info, headers, body)?;
    let ns = target.namespace.as_deref();
    let key = storage_key(info, ns, name);
    let part = part_of(target);
    if ptype == PatchType::Apply {
        let manager = params.field_manager.clone().ok_or_else(|| {
            ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                &[crate::status::Cause::required_detail(
                    "fieldManager",
                    "is required for apply patch",
                )],
            )
        })?;
        let (obj, warnings, created) = app.store.write(|s| -> Result<(Value, Vec<String>, bool), ApiError> {
            match s.get(&key).cloned() {
                None => {
                    if part == Part::Status {
                        return Err(ApiError::not_found(&info.group, &info.resource, name));
                    }
                    let mut obj = apply::apply_create(info, ns, name, &doc, &manager)?;
                    check_namespace(s, info, ns, name)?;
                    let warnings = admit(info, &mut obj, None, params, Part::Main)?;
                    let obj = conversion::to_storage(info, obj);
                    Ok((commit(s, key.clone(), obj, params.dry_run), warnings, true))
                }
                Some(current) => {
                    let served = present(info, &current);
                    let new = apply::apply_update(info, &served, &doc, &manager, params.force, part)?;
                    let (obj, warnings) = finish_update(s, info, key.clone(), &current, new, part, false, params, "")?;
                    Ok((obj, warnings, false))
                }
            }
        })?;
        let code = if created { StatusCode::CREATED } else { StatusCode::OK };
        return Ok(with_warnings(respond(code, &present(info, &obj)), &warnings));
    }
    let manager = apply::manager_name(params, headers, "Patch");
    let (obj, warnings) = app.store.write(|s| {
        let current = s
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&info.group, &info.resource, name))?;
        let served = present(info, &current);
        let new = apply_patch(ptype, &served, &doc)?;
        finish_update(s, info, key.clone(), &current, new, part, false, params, &manager)
    })?;
    Ok(with_warnings(respond(StatusCode::OK, &present(info, &obj)), &warnings))
}
