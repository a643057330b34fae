//! Kubernetes API test server: real API semantics for what the Eventcast operator and
//! kubectl use, served over loopback HTTP for machines without a cluster. Test
//! infrastructure, not Kubernetes: see README.md for what it implements and where it
//! differs from a real kube-apiserver.

pub mod apply;
pub mod cel;
pub mod conversion;
pub mod crd;
pub mod discovery;
pub mod fieldset;
pub mod handlers;
pub mod jsonpath;
pub mod kubeconfig;
pub mod lifecycle;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod schema;
pub mod selector;
pub mod server;
pub mod status;
pub mod store;
pub mod table;
pub mod validation;

pub use server::{Options, RunningServer, start};
