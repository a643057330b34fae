//! BroadcastPolicy compilation: own spec validation, secret resolution, topic selection,
//! conflict detection between policies, and the pod-wide settings they add up to.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use kube::ResourceExt;

use super::error::{CompileError, Errors, Reason};
use super::topic::TopicDraft;
use super::{CompileInput, resource_ref};
use crate::config::{ConnectionConfig, JwtKey, JwtProvider, QueueClass, RateSpec, TopicLimits};
use crate::crd::BroadcastPolicy;
use crate::crd::broadcast_policy::{PriorityClassSettings, RateLimit};
use crate::pattern::PatternSet;
use crate::priority::Priority;

/// A validated policy with its selection resolved.
#[derive(Clone, Debug)]
pub(crate) struct CompiledPolicy {
    pub name: String,
    pub selected: BTreeSet<String>,
    pub jwt: Option<JwtProvider>,
    pub limits: TopicLimits,
    pub queues: [Option<QueueClass>; 5],
    pub content_max_event_bytes: Option<u32>,
    pub redact: Vec<Vec<String>>,
    pub deny_scripts: Option<bool>,
    pub connection: crate::crd::broadcast_policy::ConnectionSettings,
    pub ip_connections: Option<RateSpec>,
    pub batching: crate::crd::broadcast_policy::Batching,
    pub compression: crate::crd::broadcast_policy::Compression,
    /// Per-topic setting groups this policy sets (for conflict detection).
    pub groups: Vec<&'static str>,
}

impl CompiledPolicy {
    pub fn sets_rate_limits(&self) -> bool {
        self.groups.contains(&"rateLimits")
    }
}

fn rate(spec: &RateLimit, field: &str, want_connections: bool, errs: &mut Errors<'_>) -> Option<RateSpec> {
    let (value, unit) = if want_connections {
        (spec.connections_per_second, "connectionsPerSecond")
    } else {
        (spec.events_per_second, "eventsPerSecond")
    };
    let per_second = value?;
    if !per_second.is_finite() || per_second <= 0.0 {
        errs.push(
            format!("{field}.{unit}"),
            Reason::InvalidSpec,
            "must be a positive number",
        );
        return None;
    }
    let default_burst = per_second.ceil().max(1.0);
    // Burst is validated as u32 by the schema; the float -> int conversion saturates.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let burst = spec.burst.unwrap_or(default_burst as u32);
    if burst == 0 {
        errs.push(format!("{field}.burst"), Reason::InvalidSpec, "must be at least 1");
        return None;
    }
    Some(RateSpec { per_second, burst })
}

fn queue(
    settings: Option<&PriorityClassSettings>,
    p: Priority,
    field: &str,
    errs: &mut Errors<'_>,
) -> Option<QueueClass> {
    let s = settings?;
    let mut q = QueueClass::default_for(p);
    if let Some(size) = s.queue_size {
        if size == 0 {
            errs.push(format!("{field}.queueSize"), Reason::InvalidSpec, "must be at least 1");
        }
        q.queue_size = size;
    }
    if let Some(t) = s.latency_target {
        q.latency_target_ms = Some(t.as_millis_u64());
    }
    Some(q)
}

