//! The three HTTP listeners: public (WebSocket + health), local (the app's publish API)
//! and metrics.

mod error;
mod local_api;
mod metrics_api;
mod public;

use std::sync::Arc;

use axum::Router;

use crate::state::SidecarState;

pub use error::ApiError;

pub fn public_router(state: Arc<SidecarState>) -> Router {
    public::router(state)
}

pub fn local_router(state: Arc<SidecarState>) -> Router {
    local_api::router(state)
}

pub fn metrics_router(state: Arc<SidecarState>) -> Router {
    metrics_api::router(state)
}
