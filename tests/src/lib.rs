//! Test support for the workspace-level integration tests (the `[[test]]` targets beside
//! this crate's `src/`).
//!
//! Every test starts its own in-process sidecar ([`TestSidecar`]) on ephemeral loopback
//! ports with a manifest directory of its own, and talks to it the way real users do:
//! the app's local HTTP API ([`TestSidecar::publish`], [`TestSidecar::get`], answers as
//! [`HttpReply`]), WebSocket clients speaking `eventcast.v1` ([`WsClient`]; [`RawWsClient`]
//! for one that must not answer pings), `/metrics` ([`metric`]), and files in the
//! manifest directory for hot reload ([`TestSidecar::write_manifest`]). Tokens are
//! minted with [`Jwt`]. A sidecar configured by an operator (`--operator`) talks to a
//! [`FakeOperator`] ([`TestSidecar::start_with_operator`]). Nothing here reaches into
//! the sidecar's internals: besides its listeners, tests use only `server::start` and
//! `Running::shutdown`, the embedding API the binary uses too.
//!
//! Backend: `EVENTCAST_TEST_BACKEND=memory|redis` (default `memory`) picks the backend
//! every [`TestSidecar`] runs on, so the same suite runs against each ([`Backend`]); the
//! rare test that cannot hold on Redis returns early through [`skip_on_redis`].
//!
//! Timing: frames a test waits for get [`WAIT`] (generous, for a busy two-core
//! machine); asserting that nothing arrives uses [`QUIET`].

mod fake_operator;
mod http;
mod jwt;
mod metrics;
mod raw_ws;
pub mod redis_cluster;
mod redis_sidecar;
mod sidecar;
mod wait;
mod ws;

use std::time::Duration;

pub use fake_operator::FakeOperator;
pub use http::HttpReply;
pub use jwt::{AUTH_MANIFESTS, Jwt, TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET};
pub use metrics::metric;
pub use raw_ws::{RawFrame, RawWsClient};
pub use redis_sidecar::{Acked, FrameRecorder, GIVE_UP, Outage, StreamLog, publish_stream, topic_manifest};
pub use sidecar::{Backend, ENV_BACKEND, TestSidecar, skip_on_redis};
pub use wait::eventually;
pub use ws::{ConnectOptions, FrameError, WsClient};

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a test watches to see that something does not happen.
pub const QUIET: Duration = Duration::from_millis(300);
