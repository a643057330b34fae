//! Failure scenarios of the Redis backend against the real 6-node cluster
//! (`EVENTCAST_TEST_REDIS_CLUSTER`, see `eventcast_tests::redis_cluster`):
//!
//! - a master fails over while a publisher streams to an `atLeastOnce` topic: every
//!   event that got `202` is delivered to (or recoverable by) every subscriber;
//! - the master of a topic is down: publishes get `503` + `Retry-After`, `/readyz`
//!   reflects it, clients stay connected and receive what is published afterwards;
//! - a sidecar is killed mid-stream and replaced: its clients recover without gaps;
//! - the topic's slot migrates (`redis-cli --cluster reshard`) while traffic flows.
//!
//! Tests that change the topology take [`RedisCluster::exclusive`] (the guard restarts
//! killed nodes and waits for health when dropped); each prints what it measured.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventcast_tests::redis_cluster::{RedisCluster, unique_topic};
use eventcast_tests::{
    Acked, FrameRecorder, StreamLog, TestSidecar, WAIT, eventually, metric, publish_stream, topic_manifest,
};
use serde_json::{Value, json};

/// One event every 5 ms: 200 events/s.
const EVERY: Duration = Duration::from_millis(5);
/// Round trips of the slot in the migration test (before the backend's connection
/// supervisor, about one move in ten wedged the publishing sidecar's command client).
const MOVES: usize = 10;

/// A key of the topic (all its keys share the `{topic}` hash tag, so one slot).
fn log_key(topic: &str) -> String {
    format!("ec:{{{topic}}}:log")
}

/// How the acknowledged events fared at one subscriber.
#[derive(Debug, Default)]
struct Fate {
    delivered: usize,
    /// Not delivered live, but served by the history API of a sidecar.
    from_history: Vec<u64>,
    /// Neither delivered nor recoverable.
    lost: Vec<Acked>,
    /// Event frames whose offset did not increase within an epoch.
    out_of_order: usize,
    /// Offsets delivered more than once.
    duplicates: usize,
    lagged: Vec<Value>,
    /// Epochs seen in event frames.
    epochs: Vec<String>,
}

/// Checks every acknowledged event against what one subscriber received, looking up the
/// ones it did not receive in the history of each of `sidecars`.
async fn fate_of(acked: &[Acked], frames: &[Value], topic: &str, sidecars: &[&TestSidecar]) -> Fate {
    let mut fate = Fate::default();
    let mut delivered: HashMap<(String, u64), Value> = HashMap::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    for f in frames {
        match f["op"].as_str() {
            Some("lagged") => fate.lagged.push(f.clone()),
            Some("event") if f["topic"] == topic => {
                let epoch = f["epoch"].as_str().unwrap_or_default().to_owned();
                let offset = f["offset"].as_u64().expect("event offset");
                if !fate.epochs.contains(&epoch) {
                    fate.epochs.push(epoch.clone());
                }
                if last.get(&epoch).is_some_and(|&l| offset <= l) {
                    fate.out_of_order += 1;
                }
                last.insert(epoch.clone(), offset);
                if delivered
                    .insert((epoch, offset), f["event"]["data"]["n"].clone())
                    .is_some()
                {
                    fate.duplicates += 1;
                }
            }
            _ => {}
        }
    }
    for a in acked {
        if delivered.get(&(a.epoch.clone(), a.offset)) == Some(&json!(a.n)) {
            fate.delivered += 1;
            continue;
        }
        let mut found = false;
        for sc in sidecars {
            let h = sc
                .get(&format!(
                    "/v1/topics/{topic}/history?since={}&epoch={}&limit=1",
                    a.offset - 1,
                    a.epoch
                ))
                .await;
            let e = &h.body["events"][0];
            if h.status == 200
                && h.body["recovered"] == true
                && e["offset"] == a.offset
                && e["event"]["data"]["n"] == a.n
            {
                found = true;
                break;
            }
        }
        if found {
            fate.from_history.push(a.offset);
        } else {
            fate.lost.push(a.clone());
        }
    }
    fate
}

