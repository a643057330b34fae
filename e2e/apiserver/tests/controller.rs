//! A kube-runtime Controller written the way the operator is (controller-rs pattern:
//! `finalizer` helper, status through server-side apply with `force`), run against the
//! server: it must converge, clean up on deletion, and not spin on its own status writes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestServer, topic_yaml};
use eventcast_api::crd::Topic;
use futures_util::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

const FINALIZER: &str = "eventcast.dev/cleanup";

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

struct Ctx {
    client: kube::Client,
    reconciles: AtomicUsize,
    cleanups: AtomicUsize,
}

async fn reconcile(
    topic: Arc<Topic>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::runtime::finalizer::Error<ReconcileError>> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = topic.namespace().unwrap_or_default();
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, topic, |event| async {
        match event {
            Event::Apply(topic) => {
                let status = json!({"apiVersion": "eventcast.dev/v1alpha1", "kind": "Topic",
                    "status": {"observedGeneration": topic.meta().generation,
                        "conditions": [{"type": "Ready", "status": "True", "reason": "Programmed", "message": "ok",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
                api.patch_status(
                    &topic.name_any(),
                    &PatchParams::apply("eventcast-operator").force(),
                    &Patch::Apply(status),
                )
                .await?;
                Ok(Action::await_change())
            }
            Event::Cleanup(_) => {
                ctx.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
}

fn error_policy(_: Arc<Topic>, _: &kube::runtime::finalizer::Error<ReconcileError>, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_style_controller_converges_and_cleans_up() {
    let t = TestServer::start().await;
    t.install_topic_crd().await;
    let client = t.client();
    let topics: Api<Topic> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reconciles: AtomicUsize::new(0),
        cleanups: AtomicUsize::new(0),
    });
    let controller = Controller::new(topics, watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().debounce(Duration::from_millis(50)))
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let task = tokio::spawn(controller);

    let path = t.file("t.yaml", &topic_yaml("orders", "high"));
    t.kubectl(&["apply", "-f", &path]).await.ok();
    t.kubectl(&["wait", "--for=condition=Ready", "topic/orders", "--timeout=20s"])
        .await
        .ok();
    let fin = t
        .kubectl(&[
            "get",
            "topic",
            "orders",
            "-o",
            "jsonpath={.metadata.finalizers[0]} {.status.observedGeneration}",
        ])
        .await
        .ok();
    assert_eq!(fin.stdout, format!("{FINALIZER} 1"));

    // Status writes do not change generation; the controller must settle.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let settled = ctx.reconciles.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        ctx.reconciles.load(Ordering::SeqCst),
        settled,
        "no reconcile loop on its own writes"
    );

    t.kubectl(&["delete", "topic", "orders", "--timeout=20s"]).await.ok();
    assert_eq!(
        ctx.cleanups.load(Ordering::SeqCst),
        1,
        "cleanup ran once before the object went away"
    );
    t.kubectl(&["get", "topic", "orders"]).await.failed();
    task.abort();
    t.stop().await;
}
