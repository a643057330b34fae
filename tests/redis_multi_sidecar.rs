//! Several sidecars on one real Redis Cluster (`EVENTCAST_TEST_REDIS_CLUSTER`, see
//! `eventcast_tests::redis_cluster`), clients on each: an event published on any sidecar
//! reaches every subscriber on every sidecar in offset order; a client recovers through
//! a different sidecar than the one it left; a sidecar is replaced while the others keep
//! delivering; presence is shared. None of these change the cluster's topology, so they
//! take [`RedisCluster::shared`] and isolate themselves by topic name.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventcast_tests::redis_cluster::{RedisCluster, unique_topic};
use eventcast_tests::{
    AUTH_MANIFESTS, FrameRecorder, Jwt, QUIET, TestSidecar, WAIT, WsClient, publish_stream, topic_manifest,
};
use serde_json::{Value, json};

fn offsets(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["offset"].as_u64().expect("event offset"))
        .collect()
}

/// `Ok` when `got` is exactly `1..=last`; otherwise what is wrong with it.
fn check_sequence(got: &[u64], last: u64) -> Result<(), String> {
    if got.iter().copied().eq(1..=last) {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::new();
    let duplicates: Vec<u64> = got.iter().copied().filter(|o| !seen.insert(*o)).collect();
    let missing: Vec<u64> = (1..=last).filter(|o| !seen.contains(o)).collect();
    let disorder = got.windows(2).position(|w| w[1] <= w[0]);
    Err(format!(
        "{} offsets for 1..={last}: missing {missing:?}, duplicated {duplicates:?}, first out of order at index \
         {disorder:?}",
        got.len()
    ))
}

async fn three_sidecars(cluster: &RedisCluster, files: &[(&str, &str)]) -> [TestSidecar; 3] {
    let nodes = cluster.nodes_arg();
    [
        TestSidecar::start_redis(files, &nodes).await,
        TestSidecar::start_redis(files, &nodes).await,
        TestSidecar::start_redis(files, &nodes).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_any_sidecar_reaches_clients_on_all_in_offset_order() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::shared().await;
    let topic = unique_topic("fanout");
    let yaml = topic_manifest(&topic, "");
    let sidecars = three_sidecars(&cluster, &[("t.yaml", &yaml)]).await;
    let mut clients = Vec::new();
    for sc in &sidecars {
        // Two clients per sidecar: one feed per sidecar serves both.
        for _ in 0..2 {
            let mut c = sc.client().await;
            c.subscribe(&topic).await;
            clients.push(c);
        }
    }
    // Publish through each sidecar in turn, then through all three at once.
    let mut epoch = String::new();
    for n in 1..=9u64 {
        let sc = &sidecars[(n % 3) as usize];
        let a = sc
            .publish_ok(&topic, &json!({"type": "msg", "data": {"n": n, "via": n % 3}}))
            .await;
        assert_eq!(a["offset"], n, "offsets count from 1 in the topic's epoch: {a}");
        epoch = a["epoch"].as_str().expect("epoch").to_owned();
    }
    let concurrent = sidecars.iter().enumerate().map(|(i, sc)| {
        let topic = &topic;
        async move {
            for k in 0..10u64 {
                sc.publish_ok(topic, &json!({"type": "burst", "data": {"via": i, "k": k}}))
                    .await;
            }
        }
    });
    futures_util::future::join_all(concurrent).await;

    for (i, c) in clients.iter_mut().enumerate() {
        let events = c.collect_topic_events(&topic, 39, WAIT * 2).await;
        assert_eq!(
            offsets(&events),
            (1..=39).collect::<Vec<u64>>(),
            "client {i}: every offset once, in order"
        );
        assert!(
            events.iter().all(|e| e["epoch"] == epoch.as_str()),
            "client {i}: one epoch"
        );
        for e in &events[..9] {
            assert_eq!(e["event"]["data"]["n"], e["offset"], "{e}");
        }
        // Per publishing sidecar, its burst keeps its order.
        for via in 0..3u64 {
            let ks: Vec<u64> = events
                .iter()
                .filter(|e| e["event"]["type"] == "burst" && e["event"]["data"]["via"] == via)
                .map(|e| e["event"]["data"]["k"].as_u64().expect("k"))
                .collect();
            assert_eq!(ks, (0..10).collect::<Vec<u64>>(), "client {i}, burst via sidecar {via}");
        }
        c.expect_no_event(QUIET).await;
    }
    for c in clients {
        c.close().await;
    }
    for sc in sidecars {
        sc.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_through_another_sidecar_than_the_one_it_left() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::shared().await;
    let topic = unique_topic("recover");
    let yaml = topic_manifest(&topic, "  retention: {maxEvents: 1000, maxAge: 1h}");
    let [a, b, c] = three_sidecars(&cluster, &[("t.yaml", &yaml)]).await;

    let mut on_a = a.client().await;
    on_a.subscribe(&topic).await;
    for n in 1..=3u64 {
        a.publish_ok(&topic, &json!({"type": "msg", "data": {"n": n}})).await;
    }
    let seen = on_a.collect_topic_events(&topic, 3, WAIT).await;
    assert_eq!(offsets(&seen), [1, 2, 3]);
    let epoch = seen[2]["epoch"].as_str().expect("epoch").to_owned();
    on_a.close().await;

    // Missed while away, published through B.
    for n in 4..=8u64 {
        b.publish_ok(&topic, &json!({"type": "msg", "data": {"n": n}})).await;
    }
    // Back through C, which never had a client on this topic.
    let mut on_c = c.client().await;
    let result = on_c
        .request_ok(json!({"op": "subscribe", "topic": topic, "since": {"offset": 3, "epoch": epoch}}))
        .await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(result["epoch"], epoch.as_str(), "{result}");
    assert_eq!(result["offset"], 8, "the reply names the head: {result}");
    let missed = on_c.collect_topic_events(&topic, 5, WAIT).await;
    assert_eq!(offsets(&missed), [4, 5, 6, 7, 8]);
    for e in &missed {
        assert_eq!(e["event"]["data"]["n"], e["offset"], "{e}");
    }
    on_c.expect_no_event(QUIET).await;

    // Then live events, from any sidecar.
    a.publish_ok(&topic, &json!({"type": "msg", "data": {"n": 9}})).await;
    b.publish_ok(&topic, &json!({"type": "msg", "data": {"n": 10}})).await;
    let live = on_c.collect_topic_events(&topic, 2, WAIT).await;
    assert_eq!(offsets(&live), [9, 10], "then live, no gap, no duplicate");

    // The history API of every sidecar agrees.
    for sc in [&a, &b, &c] {
        let h = sc
            .get(&format!("/v1/topics/{topic}/history?since=3&epoch={epoch}"))
            .await;
        assert_eq!(h.status, 200, "{}", h.text);
        assert_eq!(h.body["recovered"], true, "{}", h.body);
        let got: Vec<u64> = h.body["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["offset"].as_u64().expect("offset"))
            .collect();
        assert_eq!(got, (4..=10).collect::<Vec<u64>>(), "{}", h.body);
    }
    on_c.close().await;
    for sc in [a, b, c] {
        sc.shutdown().await;
    }
}

/// Offsets of `frames`' events in arrival order, asserting there is no `lagged` notice
/// and no event of another topic.
fn event_offsets(frames: &[Value], topic: &str) -> Vec<u64> {
    let lagged: Vec<&Value> = frames.iter().filter(|f| f["op"] == "lagged").collect();
    assert!(lagged.is_empty(), "lagged notices: {lagged:?}");
    let events: Vec<Value> = frames.iter().filter(|f| f["op"] == "event").cloned().collect();
    assert!(events.iter().all(|e| e["topic"] == topic), "{events:?}");
    offsets(&events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_is_replaced_while_clients_on_the_others_keep_receiving() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::shared().await;
    let topic = unique_topic("replace");
    let yaml = topic_manifest(&topic, "  retention: {maxEvents: 10000, maxAge: 1h}");
    let files = [("t.yaml", yaml.as_str())];
    let [a, b, c] = three_sidecars(&cluster, &files).await;
    let mut recorders = Vec::new();
    for sc in [&a, &b, &c] {
        let mut client = sc.client().await;
        client.subscribe(&topic).await;
        recorders.push(FrameRecorder::start(client));
    }
    let on_a = recorders.remove(0);

    // A steady stream through B, while A shuts down and a new sidecar (same manifests)
    // takes its place.
    let stop = AtomicBool::new(false);
    let nodes = cluster.nodes_arg();
    let replace = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        a.shutdown().await;
        let (_, before, end) = on_a.finish().await;
        assert!(end.is_some(), "A's client was disconnected by the shutdown");
        let before = event_offsets(&before, &topic);
        let a2 = TestSidecar::start_redis(&files, &nodes).await;
        let mut client = a2.client().await;
        let last = *before.last().expect("A's client got events before the shutdown");
        let epoch = {
            // The epoch of what it saw; the topic has one epoch.
            let h = a2
                .get(&format!("/v1/topics/{topic}/history?since={last}&limit=1"))
                .await;
            h.body["epoch"].as_str().expect("epoch").to_owned()
        };
        let result = client
            .request_ok(json!({"op": "subscribe", "topic": topic, "since": {"offset": last, "epoch": epoch}}))
            .await;
        assert_eq!(result["recovered"], true, "{result}");
        let recorder = FrameRecorder::start(client);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, Ordering::Release);
        (a2, before, recorder)
    };
    let (log, (a2, before, on_a2)) = tokio::join!(publish_stream(&b, &topic, Duration::from_millis(5), &stop), replace);
    assert!(log.gave_up.is_none(), "{:?}", log.gave_up);
    let last = log.acked.last().expect("acked publishes").offset;
    assert_eq!(log.refusals(), 0, "no publish refused: {:?}", log.outages);
    let acked: Vec<u64> = log.acked.iter().map(|a| a.offset).collect();
    assert_eq!(acked, (1..=last).collect::<Vec<u64>>(), "offsets of the acks");

    for (name, r) in [("B", &recorders[0]), ("C", &recorders[1]), ("A'", &on_a2)] {
        assert!(
            r.wait_for_offset(last, WAIT * 2).await,
            "client on {name} got up to {:?} of {last}",
            r.max_offset()
        );
    }
    let mut all = vec![("A'", on_a2)];
    all.extend(["B", "C"].into_iter().zip(recorders));
    for (name, r) in all {
        let (client, frames, end) = r.finish().await;
        assert!(end.is_none(), "client on {name} stays connected: {end:?}");
        let got = event_offsets(&frames, &topic);
        if name == "A'" {
            let mut joined = before.clone();
            joined.extend(&got);
            if let Err(e) = check_sequence(&joined, last) {
                panic!(
                    "A's client, recovered on A' after offset {:?}: {e}; first events after the recovery: {:?}",
                    before.last(),
                    &got[..got.len().min(10)]
                );
            }
        } else if let Err(e) = check_sequence(&got, last) {
            panic!("client on {name}: {e}");
        }
        client.close().await;
    }
    eprintln!(
        "replace: {last} events at 200/s through B, A's client saw {} before A shut down",
        before.len()
    );
    for sc in [a2, b, c] {
        sc.shutdown().await;
    }
}

async fn presence_event(client: &mut WsClient, kind: &str, user: &str) -> Value {
    client
        .expect_frame(&format!("{kind} of {user}"), WAIT * 2, |f| {
            f["op"] == "event" && f["event"]["type"] == kind && f["event"]["data"]["user"] == user
        })
        .await
}

async fn present_users(sc: &TestSidecar, topic: &str) -> Vec<String> {
    let r = sc.get(&format!("/v1/topics/{topic}/presence")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut users: Vec<String> = r.body["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| c["user"].as_str().unwrap_or_default().to_owned())
        .collect();
    users.sort();
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_across_sidecars() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::shared().await;
    let topic = unique_topic("lobby");
    let yaml = topic_manifest(&topic, "  presence: true");
    let [a, b, c] = three_sidecars(&cluster, &[("auth.yaml", AUTH_MANIFESTS), ("t.yaml", &yaml)]).await;
    let jwt = Jwt::test();
    let mut alice = a.client_with_token(&jwt.user("alice", &[])).await;
    alice.subscribe(&topic).await;
    presence_event(&mut alice, "presence.join", "alice").await;
    let mut bob = b.client_with_token(&jwt.user("bob", &[])).await;
    bob.subscribe(&topic).await;
    let mut carol = c.client_with_token(&jwt.user("carol", &[])).await;
    carol.subscribe(&topic).await;
    // Joins on other sidecars arrive through Redis.
    presence_event(&mut alice, "presence.join", "bob").await;
    presence_event(&mut alice, "presence.join", "carol").await;
    presence_event(&mut bob, "presence.join", "carol").await;

    let everyone = ["alice", "bob", "carol"].map(str::to_owned).to_vec();
    for sc in [&a, &b, &c] {
        assert_eq!(
            present_users(sc, &topic).await,
            everyone,
            "every sidecar lists everyone"
        );
    }
    let listed = bob.request_ok(json!({"op": "presence", "topic": topic})).await;
    assert_eq!(listed["clients"].as_array().map(Vec::len), Some(3), "{listed}");

    // A client leaves: seen on the other sidecars.
    carol.close().await;
    presence_event(&mut alice, "presence.leave", "carol").await;
    presence_event(&mut bob, "presence.leave", "carol").await;
    assert_eq!(present_users(&a, &topic).await, ["alice", "bob"]);

    // A sidecar shuts down: its clients leave.
    b.shutdown().await;
    presence_event(&mut alice, "presence.leave", "bob").await;
    assert_eq!(present_users(&a, &topic).await, ["alice"]);
    assert_eq!(present_users(&c, &topic).await, ["alice"]);
    drop(bob);
    alice.close().await;
    a.shutdown().await;
    c.shutdown().await;
}
