//! The config stream: sidecars connect over WebSocket, get their namespace's config and
//! answer with acks and nacks (see `eventcast_api::config_stream` for the messages).

pub mod peers;
pub mod registry;
pub mod server;

pub use registry::{NamespaceView, PurgeError, Registry, SidecarView};