fn jwt(p: &BroadcastPolicy, input: &CompileInput, errs: &mut Errors<'_>) -> Option<JwtProvider> {
    let spec = p.spec.auth.as_ref()?.jwt.as_ref()?;
    let key = match (&spec.secret_ref, &spec.public_key_ref) {
        (Some(r), None) => match input.secrets.key(&r.name, &r.key) {
            Ok([]) => {
                errs.push("spec.auth.jwt.secretRef", Reason::InvalidKey, "HMAC secret is empty");
                return None;
            }
            Ok(bytes) => JwtKey::Hmac {
                secret: base64::engine::general_purpose::STANDARD.encode(bytes),
            },
            Err(e) => {
                errs.push("spec.auth.jwt.secretRef", Reason::SecretNotFound, e.to_string());
                return None;
            }
        },
        (None, Some(r)) => match input.secrets.key(&r.name, &r.key) {
            Ok(bytes) => {
                // `from_rsa_pem` only checks the PEM framing (it takes a private key or a
                // non-key DER too); extracting the public components parses the key itself.
                let checked = jsonwebtoken::DecodingKey::from_rsa_pem(bytes)
                    .and_then(|k| jsonwebtoken::jwk::Jwk::from_decoding_key(&k, None));
                if let Err(e) = checked {
                    errs.push(
                        "spec.auth.jwt.publicKeyRef",
                        Reason::InvalidKey,
                        format!("not an RSA public key in PEM form: {e}"),
                    );
                    return None;
                }
                JwtKey::Rsa {
                    pem: String::from_utf8_lossy(bytes).into_owned(),
                }
            }
            Err(e) => {
                errs.push("spec.auth.jwt.publicKeyRef", Reason::SecretNotFound, e.to_string());
                return None;
            }
        },
        _ => {
            errs.push(
                "spec.auth.jwt",
                Reason::InvalidSpec,
                "set exactly one of secretRef (HS256) or publicKeyRef (RS256)",
            );
            return None;
        }
    };
    let claims = spec.claims.clone().unwrap_or_default();
    Some(JwtProvider {
        policy: p.name_any(),
        issuer: spec.issuer.clone(),
        audience: spec.audience.clone(),
        key,
        user_claim: claims.user.unwrap_or_else(|| "sub".to_owned()),
        device_claim: claims.device.unwrap_or_else(|| "device_id".to_owned()),
        roles_claim: claims.roles.unwrap_or_else(|| "roles".to_owned()),
        leeway_secs: spec.leeway.map_or(30, |d| d.as_std().as_secs()),
    })
}

