//! The public listener: the `eventcast.v1` WebSocket endpoint and health probes.
//! Connection admission (per-IP rate, pod connection limit, token) happens here, before
//! the upgrade, so refused clients get a plain HTTP status with `Retry-After`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eventcast_api::protocol::{SUBPROTOCOL, error_code};

use super::error::ApiError;
use super::public_listener::PublicPeer;
use crate::connection::session::{self, PreAuth};
use crate::state::SidecarState;

pub fn router(state: Arc<SidecarState>) -> Router {
    Router::new()
        .route("/v1/ws", get(websocket))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, error_code::NOT_FOUND, "no such route") })
        .with_state(state)
}

async fn readyz(State(state): State<Arc<SidecarState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        let why = if state.shutdown.is_cancelled() {
            "shutting down"
        } else if !state.backend.is_ready() {
            "backend unavailable"
        } else {
            "config not loaded"
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error_code::UNAVAILABLE, why).into_response()
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

async fn websocket(
    State(state): State<Arc<SidecarState>>,
    ConnectInfo(peer): ConnectInfo<PublicPeer>,
    Query(query): Query<HashMap<String, String>>,
    version: Version,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if state.shutdown.is_cancelled() {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            error_code::UNAVAILABLE,
            "shutting down",
        );
        e.retry_after = Some(Duration::from_secs(1));
        return Err(e);
    }
    let config = state.config.get();
    let conn = &config.compiled.connection;
    if let Err(l) = state.limits.check_connection(conn.per_ip.as_ref(), peer.addr.ip()) {
        state
            .metrics
            .connections_opened
            .with_label_values(&["rate_limited"])
            .inc();
        state.metrics.rate_limited.with_label_values(&["connection"]).inc();
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            error_code::RATE_LIMITED,
            format!(
                "too many new connections from {}; retry in {} ms",
                peer.addr.ip(),
                l.retry_after.as_millis()
            ),
        );
        e.retry_after = Some(l.retry_after);
        return Err(e);
    }
    let max = conn.max_connections_per_pod as usize;
    if !state.connections.try_reserve(max) {
        state.metrics.connections_opened.with_label_values(&["limit"]).inc();
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            error_code::LIMIT_EXCEEDED,
            format!("this instance serves at most {max} connections"),
        );
        e.retry_after = Some(Duration::from_secs(5));
        return Err(e);
    }

    let token = query
        .get("token")
        .cloned()
        .filter(|t| !t.is_empty())
        .or_else(|| bearer(&headers));
    let pre_auth = match token {
        None => PreAuth::None,
        Some(t) => match config.auth.verify(&t) {
            Ok(identity) => PreAuth::Verified(identity),
            Err(e) => PreAuth::Failed(e),
        },
    };
    let result = match &pre_auth {
        PreAuth::Failed(_) => "unauthorized",
        _ => "accepted",
    };
    state.metrics.connections_opened.with_label_values(&[result]).inc();
    let max_frame = config.max_frame_bytes;
    drop(config);

    let on_fail = state.clone();
    let tracker = state.tracker.clone();
    let ip = peer.addr.ip();
    // Only an HTTP/1.1 upgrade leaves the WebSocket alone on its TCP stream. Over
    // HTTP/2 (not served today) the stream carries h2 frames, and a frame written to
    // it directly would corrupt the connection.
    let direct = (version == Version::HTTP_11).then_some(peer.direct);
    Ok(upgrade
        .protocols([SUBPROTOCOL])
        // tungstenite allocates this read buffer for every connection up front and reads
        // at most this much per syscall. Client frames are small (subscribe, ack, ping);
        // a larger one (a publish) gets its whole length reserved and takes a few more
        // reads. 1 KiB instead of 4 KiB is 3 KiB less per idle connection (heap profile
        // of 5,000 idle connections: the read buffer was 4 of their 9 KiB).
        .read_buffer_size(1024)
        .write_buffer_size(32 * 1024)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_failed_upgrade(move |e| {
            on_fail.connections.release();
            tracing::debug!(error = %e, "websocket upgrade failed");
        })
        .on_upgrade(move |socket| tracker.track_future(session::serve(state, socket, direct, ip, pre_auth))))
}
