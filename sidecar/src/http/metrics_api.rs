//! `GET /metrics` in the Prometheus text format.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::SidecarState;

pub fn router(state: Arc<SidecarState>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

async fn metrics(State(state): State<Arc<SidecarState>>) -> impl IntoResponse {
    let (queued, _) = state.connections.totals();
    state.metrics.queue_depth.set(i64::try_from(queued).unwrap_or(i64::MAX));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}
