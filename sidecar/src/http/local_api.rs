//! The app-facing API on the local listener: publish (single and batch), history,
//! presence, topics and stats.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventcast_api::protocol::{BatchRequest, PublishRequest, error_code};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::publish::{Origin, PublishError};
use crate::state::SidecarState;

/// Largest request body read (a batch may carry many events).
const MAX_BODY_BYTES: usize = 32 << 20;
/// Most events in one batch.
const MAX_BATCH: usize = 10_000;
const DEFAULT_HISTORY_LIMIT: usize = 100;
const MAX_HISTORY_LIMIT: usize = 10_000;

pub fn router(state: Arc<SidecarState>) -> Router {
    Router::new()
        .route("/v1/topics", get(list_topics))
        .route("/v1/topics/{topic}/events", post(publish_one))
        .route("/v1/events:batch", post(publish_batch))
        .route("/v1/topics/{topic}/history", get(history))
        .route("/v1/topics/{topic}/presence", get(presence))
        .route("/v1/stats", get(stats))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, error_code::NOT_FOUND, "no such route") })
        .with_state(state)
}

async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            error_code::TOO_LARGE,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
}

/// The app may attribute a publish to a user/device so per-user limits apply. Per-IP
/// limits are for clients: the app always calls from loopback.
fn local_origin(headers: &HeaderMap) -> Origin<'_> {
    Origin::Local {
        user: header_str(headers, "x-eventcast-user"),
        device: header_str(headers, "x-eventcast-device"),
    }
}

// Takes the whole request rather than a `HeaderMap` extractor, which would clone the
// headers on every publish (the hottest route).
pub(super) async fn publish_one(
    State(state): State<Arc<SidecarState>>,
    Path(topic): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let req: PublishRequest = read_json(body).await?;
    let accepted = state
        .publisher
        .publish(&topic, req, local_origin(&parts.headers))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

async fn publish_batch(State(state): State<Arc<SidecarState>>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let batch: BatchRequest = read_json(body).await?;
    if batch.events.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            error_code::TOO_LARGE,
            format!("batch of {} events; at most {MAX_BATCH}", batch.events.len()),
        ));
    }
    let origin = local_origin(&headers);
    let items = batch.events.into_iter().map(|item| (item.topic, item.event)).collect();
    let mut results = Vec::new();
    let mut accepted = 0usize;
    for outcome in state.publisher.publish_batch(items, origin).await {
        match outcome {
            Ok(ok) => {
                accepted += 1;
                let mut v = serde_json::to_value(&ok).unwrap_or_default();
                v["status"] = json!(202);
                results.push(v);
            }
            Err(e) => results.push(batch_error(&e)),
        }
    }
    let status = if accepted == results.len() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((
        status,
        Json(json!({"accepted": accepted, "rejected": results.len() - accepted, "results": results})),
    )
        .into_response())
}

fn batch_error(e: &PublishError) -> Value {
    let body = ApiError::from(e.clone()).body();
    json!({"status": e.status().as_u16(), "error": body})
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    since: Option<u64>,
    epoch: Option<String>,
    limit: Option<usize>,
}

async fn history(
    State(state): State<Arc<SidecarState>>,
    Path(topic): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let config = state.config.get();
    let t = config
        .topic(&topic)
        .ok_or_else(|| ApiError::from(PublishError::unknown_topic(&topic)))?
        .clone();
    drop(config);
    let limit = q.limit.unwrap_or(DEFAULT_HISTORY_LIMIT).clamp(1, MAX_HISTORY_LIMIT);
    let probe = state.backend.read(&t, u64::MAX, 1).await.map_err(PublishError::from)?;
    // Continue from `since` when it lies in this epoch's retained range; otherwise
    // start at the oldest retained event and say the caller's position was not recoverable.
    let (after, recovered) = match (q.since, &q.epoch) {
        (Some(since), epoch) => {
            let same_epoch = epoch.as_deref().is_none_or(|e| *e == *probe.epoch);
            let ok = same_epoch && since <= probe.last && since.saturating_add(1) >= probe.first;
            (if ok { since } else { probe.first.saturating_sub(1) }, Some(ok))
        }
        (None, _) => (probe.first.saturating_sub(1), None),
    };
    let read = state.backend.read(&t, after, limit).await.map_err(PublishError::from)?;
    let events: Vec<Value> = read
        .events
        .iter()
        .map(|e| json!({"offset": e.offset, "event": &e.stored.event}))
        .collect();
    let mut body = json!({
        "topic": &*t.name,
        "epoch": &*read.epoch,
        "first": read.first,
        "offset": read.last,
        "events": events,
    });
    if let Some(r) = recovered {
        body["recovered"] = json!(r);
    }
    Ok(Json(body).into_response())
}

async fn presence(State(state): State<Arc<SidecarState>>, Path(topic): Path<String>) -> Result<Response, ApiError> {
    let config = state.config.get();
    let t = config
        .topic(&topic)
        .ok_or_else(|| ApiError::from(PublishError::unknown_topic(&topic)))?;
    if !t.config.presence {
        return Err(ApiError::bad_request(format!(
            "topic {topic:?} does not track presence"
        )));
    }
    drop(config);
    let list = state.backend.presence_list(&topic).await.map_err(PublishError::from)?;
    Ok(Json(json!({"topic": topic, "clients": list})).into_response())
}

async fn list_topics(State(state): State<Arc<SidecarState>>) -> Json<Value> {
    let config = state.config.get();
    let mut topics: Vec<Value> = config
        .compiled
        .topics
        .values()
        .map(|t| {
            json!({
                "name": t.name,
                "defaultPriority": t.default_priority,
                "guarantee": t.delivery.guarantee,
                "presence": t.presence,
                "retention": t.retention,
                "localSubscribers": state.hub.subscriber_count(&t.name),
            })
        })
        .collect();
    topics.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Json(json!({"configVersion": config.version, "topics": topics}))
}

async fn stats(State(state): State<Arc<SidecarState>>) -> Json<Value> {
    let config = state.config.get();
    let (queued, subscriptions) = state.connections.totals();
    Json(json!({
        "namespace": state.namespace,
        "pod": state.pod_name,
        "backend": state.backend.name(),
        "ready": state.is_ready(),
        "configVersion": config.version,
        "uptimeSeconds": state.started.elapsed().as_secs(),
        "connections": state.connections.len(),
        "subscriptions": subscriptions,
        "queuedEvents": queued,
        "topics": config.compiled.topics.len(),
        "activeTopics": state.hub.active_topics().len(),
    }))
}
