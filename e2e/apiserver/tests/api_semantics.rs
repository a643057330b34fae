//! API conventions through a kube-rs client: system metadata, optimistic concurrency,
//! Status bodies, generation, status/spec isolation, pagination, selectors, dry run,
//! finalizers, namespace deletion, garbage collection, deletecollection, scale.

mod common;

use std::collections::BTreeMap;

use common::TestServer;
use eventcast_test_apiserver::Options;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

fn api_error(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_conflicts_and_status_bodies() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client(), "default");
    let a = api.create(&PostParams::default(), &cm("a")).await.expect("create");
    let meta = &a.metadata;
    assert_eq!(meta.uid.as_ref().map(String::len), Some(36));
    assert!(meta.creation_timestamp.is_some());
    let rv1: u64 = meta
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("numeric rv");

    let dup = api_error(api.create(&PostParams::default(), &cm("a")).await.expect_err("exists"));
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "configmaps \"a\" already exists");

    let missing = api_error(api.get("nope").await.expect_err("missing"));
    assert_eq!(
        (missing.code, missing.reason.as_str(), missing.message.as_str()),
        (404, "NotFound", "configmaps \"nope\" not found")
    );

    let mut fresh = a.clone();
    fresh.data = Some(BTreeMap::from([("k".into(), "1".into())]));
    let b = api.replace("a", &PostParams::default(), &fresh).await.expect("replace");
    let rv2: u64 = b
        .metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("rv");
    assert!(rv2 > rv1);
    let stale = api_error(
        api.replace("a", &PostParams::default(), &fresh)
            .await
            .expect_err("stale rv"),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );

    let same = api
        .replace("a", &PostParams::default(), &b)
        .await
        .expect("no-op replace");
    assert_eq!(
        same.metadata.resource_version, b.metadata.resource_version,
        "a no-op update writes nothing"
    );

    let bad = api_error(
        api.create(&PostParams::default(), &cm("Not_Valid"))
            .await
            .expect_err("invalid"),
    );
    assert_eq!((bad.code, bad.reason.as_str()), (422, "Invalid"));
    let causes = bad.details.expect("details").causes;
    assert_eq!(causes[0].field, "metadata.name");
    t.stop().await;
}

#[tokio::test]
async fn generation_and_status_isolation() {
    let t = TestServer::start().await;
    let api: Api<Deployment> = Api::namespaced(t.client(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 7}
    }))
    .expect("deployment");
    let d = api.create(&PostParams::default(), &d).await.expect("create");
    assert_eq!(d.metadata.generation, Some(1));
    assert!(d.status.is_none(), "status is dropped on create");
    let pp = PatchParams::default();
    let d = api
        .patch("web", &pp, &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .expect("label");
    assert_eq!(d.metadata.generation, Some(1), "metadata changes keep generation");
    let d = api
        .patch_status(
            "web",
            &pp,
            &Patch::Merge(json!({"status": {"readyReplicas": 1}, "spec": {"replicas": 9}})),
        )
        .await
        .expect("status");
    assert_eq!(d.metadata.generation, Some(1));
    assert_eq!(
        d.spec.as_ref().and_then(|s| s.replicas),
        Some(1),
        "status writes ignore spec"
    );
    assert_eq!(d.status.as_ref().and_then(|s| s.ready_replicas), Some(1));
    let d = api
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 5}})),
        )
        .await
        .expect("spec");
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(
        d.status.as_ref().and_then(|s| s.ready_replicas),
        Some(1),
        "main writes ignore status"
    );

    let scale = api.get_scale("web").await.expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(scale.status.and_then(|s| s.selector).as_deref(), Some("app=web"));
    api.patch_scale("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await
        .expect("scale patch");
    let d = api.get("web").await.expect("get");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(4));
    assert_eq!(d.metadata.generation, Some(3));
    t.stop().await;
}

