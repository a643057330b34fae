//! Which events a subscription takes: its topic patterns, event-type patterns, minimum
//! priority and filter, compiled once per config so that the publish path only runs a
//! few comparisons per subscription.
//!
//! A subscription never takes events it produced itself (source
//! `eventcast/subscription/<name>`): the compiler rejects routing loops between topic
//! sinks, but a webhook's dead-letter topic may well match its own topic patterns.

use eventcast_api::Priority;
use eventcast_api::config::SubscriptionConfig;
use eventcast_api::filter::{EventView, Filter};
use eventcast_api::pattern::PatternSet;

use super::SinkError;

/// `source` of events a subscription publishes (routed events and dead letters).
pub fn source_of(subscription: &str) -> String {
    format!("eventcast/subscription/{subscription}")
}

/// A subscription's compiled selection.
#[derive(Debug)]
pub struct Matcher {
    topics: PatternSet,
    event_types: PatternSet,
    min_priority: Priority,
    filter: Filter,
    own_source: String,
}

impl Matcher {
    pub fn compile(config: &SubscriptionConfig) -> Result<Self, SinkError> {
        let filter = Filter::compile(&config.filter).map_err(|e| SinkError::Filter {
            subscription: config.name.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            topics: config.topics.clone(),
            event_types: config.event_types.clone(),
            min_priority: config.min_priority,
            filter,
            own_source: source_of(&config.name),
        })
    }

    /// Whether the subscription takes this event. Cheapest checks first.
    pub fn matches(&self, ev: &EventView<'_>) -> bool {
        ev.priority >= self.min_priority
            && self.topics.matches(ev.topic)
            && self.event_types.matches(ev.event_type)
            && ev.source != Some(self.own_source.as_str())
            && self.filter.matches(ev)
    }
}

#[cfg(test)]
mod tests {
    use eventcast_api::config::{SinkConfig, SubscriptionDeliveryConfig};
    use eventcast_api::crd::subscription::DeliveryMode;
    use eventcast_api::filter::{FilterCondition, FilterOp};
    use serde_json::{Value, json};

    use super::*;

    fn config(topics: &[&str], types: &[&str], min: Priority, filter: Vec<FilterCondition>) -> SubscriptionConfig {
        SubscriptionConfig {
            name: "audit".into(),
            topics: PatternSet::parse_all(topics).expect("topics"),
            event_types: PatternSet::parse_all(types).expect("types"),
            filter,
            min_priority: min,
            delivery: SubscriptionDeliveryConfig {
                mode: DeliveryMode::Realtime,
                batch_size: 1,
                batch_interval_ms: 0,
            },
            sink: SinkConfig::Topic { name: "archive".into() },
        }
    }

    fn view<'a>(
        topic: &'a str,
        ty: &'a str,
        priority: Priority,
        source: Option<&'a str>,
        data: &'a Value,
    ) -> EventView<'a> {
        EventView {
            topic,
            id: "e1",
            event_type: ty,
            source,
            priority,
            correlation_id: None,
            causation_id: None,
            data,
        }
    }

    #[test]
    fn topics_types_and_priority_all_apply() {
        let m = Matcher::compile(&config(&["chat.*"], &["message.*"], Priority::Normal, vec![])).expect("compiles");
        let d = json!({});
        assert!(m.matches(&view("chat.room-1", "message.sent", Priority::Normal, None, &d)));
        assert!(m.matches(&view("chat.room-1", "message.sent", Priority::Critical, None, &d)));
        assert!(!m.matches(&view("chat.room-1", "message.sent", Priority::Low, None, &d)));
        assert!(!m.matches(&view("chat.room-1", "typing", Priority::High, None, &d)));
        assert!(!m.matches(&view("chat.room.1", "message.sent", Priority::High, None, &d)));
        assert!(!m.matches(&view("orders", "message.sent", Priority::High, None, &d)));
    }

    #[test]
    fn empty_types_take_every_type() {
        let m = Matcher::compile(&config(&["**"], &[], Priority::Background, vec![])).expect("compiles");
        let d = json!(null);
        assert!(m.matches(&view("a.b.c", "anything.at.all", Priority::Background, None, &d)));
    }

    #[test]
    fn filter_conditions_must_all_hold() {
        let filter = vec![
            FilterCondition {
                field: "data.lang".into(),
                op: FilterOp::Eq,
                value: Some(json!("en")),
            },
            FilterCondition {
                field: "data.n".into(),
                op: FilterOp::Gt,
                value: Some(json!(2)),
            },
        ];
        let m = Matcher::compile(&config(&["chat"], &[], Priority::Background, filter)).expect("compiles");
        let yes = json!({"lang": "en", "n": 3});
        let wrong_lang = json!({"lang": "de", "n": 3});
        let too_small = json!({"lang": "en", "n": 2});
        let missing = json!({"n": 3});
        assert!(m.matches(&view("chat", "m", Priority::Normal, None, &yes)));
        assert!(!m.matches(&view("chat", "m", Priority::Normal, None, &wrong_lang)));
        assert!(!m.matches(&view("chat", "m", Priority::Normal, None, &too_small)));
        assert!(!m.matches(&view("chat", "m", Priority::Normal, None, &missing)));
    }

    #[test]
    fn own_output_is_never_taken() {
        let m = Matcher::compile(&config(&["**"], &[], Priority::Background, vec![])).expect("compiles");
        let d = json!({});
        let own = source_of("audit");
        let other = source_of("other");
        assert!(!m.matches(&view(
            "audit.dlq",
            "eventcast.deadletter",
            Priority::Normal,
            Some(&own),
            &d
        )));
        assert!(m.matches(&view(
            "audit.dlq",
            "eventcast.deadletter",
            Priority::Normal,
            Some(&other),
            &d
        )));
    }

    #[test]
    fn bad_filter_is_an_error_naming_the_subscription() {
        let filter = vec![FilterCondition {
            field: "data.x".into(),
            op: FilterOp::Regex,
            value: Some(json!("(")),
        }];
        let err = Matcher::compile(&config(&["chat"], &[], Priority::Background, filter)).expect_err("bad regex");
        assert!(err.to_string().contains("audit"), "{err}");
    }
}
