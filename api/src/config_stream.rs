//! The operator -> sidecar config stream: `GET /v1/sidecars/stream?namespace=NS&pod=NAME`
//! on the operator, upgraded to WebSocket, one JSON object per text message.
//!
//! The operator sends a `snapshot` on connect and on every config change (and again on
//! its periodic resync); the sidecar answers every snapshot with `ack` or `nack`, and
//! reports its load every few seconds. The operator may also ask one sidecar of a
//! namespace to `purge` a deleted Topic's stored history (Topic `deletionPolicy:
//! Delete`); the sidecar answers `purged`.

use serde::{Deserialize, Serialize};

use crate::config::CompiledConfig;

/// Path of the config stream on the operator's `--config-stream` listener.
pub const STREAM_PATH: &str = "/v1/sidecars/stream";

/// Operator -> sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum OperatorMessage {
    /// The whole config of the sidecar's namespace.
    Snapshot {
        version: String,
        config: Box<CompiledConfig>,
    },
    /// Delete everything stored for a topic that no longer exists (history, offsets,
    /// idempotency keys, presence). `id` is echoed in the answer.
    Purge { id: String, topic: String },
}

/// Sidecar -> operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SidecarMessage {
    /// The snapshot of this version is live.
    Ack { version: String },
    /// The snapshot of this version was rejected; the sidecar keeps its last good config.
    Nack { version: String, error: String },
    /// Periodic load report (autoscaling input).
    Load(SidecarLoad),
    /// Answer to a `purge`; `error` is set when the topic's data could not be deleted.
    Purged {
        id: String,
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// A sidecar's load, as reported on the stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarLoad {
    /// Open client WebSocket connections.
    pub connections: u64,
    /// Events published through this sidecar per second (recent average).
    pub events_in_per_second: f64,
    /// Events delivered to clients per second (recent average).
    pub events_out_per_second: f64,
    /// Frames queued for clients, summed over connections.
    pub queue_depth: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_use_the_documented_shape() {
        let ack: SidecarMessage = serde_json::from_str(r#"{"type":"ack","version":"v-1"}"#).expect("ack");
        assert_eq!(ack, SidecarMessage::Ack { version: "v-1".into() });
        let nack: SidecarMessage =
            serde_json::from_str(r#"{"type":"nack","version":"v-1","error":"bad"}"#).expect("nack");
        assert!(matches!(nack, SidecarMessage::Nack { ref error, .. } if error == "bad"));
        let load = serde_json::to_value(SidecarMessage::Load(SidecarLoad {
            connections: 3,
            ..SidecarLoad::default()
        }))
        .expect("load");
        assert_eq!(load["type"], "load");
        assert_eq!(load["connections"], 3);
        let snap = serde_json::to_value(OperatorMessage::Snapshot {
            version: "v-2".into(),
            config: Box::default(),
        })
        .expect("snapshot");
        assert_eq!(snap["type"], "snapshot");
        assert_eq!(snap["version"], "v-2");
        assert!(snap["config"]["topics"].is_object());
        let back: OperatorMessage = serde_json::from_value(snap).expect("round trip");
        assert!(matches!(back, OperatorMessage::Snapshot { .. }));
    }
}