/// Waits (bounded) until `recorder` received every acknowledged `(epoch, offset)`.
async fn wait_for_all(recorder: &FrameRecorder, acked: &[Acked], timeout: Duration) -> bool {
    let want: Vec<(String, u64)> = acked.iter().map(|a| (a.epoch.clone(), a.offset)).collect();
    recorder
        .wait_for(timeout, |frames| {
            let got: std::collections::HashSet<(&str, u64)> = frames
                .iter()
                .filter(|f| f["op"] == "event")
                .filter_map(|f| Some((f["epoch"].as_str()?, f["offset"].as_u64()?)))
                .collect();
            want.iter().all(|(e, o)| got.contains(&(e.as_str(), *o)))
        })
        .await
}

fn describe(log: &StreamLog) -> String {
    let windows: Vec<String> = log
        .outages
        .iter()
        .map(|o| {
            format!(
                "{:?} from first 503 to next 202 ({:?} from sending the first refused publish; {} refusals)",
                o.window(),
                o.stall(),
                o.refusals
            )
        })
        .collect();
    format!(
        "{} events acked ({} as duplicates of an unanswered try), {} refusals, outage windows [{}], slowest answer {:?}",
        log.acked.len(),
        log.acked.iter().filter(|a| a.duplicate).count(),
        log.refusals(),
        windows.join(", "),
        log.slowest
    )
}

