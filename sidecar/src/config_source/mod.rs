//! Where the sidecar's config comes from, exactly one of:
//! - `--manifests DIR` ([`manifests`]): the same YAML a user would `kubectl apply`,
//!   compiled locally and hot-reloaded on change;
//! - `--operator URL` ([`operator`]): pushed by the operator on its config stream, with
//!   the last good config kept on disk ([`cache`]) and reconnects paced by [`reconnect`].

pub mod cache;
pub mod manifests;
pub mod operator;
pub mod reconnect;
