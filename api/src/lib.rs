//! Eventcast API: the `eventcast.dev/v1alpha1` custom resources, the compiled config
//! model and its compiler, manifest parsing, and the WebSocket wire protocol.
//! Shared by the operator and the sidecar; pure code, no I/O.

pub mod compiler;
pub mod config;
pub mod config_stream;
pub mod crd;
pub mod duration;
pub mod filter;
pub mod manifest;
pub mod pattern;
pub mod priority;
pub mod protocol;
mod schema;

pub use compiler::{CompileError, CompileInput, CompileOutput, compile, compile_strict};
pub use config::CompiledConfig;
pub use priority::Priority;
