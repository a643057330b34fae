//! Writes status subresources: only when the desired status differs from what the
//! object shows, at most once per `--status-interval` per resource (later changes are
//! coalesced into one write), with bounded concurrency, and with jittered exponential
//! backoff on errors so a failing API server is never hammered. Only the leader writes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventcast_api::crd::{API_VERSION, BroadcastPolicy, Subscription, Topic};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use kube::Resource;
use kube::api::{Patch, PatchParams};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::resource::{Kind, ResourceKey};

/// Field manager of every status write.
pub const FIELD_MANAGER: &str = "eventcast-operator";
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A write's result may take this long to come back through the watch; meanwhile the
/// cache still shows the old status, and the same desired status is not written again.
const ECHO_WINDOW: Duration = Duration::from_secs(10);

/// A status waiting to be written, as the JSON it will be sent as: with thousands of
/// resources a `serde_json::Value` per status costs several KiB each, compact text a
/// fraction of that.
#[derive(Debug)]
struct Pending {
    status: Box<RawValue>,
    not_before: Instant,
}

/// What is remembered per resource after a write. Only a hash of the written status is
/// kept (to recognise its echo through the watch), not the status itself.
#[derive(Debug, Default)]
struct KeyState {
    last_write: Option<Instant>,
    last_written: Option<(u64, Instant)>,
    failures: u32,
}

fn fingerprint(status: &RawValue) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    status.get().hash(&mut h);
    h.finish()
}

/// The body of a status server-side apply.
#[derive(Serialize)]
struct StatusPatch<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    status: &'a RawValue,
}

/// Queue of status writes.
pub struct StatusWriter {
    client: kube::Client,
    pending: Mutex<HashMap<ResourceKey, Pending>>,
    keys: Mutex<HashMap<ResourceKey, KeyState>>,
    wake: Notify,
    interval: Duration,
    concurrency: usize,
    /// After becoming leader, writes wait this long: sidecars of the previous leader are
    /// still reconnecting, and writing "0 sidecars" meanwhile would churn every status.
    grace: Duration,
    metrics: Arc<Metrics>,
}

/// Backoff after `failures` failed writes: doubling from 200 ms to 30 s, with ±25% jitter.
pub fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(BACKOFF_MAX);
    let jitter = rand::random_range(0.75..1.25);
    base.mul_f64(jitter)
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter")
            .field("pending", &self.pending.lock().len())
            .finish_non_exhaustive()
    }
}

