//! Server-side subscriptions end to end: an in-process sidecar (memory backend,
//! manifests in a temporary directory) publishing through its local API to a real
//! webhook receiver on an ephemeral loopback port, or routing into another topic.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use eventcast_sidecar::server::{Running, start};
use eventcast_sidecar::settings::Settings;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// Longest any single expected delivery may take to show up.
const WAIT: Duration = Duration::from_secs(3);

const TOPICS: &str = r"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: hooks}
spec: {}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: hooks-dlq}
spec: {}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: orders-status}
spec: {name: orders.status}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: orders-archive}
spec: {name: orders.archive}
";

/// One request the webhook received.
#[derive(Debug)]
struct Received {
    headers: HeaderMap,
    body: Value,
    at: Instant,
}

/// Scripted webhook receiver: answers each request with the next status in `script`,
/// then with `fallback`.
#[derive(Clone)]
struct Hook {
    tx: mpsc::UnboundedSender<Received>,
    script: Arc<Mutex<VecDeque<u16>>>,
    fallback: u16,
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = hook.tx.send(Received {
        headers,
        body,
        at: Instant::now(),
    });
    let code = hook
        .script
        .lock()
        .map(|mut s| s.pop_front())
        .ok()
        .flatten()
        .unwrap_or(hook.fallback);
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    async fn start(script: &[u16], fallback: u16) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let hook = Hook {
            tx,
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            fallback,
        };
        let app = Router::new().route("/hook", post(receive)).with_state(hook);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/hook"),
            rx,
        }
    }

    async fn next(&mut self) -> Received {
        timeout(WAIT, self.rx.recv())
            .await
            .expect("a webhook request in time")
            .expect("receiver running")
    }

    /// Asserts nothing more arrives within `quiet`.
    async fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(Some(extra)) = timeout(quiet, self.rx.recv()).await {
            panic!("unexpected webhook request: {}", extra.body);
        }
    }
}

struct Sidecar {
    running: Running,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Sidecar {
    async fn start(subscriptions: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "topics.yaml", TOPICS);
        write(dir.path(), "subscriptions.yaml", subscriptions);
        let running = start(Settings::for_tests(dir.path().to_owned()))
            .await
            .expect("sidecar starts");
        Self {
            running,
            http: reqwest::Client::new(),
            dir,
        }
    }

    fn local(&self) -> SocketAddr {
        self.running.local_addr
    }

    async fn publish(&self, topic: &str, event: Value) -> Value {
        let resp = self
            .http
            .post(format!("http://{}/v1/topics/{topic}/events", self.local()))
            .json(&event)
            .send()
            .await
            .expect("publish request");
        assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED, "publish to {topic}");
        resp.json().await.expect("publish reply")
    }

    async fn publish_batch(&self, events: Value) {
        let resp = self
            .http
            .post(format!("http://{}/v1/events:batch", self.local()))
            .json(&json!({ "events": events }))
            .send()
            .await
            .expect("batch request");
        assert!(resp.status().is_success(), "batch publish: {}", resp.status());
    }

    async fn history(&self, topic: &str) -> Vec<Value> {
        let body: Value = self
            .http
            .get(format!("http://{}/v1/topics/{topic}/history", self.local()))
            .send()
            .await
            .expect("history request")
            .json()
            .await
            .expect("history body");
        body["events"].as_array().cloned().unwrap_or_default()
    }

    /// Polls a topic's history until it holds at least `n` events.
    async fn wait_history(&self, topic: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let events = self.history(topic).await;
            if events.len() >= n {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "{topic} has {} events, expected {n}",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.running.metrics_addr))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body")
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write manifest");
}

