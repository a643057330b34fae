//! Server-side subscriptions (`Subscription` resources): matching events go to a
//! webhook or are routed into another topic.
//!
//! The sidecar that accepted a publish runs the subscriptions for it, so each event is
//! handled by exactly one sidecar without any coordination. Right after an append,
//! the publish path calls [`SinkRunner::dispatch`], which never waits: it checks each
//! subscription's [`Matcher`] and offers the event to that subscription's bounded
//! [`Queue`] (drop-newest when full). One [`Worker`] task per subscription drains its
//! queue in order, batching and delivering.
//!
//! Workers follow the live config: a subscription whose compiled config is unchanged
//! keeps its worker and queue; a changed one gets a new worker that continues from the
//! old one's queue once the old one finished its in-flight delivery; a removed one is
//! stopped the same way and what was still queued is counted as dropped. All workers
//! are tracked by the runner's [`TaskTracker`]; [`SinkRunner::shutdown`] flushes them
//! within [`FLUSH_TIMEOUT`].
//!
//! Files: `matcher` (what a subscription takes), `queue` (the bounded queue and its
//! full-policy), `batcher` (size/interval grouping), `worker` (the per-subscription
//! task), `webhook` (HTTP delivery, retries), `backoff` (retry schedule), `payload`
//! (webhook bodies), `dead_letter` (dead-letter events), `route` (topic sinks).

mod backoff;
mod batcher;
mod dead_letter;
#[cfg(test)]
mod fixtures;
mod matcher;
mod payload;
mod queue;
mod route;
mod webhook;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use eventcast_api::config::{SinkConfig, SubscriptionConfig};
use eventcast_api::crd::subscription::DeliveryMode;
use parking_lot::Mutex;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use dead_letter::DEAD_LETTER_TYPE;
pub use matcher::source_of;
pub use webhook::SUBSCRIPTION_HEADER;

use self::batcher::Batcher;
use self::matcher::Matcher;
use self::queue::Queue;
use self::worker::{Input, Leftover, Sink, Worker};
use crate::event::SharedEvent;
use crate::live_config::ConfigStore;
use crate::metrics::Metrics;
use crate::publish::Publisher;

/// Longest [`SinkRunner::shutdown`] waits for workers to flush.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a webhook connection attempt may take (the request timeout bounds it too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a subscription's worker could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error("subscription {subscription:?}: filter {message}")]
    Filter { subscription: String, message: String },
    #[error("subscription {subscription:?}: webhook URL: {message}")]
    Url { subscription: String, message: String },
    #[error("subscription {subscription:?}: webhook header {name:?}: {message}")]
    Header {
        subscription: String,
        name: String,
        message: String,
    },
    #[error("subscription {subscription:?}: no HTTP client: {message}")]
    Client { subscription: String, message: String },
}

/// One subscription as the publish path sees it.
#[derive(Debug)]
struct Route {
    matcher: Matcher,
    queue: Arc<Queue>,
}

/// One running subscription.
#[derive(Debug)]
struct Slot {
    config: SubscriptionConfig,
    route: Arc<Route>,
    stop: CancellationToken,
    handle: JoinHandle<Leftover>,
}

#[derive(Debug, Default)]
struct Workers {
    slots: HashMap<String, Slot>,
    /// Workers of removed subscriptions that may still be finishing a delivery.
    retiring: Vec<AbortHandle>,
}

