//! Topic sinks: a matching event is republished into the destination topic through the
//! ordinary publish pipeline (as [`Origin::Internal`], so no access or rate checks, but
//! the destination's content rules, schema and size limit apply). The copy keeps type,
//! data, priority, targets, ack requirement, correlation id and what is left of its TTL;
//! it gets a fresh id, `causationId` = the original id, and source
//! `eventcast/subscription/<name>`. The copy is itself published, so it reaches the
//! destination's clients and may match other subscriptions; the compiler rejects
//! routing loops.

use std::time::Duration;

use eventcast_api::protocol::{PublishAccepted, PublishRequest};

use super::matcher::source_of;
use crate::event::SharedEvent;
use crate::publish::{Origin, PublishError, PublishErrorKind, Publisher};

/// Attempts per event while the backend is unavailable.
const ATTEMPTS: u32 = 3;
/// Longest wait between those attempts.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// The topic sink of one subscription.
#[derive(Debug)]
pub struct TopicRoute {
    destination: String,
    source: String,
}

impl TopicRoute {
    pub fn new(subscription: &str, destination: &str) -> Self {
        Self {
            destination: destination.to_owned(),
            source: source_of(subscription),
        }
    }

    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The copy of `ev` to publish into the destination, as of `now_ms`.
    pub fn request(&self, ev: &SharedEvent, now_ms: u64) -> PublishRequest {
        let e = &ev.stored.event;
        PublishRequest {
            id: None,
            event_type: e.event_type.clone(),
            data: e.data.clone(),
            priority: Some(e.priority),
            ttl_ms: ev.stored.expires_at_ms.map(|at| at.saturating_sub(now_ms).max(1)),
            requires_ack: Some(e.requires_ack),
            targets: ev.stored.targets.clone(),
            correlation_id: e.correlation_id.clone(),
            causation_id: Some(e.id.clone()),
            source: Some(self.source.clone()),
        }
    }

    /// Publishes the copy, retrying a few times while the backend is unavailable.
    /// Other refusals (too large, schema of the destination) are final.
    pub async fn route(&self, publisher: &Publisher, ev: &SharedEvent) -> Result<PublishAccepted, PublishError> {
        let mut attempt = 1;
        loop {
            let req = self.request(ev, crate::event::unix_ms());
            match publisher.publish(&self.destination, req, Origin::Internal).await {
                Err(PublishError {
                    kind: PublishErrorKind::Unavailable { retry_after },
                    ..
                }) if attempt < ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(retry_after.min(MAX_WAIT)).await;
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use eventcast_api::protocol::Targets;

    use super::*;
    use crate::sinks::fixtures::event;

    #[test]
    fn copy_keeps_the_event_and_names_its_cause() {
        let ev = event("orders.status", 3, "order.created");
        let route = TopicRoute::new("orders-archive", "orders.archive");
        let req = route.request(&ev, 100);
        assert_eq!(route.destination(), "orders.archive");
        assert_eq!(req.id, None);
        assert_eq!(req.event_type, "order.created");
        assert_eq!(req.data, ev.stored.event.data);
        assert_eq!(req.priority, Some(ev.priority()));
        assert_eq!(req.causation_id.as_deref(), Some("id-3"));
        assert_eq!(req.correlation_id.as_deref(), Some("corr-1"));
        assert_eq!(req.source.as_deref(), Some("eventcast/subscription/orders-archive"));
        assert_eq!(req.requires_ack, Some(false));
        assert_eq!(req.ttl_ms, None);
        assert_eq!(req.targets, None);
    }

    #[test]
    fn copy_keeps_targets_and_the_rest_of_the_ttl() {
        let mut ev = event("t", 1, "x").stored.clone();
        ev.expires_at_ms = Some(1_500);
        ev.targets = Some(Targets {
            users: vec!["alice".into()],
            ..Targets::default()
        });
        let shared = SharedEvent::new(
            "t".into(),
            1,
            "e".into(),
            ev,
            1,
            None,
            crate::metrics::TopicMetrics::detached("t"),
        );
        let route = TopicRoute::new("s", "d");
        let req = route.request(&shared, 1_000);
        assert_eq!(req.ttl_ms, Some(500));
        assert_eq!(req.targets.map(|t| t.users), Some(vec!["alice".to_owned()]));
        assert_eq!(route.request(&shared, 2_000).ttl_ms, Some(1), "never an unlimited TTL");
    }
}
