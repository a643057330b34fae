//! The whole system: `kubectl apply` against the Kubernetes API test server, the
//! operator, two real sidecars configured by it (`--operator`), and WebSocket clients.
//! With `EVENTCAST_TEST_BACKEND=redis` the sidecars run on the real Redis Cluster and an
//! event published on one sidecar reaches a client of the other.

use std::time::Duration;

use eventcast_e2e::cluster::free_addr;
use eventcast_e2e::{Cluster, eventually};
use eventcast_tests::{Backend, TestSidecar};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn topic(ns: &str, extra: &str) -> String {
    format!(
        "apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {{name: live-news, namespace: {ns}}}\nspec:\n  name: live.news\n{extra}"
    )
}

const OPEN: &str = "  access: {subscribe: {anonymous: true}, publish: {anonymous: true}}\n";
const CLOSED: &str = "  access: {subscribe: {anonymous: false}, publish: {anonymous: true}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_come_alive_change_and_go_through_kubectl_on_real_sidecars() {
    let c = Cluster::start().await;
    let ns = format!("e2e-{:08x}", rand::random::<u32>());
    c.kubectl(&["create", "namespace", &ns]).await.ok();
    let addr = free_addr();
    let op = c.operator_on("op-a", addr).await;
    let url = format!("http://{addr}");
    let state_a = tempfile::tempdir().expect("state dir");
    let state_b = tempfile::tempdir().expect("state dir");
    let a = TestSidecar::start_with_operator(&url, state_a.path(), Some(&ns)).await;
    let b = TestSidecar::start_with_operator(&url, state_b.path(), Some(&ns)).await;
    eventually("both sidecars ready (an empty config arrived)", WAIT, || async {
        (a.get_url(&a.public_url("/readyz")).await.status == 200
            && b.get_url(&b.public_url("/readyz")).await.status == 200)
            .then_some(())
    })
    .await;

    // Before the Topic exists, subscribing is refused.
    let mut client = a.client().await;
    let code = client
        .request_err(json!({"op": "subscribe", "id": 1, "topic": "live.news"}))
        .await;
    assert_eq!(code, "unknown_topic");

    // kubectl apply -> Ready -> a client subscribes and gets events.
    c.apply(&topic(&ns, OPEN)).await.ok();
    c.kubectl(&[
        "wait",
        "-n",
        &ns,
        "--for=condition=Ready",
        "topic/live-news",
        "--timeout=30s",
    ])
    .await
    .ok();
    eventually("2/2 sidecars programmed", WAIT, || async {
        (c.jsonpath("topic/live-news", &ns, "{.status.sidecars.acked}").await == "2").then_some(())
    })
    .await;
    client.subscribe("live.news").await;
    // On Redis the event crosses sidecars; on the memory backend each sidecar is alone.
    let publisher = if Backend::is_redis() { &b } else { &a };
    publisher
        .publish_ok("live.news", &json!({"type": "headline", "data": {"n": 1}}))
        .await;
    let got = client.collect_topic_events("live.news", 1, WAIT).await;
    assert_eq!(got[0]["event"]["data"]["n"], 1);

    // An access change applied with kubectl takes effect in the sidecars.
    c.apply(&topic(&ns, CLOSED)).await.ok();
    eventually("anonymous subscribe refused after the edit", WAIT, || async {
        let mut fresh = a.client().await;
        let reply = fresh
            .request(json!({"op": "subscribe", "id": 2, "topic": "live.news"}))
            .await;
        (reply["ok"] == false).then(|| reply["error"]["code"].clone())
    })
    .await;

    // A retention change takes effect too: history keeps only the last 3.
    c.apply(&topic(&ns, &format!("{OPEN}  retention: {{maxEvents: 3}}\n")))
        .await
        .ok();
    c.kubectl(&[
        "wait",
        "-n",
        &ns,
        "--for=condition=Programmed",
        "topic/live-news",
        "--timeout=30s",
    ])
    .await
    .ok();
    eventually("retention applied on sidecar a", WAIT, || async {
        for n in 0..5 {
            a.publish_ok("live.news", &json!({"type": "headline", "data": {"n": n}}))
                .await;
        }
        let history = a.get("/v1/topics/live.news/history?since=0&limit=100").await;
        let events = history.body["events"].as_array().map_or(0, Vec::len);
        (events == 3).then_some(())
    })
    .await;

    // A semantically invalid edit is reported, and the last good config keeps serving.
    c.apply(&topic(
        &ns,
        &format!("{OPEN}  retention: {{maxEvents: 3}}\n  schema: {{type: nope}}\n"),
    ))
    .await
    .ok();
    eventually("Accepted=False", WAIT, || async {
        let status = c
            .jsonpath(
                "topic/live-news",
                &ns,
                "{.status.conditions[?(@.type==\"Accepted\")].status}",
            )
            .await;
        (status == "False").then_some(())
    })
    .await;
    b.publish_ok("live.news", &json!({"type": "still", "data": {}})).await;

    // Operator restart: the sidecars keep serving while it is away and reconnect.
    op.shutdown().await;
    a.publish_ok("live.news", &json!({"type": "while-away", "data": {}}))
        .await;
    assert_eq!(a.get_url(&a.public_url("/readyz")).await.status, 200);
    let op = c.operator_on("op-b", addr).await;
    c.apply(&topic(&ns, &format!("{OPEN}  retention: {{maxEvents: 4}}\n")))
        .await
        .ok();
    eventually("both sidecars reconnected and acked the fixed topic", WAIT, || async {
        let ok = c.jsonpath("topic/live-news", &ns, "{.status.sidecars.acked}").await == "2"
            && c.jsonpath(
                "topic/live-news",
                &ns,
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            )
            .await
                == "True";
        ok.then_some(())
    })
    .await;

    // Deleting the Topic removes it from every sidecar.
    c.kubectl(&["delete", "-n", &ns, "topic/live-news"]).await.ok();
    eventually("topic gone from sidecar b", WAIT, || async {
        (b.publish("live.news", &json!({"type": "x", "data": {}})).await.status == 404).then_some(())
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
    op.shutdown().await;
}
