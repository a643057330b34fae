//! The app-facing local API: publish (single, batch, idempotent), every documented
//! refusal with its status and error code, content rules, history, presence, stats,
//! health probes and the per-topic metrics.

use eventcast_tests::{Backend, QUIET, TestSidecar, WAIT, eventually, metric};
use serde_json::{Value, json};

/// `news` (open), `small` (256-byte events), `strict` (schema),
/// `guarded` (content rules from a policy), `tracked` (presence), `short` (3 events kept).
const TOPICS: &str = r"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: news}
spec:
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: small}
spec:
  maxEventBytes: 256
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: strict}
spec:
  schema:
    type: object
    required: [text]
    properties:
      text: {type: string, maxLength: 20}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: guarded}
spec:
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: tracked}
spec:
  presence: true
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: short}
spec:
  retention: {maxEvents: 3, maxAge: 1h}
---
apiVersion: eventcast.dev/v1alpha1
kind: BroadcastPolicy
metadata: {name: content-rules}
spec:
  topics: [guarded]
  content:
    maxEventBytes: 512
    redactFields: [data.password]
    denyScripts: true
";

async fn sidecar() -> TestSidecar {
    TestSidecar::start(&[("topics.yaml", TOPICS)]).await
}

fn offset(v: &Value) -> u64 {
    v["offset"].as_u64().unwrap_or_else(|| panic!("no offset in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_accepted_with_consecutive_offsets_in_one_epoch() {
    let sc = sidecar().await;
    let mut accepted = Vec::new();
    for n in 0..3 {
        accepted.push(
            sc.publish_ok("news", &json!({"type": "story.posted", "data": {"n": n}}))
                .await,
        );
    }
    let epoch = accepted[0]["epoch"].as_str().expect("epoch").to_owned();
    assert!(!epoch.is_empty());
    for (i, a) in accepted.iter().enumerate() {
        assert_eq!(a["topic"], "news", "{a}");
        assert_eq!(a["epoch"], epoch.as_str(), "{a}");
        assert!(
            a["id"].as_str().is_some_and(|id| !id.is_empty()),
            "server-assigned id: {a}"
        );
        assert_eq!(offset(a), offset(&accepted[0]) + i as u64, "offsets increase by one");
        assert!(a.get("duplicate").is_none(), "not a duplicate: {a}");
    }
    assert_eq!(offset(&accepted[0]), 1, "a new topic starts at offset 1");
    let with_id = sc
        .publish_ok("news", &json!({"id": "client-7", "type": "story.posted", "data": {}}))
        .await;
    assert_eq!(with_id["id"], "client-7");
    assert_eq!(offset(&with_id), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_keeps_each_topics_order_and_dedups_within_and_across_batches() {
    let sc = sidecar().await;
    let mut ws = sc.client().await;
    ws.subscribe("news").await;
    // 600 events for one topic (more than one backend call's worth) interleaved with
    // another topic; one idempotency id appears twice in the batch.
    let mut events = Vec::new();
    for n in 0..600 {
        events.push(json!({"topic": "news", "type": "story.posted", "data": {"n": n}}));
        if n % 100 == 0 {
            events.push(json!({"topic": "strict", "type": "note", "data": {"text": format!("t{n}")}}));
        }
    }
    events.push(json!({"topic": "news", "id": "once", "type": "story.posted", "data": {"n": 600}}));
    events.push(json!({"topic": "news", "id": "once", "type": "story.posted", "data": {"n": 601}}));
    let r = sc.post("/v1/events:batch", &json!({"events": events})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let results = r.body["results"].as_array().expect("results");
    let news: Vec<&Value> = results.iter().filter(|v| v["topic"] == "news").collect();
    assert_eq!(news.len(), 602);
    for pair in news[..601].windows(2) {
        assert_eq!(offset(pair[1]), offset(pair[0]) + 1, "batch order is offset order");
    }
    assert_eq!(news[601]["duplicate"], true, "the second `once` is a duplicate");
    assert_eq!(offset(news[601]), offset(news[600]));
    let got = ws.collect_topic_events("news", 601, WAIT).await;
    let ns: Vec<u64> = got
        .iter()
        .map(|e| e["event"]["data"]["n"].as_u64().unwrap_or(u64::MAX))
        .collect();
    assert_eq!(
        ns,
        (0..=600).collect::<Vec<u64>>(),
        "delivered once each, in batch order"
    );
    // The same id in a later batch is still a duplicate.
    let again = sc
        .post(
            "/v1/events:batch",
            &json!({"events": [{"topic": "news", "id": "once", "type": "story.posted", "data": {}}]}),
        )
        .await;
    assert_eq!(again.body["results"][0]["duplicate"], true, "{}", again.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_reports_each_item_and_207_when_some_fail() {
    let sc = sidecar().await;
    let r = sc
        .post(
            "/v1/events:batch",
            &json!({"events": [
                {"topic": "news", "type": "story.posted", "data": {"n": 1}},
                {"topic": "nope", "type": "story.posted", "data": {}},
                {"topic": "strict", "type": "note", "data": {"text": 5}},
                {"topic": "strict", "type": "note", "data": {"text": "fine"}},
                {"topic": "news", "type": "", "data": {}},
                {"topic": "news", "type": "story.posted", "data": {"n": 2}},
            ]}),
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.body);
    assert_eq!(r.body["accepted"], 3, "{}", r.body);
    assert_eq!(r.body["rejected"], 3, "{}", r.body);
    let results = r.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 6, "one result per item, in order");
    let expect = [
        (202, None),
        (404, Some("unknown_topic")),
        (422, Some("schema_violation")),
        (202, None),
        (400, Some("bad_request")),
        (202, None),
    ];
    for (i, (status, code)) in expect.iter().enumerate() {
        let item = &results[i];
        assert_eq!(item["status"], *status, "item {i}: {item}");
        match code {
            Some(code) => {
                assert_eq!(item["error"]["code"], *code, "item {i}: {item}");
                assert!(item["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
            None => {
                assert!(item["offset"].is_u64() && item["epoch"].is_string(), "item {i}: {item}");
                assert!(item.get("error").is_none(), "item {i}: {item}");
            }
        }
    }
    assert_eq!(results[0]["topic"], "news");
    assert_eq!(
        offset(&results[5]),
        offset(&results[0]) + 1,
        "failed items take no offset"
    );

    let all_ok = sc
        .post(
            "/v1/events:batch",
            &json!({"events": [
                {"topic": "news", "type": "a", "data": {}},
                {"topic": "strict", "type": "b", "data": {"text": "x"}},
            ]}),
        )
        .await;
    assert_eq!(all_ok.status, 202, "{}", all_ok.body);
    assert_eq!(all_ok.body["accepted"], 2);
    assert_eq!(all_ok.body["rejected"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_publish_is_accepted_and_delivered_once() {
    let sc = sidecar().await;
    let mut client = sc.client().await;
    client.subscribe("news").await;

    let event = json!({"id": "order-1001", "type": "story.posted", "data": {"v": 1}});
    let first = sc.publish_ok("news", &event).await;
    assert!(first.get("duplicate").is_none(), "{first}");
    let again = sc
        .publish_ok(
            "news",
            &json!({"id": "order-1001", "type": "story.posted", "data": {"v": 2}}),
        )
        .await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["offset"], first["offset"], "same position as the original");
    assert_eq!(again["epoch"], first["epoch"]);
    assert_eq!(again["id"], "order-1001");

    let got = client.collect_events(1, WAIT).await;
    assert_eq!(got[0]["event"]["id"], "order-1001");
    assert_eq!(got[0]["event"]["data"]["v"], 1, "the original is kept");
    client.expect_no_event(QUIET).await;

    let next = sc
        .publish_ok("news", &json!({"type": "story.posted", "data": {}}))
        .await;
    assert_eq!(offset(&next), offset(&first) + 1, "the duplicate took no offset");
    let history = sc.get("/v1/topics/news/history").await;
    assert_eq!(
        history.body["events"].as_array().map(Vec::len),
        Some(2),
        "{}",
        history.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_bad_request() {
    let sc = sidecar().await;
    for body in ["{not json", r#"{"data": {}}"#, r#"{"type": 5}"#, ""] {
        let r = sc.post_raw("/v1/topics/news/events", body).await;
        assert_eq!(r.status, 400, "body {body:?}: {}", r.text);
        assert_eq!(r.error_code(), "bad_request", "body {body:?}: {}", r.text);
        assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let r = sc.post_raw("/v1/events:batch", r#"{"events": "no"}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error_code(), "bad_request");
    // The sidecar still serves.
    sc.publish_ok("news", &json!({"type": "ok", "data": {}})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_is_404_with_error_body() {
    let sc = sidecar().await;
    let r = sc.publish("no.such.topic", &json!({"type": "x", "data": {}})).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "unknown_topic", "{}", r.body);
    let message = r.body["error"]["message"].as_str().expect("message");
    assert!(message.contains("no.such.topic"), "names the topic: {message}");
    let h = sc.get("/v1/topics/no.such.topic/history").await;
    assert_eq!(h.status, 404);
    assert_eq!(h.error_code(), "unknown_topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_over_max_event_bytes_is_413() {
    let sc = sidecar().await;
    let r = sc
        .publish("small", &json!({"type": "blob", "data": {"text": "x".repeat(400)}}))
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.error_code(), "too_large");
    assert!(
        r.body["error"]["message"].as_str().is_some_and(|m| m.contains("256")),
        "{}",
        r.body
    );
    sc.publish_ok("small", &json!({"type": "blob", "data": {"text": "short"}}))
        .await;

    // A policy's smaller limit wins over the topic's default (64 KiB).
    let r = sc
        .publish("guarded", &json!({"type": "blob", "data": {"text": "x".repeat(600)}}))
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    sc.publish_ok("news", &json!({"type": "blob", "data": {"text": "x".repeat(600)}}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violation_is_422() {
    let sc = sidecar().await;
    for data in [
        json!({}),
        json!({"text": 42}),
        json!({"text": "x".repeat(21)}),
        json!("text"),
    ] {
        let r = sc.publish("strict", &json!({"type": "note", "data": data})).await;
        assert_eq!(r.status, 422, "data {data}: {}", r.text);
        assert_eq!(r.error_code(), "schema_violation", "data {data}: {}", r.text);
    }
    sc.publish_ok("strict", &json!({"type": "note", "data": {"text": "valid"}}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_content_is_rejected_with_422_on_deny_scripts_topics() {
    let sc = sidecar().await;
    for data in [
        json!({"text": "<script>alert(1)</script>"}),
        json!({"nested": {"html": "<a href=\"javascript:evil()\">x</a>"}}),
        json!({"list": ["ok", "<img src=x onerror=alert(1)>"]}),
    ] {
        let r = sc.publish("guarded", &json!({"type": "note", "data": data})).await;
        assert_eq!(r.status, 422, "data {data}: {}", r.text);
        assert_eq!(r.error_code(), "content_rejected", "data {data}: {}", r.text);
    }
    sc.publish_ok(
        "guarded",
        &json!({"type": "note", "data": {"text": "I like javascript and a < b"}}),
    )
    .await;
    // Topics the policy does not select are not checked.
    sc.publish_ok("news", &json!({"type": "note", "data": {"text": "<script>x</script>"}}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_fields_are_neither_delivered_nor_stored() {
    let sc = sidecar().await;
    let mut client = sc.client().await;
    client.subscribe("guarded").await;
    let accepted = sc
        .publish_ok(
            "guarded",
            &json!({"type": "user.created", "data": {"name": "ann", "password": "hunter2"}}),
        )
        .await;

    let ev = &client.collect_events(1, WAIT).await[0];
    assert_eq!(ev["offset"], accepted["offset"]);
    assert_eq!(ev["event"]["data"], json!({"name": "ann"}), "{ev}");

    let h = sc.get("/v1/topics/guarded/history").await;
    assert_eq!(h.status, 200);
    let stored = &h.body["events"][0]["event"];
    assert_eq!(stored["data"], json!({"name": "ann"}), "{}", h.body);
    assert!(!h.text.contains("hunter2"), "{}", h.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_with_since_and_limit_and_says_whether_it_recovered() {
    let sc = sidecar().await;
    let mut epoch = String::new();
    for n in 1..=5 {
        let a = sc.publish_ok("news", &json!({"type": "t", "data": {"n": n}})).await;
        epoch = a["epoch"].as_str().expect("epoch").to_owned();
    }
    let all = sc.get("/v1/topics/news/history").await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.body["topic"], "news");
    assert_eq!(all.body["epoch"], epoch.as_str());
    assert_eq!(all.body["offset"], 5, "latest offset");
    assert_eq!(all.body["first"], 1);
    let offsets = |b: &Value| -> Vec<u64> {
        b["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["offset"].as_u64().expect("offset"))
            .collect()
    };
    assert_eq!(offsets(&all.body), [1, 2, 3, 4, 5]);
    assert_eq!(all.body["events"][2]["event"]["data"]["n"], 3);
    assert!(
        all.body.get("recovered").is_none(),
        "no since, no verdict: {}",
        all.body
    );

    let page = sc
        .get(&format!("/v1/topics/news/history?since=2&epoch={epoch}&limit=2"))
        .await;
    assert_eq!(offsets(&page.body), [3, 4], "{}", page.body);
    assert_eq!(page.body["recovered"], true);

    let wrong_epoch = sc.get("/v1/topics/news/history?since=2&epoch=other&limit=10").await;
    assert_eq!(wrong_epoch.body["recovered"], false, "{}", wrong_epoch.body);
    assert_eq!(
        offsets(&wrong_epoch.body),
        [1, 2, 3, 4, 5],
        "from the oldest retained event"
    );

    // `short` keeps 3 events: a position before them cannot be recovered.
    for n in 1..=6 {
        sc.publish_ok("short", &json!({"type": "t", "data": {"n": n}})).await;
    }
    let trimmed = sc.get("/v1/topics/short/history?since=1").await;
    assert_eq!(trimmed.body["recovered"], false, "{}", trimmed.body);
    assert_eq!(offsets(&trimmed.body), [4, 5, 6]);
    assert_eq!(trimmed.body["first"], 4);
    let kept = sc.get("/v1/topics/short/history?since=4").await;
    assert_eq!(kept.body["recovered"], true, "{}", kept.body);
    assert_eq!(offsets(&kept.body), [5, 6]);

    let bad = sc.get("/v1/topics/news/history?since=abc").await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.error_code(), "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_route_lists_subscribed_sessions() {
    let sc = sidecar().await;
    let empty = sc.get("/v1/topics/tracked/presence").await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.body["clients"], json!([]));

    let mut a = sc.client().await;
    a.subscribe("tracked").await;
    let mut b = sc.client().await;
    b.subscribe("tracked").await;
    let list = sc.get("/v1/topics/tracked/presence").await;
    assert_eq!(list.body["topic"], "tracked");
    let clients = list.body["clients"].as_array().expect("clients");
    assert_eq!(clients.len(), 2, "{}", list.body);
    for c in clients {
        assert!(c["session"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
        assert!(c["connectedAt"].as_u64().is_some_and(|t| t > 0), "{c}");
    }
    assert_ne!(clients[0]["session"], clients[1]["session"]);

    b.close().await;
    assert!(
        eventually(WAIT, || async {
            sc.get("/v1/topics/tracked/presence").await.body["clients"]
                .as_array()
                .is_some_and(|c| c.len() == 1)
        })
        .await,
        "a closed connection leaves presence"
    );

    let off = sc.get("/v1/topics/news/presence").await;
    assert_eq!(off.status, 400, "presence is off for news: {}", off.text);
    let unknown = sc.get("/v1/topics/nope/presence").await;
    assert_eq!(unknown.status, 404);
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_connections_subscriptions_and_config() {
    let sc = sidecar().await;
    let mut a = sc.client().await;
    a.subscribe("news").await;
    a.subscribe("tracked").await;
    let _b = sc.client().await;
    let s = sc.get("/v1/stats").await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(s.body["connections"], 2, "{}", s.body);
    assert_eq!(s.body["subscriptions"], 2, "{}", s.body);
    assert_eq!(s.body["topics"], 6, "{}", s.body);
    assert_eq!(s.body["backend"], Backend::from_env().name());
    assert_eq!(s.body["ready"], true);
    assert!(
        s.body["configVersion"].as_str().is_some_and(|v| v.starts_with("v-")),
        "{}",
        s.body
    );
    assert!(s.body["queuedEvents"].is_u64());
    let topics = sc.topic_names().await;
    assert_eq!(topics, ["guarded", "news", "short", "small", "strict", "tracked"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_probes_answer_on_the_public_listener() {
    let sc = sidecar().await;
    let h = sc.get_url(&sc.public_url("/healthz")).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.text, "ok");
    let r = sc.get_url(&sc.public_url("/readyz")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let missing = sc.get_url(&sc.public_url("/nope")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_events_in_and_out_per_topic() {
    let sc = sidecar().await;
    let mut client = sc.client().await;
    client.subscribe("news").await;
    for n in 0..3 {
        sc.publish_ok("news", &json!({"type": "t", "data": {"n": n}})).await;
    }
    sc.publish_ok(
        "strict",
        &json!({"type": "t", "priority": "high", "data": {"text": "a"}}),
    )
    .await;
    client.collect_events(3, WAIT).await;
    let _ = sc.publish("strict", &json!({"type": "t", "data": {}})).await;

    let text = sc.metrics().await;
    let in_news = metric(&text, "eventcast_events_in_total", &[("topic", "news")]);
    assert!(
        (in_news - 3.0).abs() < f64::EPSILON,
        "events in for news: {in_news}\n{text}"
    );
    let in_strict = metric(
        &text,
        "eventcast_events_in_total",
        &[("topic", "strict"), ("priority", "high")],
    );
    assert!(
        (in_strict - 1.0).abs() < f64::EPSILON,
        "events in for strict/high: {in_strict}"
    );
    assert!(
        eventually(WAIT, || async {
            let text = sc.metrics().await;
            (metric(
                &text,
                "eventcast_events_out_total",
                &[("topic", "news"), ("priority", "normal")],
            ) - 3.0)
                .abs()
                < f64::EPSILON
        })
        .await,
        "3 deliveries of news counted"
    );
    let text = sc.metrics().await;
    assert!(metric(&text, "eventcast_events_out_total", &[("topic", "strict")]).abs() < f64::EPSILON);
    assert!(
        metric(
            &text,
            "eventcast_events_rejected_total",
            &[("reason", "schema_violation")]
        ) >= 1.0,
        "{text}"
    );
    assert!(metric(&text, "eventcast_connections", &[]) >= 1.0, "{text}");
}
