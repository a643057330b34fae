//! eventcast-operator: watches Topic, Subscription and BroadcastPolicy resources (and
//! the Secrets they reference), compiles one config per namespace with
//! `eventcast-api`, pushes it to every connected sidecar over the config stream, and
//! reports status back on the resources. Two replicas may run: both serve the config
//! stream; the one holding the Lease writes status, finalizers and Events.

pub mod autoscale;
pub mod metrics;
pub mod reconcile;
pub mod resource;
pub mod server;
pub mod settings;
pub mod status;
pub mod stream;

pub use server::{Running, StartError, start};
pub use settings::Settings;
