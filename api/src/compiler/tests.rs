//! Compiler scenarios. Fixtures are written as the YAML a user would `kubectl apply`
//! and parsed with [`crate::manifest::parse_manifests`], so each test reads like the
//! resources it is about.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::config::{JwtKey, QueueClass, RateSpec, SinkConfig};
use crate::crd::subscription::DeliveryMode;
use crate::crd::topic::{DeletionPolicy, Guarantee};
use crate::manifest::parse_manifests;
use crate::priority::Priority;

const NS: &str = "default";

// ---------------------------------------------------------------------------------------
// Fixture builders
// ---------------------------------------------------------------------------------------

/// One manifest document. `metadata` and `body` are YAML (flow style is handy).
fn resource(kind: &str, metadata: &str, body: &str) -> String {
    let api_version = if kind == "Secret" {
        "v1"
    } else {
        crate::crd::API_VERSION
    };
    format!("apiVersion: {api_version}\nkind: {kind}\nmetadata: {metadata}\n{body}\n")
}

/// A Topic named `name` with `spec` (flow-style YAML, e.g. `{presence: true}`).
fn topic(name: &str, spec: &str) -> String {
    resource("Topic", &format!("{{name: {name}}}"), &format!("spec: {spec}"))
}

/// A Topic with full control over `metadata` (labels, generation).
fn topic_meta(metadata: &str, spec: &str) -> String {
    resource("Topic", metadata, &format!("spec: {spec}"))
}

fn policy(name: &str, spec: &str) -> String {
    resource(
        "BroadcastPolicy",
        &format!("{{name: {name}}}"),
        &format!("spec: {spec}"),
    )
}

fn subscription(name: &str, spec: &str) -> String {
    resource("Subscription", &format!("{{name: {name}}}"), &format!("spec: {spec}"))
}

/// A `v1` Secret with `stringData` (flow-style YAML map).
fn secret(name: &str, string_data: &str) -> String {
    resource(
        "Secret",
        &format!("{{name: {name}}}"),
        &format!("stringData: {string_data}"),
    )
}

/// Parses documents into a compile input for namespace `default`.
fn input(docs: &[String]) -> CompileInput {
    let text = docs.join("---\n");
    match parse_manifests(NS, &[("fixture.yaml".to_owned(), text)]) {
        Ok(set) => set.input,
        Err(errs) => panic!("fixture does not parse: {errs:#?}"),
    }
}

fn compile_docs(docs: &[String]) -> CompileOutput {
    compile(&input(docs))
}

/// The single error of a compile, with a readable failure otherwise.
fn single_error(out: &CompileOutput) -> &CompileError {
    assert_eq!(out.errors.len(), 1, "expected exactly one error, got {:#?}", out.errors);
    &out.errors[0]
}

/// Asserts every part of an error; `message_parts` must all occur in the message.
fn assert_error(err: &CompileError, kind: &str, name: &str, field: &str, reason: Reason, message_parts: &[&str]) {
    assert_eq!(err.resource.kind, kind, "{err}");
    assert_eq!(err.resource.name, name, "{err}");
    assert_eq!(err.resource.namespace, NS, "{err}");
    assert_eq!(err.field, field, "{err}");
    assert_eq!(err.reason, reason, "{err}");
    for part in message_parts {
        assert!(err.message.contains(part), "message of {err} should contain {part:?}");
    }
}

