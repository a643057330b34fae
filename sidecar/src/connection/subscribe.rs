//! A connection's subscriptions: subscribe (exact topics and patterns, with recovery
//! from history), unsubscribe, presence, re-sync after config changes, and clean-up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use eventcast_api::filter::Filter;
use eventcast_api::pattern::{Pattern, PatternSet};
use eventcast_api::protocol::{PublishRequest, SubscribeRequest, error_code};
use serde_json::{Value, json};

use super::session::Shared;
use crate::backend::PresenceEntry;
use crate::event::unix_ms;
use crate::hub::{Subscriber, SubscriberFilter};
use crate::live_config::LiveTopic;
use crate::policy::{Identity, access};
use crate::publish::Origin;

/// Error reply: (code, message).
pub(crate) type OpError = (&'static str, String);

#[derive(Debug)]
struct TopicSub {
    /// The exact name or pattern the client subscribed with.
    source: String,
    subscriber: Arc<Subscriber>,
}

#[derive(Debug)]
struct PatternSub {
    pattern: Pattern,
    filter: SubscriberFilter,
}

/// Subscriptions of one connection.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionSet {
    topics: HashMap<Arc<str>, TopicSub>,
    patterns: Vec<PatternSub>,
}

fn compile_filter(req: &SubscribeRequest) -> Result<SubscriberFilter, OpError> {
    let types =
        PatternSet::parse_all(&req.types).map_err(|(i, e)| (error_code::BAD_REQUEST, format!("types[{i}]: {e}")))?;
    let filter = Filter::compile(&req.filter).map_err(|e| (error_code::BAD_REQUEST, format!("filter{e}")))?;
    Ok(SubscriberFilter {
        types,
        filter,
        min_priority: req.min_priority,
    })
}

fn presence_data(shared: &Shared, identity: Option<&Identity>) -> Value {
    json!({
        "session": &*shared.info.session,
        "user": identity.and_then(|i| i.user.clone()),
        "device": identity.and_then(|i| i.device.clone()),
    })
}

impl SubscriptionSet {
    fn count(&self) -> usize {
        self.topics.len()
    }

    /// Subscribes to a topic or pattern; the reply result on success.
    pub async fn subscribe(
        &mut self,
        shared: &Shared,
        identity: Option<&Identity>,
        req: SubscribeRequest,
    ) -> Result<Value, OpError> {
        let pattern: Pattern = req
            .topic
            .parse()
            .map_err(|e| (error_code::BAD_REQUEST, format!("topic {e}")))?;
        let filter = compile_filter(&req)?;
        let config = shared.state.config.get();
        let max = config.compiled.connection.max_subscriptions_per_connection as usize;

        if let Some(name) = pattern.literal() {
            let topic = config
                .topic(name)
                .ok_or_else(|| (error_code::UNKNOWN_TOPIC, format!("unknown topic {name:?}")))?
                .clone();
            if !access::allows(&topic.config.subscribe, identity) {
                return Err((
                    error_code::FORBIDDEN,
                    format!("not allowed to subscribe to topic {name:?}"),
                ));
            }
            if !self.topics.contains_key(name) && self.count() >= max {
                return Err((
                    error_code::LIMIT_EXCEEDED,
                    format!("at most {max} subscriptions per connection"),
                ));
            }
            drop(config);
            return self
                .add_topic(shared, identity, &topic, req.topic.clone(), filter, req.since)
                .await;
        }

        if req.since.is_some() {
            return Err((
                error_code::BAD_REQUEST,
                "since applies to one topic; subscribe to each topic by name to recover".to_owned(),
            ));
        }
        let matching: Vec<Arc<LiveTopic>> = {
            let mut v: Vec<Arc<LiveTopic>> = config
                .topics
                .values()
                .filter(|t| pattern.matches(&t.name) && access::allows(&t.config.subscribe, identity))
                .cloned()
                .collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        };
        drop(config);
        let new = matching.iter().filter(|t| !self.topics.contains_key(&*t.name)).count();
        if self.count() + new > max {
            return Err((
                error_code::LIMIT_EXCEEDED,
                format!(
                    "pattern {:?} would exceed {max} subscriptions per connection",
                    req.topic
                ),
            ));
        }
        let mut results = Vec::new();
        for t in &matching {
            let r = self
                .add_topic(shared, identity, t, req.topic.clone(), filter.clone(), None)
                .await?;
            results.push(r);
        }
        self.patterns.retain(|p| p.pattern.as_str() != req.topic);
        self.patterns.push(PatternSub { pattern, filter });
        Ok(json!({"pattern": req.topic, "topics": results}))
    }

