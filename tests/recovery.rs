//! Recovery after a reconnect: `since: {offset, epoch}` replays exactly the missed
//! events before live ones, or says `recovered: false` when the gap cannot be filled
//! (another epoch, or a position older than retention) — never a silent gap.

use eventcast_tests::{QUIET, TestSidecar, WAIT};
use serde_json::{Value, json};

const TOPICS: &str = r"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: room}
spec:
  retention: {maxEvents: 100, maxAge: 1h}
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: brief}
spec:
  retention: {maxEvents: 3, maxAge: 1h}
  access: {subscribe: {anonymous: true}}
";

fn offsets(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["offset"].as_u64().expect("event offset"))
        .collect()
}

async fn publish_n(sc: &TestSidecar, topic: &str, from: u64, to: u64) -> String {
    let mut epoch = String::new();
    for n in from..=to {
        let a = sc.publish_ok(topic, &json!({"type": "msg", "data": {"n": n}})).await;
        assert_eq!(a["offset"], n, "{a}");
        epoch = a["epoch"].as_str().expect("epoch").to_owned();
    }
    epoch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_since_replays_exactly_the_missed_events_then_live_ones() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let mut first = sc.client().await;
    first.subscribe("room").await;
    publish_n(&sc, "room", 1, 2).await;
    let seen = first.collect_events(2, WAIT).await;
    let last = &seen[1];
    let (offset, epoch) = (last["offset"].clone(), last["epoch"].clone());
    assert_eq!(offset, 2);
    first.close().await;

    publish_n(&sc, "room", 3, 6).await;

    let mut again = sc.client().await;
    let result = again
        .request_ok(json!({"op": "subscribe", "topic": "room", "since": {"offset": offset, "epoch": epoch}}))
        .await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(result["offset"], 6, "{result}");
    assert_eq!(result["epoch"], epoch);
    let replayed = again.collect_events(4, WAIT).await;
    assert_eq!(offsets(&replayed), [3, 4, 5, 6]);
    for e in &replayed {
        assert_eq!(e["event"]["data"]["n"], e["offset"], "{e}");
    }
    again.expect_no_event(QUIET).await;

    publish_n(&sc, "room", 7, 8).await;
    let live = again.collect_events(2, WAIT).await;
    assert_eq!(offsets(&live), [7, 8], "then live events, no gap, no duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_during_recovery_are_neither_lost_nor_duplicated() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let epoch = publish_n(&sc, "room", 1, 20).await;

    let mut client = sc.client().await;
    // Publish concurrently with the subscribe so live events race the replay.
    let publisher = async {
        for n in 21..=40 {
            let a = sc.publish_ok("room", &json!({"type": "msg", "data": {"n": n}})).await;
            assert_eq!(a["offset"], n);
        }
    };
    let subscriber =
        client.request_ok(json!({"op": "subscribe", "topic": "room", "since": {"offset": 5, "epoch": epoch}}));
    let ((), result) = tokio::join!(publisher, subscriber);
    assert_eq!(result["recovered"], true, "{result}");
    let got = client.collect_events(35, WAIT).await;
    assert_eq!(offsets(&got), (6..=40).collect::<Vec<u64>>());
    client.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_epoch_is_not_recovered_and_nothing_is_replayed() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let epoch = publish_n(&sc, "room", 1, 3).await;
    let mut client = sc.client().await;
    let result = client
        .request_ok(json!({"op": "subscribe", "topic": "room", "since": {"offset": 1, "epoch": "not-the-epoch"}}))
        .await;
    assert_eq!(result["recovered"], false, "{result}");
    assert_eq!(result["epoch"], epoch.as_str(), "the reply names the current epoch");
    assert_eq!(result["offset"], 3);
    client.expect_no_event(QUIET).await;
    publish_n(&sc, "room", 4, 4).await;
    let live = client.collect_events(1, WAIT).await;
    assert_eq!(offsets(&live), [4], "live delivery continues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_older_than_retention_is_not_recovered() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let epoch = publish_n(&sc, "brief", 1, 10).await;
    let mut client = sc.client().await;
    let result = client
        .request_ok(json!({"op": "subscribe", "topic": "brief", "since": {"offset": 2, "epoch": epoch}}))
        .await;
    assert_eq!(result["recovered"], false, "only 8..10 are kept: {result}");
    client.expect_no_event(QUIET).await;

    // The oldest kept position is still recoverable.
    let mut edge = sc.client().await;
    let result = edge
        .request_ok(json!({"op": "subscribe", "topic": "brief", "since": {"offset": 7, "epoch": epoch}}))
        .await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(offsets(&edge.collect_events(3, WAIT).await), [8, 9, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_the_latest_offset_recovers_with_nothing_to_replay() {
    let sc = TestSidecar::start(&[("t.yaml", TOPICS)]).await;
    let epoch = publish_n(&sc, "room", 1, 3).await;
    let mut client = sc.client().await;
    let result = client
        .request_ok(json!({"op": "subscribe", "topic": "room", "since": {"offset": 3, "epoch": epoch}}))
        .await;
    assert_eq!(result["recovered"], true, "{result}");
    client.expect_no_event(QUIET).await;

    // A position this epoch never reached is not ours to trust.
    let mut ahead = sc.client().await;
    let result = ahead
        .request_ok(json!({"op": "subscribe", "topic": "room", "since": {"offset": 99, "epoch": epoch}}))
        .await;
    assert_eq!(result["recovered"], false, "{result}");
    ahead.expect_no_event(QUIET).await;
}

/// `urgent` (critical) and `chatter` (low) with queues of 5 events per connection.
const SMALL_QUEUES: &str = r"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: urgent}
spec:
  defaultPriority: critical
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: chatter}
spec:
  defaultPriority: low
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: BroadcastPolicy
metadata: {name: queues}
spec:
  topics: [urgent, chatter]
  priorities:
    critical: {queueSize: 5}
    low: {queueSize: 5}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn recovering_more_critical_events_than_the_queue_holds_completes() {
    let sc = TestSidecar::start(&[("t.yaml", SMALL_QUEUES)]).await;
    let epoch = publish_n(&sc, "urgent", 1, 20).await;
    let mut client = sc.client().await;
    // A phone that slept through 20 critical events reconnects: it must get all of them,
    // not a 4008 disconnect that it would get again on every reconnect.
    client
        .send_json(&json!({"op": "subscribe", "id": 1, "topic": "urgent",
        "since": {"offset": 0, "epoch": epoch}}))
        .await;
    let mut offsets_seen = Vec::new();
    let mut recovered = None;
    while offsets_seen.len() < 20 || recovered.is_none() {
        let f = client.next_frame(WAIT).await;
        match f["op"].as_str() {
            Some("event") => offsets_seen.push(f["offset"].as_u64().expect("offset")),
            Some("reply") => recovered = Some(f["result"]["recovered"].clone()),
            _ => panic!("recovery of 20 critical events ended with {f} after {offsets_seen:?}"),
        }
    }
    assert_eq!(recovered, Some(json!(true)));
    assert_eq!(offsets_seen, (1..=20).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn recovering_more_low_events_than_the_queue_holds_completes() {
    let sc = TestSidecar::start(&[("t.yaml", SMALL_QUEUES)]).await;
    let epoch = publish_n(&sc, "chatter", 1, 20).await;
    let mut client = sc.client().await;
    let result = client
        .request_ok(json!({"op": "subscribe", "topic": "chatter", "since": {"offset": 0, "epoch": epoch}}))
        .await;
    assert_eq!(result["recovered"], true, "{result}");
    let mut frames = Vec::new();
    while let Ok(f) = client.try_next_frame(QUIET * 2).await {
        frames.push(f);
    }
    let offsets_seen: Vec<u64> = frames.iter().filter_map(|f| f["offset"].as_u64()).collect();
    assert_eq!(
        offsets_seen,
        (1..=20).collect::<Vec<u64>>(),
        "recovered: true promised every missed event; got {frames:?}"
    );
}
