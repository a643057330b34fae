//! The shipped `examples/` directory, as the README's first command runs it
//! (`eventcast-sidecar --manifests examples/`): it loads, and its topics, policy and
//! demo secret behave as their comments promise.

use std::path::PathBuf;

use eventcast_tests::{Jwt, QUIET, TestSidecar, WAIT, eventually};
use serde_json::json;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The demo HMAC key, read from `examples/jwt-secret.yaml` (`stringData.secret`).
fn demo_secret() -> String {
    let text = std::fs::read_to_string(examples_dir().join("jwt-secret.yaml")).expect("read jwt-secret.yaml");
    let after = text
        .split_once("stringData:")
        .expect("jwt-secret.yaml has stringData")
        .1;
    after
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret:"))
        .expect("stringData.secret")
        .trim()
        .trim_matches('"')
        .to_owned()
}

/// Tokens the example BroadcastPolicy `default` accepts.
fn demo_jwt() -> Jwt {
    Jwt::new(&demo_secret(), "https://auth.example.com", "eventcast")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_load_and_behave_as_documented() {
    let sc = TestSidecar::start_in(&examples_dir()).await;
    let topics = sc.topic_names().await;
    for t in [
        "chat.room-42",
        "chat.room-42.typing",
        "notifications",
        "orders.archive",
        "orders.dlq",
        "orders.status",
    ] {
        assert!(topics.iter().any(|n| n == t), "{t} missing from {topics:?}");
    }
    let jwt = demo_jwt();

    // chat.room-42: anyone may read, members may post from their WebSocket.
    let mut reader = sc.client().await;
    let sub = reader.subscribe("chat.room-42").await;
    assert_eq!(sub["topic"], "chat.room-42");
    let mut member = sc.client_with_token(&jwt.user("ann", &["member"])).await;
    let posted = member
        .request_ok(json!({"op": "publish", "topic": "chat.room-42",
            "event": {"type": "message.sent", "data": {"text": "hello"}}}))
        .await;
    let got = reader
        .expect_frame("ann's message", WAIT, |f| f["event"]["type"] == "message.sent")
        .await;
    assert_eq!(got["offset"], posted["offset"]);
    assert_eq!(got["event"]["data"]["text"], "hello");
    assert_eq!(
        reader
            .request_err(
                json!({"op": "publish", "topic": "chat.room-42", "event": {"type": "message.sent", "data": {}}})
            )
            .await,
        "forbidden",
        "anonymous readers may not post"
    );

    // The policy's content rules and the topic's schema apply to the app's publishes too.
    let r = sc
        .publish(
            "chat.room-42",
            &json!({"type": "message.sent", "data": {"text": "<script>x()</script>"}}),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (422, "content_rejected"), "{}", r.text);
    let r = sc
        .publish(
            "chat.room-42",
            &json!({"type": "message.sent", "data": {"text": "y".repeat(2001)}}),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (422, "schema_violation"), "{}", r.text);
    sc.publish_ok(
        "chat.room-42",
        &json!({"type": "message.sent", "data": {"text": "login", "password": "hunter2"}}),
    )
    .await;
    let got = reader
        .expect_frame("the redacted message", WAIT, |f| f["event"]["data"]["text"] == "login")
        .await;
    assert!(got["event"]["data"].get("password").is_none(), "{got}");

    // orders.status: customers only, each receives their own orders.
    let mut anonymous = sc.client().await;
    assert_eq!(
        anonymous
            .request_err(json!({"op": "subscribe", "topic": "orders.status"}))
            .await,
        "forbidden"
    );
    let mut alice = sc.client_with_token(&jwt.user("alice", &["customer"])).await;
    alice.subscribe("orders.status").await;
    let mut bob = sc.client_with_token(&jwt.user("bob", &["customer"])).await;
    bob.subscribe("orders.status").await;
    let order = sc
        .publish_ok(
            "orders.status",
            &json!({"type": "order.shipped", "targets": {"users": ["alice"]}, "data": {"order": 7}}),
        )
        .await;
    let got = alice.collect_events(1, WAIT).await;
    assert_eq!(got[0]["offset"], order["offset"]);
    assert_eq!(got[0]["event"]["priority"], "critical", "the topic's default priority");
    bob.expect_no_event(QUIET).await;

    // The Subscription `orders-archive` copies order.* events into orders.archive.
    sc.publish_ok("orders.status", &json!({"type": "status.ping", "data": {}}))
        .await;
    let archived = || async {
        sc.get("/v1/topics/orders.archive/history").await.body["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        eventually(WAIT, || async { !archived().await.is_empty() }).await,
        "order.shipped was not archived"
    );
    tokio::time::sleep(QUIET).await;
    let copies = archived().await;
    assert_eq!(copies.len(), 1, "only order.* events are copied: {copies:?}");
    assert_eq!(copies[0]["event"]["type"], "order.shipped");
    assert_eq!(copies[0]["event"]["data"], json!({"order": 7}));

    // A token from another issuer is refused.
    let foreign = Jwt::new(&demo_secret(), "https://evil.example.com", "eventcast").user("eve", &["customer"]);
    let mut eve = sc.client_with_token(&foreign).await;
    assert_eq!(eve.expect_disconnect(WAIT).await["code"], 4001);
}
