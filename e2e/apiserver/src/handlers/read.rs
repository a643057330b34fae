//! `get` and `list`: single objects and collections, with label and field selectors,
//! `limit`/`continue` pagination over a consistent snapshot (the token carries the
//! list's resourceVersion; once that version leaves the retained window the token is
//! 410 `Expired`), `resourceVersion`/`resourceVersionMatch`, and Table or metadata-only
//! output.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};

use super::{present, respond, storage_key};
use crate::request::{Output, Params, Target};
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::App;
use crate::status::ApiError;
use crate::table::{self, Include};

/// `GET` of one object (or its `status` subresource, which returns the whole object).
pub fn get(app: &App, target: &Target, output: Output) -> Result<Response, ApiError> {
    let info = &target.info;
    let name = target.name()?;
    let key = storage_key(info, target.namespace.as_deref(), name);
    let obj = app
        .store
        .read(|s| s.get(&key).cloned())
        .ok_or_else(|| ApiError::not_found(&info.group, &info.resource, name))?;
    let obj = present(info, &obj);
    let body = match output {
        Output::Object => obj,
        Output::Metadata => table::partial_metadata(&obj),
        Output::Table => {
            let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
            table::table(info, &[obj], json!({"resourceVersion": rv}), Include::from_param(None))
        }
    };
    Ok(respond(StatusCode::OK, &body))
}

/// Position of a paginated list: the snapshot version and the last key returned.
struct ContinueToken {
    rv: u64,
    namespace: String,
    name: String,
}

impl ContinueToken {
    fn encode(&self) -> String {
        let raw = json!({"v": "meta.k8s.io/v1", "rv": self.rv, "start": [self.namespace, self.name]}).to_string();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    fn decode(token: &str) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::bad_request(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
            )
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        Ok(Self {
            rv: v["rv"].as_u64().ok_or_else(bad)?,
            namespace: v["start"][0].as_str().ok_or_else(bad)?.to_string(),
            name: v["start"][1].as_str().ok_or_else(bad)?.to_string(),
        })
    }
}

/// Selected objects of a list, as served, with the list's version and continuation.
pub struct Page {
    pub items: Vec<Value>,
    pub rv: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

fn parse_rv(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "resourceVersion: Invalid value: {text:?}: must be a non-negative integer"
        ))
    })
}

/// Collects one page of a list request.
pub fn collect(app: &App, target: &Target, params: &Params) -> Result<Page, ApiError> {
    let info = &target.info;
    let labels = LabelSelector::parse(params.label_selector.as_deref().unwrap_or(""))?;
    let fields = FieldSelector::parse(params.field_selector.as_deref().unwrap_or(""), info)?;
    let token = params
        .continue_token
        .as_deref()
        .map(ContinueToken::decode)
        .transpose()?;
    let exact = match (
        &token,
        params.resource_version_match.as_deref(),
        params.resource_version.as_deref(),
    ) {
        (Some(t), _, _) => Some(t.rv),
        (None, Some("Exact"), Some(rv)) => Some(parse_rv(rv)?),
        (None, Some(m), _) if m != "NotOlderThan" && m != "Exact" => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: {m:?}"
            )));
        }
        _ => None,
    };
    let namespace = if info.namespaced {
        target.namespace.as_deref()
    } else {
        None
    };
    let (objects, rv) = app
        .store
        .read(|s| {
            let snapshot = s.snapshot(&info.storage_group, &info.storage_resource, namespace, exact);
            snapshot.map(|objs| (objs, exact.unwrap_or(s.current_rv())))
        })
        .map_err(|e| {
            if token.is_some() {
                ApiError::continue_expired()
            } else {
                e
            }
        })?;
    let selected: Vec<_> = objects
        .into_iter()
        .filter(|(k, _)| {
            token
                .as_ref()
                .is_none_or(|t| (k.namespace.as_str(), k.name.as_str()) > (t.namespace.as_str(), t.name.as_str()))
        })
        .map(|(k, o)| (k, present(info, &o)))
        .filter(|(_, o)| labels.matches(o) && fields.matches(o))
        .collect();
    let total = selected.len();
    let take = params.limit.unwrap_or(usize::MAX).min(total);
    let mut continue_token = None;
    let mut remaining = None;
    if take < total
        && let Some((last, _)) = selected.get(take.saturating_sub(1))
    {
        continue_token = Some(
            ContinueToken {
                rv,
                namespace: last.namespace.clone(),
                name: last.name.clone(),
            }
            .encode(),
        );
        if labels.is_empty() && fields.is_empty() {
            remaining = Some(total - take);
        }
    }
    let items = selected.into_iter().take(take).map(|(_, o)| o).collect();
    Ok(Page {
        items,
        rv,
        continue_token,
        remaining,
    })
}

/// `GET` of a collection.
pub fn list(app: &App, target: &Target, params: &Params, output: Output) -> Result<Response, ApiError> {
    let info = &target.info;
    let page = collect(app, target, params)?;
    let mut meta = json!({"resourceVersion": page.rv.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(n) = page.remaining {
        meta["remainingItemCount"] = json!(n);
    }
    let body = match output {
        Output::Object => json!({
            "kind": info.list_kind,
            "apiVersion": info.api_version(),
            "metadata": meta,
            "items": page.items,
        }),
        Output::Metadata => table::partial_metadata_list(&page.items, meta),
        Output::Table => table::table(
            info,
            &page.items,
            meta,
            Include::from_param(params.include_object.as_deref()),
        ),
    };
    Ok(respond(StatusCode::OK, &body))
}
