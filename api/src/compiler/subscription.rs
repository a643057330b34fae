//! Subscription compilation: patterns, filters, delivery mode and sink, including
//! references to topics and Secrets and routing loops between topic sinks.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::error::{CompileError, Errors, Reason};
use super::{CompileInput, resource_ref};
use crate::config::{RetryConfig, SinkConfig, SubscriptionConfig, SubscriptionDeliveryConfig, TopicConfig};
use crate::crd::Subscription;
use crate::crd::subscription::DeliveryMode;
use crate::filter::Filter;
use crate::pattern::{PatternSet, validate_name};
use crate::priority::Priority;

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

fn compile_one(
    s: &Subscription,
    input: &CompileInput,
    topics: &BTreeMap<String, TopicConfig>,
    errs: &mut Errors<'_>,
) -> Option<SubscriptionConfig> {
    let spec = &s.spec;
    if spec.topics.is_empty() {
        errs.push(
            "spec.topics",
            Reason::InvalidSpec,
            "at least one topic pattern is required",
        );
    }
    let patterns = PatternSet::parse_all(&spec.topics)
        .map_err(|(i, e)| errs.push(format!("spec.topics[{i}]"), Reason::InvalidPattern, e.to_string()))
        .ok();
    if let Some(patterns) = &patterns {
        for (i, p) in patterns.0.iter().enumerate() {
            match p.literal() {
                Some(lit) if !topics.contains_key(lit) => errs.push(
                    format!("spec.topics[{i}]"),
                    Reason::UnknownTopic,
                    format!("topic {lit:?} does not exist in this namespace"),
                ),
                None if !topics.keys().any(|t| p.matches(t)) => errs.push(
                    format!("spec.topics[{i}]"),
                    Reason::NoMatchingTopics,
                    format!("pattern {:?} matches no topic in this namespace", p.as_str()),
                ),
                _ => {}
            }
        }
    }
    let event_types = PatternSet::parse_all(&spec.event_types)
        .map_err(|(i, e)| errs.push(format!("spec.eventTypes[{i}]"), Reason::InvalidPattern, e.to_string()))
        .ok();
    if let Err(e) = Filter::compile(&spec.filter) {
        errs.push(
            format!("spec.filter[{}].{}", e.index, e.part),
            Reason::InvalidFilter,
            e.message,
        );
    }

    let delivery = spec.delivery.clone().unwrap_or_default();
    let mode = delivery.mode.unwrap_or(DeliveryMode::Realtime);
    let batch_interval_ms = delivery.batch_interval.map_or(200, |d| d.as_millis_u64());
    if mode == DeliveryMode::Batched && batch_interval_ms == 0 {
        errs.push(
            "spec.delivery.batchInterval",
            Reason::InvalidSpec,
            "must be greater than 0 in batched mode",
        );
    }

    let topic_ref = |name: &str, field: &str, errs: &mut Errors<'_>| {
        if let Err(e) = validate_name(name) {
            errs.push(field, Reason::InvalidName, format!("topic name {e}"));
        } else if !topics.contains_key(name) {
            errs.push(
                field,
                Reason::UnknownTopic,
                format!("topic {name:?} does not exist in this namespace"),
            );
        }
    };

    let sink = match (&spec.sink.webhook, &spec.sink.topic) {
        (Some(w), None) => {
            match url::Url::parse(&w.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(u) => errs.push(
                    "spec.sink.webhook.url",
                    Reason::InvalidSpec,
                    format!("scheme {:?} is not http or https, or the host is missing", u.scheme()),
                ),
                Err(e) => errs.push(
                    "spec.sink.webhook.url",
                    Reason::InvalidSpec,
                    format!("invalid URL: {e}"),
                ),
            }
            let mut headers = w.headers.clone();
            if let Some(from) = &w.headers_from {
                match input.secrets.secret(&from.secret_name) {
                    Ok(data) => {
                        for (k, v) in data {
                            match std::str::from_utf8(v) {
                                Ok(v) => {
                                    headers.insert(k.clone(), v.trim_end_matches(['\r', '\n']).to_owned());
                                }
                                Err(_) => errs.push(
                                    "spec.sink.webhook.headersFrom",
                                    Reason::InvalidSpec,
                                    format!("Secret key {k:?} is not UTF-8 text"),
                                ),
                            }
                        }
                    }
                    Err(e) => errs.push("spec.sink.webhook.headersFrom", Reason::SecretNotFound, e.to_string()),
                }
            }
            for (k, v) in &headers {
                if !valid_header_name(k) || !valid_header_value(v) {
                    errs.push(
                        "spec.sink.webhook.headers",
                        Reason::InvalidSpec,
                        format!("{k:?} is not a valid HTTP header name/value"),
                    );
                }
            }
            let timeout_ms = w.timeout.map_or(2_000, |d| d.as_millis_u64());
            if timeout_ms == 0 {
                errs.push(
                    "spec.sink.webhook.timeout",
                    Reason::InvalidSpec,
                    "must be greater than 0",
                );
            }
            let retry = w.retry.clone().unwrap_or_default();
            let retry = RetryConfig {
                max_attempts: retry.max_attempts.unwrap_or(5),
                initial_interval_ms: retry.initial_interval.map_or(200, |d| d.as_millis_u64()),
                max_interval_ms: retry.max_interval.map_or(10_000, |d| d.as_millis_u64()),
            };
            if retry.max_attempts == 0 {
                errs.push(
                    "spec.sink.webhook.retry.maxAttempts",
                    Reason::InvalidSpec,
                    "must be at least 1",
                );
            }
            if retry.initial_interval_ms > retry.max_interval_ms {
                errs.push(
                    "spec.sink.webhook.retry.initialInterval",
                    Reason::InvalidSpec,
                    "must not exceed maxInterval",
                );
            }
            if let Some(dlq) = &w.dead_letter_topic {
                topic_ref(dlq, "spec.sink.webhook.deadLetterTopic", errs);
            }
            Some(SinkConfig::Webhook {
                url: w.url.clone(),
                headers,
                timeout_ms,
                retry,
                dead_letter_topic: w.dead_letter_topic.clone(),
            })
        }
        (None, Some(t)) => {
            topic_ref(&t.name, "spec.sink.topic.name", errs);
            Some(SinkConfig::Topic { name: t.name.clone() })
        }
        _ => {
            errs.push("spec.sink", Reason::InvalidSpec, "set exactly one of webhook or topic");
            None
        }
    };

    Some(SubscriptionConfig {
        name: s.name_any(),
        topics: patterns?,
        event_types: event_types?,
        filter: spec.filter.clone(),
        min_priority: spec.min_priority.unwrap_or(Priority::Background),
        delivery: SubscriptionDeliveryConfig {
            mode,
            batch_size: delivery.batch_size.unwrap_or(100),
            batch_interval_ms,
        },
        sink: sink?,
    })
}