    async fn add_topic(
        &mut self,
        shared: &Shared,
        identity: Option<&Identity>,
        topic: &Arc<LiveTopic>,
        source: String,
        filter: SubscriberFilter,
        since: Option<eventcast_api::protocol::StreamPosition>,
    ) -> Result<Value, OpError> {
        let state = &shared.state;
        let info = &shared.info;
        let sub = Arc::new(Subscriber::new(
            info.id,
            info.session.clone(),
            identity.and_then(|i| i.user.as_deref()).map(Arc::from),
            identity.and_then(|i| i.device.as_deref()).map(Arc::from),
            filter,
            info.outbox.clone(),
            true,
        ));
        let replaced = self.topics.contains_key(&*topic.name);
        if state.hub.add(&topic.name, sub.clone()) {
            // Before the history read below, so the backend delivers everything after it.
            state.backend.listen(topic).await;
        }
        self.topics.insert(
            topic.name.clone(),
            TopicSub {
                source,
                subscriber: sub.clone(),
            },
        );
        if !replaced {
            info.subscriptions.fetch_add(1, Ordering::Relaxed);
            state.metrics.subscriptions.inc();
        }

        // Registered first, then read: nothing published in between is missed, and the
        // overlap is dropped by offset in finish_recovery.
        let retention = topic.config.retention.max_events as usize;
        let after = since.as_ref().map_or(u64::MAX, |s| s.offset);
        let read = match state.backend.read(topic, after, retention.max(1)).await {
            Ok(r) => r,
            Err(e) => {
                sub.finish_recovery(None);
                return Err((error_code::UNAVAILABLE, e.to_string()));
            }
        };
        let mut result = json!({"topic": &*topic.name, "offset": read.last, "epoch": &*read.epoch});
        match since {
            None => sub.finish_recovery(Some((&read.epoch, read.last))),
            Some(pos) => {
                let same_epoch = *pos.epoch == *read.epoch;
                let recovered = same_epoch && pos.offset <= read.last && pos.offset.saturating_add(1) >= read.first;
                // Not recovered: live events after the position this reply reports.
                let mut replayed_up_to = read.last;
                if recovered {
                    let now = unix_ms();
                    for ev in &read.events {
                        replayed_up_to = ev.offset;
                        if sub.wants(ev) && !ev.stored.is_expired_at(now) {
                            info.outbox.enqueue_replay(ev.clone());
                        }
                    }
                    // History is read in one go up to retention, so this is the last offset.
                    replayed_up_to = replayed_up_to.max(pos.offset);
                }
                sub.finish_recovery(Some((&read.epoch, replayed_up_to)));
                result["recovered"] = json!(recovered);
            }
        }
        if topic.config.presence && !replaced {
            self.presence_join(shared, identity, topic).await;
        }
        Ok(result)
    }

    async fn presence_join(&self, shared: &Shared, identity: Option<&Identity>, topic: &LiveTopic) {
        let entry = PresenceEntry {
            session: shared.info.session.to_string(),
            user: identity.and_then(|i| i.user.clone()),
            device: identity.and_then(|i| i.device.clone()),
            connected_at: shared.info.connected_at_ms,
        };
        match shared.state.backend.presence_join(topic, entry).await {
            Ok(true) => publish_presence(shared, &topic.name, "presence.join", presence_data(shared, identity)).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(topic = %topic.name, error = %e, "presence join"),
        }
    }

