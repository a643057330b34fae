//! Hot reload of the manifest directory: changes apply within seconds without a
//! restart, and a bad edit keeps the last good config serving until it is fixed.

use eventcast_tests::{TestSidecar, WAIT, eventually, metric};
use serde_json::json;

fn topic(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {{name: {}}}\nspec:\n  name: {name}\n  access: {{subscribe: {{anonymous: true}}}}\n{spec}\n",
        name.replace('.', "-")
    )
}

async fn has_topic(sc: &TestSidecar, name: &str) -> bool {
    sc.topic_names().await.iter().any(|t| t == name)
}

async fn reload_errors(sc: &TestSidecar) -> f64 {
    metric(
        &sc.metrics().await,
        "eventcast_config_reloads_total",
        &[("result", "error")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_topic_file_is_served_within_seconds() {
    let sc = TestSidecar::start(&[("a.yaml", &topic("chat.a", ""))]).await;
    let version = sc.get("/v1/stats").await.body["configVersion"].clone();
    let mut watcher = sc.client().await;
    watcher.subscribe("chat.*").await;
    let mut existing = sc.client().await;
    existing.subscribe("chat.a").await;

    sc.write_manifest("b.yaml", &topic("chat.b", ""));
    assert!(
        eventually(WAIT, || has_topic(&sc, "chat.b")).await,
        "chat.b was not loaded"
    );
    assert_ne!(sc.get("/v1/stats").await.body["configVersion"], version);

    let mut fresh = sc.client().await;
    let result = fresh.subscribe("chat.b").await;
    assert_eq!(result["topic"], "chat.b");
    sc.publish_ok("chat.b", &json!({"type": "x", "data": {}})).await;
    fresh.collect_events(1, WAIT).await;
    // A pattern subscription picks up the new topic by itself.
    let got = watcher.collect_events(1, WAIT).await;
    assert_eq!(got[0]["topic"], "chat.b");
    // Existing subscriptions are untouched.
    sc.publish_ok("chat.a", &json!({"type": "x", "data": {}})).await;
    existing.collect_events(1, WAIT).await;
    assert!(
        metric(
            &sc.metrics().await,
            "eventcast_config_reloads_total",
            &[("result", "ok")]
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_change_applies_to_the_running_topic() {
    let sc = TestSidecar::start(&[("a.yaml", &topic("log", "  retention: {maxEvents: 100, maxAge: 1h}"))]).await;
    let mut epoch = json!(null);
    for n in 1..=5 {
        epoch = sc.publish_ok("log", &json!({"type": "x", "data": {"n": n}})).await["epoch"].clone();
    }
    assert_eq!(
        sc.get("/v1/topics/log/history").await.body["events"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );

    sc.write_manifest("a.yaml", &topic("log", "  retention: {maxEvents: 2, maxAge: 1h}"));
    assert!(
        eventually(WAIT, || async {
            sc.get("/v1/topics/log/history").await.body["events"]
                .as_array()
                .is_some_and(|e| e.len() == 2)
        })
        .await,
        "retention of 2 not applied"
    );
    let h = sc.get("/v1/topics/log/history").await;
    assert_eq!(h.body["first"], 4, "{}", h.body);
    // The stream goes on: same epoch, next offset.
    let next = sc.publish_ok("log", &json!({"type": "x", "data": {}})).await;
    assert_eq!(next["offset"], 6);
    assert_eq!(next["epoch"], epoch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_manifest_keeps_the_last_good_config_until_it_is_fixed() {
    let sc = TestSidecar::start(&[("a.yaml", &topic("good", ""))]).await;
    let version = sc.get("/v1/stats").await.body["configVersion"].clone();

    // A typo (unknown field) in a new topic's file.
    sc.write_manifest("c.yaml", &topic("fresh", "  retension: {maxEvents: 5}"));
    assert!(
        eventually(WAIT, || async { reload_errors(&sc).await >= 1.0 }).await,
        "the bad file was never looked at"
    );
    assert!(!has_topic(&sc, "fresh").await, "nothing of a rejected set is applied");
    assert_eq!(sc.get("/v1/stats").await.body["configVersion"], version);
    sc.publish_ok("good", &json!({"type": "x", "data": {}})).await;
    let mut client = sc.client().await;
    assert_eq!(
        client.request_err(json!({"op": "subscribe", "topic": "fresh"})).await,
        "unknown_topic"
    );
    client.subscribe("good").await;

    // Fixing the typo but adding a Subscription with a bad regex still keeps the old config.
    sc.write_manifest("c.yaml", &topic("fresh", "  retention: {maxEvents: 5}"));
    let bad_subscription = r#"
apiVersion: eventcast.dev/v1alpha1
kind: Subscription
metadata: {name: copy-good}
spec:
  topics: [good]
  filter: [{field: data.text, op: regex, value: "(unclosed"}]
  sink:
    topic: {name: fresh}
"#;
    sc.write_manifest("s.yaml", bad_subscription);
    assert!(
        eventually(WAIT, || async { reload_errors(&sc).await >= 2.0 }).await,
        "the bad subscription was never looked at"
    );
    assert!(!has_topic(&sc, "fresh").await);
    sc.publish_ok("good", &json!({"type": "x", "data": {}})).await;
    let got = client.collect_events(1, WAIT).await;
    assert_eq!(got[0]["topic"], "good", "still serving");

    // Fixed: applied.
    sc.write_manifest("s.yaml", &bad_subscription.replace("(unclosed", "^hello"));
    assert!(
        eventually(WAIT, || has_topic(&sc, "fresh")).await,
        "the fixed set was not applied"
    );
    assert_ne!(sc.get("/v1/stats").await.body["configVersion"], version);
    let mut c = sc.client().await;
    c.subscribe("fresh").await;
}
