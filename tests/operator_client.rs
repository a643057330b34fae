//! A sidecar configured by the operator (`--operator URL --state-dir DIR`), against a
//! fake operator: snapshots go live and are acked, bad ones are nacked while the last
//! good config keeps serving, the config survives the operator's absence and a restart
//! (fail-static, from the state directory), the stream comes back by itself, `purge`
//! deletes a topic's data, and load reports arrive.

use std::time::Duration;

use eventcast_api::manifest::parse_manifests;
use eventcast_api::{CompiledConfig, compile_strict};
use eventcast_tests::{FakeOperator, TestSidecar, WAIT, eventually, metric, topic_manifest};
use serde_json::{Value, json};

/// Load reports come every 5 s: two of them, with room for a busy machine.
const LOAD_WAIT: Duration = Duration::from_secs(15);
/// Reconnect backoff grows to 10 s while the operator is away.
const RECONNECT_WAIT: Duration = Duration::from_secs(20);

/// The compiled config of `namespace` with these topics (open to anonymous clients), as
/// the operator would push it; its version is its content hash.
fn config(namespace: &str, topics: &[&str]) -> CompiledConfig {
    let sources: Vec<(String, String)> = topics
        .iter()
        .map(|t| (format!("{t}.yaml"), topic_manifest(t, "")))
        .collect();
    let set = parse_manifests(namespace, &sources).expect("manifests parse");
    compile_strict(&set.input).expect("manifests compile")
}

fn event(n: u64) -> Value {
    json!({"type": "msg", "data": {"n": n}})
}

