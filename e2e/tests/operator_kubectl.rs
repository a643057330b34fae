//! The operator driven the way a platform engineer drives it: `kubectl apply` of the
//! CRDs and examples against the Kubernetes API test server, config-stream clients in
//! the namespace, and status read back with `kubectl get` / `kubectl wait`.

use std::time::Duration;

use eventcast_e2e::{Cluster, FakeSidecar, eventually};

const WAIT: Duration = Duration::from_secs(30);

fn examples_dir() -> String {
    eventcast_e2e::cluster::workspace_root()
        .join("examples")
        .display()
        .to_string()
}

async fn condition(c: &Cluster, resource: &str, type_: &str, field: &str) -> String {
    c.jsonpath(
        resource,
        "default",
        &format!("{{.status.conditions[?(@.type==\"{type_}\")].{field}}}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_are_programmed_on_every_sidecar_and_edits_follow() {
    let c = Cluster::start().await;
    c.kubectl(&["apply", "-f", &examples_dir()]).await.ok();
    let op = c.operator("op-a").await;
    let a = FakeSidecar::connect(op.config_stream_addr, "default", "pod-a");
    let b = FakeSidecar::connect(op.config_stream_addr, "default", "pod-b");

    c.kubectl(&["wait", "--for=condition=Ready", "topic/chat-room-42", "--timeout=30s"])
        .await
        .ok();
    eventually("2/2 sidecars programmed", WAIT, || async {
        (c.jsonpath("topic/chat-room-42", "default", "{.status.sidecars.acked}")
            .await
            == "2"
            && condition(&c, "topic/chat-room-42", "Programmed", "status").await == "True")
            .then_some(())
    })
    .await;
    let version = c
        .jsonpath("topic/chat-room-42", "default", "{.status.configVersion}")
        .await;
    for s in [&a, &b] {
        let (v, config) = s.latest().expect("a snapshot");
        // configVersion names the config that first carried this generation; the
        // sidecars got it (and maybe newer ones since, from other resources' changes).
        assert!(
            s.versions().contains(&version),
            "{version} not among {:?} (latest {v})",
            s.versions()
        );
        assert!(config.topics.contains_key("chat.room-42"));
        assert!(config.subscriptions.iter().any(|s| s.name == "orders-archive"));
    }
    assert_eq!(
        condition(&c, "topic/chat-room-42", "Programmed", "message").await,
        format!("2/2 sidecars run config {version} or newer")
    );
    let table = c.kubectl(&["get", "ect"]).await.ok().stdout;
    assert!(table.contains("chat.room-42"), "{table}");
    let policy_ready = condition(&c, "broadcastpolicy/default", "Ready", "status").await;
    assert_eq!(policy_ready, "True");

    // An edit reaches both sidecars and the status follows its generation.
    let topic = |extra: &str| {
        format!(
            "apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {{name: chat-room-42, namespace: default}}\nspec:\n  name: chat.room-42\n  presence: true\n  access: {{subscribe: {{anonymous: true}}, publish: {{anonymous: true}}}}\n{extra}"
        )
    };
    c.apply(&topic("  retention: {maxEvents: 5, maxAge: 10m}\n")).await.ok();
    for s in [&a, &b] {
        s.wait_for("retention 5 on the sidecar", WAIT, |cfg| {
            cfg.topics
                .get("chat.room-42")
                .is_some_and(|t| t.retention.max_events == 5)
        })
        .await;
    }
    let generation = c
        .jsonpath("topic/chat-room-42", "default", "{.metadata.generation}")
        .await;
    eventually("status of the new generation", WAIT, || async {
        (c.jsonpath("topic/chat-room-42", "default", "{.status.observedGeneration}")
            .await
            == generation
            && condition(&c, "topic/chat-room-42", "Programmed", "status").await == "True")
            .then_some(())
    })
    .await;

    // Schema and CEL errors are refused at apply time, naming the field.
    let bad = c.apply(&topic("  defaultPriority: urgent\n")).await.failed();
    assert!(bad.stderr.contains("defaultPriority"), "{}", bad.stderr);

    // A semantic error is accepted by the API, reported as Accepted=False, and the last
    // good generation keeps serving.
    c.apply(&topic("  retention: {maxEvents: 7}\n  schema: {type: not-a-type}\n"))
        .await
        .ok();
    eventually("Accepted=False", WAIT, || async {
        (condition(&c, "topic/chat-room-42", "Accepted", "status").await == "False").then_some(())
    })
    .await;
    assert_eq!(
        condition(&c, "topic/chat-room-42", "Accepted", "reason").await,
        "InvalidSchema"
    );
    assert!(
        condition(&c, "topic/chat-room-42", "Accepted", "message")
            .await
            .starts_with("spec.schema")
    );
    assert_eq!(condition(&c, "topic/chat-room-42", "Ready", "status").await, "False");
    let (_, cfg) = a.latest().expect("snapshot");
    assert_eq!(
        cfg.topics["chat.room-42"].retention.max_events, 5,
        "the last good generation keeps serving"
    );
    let events = c
        .kubectl(&["get", "events", "-n", "default", "-o", "jsonpath={.items[*].reason}"])
        .await
        .ok()
        .stdout;
    assert!(events.contains("Rejected"), "events: {events}");
    c.apply(&topic("  retention: {maxEvents: 5, maxAge: 10m}\n")).await.ok();
    c.kubectl(&["wait", "--for=condition=Ready", "topic/chat-room-42", "--timeout=30s"])
        .await
        .ok();

    // A sidecar that rejects a config is counted apart, with its error.
    b.nack_with(Some("disk full"));
    c.apply("apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {name: scratch, namespace: default}\nspec: {deletionPolicy: Delete}\n")
        .await
        .ok();
    eventually("nack reported", WAIT, || async {
        (c.jsonpath("topic/scratch", "default", "{.status.sidecars.nacked}")
            .await
            == "1")
            .then_some(())
    })
    .await;
    assert_eq!(condition(&c, "topic/scratch", "Programmed", "reason").await, "Rejected");
    assert!(
        c.jsonpath("topic/scratch", "default", "{.status.lastError}")
            .await
            .contains("disk full")
    );
    let nacks = reqwest_metrics(op.metrics_addr).await;
    assert!(
        nacks.contains("eventcast_operator_config_nacks_total{namespace=\"default\"}"),
        "{nacks}"
    );
    b.nack_with(None);

    // deletionPolicy: Delete puts a finalizer on; deleting purges through a sidecar.
    eventually("finalizer added", WAIT, || async {
        (c.jsonpath("topic/scratch", "default", "{.metadata.finalizers}").await)
            .contains("eventcast.dev/topic-data")
            .then_some(())
    })
    .await;
    c.kubectl(&["delete", "topic/scratch", "--timeout=30s"]).await.ok();
    assert!(
        a.purges().contains(&"scratch".to_owned()) || b.purges().contains(&"scratch".to_owned()),
        "a sidecar was asked to purge"
    );
    let gone = c.kubectl(&["get", "topic/scratch"]).await;
    assert_ne!(gone.code, 0, "the Topic is gone once purged");
    a.wait_for("scratch removed from the config", WAIT, |cfg| {
        !cfg.topics.contains_key("scratch")
    })
    .await;
    op.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_resources_keep_their_config_until_resumed() {
    let c = Cluster::start().await;
    let op = c.operator("op-a").await;
    let a = FakeSidecar::connect(op.config_stream_addr, "default", "pod-a");
    let topic = |max: u32, paused: bool| {
        let annotations = if paused {
            "annotations: {eventcast.dev/paused: \"true\"}, "
        } else {
            ""
        };
        format!(
            "apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {{name: feed, namespace: default, {annotations}}}\nspec: {{retention: {{maxEvents: {max}}}}}\n"
        )
    };
    c.apply(&topic(10, false)).await.ok();
    a.wait_for("feed at 10", WAIT, |cfg| {
        cfg.topics.get("feed").is_some_and(|t| t.retention.max_events == 10)
    })
    .await;
    c.apply(&topic(20, true)).await.ok();
    eventually("Paused condition", WAIT, || async {
        (condition(&c, "topic/feed", "Paused", "status").await == "True").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        a.latest().expect("snapshot").1.topics["feed"].retention.max_events,
        10,
        "a paused resource keeps its last programmed config"
    );
    c.apply(&topic(20, false)).await.ok();
    a.wait_for("feed at 20 after resuming", WAIT, |cfg| {
        cfg.topics.get("feed").is_some_and(|t| t.retention.max_events == 20)
    })
    .await;
    eventually("Paused condition removed", WAIT, || async {
        condition(&c, "topic/feed", "Paused", "status")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    // Deletion is processed even while paused.
    c.apply(&topic(20, true)).await.ok();
    c.kubectl(&["delete", "topic/feed"]).await.ok();
    a.wait_for("feed removed", WAIT, |cfg| !cfg.topics.contains_key("feed"))
        .await;
    op.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_writes_no_status_for_unchanged_resources_and_a_standby_takes_over() {
    let c = Cluster::start().await;
    c.kubectl(&["apply", "-f", &examples_dir()]).await.ok();
    let first = c.operator("op-a").await;
    let a = FakeSidecar::connect(first.config_stream_addr, "default", "pod-a");
    c.kubectl(&[
        "wait",
        "--for=condition=Programmed",
        "topic/chat-room-42",
        "--timeout=30s",
    ])
    .await
    .ok();
    let version_before = a.latest().expect("snapshot").0;
    let rv_before = c
        .jsonpath("topic/chat-room-42", "default", "{.metadata.resourceVersion}")
        .await;

    // A graceful stop releases the Lease; the next replica leads at once.
    first.shutdown().await;
    eventually("sidecar notices", WAIT, || async { (!a.is_connected()).then_some(()) }).await;
    let second = c.operator("op-b").await;
    let a = FakeSidecar::connect(second.config_stream_addr, "default", "pod-a");
    eventually("second operator leads", WAIT, || async {
        second.is_leader().then_some(())
    })
    .await;
    eventually("sidecar got the config again", WAIT, || async { a.latest() }).await;
    assert_eq!(
        a.latest().expect("snapshot").0,
        version_before,
        "same resources, same version"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        c.jsonpath("topic/chat-room-42", "default", "{.metadata.resourceVersion}")
            .await,
        rv_before,
        "no status write when nothing changed"
    );

    // A standby replica takes over when the leader dies without releasing the Lease.
    let standby = c.operator("op-c").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(second.is_leader() && !standby.is_leader());
    let killed_at = std::time::Instant::now();
    second.kill();
    eventually("standby leads", Duration::from_secs(20), || async {
        standby.is_leader().then_some(())
    })
    .await;
    let took = killed_at.elapsed();
    println!("leader handover after a killed leader: {took:?}");
    assert!(took < Duration::from_secs(15), "handover took {took:?}");
    // pod-a's config stream broke with the leader; it reconnects (through the Service,
    // in a cluster) to the surviving replica.
    drop(a);
    let b = FakeSidecar::connect(standby.config_stream_addr, "default", "pod-a");
    c.apply("apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {name: after-failover, namespace: default}\n")
        .await
        .ok();
    c.kubectl(&[
        "wait",
        "--for=condition=Programmed",
        "topic/after-failover",
        "--timeout=30s",
    ])
    .await
    .ok();
    assert!(b.latest().expect("snapshot").1.topics.contains_key("after-failover"));
    standby.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_split_across_two_replicas_are_all_counted_by_the_leader() {
    let c = Cluster::start().await;
    let leader = c.operator("op-a").await;
    eventually("op-a leads", WAIT, || async { leader.is_leader().then_some(()) }).await;
    let standby = c.operator("op-b").await;
    let a = FakeSidecar::connect(leader.config_stream_addr, "default", "pod-a");
    let b = FakeSidecar::connect(standby.config_stream_addr, "default", "pod-b");
    c.apply("apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {name: split, namespace: default}\n")
        .await
        .ok();
    eventually("2/2 across replicas", WAIT, || async {
        (c.jsonpath("topic/split", "default", "{.status.sidecars.acked}").await == "2"
            && condition(&c, "topic/split", "Programmed", "status").await == "True")
            .then_some(())
    })
    .await;
    for s in [&a, &b] {
        assert!(s.latest().expect("snapshot").1.topics.contains_key("split"));
    }
    // The standby's sidecar rejecting a config shows on the leader's status writes.
    b.nack_with(Some("no space left"));
    c.apply("apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {name: split, namespace: default}\nspec: {presence: true}\n")
        .await
        .ok();
    eventually("remote nack counted", WAIT, || async {
        (c.jsonpath("topic/split", "default", "{.status.sidecars.nacked}").await == "1").then_some(())
    })
    .await;
    assert!(
        c.jsonpath("topic/split", "default", "{.status.lastError}")
            .await
            .contains("no space left")
    );
    standby.shutdown().await;
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_sets_the_deployment_scale_from_sidecar_load() {
    let c = Cluster::start().await;
    c.apply(
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: chat-app, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: chat}}
  template:
    metadata: {labels: {app: chat}}
    spec: {containers: [{name: app, image: example/chat:1}]}
",
    )
    .await
    .ok();
    let op = c.operator("op-a").await;
    let a = FakeSidecar::connect(op.config_stream_addr, "default", "chat-app-7d9f-a");
    let b = FakeSidecar::connect(op.config_stream_addr, "default", "chat-app-7d9f-b");
    a.report_connections(20);
    b.report_connections(20);
    c.apply(
        "apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: chat, namespace: default}
---
apiVersion: eventcast.dev/v1alpha1
kind: BroadcastPolicy
metadata: {name: scale, namespace: default}
spec:
  topics: [chat]
  autoscaling:
    targetRef: {kind: Deployment, name: chat-app}
    minReplicas: 1
    maxReplicas: 5
    targetConnectionsPerPod: 10
    scaleUpCooldown: 1s
    scaleDownCooldown: 1s
",
    )
    .await
    .ok();
    // 40 connections at 10 per pod on 2 pods: 4 replicas.
    eventually("deployment scaled to 4", WAIT, || async {
        (c.jsonpath("deployment/chat-app", "default", "{.spec.replicas}").await == "4").then_some(())
    })
    .await;
    eventually("autoscaling status", WAIT, || async {
        (c.jsonpath(
            "broadcastpolicy/scale",
            "default",
            "{.status.autoscaling.desiredReplicas}",
        )
        .await
            == "4"
            && condition(&c, "broadcastpolicy/scale", "AutoscalingHealthy", "status").await == "True")
            .then_some(())
    })
    .await;
    assert!(
        !c.jsonpath(
            "broadcastpolicy/scale",
            "default",
            "{.status.autoscaling.lastScaleTime}"
        )
        .await
        .is_empty()
    );
    // Load drops: down to the minimum once the cooldown passed.
    a.report_connections(0);
    b.report_connections(0);
    eventually("deployment scaled down to 1", WAIT, || async {
        (c.jsonpath("deployment/chat-app", "default", "{.spec.replicas}").await == "1").then_some(())
    })
    .await;
    // A missing target is reported on its own condition; Ready is untouched.
    c.kubectl(&[
        "patch",
        "broadcastpolicy/scale",
        "--type=merge",
        "-p",
        r#"{"spec":{"autoscaling":{"targetRef":{"kind":"Deployment","name":"nope"}}}}"#,
    ])
    .await
    .ok();
    eventually("TargetNotFound", WAIT, || async {
        (condition(&c, "broadcastpolicy/scale", "AutoscalingHealthy", "reason").await == "TargetNotFound").then_some(())
    })
    .await;
    assert_eq!(
        condition(&c, "broadcastpolicy/scale", "AutoscalingHealthy", "status").await,
        "False"
    );
    eventually("Ready stays True", WAIT, || async {
        (condition(&c, "broadcastpolicy/scale", "Ready", "status").await == "True").then_some(())
    })
    .await;
    op.shutdown().await;
}

async fn reqwest_metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("metrics listener");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("response");
    out
}
