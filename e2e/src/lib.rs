//! End-to-end harness: a Kubernetes API test server driven by the real `kubectl`,
//! in-process operators, config-stream clients and sidecars, on loopback.

pub mod cluster;
pub mod fake_sidecar;
pub mod wait;

pub use cluster::{Cluster, Run};
pub use fake_sidecar::FakeSidecar;
pub use wait::eventually;
