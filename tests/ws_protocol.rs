//! The `eventcast.v1` WebSocket protocol: subscribe (exact, patterns, filters),
//! unsubscribe, publishing from clients under access rules, targeting, TTL, and how
//! the server answers bad input (malformed, binary and oversized frames).

use eventcast_tests::{AUTH_MANIFESTS, ConnectOptions, Jwt, QUIET, TestSidecar, WAIT, WsClient};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Offsets in arrival order.
fn offsets(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["offset"].as_u64().expect("event offset"))
        .collect()
}

fn topic(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {{name: {}}}\nspec:\n  name: {name}\n{spec}\n",
        name.replace('.', "-")
    )
}

const OPEN: &str = "  access: {subscribe: {anonymous: true}}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_replies_with_the_position_and_delivers_in_offset_order() {
    let sc = TestSidecar::start(&[("t.yaml", &topic("chat.room-1", OPEN))]).await;
    let before = sc
        .publish_ok("chat.room-1", &json!({"type": "message.sent", "data": {"n": 0}}))
        .await;
    let epoch = before["epoch"].as_str().expect("epoch");

    let mut client = sc.client().await;
    let result = client.subscribe("chat.room-1").await;
    assert_eq!(result["topic"], "chat.room-1", "{result}");
    assert_eq!(result["offset"], 1, "latest offset at subscribe time: {result}");
    assert_eq!(result["epoch"], epoch);

    for n in 1..=5 {
        sc.publish_ok(
            "chat.room-1",
            &json!({"type": "message.sent", "source": "chat-api", "correlationId": format!("c{n}"), "data": {"n": n}}),
        )
        .await;
    }
    let events = client.collect_events(5, WAIT).await;
    assert_eq!(offsets(&events), [2, 3, 4, 5, 6], "live events only, in order");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["op"], "event");
        assert_eq!(e["topic"], "chat.room-1");
        assert_eq!(e["epoch"], epoch);
        let ev = &e["event"];
        assert_eq!(ev["type"], "message.sent");
        assert_eq!(ev["data"]["n"], i + 1);
        assert_eq!(ev["priority"], "normal", "the topic's default");
        assert_eq!(ev["source"], "chat-api");
        assert_eq!(ev["correlationId"], format!("c{}", i + 1));
        assert_eq!(ev["requiresAck"], false);
        assert!(ev["id"].as_str().is_some_and(|s| !s.is_empty()), "{ev}");
        assert!(
            ev["time"].as_str().is_some_and(|t| t.contains('T')),
            "RFC 3339 time: {ev}"
        );
    }
    client.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_subscriptions_deliver_every_matching_topic() {
    let manifests = [
        topic("chat.a", OPEN),
        topic("chat.b", OPEN),
        topic("chat.a.typing", OPEN),
        topic("news", OPEN),
    ]
    .concat();
    let sc = TestSidecar::start(&[("t.yaml", &manifests)]).await;

    let mut chat = sc.client().await;
    let result = chat.subscribe("chat.*").await;
    assert_eq!(result["pattern"], "chat.*", "{result}");
    let listed: Vec<&str> = result["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["topic"].as_str().expect("topic"))
        .collect();
    assert_eq!(listed, ["chat.a", "chat.b"], "`*` is one segment");

    let mut all = sc.client().await;
    let result = all.subscribe("**").await;
    assert_eq!(result["topics"].as_array().map(Vec::len), Some(4), "{result}");

    for t in ["chat.a", "news", "chat.a.typing", "chat.b"] {
        sc.publish_ok(t, &json!({"type": "x", "data": {"t": t}})).await;
    }
    let got: Vec<Value> = chat.collect_events(2, WAIT).await;
    let topics: Vec<&str> = got.iter().map(|e| e["topic"].as_str().expect("topic")).collect();
    assert_eq!(topics, ["chat.a", "chat.b"]);
    chat.expect_no_event(QUIET).await;

    let got = all.collect_events(4, WAIT).await;
    let topics: Vec<&str> = got.iter().map(|e| e["topic"].as_str().expect("topic")).collect();
    assert_eq!(topics, ["chat.a", "news", "chat.a.typing", "chat.b"]);

    // `since` needs one exact topic.
    let code = all
        .request_err(json!({"op": "subscribe", "topic": "chat.*", "since": {"offset": 0, "epoch": "x"}}))
        .await;
    assert_eq!(code, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_filters_and_min_priority_select_events() {
    let sc = TestSidecar::start(&[("t.yaml", &topic("room", OPEN))]).await;
    let mut by_type = sc.client().await;
    by_type
        .request_ok(json!({"op": "subscribe", "topic": "room", "types": ["message.*"]}))
        .await;
    let mut by_lang = sc.client().await;
    by_lang
        .request_ok(json!({"op": "subscribe", "topic": "room",
            "filter": [{"field": "data.lang", "op": "eq", "value": "en"}]}))
        .await;
    let mut by_prio = sc.client().await;
    by_prio
        .request_ok(json!({"op": "subscribe", "topic": "room", "minPriority": "high"}))
        .await;

    let publish = [
        json!({"type": "message.sent", "data": {"lang": "en"}}),
        json!({"type": "user.joined", "priority": "high", "data": {"lang": "de"}}),
        json!({"type": "message.edited", "priority": "critical", "data": {"lang": "de"}}),
        json!({"type": "message.sent.v2", "priority": "low", "data": {"lang": "en"}}),
        json!({"type": "reaction", "data": {}}),
    ];
    for e in &publish {
        sc.publish_ok("room", e).await;
    }

    // Events of different classes queued together are written highest class first, so
    // only the set is compared here.
    let sorted = |events: &[Value]| {
        let mut o = offsets(events);
        o.sort_unstable();
        o
    };
    let got = by_type.collect_events(2, WAIT).await;
    assert_eq!(sorted(&got), [1, 3], "message.* matches one segment after `message`");
    by_type.expect_no_event(QUIET).await;

    let got = by_lang.collect_events(2, WAIT).await;
    assert_eq!(sorted(&got), [1, 4]);
    by_lang.expect_no_event(QUIET).await;

    let got = by_prio.collect_events(2, WAIT).await;
    assert_eq!(sorted(&got), [2, 3]);
    by_prio.expect_no_event(QUIET).await;

    let code = by_prio
        .request_err(json!({"op": "subscribe", "topic": "room",
            "filter": [{"field": "data.x", "op": "regex", "value": "(unclosed"}]}))
        .await;
    assert_eq!(code, "bad_request", "a bad regex is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let sc = TestSidecar::start(&[("t.yaml", &topic("room", OPEN))]).await;
    let mut client = sc.client().await;
    client.subscribe("room").await;
    sc.publish_ok("room", &json!({"type": "a", "data": {}})).await;
    client.collect_events(1, WAIT).await;

    let result = client
        .request_ok(json!({"op": "unsubscribe", "id": 2, "topic": "room"}))
        .await;
    assert_eq!(result["topic"], "room");
    sc.publish_ok("room", &json!({"type": "b", "data": {}})).await;
    client.expect_no_event(QUIET).await;

    let reply = client
        .request(json!({"op": "unsubscribe", "id": 3, "topic": "room"}))
        .await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["id"], 3);
    assert_eq!(reply["error"]["code"], "not_subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_publish_needs_the_topics_publish_rule() {
    let topics = [
        topic(
            "room",
            "  access:\n    subscribe: {anonymous: true}\n    publish: {roles: [member]}",
        ),
        topic("feed", OPEN),
    ]
    .concat();
    let sc = TestSidecar::start(&[("auth.yaml", AUTH_MANIFESTS), ("t.yaml", &topics)]).await;
    let jwt = Jwt::test();
    let mut reader = sc.client().await;
    reader.subscribe("room").await;

    let mut member = sc.client_with_token(&jwt.user("ann", &["member"])).await;
    let result = member
        .request_ok(json!({"op": "publish", "id": 7, "topic": "room",
            "event": {"type": "message.sent", "data": {"text": "hi"}}}))
        .await;
    assert_eq!(result["topic"], "room");
    assert_eq!(result["offset"], 1);
    let got = reader.collect_events(1, WAIT).await;
    assert_eq!(got[0]["event"]["data"]["text"], "hi");

    let mut guest = sc.client_with_token(&jwt.user("bob", &["guest"])).await;
    let reply = guest
        .request(json!({"op": "publish", "id": "p1", "topic": "room", "event": {"type": "x", "data": {}}}))
        .await;
    assert_eq!(reply["id"], "p1");
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");

    let mut anonymous = sc.client().await;
    let code = anonymous
        .request_err(json!({"op": "publish", "topic": "room", "event": {"type": "x", "data": {}}}))
        .await;
    assert_eq!(code, "forbidden");

    // No publish rule: WebSocket clients may not publish at all.
    let code = member
        .request_err(json!({"op": "publish", "topic": "feed", "event": {"type": "x", "data": {}}}))
        .await;
    assert_eq!(code, "forbidden");
    let code = member
        .request_err(json!({"op": "publish", "topic": "nope", "event": {"type": "x", "data": {}}}))
        .await;
    assert_eq!(code, "unknown_topic");
    reader.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_forbidden_subscriptions_are_refused() {
    let topics = [
        topic("private", ""),
        topic("members", "  access:\n    subscribe: {roles: [member]}"),
    ]
    .concat();
    let sc = TestSidecar::start(&[("auth.yaml", AUTH_MANIFESTS), ("t.yaml", &topics)]).await;
    let mut anonymous = sc.client().await;
    let reply = anonymous
        .request(json!({"op": "subscribe", "id": 1, "topic": "no.such.topic"}))
        .await;
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "unknown_topic", "{reply}");
    assert_eq!(
        anonymous
            .request_err(json!({"op": "subscribe", "topic": "private"}))
            .await,
        "forbidden",
        "topics are private by default"
    );
    assert_eq!(
        anonymous
            .request_err(json!({"op": "subscribe", "topic": "bad..name"}))
            .await,
        "bad_request"
    );
    // A pattern only brings in what the client may see.
    let result = anonymous.subscribe("**").await;
    assert_eq!(result["topics"], json!([]), "{result}");

    let jwt = Jwt::test();
    let mut user = sc.client_with_token(&jwt.user("ann", &[])).await;
    user.subscribe("private").await;
    assert_eq!(
        user.request_err(json!({"op": "subscribe", "topic": "members"})).await,
        "forbidden"
    );
    let mut member = sc.client_with_token(&jwt.user("bob", &["member"])).await;
    member.subscribe("members").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_with_pong_and_the_same_id() {
    let sc = TestSidecar::start(&[("t.yaml", &topic("room", OPEN))]).await;
    let mut client = sc.client().await;
    client.send_json(&json!({"op": "ping", "id": 5})).await;
    let pong = client.expect_op("pong", WAIT).await;
    assert_eq!(pong, json!({"op": "pong", "id": 5}));
    client.send_json(&json!({"op": "ping", "id": "abc"})).await;
    assert_eq!(client.expect_op("pong", WAIT).await["id"], "abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_bad_request_and_the_connection_stays_usable() {
    let sc = TestSidecar::start(&[("t.yaml", &topic("room", OPEN))]).await;
    let mut client = sc.client().await;

    client.send(Message::text("{not json")).await;
    let reply = client.expect_op("reply", WAIT).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "bad_request");
    assert!(reply["id"].is_null(), "no readable id: {reply}");

    let reply = client.request(json!({"op": "subscribe", "id": "r7"})).await;
    assert_eq!(reply["error"]["code"], "bad_request", "missing topic: {reply}");
    assert!(
        reply["error"]["message"].as_str().is_some_and(|m| m.contains("topic")),
        "{reply}"
    );
    let reply = client.request(json!({"op": "launch", "id": 9})).await;
    assert_eq!(reply["error"]["code"], "bad_request", "unknown op: {reply}");

    client.subscribe("room").await;
    sc.publish_ok("room", &json!({"type": "a", "data": {}})).await;
    client.collect_events(1, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_get_an_error_reply() {
    let sc = TestSidecar::start(&[("t.yaml", &topic("room", OPEN))]).await;
    let mut client = sc.client().await;
    client.send(Message::binary(vec![1u8, 2, 3])).await;
    let reply = client.expect_op("reply", WAIT).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "bad_request");
    // Still usable.
    client.send_json(&json!({"op": "ping", "id": 1})).await;
    client.expect_op("pong", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_answered_with_disconnect_4009() {
    // Events of at most 1 KiB: the sidecar accepts frames up to 4 KiB + 16 KiB of envelope.
    let sc = TestSidecar::start(&[("t.yaml", &topic("room", "  maxEventBytes: 1024"))]).await;
    let mut client = sc.client().await;
    let big = json!({"op": "ping", "id": 1, "pad": "x".repeat(64 * 1024)}).to_string();
    // The server may close before it has read everything we send.
    let _ = client.try_send(Message::text(big)).await;
    let frame = client.expect_disconnect(WAIT).await;
    assert_eq!(frame["code"], 4009, "{frame}");
    assert_eq!(frame["reconnect"], false, "{frame}");
    assert!(frame["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_events_reach_only_their_targets() {
    let sc = TestSidecar::start(&[("auth.yaml", AUTH_MANIFESTS), ("t.yaml", &topic("inbox", OPEN))]).await;
    let jwt = Jwt::test();
    let mut alice = sc.client_with_token(&jwt.user("alice", &[])).await;
    // Bob authenticates with a first `auth` frame, whose reply names his session.
    let mut bob = sc.client().await;
    bob.send_json(&json!({"op": "auth", "token": jwt.mint(&json!({"sub": "bob", "device_id": "phone-1"}))}))
        .await;
    let auth = bob.expect_op("reply", WAIT).await;
    assert_eq!(auth["ok"], true, "{auth}");
    assert_eq!(auth["result"]["user"], "bob");
    assert_eq!(auth["result"]["device"], "phone-1");
    let bob_session = auth["result"]["session"].as_str().expect("session").to_owned();
    let mut anonymous = sc.client().await;
    for c in [&mut alice, &mut bob, &mut anonymous] {
        c.subscribe("inbox").await;
    }

    let to_alice = sc
        .publish_ok(
            "inbox",
            &json!({"type": "dm", "targets": {"users": ["alice"]}, "data": {"to": "alice"}}),
        )
        .await;
    let to_session = sc
        .publish_ok(
            "inbox",
            &json!({"type": "dm", "targets": {"sessions": [bob_session]}, "data": {"to": "bob"}}),
        )
        .await;
    let to_device = sc
        .publish_ok(
            "inbox",
            &json!({"type": "dm", "targets": {"devices": ["phone-1"]}, "data": {"to": "phone"}}),
        )
        .await;
    let everyone = sc.publish_ok("inbox", &json!({"type": "news", "data": {}})).await;

    let got = alice.collect_events(2, WAIT).await;
    assert_eq!(got[0]["offset"], to_alice["offset"]);
    assert_eq!(got[1]["offset"], everyone["offset"]);
    alice.expect_no_event(QUIET).await;

    let got = bob.collect_events(3, WAIT).await;
    assert_eq!(got[0]["offset"], to_session["offset"]);
    assert_eq!(got[1]["offset"], to_device["offset"]);
    assert_eq!(got[2]["offset"], everyone["offset"]);
    bob.expect_no_event(QUIET).await;

    let got = anonymous.collect_events(1, WAIT).await;
    assert_eq!(got[0]["offset"], everyone["offset"]);
    anonymous.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_whose_ttl_passed_are_not_replayed() {
    let sc = TestSidecar::start(&[("t.yaml", &topic("room", OPEN))]).await;
    let expiring = sc
        .publish_ok("room", &json!({"type": "typing", "ttlMs": 1, "data": {}}))
        .await;
    let lasting = sc
        .publish_ok("room", &json!({"type": "message", "ttlMs": 600_000, "data": {}}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    let mut late = sc.client().await;
    let result = late
        .request_ok(json!({"op": "subscribe", "topic": "room",
            "since": {"offset": 0, "epoch": expiring["epoch"]}}))
        .await;
    assert_eq!(result["recovered"], true, "{result}");
    let got = late.collect_events(1, WAIT).await;
    assert_eq!(got[0]["offset"], lasting["offset"], "the expired event is skipped");
    late.expect_no_event(QUIET).await;
    // History still lists it: TTL is about delivery.
    let h = sc.get("/v1/topics/room/history").await;
    assert_eq!(h.body["events"].as_array().map(Vec::len), Some(2), "{}", h.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_is_negotiated() {
    let sc = TestSidecar::start(&[("t.yaml", &topic("room", OPEN))]).await;
    // `WsClient` asserts the server picked `eventcast.v1`.
    let client = WsClient::connect_with(&sc.ws_url(), ConnectOptions::default())
        .await
        .expect("connect");
    client.close().await;
}
