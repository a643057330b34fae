//! The publish pipeline shared by the local HTTP API, WebSocket clients and the sidecar
//! itself (presence, dead letters, routing): look up the topic, check access and rate
//! limits, apply content rules, validate the schema and size, then append through the
//! backend (which fans out). Every refusal is a [`PublishError`] with a clear message.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use eventcast_api::pattern::validate_name;
use eventcast_api::protocol::{DeliveredEvent, PublishAccepted, PublishRequest, error_code};
use rand::Rng;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::backend::{Backend, BackendError};
use crate::event::{EncodedEvent, StoredEvent};
use crate::live_config::{ConfigStore, LiveTopic};
use crate::metrics::Metrics;
use crate::policy::rate_limit::{Limited, PublishLimiter};
use crate::policy::{Identity, access, content};
use crate::sinks::SinkRunner;

/// Longest client-given event id.
const MAX_ID_LEN: usize = 256;
/// Longest source / correlation / causation string.
const MAX_META_LEN: usize = 512;
/// Most events of one topic appended by one backend call of a batch publish (bounds
/// the time one Redis script runs).
const BATCH_CHUNK: usize = 256;

/// A batch item that passed validation, waiting for its append.
struct Prepared {
    index: usize,
    id: String,
    priority: eventcast_api::Priority,
    event: EncodedEvent,
    dedup: bool,
}

/// Outcome of one batch item.
pub type BatchResult = Result<PublishAccepted, PublishError>;

/// Who is publishing.
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    /// The app in the pod, through the local API; may attribute to a user/device.
    Local {
        user: Option<&'a str>,
        device: Option<&'a str>,
    },
    /// A WebSocket client, subject to the topic's publish rule.
    Client { identity: Option<&'a Identity>, ip: IpAddr },
    /// The sidecar itself (presence, dead letters, routing): no access or rate checks.
    Internal,
}

/// A refused publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    pub kind: PublishErrorKind,
    pub message: String,
}

/// Category of a refusal; maps to an HTTP status and a wire error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishErrorKind {
    BadRequest,
    Forbidden,
    UnknownTopic,
    TooLarge,
    SchemaViolation,
    ContentRejected,
    RateLimited { retry_after: Duration },
    Unavailable { retry_after: Duration },
}

impl PublishError {
    fn new(kind: PublishErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.kind {
            PublishErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            PublishErrorKind::Forbidden => StatusCode::FORBIDDEN,
            PublishErrorKind::UnknownTopic => StatusCode::NOT_FOUND,
            PublishErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PublishErrorKind::SchemaViolation | PublishErrorKind::ContentRejected => StatusCode::UNPROCESSABLE_ENTITY,
            PublishErrorKind::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            PublishErrorKind::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self.kind {
            PublishErrorKind::BadRequest => error_code::BAD_REQUEST,
            PublishErrorKind::Forbidden => error_code::FORBIDDEN,
            PublishErrorKind::UnknownTopic => error_code::UNKNOWN_TOPIC,
            PublishErrorKind::TooLarge => error_code::TOO_LARGE,
            PublishErrorKind::SchemaViolation => error_code::SCHEMA_VIOLATION,
            PublishErrorKind::ContentRejected => error_code::CONTENT_REJECTED,
            PublishErrorKind::RateLimited { .. } => error_code::RATE_LIMITED,
            PublishErrorKind::Unavailable { .. } => error_code::UNAVAILABLE,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            PublishErrorKind::RateLimited { retry_after } | PublishErrorKind::Unavailable { retry_after } => {
                Some(retry_after)
            }
            _ => None,
        }
    }

    pub fn unknown_topic(topic: &str) -> Self {
        Self::new(PublishErrorKind::UnknownTopic, format!("unknown topic {topic:?}"))
    }

    fn metric_reason(&self) -> &'static str {
        self.code()
    }
}

impl From<BackendError> for PublishError {
    fn from(e: BackendError) -> Self {
        Self::new(
            PublishErrorKind::Unavailable {
                retry_after: Duration::from_secs(1),
            },
            e.to_string(),
        )
    }
}

fn new_event_id() -> String {
    let mut rng = rand::rng();
    format!("{:016x}{:08x}", rng.random::<u64>(), rng.random::<u32>())
}

/// Now as Unix ms and as the RFC 3339 text of `time`, from one clock read.
fn now_ms_and_rfc3339() -> (u64, String) {
    let now = SystemTime::now();
    let ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    (ms, OffsetDateTime::from(now).format(&Rfc3339).unwrap_or_default())
}

fn check_meta(field: &str, v: Option<&String>) -> Result<(), PublishError> {
    match v {
        Some(s) if s.len() > MAX_META_LEN => Err(PublishError::new(
            PublishErrorKind::BadRequest,
            format!("{field} is longer than {MAX_META_LEN} bytes"),
        )),
        _ => Ok(()),
    }
}

