//! Direct writes: an event for a connection that is idle (nothing queued, not written
//! to for a while) is written from the fan-out itself; events arriving in a burst are
//! queued and written many per syscall. Either way every client gets every event once,
//! in offset order, and the counters agree with what arrived.

use std::time::Duration;

use eventcast_tests::{ConnectOptions, TestSidecar, WAIT, WsClient, metric};
use serde_json::{Value, json};

const MANIFESTS: &str = r"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: ticks}
spec:
  retention: {maxEvents: 5000, maxAge: 1h}
  access: {subscribe: {anonymous: true}}
";

const BURST: usize = 400;

const BULK: &str = r"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: bulk}
spec:
  maxEventBytes: 1048576
  retention: {maxEvents: 100, maxAge: 1h}
  access: {subscribe: {anonymous: true}}
";

fn offsets(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["offset"].as_u64().expect("event offset"))
        .collect()
}

async fn direct_writes(sc: &TestSidecar) -> f64 {
    metric(&sc.metrics().await, "eventcast_direct_writes_total", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_written_directly_and_bursts_are_queued_in_order() {
    let sc = TestSidecar::start(&[("t.yaml", MANIFESTS)]).await;
    let mut a = sc.client().await;
    let mut b = sc.client().await;
    a.subscribe("ticks").await;
    b.subscribe("ticks").await;
    // Longer than the coalescing window since the subscribe replies were written.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let before = direct_writes(&sc).await;
    let first = sc.publish_ok("ticks", &json!({"type": "tick", "data": {"n": 0}})).await;
    let offset = first["offset"].as_u64().expect("offset");
    for client in [&mut a, &mut b] {
        let got = client.collect_events(1, WAIT).await;
        assert_eq!(offsets(&got), [offset]);
    }
    assert_eq!(
        direct_writes(&sc).await - before,
        2.0,
        "one idle event, two idle subscribers: both written from the fan-out"
    );

    // A burst in one batch: the first event may go out directly, the others find the
    // connection just written to and are queued behind it.
    let before = direct_writes(&sc).await;
    let events: Vec<Value> = (1..=BURST)
        .map(|n| json!({"topic": "ticks", "type": "tick", "data": {"n": n}}))
        .collect();
    let r = sc.post("/v1/events:batch", &json!({"events": events})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let expected: Vec<u64> = (offset + 1..=offset + BURST as u64).collect();
    for client in [&mut a, &mut b] {
        let got = client.collect_events(BURST, WAIT).await;
        assert_eq!(offsets(&got), expected, "every event once, in offset order");
    }
    let direct = direct_writes(&sc).await - before;
    assert!(
        direct < BURST as f64,
        "a burst is coalesced, not written one syscall per event: {direct} of {} deliveries went direct",
        2 * BURST
    );

    let text = sc.metrics().await;
    let out = metric(&text, "eventcast_events_out_total", &[("topic", "ticks")]);
    assert!(
        (out - 2.0 * (BURST as f64 + 1.0)).abs() < f64::EPSILON,
        "events_out counts direct and queued deliveries alike: {out}"
    );
}

/// An event larger than what the kernel will take at once: the direct write leaves a
/// tail, the connection's writer finishes it, and nothing written meanwhile (the events
/// queued behind it, heartbeats) lands inside it. The client parses every frame whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_the_kernel_takes_in_part_is_finished_whole_before_anything_else() {
    const MAX_EVENTS: usize = 40;
    const PAD: usize = 500_000;
    let sc = TestSidecar::start(&[("t.yaml", BULK)]).await;
    // A small receive buffer, and nothing read until everything is published.
    let opts = ConnectOptions {
        recv_buffer: Some(4096),
        ..ConnectOptions::default()
    };
    let mut client = WsClient::connect_with(&sc.ws_url(), opts).await.expect("connects");
    client.subscribe("bulk").await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Publish until an event is not written directly: the kernel buffers are full, and
    // the frame before it (most likely) went in part, leaving its tail to the writer.
    let pad = "x".repeat(PAD);
    let mut published = Vec::new();
    let mut direct = direct_writes(&sc).await;
    let mut filled = false;
    while !filled && published.len() < MAX_EVENTS {
        let n = published.len();
        let r = sc
            .publish_ok("bulk", &json!({"type": "blob", "data": {"n": n, "pad": pad}}))
            .await;
        published.push(r["offset"].as_u64().expect("offset"));
        // Past the coalescing window: each event finds the connection idle unless its
        // writer is still finishing an earlier frame.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let now = direct_writes(&sc).await;
        filled = now == direct;
        direct = now;
    }
    assert!(
        filled,
        "{MAX_EVENTS} events of {PAD} bytes never filled the socket buffers"
    );
    assert!(published.len() > 1, "the first event goes out from the fan-out");
    let events = published.len();

    let got = client.collect_events(events, WAIT * 2).await;
    assert_eq!(offsets(&got), published, "every event once, in offset order");
    for (n, frame) in got.iter().enumerate() {
        let data = &frame["event"]["data"];
        assert_eq!(data["n"], json!(n));
        assert_eq!(data["pad"].as_str().map(str::len), Some(PAD), "event {n} arrived whole");
    }
    // The connection is healthy afterwards: a small event still arrives.
    let last = sc.publish_ok("bulk", &json!({"type": "small", "data": {}})).await;
    let next = client.collect_events(1, WAIT).await;
    assert_eq!(offsets(&next), [last["offset"].as_u64().expect("offset")]);
}