#[tokio::test]
async fn pagination_is_a_consistent_snapshot() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client(), "default");
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("cm-{i}")))
            .await
            .expect("create");
    }
    let first = api.list(&ListParams::default().limit(2)).await.expect("page 1");
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().expect("continue");
    api.create(&PostParams::default(), &cm("cm-9"))
        .await
        .expect("created between pages");
    api.delete("cm-4", &DeleteParams::default())
        .await
        .expect("deleted between pages");
    let mut names: Vec<String> = first.items.iter().filter_map(|c| c.metadata.name.clone()).collect();
    let mut token = Some(token);
    while let Some(c) = token.take() {
        let page = api
            .list(&ListParams::default().limit(2).continue_token(&c))
            .await
            .expect("page");
        assert_eq!(
            page.metadata.resource_version, first.metadata.resource_version,
            "pages share the snapshot version"
        );
        names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        token = page.metadata.continue_.filter(|c| !c.is_empty());
    }
    assert_eq!(names, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);
    let now = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(now.items.len(), 5);
    t.stop().await;
}

#[tokio::test]
async fn expired_continue_token_is_410() {
    let t = TestServer::with(Options {
        watch_window: 3,
        ..Options::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(t.client(), "default");
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("cm-{i}")))
            .await
            .expect("create");
    }
    let first = api.list(&ListParams::default().limit(1)).await.expect("page");
    for i in 3..8 {
        api.create(&PostParams::default(), &cm(&format!("cm-{i}")))
            .await
            .expect("create");
    }
    let token = first.metadata.continue_.expect("continue");
    let err = api_error(
        api.list(&ListParams::default().limit(1).continue_token(&token))
            .await
            .expect_err("expired"),
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
    t.stop().await;
}

#[tokio::test]
async fn selectors_dry_run_and_deletecollection() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client(), "default");
    for (name, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
        let mut c = cm(name);
        c.metadata.labels = Some(BTreeMap::from([("tier".into(), tier.into())]));
        api.create(&PostParams::default(), &c).await.expect("create");
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items.into_iter().filter_map(|c| c.metadata.name).collect()
    };
    assert_eq!(
        names(api.list(&ListParams::default().labels("tier=web")).await.expect("list")),
        ["a", "b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier notin (web)"))
                .await
                .expect("list")
        ),
        ["c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .expect("list")
        ),
        ["b"]
    );
    let bad = api_error(
        api.list(&ListParams::default().fields("data.x=1"))
            .await
            .expect_err("unsupported"),
    );
    assert_eq!(
        (bad.code, bad.message.as_str()),
        (400, "field label not supported: data.x")
    );

    let dry = api
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &cm("ghost"),
        )
        .await
        .expect("dry run");
    assert_eq!(dry.metadata.name.as_deref(), Some("ghost"));
    assert!(
        api.get_opt("ghost").await.expect("get").is_none(),
        "dry run stores nothing"
    );

    api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("tier=web"))
        .await
        .expect("deletecollection");
    assert_eq!(names(api.list(&ListParams::default()).await.expect("list")), ["c"]);
    t.stop().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client(), "default");
    let mut c = cm("held");
    c.metadata.finalizers = Some(vec!["eventcast.dev/cleanup".into()]);
    api.create(&PostParams::default(), &c).await.expect("create");
    api.delete("held", &DeleteParams::default()).await.expect("delete");
    let held = api.get("held").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    let add = api_error(
        api.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["eventcast.dev/cleanup", "other"]}})),
        )
        .await
        .expect_err("no new finalizers while deleting"),
    );
    assert_eq!(add.code, 422);
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers"}])).expect("patch"),
        ),
    )
    .await
    .expect("remove finalizer");
    assert!(
        api.get_opt("held").await.expect("get").is_none(),
        "gone once the finalizers are"
    );
    t.stop().await;
}

