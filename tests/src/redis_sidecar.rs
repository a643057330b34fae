//! Sidecars on the Redis backend (against the cluster of [`crate::redis_cluster`]) and
//! a background recorder of a client's frames, for the multi-sidecar and failover tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use eventcast_sidecar::settings::Settings;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::ws::{FrameError, WsClient};
use crate::{TestSidecar, eventually};

impl TestSidecar {
    /// Writes `files` into a fresh directory and starts a sidecar on the Redis backend
    /// with these cluster seed nodes (`host:port,...`, see
    /// [`crate::redis_cluster::RedisCluster::nodes_arg`]).
    pub async fn start_redis(files: &[(&str, &str)], nodes: &str) -> Self {
        Self::start_redis_with(files, nodes, |s| s).await
    }

    /// Like [`TestSidecar::start_redis`], with the settings adjusted by `tweak`.
    pub async fn start_redis_with(
        files: &[(&str, &str)],
        nodes: &str,
        tweak: impl FnOnce(Settings) -> Settings,
    ) -> Self {
        Self::start_with_settings(files, |dir| tweak(Settings::for_tests(dir).with_redis_cluster(nodes))).await
    }

    /// The status of `GET /readyz` on the public listener.
    pub async fn readyz(&self) -> u16 {
        self.get_url(&self.public_url("/readyz")).await.status
    }
}

/// A Topic manifest open to anonymous subscribers, with `extra` spec lines (indented
/// by two spaces, e.g. `"  presence: true"`).
pub fn topic_manifest(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {{name: {name}}}\nspec:\n  access: {{subscribe: {{anonymous: true}}}}\n{extra}\n"
    )
}

/// Reads every frame a client receives on a background task, so a client keeps reading
/// while the test does other things (a steady publish stream, a failover).
pub struct FrameRecorder {
    frames: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<(WsClient, Option<FrameError>)>,
}

impl std::fmt::Debug for FrameRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameRecorder")
            .field("frames", &self.lock().len())
            .finish_non_exhaustive()
    }
}

fn offset_of(frame: &Value) -> Option<u64> {
    (frame["op"] == "event").then(|| frame["offset"].as_u64()).flatten()
}

