//! Publish and connection policies the sidecar enforces: who a client is (JWT
//! [`auth`]), what it may do ([`access`]), how fast ([`rate_limit`]), and what an
//! event's payload may contain ([`content`] rules and the topic's JSON [`schema`]).
//!
//! Each module is pure (no I/O) and is built from the compiled config of
//! `eventcast-api`, so the hot path only evaluates precompiled rules. Rate limits shared
//! across sidecars are the one exception: they take tokens through the
//! [`rate_limit::SharedBuckets`] the backend provides.

pub mod access;
pub mod auth;
pub mod content;
pub mod rate_limit;
pub mod schema;

pub use auth::{AuthError, Authenticator, Identity};