#[tokio::test]
async fn namespace_deletion_and_garbage_collection() {
    let t = TestServer::start().await;
    let client = t.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team-a"}})).expect("ns");
    let ns = namespaces.create(&PostParams::default(), &ns).await.expect("namespace");
    assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    let owner = api.create(&PostParams::default(), &cm("owner")).await.expect("owner");
    let mut dependent = cm("dependent");
    dependent.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().expect("uid"),
        ..Default::default()
    }]);
    api.create(&PostParams::default(), &dependent).await.expect("dependent");
    api.delete("owner", &DeleteParams::default())
        .await
        .expect("delete owner");
    assert!(
        api.get_opt("dependent").await.expect("get").is_none(),
        "dependents of a deleted owner are collected"
    );

    api.create(&PostParams::default(), &cm("content"))
        .await
        .expect("content");
    namespaces
        .delete("team-a", &DeleteParams::default())
        .await
        .expect("delete ns");
    assert!(
        namespaces.get_opt("team-a").await.expect("get").is_none(),
        "an emptied namespace goes away"
    );
    let err = api_error(
        api.create(&PostParams::default(), &cm("late"))
            .await
            .expect_err("namespace gone"),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"team-a\" not found")
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_style_server_side_apply_of_spec_and_status() {
    use eventcast_api::crd::Topic;
    let t = TestServer::start().await;
    t.install_topic_crd().await;
    let topics: Api<Topic> = Api::namespaced(t.client(), "default");
    let apply = |body: serde_json::Value| Patch::Apply(body);
    let spec = json!({"apiVersion": "eventcast.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "orders"},
        "spec": {"name": "shop.orders", "defaultPriority": "high"}});
    let created = topics
        .patch("orders", &PatchParams::apply("platform"), &apply(spec))
        .await
        .expect("apply creates");
    assert_eq!(created.metadata.generation, Some(1));

    let status = json!({"apiVersion": "eventcast.dev/v1alpha1", "kind": "Topic",
        "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True", "reason": "Programmed",
            "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let pp = PatchParams::apply("eventcast-operator").force();
    let after = topics
        .patch_status("orders", &pp, &apply(status.clone()))
        .await
        .expect("status apply");
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status applies do not bump generation"
    );
    let same = topics
        .patch_status("orders", &pp, &apply(status))
        .await
        .expect("repeat");
    assert_eq!(
        same.metadata.resource_version, after.metadata.resource_version,
        "an unchanged apply writes nothing"
    );
    let entries: Vec<(String, String, Option<String>)> = same
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.manager.unwrap_or_default(),
                e.operation.unwrap_or_default(),
                e.subresource,
            )
        })
        .collect();
    assert!(
        entries.contains(&("platform".into(), "Apply".into(), None)),
        "{entries:?}"
    );
    assert!(
        entries.contains(&("eventcast-operator".into(), "Apply".into(), Some("status".into()))),
        "{entries:?}"
    );

    // Another manager applying a different priority conflicts; the status owner is untouched.
    let other = json!({"apiVersion": "eventcast.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "orders"},
        "spec": {"defaultPriority": "low"}});
    let err = api_error(
        topics
            .patch("orders", &PatchParams::apply("intruder"), &apply(other))
            .await
            .expect_err("conflict"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"platform\" using eventcast.dev/v1alpha1: .spec.defaultPriority"
    );
    let causes = err.details.expect("details").causes;
    assert_eq!(
        (causes[0].reason.as_str(), causes[0].field.as_str()),
        ("FieldManagerConflict", ".spec.defaultPriority")
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_write_loses_no_update() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client(), "default");
    let mut counter = cm("counter");
    counter.data = Some(BTreeMap::from([("n".into(), "0".into())]));
    api.create(&PostParams::default(), &counter).await.expect("create");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..10 {
                loop {
                    let mut c = api.get("counter").await.expect("get");
                    let n: u64 = c
                        .data
                        .as_ref()
                        .and_then(|d| d.get("n"))
                        .and_then(|n| n.parse().ok())
                        .expect("n");
                    c.data = Some(BTreeMap::from([("n".into(), (n + 1).to_string())]));
                    match api.replace("counter", &PostParams::default(), &c).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(s)) if s.code == 409 => conflicts += 1,
                        Err(e) => panic!("replace failed: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let c = api.get("counter").await.expect("get");
    assert_eq!(
        c.data.and_then(|d| d.get("n").cloned()).as_deref(),
        Some("60"),
        "every increment landed exactly once"
    );
    t.stop().await;
}