/// The pipeline.
#[derive(Debug)]
pub struct Publisher {
    pub config: Arc<ConfigStore>,
    pub backend: Backend,
    /// Publish rate limits (in this process, or shared through the backend).
    pub limits: PublishLimiter,
    pub metrics: Arc<Metrics>,
    /// Server-side subscriptions, run for the events this sidecar accepts.
    pub sinks: Arc<SinkRunner>,
}

impl Publisher {
    /// Validates and appends one event; see the module docs for the order of checks.
    pub async fn publish(
        &self,
        topic_name: &str,
        req: PublishRequest,
        origin: Origin<'_>,
    ) -> Result<PublishAccepted, PublishError> {
        let started = Instant::now();
        let result = self.publish_inner(topic_name, req, origin).await;
        match &result {
            Ok(_) => self.metrics.publish_latency.observe(started.elapsed().as_secs_f64()),
            Err(e) => self.metrics.rejected.with_label_values(&[e.metric_reason()]).inc(),
        }
        result
    }

    /// Publishes a batch: every item is validated in order, then each topic's accepted
    /// items are appended in batch order with one backend call per topic (per
    /// [`BATCH_CHUNK`] events; one Redis round trip instead of one per event), topics
    /// concurrently. Results come back in item order.
    pub async fn publish_batch(&self, items: Vec<(String, PublishRequest)>, origin: Origin<'_>) -> Vec<BatchResult> {
        let started = Instant::now();
        let config = self.config.get();
        let mut results: Vec<Option<BatchResult>> = (0..items.len()).map(|_| None).collect();
        let mut groups: Vec<(Arc<LiveTopic>, Vec<Prepared>)> = Vec::new();
        let mut group_of: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (index, (topic_name, mut req)) in items.into_iter().enumerate() {
            let Some(topic) = config.topic(&topic_name).cloned() else {
                results[index] = Some(Err(PublishError::unknown_topic(&topic_name)));
                continue;
            };
            let prepared = match self.authorize(&topic, origin).await {
                Ok(()) => self.prepare(&topic, &mut req),
                Err(e) => Err(e),
            };
            match prepared {
                Ok(event) => {
                    let g = *group_of.entry(topic_name).or_insert_with(|| {
                        groups.push((topic.clone(), Vec::new()));
                        groups.len() - 1
                    });
                    groups[g].1.push(Prepared {
                        index,
                        id: event.stored.event.id.clone(),
                        priority: event.stored.event.priority,
                        dedup: req.id.is_some(),
                        event,
                    });
                }
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        drop(config);
        let appends = groups
            .into_iter()
            .map(|(topic, prepared)| self.append_group(topic, prepared));
        for group in futures_util::future::join_all(appends).await {
            for (index, result) in group {
                results[index] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| {
                let r = r.unwrap_or_else(|| {
                    Err(PublishError::from(BackendError::Protocol(
                        "batch item without a result".into(),
                    )))
                });
                match &r {
                    Ok(_) => self.metrics.publish_latency.observe(started.elapsed().as_secs_f64()),
                    Err(e) => self.metrics.rejected.with_label_values(&[e.metric_reason()]).inc(),
                }
                r
            })
            .collect()
    }

    async fn append_group(&self, topic: Arc<LiveTopic>, prepared: Vec<Prepared>) -> Vec<(usize, BatchResult)> {
        let mut out = Vec::with_capacity(prepared.len());
        let mut rest = prepared.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Prepared> = rest.by_ref().take(BATCH_CHUNK).collect();
            let mut meta = Vec::with_capacity(chunk.len());
            let mut events = Vec::with_capacity(chunk.len());
            for p in chunk {
                meta.push((p.index, p.id, p.priority));
                events.push((p.event, p.dedup));
            }
            match self.backend.append_many(&topic, events).await {
                Ok(appended) => {
                    for ((index, id, priority), a) in meta.into_iter().zip(appended) {
                        if !a.duplicate {
                            topic.metrics.events_in[priority.index()].inc();
                        }
                        if let Some(ev) = &a.event {
                            self.sinks.dispatch(ev);
                        }
                        out.push((
                            index,
                            Ok(PublishAccepted {
                                id,
                                topic: topic.name.to_string(),
                                offset: a.offset,
                                epoch: a.epoch.to_string(),
                                duplicate: a.duplicate,
                            }),
                        ));
                    }
                }
                Err(e) => {
                    let e = PublishError::from(e);
                    out.extend(meta.into_iter().map(|(index, _, _)| (index, Err(e.clone()))));
                }
            }
        }
        out
    }

    async fn publish_inner(
        &self,
        topic_name: &str,
        mut req: PublishRequest,
        origin: Origin<'_>,
    ) -> Result<PublishAccepted, PublishError> {
        let config = self.config.get();
        let topic = config
            .topic(topic_name)
            .ok_or_else(|| PublishError::unknown_topic(topic_name))?
            .clone();
        drop(config);

        self.authorize(&topic, origin).await?;
        let event = self.prepare(&topic, &mut req)?;
        let dedup = req.id.is_some();
        let id = event.stored.event.id.clone();
        let priority = event.stored.event.priority;
        let appended = self.backend.append(&topic, event, dedup).await?;
        if !appended.duplicate {
            topic.metrics.events_in[priority.index()].inc();
        }
        // The origin sidecar runs the subscriptions; dispatch only queues, never waits.
        if let Some(ev) = &appended.event {
            self.sinks.dispatch(ev);
        }
        Ok(PublishAccepted {
            id,
            topic: topic.name.to_string(),
            offset: appended.offset,
            epoch: appended.epoch.to_string(),
            duplicate: appended.duplicate,
        })
    }

    async fn authorize(&self, topic: &LiveTopic, origin: Origin<'_>) -> Result<(), PublishError> {
        let limited = |l: Limited| {
            self.metrics
                .rate_limited
                .with_label_values(&[&l.kind.to_string()])
                .inc();
            PublishError::new(
                PublishErrorKind::RateLimited {
                    retry_after: l.retry_after,
                },
                format!(
                    "rate limit per {} exceeded; retry in {} ms",
                    l.kind,
                    l.retry_after.as_millis()
                ),
            )
        };
        match origin {
            Origin::Internal => Ok(()),
            Origin::Local { user, device } => self
                .limits
                .check_publish(&topic.config.limits, user, device, None)
                .await
                .map_err(limited),
            Origin::Client { identity, ip } => {
                let allowed = topic
                    .config
                    .publish
                    .as_ref()
                    .is_some_and(|rule| access::allows(rule, identity));
                if !allowed {
                    return Err(PublishError::new(
                        PublishErrorKind::Forbidden,
                        format!("not allowed to publish to topic {:?}", &*topic.name),
                    ));
                }
                let user = identity.and_then(|i| i.user.as_deref());
                let device = identity.and_then(|i| i.device.as_deref());
                self.limits
                    .check_publish(&topic.config.limits, user, device, Some(ip))
                    .await
                    .map_err(limited)
            }
        }
    }

    /// Validates the request and builds the event to store, serialized.
    fn prepare(&self, topic: &LiveTopic, req: &mut PublishRequest) -> Result<EncodedEvent, PublishError> {
        let bad = |m: String| PublishError::new(PublishErrorKind::BadRequest, m);
        if req.event_type.is_empty() {
            return Err(bad("event type is required".into()));
        }
        validate_name(&req.event_type).map_err(|e| bad(format!("event type {e}")))?;
        if let Some(id) = &req.id
            && (id.is_empty() || id.len() > MAX_ID_LEN)
        {
            return Err(bad(format!("event id must be 1 to {MAX_ID_LEN} bytes")));
        }
        check_meta("source", req.source.as_ref())?;
        check_meta("correlationId", req.correlation_id.as_ref())?;
        check_meta("causationId", req.causation_id.as_ref())?;

        let rules = &topic.config.content;
        // Redacted fields are never stored or delivered, so they are not checked for scripts.
        if !rules.redact.is_empty() {
            content::redact(&mut req.data, &rules.redact);
        }
        if rules.deny_scripts
            && let Some((path, snippet)) = content::find_script(&req.data)
        {
            return Err(PublishError::new(
                PublishErrorKind::ContentRejected,
                format!(
                    "script content is not allowed on topic {:?}: {path} contains {snippet:?}",
                    &*topic.name
                ),
            ));
        }
        if let Some(schema) = &topic.schema
            && let Err(errors) = schema.validate(&req.data)
        {
            return Err(PublishError::new(
                PublishErrorKind::SchemaViolation,
                format!(
                    "data does not match the schema of topic {:?}: {}",
                    &*topic.name,
                    errors.join("; ")
                ),
            ));
        }

        let (now, time) = now_ms_and_rfc3339();
        let event = DeliveredEvent {
            id: req.id.clone().unwrap_or_else(new_event_id),
            event_type: std::mem::take(&mut req.event_type),
            time,
            priority: req.priority.unwrap_or(topic.config.default_priority),
            source: req.source.take(),
            data: std::mem::take(&mut req.data),
            requires_ack: req.requires_ack.unwrap_or(false),
            correlation_id: req.correlation_id.take(),
            causation_id: req.causation_id.take(),
        };
        let stored = StoredEvent {
            event,
            targets: req.targets.take().filter(|t| !t.is_empty()),
            expires_at_ms: req.ttl_ms.map(|ttl| now.saturating_add(ttl)),
            published_at_ms: now,
        };
        // The limit applies to the event as stored and delivered (after redaction).
        let encoded = EncodedEvent::new(stored);
        let size = encoded.json.len();
        if size > topic.config.max_event_bytes as usize {
            return Err(PublishError::new(
                PublishErrorKind::TooLarge,
                format!(
                    "event is {size} bytes; topic {:?} accepts at most {}",
                    &*topic.name, topic.config.max_event_bytes
                ),
            ));
        }
        Ok(encoded)
    }
}
