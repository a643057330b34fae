//! `atLeastOnce` delivery: events published with `requiresAck` are redelivered (same
//! offset) until acked, at most `maxRetries` times, then dead-lettered to the topic's
//! `deadLetterTopic` and counted in metrics.

use std::time::Duration;

use eventcast_tests::{QUIET, TestSidecar, WAIT, eventually, metric};
use serde_json::json;

/// `orders`: ack within 200 ms, 2 redeliveries, then `orders.dlq`. `payments`: ack within
/// 1 s, 1 redelivery (room for a test's ack on a busy machine).
const TOPICS: &str = r"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: orders}
spec:
  defaultPriority: critical
  delivery: {guarantee: atLeastOnce, ackTimeout: 200ms, maxRetries: 2, deadLetterTopic: orders.dlq}
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: orders-dlq}
spec:
  name: orders.dlq
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: payments}
spec:
  delivery: {guarantee: atLeastOnce, ackTimeout: 1s, maxRetries: 1, deadLetterTopic: orders.dlq}
  access: {subscribe: {anonymous: true}}
";

/// Longer than `payments`' last deadline after a redelivery (1 s) with some room.
const PAST_PAYMENT_DEADLINE: Duration = Duration::from_millis(1500);

/// Longer than the last redelivery deadline (3 x 200 ms) with room for a busy machine.
const PAST_ALL_RETRIES: Duration = Duration::from_millis(900);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_events_are_redelivered_then_dead_lettered() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let mut consumer = sc.client().await;
    consumer.subscribe("orders").await;
    let mut ops = sc.client().await;
    ops.subscribe("orders.dlq").await;

    let accepted = sc
        .publish_ok(
            "orders",
            &json!({"type": "order.shipped", "requiresAck": true, "data": {"order": 42}}),
        )
        .await;
    let offset = accepted["offset"].as_u64().expect("offset");

    let dead = ops.collect_events(1, WAIT).await;
    let dead = &dead[0];
    assert_eq!(dead["topic"], "orders.dlq");
    assert_eq!(dead["event"]["type"], "eventcast.deadletter", "{dead}");
    let data = &dead["event"]["data"];
    assert_eq!(data["topic"], "orders", "{data}");
    assert_eq!(data["offset"], offset, "{data}");
    assert_eq!(data["epoch"], accepted["epoch"]);
    assert_eq!(data["deliveries"], 3, "first delivery + 2 retries: {data}");
    assert_eq!(
        data["event"]["data"],
        json!({"order": 42}),
        "carries the original event"
    );
    assert_eq!(dead["event"]["causationId"], accepted["id"], "{dead}");

    let deliveries = consumer.collect_events(3, WAIT).await;
    for d in &deliveries {
        assert_eq!(d["offset"], offset, "redeliveries keep the offset: {d}");
        assert_eq!(d["event"]["id"], accepted["id"]);
        assert_eq!(d["event"]["requiresAck"], true);
    }
    consumer.expect_no_event(PAST_ALL_RETRIES).await;
    ops.expect_no_event(QUIET).await;

    let text = sc.metrics().await;
    assert!(
        (metric(&text, "eventcast_dead_lettered_total", &[("topic", "orders")]) - 1.0).abs() < f64::EPSILON,
        "{text}"
    );
    assert!(
        (metric(&text, "eventcast_redeliveries_total", &[("topic", "orders")]) - 2.0).abs() < f64::EPSILON,
        "{text}"
    );
    let h = sc.get("/v1/topics/orders.dlq/history").await;
    assert_eq!(
        h.body["events"].as_array().map(Vec::len),
        Some(1),
        "stored on the DLQ: {}",
        h.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_events_are_not_redelivered() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let mut consumer = sc.client().await;
    consumer.subscribe("payments").await;
    let mut ops = sc.client().await;
    ops.subscribe("orders.dlq").await;

    let accepted = sc
        .publish_ok(
            "payments",
            &json!({"type": "order.paid", "requiresAck": true, "data": {}}),
        )
        .await;
    let got = consumer.collect_events(1, WAIT).await;
    assert_eq!(got[0]["offset"], accepted["offset"]);
    consumer
        .send_json(&json!({"op": "ack", "topic": "payments", "offsets": [accepted["offset"]]}))
        .await;

    consumer.expect_no_event(PAST_PAYMENT_DEADLINE).await;
    ops.expect_no_event(QUIET).await;
    let text = sc.metrics().await;
    assert!(
        (metric(&text, "eventcast_acks_total", &[("topic", "payments")]) - 1.0).abs() < f64::EPSILON,
        "{text}"
    );
    assert!(metric(&text, "eventcast_dead_lettered_total", &[("topic", "payments")]).abs() < f64::EPSILON);
    assert!(metric(&text, "eventcast_redeliveries_total", &[("topic", "payments")]).abs() < f64::EPSILON);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_after_a_redelivery_stops_further_ones() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let mut consumer = sc.client().await;
    consumer.subscribe("payments").await;
    let mut ops = sc.client().await;
    ops.subscribe("orders.dlq").await;

    let accepted = sc
        .publish_ok(
            "payments",
            &json!({"type": "order.paid", "requiresAck": true, "data": {}}),
        )
        .await;
    let got = consumer.collect_events(2, WAIT).await;
    assert_eq!(got[0]["offset"], accepted["offset"]);
    assert_eq!(got[1]["offset"], accepted["offset"], "redelivered once");
    consumer
        .send_json(&json!({"op": "ack", "topic": "payments", "offsets": [accepted["offset"]]}))
        .await;
    // Without the ack the next deadline would dead-letter it (maxRetries 1).
    consumer.expect_no_event(PAST_PAYMENT_DEADLINE).await;
    ops.expect_no_event(QUIET).await;
    assert!(
        eventually(WAIT, || async {
            metric(&sc.metrics().await, "eventcast_acks_total", &[("topic", "payments")]) >= 1.0
        })
        .await
    );
    let text = sc.metrics().await;
    assert!(metric(&text, "eventcast_dead_lettered_total", &[("topic", "payments")]).abs() < f64::EPSILON);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_requires_ack_are_delivered_once() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let mut consumer = sc.client().await;
    consumer.subscribe("orders").await;
    sc.publish_ok("orders", &json!({"type": "order.viewed", "data": {}}))
        .await;
    let got = consumer.collect_events(1, WAIT).await;
    assert_eq!(got[0]["event"]["requiresAck"], false);
    consumer.expect_no_event(PAST_ALL_RETRIES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn unsubscribing_a_pattern_stops_redeliveries_of_its_topics() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let mut consumer = sc.client().await;
    consumer.subscribe("**").await;
    let mut ops = sc.client().await;
    ops.subscribe("orders.dlq").await;
    sc.publish_ok(
        "orders",
        &json!({"type": "order.paid", "requiresAck": true, "data": {}}),
    )
    .await;
    consumer.collect_topic_events("orders", 1, WAIT).await;
    consumer.request_ok(json!({"op": "unsubscribe", "topic": "**"})).await;
    // Exactly like an exact-topic unsubscribe: nothing more of `orders` arrives.
    consumer.expect_no_event(PAST_ALL_RETRIES).await;
    ops.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_a_topic_stops_its_redeliveries() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let mut consumer = sc.client().await;
    consumer.subscribe("orders").await;
    sc.publish_ok(
        "orders",
        &json!({"type": "order.paid", "requiresAck": true, "data": {}}),
    )
    .await;
    consumer.collect_events(1, WAIT).await;
    consumer
        .request_ok(json!({"op": "unsubscribe", "topic": "orders"}))
        .await;
    consumer.expect_no_event(PAST_ALL_RETRIES).await;
}
