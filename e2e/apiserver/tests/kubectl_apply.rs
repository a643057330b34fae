//! kubectl over built-in kinds and server-side apply: client-side apply with strategic
//! merge (a removed container goes away), scale, labels and selectors, field managers
//! and conflicts, finalizers, namespace deletion.

mod common;

use common::{TestServer, topic_yaml};

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: nginx:1
        ports: [{containerPort: 80}]
      - name: sidecar
        image: busybox:1
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_scale_and_selectors() {
    let t = TestServer::start().await;
    let path = t.file("d.yaml", DEPLOYMENT);
    assert_eq!(
        t.kubectl(&["apply", "-f", &path]).await.ok().stdout.trim(),
        "deployment.apps/web created"
    );
    let updated = DEPLOYMENT
        .replace("nginx:1", "nginx:2")
        .replace("      - name: sidecar\n        image: busybox:1\n", "");
    let path = t.file("d.yaml", &updated);
    assert_eq!(
        t.kubectl(&["apply", "-f", &path]).await.ok().stdout.trim(),
        "deployment.apps/web configured"
    );
    let containers = t
        .kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[*].name}={.spec.template.spec.containers[0].image} {.metadata.generation}"])
        .await
        .ok();
    assert_eq!(containers.stdout, "app=nginx:2 2");

    t.kubectl(&["scale", "deployment/web", "--replicas=5"]).await.ok();
    let table = t.kubectl(&["get", "deploy"]).await.ok();
    let header: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(
        table.stdout.lines().nth(1).expect("row").starts_with("web    0/5"),
        "{}",
        table.stdout
    );

    let cm = t.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: '1', b: '2'}\n",
    );
    t.kubectl(&["apply", "-f", &cm]).await.ok();
    t.kubectl(&["label", "configmap", "settings", "tier=backend"])
        .await
        .ok();
    let selected = t.kubectl(&["get", "cm", "-l", "tier=backend", "-o", "name"]).await.ok();
    assert_eq!(selected.stdout.trim(), "configmap/settings");
    let none = t
        .kubectl(&["get", "cm", "-l", "tier!=backend", "-o", "name"])
        .await
        .ok();
    assert_eq!(none.stdout.trim(), "");
    let data = t.kubectl(&["get", "cm", "settings", "--no-headers"]).await.ok();
    assert!(data.stdout.starts_with("settings   2"), "{}", data.stdout);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_and_force() {
    let t = TestServer::start().await;
    let path = t.file("d.yaml", DEPLOYMENT);
    t.kubectl(&["apply", "--server-side", "-f", &path]).await.ok();
    t.kubectl(&["scale", "deployment/web", "--replicas=3"]).await.ok();
    let conflict = t.kubectl(&["apply", "--server-side", "-f", &path]).await.failed();
    // kubectl scale names no field manager: the apiserver takes the user agent's program
    // (`kubectl`, or the binary's name such as `kubectl.1.31`).
    assert!(
        conflict
            .stderr
            .contains("Apply failed with 1 conflict: conflict with \"kubectl"),
        "{}",
        conflict.stderr
    );
    assert!(
        conflict.stderr.contains("with subresource \"scale\" using apps/v1 at "),
        "{}",
        conflict.stderr
    );
    assert!(conflict.stderr.contains(": .spec.replicas"), "{}", conflict.stderr);
    t.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &path])
        .await
        .ok();
    let replicas = t
        .kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
        .await
        .ok();
    assert_eq!(replicas.stdout, "2");
    let managers = t
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await
        .ok();
    assert!(
        managers.stdout.split(' ').any(|m| m == "kubectl"),
        "{}",
        managers.stdout
    );

    // A field the applier stops applying, that nobody else owns, is removed.
    t.install_topic_crd().await;
    let topic = t.file("t.yaml", &topic_yaml("orders", "high"));
    t.kubectl(&["apply", "--server-side", "-f", &topic]).await.ok();
    let without = topic_yaml("orders", "high").replace("  defaultPriority: high\n", "");
    let topic = t.file("t.yaml", &without);
    t.kubectl(&["apply", "--server-side", "-f", &topic]).await.ok();
    let spec = t
        .kubectl(&[
            "get",
            "topic",
            "orders",
            "-o",
            "jsonpath={.spec.defaultPriority}|{.spec.name}",
        ])
        .await
        .ok();
    assert_eq!(spec.stdout, "|shop.orders");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_and_namespace_deletion_through_kubectl() {
    let t = TestServer::start().await;
    t.install_topic_crd().await;
    let ns = t.file("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n");
    t.kubectl(&["apply", "-f", &ns]).await.ok();
    let topic = topic_yaml("held", "low").replace("metadata:\n", "metadata:\n  finalizers: [eventcast.dev/cleanup]\n");
    let path = t.file("t.yaml", &topic);
    t.kubectl(&["apply", "-n", "team-a", "-f", &path]).await.ok();
    t.kubectl(&["delete", "-n", "team-a", "topic", "held", "--wait=false"])
        .await
        .ok();
    let pending = t
        .kubectl(&[
            "get",
            "-n",
            "team-a",
            "topic",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ])
        .await
        .ok();
    assert!(
        !pending.stdout.is_empty(),
        "deletionTimestamp is set while finalizers remain"
    );
    t.kubectl(&["delete", "namespace", "team-a", "--wait=false"]).await.ok();
    let phase = t
        .kubectl(&["get", "namespace", "team-a", "-o", "jsonpath={.status.phase}"])
        .await
        .ok();
    assert_eq!(phase.stdout, "Terminating");
    t.kubectl(&[
        "patch",
        "-n",
        "team-a",
        "topic",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await
    .ok();
    t.kubectl(&["wait", "--for=delete", "namespace/team-a", "--timeout=10s"])
        .await
        .ok();
    let gone = t.kubectl(&["get", "namespace", "team-a"]).await.failed();
    assert!(
        gone.stderr.contains("namespaces \"team-a\" not found"),
        "{}",
        gone.stderr
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_builtin_objects_are_rejected() {
    let t = TestServer::start().await;
    let bad = DEPLOYMENT
        .replace(
            "    metadata: {labels: {app: web}}",
            "    metadata: {labels: {app: db}}",
        )
        .replace("image: busybox:1", "image: ''");
    let path = t.file("bad.yaml", &bad);
    let run = t.kubectl(&["apply", "-f", &path]).await.failed();
    assert!(
        run.stderr.contains("The Deployment \"web\" is invalid:"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("spec.template.metadata.labels: Invalid value: \"map[string]string{\\\"app\\\":\\\"db\\\"}\": `selector` does not match template `labels`"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("spec.template.spec.containers[1].image: Required value"),
        "{}",
        run.stderr
    );
    let cm = t.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {'bad key': x}\n",
    );
    let run = t.kubectl(&["apply", "-f", &cm]).await.failed();
    assert!(
        run.stderr.contains(
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters"
        ),
        "{}",
        run.stderr
    );
    t.stop().await;
}