fn compile_one(
    p: &BroadcastPolicy,
    input: &CompileInput,
    topics: &[TopicDraft],
    errs: &mut Errors<'_>,
) -> CompiledPolicy {
    let spec = &p.spec;
    let patterns = match PatternSet::parse_all(&spec.topics) {
        Ok(set) => set,
        Err((i, e)) => {
            errs.push(format!("spec.topics[{i}]"), Reason::InvalidPattern, e.to_string());
            PatternSet::default()
        }
    };
    // Neither `topics` nor `topicSelector`: the policy applies to every topic.
    let select_all = spec.topics.is_empty() && spec.topic_selector.is_none();
    let selected = topics
        .iter()
        .filter(|t| {
            select_all
                || (!patterns.is_empty() && patterns.matches(&t.config.name))
                || spec
                    .topic_selector
                    .as_ref()
                    .is_some_and(|s| s.matches(&t.config.labels))
        })
        .map(|t| t.config.name.clone())
        .collect();

    let mut groups = Vec::new();
    let mut limits = TopicLimits {
        scope: Some(p.name_any()),
        ..TopicLimits::default()
    };
    let mut ip_connections = None;
    if let Some(rl) = &spec.rate_limits {
        groups.push("rateLimits");
        if let Some(u) = &rl.per_user {
            if u.events_per_second.is_none() {
                errs.push(
                    "spec.rateLimits.perUser.eventsPerSecond",
                    Reason::InvalidSpec,
                    "is required",
                );
            }
            limits.per_user = rate(u, "spec.rateLimits.perUser", false, errs);
        }
        if let Some(d) = &rl.per_device {
            if d.events_per_second.is_none() {
                errs.push(
                    "spec.rateLimits.perDevice.eventsPerSecond",
                    Reason::InvalidSpec,
                    "is required",
                );
            }
            limits.per_device = rate(d, "spec.rateLimits.perDevice", false, errs);
        }
        if let Some(ip) = &rl.per_ip {
            if ip.events_per_second.is_none() && ip.connections_per_second.is_none() {
                errs.push(
                    "spec.rateLimits.perIP",
                    Reason::InvalidSpec,
                    "set eventsPerSecond, connectionsPerSecond or both",
                );
            }
            limits.per_ip = rate(ip, "spec.rateLimits.perIP", false, errs);
            ip_connections = rate(ip, "spec.rateLimits.perIP", true, errs);
        }
    }

    let mut queues = [None; 5];
    if let Some(pr) = &spec.priorities {
        groups.push("priorities");
        let by_class = [&pr.critical, &pr.high, &pr.normal, &pr.low, &pr.background];
        for (p, settings) in Priority::HIGHEST_FIRST.into_iter().zip(by_class) {
            queues[p.index()] = queue(settings.as_ref(), p, &format!("spec.priorities.{p}"), errs);
        }
    }

    let mut redact = Vec::new();
    let content = spec.content.clone().unwrap_or_default();
    if spec.content.is_some() {
        groups.push("content");
    }
    for (i, f) in content.redact_fields.iter().enumerate() {
        match f.strip_prefix("data.") {
            Some(rest) if !rest.split('.').any(str::is_empty) => {
                redact.push(rest.split('.').map(str::to_owned).collect());
            }
            _ => errs.push(
                format!("spec.content.redactFields[{i}]"),
                Reason::InvalidSpec,
                format!("{f:?} must be a path under data, e.g. data.password"),
            ),
        }
    }

    let connection = spec.connection.clone().unwrap_or_default();
    if let (Some(hb), Some(idle)) = (connection.heartbeat_interval, connection.idle_timeout)
        && hb >= idle
    {
        errs.push(
            "spec.connection.heartbeatInterval",
            Reason::InvalidSpec,
            format!("heartbeat interval {hb} must be shorter than idle timeout {idle}"),
        );
    }
    if connection.heartbeat_interval.is_some_and(|d| d.is_zero()) {
        errs.push(
            "spec.connection.heartbeatInterval",
            Reason::InvalidSpec,
            "must be greater than 0",
        );
    }
    if connection.idle_timeout.is_some_and(|d| d.is_zero()) {
        errs.push(
            "spec.connection.idleTimeout",
            Reason::InvalidSpec,
            "must be greater than 0",
        );
    }

    if let Some(a) = &spec.autoscaling {
        if a.min_replicas > a.max_replicas {
            errs.push(
                "spec.autoscaling.minReplicas",
                Reason::InvalidSpec,
                format!("minReplicas {} exceeds maxReplicas {}", a.min_replicas, a.max_replicas),
            );
        }
        if a.target_connections_per_pod.is_none() && a.target_events_per_second_per_pod.is_none() {
            errs.push(
                "spec.autoscaling",
                Reason::InvalidSpec,
                "set targetConnectionsPerPod, targetEventsPerSecondPerPod or both",
            );
        }
        if a.target_ref.name.is_empty() || a.target_ref.kind.is_empty() {
            errs.push(
                "spec.autoscaling.targetRef",
                Reason::InvalidSpec,
                "kind and name are required",
            );
        }
    }

    CompiledPolicy {
        name: p.name_any(),
        selected,
        jwt: jwt(p, input, errs),
        limits,
        queues,
        content_max_event_bytes: content.max_event_bytes,
        redact,
        deny_scripts: content.deny_scripts,
        connection,
        ip_connections,
        batching: spec.batching.clone().unwrap_or_default(),
        compression: spec.compression.clone().unwrap_or_default(),
        groups,
    }
}

