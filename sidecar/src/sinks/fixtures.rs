//! Events for the sinks' unit tests.

use std::sync::Arc;

use eventcast_api::Priority;
use eventcast_api::protocol::DeliveredEvent;
use serde_json::json;

use crate::event::{SharedEvent, StoredEvent};
use crate::metrics::TopicMetrics;

/// An event of type `ty` at `offset` of `topic` (epoch `ep1`, high priority, id `id-<offset>`).
pub fn event(topic: &str, offset: u64, ty: &str) -> Arc<SharedEvent> {
    let stored = StoredEvent {
        event: DeliveredEvent {
            id: format!("id-{offset}"),
            event_type: ty.into(),
            time: "2026-01-01T00:00:00Z".into(),
            priority: Priority::High,
            source: Some("app".into()),
            data: json!({"n": offset}),
            requires_ack: false,
            correlation_id: Some("corr-1".into()),
            causation_id: None,
        },
        targets: None,
        expires_at_ms: None,
        published_at_ms: 1,
    };
    Arc::new(SharedEvent::new(
        topic.into(),
        offset,
        "ep1".into(),
        stored,
        10,
        None,
        TopicMetrics::detached(topic),
    ))
}
