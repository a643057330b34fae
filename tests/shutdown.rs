//! Graceful shutdown: connected clients are told to reconnect (`disconnect` 4005,
//! `reconnect: true`) after what was queued for them, and `shutdown` returns within its
//! bound even when a client has stopped reading.

use std::time::Duration;

use eventcast_tests::{ConnectOptions, TestSidecar, WAIT, WsClient};
use serde_json::{Value, json};
use tokio::time::Instant;

const TOPICS: &str = r"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: room}
spec:
  access: {subscribe: {anonymous: true}}
";

/// `Settings::for_tests` drains for at most 5 s, then waits up to 2 s for its tasks.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_disconnect_4005_and_shutdown_returns() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let mut a = sc.client().await;
    a.subscribe("room").await;
    let mut b = sc.client().await;
    // A witness subscriber: once it has all three events, the same fan-out has queued
    // them for `a` too (with the Redis backend delivery is asynchronous to the 202).
    let mut witness = sc.client().await;
    witness.subscribe("room").await;
    for n in 1..=3 {
        sc.publish_ok("room", &json!({"type": "x", "data": {"n": n}})).await;
    }
    assert_eq!(witness.collect_events(3, WAIT).await.len(), 3);
    let public = sc.public_addr;

    let started = Instant::now();
    let stopping = tokio::spawn(sc.shutdown());

    // Events published before the shutdown come first, then the disconnect.
    let mut events = 0;
    let disconnect = loop {
        let f: Value = a.next_frame(WAIT).await;
        match f["op"].as_str() {
            Some("event") => events += 1,
            Some("disconnect") => break f,
            _ => panic!("unexpected frame {f}"),
        }
    };
    assert_eq!(events, 3, "queued events are flushed before the disconnect");
    assert_eq!(disconnect["code"], 4005, "{disconnect}");
    assert_eq!(disconnect["reconnect"], true, "{disconnect}");
    let d = b.expect_disconnect(WAIT).await;
    assert_eq!(d["code"], 4005);

    tokio::time::timeout(SHUTDOWN_BOUND, stopping)
        .await
        .expect("shutdown returns within its bound")
        .expect("shutdown task");
    assert!(started.elapsed() < SHUTDOWN_BOUND);
    // Nothing listens any more.
    assert!(
        WsClient::connect_with(&format!("ws://{public}/v1/ws"), ConnectOptions::default())
            .await
            .is_err(),
        "the public listener is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_when_a_client_stopped_reading() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let mut stuck = WsClient::connect_with(
        &sc.ws_url(),
        ConnectOptions {
            recv_buffer: Some(4096),
            ..ConnectOptions::default()
        },
    )
    .await
    .expect("connect");
    stuck.subscribe("room").await;
    // ~8 MiB for a client that reads nothing: its socket and queue stay full.
    let pad = "x".repeat(8 * 1024);
    for _ in 0..10 {
        let events: Vec<Value> = (0..100)
            .map(|_| json!({"topic": "room", "type": "x", "data": {"pad": pad}}))
            .collect();
        let r = sc.post("/v1/events:batch", &json!({"events": events})).await;
        assert_eq!(r.status, 202);
    }
    let started = Instant::now();
    tokio::time::timeout(SHUTDOWN_BOUND, sc.shutdown())
        .await
        .expect("shutdown returns within its bound despite a stuck client");
    println!("shutdown with a stuck client took {:?}", started.elapsed());
    drop(stuck);
}
