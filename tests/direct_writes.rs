//! Direct writes: an event for a connection that is idle (nothing queued, not written
//! to for a while) is written from the fan-out itself; events arriving in a burst are
//! queued and written many per syscall. Either way every client gets every event once,
//! in offset order, and the counters agree with what arrived.

use eventcast_tests::{TestSidecar, WAIT, metric};
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
