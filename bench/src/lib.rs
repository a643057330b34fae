//! Eventcast load generator ("eventcast-bench") as a library.
//!
//! The binary in `main.rs` is a thin CLI over these modules. It drives a running
//! sidecar through its public WebSocket endpoint (`GET /v1/ws`, subprotocol
//! `eventcast.v1`) and its local publish API (`POST /v1/topics/{topic}/events`,
//! `POST /v1/events:batch`) and measures fan-out throughput, publish-to-receive
//! latency and the server's memory per idle connection. With `--system` it drives
//! the peers Eventcast is compared with instead (Socket.IO 4 and nchan, see
//! [`protocol`] and `bench/peers/`). `floor` needs no server at all: it measures
//! the latency floor of one-core fan-out on this machine.

pub mod arrival;
pub mod cli;
pub mod connections;
pub mod endpoint;
pub mod fanout;
pub mod floor;
pub mod frame;
pub mod http_client;
pub mod idle;
pub mod latency;
pub mod procfs;
pub mod protocol;
pub mod publisher;
pub mod report;
pub mod source_addr;
pub mod subscriber;
pub mod topic_set;
