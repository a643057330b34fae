//! Watch semantics through kube-rs: raw watches from a resourceVersion, selector
//! transitions, 410 for versions outside the retained window, and kube-runtime's
//! `watcher` relisting after 410 or resuming from bookmarks.

mod common;

use std::time::Duration;

use common::TestServer;
use eventcast_test_apiserver::Options;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

async fn churn_secrets(client: &kube::Client, n: usize) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    for i in 0..n {
        let s = Secret {
            metadata: ObjectMeta {
                name: Some(format!("churn-{i}")),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        };
        secrets
            .create(&PostParams::default(), &s)
            .await
            .expect("secret created");
    }
}

#[tokio::test]
async fn watch_from_version_sees_changes_and_selector_transitions() {
    let t = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client(), "default");
    let a = api
        .create(&PostParams::default(), &cm("a", &[("app", "web")]))
        .await
        .expect("create");
    let rv = a.metadata.resource_version.clone().expect("rv");
    let wp = WatchParams::default().labels("app=web").timeout(5);
    let mut stream = api.watch(&wp, &rv).await.expect("watch").boxed();

    let mut changed = a.clone();
    changed.data = Some([("k".to_string(), "v".to_string())].into());
    api.replace("a", &PostParams::default(), &changed)
        .await
        .expect("replace");
    let mut moved = api.get("a").await.expect("get");
    moved.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    api.replace("a", &PostParams::default(), &moved).await.expect("relabel");
    api.create(&PostParams::default(), &cm("b", &[("app", "web")]))
        .await
        .expect("create b");
    api.delete("b", &Default::default()).await.expect("delete b");

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("event in time");
        match event.expect("no error").expect("stream open") {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap_or_default())),
            WatchEvent::Modified(o) => seen.push(format!("MODIFIED {}", o.metadata.name.unwrap_or_default())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.metadata.name.unwrap_or_default())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    // The relabel makes `a` leave the selection: a DELETED, as the watch cache reports it.
    assert_eq!(seen, ["MODIFIED a", "DELETED a", "ADDED b", "DELETED b"]);
    t.stop().await;
}

#[tokio::test]
async fn watch_from_compacted_version_gets_410() {
    let t = TestServer::with(Options {
        watch_window: 5,
        ..Options::default()
    })
    .await;
    let client = t.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let a = api.create(&PostParams::default(), &cm("a", &[])).await.expect("create");
    let rv = a.metadata.resource_version.clone().expect("rv");
    churn_secrets(&client, 10).await;
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event").expect("open") {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
            assert!(
                e.message.starts_with(&format!("too old resource version: {rv} (")),
                "{}",
                e.message
            );
        }
        other => panic!("expected 410, got {other:?}"),
    }
    t.stop().await;
}

/// Drives a kube-runtime watcher in a task (so its watch is open while the test writes)
/// and tracks the names it holds and how often it (re)listed.
struct Observer {
    events: tokio::sync::mpsc::Receiver<Result<watcher::Event<ConfigMap>, watcher::Error>>,
    task: tokio::task::JoinHandle<()>,
    names: std::collections::BTreeSet<String>,
    inits: usize,
    synced: bool,
}

impl Observer {
    fn start(api: Api<ConfigMap>, config: watcher::Config) -> Self {
        // Full policy: the task waits when the test falls behind (bounded, lossless).
        let (tx, events) = tokio::sync::mpsc::channel(1024);
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, config).boxed();
            while let Some(e) = stream.next().await {
                if tx.send(e).await.is_err() {
                    break;
                }
            }
        });
        Self {
            events,
            task,
            names: Default::default(),
            inits: 0,
            synced: false,
        }
    }

    /// Waits until the watcher holds `want` and has finished its current (re)list.
    async fn until(&mut self, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !(self.synced && self.names.contains(want)) {
            let next = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("watcher progressed in time");
            match next.expect("watcher running") {
                Ok(watcher::Event::Init) => {
                    self.inits += 1;
                    self.synced = false;
                    self.names.clear();
                }
                Ok(watcher::Event::InitApply(o) | watcher::Event::Apply(o)) => {
                    self.names.insert(o.metadata.name.unwrap_or_default());
                }
                Ok(watcher::Event::Delete(o)) => {
                    self.names.remove(&o.metadata.name.unwrap_or_default());
                }
                Ok(watcher::Event::InitDone) => self.synced = true,
                Err(e) => eprintln!("watcher error (it retries): {e}"),
            }
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn runtime_watcher_relists_after_410() {
    let t = TestServer::with(Options {
        watch_window: 5,
        ..Options::default()
    })
    .await;
    let client = t.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("first", &[]))
        .await
        .expect("create");
    let mut observer = Observer::start(api.clone(), watcher::Config::default().timeout(1).disable_bookmarks());
    observer.until("first").await;
    assert_eq!(observer.inits, 1);
    // Other resources move the version far past the window while this watch sees nothing,
    // so its next watch (after the 1s timeout) starts from a compacted version: 410.
    churn_secrets(&client, 10).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.create(&PostParams::default(), &cm("second", &[]))
        .await
        .expect("create");
    observer.until("second").await;
    assert!(observer.inits >= 2, "the watcher relisted after 410 Gone");
    assert!(
        observer.names.contains("first"),
        "the relist restored the full state: {:?}",
        observer.names
    );
    t.stop().await;
}

#[tokio::test]
async fn runtime_watcher_resumes_from_bookmarks() {
    let t = TestServer::with(Options {
        watch_window: 5,
        bookmark_interval: Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    let client = t.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("first", &[]))
        .await
        .expect("create");
    let mut observer = Observer::start(api.clone(), watcher::Config::default().timeout(1));
    observer.until("first").await;
    // Let the watch that follows the initial list open before the churn.
    tokio::time::sleep(Duration::from_millis(300)).await;
    churn_secrets(&client, 10).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.create(&PostParams::default(), &cm("second", &[]))
        .await
        .expect("create");
    observer.until("second").await;
    assert_eq!(
        observer.inits, 1,
        "bookmarks kept the watcher's version current: no relist"
    );
    t.stop().await;
}

#[tokio::test]
async fn runtime_watcher_with_streaming_lists() {
    let t = TestServer::with(Options {
        bookmark_interval: Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(t.client(), "default");
    for name in ["a", "b"] {
        api.create(&PostParams::default(), &cm(name, &[]))
            .await
            .expect("create");
    }
    // sendInitialEvents=true: the initial state arrives as watch events ending with the
    // `k8s.io/initial-events-end` bookmark, no list call.
    let mut observer = Observer::start(api.clone(), watcher::Config::default().streaming_lists().timeout(5));
    observer.until("b").await;
    assert!(observer.names.contains("a"));
    api.create(&PostParams::default(), &cm("c", &[])).await.expect("create");
    observer.until("c").await;
    assert_eq!(observer.inits, 1);
    t.stop().await;
}