fn topic_names(config: &CompiledConfig) -> Vec<&str> {
    config.topics.keys().map(String::as_str).collect()
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// An RSA public key (2048 bit) made with `openssl genrsa 2048 | openssl rsa -pubout`;
/// the private half was thrown away.
const RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA6PT7vBs8RZhJ3ZuizEnm
lTfCUMsm4SJztb0zdcH6gEtYnEZJgAHD/QdWRcvFUfHdKgyU7o1oNzNn2B2iHf6d
YNnfECjHWlknObnAW2dyz9WaHvT+WZvx/u7qt5H0V4e7CeafQumTwNTCtMOHx+R6
WVrd8OkLM3JfXnRuX/5V8ruFhh+o30SoTyi2lVHcf3ruB+dMPejvZ4eNo6Ge2MQB
26Zy1q6mLR6Bp2LfFpAfcp2eRzgIlXnD6Ais2+iYia03oeuLSGeV8+RD65OzZoV/
vLiH7BMsc0vKuUfED2qnBtiwR6qQQjmmoijcDgaSaxk5iFmNHJSBCP4QyM4iR7si
RQIDAQAB
-----END PUBLIC KEY-----
";

/// The same key in PKCS#1 form (`openssl rsa -RSAPublicKey_out`).
const RSA_PUBLIC_PKCS1_PEM: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEA6PT7vBs8RZhJ3ZuizEnmlTfCUMsm4SJztb0zdcH6gEtYnEZJgAHD
/QdWRcvFUfHdKgyU7o1oNzNn2B2iHf6dYNnfECjHWlknObnAW2dyz9WaHvT+WZvx
/u7qt5H0V4e7CeafQumTwNTCtMOHx+R6WVrd8OkLM3JfXnRuX/5V8ruFhh+o30So
Tyi2lVHcf3ruB+dMPejvZ4eNo6Ge2MQB26Zy1q6mLR6Bp2LfFpAfcp2eRzgIlXnD
6Ais2+iYia03oeuLSGeV8+RD65OzZoV/vLiH7BMsc0vKuUfED2qnBtiwR6qQQjmm
oijcDgaSaxk5iFmNHJSBCP4QyM4iR7siRQIDAQAB
-----END RSA PUBLIC KEY-----
";

/// A P-256 public key (`openssl ecparam -name prime256v1 -genkey | openssl ec -pubout`):
/// a well-formed PEM public key, but not RSA.
const EC_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAErUgyPTSdwWG642TlICx6WrP5NQay
EPgmm0cvsAA1HJUj7reqUvmsLaYmU+xrcB9+r5widhKUujQG5BdVl6ZfGg==
-----END PUBLIC KEY-----
";

/// Policy + input with the PEM stored under Secret `jwt-rsa`, key `public.pem`.
fn rs256_input(pem: &str) -> CompileInput {
    let mut input = input(&[
        topic("chat", "{}"),
        policy(
            "rsa",
            "{auth: {jwt: {issuer: https://auth.example.com, publicKeyRef: {name: jwt-rsa, key: public.pem}}}}",
        ),
    ]);
    input.secrets.insert(
        "jwt-rsa",
        BTreeMap::from([("public.pem".to_owned(), pem.as_bytes().to_vec())]),
    );
    input
}

// ---------------------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------------------

#[test]
fn minimal_topic_is_private_normal_at_most_once_with_default_retention() {
    let out = compile_docs(&[topic("chat", "{}")]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    let t = out.config.topic("chat").expect("topic compiled");
    assert_eq!(t.name, "chat");
    assert_eq!(t.resource, "chat");
    // Private: authenticated subscribers only, no WebSocket publishing.
    assert!(!t.subscribe.anonymous);
    assert!(t.subscribe.roles.is_empty());
    assert!(t.subscribe.claims.is_empty());
    assert_eq!(t.publish, None);
    assert_eq!(t.default_priority, Priority::Normal);
    assert_eq!(t.delivery.guarantee, Guarantee::AtMostOnce);
    assert_eq!(t.delivery.ack_timeout_ms, 5_000);
    assert_eq!(t.delivery.max_retries, 5);
    assert_eq!(t.delivery.dead_letter_topic, None);
    assert_eq!(t.retention.max_events, 1000);
    assert_eq!(t.retention.max_age_ms, 3_600_000);
    assert_eq!(t.max_event_bytes, 65_536);
    assert!(!t.presence);
    assert_eq!(t.schema, None);
    assert_eq!(t.deletion_policy.0, DeletionPolicy::Retain);
    assert!(t.policies.is_empty());
    assert_eq!(t.limits, crate::config::TopicLimits::default());
    assert_eq!(t.queues, QueueClass::defaults());
    assert!(t.content.redact.is_empty());
    assert!(!t.content.deny_scripts);
    // No policies: default pod-wide settings and no JWT verifier.
    assert!(out.config.auth.is_empty());
    assert_eq!(out.config.connection, crate::config::ConnectionConfig::default());
    assert_eq!(out.config.namespace, NS);
}

#[test]
fn full_topic_spec_is_carried_into_the_config() {
    let out = compile_docs(&[
        topic("chat.dlq", "{}"),
        topic(
            "chat-room-42",
            "{name: chat.room-42, defaultPriority: high, maxEventBytes: 1024, \
             retention: {maxEvents: 50, maxAge: 90s}, presence: true, deletionPolicy: Delete, \
             delivery: {guarantee: atLeastOnce, ackTimeout: 750ms, maxRetries: 2, deadLetterTopic: chat.dlq}, \
             access: {subscribe: {anonymous: true}, publish: {roles: [member, admin], claims: {tenant: acme}}}, \
             schema: {type: object, required: [text]}}",
        ),
    ]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    let t = out.config.topic("chat.room-42").expect("compiled under spec.name");
    assert_eq!(t.default_priority, Priority::High);
    assert_eq!(t.max_event_bytes, 1024);
    assert_eq!((t.retention.max_events, t.retention.max_age_ms), (50, 90_000));
    assert!(t.presence);
    assert_eq!(t.deletion_policy.0, DeletionPolicy::Delete);
    assert_eq!(t.delivery.guarantee, Guarantee::AtLeastOnce);
    assert_eq!(t.delivery.ack_timeout_ms, 750);
    assert_eq!(t.delivery.max_retries, 2);
    assert_eq!(t.delivery.dead_letter_topic.as_deref(), Some("chat.dlq"));
    assert!(t.subscribe.anonymous);
    let publish = t.publish.as_ref().expect("publish rule");
    assert!(!publish.anonymous);
    assert_eq!(publish.roles, owned(&["member", "admin"]));
    assert_eq!(publish.claims.get("tenant").map(String::as_str), Some("acme"));
    assert_eq!(
        t.schema,
        Some(serde_json::json!({"type": "object", "required": ["text"]}))
    );
}

#[test]
fn spec_name_is_the_wire_name_and_metadata_name_the_resource() {
    let out = compile_docs(&[topic("chat-room-42", "{name: chat.room-42}"), topic("lobby", "{}")]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(topic_names(&out.config), ["chat.room-42", "lobby"]);
    let named = out.config.topic("chat.room-42").expect("spec.name wins");
    assert_eq!(named.resource, "chat-room-42");
    assert!(
        out.config.topic("chat-room-42").is_none(),
        "metadata.name is not a wire name when spec.name is set"
    );
    assert_eq!(
        out.config.topic("lobby").expect("defaults to metadata.name").resource,
        "lobby"
    );
}

#[test]
fn invalid_topic_names_are_reported_on_the_field_they_came_from() {
    let out = compile_docs(&[
        topic("bad-spec", "{name: chat..room}"),
        topic("\"chat.*\"", "{}"),
        topic("ok", "{}"),
    ]);
    assert_eq!(out.errors.len(), 2, "{:#?}", out.errors);
    assert_error(
        &out.errors[0],
        "Topic",
        "bad-spec",
        "spec.name",
        Reason::InvalidName,
        &["topic name", "chat..room", "empty segment"],
    );
    assert_error(
        &out.errors[1],
        "Topic",
        "chat.*",
        "metadata.name",
        Reason::InvalidName,
        &["topic name", "wildcard"],
    );
    // The valid topic is unaffected.
    assert_eq!(topic_names(&out.config), ["ok"]);
}

#[test]
fn duplicate_topic_names_reject_the_later_resource_and_name_the_first() {
    let docs = [
        topic("b-chat", "{name: chat}"),
        topic("a-chat", "{name: chat, presence: true}"),
    ];
    let out = compile_docs(&docs);
    let err = single_error(&out);
    assert_error(
        err,
        "Topic",
        "b-chat",
        "spec.name",
        Reason::DuplicateTopic,
        &["\"chat\"", "\"a-chat\""],
    );
    let t = out.config.topic("chat").expect("the first definition stays");
    assert_eq!(t.resource, "a-chat");
    assert!(t.presence);

    // metadata.name vs another Topic's spec.name: the error lands on the later
    // resource's own field.
    let out = compile_docs(&[topic("orders", "{}"), topic("aaa", "{name: orders}")]);
    let err = single_error(&out);
    assert_error(
        err,
        "Topic",
        "orders",
        "metadata.name",
        Reason::DuplicateTopic,
        &["\"orders\"", "\"aaa\""],
    );
    assert_eq!(out.config.topic("orders").expect("kept").resource, "aaa");
}

#[test]
fn the_same_resource_twice_in_a_manifest_directory_is_rejected_not_order_dependent() {
    // Two files both defining Topic "chat": which one wins would depend on file order
    // (and the accepted one would vanish from `sources`), so parsing refuses it.
    let sources = [
        ("a.yaml".to_owned(), topic("chat", "{presence: true}")),
        (
            "b.yaml".to_owned(),
            [topic("lobby", "{}"), topic("chat", "{}")].join("---\n"),
        ),
    ];
    let errs = parse_manifests(NS, &sources).expect_err("duplicate resource");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!((errs[0].source_name.as_str(), errs[0].document), ("b.yaml", 2));
    assert_eq!(
        errs[0].message,
        "Topic \"chat\" is already defined in a.yaml (document 1)"
    );
    // The same name in different kinds is fine.
    let set = parse_manifests(
        NS,
        &[(
            "ok.yaml".to_owned(),
            [
                topic("chat", "{}"),
                subscription("chat", &format!("{{topics: [chat], {WEBHOOK}}}")),
                secret("chat", "{k: v}"),
            ]
            .join("---\n"),
        )],
    )
    .expect("distinct kinds");
    let config = compile_strict(&set.input).expect("compiles");
    let kinds: Vec<&str> = config.sources.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["Subscription", "Topic"]);
}

#[test]
fn invalid_json_schema_is_rejected_with_invalid_schema() {
    let out = compile_docs(&[
        topic("chat", "{schema: {type: strnig}}"),
        topic("fine", "{schema: {type: object}}"),
    ]);
    let err = single_error(&out);
    assert_error(
        err,
        "Topic",
        "chat",
        "spec.schema",
        Reason::InvalidSchema,
        &["invalid JSON Schema"],
    );
    assert!(out.config.topic("chat").is_none());
    assert_eq!(
        out.config.topic("fine").expect("valid schema").schema,
        Some(serde_json::json!({"type": "object"}))
    );
}

#[test]
fn out_of_range_topic_settings_are_invalid_spec() {
    let out = compile_docs(&[topic(
        "chat",
        "{maxEventBytes: 10, retention: {maxAge: 0s}, delivery: {ackTimeout: 1ms}, \
         access: {subscribe: {roles: [\"\"]}, publish: {claims: {\" \": x}}}}",
    )]);
    let fields: Vec<(&str, Reason)> = out.errors.iter().map(|e| (e.field.as_str(), e.reason)).collect();
    assert_eq!(
        fields,
        [
            ("spec.access.publish.claims", Reason::InvalidSpec),
            ("spec.access.subscribe.roles[0]", Reason::InvalidSpec),
            ("spec.delivery.ackTimeout", Reason::InvalidSpec),
            ("spec.maxEventBytes", Reason::InvalidSpec),
            ("spec.retention.maxAge", Reason::InvalidSpec),
        ]
    );
    assert!(
        out.errors[3].message.contains("between 64 and 16777216, got 10"),
        "{}",
        out.errors[3]
    );
    assert!(out.config.topics.is_empty());
}

#[test]
fn missing_dead_letter_topic_is_unknown_topic() {
    let out = compile_docs(&[topic(
        "orders",
        "{delivery: {guarantee: atLeastOnce, deadLetterTopic: orders.dlq}}",
    )]);
    let err = single_error(&out);
    assert_error(
        err,
        "Topic",
        "orders",
        "spec.delivery.deadLetterTopic",
        Reason::UnknownTopic,
        &["\"orders.dlq\"", "does not exist"],
    );
    assert!(out.config.topics.is_empty());
}

#[test]
fn a_topic_cannot_be_its_own_dead_letter_topic() {
    let out = compile_docs(&[topic(
        "orders",
        "{name: orders.status, delivery: {deadLetterTopic: orders.status}}",
    )]);
    let err = single_error(&out);
    assert_error(
        err,
        "Topic",
        "orders",
        "spec.delivery.deadLetterTopic",
        Reason::InvalidSpec,
        &["its own dead-letter topic"],
    );
    // A malformed dead-letter name is an InvalidName.
    let out = compile_docs(&[topic("orders", "{delivery: {deadLetterTopic: \"orders.*\"}}")]);
    assert_error(
        single_error(&out),
        "Topic",
        "orders",
        "spec.delivery.deadLetterTopic",
        Reason::InvalidName,
        &["wildcard"],
    );
}

#[test]
fn topics_whose_dead_letter_topic_was_dropped_are_dropped_too() {
    // c -> b -> a, and a is invalid: the removal cascades through the chain.
    let out = compile_docs(&[
        topic("a", "{maxEventBytes: 1}"),
        topic("b", "{delivery: {deadLetterTopic: a}}"),
        topic("c", "{delivery: {deadLetterTopic: b}}"),
        topic("d", "{delivery: {deadLetterTopic: e}}"),
        topic("e", "{}"),
    ]);
    assert_eq!(out.errors.len(), 3, "{:#?}", out.errors);
    assert_error(
        &out.errors[0],
        "Topic",
        "a",
        "spec.maxEventBytes",
        Reason::InvalidSpec,
        &["got 1"],
    );
    assert_error(
        &out.errors[1],
        "Topic",
        "b",
        "spec.delivery.deadLetterTopic",
        Reason::UnknownTopic,
        &["\"a\""],
    );
    assert_error(
        &out.errors[2],
        "Topic",
        "c",
        "spec.delivery.deadLetterTopic",
        Reason::UnknownTopic,
        &["\"b\""],
    );
    assert_eq!(topic_names(&out.config), ["d", "e"]);
}

// ---------------------------------------------------------------------------------------
// BroadcastPolicy: selection, merge, conflicts
// ---------------------------------------------------------------------------------------

const RATE: &str = "rateLimits: {perUser: {eventsPerSecond: 5}}";

#[test]
fn policy_selects_topics_by_name_patterns() {
    let out = compile_docs(&[
        topic("chat.a", "{}"),
        topic("chat.b.c", "{}"),
        topic("orders", "{}"),
        topic("notifications", "{}"),
        policy("p", &format!("{{topics: [\"chat.*\", notifications], {RATE}}}")),
    ]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    let selected: Vec<&str> = out
        .config
        .topics
        .values()
        .filter(|t| t.policies == ["p"])
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(selected, ["chat.a", "notifications"]);
    let limits = &out.config.topic("chat.a").expect("topic").limits;
    assert_eq!(limits.scope.as_deref(), Some("p"));
    // Burst defaults to one second of the rate.
    assert_eq!(
        limits.per_user,
        Some(RateSpec {
            per_second: 5.0,
            burst: 5
        })
    );
    assert_eq!(limits.per_device, None);
    let untouched = out.config.topic("chat.b.c").expect("topic");
    assert!(untouched.policies.is_empty());
    assert_eq!(untouched.limits, crate::config::TopicLimits::default());
}

#[test]
fn policy_selects_topics_by_label_selector_or_pattern() {
    let out = compile_docs(&[
        topic_meta("{name: room-1, labels: {tier: chat, env: prod}}", "{}"),
        topic_meta("{name: room-2, labels: {tier: chat, env: dev}}", "{}"),
        topic_meta("{name: billing, labels: {tier: orders}}", "{}"),
        topic("audit", "{}"),
        policy(
            "prod-chat",
            "{topicSelector: {matchLabels: {tier: chat}, matchExpressions: [{key: env, operator: In, values: [prod]}]}, \
             content: {denyScripts: true}}",
        ),
        // `topics` and `topicSelector` combine by OR.
        policy(
            "orders-or-audit",
            "{topics: [audit], topicSelector: {matchLabels: {tier: orders}}, priorities: {low: {queueSize: 7}}}",
        ),
    ]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    let policies = |name: &str| out.config.topic(name).expect("topic").policies.clone();
    assert_eq!(policies("room-1"), ["prod-chat"]);
    assert!(policies("room-2").is_empty());
    assert_eq!(policies("billing"), ["orders-or-audit"]);
    assert_eq!(policies("audit"), ["orders-or-audit"]);
    assert!(out.config.topic("room-1").expect("topic").content.deny_scripts);
    assert!(!out.config.topic("room-2").expect("topic").content.deny_scripts);
    assert_eq!(
        out.config.topic("billing").expect("topic").queues[Priority::Low.index()].queue_size,
        7
    );
    assert_eq!(
        out.config
            .topic("billing")
            .expect("topic")
            .labels
            .get("tier")
            .map(String::as_str),
        Some("orders")
    );
}

#[test]
fn policy_without_topics_or_selector_selects_every_topic() {
    let out = compile_docs(&[
        topic("a", "{}"),
        topic("b.c", "{}"),
        policy("everything", "{content: {denyScripts: true}}"),
    ]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    for t in out.config.topics.values() {
        assert_eq!(t.policies, ["everything"], "{}", t.name);
        assert!(t.content.deny_scripts, "{}", t.name);
    }
    assert_eq!(out.config.topics.len(), 2);
}

#[test]
fn settings_of_different_policies_merge_onto_a_topic() {
    let out = compile_docs(&[
        topic("chat.big", "{maxEventBytes: 4096}"),
        topic("chat.small", "{maxEventBytes: 512}"),
        policy(
            "limits",
            "{topics: [\"chat.**\"], rateLimits: {perUser: {eventsPerSecond: 20, burst: 40}, \
             perDevice: {eventsPerSecond: 0.5}, perIP: {eventsPerSecond: 100, burst: 200}}}",
        ),
        policy(
            "queues",
            "{topics: [\"**\"], priorities: {critical: {queueSize: 10, latencyTarget: 5ms}, low: {queueSize: 100}}}",
        ),
        policy(
            "content",
            "{topics: [\"chat.*\"], content: {maxEventBytes: 1000, redactFields: [data.password, data.card.number], \
             denyScripts: true}}",
        ),
    ]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    let big = out.config.topic("chat.big").expect("topic");
    assert_eq!(big.policies, ["content", "limits", "queues"]);
    // Rate limits from `limits`, scoped to it.
    assert_eq!(big.limits.scope.as_deref(), Some("limits"));
    assert_eq!(
        big.limits.per_user,
        Some(RateSpec {
            per_second: 20.0,
            burst: 40
        })
    );
    assert_eq!(
        big.limits.per_device,
        Some(RateSpec {
            per_second: 0.5,
            burst: 1
        })
    );
    assert_eq!(
        big.limits.per_ip,
        Some(RateSpec {
            per_second: 100.0,
            burst: 200
        })
    );
    // Queues from `queues`: critical fully set, low keeps its default latency target,
    // the classes it does not mention keep their defaults.
    assert_eq!(
        big.queues[Priority::Critical.index()],
        QueueClass {
            queue_size: 10,
            latency_target_ms: Some(5)
        }
    );
    assert_eq!(
        big.queues[Priority::Low.index()],
        QueueClass {
            queue_size: 100,
            latency_target_ms: Some(1000)
        }
    );
    assert_eq!(
        big.queues[Priority::High.index()],
        QueueClass::default_for(Priority::High)
    );
    assert_eq!(
        big.queues[Priority::Background.index()],
        QueueClass::default_for(Priority::Background)
    );
    // Content from `content`; the smaller maxEventBytes wins either way.
    assert_eq!(
        big.content.redact,
        vec![owned(&["password"]), owned(&["card", "number"])]
    );
    assert!(big.content.deny_scripts);
    assert_eq!(big.max_event_bytes, 1000);
    assert_eq!(out.config.topic("chat.small").expect("topic").max_event_bytes, 512);
}

#[test]
fn two_policies_setting_rate_limits_for_one_topic_conflict_on_the_later_name() {
    let docs = [
        topic("chat.room", "{}"),
        topic("chat.lobby", "{}"),
        policy(
            "b-strict",
            "{topics: [chat.room], rateLimits: {perUser: {eventsPerSecond: 1}}}",
        ),
        policy("a-loose", &format!("{{topics: [\"chat.*\"], {RATE}}}")),
    ];
    let out = compile_docs(&docs);
    let err = single_error(&out);
    assert_error(
        err,
        "BroadcastPolicy",
        "b-strict",
        "spec.rateLimits",
        Reason::PolicyConflict,
        &["BroadcastPolicy \"a-loose\"", "rateLimits", "\"chat.room\""],
    );
    let room = out.config.topic("chat.room").expect("topic");
    assert_eq!(room.policies, ["a-loose"]);
    assert_eq!(
        room.limits.per_user,
        Some(RateSpec {
            per_second: 5.0,
            burst: 5
        })
    );
    assert!(!out.config.sources.iter().any(|r| r.name == "b-strict"));

    // Input order does not decide who wins: names do.
    let mut reversed = docs.to_vec();
    reversed.reverse();
    assert_eq!(compile_docs(&reversed).errors, out.errors);

    // Same for the other per-topic groups.
    let out = compile_docs(&[
        topic("t", "{}"),
        policy("one", "{content: {denyScripts: true}}"),
        policy(
            "two",
            "{content: {maxEventBytes: 1024}, priorities: {low: {queueSize: 1}}}",
        ),
        policy("three", "{priorities: {high: {queueSize: 1}}}"),
    ]);
    assert_eq!(out.errors.len(), 2, "{:#?}", out.errors);
    assert_error(
        &out.errors[0],
        "BroadcastPolicy",
        "two",
        "spec.content",
        Reason::PolicyConflict,
        &["\"one\""],
    );
    // `three` sorts before `two`, so it owns priorities by the time `two` is checked.
    assert_error(
        &out.errors[1],
        "BroadcastPolicy",
        "two",
        "spec.priorities",
        Reason::PolicyConflict,
        &["\"three\""],
    );
    assert_eq!(out.config.topic("t").expect("topic").policies, ["one", "three"]);
}

#[test]
fn policies_that_do_not_overlap_do_not_conflict() {
    let out = compile_docs(&[
        topic("chat.room", "{}"),
        topic("orders.status", "{}"),
        policy("chat", &format!("{{topics: [\"chat.**\"], {RATE}}}")),
        policy(
            "orders",
            "{topics: [\"orders.**\"], rateLimits: {perUser: {eventsPerSecond: 50}}}",
        ),
        // Selects nothing at all: never conflicts.
        policy(
            "future",
            "{topics: [\"future.**\"], rateLimits: {perUser: {eventsPerSecond: 1}}}",
        ),
    ]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(
        out.config
            .topic("chat.room")
            .expect("t")
            .limits
            .per_user
            .map(|r| r.per_second),
        Some(5.0)
    );
    assert_eq!(
        out.config
            .topic("orders.status")
            .expect("t")
            .limits
            .per_user
            .map(|r| r.per_second),
        Some(50.0)
    );
    assert_eq!(
        out.config
            .sources
            .iter()
            .filter(|r| r.kind == "BroadcastPolicy")
            .count(),
        3
    );
}

#[test]
fn invalid_policy_patterns_and_rate_limits_are_rejected() {
    let out = compile_docs(&[
        topic("chat", "{}"),
        policy("bad-pattern", "{topics: [chat, \"chat.room-*\"]}"),
        policy(
            "bad-rates",
            "{topics: [chat], rateLimits: {perUser: {burst: 3}, perDevice: {eventsPerSecond: 0}, perIP: {burst: 1}}}",
        ),
    ]);
    let got: Vec<(&str, &str, Reason)> = out
        .errors
        .iter()
        .map(|e| (e.resource.name.as_str(), e.field.as_str(), e.reason))
        .collect();
    assert_eq!(
        got,
        [
            ("bad-pattern", "spec.topics[1]", Reason::InvalidPattern),
            (
                "bad-rates",
                "spec.rateLimits.perDevice.eventsPerSecond",
                Reason::InvalidSpec
            ),
            ("bad-rates", "spec.rateLimits.perIP", Reason::InvalidSpec),
            (
                "bad-rates",
                "spec.rateLimits.perUser.eventsPerSecond",
                Reason::InvalidSpec
            ),
        ]
    );
    assert!(out.errors[0].message.contains("wildcard"), "{}", out.errors[0]);
    assert_eq!(out.errors[1].message, "must be a positive number");
    assert_eq!(out.errors[3].message, "is required");
    assert!(out.config.topic("chat").expect("topic").policies.is_empty());
}

// ---------------------------------------------------------------------------------------
// BroadcastPolicy: JWT
// ---------------------------------------------------------------------------------------

const HS256_POLICY: &str = "{auth: {jwt: {issuer: https://auth.example.com, audience: eventcast, \
                            secretRef: {name: jwt-hmac, key: secret}, claims: {user: uid, roles: groups}}}}";

#[test]
fn hs256_secret_is_resolved_from_the_secret() {
    let out = compile_docs(&[
        topic("chat", "{}"),
        secret("jwt-hmac", "{secret: s3cr3t-value}"),
        policy("auth", HS256_POLICY),
    ]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(out.config.auth.len(), 1);
    let p = &out.config.auth[0];
    assert_eq!(p.policy, "auth");
    assert_eq!(p.issuer.as_deref(), Some("https://auth.example.com"));
    assert_eq!(p.audience.as_deref(), Some("eventcast"));
    // Stored base64 (standard alphabet) in the config.
    assert_eq!(
        p.key,
        JwtKey::Hmac {
            secret: "czNjcjN0LXZhbHVl".to_owned()
        }
    );
    assert_eq!(p.user_claim, "uid");
    assert_eq!(p.device_claim, "device_id");
    assert_eq!(p.roles_claim, "groups");
    assert_eq!(p.leeway_secs, 30);

    let out = compile_docs(&[
        secret("k", "{s: x}"),
        policy("auth", "{auth: {jwt: {secretRef: {name: k, key: s}, leeway: 5s}}}"),
    ]);
    let p = &out.config.auth[0];
    assert_eq!(
        (p.user_claim.as_str(), p.roles_claim.as_str(), p.leeway_secs),
        ("sub", "roles", 5)
    );
    assert_eq!((p.issuer.as_ref(), p.audience.as_ref()), (None, None));
}

#[test]
fn hs256_secret_problems_are_reported() {
    let out = compile_docs(&[topic("chat", "{}"), policy("auth", HS256_POLICY)]);
    assert_error(
        single_error(&out),
        "BroadcastPolicy",
        "auth",
        "spec.auth.jwt.secretRef",
        Reason::SecretNotFound,
        &["Secret \"jwt-hmac\" not found"],
    );
    assert!(out.config.auth.is_empty());

    let out = compile_docs(&[secret("jwt-hmac", "{other: x}"), policy("auth", HS256_POLICY)]);
    assert_error(
        single_error(&out),
        "BroadcastPolicy",
        "auth",
        "spec.auth.jwt.secretRef",
        Reason::SecretNotFound,
        &["Secret \"jwt-hmac\" has no key \"secret\""],
    );

    let out = compile_docs(&[secret("jwt-hmac", "{secret: \"\"}"), policy("auth", HS256_POLICY)]);
    assert_error(
        single_error(&out),
        "BroadcastPolicy",
        "auth",
        "spec.auth.jwt.secretRef",
        Reason::InvalidKey,
        &["empty"],
    );
}

#[test]
fn jwt_needs_exactly_one_of_secret_ref_and_public_key_ref() {
    let both = "{auth: {jwt: {secretRef: {name: s, key: k}, publicKeyRef: {name: s, key: k}}}}";
    let neither = "{auth: {jwt: {issuer: https://auth.example.com}}}";
    for (name, spec) in [("both", both), ("neither", neither)] {
        let out = compile_docs(&[secret("s", "{k: v}"), policy(name, spec)]);
        assert_error(
            single_error(&out),
            "BroadcastPolicy",
            name,
            "spec.auth.jwt",
            Reason::InvalidSpec,
            &["exactly one of secretRef (HS256) or publicKeyRef (RS256)"],
        );
        assert!(out.config.auth.is_empty());
    }
}

#[test]
fn rs256_public_key_is_accepted() {
    // SubjectPublicKeyInfo (`PUBLIC KEY`) and PKCS#1 (`RSA PUBLIC KEY`) forms.
    for pem in [RSA_PUBLIC_PEM, RSA_PUBLIC_PKCS1_PEM] {
        let out = compile(&rs256_input(pem));
        assert!(out.errors.is_empty(), "{:#?}", out.errors);
        let p = &out.config.auth[0];
        assert_eq!(p.policy, "rsa");
        assert_eq!(p.issuer.as_deref(), Some("https://auth.example.com"));
        assert_eq!(p.key, JwtKey::Rsa { pem: pem.to_owned() });
    }
}

#[test]
fn rs256_with_something_other_than_an_rsa_public_key_is_invalid_key() {
    let pem = |label: &str, body: &str| format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
    let cases = [
        ("garbage", "this is not a PEM".to_owned()),
        ("EC key", EC_PUBLIC_PEM.to_owned()),
        // Well-formed PEM and DER, but the DER is not an RSA key: SEQUENCE { INTEGER 1 }.
        ("not an RSA key", pem("RSA PUBLIC KEY", "MAMCAQE=")),
        // A PKCS#1 private-key structure (toy numbers): never ship a private key as the
        // verification key.
        (
            "private key",
            pem("RSA PRIVATE KEY", "MBsCAQACAQMCAQUCAQcCAQsCAQ0CARECARMCARc="),
        ),
    ];
    for (what, text) in cases {
        let out = compile(&rs256_input(&text));
        assert_eq!(out.errors.len(), 1, "{what}: {:#?}", out.errors);
        assert_error(
            &out.errors[0],
            "BroadcastPolicy",
            "rsa",
            "spec.auth.jwt.publicKeyRef",
            Reason::InvalidKey,
            &["not an RSA public key in PEM form"],
        );
        assert!(out.config.auth.is_empty(), "{what}");
    }

    // And a missing Secret is SecretNotFound, on the publicKeyRef field.
    let mut input = rs256_input(RSA_PUBLIC_PEM);
    input.secrets = Secrets::default();
    assert_error(
        single_error(&compile(&input)),
        "BroadcastPolicy",
        "rsa",
        "spec.auth.jwt.publicKeyRef",
        Reason::SecretNotFound,
        &["\"jwt-rsa\""],
    );
}

// ---------------------------------------------------------------------------------------
// BroadcastPolicy: connection, autoscaling, content rules
// ---------------------------------------------------------------------------------------

#[test]
fn heartbeat_must_be_shorter_than_idle_timeout() {
    for (hb, idle) in [("60s", "60s"), ("2m", "60s")] {
        let out = compile_docs(&[policy(
            "conn",
            &format!("{{connection: {{heartbeatInterval: {hb}, idleTimeout: {idle}}}}}"),
        )]);
        assert_error(
            single_error(&out),
            "BroadcastPolicy",
            "conn",
            "spec.connection.heartbeatInterval",
            Reason::InvalidSpec,
            &["must be shorter than idle timeout"],
        );
        assert_eq!(out.config.connection, crate::config::ConnectionConfig::default());
    }
    let out = compile_docs(&[policy("conn", "{connection: {heartbeatInterval: 0s}}")]);
    assert_error(
        single_error(&out),
        "BroadcastPolicy",
        "conn",
        "spec.connection.heartbeatInterval",
        Reason::InvalidSpec,
        &["greater than 0"],
    );
}

#[test]
fn pod_wide_connection_settings_take_the_strictest_value_of_all_policies() {
    let out = compile_docs(&[
        topic("chat", "{}"),
        topic("orders", "{}"),
        policy(
            "a",
            "{topics: [chat], connection: {heartbeatInterval: 20s, idleTimeout: 90s, maxSubscriptionsPerConnection: 50}, \
             rateLimits: {perIP: {connectionsPerSecond: 10, burst: 30}}, batching: {maxBatch: 32}, \
             compression: {enabled: false, thresholdBytes: 2048}}",
        ),
        policy(
            "b",
            "{topics: [orders], connection: {heartbeatInterval: 30s, idleTimeout: 45s, maxConnectionsPerPod: 1000}, \
             rateLimits: {perIP: {connectionsPerSecond: 5}}, batching: {maxDelay: 5ms}, compression: {enabled: true}}",
        ),
        // Rejected policies do not count.
        policy(
            "c-broken",
            "{connection: {maxConnectionsPerPod: 1}, content: {redactFields: [password]}}",
        ),
    ]);
    assert_eq!(out.errors.len(), 1, "{:#?}", out.errors);
    let c = &out.config.connection;
    assert_eq!(c.heartbeat_interval_ms, 20_000);
    assert_eq!(c.idle_timeout_ms, 45_000);
    assert_eq!(c.max_subscriptions_per_connection, 50);
    assert_eq!(c.max_connections_per_pod, 1000);
    assert_eq!(
        c.per_ip,
        Some(RateSpec {
            per_second: 5.0,
            burst: 5
        })
    );
    assert_eq!(c.max_batch, 32);
    assert_eq!(c.max_batch_delay_ms, 5);
    assert!(c.compression, "any policy enabling compression turns it on");
    assert_eq!(c.compression_threshold_bytes, 2048);
    // connectionsPerSecond is pod-wide only; per-topic perIP needs eventsPerSecond.
    assert_eq!(out.config.topic("chat").expect("topic").limits.per_ip, None);
}

#[test]
fn heartbeat_is_kept_inside_the_idle_window_when_policies_combine() {
    // Each policy is valid alone; together the strictest idle timeout is below the
    // strictest heartbeat, so the heartbeat is pulled in to half the idle timeout.
    let out = compile_docs(&[
        policy("slow-heartbeat", "{connection: {heartbeatInterval: 50s}}"),
        policy("short-idle", "{connection: {idleTimeout: 40s}}"),
    ]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(out.config.connection.idle_timeout_ms, 40_000);
    assert_eq!(out.config.connection.heartbeat_interval_ms, 20_000);
}

#[test]
fn autoscaling_min_above_max_is_rejected() {
    let out = compile_docs(&[policy(
        "scale",
        "{autoscaling: {targetRef: {kind: Deployment, name: chat-app}, minReplicas: 5, maxReplicas: 2, \
         targetConnectionsPerPod: 1000}}",
    )]);
    assert_error(
        single_error(&out),
        "BroadcastPolicy",
        "scale",
        "spec.autoscaling.minReplicas",
        Reason::InvalidSpec,
        &["minReplicas 5 exceeds maxReplicas 2"],
    );

    let out = compile_docs(&[policy(
        "scale",
        "{autoscaling: {targetRef: {kind: Deployment, name: \"\"}, minReplicas: 1, maxReplicas: 2}}",
    )]);
    let fields: Vec<&str> = out.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["spec.autoscaling", "spec.autoscaling.targetRef"]);
    assert!(
        out.errors[0].message.contains("targetConnectionsPerPod"),
        "{}",
        out.errors[0]
    );

    let out = compile_docs(&[policy(
        "scale",
        "{autoscaling: {targetRef: {kind: Deployment, name: chat-app}, minReplicas: 2, maxReplicas: 2, \
         targetEventsPerSecondPerPod: 5000}}",
    )]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(out.config.sources.len(), 1);
}

#[test]
fn redact_fields_must_be_paths_under_data() {
    let out = compile_docs(&[policy(
        "content",
        "{content: {redactFields: [data.password, password, \"data.\", data..x, metadata.token]}}",
    )]);
    let got: Vec<(&str, Reason)> = out.errors.iter().map(|e| (e.field.as_str(), e.reason)).collect();
    assert_eq!(
        got,
        [
            ("spec.content.redactFields[1]", Reason::InvalidSpec),
            ("spec.content.redactFields[2]", Reason::InvalidSpec),
            ("spec.content.redactFields[3]", Reason::InvalidSpec),
            ("spec.content.redactFields[4]", Reason::InvalidSpec),
        ]
    );
    assert_eq!(
        out.errors[0].message,
        "\"password\" must be a path under data, e.g. data.password"
    );
}

// ---------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------

const WEBHOOK: &str = "sink: {webhook: {url: \"http://audit.default.svc:8080/events\"}}";

fn chat_topics() -> Vec<String> {
    vec![
        topic("chat.room", "{}"),
        topic("chat.lobby", "{}"),
        topic("archive", "{}"),
    ]
}

/// Compiles the chat topics plus `extra`.
fn compile_with_chat(extra: &[String]) -> CompileOutput {
    let mut docs = chat_topics();
    docs.extend_from_slice(extra);
    compile_docs(&docs)
}

#[test]
fn realtime_webhook_subscription_defaults() {
    let out = compile_with_chat(&[subscription("audit", &format!("{{topics: [\"chat.*\"], {WEBHOOK}}}"))]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    let s = &out.config.subscriptions[0];
    assert_eq!(s.name, "audit");
    assert!(s.topics.matches("chat.room") && !s.topics.matches("archive"));
    assert!(s.event_types.is_empty(), "no eventTypes means every type");
    assert_eq!(s.min_priority, Priority::Background);
    assert_eq!(s.delivery.mode, DeliveryMode::Realtime);
    match &s.sink {
        SinkConfig::Webhook {
            url,
            headers,
            timeout_ms,
            retry,
            dead_letter_topic,
        } => {
            assert_eq!(url, "http://audit.default.svc:8080/events");
            assert!(headers.is_empty());
            assert_eq!(*timeout_ms, 2_000);
            assert_eq!(
                (retry.max_attempts, retry.initial_interval_ms, retry.max_interval_ms),
                (5, 200, 10_000)
            );
            assert_eq!(*dead_letter_topic, None);
        }
        other => panic!("expected a webhook sink, got {other:?}"),
    }
}

#[test]
fn batched_delivery_defaults_and_overrides() {
    let out = compile_with_chat(&[
        subscription(
            "a-defaults",
            &format!("{{topics: [chat.room], delivery: {{mode: batched}}, {WEBHOOK}}}"),
        ),
        subscription(
            "b-custom",
            &format!(
                "{{topics: [chat.room], eventTypes: [\"message.*\"], minPriority: high, \
                 delivery: {{mode: batched, batchSize: 10, batchInterval: 1s}}, {WEBHOOK}}}"
            ),
        ),
    ]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    let [a, b] = out.config.subscriptions.as_slice() else {
        panic!("two subscriptions expected: {:#?}", out.config.subscriptions)
    };
    assert_eq!(a.name, "a-defaults");
    assert_eq!(a.delivery.mode, DeliveryMode::Batched);
    assert_eq!((a.delivery.batch_size, a.delivery.batch_interval_ms), (100, 200));
    assert_eq!(b.delivery.mode, DeliveryMode::Batched);
    assert_eq!((b.delivery.batch_size, b.delivery.batch_interval_ms), (10, 1000));
    assert_eq!(b.min_priority, Priority::High);
    assert!(b.event_types.matches("message.sent") && !b.event_types.matches("presence.join"));

    let out = compile_with_chat(&[subscription(
        "zero",
        &format!("{{topics: [chat.room], delivery: {{mode: batched, batchInterval: 0s}}, {WEBHOOK}}}"),
    )]);
    assert_error(
        single_error(&out),
        "Subscription",
        "zero",
        "spec.delivery.batchInterval",
        Reason::InvalidSpec,
        &["greater than 0"],
    );
}

#[test]
fn subscription_topic_patterns_must_parse_and_match() {
    let out = compile_with_chat(&[
        subscription("a-bad-pattern", &format!("{{topics: [\"chat.room-*\"], {WEBHOOK}}}")),
        subscription(
            "b-unknown",
            &format!("{{topics: [chat.room, chat.missing], {WEBHOOK}}}"),
        ),
        subscription("c-nothing", &format!("{{topics: [\"orders.**\"], {WEBHOOK}}}")),
        subscription("d-empty", &format!("{{topics: [], {WEBHOOK}}}")),
        subscription(
            "e-bad-type",
            &format!("{{topics: [chat.room], eventTypes: [\"message..sent\"], {WEBHOOK}}}"),
        ),
    ]);
    assert_eq!(out.errors.len(), 5, "{:#?}", out.errors);
    assert_error(
        &out.errors[0],
        "Subscription",
        "a-bad-pattern",
        "spec.topics[0]",
        Reason::InvalidPattern,
        &["\"chat.room-*\"", "wildcard"],
    );
    assert_error(
        &out.errors[1],
        "Subscription",
        "b-unknown",
        "spec.topics[1]",
        Reason::UnknownTopic,
        &["topic \"chat.missing\" does not exist in this namespace"],
    );
    assert_error(
        &out.errors[2],
        "Subscription",
        "c-nothing",
        "spec.topics[0]",
        Reason::NoMatchingTopics,
        &["pattern \"orders.**\" matches no topic in this namespace"],
    );
    assert_error(
        &out.errors[3],
        "Subscription",
        "d-empty",
        "spec.topics",
        Reason::InvalidSpec,
        &["at least one"],
    );
    assert_error(
        &out.errors[4],
        "Subscription",
        "e-bad-type",
        "spec.eventTypes[0]",
        Reason::InvalidPattern,
        &["empty segment"],
    );
    assert!(out.config.subscriptions.is_empty());
}

#[test]
fn subscription_to_a_topic_dropped_for_errors_is_unknown_topic() {
    let out = compile_docs(&[
        topic("chat", "{schema: {type: 5}}"),
        subscription("audit", &format!("{{topics: [chat], {WEBHOOK}}}")),
    ]);
    let kinds: Vec<(&str, Reason)> = out
        .errors
        .iter()
        .map(|e| (e.resource.kind.as_str(), e.reason))
        .collect();
    assert_eq!(
        kinds,
        [("Subscription", Reason::UnknownTopic), ("Topic", Reason::InvalidSchema)]
    );
}

#[test]
fn filters_are_validated_with_the_condition_index() {
    let out = compile_with_chat(&[
        subscription(
            "a-regex",
            &format!(
                "{{topics: [chat.room], filter: [{{field: data.lang, op: eq, value: en}}, \
                 {{field: data.text, op: regex, value: \"(unclosed\"}}], {WEBHOOK}}}"
            ),
        ),
        subscription(
            "b-field",
            &format!("{{topics: [chat.room], filter: [{{field: payload.lang, op: eq, value: en}}], {WEBHOOK}}}"),
        ),
        subscription(
            "c-in",
            &format!("{{topics: [chat.room], filter: [{{field: data.lang, op: in, value: en}}], {WEBHOOK}}}"),
        ),
    ]);
    assert_eq!(out.errors.len(), 3, "{:#?}", out.errors);
    assert_error(
        &out.errors[0],
        "Subscription",
        "a-regex",
        "spec.filter[1].value",
        Reason::InvalidFilter,
        &["invalid regex"],
    );
    assert_error(
        &out.errors[1],
        "Subscription",
        "b-field",
        "spec.filter[0].field",
        Reason::InvalidFilter,
        &["unknown field \"payload.lang\""],
    );
    assert_error(
        &out.errors[2],
        "Subscription",
        "c-in",
        "spec.filter[0].value",
        Reason::InvalidFilter,
        &["needs an array value"],
    );

    // A valid filter is carried as written.
    let out = compile_with_chat(&[subscription(
        "ok",
        &format!("{{topics: [chat.room], filter: [{{field: data.lang, op: in, value: [en, de]}}], {WEBHOOK}}}"),
    )]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    let f = &out.config.subscriptions[0].filter[0];
    assert_eq!(f.field, "data.lang");
    assert_eq!(f.value, Some(serde_json::json!(["en", "de"])));
}

#[test]
fn sink_must_be_exactly_one_of_webhook_and_topic() {
    let out = compile_with_chat(&[
        subscription(
            "both",
            "{topics: [chat.room], sink: {webhook: {url: \"http://x.example/\"}, topic: {name: archive}}}",
        ),
        subscription("neither", "{topics: [chat.room], sink: {}}"),
    ]);
    assert_eq!(out.errors.len(), 2, "{:#?}", out.errors);
    for (err, name) in out.errors.iter().zip(["both", "neither"]) {
        assert_error(
            err,
            "Subscription",
            name,
            "spec.sink",
            Reason::InvalidSpec,
            &["exactly one of webhook or topic"],
        );
    }
}

#[test]
fn webhook_url_must_be_http_or_https_with_a_host() {
    let out = compile_with_chat(&[
        subscription(
            "ftp",
            "{topics: [chat.room], sink: {webhook: {url: \"ftp://files.example/in\"}}}",
        ),
        subscription("relative", "{topics: [chat.room], sink: {webhook: {url: /events}}}"),
        subscription(
            "tls",
            "{topics: [chat.room], sink: {webhook: {url: \"https://hooks.example/e\"}}}",
        ),
    ]);
    assert_eq!(out.errors.len(), 2, "{:#?}", out.errors);
    assert_error(
        &out.errors[0],
        "Subscription",
        "ftp",
        "spec.sink.webhook.url",
        Reason::InvalidSpec,
        &["scheme \"ftp\" is not http or https"],
    );
    assert_error(
        &out.errors[1],
        "Subscription",
        "relative",
        "spec.sink.webhook.url",
        Reason::InvalidSpec,
        &["invalid URL"],
    );
    assert_eq!(out.config.subscriptions.len(), 1);
}

#[test]
fn webhook_settings_are_validated() {
    let out = compile_with_chat(&[subscription(
        "hook",
        "{topics: [chat.room], sink: {webhook: {url: \"http://h.example/\", timeout: 0s, \
         headers: {\"Bad Header\": x}, retry: {maxAttempts: 0, initialInterval: 20s, maxInterval: 1s}, \
         deadLetterTopic: audit.dlq}}}",
    )]);
    let fields: Vec<(&str, Reason)> = out.errors.iter().map(|e| (e.field.as_str(), e.reason)).collect();
    assert_eq!(
        fields,
        [
            ("spec.sink.webhook.deadLetterTopic", Reason::UnknownTopic),
            ("spec.sink.webhook.headers", Reason::InvalidSpec),
            ("spec.sink.webhook.retry.initialInterval", Reason::InvalidSpec),
            ("spec.sink.webhook.retry.maxAttempts", Reason::InvalidSpec),
            ("spec.sink.webhook.timeout", Reason::InvalidSpec),
        ]
    );
    assert!(out.errors[0].message.contains("\"audit.dlq\""), "{}", out.errors[0]);
    assert!(out.errors[1].message.contains("\"Bad Header\""), "{}", out.errors[1]);
}

#[test]
fn webhook_headers_from_a_missing_secret_is_secret_not_found() {
    let out = compile_with_chat(&[subscription(
        "hook",
        "{topics: [chat.room], sink: {webhook: {url: \"http://h.example/\", headersFrom: {secretName: hook-headers}}}}",
    )]);
    assert_error(
        single_error(&out),
        "Subscription",
        "hook",
        "spec.sink.webhook.headersFrom",
        Reason::SecretNotFound,
        &["Secret \"hook-headers\" not found"],
    );
}

#[test]
fn webhook_headers_are_merged_from_the_secret() {
    let out = compile_with_chat(&[
        // The Secret's values win over static headers of the same name; a trailing
        // newline (common in files turned into Secrets) is dropped.
        secret(
            "hook-headers",
            "{Authorization: \"Bearer abc\\n\", X-Tenant: from-secret}",
        ),
        subscription(
            "hook",
            "{topics: [chat.room], sink: {webhook: {url: \"http://h.example/\", headersFrom: {secretName: hook-headers}, \
             headers: {X-Tenant: static, X-Static: yes}}}}",
        ),
    ]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    let SinkConfig::Webhook { headers, .. } = &out.config.subscriptions[0].sink else {
        panic!("webhook sink expected")
    };
    let expected: BTreeMap<String, String> = [
        ("Authorization", "Bearer abc"),
        ("X-Static", "yes"),
        ("X-Tenant", "from-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(*headers, expected);
}

#[test]
fn topic_sink_routes_into_an_existing_topic() {
    let out = compile_with_chat(&[
        subscription("archive-chat", "{topics: [\"chat.*\"], sink: {topic: {name: archive}}}"),
        subscription("nowhere", "{topics: [chat.room], sink: {topic: {name: missing}}}"),
    ]);
    assert_error(
        single_error(&out),
        "Subscription",
        "nowhere",
        "spec.sink.topic.name",
        Reason::UnknownTopic,
        &["\"missing\""],
    );
    assert_eq!(
        out.config.subscriptions[0].sink,
        SinkConfig::Topic {
            name: "archive".to_owned()
        }
    );
}

#[test]
fn topic_sink_into_a_topic_it_reads_is_a_routing_loop() {
    let out = compile_with_chat(&[subscription(
        "echo",
        "{topics: [chat.room], sink: {topic: {name: chat.room}}}",
    )]);
    assert_error(
        single_error(&out),
        "Subscription",
        "echo",
        "spec.sink.topic.name",
        Reason::RoutingLoop,
        &["routing \"chat.room\" into \"chat.room\""],
    );
    // A pattern that also matches the destination loops as well.
    let out = compile_with_chat(&[subscription(
        "everything",
        "{topics: [\"**\"], sink: {topic: {name: archive}}}",
    )]);
    assert_error(
        single_error(&out),
        "Subscription",
        "everything",
        "spec.sink.topic.name",
        Reason::RoutingLoop,
        &["\"archive\""],
    );
}

#[test]
fn two_hop_routing_loop_rejects_the_later_subscription() {
    let docs = {
        let mut d = chat_topics();
        d.push(subscription(
            "a-room-to-lobby",
            "{topics: [chat.room], sink: {topic: {name: chat.lobby}}}",
        ));
        d.push(subscription(
            "b-lobby-to-room",
            "{topics: [chat.lobby], sink: {topic: {name: chat.room}}}",
        ));
        d
    };
    let out = compile_docs(&docs);
    assert_error(
        single_error(&out),
        "Subscription",
        "b-lobby-to-room",
        "spec.sink.topic.name",
        Reason::RoutingLoop,
        &["routing \"chat.lobby\" into \"chat.room\" would loop events back into \"chat.lobby\""],
    );
    let names: Vec<&str> = out.config.subscriptions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a-room-to-lobby"]);
    // A chain without a cycle is fine.
    let out = compile_with_chat(&[
        subscription("a", "{topics: [chat.room], sink: {topic: {name: chat.lobby}}}"),
        subscription("b", "{topics: [chat.lobby], sink: {topic: {name: archive}}}"),
    ]);
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(out.config.subscriptions.len(), 2);
}

// ---------------------------------------------------------------------------------------
// Whole-config properties
// ---------------------------------------------------------------------------------------

/// A namespace using every kind, with one broken resource of each kind.
fn mixed_docs() -> Vec<String> {
    vec![
        topic_meta(
            "{name: chat-room, generation: 3, labels: {tier: chat}}",
            "{name: chat.room, presence: true}",
        ),
        topic_meta(
            "{name: chat-typing, generation: 1}",
            "{name: chat.room.typing, defaultPriority: high}",
        ),
        topic(
            "orders.status",
            "{delivery: {guarantee: atLeastOnce, deadLetterTopic: orders.dlq}}",
        ),
        topic("orders.dlq", "{}"),
        topic_meta("{name: broken-topic, generation: 9}", "{maxEventBytes: 1}"),
        secret("jwt-hmac", "{secret: s3cr3t}"),
        secret("hook", "{X-Token: t}"),
        resource(
            "BroadcastPolicy",
            "{name: default, generation: 2}",
            "spec: {topics: [\"chat.**\", \"orders.**\"], auth: {jwt: {secretRef: {name: jwt-hmac, key: secret}}}, \
             rateLimits: {perUser: {eventsPerSecond: 20, burst: 40}}, connection: {maxConnectionsPerPod: 100}}",
        ),
        policy(
            "labels",
            "{topicSelector: {matchLabels: {tier: chat}}, priorities: {high: {queueSize: 64}}}",
        ),
        policy(
            "zz-conflict",
            "{topics: [orders.status], rateLimits: {perUser: {eventsPerSecond: 1}}}",
        ),
        resource(
            "Subscription",
            "{name: audit, generation: 4}",
            "spec: {topics: [\"chat.*\"], filter: [{field: data.lang, op: eq, value: en}], \
             sink: {webhook: {url: \"http://audit/\", headersFrom: {secretName: hook}}}}",
        ),
        subscription(
            "archive",
            "{topics: [orders.status], sink: {topic: {name: orders.dlq}}}",
        ),
        subscription("broken-sub", "{topics: [nope], sink: {topic: {name: orders.dlq}}}"),
    ]
}

#[test]
fn compiling_the_same_resources_in_any_order_gives_the_same_config_and_version() {
    let base = input(&mixed_docs());
    let reference = compile(&base);
    assert_eq!(reference.errors.len(), 3, "{:#?}", reference.errors);
    let mut reversed = base.clone();
    reversed.topics.reverse();
    reversed.subscriptions.reverse();
    reversed.policies.reverse();
    let mut rotated = base.clone();
    rotated.topics.rotate_left(2);
    rotated.subscriptions.rotate_left(1);
    rotated.policies.rotate_left(1);
    let mut docs = mixed_docs();
    docs.reverse();
    let reparsed = input(&docs);
    for (what, variant) in [
        ("reversed", reversed),
        ("rotated", rotated),
        ("documents reversed", reparsed),
    ] {
        let out = compile(&variant);
        assert_eq!(out.config, reference.config, "{what}");
        assert_eq!(out.config.version(), reference.config.version(), "{what}");
        assert_eq!(out.errors, reference.errors, "{what}");
    }
    // And the version is stable across calls and well-formed.
    let v = reference.config.version();
    assert_eq!(v, compile(&base).config.version());
    assert!(v.starts_with("v-") && v.len() == 2 + 24, "{v}");
}

#[test]
fn changing_any_spec_field_changes_the_version() {
    let base_topic = "{name: chat.room, defaultPriority: normal, maxEventBytes: 4096, retention: {maxEvents: 100, maxAge: 1h}, \
                      delivery: {guarantee: atLeastOnce, ackTimeout: 5s, maxRetries: 3, deadLetterTopic: dlq}, presence: true, \
                      access: {subscribe: {anonymous: true}, publish: {roles: [member]}}, schema: {type: object}, \
                      deletionPolicy: Retain}";
    let base_policy = "{topics: [\"chat.*\"], auth: {jwt: {issuer: iss, audience: aud, secretRef: {name: s, key: k}, \
                       claims: {user: sub}, leeway: 30s}}, rateLimits: {perUser: {eventsPerSecond: 20, burst: 40}, \
                       perIP: {connectionsPerSecond: 5, burst: 10}}, priorities: {low: {queueSize: 100}}, \
                       content: {maxEventBytes: 2048, redactFields: [data.password], denyScripts: true}, \
                       connection: {heartbeatInterval: 25s, idleTimeout: 60s, maxSubscriptionsPerConnection: 100, \
                       maxConnectionsPerPod: 50000}, batching: {maxBatch: 64, maxDelay: 5ms}, \
                       compression: {enabled: true, thresholdBytes: 1024}}";
    let base_sub = "{topics: [chat.room], eventTypes: [\"message.*\"], filter: [{field: data.lang, op: eq, value: en}], \
                    minPriority: normal, delivery: {mode: batched, batchSize: 10, batchInterval: 200ms}, \
                    sink: {webhook: {url: \"http://audit/\", headers: {X-A: a}, timeout: 2s, \
                    retry: {maxAttempts: 5, initialInterval: 200ms, maxInterval: 10s}, deadLetterTopic: dlq}}}";
    let build = |t: &str, p: &str, s: &str, secret_value: &str| {
        vec![
            topic("room", t),
            topic("dlq", "{}"),
            secret("s", &format!("{{k: {secret_value}}}")),
            policy("p", p),
            subscription("sub", s),
        ]
    };
    let base_out = compile_docs(&build(base_topic, base_policy, base_sub, "v1"));
    assert!(base_out.errors.is_empty(), "{:#?}", base_out.errors);

    let topic_changes = [
        ("name: chat.room", "name: chat.room2"),
        ("defaultPriority: normal", "defaultPriority: low"),
        ("maxEventBytes: 4096", "maxEventBytes: 1024"),
        ("maxEvents: 100", "maxEvents: 101"),
        ("maxAge: 1h", "maxAge: 2h"),
        ("guarantee: atLeastOnce", "guarantee: atMostOnce"),
        ("ackTimeout: 5s", "ackTimeout: 6s"),
        ("maxRetries: 3", "maxRetries: 4"),
        ("deadLetterTopic: dlq}, presence", "}, presence"),
        ("presence: true", "presence: false"),
        ("anonymous: true", "anonymous: false"),
        ("roles: [member]", "roles: [admin]"),
        ("schema: {type: object}", "schema: {type: object, required: [text]}"),
        ("Retain", "Delete"),
    ];
    let policy_changes = [
        ("topics: [\"chat.*\"]", "topics: [other]"),
        ("issuer: iss", "issuer: iss2"),
        ("audience: aud", "audience: aud2"),
        ("claims: {user: sub}", "claims: {user: uid}"),
        ("leeway: 30s", "leeway: 31s"),
        ("eventsPerSecond: 20", "eventsPerSecond: 21"),
        ("burst: 40", "burst: 41"),
        ("connectionsPerSecond: 5", "connectionsPerSecond: 6"),
        ("queueSize: 100", "queueSize: 101"),
        ("maxEventBytes: 2048", "maxEventBytes: 1500"),
        ("[data.password]", "[data.secret]"),
        ("denyScripts: true", "denyScripts: false"),
        ("heartbeatInterval: 25s", "heartbeatInterval: 20s"),
        ("idleTimeout: 60s", "idleTimeout: 61s"),
        (
            "maxSubscriptionsPerConnection: 100",
            "maxSubscriptionsPerConnection: 99",
        ),
        ("maxConnectionsPerPod: 50000", "maxConnectionsPerPod: 49999"),
        ("maxBatch: 64", "maxBatch: 63"),
        ("maxDelay: 5ms", "maxDelay: 6ms"),
        ("enabled: true", "enabled: false"),
        ("thresholdBytes: 1024", "thresholdBytes: 1023"),
    ];
    let sub_changes = [
        ("topics: [chat.room]", "topics: [\"chat.*\"]"),
        ("\"message.*\"", "\"message.sent\""),
        ("value: en", "value: de"),
        ("minPriority: normal", "minPriority: high"),
        ("mode: batched", "mode: realtime"),
        ("batchSize: 10", "batchSize: 11"),
        ("batchInterval: 200ms", "batchInterval: 300ms"),
        ("http://audit/", "http://audit2/"),
        ("X-A: a", "X-A: b"),
        ("timeout: 2s", "timeout: 3s"),
        ("maxAttempts: 5", "maxAttempts: 6"),
        ("initialInterval: 200ms", "initialInterval: 300ms"),
        ("maxInterval: 10s", "maxInterval: 11s"),
        ("deadLetterTopic: dlq}}", "}}"),
    ];
    let mut variants: Vec<(String, Vec<String>)> = Vec::new();
    for (from, to) in topic_changes {
        assert!(base_topic.contains(from), "{from}");
        variants.push((
            format!("Topic {from}"),
            build(&base_topic.replacen(from, to, 1), base_policy, base_sub, "v1"),
        ));
    }
    for (from, to) in policy_changes {
        assert!(base_policy.contains(from), "{from}");
        variants.push((
            format!("Policy {from}"),
            build(base_topic, &base_policy.replacen(from, to, 1), base_sub, "v1"),
        ));
    }
    for (from, to) in sub_changes {
        assert!(base_sub.contains(from), "{from}");
        variants.push((
            format!("Subscription {from}"),
            build(base_topic, base_policy, &base_sub.replacen(from, to, 1), "v1"),
        ));
    }
    variants.push((
        "Secret value".to_owned(),
        build(base_topic, base_policy, base_sub, "v2"),
    ));

    let mut seen = BTreeMap::from([(base_out.config.version(), "base".to_owned())]);
    for (what, docs) in variants {
        let out = compile_docs(&docs);
        // The topic rename leaves the subscription's literal pattern dangling; every
        // other variant must compile cleanly so the change is in the config itself.
        if what != "Topic name: chat.room" {
            assert!(out.errors.is_empty(), "{what}: {:#?}", out.errors);
        }
        let version = out.config.version();
        if let Some(previous) = seen.insert(version.clone(), what.clone()) {
            panic!("{what} gives the same version {version} as {previous}");
        }
    }

    // A new generation (what the apiserver does on any spec change, including fields
    // only the operator reads, such as autoscaling) is a new version too.
    let mut docs = build(base_topic, base_policy, base_sub, "v1");
    docs[0] = topic_meta("{name: room, generation: 2}", base_topic);
    assert_ne!(compile_docs(&docs).config.version(), base_out.config.version());
}

#[test]
fn sources_list_only_accepted_resources_with_their_generations() {
    let out = compile_docs(&mixed_docs());
    let sources: Vec<(&str, &str, Option<i64>)> = out
        .config
        .sources
        .iter()
        .map(|r| (r.kind.as_str(), r.name.as_str(), r.generation))
        .collect();
    assert_eq!(
        sources,
        [
            ("BroadcastPolicy", "default", Some(2)),
            ("BroadcastPolicy", "labels", None),
            ("Subscription", "archive", None),
            ("Subscription", "audit", Some(4)),
            ("Topic", "chat-room", Some(3)),
            ("Topic", "chat-typing", Some(1)),
            ("Topic", "orders.dlq", None),
            ("Topic", "orders.status", None),
        ]
    );
    assert!(out.config.sources.iter().all(|r| r.namespace == NS));
    let rejected: BTreeSet<(&str, &str)> = out
        .errors
        .iter()
        .map(|e| (e.resource.kind.as_str(), e.resource.name.as_str()))
        .collect();
    assert_eq!(
        rejected,
        BTreeSet::from([
            ("BroadcastPolicy", "zz-conflict"),
            ("Subscription", "broken-sub"),
            ("Topic", "broken-topic"),
        ])
    );
    // The rejected Topic's error carries its generation, for observedGeneration.
    assert_eq!(
        out.errors_for("Topic", "broken-topic")
            .next()
            .expect("error")
            .resource
            .generation,
        Some(9)
    );
    assert_eq!(out.errors_for("Subscription", "broken-sub").count(), 1);
    assert_eq!(out.errors_for("Topic", "chat-room").count(), 0);
    // The accepted part of the namespace still works.
    assert_eq!(
        out.config.topic("chat.room").expect("topic").policies,
        ["default", "labels"]
    );
    assert_eq!(
        out.config.topic("chat.room.typing").expect("topic").policies,
        ["default"]
    );
    assert_eq!(out.config.auth.len(), 1);
    assert_eq!(out.config.connection.max_connections_per_pod, 100);
}

#[test]
fn compile_strict_fails_on_any_error_and_returns_them_all() {
    let errors = compile_strict(&input(&mixed_docs())).expect_err("three resources are broken");
    let reasons: Vec<Reason> = errors.iter().map(|e| e.reason).collect();
    assert_eq!(
        reasons,
        [Reason::PolicyConflict, Reason::UnknownTopic, Reason::InvalidSpec]
    );
    // A single problem anywhere is enough.
    let errors = compile_strict(&input(&[
        topic("a", "{}"),
        topic("b", "{delivery: {deadLetterTopic: c}}"),
    ]))
    .expect_err("b is broken");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].resource.name, "b");
    // With no errors it returns exactly what `compile` builds.
    let clean = input(&[topic("a", "{}"), policy("p", "{content: {denyScripts: true}}")]);
    let config = compile_strict(&clean).expect("clean input compiles");
    assert_eq!(config, compile(&clean).config);
    assert_eq!(topic_names(&config), ["a"]);
}

#[test]
fn errors_display_as_kind_namespace_name_field_message() {
    let out = compile_docs(&[topic("orders", "{delivery: {deadLetterTopic: orders.dlq}}")]);
    assert_eq!(
        single_error(&out).to_string(),
        "Topic default/orders: spec.delivery.deadLetterTopic: dead-letter topic \"orders.dlq\" does not exist (or is invalid) in this namespace"
    );
    let out = compile_with_chat(&[subscription(
        "audit",
        &format!("{{topics: [chat.room], filter: [{{field: data.x, op: regex, value: \"[\"}}], {WEBHOOK}}}"),
    )]);
    let shown = single_error(&out).to_string();
    assert!(
        shown.starts_with("Subscription default/audit: spec.filter[0].value: invalid regex"),
        "{shown}"
    );
    assert_eq!(Reason::RoutingLoop.as_str(), "RoutingLoop");
}

// ---------------------------------------------------------------------------------------
// The shipped examples
// ---------------------------------------------------------------------------------------

#[test]
fn examples_directory_compiles_strictly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (p.display().to_string(), text)
        })
        .collect();
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(
        names,
        ["jwt-secret.yaml", "policy.yaml", "subscriptions.yaml", "topics.yaml"]
    );

    let set = parse_manifests(NS, &sources).unwrap_or_else(|e| panic!("examples parse: {e:#?}"));
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    let config = compile_strict(&set.input).unwrap_or_else(|e| panic!("examples compile: {e:#?}"));

    assert_eq!(
        topic_names(&config),
        [
            "chat.room-42",
            "chat.room-42.typing",
            "notifications",
            "orders.archive",
            "orders.dlq",
            "orders.status"
        ]
    );
    for t in config.topics.values() {
        assert_eq!(t.policies, ["default"], "{} is governed by the default policy", t.name);
        assert_eq!(
            t.limits.per_user,
            Some(RateSpec {
                per_second: 20.0,
                burst: 40
            }),
            "{}",
            t.name
        );
        assert_eq!(t.content.redact, vec![owned(&["password"])], "{}", t.name);
        assert!(t.content.deny_scripts, "{}", t.name);
    }

    let room = config.topic("chat.room-42").expect("chat room");
    assert!(room.presence);
    assert!(room.subscribe.anonymous);
    assert_eq!(room.publish.as_ref().expect("members publish").roles, ["member"]);
    assert_eq!(
        (room.retention.max_events, room.retention.max_age_ms),
        (1000, 3_600_000)
    );
    assert_eq!(room.default_priority, Priority::Normal);
    let schema = room.schema.as_ref().expect("chat schema");
    let validator = jsonschema::validator_for(schema).expect("schema compiles");
    assert!(validator.is_valid(&serde_json::json!({"text": "hello"})));
    assert!(
        validator.is_valid(&serde_json::json!({"user": "u1", "session": "s1"})),
        "presence payloads pass"
    );
    assert!(!validator.is_valid(&serde_json::json!({"text": "x".repeat(2001)})));
    assert!(!validator.is_valid(&serde_json::json!("just a string")));

    let typing = config.topic("chat.room-42.typing").expect("typing topic");
    assert_eq!(typing.default_priority, Priority::High);
    assert_eq!((typing.retention.max_events, typing.retention.max_age_ms), (20, 10_000));
    assert!(typing.subscribe.anonymous);
    assert_eq!(typing.publish.as_ref().expect("members publish").roles, ["member"]);

    let orders = config.topic("orders.status").expect("orders topic");
    assert_eq!(orders.default_priority, Priority::Critical);
    assert_eq!(orders.delivery.guarantee, Guarantee::AtLeastOnce);
    assert_eq!(orders.delivery.ack_timeout_ms, 5_000);
    assert_eq!(orders.delivery.max_retries, 3);
    assert_eq!(orders.delivery.dead_letter_topic.as_deref(), Some("orders.dlq"));
    assert!(!orders.subscribe.anonymous);
    assert_eq!(orders.subscribe.roles, ["customer"]);
    assert_eq!(orders.publish, None);
    assert_eq!(
        orders.queues[Priority::Critical.index()],
        QueueClass {
            queue_size: 1000,
            latency_target_ms: Some(25)
        }
    );
    assert_eq!(
        orders.queues[Priority::Low.index()],
        QueueClass {
            queue_size: 100,
            latency_target_ms: Some(1000)
        }
    );

    let dlq = config.topic("orders.dlq").expect("dead-letter topic");
    assert!(!dlq.subscribe.anonymous);
    assert_eq!(
        (dlq.retention.max_events, dlq.retention.max_age_ms),
        (10_000, 86_400_000)
    );
    assert!(!config.topic("orders.archive").expect("archive").subscribe.anonymous);
    let notifications = config.topic("notifications").expect("notifications");
    assert!(!notifications.subscribe.anonymous);
    assert_eq!(notifications.default_priority, Priority::Normal);

    let [jwt] = config.auth.as_slice() else {
        panic!("one JWT provider expected: {:#?}", config.auth)
    };
    assert_eq!(jwt.policy, "default");
    assert!(matches!(jwt.key, JwtKey::Hmac { .. }), "HS256 expected: {:?}", jwt.key);
    assert_eq!(jwt.issuer.as_deref(), Some("https://auth.example.com"));
    assert_eq!(jwt.audience.as_deref(), Some("eventcast"));
    assert_eq!(
        (
            jwt.user_claim.as_str(),
            jwt.device_claim.as_str(),
            jwt.roles_claim.as_str()
        ),
        ("sub", "device_id", "roles")
    );

    let c = &config.connection;
    assert_eq!((c.heartbeat_interval_ms, c.idle_timeout_ms), (25_000, 60_000));
    assert_eq!(
        (c.max_subscriptions_per_connection, c.max_connections_per_pod),
        (100, 50_000)
    );
    assert_eq!(
        c.per_ip,
        Some(RateSpec {
            per_second: 50.0,
            burst: 100
        })
    );

    let [archive] = config.subscriptions.as_slice() else {
        panic!("one subscription expected: {:#?}", config.subscriptions)
    };
    assert_eq!(archive.name, "orders-archive");
    assert!(archive.topics.matches("orders.status"));
    assert!(archive.event_types.matches("order.shipped") && !archive.event_types.matches("presence.join"));
    assert_eq!(
        archive.sink,
        SinkConfig::Topic {
            name: "orders.archive".to_owned()
        }
    );
}