    async fn remove_topic(&mut self, shared: &Shared, topic: &str) -> bool {
        let Some(ts) = self.topics.remove(topic) else {
            return false;
        };
        if let (_, true) = shared.state.hub.remove(topic, shared.info.id) {
            shared.state.backend.unlisten(topic);
        }
        shared.acks.lock().forget_topic(topic);
        shared.info.subscriptions.fetch_sub(1, Ordering::Relaxed);
        shared.state.metrics.subscriptions.dec();
        let presence = shared
            .state
            .config
            .get()
            .topic(topic)
            .is_some_and(|t| t.config.presence);
        if presence {
            match shared.state.backend.presence_leave(topic, &shared.info.session).await {
                Ok(true) => {
                    let data = json!({"session": &*shared.info.session, "user": ts.subscriber.user.as_deref(), "device": ts.subscriber.device.as_deref()});
                    publish_presence(shared, topic, "presence.leave", data).await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(topic, error = %e, "presence leave"),
            }
        }
        true
    }

    /// Unsubscribes a topic, or a pattern and the topics it brought in.
    pub async fn unsubscribe(&mut self, shared: &Shared, topic: &str) -> bool {
        let had_pattern = self.patterns.iter().any(|p| p.pattern.as_str() == topic);
        self.patterns.retain(|p| p.pattern.as_str() != topic);
        let names: Vec<Arc<str>> = self
            .topics
            .iter()
            .filter(|(name, ts)| ts.source == topic || &***name == topic)
            .map(|(name, _)| name.clone())
            .collect();
        let mut any = had_pattern;
        for name in names {
            any |= self.remove_topic(shared, &name).await;
        }
        any
    }

    /// Presence list of a topic the client may subscribe to.
    pub async fn presence(&self, shared: &Shared, identity: Option<&Identity>, topic: &str) -> Result<Value, OpError> {
        let config = shared.state.config.get();
        let t = config
            .topic(topic)
            .ok_or_else(|| (error_code::UNKNOWN_TOPIC, format!("unknown topic {topic:?}")))?;
        if !access::allows(&t.config.subscribe, identity) {
            return Err((
                error_code::FORBIDDEN,
                format!("not allowed to see presence of topic {topic:?}"),
            ));
        }
        if !t.config.presence {
            return Err((
                error_code::BAD_REQUEST,
                format!("topic {topic:?} does not track presence"),
            ));
        }
        let list = shared
            .state
            .backend
            .presence_list(topic)
            .await
            .map_err(|e| (error_code::UNAVAILABLE, e.to_string()))?;
        Ok(json!({"topic": topic, "clients": list}))
    }

    /// After a config change: drop topics that are gone or no longer allowed, and add
    /// topics that now match a subscribed pattern.
    pub async fn resync(&mut self, shared: &Shared, identity: Option<&Identity>) {
        let config = shared.state.config.get();
        let gone: Vec<Arc<str>> = self
            .topics
            .keys()
            .filter(|name| {
                config
                    .topic(name)
                    .is_none_or(|t| !access::allows(&t.config.subscribe, identity))
            })
            .cloned()
            .collect();
        for name in gone {
            tracing::info!(session = %shared.info.session, topic = %name, "subscription ended by config change");
            self.remove_topic(shared, &name).await;
        }
        let max = config.compiled.connection.max_subscriptions_per_connection as usize;
        let mut additions = Vec::new();
        for p in &self.patterns {
            for t in config.topics.values() {
                if p.pattern.matches(&t.name)
                    && !self.topics.contains_key(&*t.name)
                    && access::allows(&t.config.subscribe, identity)
                {
                    additions.push((t.clone(), p.pattern.to_string(), p.filter.clone()));
                }
            }
        }
        drop(config);
        for (t, source, filter) in additions {
            if self.count() >= max {
                break;
            }
            if let Err((_, e)) = self.add_topic(shared, identity, &t, source, filter, None).await {
                tracing::warn!(topic = %t.name, error = %e, "pattern subscription after config change");
            }
        }
    }

    /// Removes everything (connection closing).
    pub async fn clear(&mut self, shared: &Shared) {
        let names: Vec<Arc<str>> = self.topics.keys().cloned().collect();
        for name in names {
            self.remove_topic(shared, &name).await;
        }
        self.patterns.clear();
    }
}

async fn publish_presence(shared: &Shared, topic: &str, event_type: &str, data: Value) {
    let req = PublishRequest {
        event_type: event_type.to_owned(),
        data,
        source: Some("eventcast".to_owned()),
        ..PublishRequest::default()
    };
    if let Err(e) = shared.state.publisher.publish(topic, req, Origin::Internal).await {
        tracing::warn!(topic, error = %e, "publishing presence event");
    }
}
