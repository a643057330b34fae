//! Resource request handlers, one file per verb family: `read` (get, list), `watch`,
//! `write` (create, update, patch), `delete` (delete, deletecollection) and `scale`
//! (the scale subresource). `dispatch` maps method + path shape to a verb.

pub mod delete;
pub mod read;
pub mod scale;
pub mod watch;
pub mod write;

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use crate::registry::ResourceInfo;
use crate::request::{Output, Params, Target};
use crate::server::App;
use crate::status::ApiError;
use crate::store::ObjectKey;

/// A JSON response.
pub fn respond(code: StatusCode, body: &Value) -> Response {
    let mut response = (code, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A stored object as served through `info`'s version (see [`crate::conversion`]).
pub fn present(info: &ResourceInfo, obj: &Value) -> Value {
    crate::conversion::to_served(info, obj)
}

/// The storage key of an object of `info`.
pub fn storage_key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> ObjectKey {
    let ns = if info.namespaced { namespace.unwrap_or("") } else { "" };
    ObjectKey::new(&info.storage_group, &info.storage_resource, ns, name)
}

/// Runs the verb the method and path shape name.
pub async fn dispatch(
    app: App,
    method: Method,
    target: Target,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match Params::parse(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let output = Output::negotiate(&headers);
    let sub = target.subresource.as_deref();
    let result: Result<Response, ApiError> = match (method.clone(), target.name.is_some(), sub) {
        (Method::GET, false, _) if params.watch => return watch::serve(&app, &target, &params, output),
        (Method::GET, false, _) => read::list(&app, &target, &params, output),
        (Method::GET, true, Some("scale")) => scale::get(&app, &target),
        (Method::GET, true, _) => read::get(&app, &target, output),
        (Method::POST, false, None) => write::create(&app, &target, &params, &headers, &body),
        (Method::PUT, true, Some("scale")) => scale::update(&app, &target, &params, &headers, &body),
        (Method::PUT, true, _) => write::update(&app, &target, &params, &headers, &body),
        (Method::PATCH, true, Some("scale")) => scale::patch(&app, &target, &params, &headers, &body),
        (Method::PATCH, true, _) => write::patch(&app, &target, &params, &headers, &body),
        (Method::DELETE, true, None) => delete::delete(&app, &target, &params, &headers, &body),
        (Method::DELETE, false, None) => delete::collection(&app, &target, &params, &headers, &body),
        _ => Err(ApiError::method_not_allowed()),
    };
    tracing::debug!(%method, resource = %target.info.resource, name = ?target.name, ok = result.is_ok(), "request");
    result.unwrap_or_else(IntoResponse::into_response)
}
