//! Presence: on topics with `presence: true`, subscribers see `presence.join` and
//! `presence.leave` events of each other, and the `presence` op lists who is there.

use eventcast_tests::{AUTH_MANIFESTS, Jwt, TestSidecar, WAIT, WsClient};
use serde_json::{Value, json};

const TOPICS: &str = r"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: lobby}
spec:
  presence: true
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: quiet}
spec:
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: backstage}
spec:
  presence: true
  access: {subscribe: {roles: [crew]}}
";

async fn presence_event(client: &mut WsClient, kind: &str, user: &str) -> Value {
    client
        .expect_frame(&format!("{kind} of {user}"), WAIT, |f| {
            f["op"] == "event" && f["event"]["type"] == kind && f["event"]["data"]["user"] == user
        })
        .await
}

fn sessions_by_user(list: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| {
            (
                c["user"].as_str().unwrap_or_default().to_owned(),
                c["session"].as_str().expect("session").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_see_each_others_join_and_leave() {
    let sc = TestSidecar::start(&[("auth.yaml", AUTH_MANIFESTS), ("t.yaml", TOPICS)]).await;
    let jwt = Jwt::test();
    let mut alice = sc.client_with_token(&jwt.user("alice", &[])).await;
    alice.subscribe("lobby").await;
    let own = presence_event(&mut alice, "presence.join", "alice").await;
    assert_eq!(own["topic"], "lobby");

    let mut bob = sc.client_with_token(&jwt.user("bob", &[])).await;
    bob.subscribe("lobby").await;
    let join = presence_event(&mut alice, "presence.join", "bob").await;
    let bob_session = join["event"]["data"]["session"].as_str().expect("session").to_owned();

    let list = alice
        .request_ok(json!({"op": "presence", "id": 4, "topic": "lobby"}))
        .await;
    assert_eq!(list["topic"], "lobby");
    let present = sessions_by_user(&list);
    assert_eq!(present.len(), 2, "{list}");
    assert_eq!(present[0].0, "alice");
    assert_eq!(present[1], ("bob".to_owned(), bob_session.clone()));
    let http = sc.get("/v1/topics/lobby/presence").await;
    assert_eq!(sessions_by_user(&http.body), present, "the local API agrees");

    bob.close().await;
    let leave = presence_event(&mut alice, "presence.leave", "bob").await;
    assert_eq!(leave["event"]["data"]["session"], bob_session.as_str());
    let list = alice.request_ok(json!({"op": "presence", "topic": "lobby"})).await;
    let present = sessions_by_user(&list);
    assert_eq!(present.len(), 1, "{list}");
    assert_eq!(present[0].0, "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_leaves_and_anonymous_clients_are_listed_by_session() {
    let sc = TestSidecar::start(&[("auth.yaml", AUTH_MANIFESTS), ("t.yaml", TOPICS)]).await;
    let mut watcher = sc.client().await;
    watcher.subscribe("lobby").await;
    let mut guest = sc.client().await;
    guest.subscribe("lobby").await;
    let list = watcher.request_ok(json!({"op": "presence", "topic": "lobby"})).await;
    assert_eq!(list["clients"].as_array().map(Vec::len), Some(2), "{list}");

    guest.request_ok(json!({"op": "unsubscribe", "topic": "lobby"})).await;
    let leave = watcher
        .expect_frame("a presence.leave", WAIT, |f| {
            f["op"] == "event" && f["event"]["type"] == "presence.leave"
        })
        .await;
    assert!(
        leave["event"]["data"]["session"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let list = watcher.request_ok(json!({"op": "presence", "topic": "lobby"})).await;
    assert_eq!(list["clients"].as_array().map(Vec::len), Some(1), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_presence_op_is_refused_where_it_does_not_apply() {
    let sc = TestSidecar::start(&[("auth.yaml", AUTH_MANIFESTS), ("t.yaml", TOPICS)]).await;
    let mut c = sc.client().await;
    assert_eq!(
        c.request_err(json!({"op": "presence", "topic": "quiet"})).await,
        "bad_request",
        "presence is off"
    );
    assert_eq!(
        c.request_err(json!({"op": "presence", "topic": "nope"})).await,
        "unknown_topic"
    );
    assert_eq!(
        c.request_err(json!({"op": "presence", "topic": "backstage"})).await,
        "forbidden",
        "only those who may subscribe see who is there"
    );
}
