//! Authentication (token in the query, the `Authorization` header or a first `auth`
//! frame; bad and expired tokens) and the limits of BroadcastPolicies: publish rate
//! limits per user (WebSocket and local API), new connections per IP, connections per
//! pod, subscriptions per connection.

use std::time::Duration;

use eventcast_tests::{
    AUTH_MANIFESTS, ConnectOptions, Jwt, RawFrame, RawWsClient, TestSidecar, WAIT, WsClient, eventually,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Error as WsError;

/// `members` needs role `member` to subscribe; `room` is open, members may publish.
const TOPICS: &str = r"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: members}
spec:
  access:
    subscribe: {roles: [member]}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: room}
spec:
  access:
    subscribe: {anonymous: true}
    publish: {roles: [member]}
";

fn with_policy(spec: &str) -> String {
    format!(
        "apiVersion: eventcast.dev/v1alpha1\nkind: BroadcastPolicy\nmetadata: {{name: limits}}\nspec:\n  topics: [room, members]\n{spec}\n"
    )
}

async fn start(policy: Option<&str>) -> TestSidecar {
    let policy = policy.map(with_policy).unwrap_or_default();
    TestSidecar::start(&[
        ("auth.yaml", AUTH_MANIFESTS),
        ("topics.yaml", TOPICS),
        ("policy.yaml", &policy),
    ])
    .await
}

