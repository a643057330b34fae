//! Eventcast sidecar: takes events from the app in its pod (local API), stores them in
//! a backend with offsets and history, and delivers them to WebSocket clients with
//! priorities, filters, acks, recovery and presence, under the namespace's policies.

pub mod backend;
pub mod config_source;
pub mod connection;
pub mod event;
pub mod http;
pub mod hub;
pub mod live_config;
pub mod metrics;
pub mod policy;
pub mod presence_keeper;
pub mod publish;
pub mod server;
pub mod settings;
pub mod sinks;
pub mod state;
pub mod telemetry;