/// Runs the namespace's server-side subscriptions.
#[derive(Debug)]
pub struct SinkRunner {
    publisher: Weak<Publisher>,
    config: Arc<ConfigStore>,
    metrics: Arc<Metrics>,
    /// One client (one connection pool) for every webhook.
    client: Result<reqwest::Client, String>,
    /// What [`Self::dispatch`] reads: lock-free, replaced on config change.
    routes: ArcSwap<Vec<Arc<Route>>>,
    /// Only the config watch and shutdown take this lock, never across an await.
    workers: Mutex<Workers>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("eventcast-sidecar/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())
}

impl SinkRunner {
    /// A runner with no workers yet; [`Self::start`] builds them.
    pub fn new(publisher: Weak<Publisher>, config: Arc<ConfigStore>, metrics: Arc<Metrics>) -> Self {
        let client = http_client();
        if let Err(e) = &client {
            tracing::error!(error = %e, "cannot build the HTTP client: webhook subscriptions will not run");
        }
        Self {
            publisher,
            config,
            metrics,
            client,
            routes: ArcSwap::from_pointee(Vec::new()),
            workers: Mutex::new(Workers::default()),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Offers a just-appended event to every subscription it matches. Never waits.
    pub fn dispatch(&self, ev: &Arc<SharedEvent>) {
        let routes = self.routes.load();
        if routes.is_empty() {
            return;
        }
        let view = ev.view();
        for route in routes.iter() {
            if route.matcher.matches(&view) {
                // Full-policy (drop newest, counted, logged ≤1/s): see `queue`.
                route.queue.offer(ev);
            }
        }
    }

    /// Builds the workers of the current config and returns the task that rebuilds them
    /// on every config change until `stop`. Call from within the runtime.
    pub fn start(self: &Arc<Self>, stop: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
        let mut changes = self.config.subscribe();
        changes.borrow_and_update();
        self.reconcile();
        let this = self.clone();
        async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        this.reconcile();
                    }
                }
            }
        }
    }

    /// Names of the subscriptions with a running worker, sorted.
    pub fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self.workers.lock().slots.keys().cloned().collect();
        names.sort();
        names
    }

    /// Stops taking events and lets every worker deliver what it holds, for at most
    /// [`FLUSH_TIMEOUT`]; workers still busy then are aborted.
    pub async fn shutdown(&self) {
        let aborts: Vec<AbortHandle> = {
            let mut workers = self.workers.lock();
            self.shutdown.cancel();
            self.routes.store(Arc::new(Vec::new()));
            let mut aborts: Vec<AbortHandle> = workers.slots.drain().map(|(_, s)| s.handle.abort_handle()).collect();
            aborts.append(&mut workers.retiring);
            aborts
        };
        self.tracker.close();
        if tokio::time::timeout(FLUSH_TIMEOUT, self.tracker.wait()).await.is_err() {
            let busy = aborts.iter().filter(|a| !a.is_finished()).count();
            tracing::warn!(
                workers = busy,
                "subscription flush timed out; abandoning undelivered events"
            );
            for a in aborts {
                a.abort();
            }
            // Aborted tasks finish at their next poll.
            let _ = tokio::time::timeout(Duration::from_millis(200), self.tracker.wait()).await;
        }
    }

    /// Makes the running workers match the live config.
    fn reconcile(&self) {
        let live = self.config.get();
        let mut workers = self.workers.lock();
        if self.shutdown.is_cancelled() {
            return;
        }
        let mut previous = std::mem::take(&mut workers.slots);
        let mut routes = Vec::with_capacity(live.compiled.subscriptions.len());
        for config in &live.compiled.subscriptions {
            let prev = previous.remove(&config.name);
            let slot = match prev {
                Some(slot) if slot.config == *config && !slot.handle.is_finished() => slot,
                prev => match self.build(config) {
                    Ok(worker) => {
                        if prev.is_some() {
                            tracing::info!(subscription = %config.name, "subscription changed: restarting its worker");
                        } else {
                            tracing::info!(subscription = %config.name, "subscription started");
                        }
                        self.spawn(config, worker, prev, &mut workers.retiring)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "subscription not started");
                        if let Some(prev) = prev {
                            self.retire(prev, &mut workers.retiring);
                        }
                        continue;
                    }
                },
            };
            routes.push(slot.route.clone());
            workers.slots.insert(config.name.clone(), slot);
        }
        for (name, slot) in previous {
            tracing::info!(subscription = %name, "subscription removed: stopping its worker");
            self.retire(slot, &mut workers.retiring);
        }
        workers.retiring.retain(|a| !a.is_finished());
        self.routes.store(Arc::new(routes));
    }

    /// The fallible part of starting a subscription: matcher and sink.
    fn build(&self, config: &SubscriptionConfig) -> Result<(Matcher, Worker), SinkError> {
        let matcher = Matcher::compile(config)?;
        let name: Arc<str> = Arc::from(config.name.as_str());
        let metrics = self.metrics.subscription(&config.name);
        let sink = match &config.sink {
            SinkConfig::Webhook {
                url,
                headers,
                timeout_ms,
                retry,
                dead_letter_topic,
            } => {
                let client = self.client.clone().map_err(|message| SinkError::Client {
                    subscription: config.name.clone(),
                    message,
                })?;
                let settings = webhook::WebhookConfig {
                    url,
                    headers,
                    timeout_ms: *timeout_ms,
                    retry,
                    dead_letter_topic: dead_letter_topic.as_deref(),
                    as_array: config.delivery.mode == DeliveryMode::Batched,
                };
                Sink::Webhook(Box::new(webhook::WebhookSink::new(
                    name.clone(),
                    &settings,
                    client,
                    self.publisher.clone(),
                    metrics.clone(),
                )?))
            }
            SinkConfig::Topic { name: destination } => Sink::Topic {
                route: route::TopicRoute::new(&config.name, destination),
                publisher: self.publisher.clone(),
            },
        };
        let worker = Worker {
            name,
            sink,
            batcher: Batcher::for_delivery(&config.delivery),
            metrics,
            stop: CancellationToken::new(),
            shutdown: self.shutdown.clone(),
        };
        Ok((matcher, worker))
    }

    /// Starts a built worker; a predecessor hands over its queue.
    fn spawn(
        &self,
        config: &SubscriptionConfig,
        (matcher, worker): (Matcher, Worker),
        prev: Option<Slot>,
        retiring: &mut Vec<AbortHandle>,
    ) -> Slot {
        let (queue, input) = match prev {
            Some(prev) if !prev.handle.is_finished() && !prev.route.queue.is_closed() => {
                prev.stop.cancel();
                retiring.push(prev.handle.abort_handle());
                (prev.route.queue.clone(), Input::After(prev.handle))
            }
            other => {
                if let Some(prev) = other {
                    self.retire(prev, retiring);
                }
                let (queue, rx) = Queue::channel(worker.name.clone(), queue::CAPACITY, worker.metrics.dropped.clone());
                (Arc::new(queue), Input::Fresh(rx))
            }
        };
        let stop = worker.stop.clone();
        let handle = self.tracker.spawn(worker.run(input));
        Slot {
            config: config.clone(),
            route: Arc::new(Route { matcher, queue }),
            stop,
            handle,
        }
    }

    /// Stops a worker whose subscription is gone; what it leaves is counted as dropped.
    fn retire(&self, slot: Slot, retiring: &mut Vec<AbortHandle>) {
        slot.stop.cancel();
        retiring.push(slot.handle.abort_handle());
        let name = slot.config.name;
        let dropped = self.metrics.subscription(&name).dropped;
        let handle = slot.handle;
        self.tracker.spawn(async move {
            if let Ok(leftover) = handle.await {
                let n = leftover.discard();
                if n > 0 {
                    dropped.inc_by(n as u64);
                    tracing::warn!(subscription = %name, dropped = n, "subscription removed: discarded its queued events");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use eventcast_api::CompiledConfig;
    use eventcast_api::Priority;
    use eventcast_api::config::SubscriptionDeliveryConfig;
    use eventcast_api::pattern::PatternSet;

    use super::*;
    use crate::live_config::LiveConfig;
    use crate::sinks::fixtures::event;

    fn subscription(name: &str, min_priority: Priority) -> SubscriptionConfig {
        SubscriptionConfig {
            name: name.into(),
            topics: PatternSet::parse_all(&["chat"]).expect("pattern"),
            event_types: PatternSet::default(),
            filter: Vec::new(),
            min_priority,
            delivery: SubscriptionDeliveryConfig {
                mode: DeliveryMode::Realtime,
                batch_size: 1,
                batch_interval_ms: 0,
            },
            sink: SinkConfig::Topic { name: "archive".into() },
        }
    }

    fn live(subscriptions: Vec<SubscriptionConfig>, metrics: &Metrics) -> LiveConfig {
        let compiled = CompiledConfig {
            subscriptions,
            ..CompiledConfig::default()
        };
        LiveConfig::build(compiled, metrics).expect("live config")
    }

    struct Snapshot {
        task: tokio::task::Id,
        queue: Arc<Queue>,
    }

    fn snapshot(runner: &SinkRunner) -> HashMap<String, Snapshot> {
        runner
            .workers
            .lock()
            .slots
            .iter()
            .map(|(name, s)| {
                let snap = Snapshot {
                    task: s.handle.id(),
                    queue: s.route.queue.clone(),
                };
                (name.clone(), snap)
            })
            .collect()
    }

    #[tokio::test]
    async fn config_changes_keep_restart_or_stop_workers() {
        let metrics = Metrics::new().expect("metrics");
        let store = Arc::new(ConfigStore::new(live(
            vec![
                subscription("keep", Priority::Background),
                subscription("change", Priority::Background),
                subscription("remove", Priority::Background),
            ],
            &metrics,
        )));
        let runner = Arc::new(SinkRunner::new(Weak::new(), store.clone(), metrics.clone()));
        let stop = CancellationToken::new();
        let watch = tokio::spawn(runner.start(stop.clone()));
        assert_eq!(runner.running(), ["change", "keep", "remove"]);
        let before = snapshot(&runner);

        store.set(live(
            vec![
                subscription("keep", Priority::Background),
                subscription("change", Priority::High),
                subscription("new", Priority::Background),
            ],
            &metrics,
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while runner.running() != ["change", "keep", "new"] {
            assert!(
                tokio::time::Instant::now() < deadline,
                "reconciled: {:?}",
                runner.running()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after = snapshot(&runner);
        assert_eq!(after["keep"].task, before["keep"].task, "unchanged: same worker");
        assert!(Arc::ptr_eq(&after["keep"].queue, &before["keep"].queue));
        assert_ne!(after["change"].task, before["change"].task, "changed: new worker");
        assert!(
            Arc::ptr_eq(&after["change"].queue, &before["change"].queue),
            "changed: same queue"
        );
        // The removed subscription's worker stops; its queue closes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !before["remove"].queue.is_closed() {
            assert!(tokio::time::Instant::now() < deadline, "removed worker stopped");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        stop.cancel();
        watch.await.expect("watch task");
        runner.shutdown().await;
        assert!(runner.running().is_empty());
        assert!(runner.tracker.is_empty(), "every task finished");
    }

    #[tokio::test]
    async fn dispatch_queues_only_for_matching_subscriptions() {
        let metrics = Metrics::new().expect("metrics");
        let store = Arc::new(ConfigStore::new(live(
            vec![
                subscription("all", Priority::Background),
                subscription("urgent", Priority::Critical),
            ],
            &metrics,
        )));
        let runner = Arc::new(SinkRunner::new(Weak::new(), store, metrics.clone()));
        // Workers are not started: queued events stay in the queues.
        let (all_q, mut all_rx) = Queue::channel("all".into(), 4, metrics.subscription("all").dropped);
        let (urgent_q, mut urgent_rx) = Queue::channel("urgent".into(), 4, metrics.subscription("urgent").dropped);
        let route = |config: &SubscriptionConfig, queue: Queue| {
            Arc::new(Route {
                matcher: Matcher::compile(config).expect("matcher"),
                queue: Arc::new(queue),
            })
        };
        runner.routes.store(Arc::new(vec![
            route(&subscription("all", Priority::Background), all_q),
            route(&subscription("urgent", Priority::Critical), urgent_q),
        ]));

        runner.dispatch(&event("chat", 1, "m"));
        runner.dispatch(&event("other", 2, "m"));
        assert_eq!(all_rx.try_recv().map(|e| e.offset).ok(), Some(1));
        assert!(all_rx.try_recv().is_err(), "other topic not matched");
        assert!(urgent_rx.try_recv().is_err(), "high is below critical");
    }
}
