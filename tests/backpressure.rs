//! Backpressure: a client that stops reading does not slow the others; its lowest
//! classes are shed and it is told (`lagged`, with the topic and offsets) when it
//! resumes; critical events are never shed silently — the slow connection is closed
//! with code 4008 and may reconnect at once.
//!
//! The slow client has a tiny socket receive buffer and simply stops polling its
//! stream, so the server's socket buffers fill and the connection's queue grows. The
//! fast client reads in lockstep with the publisher (batches smaller than the queue
//! size), so it never falls behind however busy the machine is; each round it must
//! get its events within the usual wait, while the slow one is stuck.

use std::collections::BTreeSet;

use eventcast_tests::{ConnectOptions, QUIET, TestSidecar, WAIT, WsClient, eventually, metric};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Queues of 5 for `low` and `critical`; `feed` is low priority, `alerts` critical.
const MANIFESTS: &str = r"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: feed}
spec:
  defaultPriority: low
  retention: {maxEvents: 10, maxAge: 1h}
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: alerts}
spec:
  defaultPriority: critical
  retention: {maxEvents: 5000, maxAge: 1h}
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: BroadcastPolicy
metadata: {name: queues}
spec:
  topics: [feed, alerts]
  priorities:
    low: {queueSize: 5}
    critical: {queueSize: 5}
";

/// Events per round: below the queue size, so the fast reader never sheds.
const ROUND: usize = 4;
/// 8 KiB payloads fill socket buffers quickly.
const PAYLOAD_BYTES: usize = 8 * 1024;
/// Upper bound on rounds: 700 x 4 x 8 KiB is ~22 MiB, far more than the kernel buffers
/// (at most 4 MiB of send buffer here) plus a queue of 5.
const MAX_ROUNDS: usize = 700;

async fn slow_client(sc: &TestSidecar) -> WsClient {
    WsClient::connect_with(
        &sc.ws_url(),
        ConnectOptions {
            recv_buffer: Some(4096),
            ..ConnectOptions::default()
        },
    )
    .await
    .expect("connect slow client")
}