impl FrameRecorder {
    /// Starts reading `client`'s frames.
    pub fn start(mut client: WsClient) -> Self {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (frames, stop) = (frames.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Acquire) {
                    match client.try_next_frame(Duration::from_millis(100)).await {
                        Ok(f) => frames.lock().unwrap_or_else(PoisonError::into_inner).push(f),
                        Err(FrameError::Timeout) => {}
                        Err(e) => return (client, Some(e)),
                    }
                }
                (client, None)
            }
        });
        Self { frames, stop, task }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Value>> {
        self.frames.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the frames so far.
    pub fn frames(&self) -> Vec<Value> {
        self.lock().clone()
    }

    /// The event frames so far.
    pub fn events(&self) -> Vec<Value> {
        self.lock().iter().filter(|f| f["op"] == "event").cloned().collect()
    }

    /// The highest event offset so far.
    pub fn max_offset(&self) -> Option<u64> {
        self.lock().iter().filter_map(offset_of).max()
    }

    /// Whether the reading task ended (the connection closed or failed).
    pub fn ended(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until an event with an offset of at least `offset` arrived; returns whether
    /// it did within `timeout`.
    pub async fn wait_for_offset(&self, offset: u64, timeout: Duration) -> bool {
        eventually(timeout, || async { self.max_offset().is_some_and(|o| o >= offset) }).await
    }

    /// Waits until `pred` holds for the frames so far; returns whether it did in time.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.lock()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops reading; returns the client (for more requests), every frame received, and
    /// why the connection ended if it did.
    pub async fn finish(self) -> (WsClient, Vec<Value>, Option<FrameError>) {
        self.stop.store(true, Ordering::Release);
        let (client, end) = self.task.await.expect("frame recorder task");
        let frames = std::mem::take(&mut *self.frames.lock().unwrap_or_else(PoisonError::into_inner));
        (client, frames, end)
    }
}

/// One publish of [`publish_stream`] that got `202`.
#[derive(Clone, Debug)]
pub struct Acked {
    /// Sequence number of the event (`data.n`, idempotency id `ev-<n>`).
    pub n: u64,
    pub offset: u64,
    pub epoch: String,
    /// The sidecar said it was a duplicate (an earlier, unanswered try got through).
    pub duplicate: bool,
}

/// A stretch of refused publishes of one event.
#[derive(Clone, Debug)]
pub struct Outage {
    /// When the first publish that got `503` was sent.
    pub started: Instant,
    /// When that first `503` arrived.
    pub refused: Instant,
    /// When the next `202` arrived.
    pub ended: Instant,
    /// `503`s in it.
    pub refusals: u32,
}

impl Outage {
    /// From the first refusal to the next `202`.
    pub fn window(&self) -> Duration {
        self.ended - self.refused
    }

    /// From sending the first refused publish to the next `202` (includes the time the
    /// refused publish waited for Redis before it was refused).
    pub fn stall(&self) -> Duration {
        self.ended - self.started
    }
}

/// What [`publish_stream`] did.
#[derive(Clone, Debug, Default)]
pub struct StreamLog {
    pub acked: Vec<Acked>,
    pub outages: Vec<Outage>,
    /// Longest time one answered publish (`202` or `503`) took.
    pub slowest: Duration,
    /// Why the stream stopped before `stop` was set: one event refused for
    /// [`GIVE_UP`] (the last refusal's body); the caller decides whether that fails.
    pub gave_up: Option<String>,
}

/// How long [`publish_stream`] retries one refused event before it gives up.
pub const GIVE_UP: Duration = Duration::from_secs(15);

impl StreamLog {
    pub fn refusals(&self) -> u32 {
        self.outages.iter().map(|o| o.refusals).sum()
    }
}

/// Publishes `{"id": "ev-<n>", "type": "load", "data": {"n": n}}` for n = 1, 2, ... to
/// `topic` through `sc`'s local API, one every `every`, until `stop` is set. A `503`
/// must carry `Retry-After`; the same event (same idempotency id) is then sent again
/// after that delay, so the stream pauses while the backend is out. Any other refusal
/// panics; a `503` lasting longer than [`GIVE_UP`] ends the stream
/// ([`StreamLog::gave_up`]).
pub async fn publish_stream(sc: &TestSidecar, topic: &str, every: Duration, stop: &AtomicBool) -> StreamLog {
    let mut log = StreamLog::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        n += 1;
        let event = serde_json::json!({"id": format!("ev-{n}"), "type": "load", "data": {"n": n}});
        let mut outage: Option<Outage> = None;
        loop {
            let sent = Instant::now();
            let r = sc.publish(topic, &event).await;
            let now = Instant::now();
            log.slowest = log.slowest.max(now - sent);
            match r.status {
                202 => {
                    log.acked.push(Acked {
                        n,
                        offset: r.body["offset"]
                            .as_u64()
                            .unwrap_or_else(|| panic!("202 without offset: {}", r.body)),
                        epoch: r.body["epoch"].as_str().unwrap_or_default().to_owned(),
                        duplicate: r.body["duplicate"] == true,
                    });
                    if let Some(mut o) = outage.take() {
                        o.ended = now;
                        log.outages.push(o);
                    }
                    break;
                }
                503 => {
                    let retry = r
                        .header("retry-after")
                        .unwrap_or_else(|| panic!("503 without Retry-After: {}", r.text));
                    let secs: u64 = retry
                        .parse()
                        .unwrap_or_else(|e| panic!("Retry-After {retry:?} is not whole seconds: {e}"));
                    assert_eq!(r.error_code(), "unavailable", "{}", r.text);
                    let o = outage.get_or_insert(Outage {
                        started: sent,
                        refused: now,
                        ended: now,
                        refusals: 0,
                    });
                    o.refusals += 1;
                    if now - o.started >= GIVE_UP {
                        log.gave_up = Some(format!(
                            "event {n} refused {} times for {:?}; last: {}",
                            o.refusals,
                            now - o.started,
                            r.text
                        ));
                        log.outages.push(o.clone());
                        return log;
                    }
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                }
                other => panic!("publish of event {n} answered {other}: {}", r.text),
            }
        }
    }
    log
}
