//! Topic compilation: own spec first, then the selecting policies merged in, then
//! references between topics (dead-letter topics) checked.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::error::CompileError;
use super::error::{Errors, Reason};
use super::policy::CompiledPolicy;
use super::{CompileInput, resource_ref};
use crate::config::{
    ContentConfig, DeletionPolicyConfig, DeliveryConfig, QueueClass, ResourceRef, RetentionConfig, TopicConfig,
    TopicLimits,
};
use crate::crd::Topic;
use crate::crd::common::AccessRule;
use crate::crd::topic::Guarantee;
use crate::pattern::validate_name;
use crate::priority::Priority;

/// Defaults in one place.
pub const DEFAULT_MAX_EVENT_BYTES: u32 = 65_536;
pub const DEFAULT_RETENTION_EVENTS: u32 = 1000;
pub const DEFAULT_RETENTION_AGE_MS: u64 = 3_600_000;
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_MAX_RETRIES: u32 = 5;
const MIN_ACK_TIMEOUT_MS: u64 = 10;

pub(crate) struct TopicDraft {
    pub resource: ResourceRef,
    pub config: TopicConfig,
}

fn check_access(rule: &AccessRule, field: &str, errs: &mut Errors<'_>) {
    for (i, role) in rule.roles.iter().enumerate() {
        if role.trim().is_empty() {
            errs.push(
                format!("{field}.roles[{i}]"),
                Reason::InvalidSpec,
                "role must not be empty",
            );
        }
    }
    for key in rule.claims.keys() {
        if key.trim().is_empty() {
            errs.push(
                format!("{field}.claims"),
                Reason::InvalidSpec,
                "claim name must not be empty",
            );
        }
    }
}

fn compile_one(t: &Topic, errs: &mut Errors<'_>) -> TopicConfig {
    let spec = &t.spec;
    let (name, name_field) = match &spec.name {
        Some(n) => (n.clone(), "spec.name"),
        None => (t.name_any(), "metadata.name"),
    };
    if let Err(e) = validate_name(&name) {
        errs.push(name_field, Reason::InvalidName, format!("topic name {e}"));
    }

    let max_event_bytes = spec.max_event_bytes.unwrap_or(DEFAULT_MAX_EVENT_BYTES);
    if !(64..=16_777_216).contains(&max_event_bytes) {
        errs.push(
            "spec.maxEventBytes",
            Reason::InvalidSpec,
            format!("must be between 64 and 16777216, got {max_event_bytes}"),
        );
    }

    let retention = spec.retention.clone().unwrap_or_default();
    let max_age_ms = retention
        .max_age
        .map_or(DEFAULT_RETENTION_AGE_MS, |d| d.as_millis_u64());
    if retention.max_age.is_some() && max_age_ms == 0 {
        errs.push("spec.retention.maxAge", Reason::InvalidSpec, "must be greater than 0");
    }

    let delivery = spec.delivery.clone().unwrap_or_default();
    let ack_timeout_ms = delivery
        .ack_timeout
        .map_or(DEFAULT_ACK_TIMEOUT_MS, |d| d.as_millis_u64());
    if ack_timeout_ms < MIN_ACK_TIMEOUT_MS {
        errs.push(
            "spec.delivery.ackTimeout",
            Reason::InvalidSpec,
            format!("must be at least {MIN_ACK_TIMEOUT_MS}ms"),
        );
    }
    if let Some(dlq) = &delivery.dead_letter_topic {
        if let Err(e) = validate_name(dlq) {
            errs.push(
                "spec.delivery.deadLetterTopic",
                Reason::InvalidName,
                format!("topic name {e}"),
            );
        } else if *dlq == name {
            errs.push(
                "spec.delivery.deadLetterTopic",
                Reason::InvalidSpec,
                "a topic cannot be its own dead-letter topic",
            );
        }
    }

    let access = spec.access.clone().unwrap_or_default();
    let subscribe = access.subscribe.unwrap_or_default();
    check_access(&subscribe, "spec.access.subscribe", errs);
    if let Some(p) = &access.publish {
        check_access(p, "spec.access.publish", errs);
    }

    if let Some(schema) = &spec.schema
        && let Err(e) = jsonschema::validator_for(schema)
    {
        errs.push(
            "spec.schema",
            Reason::InvalidSchema,
            format!("invalid JSON Schema: {e}"),
        );
    }

    TopicConfig {
        name,
        resource: t.name_any(),
        default_priority: spec.default_priority.unwrap_or(Priority::Normal),
        max_event_bytes,
        retention: RetentionConfig {
            max_events: retention.max_events.unwrap_or(DEFAULT_RETENTION_EVENTS),
            max_age_ms,
        },
        delivery: DeliveryConfig {
            guarantee: delivery.guarantee.unwrap_or(Guarantee::AtMostOnce),
            ack_timeout_ms,
            max_retries: delivery.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            dead_letter_topic: delivery.dead_letter_topic,
        },
        presence: spec.presence.unwrap_or(false),
        subscribe,
        publish: access.publish,
        schema: spec.schema.clone(),
        deletion_policy: DeletionPolicyConfig(spec.deletion_policy.unwrap_or_default()),
        policies: Vec::new(),
        limits: TopicLimits::default(),
        queues: QueueClass::defaults(),
        content: ContentConfig::default(),
        labels: t.labels().clone(),
    }
}