/// Topic-sink edges: source topic -> destination topic, per subscription.
fn routes(sub: &SubscriptionConfig, topics: &BTreeMap<String, TopicConfig>) -> Vec<(String, String)> {
    match &sub.sink {
        SinkConfig::Topic { name } => topics
            .keys()
            .filter(|t| sub.topics.matches(t))
            .map(|t| (t.clone(), name.clone()))
            .collect(),
        SinkConfig::Webhook { .. } => Vec::new(),
    }
}

/// Whether `to` can reach `from` through the routing graph (so adding from->to closes a loop).
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, start: &str, target: &str) -> bool {
    let mut stack = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    while let Some(t) = stack.pop() {
        if t == target {
            return true;
        }
        if seen.insert(t.clone())
            && let Some(next) = graph.get(&t)
        {
            stack.extend(next.iter().cloned());
        }
    }
    false
}

pub(crate) fn compile_all(
    input: &CompileInput,
    topics: &BTreeMap<String, TopicConfig>,
    errors: &mut Vec<CompileError>,
) -> Vec<SubscriptionConfig> {
    let mut sorted: Vec<&Subscription> = input.subscriptions.iter().collect();
    sorted.sort_by_key(|s| s.name_any());
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut out = Vec::new();
    for s in sorted {
        let resource = resource_ref(s, &input.namespace);
        let mut errs = Errors::new(&resource);
        let compiled = compile_one(s, input, topics, &mut errs);
        if let (true, Some(sub)) = (errs.is_empty(), &compiled) {
            let edges = routes(sub, topics);
            if let Some((from, to)) = edges.iter().find(|(from, to)| from == to || reaches(&graph, to, from)) {
                errs.push(
                    "spec.sink.topic.name",
                    Reason::RoutingLoop,
                    format!("routing {from:?} into {to:?} would loop events back into {from:?}"),
                );
            } else {
                for (from, to) in edges {
                    graph.entry(from).or_default().insert(to);
                }
            }
        }
        match compiled {
            Some(sub) if errs.is_empty() => out.push(sub),
            _ => errors.append(&mut errs.list),
        }
    }
    out
}