/// A webhook subscription on `hooks` with fast retries, dead-lettering to `hooks-dlq`;
/// `extra` adds spec keys.
fn webhook_subscription(name: &str, url: &str, max_attempts: u32, extra: &str) -> String {
    format!(
        r"
apiVersion: eventcast.dev/v1alpha1
kind: Subscription
metadata: {{name: {name}}}
spec:
  topics: [hooks]
  sink:
    webhook:
      url: {url}
      timeout: 1s
      retry: {{maxAttempts: {max_attempts}, initialInterval: 20ms, maxInterval: 100ms}}
      deadLetterTopic: hooks-dlq
{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_delivery_posts_each_event_with_secret_headers() {
    let mut hook = Receiver::start(&[], 200).await;
    let manifests = format!(
        r"
apiVersion: v1
kind: Secret
metadata: {{name: hook-auth}}
stringData: {{Authorization: Bearer s3cret}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Subscription
metadata: {{name: audit}}
spec:
  topics: [hooks]
  delivery: {{mode: realtime}}
  sink:
    webhook:
      url: {url}
      headers: {{X-Static: yes-please}}
      headersFrom: {{secretName: hook-auth}}
",
        url = hook.url
    );
    let sidecar = Sidecar::start(&manifests).await;
    let accepted = sidecar
        .publish(
            "hooks",
            json!({"type": "message.sent", "data": {"text": "hi"}, "priority": "high"}),
        )
        .await;

    let got = hook.next().await;
    assert_eq!(got.body["subscription"], "audit");
    assert_eq!(got.body["topic"], "hooks");
    assert_eq!(got.body["offset"], accepted["offset"]);
    assert_eq!(got.body["epoch"], accepted["epoch"]);
    assert_eq!(got.body["event"]["id"], accepted["id"]);
    assert_eq!(got.body["event"]["type"], "message.sent");
    assert_eq!(got.body["event"]["priority"], "high");
    assert_eq!(got.body["event"]["data"], json!({"text": "hi"}));
    let header = |name: &str| got.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("authorization").as_deref(), Some("Bearer s3cret"));
    assert_eq!(header("x-static").as_deref(), Some("yes-please"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("x-eventcast-subscription").as_deref(), Some("audit"));
    hook.assert_quiet(Duration::from_millis(200)).await;
    sidecar.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_matching_types_filters_and_priorities_are_posted() {
    let mut hook = Receiver::start(&[], 200).await;
    let extra = r"  eventTypes: [message.*]
  minPriority: high
  filter: [{field: data.lang, op: eq, value: en}]
";
    let sidecar = Sidecar::start(&webhook_subscription("picky", &hook.url, 5, extra)).await;
    let events = [
        ("match-1", "message.sent", "high", "en"),
        ("wrong-type", "typing.started", "high", "en"),
        ("too-low", "message.sent", "normal", "en"),
        ("wrong-lang", "message.sent", "critical", "de"),
        ("match-2", "message.edited", "critical", "en"),
    ];
    for (id, ty, priority, lang) in events {
        sidecar
            .publish(
                "hooks",
                json!({"id": id, "type": ty, "priority": priority, "data": {"lang": lang}}),
            )
            .await;
    }
    // One worker delivers in queue order: anything dispatched before match-2 would
    // have arrived before it.
    assert_eq!(hook.next().await.body["event"]["id"], "match-1");
    assert_eq!(hook.next().await.body["event"]["id"], "match-2");
    hook.assert_quiet(Duration::from_millis(200)).await;
    sidecar.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_delivery_posts_arrays_by_size_and_by_interval() {
    let mut hook = Receiver::start(&[], 200).await;
    let extra = "  delivery: {mode: batched, batchSize: 3, batchInterval: 700ms}\n";
    let sidecar = Sidecar::start(&webhook_subscription("batches", &hook.url, 5, extra)).await;
    let six: Vec<Value> = (0..6)
        .map(|n| json!({"topic": "hooks", "type": "tick", "data": {"n": n}}))
        .collect();
    sidecar.publish_batch(Value::Array(six)).await;

    let mut seen = Vec::new();
    for _ in 0..2 {
        let got = hook.next().await;
        let batch = got.body.as_array().expect("batched body is an array");
        assert_eq!(batch.len(), 3, "full batches of batchSize");
        for item in batch {
            assert_eq!(item["subscription"], "batches");
            seen.push(item["event"]["data"]["n"].as_u64().expect("n"));
        }
    }
    assert_eq!(seen, [0, 1, 2, 3, 4, 5], "in offset order");

    let sent = Instant::now();
    sidecar
        .publish_batch(json!([
            {"topic": "hooks", "type": "tick", "data": {"n": 6}},
            {"topic": "hooks", "type": "tick", "data": {"n": 7}}
        ]))
        .await;
    let got = hook.next().await;
    let waited = got.at.duration_since(sent);
    assert_eq!(got.body.as_array().map(Vec::len), Some(2), "partial batch");
    assert!(
        waited >= Duration::from_millis(600),
        "a partial batch waits for the interval, sent after {waited:?}"
    );
    sidecar.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_accepted() {
    let mut hook = Receiver::start(&[500, 503], 200).await;
    let sidecar = Sidecar::start(&webhook_subscription("retrying", &hook.url, 5, "")).await;
    let accepted = sidecar.publish("hooks", json!({"type": "job.done", "data": {}})).await;

    for attempt in 1..=3 {
        let got = hook.next().await;
        assert_eq!(
            got.body["event"]["id"], accepted["id"],
            "attempt {attempt} resends the event"
        );
    }
    hook.assert_quiet(Duration::from_millis(300)).await;
    assert!(sidecar.history("hooks-dlq").await.is_empty(), "nothing dead-lettered");
    let metrics = sidecar.metrics().await;
    assert!(
        metrics.contains(r#"eventcast_subscription_deliveries_total{result="delivered",subscription="retrying"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"eventcast_subscription_retries_total{subscription="retrying"} 2"#),
        "{metrics}"
    );
    sidecar.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_land_on_the_dead_letter_topic() {
    let mut hook = Receiver::start(&[], 500).await;
    let sidecar = Sidecar::start(&webhook_subscription("flaky", &hook.url, 2, "")).await;
    let accepted = sidecar
        .publish(
            "hooks",
            json!({"type": "job.done", "data": {"k": 1}, "correlationId": "c-9"}),
        )
        .await;

    hook.next().await;
    hook.next().await;
    let dlq = sidecar.wait_history("hooks-dlq", 1).await;
    let dead = &dlq[0]["event"];
    assert_eq!(dead["type"], "eventcast.deadletter");
    assert_eq!(dead["source"], "eventcast/subscription/flaky");
    assert_eq!(dead["causationId"], accepted["id"]);
    assert_eq!(dead["correlationId"], "c-9");
    let data = &dead["data"];
    assert_eq!(data["subscription"], "flaky");
    assert_eq!(data["topic"], "hooks");
    assert_eq!(data["offset"], accepted["offset"]);
    assert_eq!(data["epoch"], accepted["epoch"]);
    assert_eq!(data["attempts"], 2);
    assert_eq!(data["status"], 500);
    assert!(data["lastError"].as_str().is_some_and(|e| e.contains("500")), "{data}");
    assert_eq!(data["event"]["id"], accepted["id"]);
    assert_eq!(data["event"]["data"], json!({"k": 1}));
    hook.assert_quiet(Duration::from_millis(200)).await;
    sidecar.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_dead_lettered_without_retrying() {
    let mut hook = Receiver::start(&[], 400).await;
    let sidecar = Sidecar::start(&webhook_subscription("strict", &hook.url, 5, "")).await;
    let accepted = sidecar.publish("hooks", json!({"type": "job.done", "data": {}})).await;

    hook.next().await;
    let dlq = sidecar.wait_history("hooks-dlq", 1).await;
    let data = &dlq[0]["event"]["data"];
    assert_eq!(data["attempts"], 1);
    assert_eq!(data["status"], 400);
    assert!(data["lastError"].as_str().is_some_and(|e| e.contains("400")), "{data}");
    assert_eq!(data["event"]["id"], accepted["id"]);
    hook.assert_quiet(Duration::from_millis(300)).await;
    sidecar.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_sink_routes_matching_events_into_the_destination() {
    let manifests = r"
apiVersion: eventcast.dev/v1alpha1
kind: Subscription
metadata: {name: orders-archive}
spec:
  topics: [orders.status]
  eventTypes: [order.*]
  sink:
    topic: {name: orders.archive}
";
    let sidecar = Sidecar::start(manifests).await;
    let created = sidecar
        .publish(
            "orders.status",
            json!({"type": "order.created", "priority": "high", "data": {"order": 42}, "correlationId": "checkout-7"}),
        )
        .await;
    sidecar
        .publish("orders.status", json!({"type": "presence.join", "data": {}}))
        .await;
    let shipped = sidecar
        .publish("orders.status", json!({"type": "order.shipped", "data": {"order": 42}}))
        .await;

    let archive = sidecar.wait_history("orders.archive", 2).await;
    let first = &archive[0]["event"];
    assert_eq!(first["type"], "order.created");
    assert_eq!(first["priority"], "high");
    assert_eq!(first["data"], json!({"order": 42}));
    assert_eq!(first["causationId"], created["id"]);
    assert_eq!(first["correlationId"], "checkout-7");
    assert_eq!(first["source"], "eventcast/subscription/orders-archive");
    assert_ne!(first["id"], created["id"], "the copy has its own id");
    assert_eq!(archive[1]["event"]["causationId"], shipped["id"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sidecar.history("orders.archive").await.len(),
        2,
        "presence.join not routed"
    );
    sidecar.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_publish_is_not_delivered_again() {
    let mut hook = Receiver::start(&[], 200).await;
    let sidecar = Sidecar::start(&webhook_subscription("once", &hook.url, 5, "")).await;
    let first = sidecar
        .publish("hooks", json!({"id": "order-1", "type": "order.created", "data": {}}))
        .await;
    let again = sidecar
        .publish("hooks", json!({"id": "order-1", "type": "order.created", "data": {}}))
        .await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["offset"], first["offset"]);
    sidecar
        .publish("hooks", json!({"id": "order-2", "type": "order.created", "data": {}}))
        .await;

    assert_eq!(hook.next().await.body["event"]["id"], "order-1");
    assert_eq!(hook.next().await.body["event"]["id"], "order-2");
    hook.assert_quiet(Duration::from_millis(200)).await;
    sidecar.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_a_pending_batch() {
    let mut hook = Receiver::start(&[], 200).await;
    let extra = "  delivery: {mode: batched, batchSize: 100, batchInterval: 30s}\n";
    let sidecar = Sidecar::start(&webhook_subscription("drain", &hook.url, 5, extra)).await;
    sidecar
        .publish_batch(json!([
            {"topic": "hooks", "type": "tick", "data": {"n": 1}},
            {"topic": "hooks", "type": "tick", "data": {"n": 2}}
        ]))
        .await;
    hook.assert_quiet(Duration::from_millis(200)).await;

    let started = Instant::now();
    sidecar.running.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5), "bounded shutdown");
    let got = hook.next().await;
    assert_eq!(got.body.as_array().map(Vec::len), Some(2), "the pending batch was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_subscription_keeps_its_queue_and_uses_the_new_settings() {
    let mut hook = Receiver::start(&[], 200).await;
    let url = hook.url.clone();
    let sub = |version: &str| {
        webhook_subscription("evolving", &url, 5, "").replace(
            "      timeout: 1s\n",
            &format!("      timeout: 1s\n      headers: {{X-Version: \"{version}\"}}\n"),
        )
    };
    let sidecar = Sidecar::start(&sub("1")).await;
    let dir = sidecar.dir.path().to_owned();
    sidecar
        .publish("hooks", json!({"type": "tick", "data": {"n": 0}}))
        .await;
    let first = hook.next().await;
    assert_eq!(first.headers.get("x-version").and_then(|v| v.to_str().ok()), Some("1"));

    write(&dir, "subscriptions.yaml", &sub("2"));
    // Keep publishing while the reload happens: every event is delivered exactly once,
    // and deliveries switch to the new header.
    let deadline = Instant::now() + WAIT;
    let mut n = 1u64;
    loop {
        sidecar
            .publish("hooks", json!({"type": "tick", "data": {"n": n}}))
            .await;
        let got = hook.next().await;
        assert_eq!(got.body["event"]["data"]["n"], n, "in order, none lost or repeated");
        if got.headers.get("x-version").and_then(|v| v.to_str().ok()) == Some("2") {
            break;
        }
        assert!(Instant::now() < deadline, "the changed subscription never took effect");
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sidecar.running.state.publisher.sinks.running(),
        ["evolving"],
        "one worker for the subscription"
    );
    sidecar.running.shutdown().await;
}