fn manifest_lines(text: &str, name: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with(name))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load_loses_no_acknowledged_event() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::exclusive().await;
    cluster.wait_healthy(Duration::from_secs(30)).await;
    let topic = unique_topic("failover");
    let yaml = topic_manifest(
        &topic,
        "  delivery: {guarantee: atLeastOnce}\n  retention: {maxEvents: 100000, maxAge: 1h}",
    );
    let files = [("t.yaml", yaml.as_str())];
    let nodes = cluster.nodes_arg();
    let a = TestSidecar::start_redis(&files, &nodes).await;
    let b = TestSidecar::start_redis(&files, &nodes).await;
    let mut recorders = Vec::new();
    for sc in [&a, &b] {
        let mut c = sc.client().await;
        c.subscribe(&topic).await;
        recorders.push(FrameRecorder::start(c));
    }
    let key = log_key(&topic);
    let master = cluster.master_for(&key).await;

    let stop = AtomicBool::new(false);
    let control = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = cluster.kill_master_for(&key).await;
        let failover = cluster.wait_for_failover(killed, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Release);
        (killed, failover)
    };
    let (log, (killed, failover)) = tokio::join!(publish_stream(&a, &topic, EVERY, &stop), control);
    assert_eq!(master.port(), killed, "the killed node was the topic's master");

    for r in &recorders {
        wait_for_all(r, &log.acked, Duration::from_secs(15)).await;
    }
    let mut fates = Vec::new();
    for r in recorders {
        let (client, frames, end) = r.finish().await;
        assert!(
            end.is_none(),
            "subscribers stay connected through the failover: {end:?}"
        );
        fates.push(fate_of(&log.acked, &frames, &topic, &[&a, &b]).await);
        client.close().await;
    }
    let waits = manifest_lines(&a.metrics().await, "eventcast_replica_wait_total");
    let epochs: std::collections::BTreeSet<&str> = log.acked.iter().map(|x| x.epoch.as_str()).collect();
    eprintln!(
        "failover under load: killed master {master}; replica took over {failover:?} after the kill; publisher: {}; \
         acked epochs {epochs:?}; replica waits: {waits}",
        describe(&log)
    );
    for (name, f) in ["A", "B"].iter().zip(&fates) {
        eprintln!(
            "  subscriber on {name}: {} delivered live, {} only via history, {} LOST, {} out of order, {} duplicates, \
             {} lagged notices {:?}, epochs {:?}",
            f.delivered,
            f.from_history.len(),
            f.lost.len(),
            f.out_of_order,
            f.duplicates,
            f.lagged.len(),
            f.lagged,
            f.epochs
        );
    }

    cluster.restart_node(killed).await;
    cluster.wait_healthy(Duration::from_secs(30)).await;
    a.shutdown().await;
    b.shutdown().await;

    assert!(log.gave_up.is_none(), "{:?}", log.gave_up);
    assert!(log.acked.len() > 200, "the stream ran: {}", describe(&log));
    // The stream ran through the failover: some publish was refused or held up by it.
    assert!(
        log.slowest >= Duration::from_secs(1) || !log.outages.is_empty(),
        "the failover neither refused nor delayed a publish: {}",
        describe(&log)
    );
    for (name, f) in ["A", "B"].iter().zip(&fates) {
        assert!(
            f.lost.is_empty(),
            "subscriber on {name} lost acknowledged events: {:?}",
            f.lost
        );
        assert_eq!(f.out_of_order, 0, "subscriber on {name}: in offset order");
        assert_eq!(f.duplicates, 0, "subscriber on {name}: no offset twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_outage_refuses_publishes_and_connected_clients_recover_without_reconnecting() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::exclusive().await;
    cluster.wait_healthy(Duration::from_secs(30)).await;
    let topic = unique_topic("outage");
    let yaml = topic_manifest(&topic, "");
    let a = TestSidecar::start_redis(&[("t.yaml", &yaml)], &cluster.nodes_arg()).await;
    assert_eq!(a.readyz().await, 200, "ready before the outage");
    let mut client = a.client().await;
    client.subscribe(&topic).await;
    for n in 1..=3u64 {
        a.publish_ok(&topic, &json!({"type": "msg", "data": {"n": n}})).await;
    }
    let before = client.collect_topic_events(&topic, 3, WAIT).await;
    let epoch = before[0]["epoch"].clone();

    let killed = cluster.kill_master_for(&log_key(&topic)).await;
    let killed_at = Instant::now();
    // Publishes are refused with 503 + Retry-After while the slot has no master.
    let mut refusal = None;
    let mut ready_seen = Vec::new();
    while refusal.is_none() {
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "no publish refused within 15 s"
        );
        let r = a
            .publish(&topic, &json!({"id": "during", "type": "msg", "data": {"n": 0}}))
            .await;
        match r.status {
            503 => refusal = Some(r),
            202 => panic!("a publish was accepted with the topic's master down: {}", r.body),
            other => panic!("publish answered {other}: {}", r.text),
        }
        ready_seen.push(a.readyz().await);
    }
    let refusal = refusal.expect("a refusal");
    let first_refusal = killed_at.elapsed();
    assert_eq!(refusal.error_code(), "unavailable", "{}", refusal.text);
    let retry = refusal.header("retry-after").expect("Retry-After on 503");
    assert!(retry.parse::<u64>().is_ok_and(|s| s >= 1), "Retry-After: {retry}");
    // Readiness while the slot is still unserved (sampled until the failover completes).
    let failover = cluster.wait_for_failover(killed, Duration::from_secs(30));
    let sample = async {
        for _ in 0..10 {
            ready_seen.push(a.readyz().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (failover, ()) = tokio::join!(failover, sample);

    // After the failover: publishes succeed again (retrying after Retry-After).
    let mut accepted = None;
    while accepted.is_none() {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "publishes still refused 30 s after the kill"
        );
        let r = a.publish(&topic, &json!({"type": "msg", "data": {"n": 4}})).await;
        match r.status {
            202 => accepted = Some(r.body),
            503 => {
                tokio::time::sleep(Duration::from_secs(
                    r.header("retry-after").and_then(|s| s.parse().ok()).unwrap_or(1),
                ))
                .await;
            }
            other => panic!("publish answered {other}: {}", r.text),
        }
    }
    let recovered_after = killed_at.elapsed();
    let ready_again = eventually(Duration::from_secs(10), || async { a.readyz().await == 200 }).await;
    for n in 5..=6u64 {
        a.publish_ok(&topic, &json!({"type": "msg", "data": {"n": n}})).await;
    }
    let errors = metric(&a.metrics().await, "eventcast_backend_errors_total", &[]);
    eprintln!(
        "master outage: first 503 {first_refusal:?} after the kill, failover {failover:?}, publishes accepted again \
         {recovered_after:?} after the kill; /readyz during the outage: {ready_seen:?}; backend errors counted: {errors}"
    );

    // The client never reconnected and gets what was published after the recovery, in order.
    let after = client.collect_topic_events(&topic, 3, WAIT * 2).await;
    let data: Vec<Value> = after.iter().map(|e| e["event"]["data"]["n"].clone()).collect();
    assert_eq!(data, [json!(4), json!(5), json!(6)], "{after:?}");
    let accepted = accepted.expect("accepted");
    if accepted["epoch"] == epoch {
        let offs: Vec<u64> = after.iter().map(|e| e["offset"].as_u64().expect("offset")).collect();
        assert_eq!(offs, [4, 5, 6], "same epoch: offsets continue");
    } else {
        eprintln!("master outage: the topic's epoch changed across the failover (history not replicated)");
    }
    client.send_json(&json!({"op": "ping", "id": "still-there"})).await;
    let pong = client.expect_op("pong", WAIT).await;
    assert_eq!(pong["id"], "still-there", "the same connection answers");

    cluster.restart_node(killed).await;
    cluster.wait_healthy(Duration::from_secs(30)).await;
    assert!(ready_again, "/readyz is 200 again after the failover");
    assert!(errors >= 1.0, "the outage is counted in eventcast_backend_errors_total");
    assert!(
        ready_seen.contains(&503),
        "/readyz never said 503 while the topic's master was down: {ready_seen:?}"
    );
    client.close().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_killed_mid_stream_is_replaced_and_its_clients_recover_without_gaps() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::shared().await;
    let topic = unique_topic("killed");
    let yaml = topic_manifest(&topic, "  retention: {maxEvents: 10000, maxAge: 1h}");
    let files = [("t.yaml", yaml.as_str())];
    let nodes = cluster.nodes_arg();
    let a = TestSidecar::start_redis(&files, &nodes).await;
    let b = TestSidecar::start_redis(&files, &nodes).await;
    let mut on_a = Vec::new();
    for _ in 0..2 {
        let mut c = a.client().await;
        c.subscribe(&topic).await;
        on_a.push(FrameRecorder::start(c));
    }

    let stop = AtomicBool::new(false);
    let control = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Killed: dropped without a graceful shutdown (its tasks are aborted).
        drop(a);
        let mut before = Vec::new();
        for r in on_a {
            assert!(
                eventually(WAIT, || async { r.ended() }).await,
                "a client of the killed sidecar is disconnected"
            );
            let (_, frames, _) = r.finish().await;
            let events: Vec<Value> = frames.into_iter().filter(|f| f["op"] == "event").collect();
            before.push(events);
        }
        let a2 = TestSidecar::start_redis(&files, &nodes).await;
        // One client comes back through the replacement, one through B.
        let mut again = Vec::new();
        for (events, sc) in before.iter().zip([&a2, &b]) {
            let last = events.last().expect("events before the kill");
            let mut c = sc.client().await;
            let result = c
                .request_ok(json!({"op": "subscribe", "topic": topic,
                    "since": {"offset": last["offset"], "epoch": last["epoch"]}}))
                .await;
            assert_eq!(result["recovered"], true, "{result}");
            again.push(FrameRecorder::start(c));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, Ordering::Release);
        (a2, before, again)
    };
    let (log, (a2, before, again)) = tokio::join!(publish_stream(&b, &topic, EVERY, &stop), control);
    assert!(log.gave_up.is_none(), "{:?}", log.gave_up);
    let last = log.acked.last().expect("acked").offset;
    let all: Vec<u64> = (1..=last).collect();
    assert_eq!(log.acked.iter().map(|x| x.offset).collect::<Vec<_>>(), all);
    for (i, (events, r)) in before.into_iter().zip(again).enumerate() {
        assert!(
            r.wait_for_offset(last, WAIT * 2).await,
            "client {i} got up to {:?} of {last}",
            r.max_offset()
        );
        let (client, frames, end) = r.finish().await;
        assert!(end.is_none(), "{end:?}");
        let lagged: Vec<&Value> = frames.iter().filter(|f| f["op"] == "lagged").collect();
        assert!(lagged.is_empty(), "{lagged:?}");
        let n_before = events.len();
        let joined: Vec<u64> = events
            .iter()
            .chain(frames.iter().filter(|f| f["op"] == "event"))
            .map(|e| e["offset"].as_u64().expect("offset"))
            .collect();
        assert_eq!(joined, all, "client {i}: no gap, no duplicate across the kill");
        eprintln!("sidecar killed: client {i} saw {n_before} events before, recovered the rest ({last} in all)");
        client.close().await;
    }
    a2.shutdown().await;
    b.shutdown().await;
}

/// CRC16 (XMODEM) of `key`: Redis Cluster's hash slot is this modulo 16384.
fn crc16(key: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in key {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// `redis-cli --cluster reshard` of `slots` slots from `from` to `to` (node ids),
/// through `via`; returns how long it took.
async fn reshard(via: std::net::SocketAddr, from: &str, to: &str, slots: u32) -> Duration {
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &via.to_string()])
            .args(["--cluster-from", from, "--cluster-to", to])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("reshard within 60 s")
    .expect("run redis-cli --cluster reshard");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("[ERR]"),
        "reshard failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// A slot left half-migrated (`MIGRATING` on its owner, `IMPORTING` on another master):
/// the owner answers `-ASK` for keys it does not have. fred 10.1 ends the command
/// client's connection task after such redirects (see the backend's `supervisor`); the
/// sidecar restarts it at once, so publishes to other topics keep working and the
/// topic itself works again once the slot is stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_redirect_does_not_wedge_the_command_client() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::exclusive().await;
    cluster.wait_healthy(Duration::from_secs(30)).await;
    let topic = unique_topic("asked");
    let other = unique_topic("other");
    let slot = cluster.slot_for(&log_key(&topic)).await;
    assert_ne!(slot, cluster.slot_for(&log_key(&other)).await, "two slots");
    let owner = cluster.master_for(&log_key(&topic)).await;
    let view = cluster.cluster_nodes(owner).await.expect("CLUSTER NODES");
    let src = view
        .iter()
        .find(|n| n.addr == owner)
        .expect("the owner in its own view")
        .clone();
    let dst = view
        .iter()
        .find(|n| n.is_master() && !n.slots.is_empty() && n.id != src.id)
        .expect("another master")
        .clone();
    let yaml = topic_manifest(&topic, "") + "---\n" + &topic_manifest(&other, "");
    let files = [("t.yaml", yaml.as_str())];
    let a = TestSidecar::start_redis(&files, &cluster.nodes_arg()).await;
    let event = json!({"id": "ev-1", "type": "probe", "data": {}});
    a.publish_ok(&other, &event).await;

    let slot_arg = slot.to_string();
    let set = |node: std::net::SocketAddr, state: &'static str, id: String| {
        let slot_arg = slot_arg.clone();
        let cluster = &cluster;
        async move {
            cluster
                .cli_at(node, &["cluster", "setslot", &slot_arg, state, &id])
                .await
                .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot_arg} {state} on {node}: {e}"))
        }
    };
    set(dst.addr, "importing", src.id.clone()).await;
    set(src.addr, "migrating", dst.id.clone()).await;
    let asked = a.publish(&topic, &event).await;
    // The redirected append fails (503) or, with a fixed fred, lands on the target.
    assert!(
        matches!(asked.status, 202 | 503),
        "publish during the migration: {} {}",
        asked.status,
        asked.text
    );
    let since = Instant::now();
    let other_ok = eventually(Duration::from_secs(5), || async {
        a.publish(&other, &json!({"type": "probe", "data": {}})).await.status == 202
    })
    .await;
    let took = since.elapsed();
    // Back to stable before asserting, so a failure leaves the cluster usable.
    for node in [src.addr, dst.addr] {
        cluster
            .cli_at(node, &["cluster", "setslot", &slot_arg, "stable"])
            .await
            .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot_arg} STABLE on {node}: {e}"));
    }
    let restarts = metric(
        &a.metrics().await,
        "eventcast_redis_client_restarts_total",
        &[("client", "commands")],
    );
    eprintln!(
        "ask redirect: publish to the migrating slot answered {}; another topic accepted again: {other_ok} \
         (after {took:?}); {restarts} restarts of the command client",
        asked.status
    );
    assert!(
        other_ok,
        "publishes to another slot work again within 5 s of the ASK redirects"
    );
    // fred 10.1 ends the task after the redirects; a fred that follows ASK correctly
    // would make this 0 (then this assertion is what to revisit).
    assert!(
        restarts >= 1.0,
        "the command client's connection task was restarted: {restarts}"
    );
    assert_eq!(a.readyz().await, 200, "ready again");
    a.publish_ok(&topic, &json!({"id": "ev-2", "type": "probe", "data": {}}))
        .await;
    a.shutdown().await;
    cluster
        .cli(&[
            "del",
            &format!("ec:default:{{{topic}}}:meta"),
            &format!("ec:default:{{{topic}}}:log"),
        ])
        .await
        .expect("delete the topic's keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrating_under_traffic_keeps_delivery_in_order() {
    let Some(cluster) = RedisCluster::from_env() else {
        return;
    };
    let _guard = RedisCluster::exclusive().await;
    cluster.wait_healthy(Duration::from_secs(30)).await;
    // `--cluster reshard` moves a source's lowest slots first: the topic gets slot 0,
    // the lowest there is, so it is the slot that moves there and back.
    let view = cluster.cluster_nodes(cluster.nodes()[0]).await.expect("CLUSTER NODES");
    let src = view
        .iter()
        .find(|n| n.is_master() && n.serves(0))
        .expect("a master serves slot 0")
        .clone();
    let dst = view
        .iter()
        .find(|n| n.is_master() && !n.slots.is_empty() && n.id != src.id)
        .expect("another master")
        .clone();
    let base = unique_topic("migrate");
    let topic = (0u64..)
        .map(|i| format!("{base}{i}"))
        .find(|t| crc16(t.as_bytes()).is_multiple_of(16384))
        .expect("a name on slot 0");
    assert_eq!(cluster.slot_for(&log_key(&topic)).await, 0);
    eprintln!(
        "slot migration: moving slot 0 of {topic} from {} to {}",
        src.addr, dst.addr
    );

    // A second topic on another slot, to tell a stuck slot from a stuck client.
    let other = unique_topic("other");
    let yaml =
        topic_manifest(&topic, "  retention: {maxEvents: 10000, maxAge: 1h}") + "---\n" + &topic_manifest(&other, "");
    let files = [("t.yaml", yaml.as_str())];
    let nodes = cluster.nodes_arg();
    let a = TestSidecar::start_redis(&files, &nodes).await;
    let b = TestSidecar::start_redis(&files, &nodes).await;
    let mut recorders = Vec::new();
    for sc in [&a, &b] {
        let mut c = sc.client().await;
        c.subscribe(&topic).await;
        recorders.push(FrameRecorder::start(c));
    }

    // The slot moves to another master and back, MOVES times, while A publishes.
    let stop = AtomicBool::new(false);
    let control = async {
        let mut took = Vec::new();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for _ in 0..MOVES {
            for (from, to) in [(&src, &dst), (&dst, &src)] {
                took.push(reshard(from.addr, &from.id, &to.id, 1).await);
                let owner = cluster.master_for(&log_key(&topic)).await;
                assert_eq!(owner, to.addr, "slot 0 moved from {} to {}", from.addr, to.addr);
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }
        stop.store(true, Ordering::Release);
        took
    };
    let (log, took) = tokio::join!(publish_stream(&a, &topic, EVERY, &stop), control);
    let stuck = match &log.gave_up {
        None => None,
        Some(why) => {
            // Is it the cluster or this sidecar's view of it? Ask the others and a new one.
            let event = json!({"type": "probe", "data": {}});
            let via_a = a.publish(&topic, &event).await;
            let other_via_a = a.publish(&other, &event).await;
            let ready_a = a.readyz().await;
            let via_b = b.publish(&topic, &event).await;
            let c = TestSidecar::start_redis(&files, &nodes).await;
            let via_c = c.publish(&topic, &event).await;
            c.shutdown().await;
            // Does A come back by itself?
            let since = Instant::now();
            let recovered = eventually(Duration::from_secs(20), || async {
                a.publish(&other, &event).await.status == 202
            })
            .await;
            let recovery = if recovered {
                format!("A accepted publishes again {:?} later", since.elapsed())
            } else {
                format!("A still refused every publish {:?} later", since.elapsed())
            };
            Some(format!(
                "publisher sidecar A gave up: {why}; now A answers {} {} (another topic on another slot: {} {}; \
                 /readyz {ready_a}), B answers {} {}, a new sidecar {} {}; {recovery}",
                via_a.status,
                via_a.text,
                other_via_a.status,
                other_via_a.text,
                via_b.status,
                via_b.text,
                via_c.status,
                via_c.text,
            ))
        }
    };

    let waited = Instant::now();
    for r in &recorders {
        wait_for_all(r, &log.acked, Duration::from_secs(15)).await;
    }
    let caught_up = waited.elapsed();
    let mut fates = Vec::new();
    for r in recorders {
        let (client, frames, end) = r.finish().await;
        assert!(
            end.is_none(),
            "subscribers stay connected through the migration: {end:?}"
        );
        fates.push(fate_of(&log.acked, &frames, &topic, &[&a, &b]).await);
        client.close().await;
    }
    eprintln!(
        "slot migration: slot 0 {} <-> {} {MOVES} times by reshard, each took {took:?}; publisher: {}; subscribers caught up {caught_up:?} \
         after the stream stopped",
        src.addr,
        dst.addr,
        describe(&log)
    );
    for (name, f) in ["A", "B"].iter().zip(&fates) {
        eprintln!(
            "  subscriber on {name}: {} delivered live, {} only via history, {} lost, {} out of order, {} duplicates, \
             {} lagged notices {:?}",
            f.delivered,
            f.from_history.len(),
            f.lost.len(),
            f.out_of_order,
            f.duplicates,
            f.lagged.len(),
            f.lagged
        );
    }

    // Back where it was (the last move); the topic's keys removed (every run uses slot 0).
    assert_eq!(
        cluster.master_for(&log_key(&topic)).await,
        src.addr,
        "slot 0 moved back"
    );
    cluster.wait_healthy(Duration::from_secs(30)).await;
    a.shutdown().await;
    b.shutdown().await;
    let keys: Vec<String> = ["meta", "log", "ids", "idt"]
        .iter()
        .map(|k| format!("ec:default:{{{topic}}}:{k}"))
        .collect();
    let mut del = vec!["del"];
    del.extend(keys.iter().map(String::as_str));
    cluster.cli(&del).await.expect("delete the topic's keys");

    assert!(stuck.is_none(), "{}", stuck.unwrap_or_default());
    for (name, f) in ["A", "B"].iter().zip(&fates) {
        assert!(
            f.lost.is_empty(),
            "subscriber on {name} lost acknowledged events: {:?}",
            f.lost
        );
        assert_eq!(f.out_of_order, 0, "subscriber on {name}: in offset order");
        assert_eq!(f.duplicates, 0, "subscriber on {name}: no offset twice");
        assert_eq!(
            f.delivered,
            log.acked.len(),
            "subscriber on {name}: every event delivered live, none only through history ({} lagged notices)",
            f.lagged.len()
        );
    }
}