/// Compiles every policy; rejects invalid ones and, for two policies setting the same
/// group on one topic, the one whose name sorts later.
pub(crate) fn compile_all(
    input: &CompileInput,
    topics: &[TopicDraft],
    errors: &mut Vec<CompileError>,
) -> Vec<CompiledPolicy> {
    let mut sorted: Vec<&BroadcastPolicy> = input.policies.iter().collect();
    sorted.sort_by_key(|p| p.name_any());
    let mut accepted: Vec<CompiledPolicy> = Vec::new();
    // (topic, group) -> policy that set it first.
    let mut owners: BTreeMap<(String, &'static str), String> = BTreeMap::new();
    for p in sorted {
        let resource = resource_ref(p, &input.namespace);
        let mut errs = Errors::new(&resource);
        let compiled = compile_one(p, input, topics, &mut errs);
        if errs.is_empty() {
            for topic in &compiled.selected {
                for group in &compiled.groups {
                    if let Some(other) = owners.get(&(topic.clone(), *group)) {
                        errs.push(
                            format!("spec.{group}"),
                            Reason::PolicyConflict,
                            format!("BroadcastPolicy {other:?} also sets {group} for topic {topic:?}; a topic takes each setting from one policy"),
                        );
                    }
                }
            }
        }
        if errs.is_empty() {
            for topic in &compiled.selected {
                for group in &compiled.groups {
                    owners.insert((topic.clone(), group), compiled.name.clone());
                }
            }
            accepted.push(compiled);
        } else {
            errors.append(&mut errs.list);
        }
    }
    accepted
}

fn min_opt<T: Ord + Copy>(acc: Option<T>, v: Option<T>) -> Option<T> {
    match (acc, v) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// JWT providers and the pod-wide connection settings: for each limit or timer, the
/// strictest value any policy sets.
pub(crate) fn pod_wide(policies: &[CompiledPolicy]) -> (Vec<JwtProvider>, ConnectionConfig) {
    let auth = policies.iter().filter_map(|p| p.jwt.clone()).collect();
    let defaults = ConnectionConfig::default();
    let mut hb = None;
    let mut idle = None;
    let mut subs = None;
    let mut conns = None;
    let mut batch = None;
    let mut delay = None;
    let mut per_ip: Option<RateSpec> = None;
    let mut compression = None;
    let mut threshold = None;
    for p in policies {
        hb = min_opt(hb, p.connection.heartbeat_interval.map(|d| d.as_millis_u64()));
        idle = min_opt(idle, p.connection.idle_timeout.map(|d| d.as_millis_u64()));
        subs = min_opt(subs, p.connection.max_subscriptions_per_connection);
        conns = min_opt(conns, p.connection.max_connections_per_pod);
        batch = min_opt(batch, p.batching.max_batch);
        delay = min_opt(delay, p.batching.max_delay.map(|d| d.as_millis_u64()));
        if let Some(r) = p.ip_connections {
            per_ip = Some(match per_ip {
                Some(cur) if cur.per_second <= r.per_second => cur,
                _ => r,
            });
        }
        if let Some(e) = p.compression.enabled {
            compression = Some(compression.unwrap_or(false) || e);
        }
        threshold = min_opt(threshold, p.compression.threshold_bytes);
    }
    let mut connection = ConnectionConfig {
        heartbeat_interval_ms: hb.unwrap_or(defaults.heartbeat_interval_ms),
        idle_timeout_ms: idle.unwrap_or(defaults.idle_timeout_ms),
        max_subscriptions_per_connection: subs.unwrap_or(defaults.max_subscriptions_per_connection),
        max_connections_per_pod: conns.unwrap_or(defaults.max_connections_per_pod),
        per_ip,
        max_batch: batch.unwrap_or(defaults.max_batch),
        max_batch_delay_ms: delay.unwrap_or(defaults.max_batch_delay_ms),
        compression: compression.unwrap_or(defaults.compression),
        compression_threshold_bytes: threshold.unwrap_or(defaults.compression_threshold_bytes),
    };
    // Policies set these independently; keep the heartbeat inside the idle window.
    if connection.heartbeat_interval_ms >= connection.idle_timeout_ms {
        connection.heartbeat_interval_ms = (connection.idle_timeout_ms / 2).max(1);
    }
    (auth, connection)
}
