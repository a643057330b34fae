//! `delete` and `deletecollection`: `DeleteOptions` preconditions, finalizers (the
//! object stays, with `deletionTimestamp`, until they are all removed), namespaces
//! going `Terminating`, and `dryRun=All`. Owner references are followed afterwards by
//! the in-process garbage collector (background propagation).

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{present, read, respond, storage_key};
use crate::lifecycle;
use crate::object;
use crate::registry::ResourceInfo;
use crate::request::{Params, Target};
use crate::server::App;
use crate::status::ApiError;
use crate::store::{ObjectKey, State};

/// The parts of `DeleteOptions` this server honours.
#[derive(Debug, Default)]
struct DeleteOptions {
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

impl DeleteOptions {
    fn parse(headers: &HeaderMap, body: &[u8], params: &Params) -> Result<Self, ApiError> {
        let mut opts = Self {
            dry_run: params.dry_run,
            ..Self::default()
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(opts);
        }
        // JSON, YAML or protobuf (client-go's typed clients send protobuf).
        let v: Value = crate::request::decode_body(headers, body).map_err(|mut e| {
            e.message = format!("error decoding DeleteOptions: {}", e.message);
            e
        })?;
        opts.uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        opts.resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"))
        {
            opts.dry_run = true;
        }
        Ok(opts)
    }
}

/// Deletes one object under the store lock; returns the object as the response shows it.
fn delete_one(
    state: &mut State,
    info: &ResourceInfo,
    key: &ObjectKey,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let current = state
        .get(key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&info.group, &info.resource, &key.name))?;
    let meta_str = |f: &str| {
        current
            .pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if let Some(uid) = &opts.uid
        && *uid != meta_str("uid")
    {
        return Err(ApiError::conflict_msg(
            &info.group,
            &info.resource,
            &key.name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str("uid")
            ),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && *rv != meta_str("resourceVersion")
    {
        return Err(ApiError::conflict_msg(
            &info.group,
            &info.resource,
            &key.name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str("resourceVersion")
            ),
        ));
    }
    if object::is_deleting(&current) {
        return Ok((*current).clone());
    }
    let pending = !object::finalizers(&current).is_empty() || (info.group.is_empty() && info.resource == "namespaces");
    if opts.dry_run {
        return Ok(if pending {
            object::mark_deleting(info, &current)
        } else {
            (*current).clone()
        });
    }
    if pending {
        let marked = state.get(key).cloned();
        lifecycle::delete_object(state, key);
        return Ok(state
            .get(key)
            .map(|o| (**o).clone())
            .or_else(|| marked.map(|m| (*m).clone()))
            .unwrap_or_default());
    }
    Ok(state.remove(key).map(|o| (*o).clone()).unwrap_or_default())
}

/// `DELETE` of one object.
pub fn delete(
    app: &App,
    target: &Target,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let info = &target.info;
    let name = target.name()?;
    let opts = DeleteOptions::parse(headers, body, params)?;
    let key = storage_key(info, target.namespace.as_deref(), name);
    let obj = app.store.write(|s| delete_one(s, info, &key, &opts))?;
    Ok(respond(StatusCode::OK, &present(info, &obj)))
}

/// `DELETE` of a collection (with the list selectors).
pub fn collection(
    app: &App,
    target: &Target,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let info = &target.info;
    let opts = DeleteOptions::parse(headers, body, params)?;
    let list_params = Params {
        limit: None,
        continue_token: None,
        ..params.clone()
    };
    let page = read::collect(app, target, &list_params)?;
    let keys: Vec<ObjectKey> = page
        .items
        .iter()
        .map(|o| {
            let ns = o.pointer("/metadata/namespace").and_then(Value::as_str);
            storage_key(info, ns, object::name_of(o))
        })
        .collect();
    let deleted: Vec<Value> = app.store.write(|s| {
        keys.iter()
            .filter_map(|k| delete_one(s, info, k, &opts).ok())
            .map(|o| present(info, &o))
            .collect()
    });
    let rv = app.store.read(State::current_rv);
    let body = json!({
        "kind": info.list_kind,
        "apiVersion": info.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": deleted,
    });
    Ok(respond(StatusCode::OK, &body))
}