impl StatusWriter {
    pub fn new(
        client: kube::Client,
        interval: Duration,
        concurrency: usize,
        grace: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            pending: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            interval,
            concurrency: concurrency.max(1),
            grace,
            metrics,
        }
    }

    /// Asks for `desired` to be the status of `key`; the caller has found it differs from
    /// what the object shows. Does nothing when `desired` was just written (the cache
    /// may not show the write yet).
    pub fn submit<S: Serialize>(&self, key: &ResourceKey, desired: &S) {
        let desired = match serde_json::value::to_raw_value(desired) {
            Ok(raw) => raw,
            Err(e) => {
                // Statuses are plain data; this is a bug, not a runtime condition.
                tracing::error!(resource = %key, error = %e, "status does not serialize");
                return;
            }
        };
        let hash = fingerprint(&desired);
        let not_before = {
            let keys = self.keys.lock();
            let state = keys.get(key);
            if let Some((written, at)) = state.and_then(|s| s.last_written.as_ref())
                && *written == hash
                && at.elapsed() < ECHO_WINDOW
            {
                self.pending.lock().remove(key);
                return;
            }
            state
                .and_then(|s| s.last_write)
                .map_or_else(Instant::now, |t| t + self.interval)
        };
        let mut pending = self.pending.lock();
        let not_before = pending.get(key).map_or(not_before, |p| p.not_before.max(not_before));
        pending.insert(
            key.clone(),
            Pending {
                status: desired,
                not_before,
            },
        );
        drop(pending);
        self.wake.notify_one();
    }

    /// The object already shows the desired status: drop any pending write.
    pub fn discard(&self, key: &ResourceKey) {
        self.pending.lock().remove(key);
    }

    /// Forgets a deleted resource.
    pub fn forget(&self, key: &ResourceKey) {
        self.pending.lock().remove(key);
        self.keys.lock().remove(key);
    }

    /// Writes pending statuses while this replica leads, until shutdown.
    pub async fn run(self: Arc<Self>, mut leader: watch::Receiver<bool>, shutdown: CancellationToken) {
        let mut in_flight = FuturesUnordered::new();
        let mut was_leading = false;
        let mut hold_until = Instant::now();
        loop {
            let leading = *leader.borrow();
            let now = Instant::now();
            if leading && !was_leading {
                hold_until = now + self.grace;
                tracing::info!(grace = ?self.grace, "leading: status writes start after the grace period");
            }
            was_leading = leading;
            let mut next_due: Option<Instant> = None;
            if leading && now < hold_until {
                next_due = Some(hold_until);
            } else if leading {
                let mut pending = self.pending.lock();
                let due: Vec<ResourceKey> = pending
                    .iter()
                    .filter(|(_, p)| p.not_before <= now)
                    .map(|(k, _)| k.clone())
                    .take(self.concurrency.saturating_sub(in_flight.len()))
                    .collect();
                for key in due {
                    if let Some(p) = pending.remove(&key) {
                        let this = self.clone();
                        in_flight.push(async move {
                            let result = this.write(&key, &p.status).await;
                            (key, p.status, result)
                        });
                    }
                }
                next_due = pending.values().map(|p| p.not_before).min();
            }
            let sleep_until = next_due.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                tokio::time::Instant::from_std,
            );
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                changed = leader.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(sleep_until), if leading && in_flight.len() < self.concurrency => {}
                Some((key, status, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.finished(key, status, result);
                }
            }
        }
    }

    fn finished(&self, key: ResourceKey, status: Box<RawValue>, result: Result<(), kube::Error>) {
        let kind = key.kind.as_str();
        let mut keys = self.keys.lock();
        let state = keys.entry(key.clone()).or_default();
        match result {
            Ok(()) => {
                self.metrics.status_writes.with_label_values(&[kind]).inc();
                state.failures = 0;
                state.last_write = Some(Instant::now());
                state.last_written = Some((fingerprint(&status), Instant::now()));
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                // Deleted meanwhile: nothing to write.
                keys.remove(&key);
            }
            Err(e) => {
                self.metrics.status_write_errors.with_label_values(&[kind]).inc();
                state.failures += 1;
                let wait = backoff(state.failures);
                tracing::warn!(resource = %key, error = %e, retry_in = ?wait, "status write failed");
                drop(keys);
                let mut pending = self.pending.lock();
                // A newer desired status replaces this one; keep the backoff either way.
                let entry = pending.entry(key).or_insert(Pending {
                    status,
                    not_before: Instant::now(),
                });
                entry.not_before = entry.not_before.max(Instant::now() + wait);
            }
        }
    }

    async fn write(&self, key: &ResourceKey, status: &RawValue) -> Result<(), kube::Error> {
        let body = StatusPatch {
            api_version: API_VERSION,
            kind: key.kind.as_str(),
            status,
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(body);
        let collection = match key.kind {
            Kind::Topic => Topic::url_path(&(), Some(&key.namespace)),
            Kind::Subscription => Subscription::url_path(&(), Some(&key.namespace)),
            Kind::BroadcastPolicy => BroadcastPolicy::url_path(&(), Some(&key.namespace)),
        };
        // The answer (the whole object) is not parsed: the watch brings it anyway, and
        // decoding thousands of them only churns the allocator.
        let request = kube::core::Request::new(collection)
            .patch_subresource("status", &key.name, &params, &patch)
            .map_err(kube::Error::BuildRequest)?;
        self.client.request_text(request).await?;
        tracing::debug!(resource = %key, "status written");
        Ok(())
    }

    /// Writes waiting (for their interval, backoff or the leader).
    pub fn pending(&self) -> usize {
        self.pending.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for _ in 0..50 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(150) && first <= Duration::from_millis(250));
            let fourth = backoff(4);
            assert!(fourth >= Duration::from_millis(1200) && fourth <= Duration::from_millis(2000));
            assert!(backoff(40) <= BACKOFF_MAX.mul_f64(1.25));
        }
    }
}
