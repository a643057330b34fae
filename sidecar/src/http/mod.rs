//! The three HTTP listeners: public (WebSocket + health), local (the app's publish API)
//! and metrics.

mod error;
mod local_api;
mod local_service;
mod metrics_api;
mod public;
pub mod public_listener;

use std::sync::Arc;

use axum::Router;

use crate::state::SidecarState;

pub use error::ApiError;

pub fn public_router(state: Arc<SidecarState>) -> Router {
    public::router(state)
}

/// The local API as a service: the publish route's fast path in front of its router.
pub fn local_service(state: Arc<SidecarState>) -> local_service::LocalService {
    local_service::LocalService::new(state.clone(), local_api::router(state))
}

pub fn metrics_router(state: Arc<SidecarState>) -> Router {
    metrics_api::router(state)
}