/// Compiles each Topic's own spec; drops invalid ones and duplicate names.
pub(crate) fn compile_own(input: &CompileInput, errors: &mut Vec<CompileError>) -> Vec<TopicDraft> {
    let mut sorted: Vec<&Topic> = input.topics.iter().collect();
    sorted.sort_by_key(|t| t.name_any());
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for t in sorted {
        let resource = resource_ref(t, &input.namespace);
        let mut errs = Errors::new(&resource);
        let config = compile_one(t, &mut errs);
        if errs.is_empty()
            && let Some(first) = by_name.get(&config.name)
        {
            errs.push(
                if t.spec.name.is_some() {
                    "spec.name"
                } else {
                    "metadata.name"
                },
                Reason::DuplicateTopic,
                format!("topic {:?} is already defined by Topic {first:?}", config.name),
            );
        }
        if errs.is_empty() {
            by_name.insert(config.name.clone(), resource.name.clone());
            out.push(TopicDraft { resource, config });
        } else {
            errors.append(&mut errs.list);
        }
    }
    out
}

/// Merges each policy's per-topic settings onto the topics it selects. Conflicts were
/// already resolved by rejecting the later policy, so at most one policy sets each group.
pub(crate) fn apply_policies(topics: &mut [TopicDraft], policies: &[CompiledPolicy]) {
    for t in topics.iter_mut() {
        let name = t.config.name.clone();
        for p in policies.iter().filter(|p| p.selected.contains(&name)) {
            let c = &mut t.config;
            c.policies.push(p.name.clone());
            if p.sets_rate_limits() {
                c.limits = p.limits.clone();
            }
            for (slot, over) in c.queues.iter_mut().zip(&p.queues) {
                if let Some(q) = over {
                    *slot = *q;
                }
            }
            if let Some(max) = p.content_max_event_bytes {
                c.max_event_bytes = c.max_event_bytes.min(max);
            }
            if !p.redact.is_empty() {
                c.content.redact.clone_from(&p.redact);
            }
            if let Some(deny) = p.deny_scripts {
                c.content.deny_scripts = deny;
            }
        }
    }
}

/// Drops topics whose dead-letter topic does not exist, repeating until stable (a
/// dropped topic may be another's dead-letter topic).
pub(crate) fn check_references(topics: &mut Vec<TopicDraft>, errors: &mut Vec<CompileError>) {
    loop {
        let names: BTreeSet<String> = topics.iter().map(|t| t.config.name.clone()).collect();
        let before = topics.len();
        topics.retain(|t| {
            let Some(dlq) = &t.config.delivery.dead_letter_topic else {
                return true;
            };
            if names.contains(dlq) {
                return true;
            }
            let mut errs = Errors::new(&t.resource);
            errs.push(
                "spec.delivery.deadLetterTopic",
                Reason::UnknownTopic,
                format!("dead-letter topic {dlq:?} does not exist (or is invalid) in this namespace"),
            );
            errors.append(&mut errs.list);
            false
        });
        if topics.len() == before {
            return;
        }
    }
}
