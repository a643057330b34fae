//! Where the sidecar's config comes from. `--manifests DIR`: the same YAML a user would
//! `kubectl apply`, compiled locally and hot-reloaded on change.

pub mod manifests;