fn cached(state_dir: &std::path::Path, namespace: &str) -> Value {
    let path = state_dir.join(format!("config-{namespace}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("the cache is JSON")
}

async fn push_and_expect(op: &FakeOperator, config: &CompiledConfig, answer: &str) -> Value {
    let version = config.version();
    op.send_snapshot(&version, config);
    let got = op
        .answer_to(&version, WAIT)
        .await
        .unwrap_or_else(|| panic!("no answer to snapshot {version}; got {:?}", op.messages()));
    assert_eq!(got["type"], answer, "{got}");
    got
}

async fn config_version(sc: &TestSidecar) -> Value {
    sc.get("/v1/stats").await.body["configVersion"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cache_the_sidecar_is_ready_once_the_first_snapshot_is_live() {
    let op = FakeOperator::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let sc = TestSidecar::start_with_operator(&op.url(), state.path(), None).await;
    let ns = sc.namespace().to_owned();

    // Connected (a load report comes right after connecting), but nothing to serve yet.
    let load = op
        .wait_for(WAIT, |m| m["type"] == "load")
        .await
        .expect("a load report right after connecting");
    assert_eq!(load["connections"], 0, "{load}");
    let conn = op.connections();
    assert_eq!(conn[0].get("namespace"), Some(&ns), "{conn:?}");
    assert_eq!(conn[0].get("pod").map(String::as_str), Some("test"), "{conn:?}");
    assert_eq!(sc.readyz().await, 503, "no config was ever loaded");
    assert_eq!(sc.publish("chat", &event(0)).await.status, 404);

    let v1 = config(&ns, &["chat"]);
    push_and_expect(&op, &v1, "ack").await;
    assert_eq!(sc.readyz().await, 200);
    assert_eq!(config_version(&sc).await, v1.version());
    let mut client = sc.client().await;
    client.subscribe("chat").await;
    let published = sc.publish_ok("chat", &event(1)).await;
    let got = client.collect_events(1, WAIT).await;
    assert_eq!(got[0]["offset"], published["offset"]);
    // The live config is cached for a restart.
    let cache = cached(state.path(), &ns);
    assert_eq!(cache["version"], v1.version());
    assert!(cache["config"]["topics"]["chat"].is_object(), "{cache}");
    assert_eq!(metric(&sc.metrics().await, "eventcast_operator_connected", &[]), 1.0);

    // The same version again (the operator's resync) is acked as it is.
    op.send_snapshot(&v1.version(), &v1);
    let acks_of_v1 = || async {
        op.messages()
            .iter()
            .filter(|m| m["type"] == "ack" && m["version"] == v1.version())
            .count()
    };
    assert!(eventually(WAIT, || async { acks_of_v1().await == 2 }).await);

    // Load reports carry the connection and the traffic (rates over the last interval).
    for n in 2..=6 {
        sc.publish_ok("chat", &event(n)).await;
    }
    client.collect_events(5, WAIT).await;
    let load = op
        .wait_for(LOAD_WAIT, |m| {
            m["type"] == "load"
                && m["connections"] == 1
                && m["eventsInPerSecond"].as_f64().is_some_and(|r| r > 0.0)
                && m["eventsOutPerSecond"].as_f64().is_some_and(|r| r > 0.0)
        })
        .await
        .unwrap_or_else(|| panic!("no load report with traffic: {:?}", op.messages()));
    assert!(load["queueDepth"].is_u64(), "{load}");

    // Shutdown closes the stream cleanly (1001 going away).
    sc.shutdown().await;
    let closed = op
        .wait_for(WAIT, |m| m.get("closed").is_some())
        .await
        .expect("the stream was closed");
    assert_eq!(closed["closed"], 1001, "{closed}");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_snapshot_keeps_the_last_good_config_serving() {
    let op = FakeOperator::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let sc = TestSidecar::start_with_operator(&op.url(), state.path(), None).await;
    let ns = sc.namespace().to_owned();
    let v1 = config(&ns, &["chat"]);
    push_and_expect(&op, &v1, "ack").await;

    // A schema the sidecar cannot compile: nothing of the snapshot applies.
    let mut bad = config(&ns, &["chat", "news"]);
    bad.topics.get_mut("chat").expect("chat").schema = Some(json!({"type": 12}));
    let nack = push_and_expect(&op, &bad, "nack").await;
    let error = nack["error"].as_str().unwrap_or_default();
    assert!(error.contains("chat") && error.contains("schema"), "{nack}");
    assert_eq!(config_version(&sc).await, v1.version());
    assert_eq!(sc.topic_names().await, ["chat"]);
    sc.publish_ok("chat", &event(1)).await;

    // A snapshot of another namespace.
    let foreign = config("someone-else", &["chat", "news"]);
    let nack = push_and_expect(&op, &foreign, "nack").await;
    assert!(
        nack["error"].as_str().is_some_and(|e| e.contains("namespace")),
        "{nack}"
    );
    assert_eq!(config_version(&sc).await, v1.version());
    sc.publish_ok("chat", &event(2)).await;
    assert_eq!(sc.readyz().await, 200);
    assert_eq!(
        cached(state.path(), &ns)["version"],
        v1.version(),
        "the cache keeps the good one"
    );
    assert_eq!(metric(&sc.metrics().await, "eventcast_config_nacks_total", &[]), 2.0);

    // A good one after that applies.
    let v2 = config(&ns, &["chat", "news"]);
    push_and_expect(&op, &v2, "ack").await;
    sc.publish_ok("news", &event(3)).await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_outlives_the_operator_and_the_stream_comes_back() {
    let op = FakeOperator::start().await;
    let addr = op.addr;
    let state = tempfile::tempdir().expect("state dir");
    let sc = TestSidecar::start_with_operator(&op.url(), state.path(), None).await;
    let ns = sc.namespace().to_owned();
    let v1 = config(&ns, &["chat"]);
    push_and_expect(&op, &v1, "ack").await;

    // The operator goes away: the sidecar keeps serving.
    op.stop().await;
    assert!(
        eventually(WAIT, || async {
            metric(&sc.metrics().await, "eventcast_operator_connected", &[]) == 0.0
        })
        .await,
        "the sidecar did not notice the operator leaving"
    );
    assert_eq!(sc.readyz().await, 200);
    sc.publish_ok("chat", &event(1)).await;

    // A restart while the operator is unreachable serves the cached config at once.
    let restarted = TestSidecar::start_with_operator(&format!("http://{addr}"), state.path(), Some(&ns)).await;
    assert_eq!(
        restarted.readyz().await,
        200,
        "fail-static: the cache is served at start"
    );
    assert_eq!(config_version(&restarted).await, v1.version());
    restarted.publish_ok("chat", &event(2)).await;
    let mut client = restarted.client().await;
    client.subscribe("chat").await;
    restarted.shutdown().await;

    // The operator comes back on the same address with a newer config.
    let op = FakeOperator::start_on(addr).await;
    let v2 = config(&ns, &["chat", "news"]);
    op.send_snapshot(&v2.version(), &v2);
    let ack = op
        .wait_for(RECONNECT_WAIT, |m| m["type"] == "ack" && m["version"] == v2.version())
        .await
        .unwrap_or_else(|| panic!("the sidecar did not come back: {:?}", op.messages()));
    assert_eq!(ack["type"], "ack");
    sc.publish_ok("news", &event(3)).await;
    let text = sc.metrics().await;
    assert_eq!(metric(&text, "eventcast_operator_connected", &[]), 1.0);
    assert!(metric(&text, "eventcast_config_stream_reconnects_total", &[]) >= 1.0);
    sc.shutdown().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_a_topics_data_and_starts_a_new_epoch() {
    let op = FakeOperator::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let sc = TestSidecar::start_with_operator(&op.url(), state.path(), None).await;
    let ns = sc.namespace().to_owned();
    push_and_expect(&op, &config(&ns, &["log", "kept"]), "ack").await;

    let mut live = sc.client().await;
    live.subscribe("log").await;
    let mut old_epoch = Value::Null;
    for n in 1..=3 {
        old_epoch = sc.publish_ok("log", &event(n)).await["epoch"].clone();
    }
    let kept = sc.publish_ok("kept", &event(1)).await;
    let history = sc.get("/v1/topics/log/history").await;
    assert_eq!(
        history.body["events"].as_array().map(Vec::len),
        Some(3),
        "{}",
        history.body
    );

    op.send_purge("purge-1", "log");
    let purged = op
        .wait_for(WAIT, |m| m["type"] == "purged" && m["id"] == "purge-1")
        .await
        .unwrap_or_else(|| panic!("no answer to the purge: {:?}", op.messages()));
    assert_eq!(purged["topic"], "log");
    assert!(purged.get("error").is_none(), "{purged}");

    let history = sc.get("/v1/topics/log/history").await;
    assert_eq!(history.status, 200);
    assert_eq!(
        history.body["events"].as_array().map(Vec::len),
        Some(0),
        "{}",
        history.body
    );
    assert_ne!(history.body["epoch"], old_epoch, "{}", history.body);
    let next = sc.publish_ok("log", &event(4)).await;
    assert_eq!(next["offset"], 1, "{next}");
    assert_ne!(next["epoch"], old_epoch);
    // A client subscribed across the purge gets the new epoch's events.
    let before = live.collect_topic_events("log", 3, WAIT).await;
    assert!(before.iter().all(|e| e["epoch"] == old_epoch));
    let after = live.collect_topic_events("log", 1, WAIT).await;
    assert_eq!(
        (&after[0]["offset"], &after[0]["epoch"]),
        (&next["offset"], &next["epoch"])
    );

    // A client recovering from the old stream learns it cannot.
    let mut client = sc.client().await;
    let result = client
        .request_ok(json!({"op": "subscribe", "topic": "log", "since": {"offset": 3, "epoch": old_epoch}}))
        .await;
    assert_eq!(result["recovered"], false, "{result}");

    // Other topics are untouched.
    let other = sc.get("/v1/topics/kept/history").await;
    assert_eq!(other.body["epoch"], kept["epoch"]);
    assert_eq!(other.body["events"].as_array().map(Vec::len), Some(1));
    sc.shutdown().await;
    op.stop().await;
}
