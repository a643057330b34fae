//! The real kubectl over a CustomResourceDefinition: registration, discovery (plural,
//! short name, category), printer columns, explain, describe, wait, apply/patch/delete.

mod common;

use common::{TestServer, topic_yaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_registration_serves_resources_with_columns() {
    let t = TestServer::start().await;
    t.install_topic_crd().await;
    let crds = t.kubectl(&["get", "crd"]).await.ok();
    assert!(crds.stdout.starts_with("NAME"), "{}", crds.stdout);
    assert!(crds.stdout.contains("topics.eventcast.dev"));
    t.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/topics.eventcast.dev",
        "--timeout=10s",
    ])
    .await
    .ok();

    let resources = t.kubectl(&["api-resources", "--api-group=eventcast.dev"]).await.ok();
    let line = resources
        .stdout
        .lines()
        .find(|l| l.starts_with("topics"))
        .expect("topics listed");
    assert!(
        line.contains("ect")
            && line.contains("eventcast.dev/v1alpha1")
            && line.contains("true")
            && line.contains("Topic"),
        "{line}"
    );

    let empty = t.kubectl(&["get", "topics"]).await.ok();
    assert!(
        empty.stderr.contains("No resources found in default namespace."),
        "{}",
        empty.stderr
    );

    let path = t.file("orders.yaml", &topic_yaml("orders", "high"));
    let created = t.kubectl(&["apply", "-f", &path]).await.ok();
    assert_eq!(created.stdout.trim(), "topic.eventcast.dev/orders created");
    let again = t.kubectl(&["apply", "-f", &path]).await.ok();
    assert_eq!(again.stdout.trim(), "topic.eventcast.dev/orders unchanged");

    let table = t.kubectl(&["get", "ect"]).await.ok();
    let mut lines = table.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TOPIC",
            "PRIORITY",
            "DELIVERY",
            "READY",
            "PROGRAMMED",
            "SIDECARS",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(&row[..4], ["orders", "shop.orders", "high", "atLeastOnce"]);

    let by_category = t.kubectl(&["get", "eventcast", "-o", "name"]).await.ok();
    assert_eq!(by_category.stdout.trim(), "topic.eventcast.dev/orders");

    let path = t.file("orders.yaml", &topic_yaml("orders", "low"));
    let configured = t.kubectl(&["apply", "-f", &path]).await.ok();
    assert_eq!(configured.stdout.trim(), "topic.eventcast.dev/orders configured");
    let fields = t
        .kubectl(&[
            "get",
            "topic",
            "orders",
            "-o",
            "jsonpath={.spec.defaultPriority} {.metadata.generation}",
        ])
        .await
        .ok();
    assert_eq!(fields.stdout, "low 2");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_conditions_show_in_columns_and_wait() {
    let t = TestServer::start().await;
    t.install_topic_crd().await;
    let path = t.file("t.yaml", &topic_yaml("payments", "normal"));
    t.kubectl(&["apply", "-f", &path]).await.ok();
    let status = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Programmed","message":"ok","lastTransitionTime":"2024-01-01T00:00:00Z"}]}}"#;
    t.kubectl(&[
        "patch",
        "topic",
        "payments",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ])
    .await
    .ok();
    t.kubectl(&["wait", "--for=condition=Ready", "topic/payments", "--timeout=10s"])
        .await
        .ok();
    let table = t.kubectl(&["get", "topic", "payments", "--no-headers"]).await.ok();
    let row: Vec<&str> = table.stdout.split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["payments", "shop.payments", "normal", "atLeastOnce", "True"]
    );
    let gen_ = t
        .kubectl(&["get", "topic", "payments", "-o", "jsonpath={.metadata.generation}"])
        .await
        .ok();
    assert_eq!(gen_.stdout, "1", "status writes do not bump generation");
    let spec = r#"{"spec":{"defaultPriority":"critical"},"status":{"conditions":[]}}"#;
    t.kubectl(&["patch", "topic", "payments", "--type=merge", "-p", spec])
        .await
        .ok();
    let after = t
        .kubectl(&[
            "get",
            "topic",
            "payments",
            "-o",
            "jsonpath={.metadata.generation} {.status.conditions[0].type}",
        ])
        .await
        .ok();
    assert_eq!(after.stdout, "2 Ready", "main resource writes ignore status");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_describe_delete() {
    let t = TestServer::start().await;
    t.install_topic_crd().await;
    let explain = t.kubectl(&["explain", "topic.spec.delivery"]).await.ok();
    assert!(explain.stdout.contains("KIND:       Topic"), "{}", explain.stdout);
    assert!(explain.stdout.contains("maxRetries\t<integer>"), "{}", explain.stdout);
    assert!(
        explain.stdout.contains("Redeliveries before dead-lettering."),
        "{}",
        explain.stdout
    );

    let path = t.file("t.yaml", &topic_yaml("audit", "low"));
    t.kubectl(&["apply", "-f", &path]).await.ok();
    let describe = t.kubectl(&["describe", "topic", "audit"]).await.ok();
    assert!(describe.stdout.contains("Name:         audit"), "{}", describe.stdout);
    assert!(
        describe.stdout.contains("Default Priority:  low"),
        "{}",
        describe.stdout
    );

    let deleted = t.kubectl(&["delete", "-f", &path]).await.ok();
    // kubectl 1.34+ adds "from default namespace".
    assert!(
        deleted.stdout.starts_with("topic.eventcast.dev \"audit\" deleted"),
        "{}",
        deleted.stdout
    );
    let gone = t.kubectl(&["get", "topic", "audit"]).await.failed();
    assert_eq!(gone.code, 1);
    assert!(
        gone.stderr
            .contains("Error from server (NotFound): topics.eventcast.dev \"audit\" not found"),
        "{}",
        gone.stderr
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_either_api_show_in_describe() {
    let t = TestServer::start().await;
    t.install_topic_crd().await;
    let path = t.file("t.yaml", &topic_yaml("orders", "high"));
    t.kubectl(&["apply", "-f", &path]).await.ok();
    let uid = t
        .kubectl(&["get", "topic", "orders", "-o", "jsonpath={.metadata.uid}"])
        .await
        .ok()
        .stdout;
    // As kube-rs's Recorder writes it: events.k8s.io/v1.
    let event = format!(
        "apiVersion: events.k8s.io/v1
kind: Event
metadata: {{name: orders.1, namespace: default}}
eventTime: \"2026-01-01T00:00:00.000000Z\"
reportingController: eventcast.dev/operator
reportingInstance: operator-0
action: Reconcile
reason: Programmed
note: topic programmed on 3 sidecars
type: Normal
regarding: {{apiVersion: eventcast.dev/v1alpha1, kind: Topic, name: orders, namespace: default, uid: {uid}}}
"
    );
    let path = t.file("ev.yaml", &event);
    t.kubectl(&["create", "-f", &path]).await.ok();
    let core = t
        .kubectl(&[
            "get",
            "events",
            "-o",
            "jsonpath={.items[0].involvedObject.name}|{.items[0].message}|{.items[0].reportingComponent}",
        ])
        .await
        .ok();
    assert_eq!(
        core.stdout,
        "orders|topic programmed on 3 sidecars|eventcast.dev/operator"
    );
    let describe = t.kubectl(&["describe", "topic", "orders"]).await.ok();
    let events = describe.stdout.split("Events:").nth(1).expect("events section");
    assert!(
        events.contains("Programmed") && events.contains("topic programmed on 3 sidecars"),
        "{}",
        describe.stdout
    );
    let selected = t
        .kubectl(&[
            "get",
            "events.events.k8s.io",
            "--field-selector=regarding.name=orders",
            "-o",
            "name",
        ])
        .await
        .ok();
    assert_eq!(selected.stdout.trim(), "event.events.k8s.io/orders.1");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_crd_deletes_its_objects_and_stops_serving() {
    let t = TestServer::start().await;
    t.install_topic_crd().await;
    let path = t.file("t.yaml", &topic_yaml("orders", "high"));
    t.kubectl(&["apply", "-f", &path]).await.ok();
    t.kubectl(&["delete", "crd", "topics.eventcast.dev"]).await.ok();
    // With kubectl's discovery cache still listing topics the list itself is a 404, as
    // from a real apiserver; without it the type is unknown.
    let gone = t.kubectl(&["get", "topics"]).await.failed();
    let stale_cache =
        "Unable to list \"eventcast.dev/v1alpha1, Resource=topics\": the server could not find the requested resource";
    assert!(
        gone.stderr
            .contains("the server doesn't have a resource type \"topics\"")
            || gone.stderr.contains(stale_cache),
        "{}",
        gone.stderr
    );
    t.install_topic_crd().await;
    let empty = t.kubectl(&["get", "topics"]).await.ok();
    assert!(
        empty.stderr.contains("No resources found"),
        "the old objects went with the CRD: {}",
        empty.stdout
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_runtime_recorder_events_show_in_describe() {
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder};
    let t = TestServer::start().await;
    t.install_topic_crd().await;
    let path = t.file("t.yaml", &topic_yaml("orders", "high"));
    t.kubectl(&["apply", "-f", &path]).await.ok();
    let topics: kube::Api<eventcast_api::crd::Topic> = kube::Api::namespaced(t.client(), "default");
    let topic = topics.get("orders").await.expect("topic");
    let recorder = Recorder::new(t.client(), "eventcast-operator".into());
    let event = Event {
        type_: EventType::Normal,
        reason: "Programmed".into(),
        note: Some("topic programmed on 3 sidecars".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = topic.object_ref(&());
    recorder.publish(&event, &reference).await.expect("first event");
    recorder
        .publish(&event, &reference)
        .await
        .expect("repeat: a series patch");
    let describe = t.kubectl(&["describe", "topic", "orders"]).await.ok();
    let events = describe.stdout.split("Events:").nth(1).expect("events section");
    assert!(events.contains("Normal  Programmed"), "{}", describe.stdout);
    assert!(
        events.contains("eventcast-operator") && events.contains("topic programmed on 3 sidecars"),
        "{}",
        describe.stdout
    );
    let count = t
        .kubectl(&["get", "events.events.k8s.io", "-o", "jsonpath={.items[0].series.count}"])
        .await
        .ok();
    assert_eq!(count.stdout, "2");
    t.stop().await;
}