/// The refused upgrade's status and `Retry-After`.
async fn refused(sc: &TestSidecar) -> (u16, Option<String>, Value) {
    match WsClient::connect_with(&sc.ws_url(), ConnectOptions::default()).await {
        Ok(_) => panic!("the upgrade should be refused"),
        Err(WsError::Http(resp)) => {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (resp.status().as_u16(), retry_after, body)
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_query_the_header_or_a_first_auth_frame_authenticates() {
    let sc = start(None).await;
    let jwt = Jwt::test();
    let token = jwt.user("ann", &["member"]);

    let mut by_query = sc.client_with_token(&token).await;
    by_query.subscribe("members").await;

    let mut by_header = WsClient::connect_with(
        &sc.ws_url(),
        ConnectOptions {
            bearer: Some(token.clone()),
            ..ConnectOptions::default()
        },
    )
    .await
    .expect("connect with Authorization header");
    by_header.subscribe("members").await;

    let mut by_frame = sc.client().await;
    by_frame.send_json(&json!({"op": "auth", "token": token})).await;
    let reply = by_frame.expect_op("reply", WAIT).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["user"], "ann");
    assert!(reply["result"]["session"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(reply["result"]["expiresAt"].as_u64().is_some(), "{reply}");
    by_frame.subscribe("members").await;

    let mut anonymous = sc.client().await;
    assert_eq!(
        anonymous
            .request_err(json!({"op": "subscribe", "topic": "members"}))
            .await,
        "forbidden"
    );
    // Without the role, a valid token is not enough.
    let mut guest = sc.client_with_token(&jwt.user("bob", &["guest"])).await;
    assert_eq!(
        guest.request_err(json!({"op": "subscribe", "topic": "members"})).await,
        "forbidden"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_disconnected_with_4001_and_no_reconnect() {
    let sc = start(None).await;
    let forged = Jwt::new(
        "not-the-secret",
        eventcast_tests::TEST_ISSUER,
        eventcast_tests::TEST_AUDIENCE,
    )
    .user("mallory", &["member"]);

    let mut by_query = sc.client_with_token(&forged).await;
    let d = by_query.expect_disconnect(WAIT).await;
    assert_eq!(d["code"], 4001, "{d}");
    assert_eq!(d["reconnect"], false, "{d}");

    let mut by_frame = sc.client().await;
    by_frame.send_json(&json!({"op": "auth", "token": forged})).await;
    let reply = by_frame.expect_op("reply", WAIT).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "unauthorized");
    let d = by_frame.expect_disconnect(WAIT).await;
    assert_eq!(d["code"], 4001, "{d}");
    assert_eq!(d["reconnect"], false);

    let wrong_audience = Jwt::new(
        eventcast_tests::TEST_SECRET,
        eventcast_tests::TEST_ISSUER,
        "someone-else",
    )
    .user("ann", &[]);
    let mut c = sc.client_with_token(&wrong_audience).await;
    assert_eq!(c.expect_disconnect(WAIT).await["code"], 4001);
    let mut garbage = sc.client_with_token("not.a.jwt").await;
    assert_eq!(garbage.expect_disconnect(WAIT).await["code"], 4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_disconnected_with_4002() {
    let sc = start(None).await;
    let jwt = Jwt::test();
    let mut c = sc.client_with_token(&jwt.expired("ann", 3600)).await;
    let d = c.expect_disconnect(WAIT).await;
    assert_eq!(d["code"], 4002, "{d}");
    assert_eq!(d["reconnect"], true, "a fresh token will do: {d}");

    // A token that expires while connected ends the connection then.
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        + 3;
    let mut short = sc
        .client_with_token(&jwt.mint(&json!({"sub": "ann", "roles": ["member"], "exp": exp})))
        .await;
    short.subscribe("members").await;
    let d = short.expect_disconnect(WAIT).await;
    assert_eq!(d["code"], 4002, "{d}");
    assert_eq!(d["reconnect"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_publish_over_the_per_user_rate_is_refused_with_retry_after() {
    let sc = start(Some("  rateLimits:\n    perUser: {eventsPerSecond: 1, burst: 2}")).await;
    let jwt = Jwt::test();
    let mut ann = sc.client_with_token(&jwt.user("ann", &["member"])).await;
    let publish = json!({"op": "publish", "topic": "room", "event": {"type": "msg", "data": {}}});
    ann.request_ok(publish.clone()).await;
    ann.request_ok(publish.clone()).await;
    let reply = ann.request(publish.clone()).await;
    assert_eq!(reply["ok"], false, "burst of 2 used up: {reply}");
    assert_eq!(reply["error"]["code"], "rate_limited");
    let after = reply["error"]["retryAfterMs"].as_u64().expect("retryAfterMs");
    assert!((1..=1000).contains(&after), "{reply}");

    // Per user: another user still has a full bucket.
    let mut bob = sc.client_with_token(&jwt.user("bob", &["member"])).await;
    bob.request_ok(publish.clone()).await;

    // After the advertised wait the user may publish again.
    tokio::time::sleep(Duration::from_millis(after + 50)).await;
    ann.request_ok(publish).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_api_publishes_attributed_to_a_user_get_429_with_retry_after() {
    let sc = start(Some("  rateLimits:\n    perUser: {eventsPerSecond: 1, burst: 2}")).await;
    let event = json!({"type": "msg", "data": {}});
    let as_ann = [("X-Eventcast-User", "ann")];
    for _ in 0..2 {
        let r = sc.post_with_headers("/v1/topics/room/events", &event, &as_ann).await;
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let r = sc.post_with_headers("/v1/topics/room/events", &event, &as_ann).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.error_code(), "rate_limited");
    let retry_after: u64 = r
        .header("retry-after")
        .expect("Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1, "{retry_after}");
    assert!(
        r.body["error"]["retryAfterMs"].as_u64().is_some_and(|ms| ms >= 1),
        "{}",
        r.body
    );

    // The app's own publishes (not attributed to a user) are not limited per user.
    for _ in 0..5 {
        sc.publish_ok("room", &event).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_over_the_per_ip_rate_get_429_on_upgrade() {
    let sc = start(Some("  rateLimits:\n    perIP: {connectionsPerSecond: 0.5, burst: 2}")).await;
    let _a = sc.client().await;
    let _b = sc.client().await;
    let (status, retry_after, body) = refused(&sc).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let secs: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=2).contains(&secs), "{secs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_per_pod_get_503() {
    let sc = start(Some("  connection: {maxConnectionsPerPod: 2}")).await;
    let a = sc.client().await;
    let _b = sc.client().await;
    let (status, retry_after, body) = refused(&sc).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "limit_exceeded", "{body}");
    assert!(retry_after.is_some(), "Retry-After on 503");

    // A slot frees up when a connection ends.
    a.close().await;
    assert!(
        eventually(WAIT, || async {
            WsClient::connect_with(&sc.ws_url(), ConnectOptions::default())
                .await
                .is_ok()
        })
        .await,
        "a closed connection releases its slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_over_the_per_connection_limit_are_refused() {
    let extra = r"
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: open-a}
spec:
  access: {subscribe: {anonymous: true}}
---
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: open-b}
spec:
  access: {subscribe: {anonymous: true}}
";
    let sc = TestSidecar::start(&[
        ("auth.yaml", AUTH_MANIFESTS),
        ("topics.yaml", &format!("{TOPICS}{extra}")),
        (
            "policy.yaml",
            &with_policy("  connection: {maxSubscriptionsPerConnection: 2}"),
        ),
    ])
    .await;
    let mut c = sc.client().await;
    c.subscribe("room").await;
    c.subscribe("open-a").await;
    c.subscribe("open-a").await; // the same topic again is not a new subscription
    let reply = c.request(json!({"op": "subscribe", "id": 3, "topic": "open-b"})).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "limit_exceeded");
    let mut p = sc.client().await;
    assert_eq!(
        p.request_err(json!({"op": "subscribe", "topic": "**"})).await,
        "limit_exceeded",
        "room + open-a + open-b would be 3"
    );
    // Unsubscribing frees a slot.
    c.request_ok(json!({"op": "unsubscribe", "topic": "room"})).await;
    c.subscribe("open-b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_disconnected_after_the_idle_timeout() {
    let sc = start(Some("  connection: {heartbeatInterval: 200ms, idleTimeout: 1s}")).await;
    // `silent` never answers the server's pings (nor sends anything after subscribing).
    let mut silent = RawWsClient::connect(&sc.ws_url()).await;
    silent
        .send_text(&json!({"op": "subscribe", "id": 1, "topic": "room"}).to_string())
        .await;
    // `alive` reads (and so answers pings) the whole time.
    let mut alive = sc.client().await;
    alive.subscribe("room").await;

    let watch_silent = async {
        let mut frames = Vec::new();
        loop {
            match silent.next(WAIT).await {
                Some(RawFrame::Text(f)) if f["op"] == "disconnect" => return (f, frames),
                Some(f) => frames.push(f),
                None => panic!("no disconnect frame; frames: {frames:?}"),
            }
        }
    };
    // Keep `alive` reading past the moment `silent` is dropped.
    let ((disconnect, frames), ()) = tokio::join!(watch_silent, alive.expect_no_event(Duration::from_millis(2500)));
    assert_eq!(disconnect["code"], 4006, "{disconnect}");
    assert_eq!(disconnect["reconnect"], true, "{disconnect}");
    assert!(
        frames.iter().any(|f| matches!(f, RawFrame::Ping)),
        "heartbeats were sent: {frames:?}"
    );
    assert!(matches!(silent.next(WAIT).await, Some(RawFrame::Close(Some(4006)))));

    // The reading client outlived it and is still served.
    sc.publish_ok("room", &json!({"type": "x", "data": {}})).await;
    alive.collect_events(1, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn the_per_ip_client_limit_does_not_throttle_the_apps_local_publishes() {
    let sc = start(Some("  rateLimits:\n    perIP: {eventsPerSecond: 1, burst: 2}")).await;
    // The app in the pod publishes through the local API, every request from 127.0.0.1:
    // a per-IP limit meant for end clients must not make it one throttled "client".
    for n in 0..5 {
        let r = sc.publish("room", &json!({"type": "msg", "data": {"n": n}})).await;
        assert_eq!(r.status, 202, "local publish {n}: {}", r.text);
    }
    // WebSocket clients publishing from one address are limited.
    let jwt = Jwt::test();
    let mut ann = sc.client_with_token(&jwt.user("ann", &["member"])).await;
    let publish = json!({"op": "publish", "topic": "room", "event": {"type": "msg", "data": {}}});
    ann.request_ok(publish.clone()).await;
    ann.request_ok(publish.clone()).await;
    assert_eq!(ann.request_err(publish).await, "rate_limited");
}
