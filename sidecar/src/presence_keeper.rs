//! Keeps shared presence true on the Redis backend: every interval this sidecar extends
//! the expiry of the entries of its own connections (announcing `presence.join` again
//! for any that vanished meanwhile, e.g. swept during an outage), and sweeps expired
//! entries of every presence topic — those of sidecars that died without saying
//! goodbye — announcing `presence.leave` for each. The sweep is atomic in Redis, so
//! exactly one sidecar announces each leave.

use std::sync::Arc;

use eventcast_api::protocol::PublishRequest;
use serde_json::json;

use crate::backend::{PresenceEntry, RedisBackend};
use crate::publish::Origin;
use crate::state::SidecarState;

async fn announce(state: &SidecarState, topic: &str, event_type: &str, entry: &PresenceEntry) {
    let req = PublishRequest {
        event_type: event_type.to_owned(),
        data: json!({"session": entry.session, "user": entry.user, "device": entry.device}),
        source: Some("eventcast".to_owned()),
        ..PublishRequest::default()
    };
    if let Err(e) = state.publisher.publish(topic, req, Origin::Internal).await {
        tracing::warn!(topic, error = %e, "publishing {event_type}");
    }
}

/// Runs until the sidecar shuts down.
pub async fn run(state: Arc<SidecarState>, redis: Arc<RedisBackend>) {
    let mut tick = tokio::time::interval(redis.presence_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (topic, entry) in redis.presence_refresh().await {
            announce(&state, &topic, "presence.join", &entry).await;
        }
        let topics: Vec<Arc<str>> = state
            .config
            .get()
            .topics
            .values()
            .filter(|t| t.config.presence)
            .map(|t| t.name.clone())
            .collect();
        for topic in topics {
            if state.shutdown.is_cancelled() {
                return;
            }
            match redis.presence_sweep(&topic).await {
                Ok(gone) => {
                    for entry in &gone {
                        tracing::info!(topic = %topic, session = %entry.session, "presence expired");
                        announce(&state, &topic, "presence.leave", entry).await;
                    }
                }
                Err(e) => tracing::debug!(topic = %topic, error = %e, "sweeping presence"),
            }
        }
    }
}