/// Publishes one round to `topic` and has `fast` read it; returns the offsets.
async fn round(sc: &TestSidecar, fast: &mut WsClient, topic: &str, payload: &str) -> Vec<u64> {
    let events: Vec<Value> = (0..ROUND)
        .map(|_| json!({"topic": topic, "type": "tick", "data": {"pad": payload}}))
        .collect();
    let r = sc.post("/v1/events:batch", &json!({"events": events})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let got = fast.collect_events(ROUND, WAIT).await;
    got.iter().map(|e| e["offset"].as_u64().expect("offset")).collect()
}

/// When to stop publishing rounds.
#[derive(Clone, Copy, Debug)]
enum Until {
    /// Every event of the last 10 rounds was shed from the slow connection's queue: its
    /// writer took none of them, so it is stuck behind full socket buffers (a writer
    /// that is merely late on a busy machine still takes some).
    SlowReaderStuck,
    /// A fixed number of rounds.
    Rounds(usize),
}

/// Publishes rounds to `topic` until `until`, asserting the fast reader gets every
/// event in order. Returns the last offset published.
async fn publish_until(sc: &TestSidecar, fast: &mut WsClient, topic: &str, until: Until) -> u64 {
    const CHECK_EVERY: usize = 10;
    let payload = "x".repeat(PAYLOAD_BYTES);
    let mut last = 0;
    let mut shed_before = 0.0;
    let started = Instant::now();
    for r in 1..=MAX_ROUNDS {
        let offsets = round(sc, fast, topic, &payload).await;
        let expected: Vec<u64> = (last + 1..=last + ROUND as u64).collect();
        assert_eq!(offsets, expected, "fast reader gets every event, in order (round {r})");
        last = *offsets.last().expect("a round has events");
        let done = match until {
            Until::Rounds(n) => r >= n,
            Until::SlowReaderStuck if r % CHECK_EVERY == 0 => {
                let now = shed(sc, topic).await;
                let all_shed = now - shed_before >= (CHECK_EVERY * ROUND) as f64;
                shed_before = now;
                all_shed
            }
            Until::SlowReaderStuck => false,
        };
        if done {
            println!(
                "{topic}: stopped after {r} rounds ({last} events) in {:?}",
                started.elapsed()
            );
            return last;
        }
    }
    panic!("the slow reader never fell behind in {MAX_ROUNDS} rounds");
}

async fn shed(sc: &TestSidecar, topic: &str) -> f64 {
    metric(&sc.metrics().await, "eventcast_shed_events_total", &[("topic", topic)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_shed_and_told_while_others_keep_up() {
    let sc = TestSidecar::start(&[("m.yaml", MANIFESTS)]).await;
    let mut fast = sc.client().await;
    fast.subscribe("feed").await;
    let mut slow = slow_client(&sc).await;
    slow.subscribe("feed").await;

    // Stop reading `slow`; keep going until it is stuck and its queue sheds everything.
    let last = publish_until(&sc, &mut fast, "feed", Until::SlowReaderStuck).await;
    fast.expect_no_event(QUIET).await;

    // The slow reader resumes: what it gets plus what it is told it lost covers every
    // offset exactly once, in order.
    let mut received = Vec::new();
    let mut lagged: Vec<(u64, u64)> = Vec::new();
    let deadline = Instant::now() + WAIT * 2;
    while received.last() != Some(&last) {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = slow.next_frame(left).await;
        match f["op"].as_str() {
            Some("event") => received.push(f["offset"].as_u64().expect("offset")),
            Some("lagged") => {
                assert_eq!(f["topic"], "feed", "{f}");
                let (from, to) = (f["from"].as_u64().expect("from"), f["to"].as_u64().expect("to"));
                assert!(from <= to && to <= last, "{f}");
                lagged.push((from, to));
            }
            _ => panic!("unexpected frame {f}"),
        }
    }
    assert!(!lagged.is_empty(), "a lagged notice was sent");
    assert!(received.windows(2).all(|w| w[0] < w[1]), "events stay in offset order");
    let got: BTreeSet<u64> = received.iter().copied().collect();
    let mut lost = BTreeSet::new();
    for (from, to) in &lagged {
        for o in *from..=*to {
            assert!(!got.contains(&o), "offset {o} reported lagged but delivered");
            lost.insert(o);
        }
    }
    let all: BTreeSet<u64> = (1..=last).collect();
    let covered: BTreeSet<u64> = got.union(&lost).copied().collect();
    assert_eq!(covered, all, "no silent gap");
    assert!(lost.len() >= 20, "{} shed", lost.len());
    slow.expect_no_event(QUIET).await;

    let text = sc.metrics().await;
    let shed_count = metric(
        &text,
        "eventcast_shed_events_total",
        &[("topic", "feed"), ("priority", "low")],
    );
    assert!(
        (shed_count - lost.len() as f64).abs() < f64::EPSILON,
        "{shed_count} vs {}",
        lost.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_event_overtakes_queued_lower_ones() {
    let sc = TestSidecar::start(&[("m.yaml", MANIFESTS)]).await;
    let mut fast = sc.client().await;
    fast.subscribe("feed").await;
    let mut slow = slow_client(&sc).await;
    slow.subscribe("feed").await;
    let last_low = publish_until(&sc, &mut fast, "feed", Until::SlowReaderStuck).await;
    // The slow connection's low queue is full of the newest events; now a critical one.
    let urgent = sc
        .publish_ok("feed", &json!({"type": "alarm", "priority": "critical", "data": {}}))
        .await;
    let urgent_offset = urgent["offset"].as_u64().expect("offset");
    assert_eq!(urgent_offset, last_low + 1);

    let mut order = Vec::new();
    while !(order.contains(&urgent_offset) && order.contains(&last_low)) {
        let f = slow.next_frame(WAIT).await;
        if f["op"] == "event" {
            order.push(f["offset"].as_u64().expect("offset"));
        }
    }
    let pos = |o: u64| order.iter().position(|x| *x == o).expect("received");
    assert!(
        pos(urgent_offset) < pos(last_low),
        "the critical event is written before queued low ones: {:?}",
        &order[order.len().saturating_sub(8)..]
    );
    let lows: Vec<u64> = order.iter().copied().filter(|o| *o != urgent_offset).collect();
    assert!(lows.windows(2).all(|w| w[0] < w[1]), "FIFO within a class");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn lagged_notices_are_counted_in_metrics() {
    let sc = TestSidecar::start(&[("m.yaml", MANIFESTS)]).await;
    let mut fast = sc.client().await;
    fast.subscribe("feed").await;
    let mut slow = slow_client(&sc).await;
    slow.subscribe("feed").await;
    publish_until(&sc, &mut fast, "feed", Until::SlowReaderStuck).await;
    slow.expect_op("lagged", WAIT * 2).await;
    assert!(
        eventually(WAIT, || async {
            metric(&sc.metrics().await, "eventcast_lagged_notices_total", &[]) >= 1.0
        })
        .await,
        "a lagged notice was sent but eventcast_lagged_notices_total stayed 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_critical_events_is_disconnected_with_4008() {
    let sc = TestSidecar::start(&[("m.yaml", MANIFESTS)]).await;
    let mut fast = sc.client().await;
    fast.subscribe("alerts").await;
    let mut slow = slow_client(&sc).await;
    let sub = slow.subscribe("alerts").await;
    let epoch = sub["epoch"].as_str().expect("epoch").to_owned();

    // Nothing critical is ever shed; the only way to see the slow connection give up
    // without reading it is to publish well past what its buffers can hold.
    // 300 rounds: 1200 x 8 KiB = 9.6 MiB.
    let last = publish_until(&sc, &mut fast, "alerts", Until::Rounds(300)).await;
    let text = sc.metrics().await;
    assert!(
        metric(&text, "eventcast_shed_events_total", &[("topic", "alerts")]).abs() < f64::EPSILON,
        "critical events are never shed: {text}"
    );

    // The slow reader resumes: it gets what was buffered, then the disconnect.
    let mut last_seen = 0;
    let disconnect = loop {
        let f = slow.next_frame(WAIT).await;
        match f["op"].as_str() {
            Some("event") => {
                let o = f["offset"].as_u64().expect("offset");
                assert_eq!(o, last_seen + 1, "no gap before the disconnect");
                last_seen = o;
            }
            Some("disconnect") => break f,
            _ => panic!("unexpected frame {f}"),
        }
    };
    assert_eq!(disconnect["code"], 4008, "{disconnect}");
    assert_eq!(disconnect["reconnect"], true, "{disconnect}");
    assert!(
        disconnect["reason"].as_str().is_some_and(|r| r.contains("alerts")),
        "{disconnect}"
    );
    assert!(last_seen < last, "it fell behind: saw {last_seen} of {last}");
    assert!(
        eventually(WAIT, || async {
            metric(&sc.metrics().await, "eventcast_disconnects_total", &[("code", "4008")]) >= 1.0
        })
        .await
    );

    // It may reconnect at once and is served again (recovering more missed critical
    // events than the queue holds is covered in recovery.rs).
    let mut again = sc.client().await;
    again.subscribe("alerts").await;
    let next = sc.publish_ok("alerts", &json!({"type": "tick", "data": {}})).await;
    let got = again.collect_events(1, WAIT).await;
    assert_eq!(got[0]["offset"], next["offset"]);
    assert_eq!(next["offset"], last + 1);
    let h = sc
        .get(&format!(
            "/v1/topics/alerts/history?since={last_seen}&epoch={epoch}&limit=10000"
        ))
        .await;
    assert_eq!(h.body["recovered"], true, "the app can still read what it missed");
    assert_eq!(
        h.body["events"].as_array().map(Vec::len),
        Some(usize::try_from(last + 1 - last_seen).expect("fits"))
    );

    // The fast reader was never disconnected.
    fast.collect_events(1, WAIT).await;
    fast.send_json(&json!({"op": "ping", "id": 1})).await;
    fast.expect_op("pong", WAIT).await;
}
