//! The rate-paced publisher: POSTs `bench.tick` events carrying their send
//! timestamp to the sidecar's local publish API over several keep-alive
//! connections, one event per request or `batch` events per
//! `POST /v1/events:batch`. For the peers the same single-event body goes to
//! their publish path (`POST /publish/{topic}` for Socket.IO,
//! `POST /pub/{topic}` for nchan; see [`System::publish_path`]). With several
//! topics (`--topics`) event `k` goes to topic `k mod N` (single-event requests
//! only), and accepted events are counted per topic so that the expected
//! deliveries are exact.
//!
//! Pacing is open-loop: request `r` is due at `start + r * batch / rate`, and
//! the connections take the next due request from a shared counter. A slow
//! server makes requests go out late (reported as `max_behind_ms`) rather
//! than silently lowering the offered rate; nothing is sent after
//! `duration + GRACE`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::endpoint::HttpEndpoint;
use crate::http_client::{HttpConn, Response};
use crate::latency::unix_nanos;
use crate::protocol::System;
use crate::topic_set::TopicSet;

/// How long past its planned end a run may keep sending late requests.
const GRACE: Duration = Duration::from_secs(2);
/// JSON bytes of `data` other than the pad: `{"t":` + 19 digits + `,"pad":"` + `"}`.
const DATA_OVERHEAD: usize = 34;

/// What to publish, how fast and for how long.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    /// Whose publish path to use.
    pub system: System,
    pub endpoint: HttpEndpoint,
    /// Event `k` is published to topic `topics.of_event(k)`.
    pub topics: TopicSet,
    /// Events per second.
    pub rate: f64,
    pub duration: Duration,
    /// Events per request; 1 uses the single-event endpoint.
    pub batch: usize,
    /// Concurrent keep-alive HTTP connections.
    pub connections: usize,
    /// Target size of the event's JSON `data`.
    pub payload_bytes: usize,
}

/// Outcome of one publishing run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublishStats {
    /// Events accepted by the server (2xx, and not failed per item in a batch).
    pub accepted: u64,
    /// Events the server answered with an error status or per-item error.
    pub rejected: u64,
    /// Events whose request failed at the transport level.
    pub failed: u64,
    /// Planned events never sent because the run fell too far behind.
    pub unsent: u64,
    pub requests: u64,
    /// Wall time from the first due request to the last response (at least
    /// the planned duration).
    pub elapsed_s: f64,
    /// Accepted events per second over `elapsed_s`.
    pub accepted_per_sec: f64,
    /// Worst lateness of a request against its schedule.
    pub max_behind_ms: f64,
    /// The first error seen (status and body, or transport error).
    pub first_error: Option<String>,
    /// `accepted` per topic (index as in [`TopicSet`]).
    #[serde(skip)]
    pub accepted_per_topic: Vec<u64>,
}

impl PublishStats {
    /// Deliveries expected when topic `t` has `subscribers[t]` subscribers.
    pub fn expected_deliveries(&self, subscribers: &[u64]) -> u64 {
        self.accepted_per_topic
            .iter()
            .zip(subscribers)
            .fold(0u64, |sum, (a, s)| sum.saturating_add(a.saturating_mul(*s)))
    }
}

/// The pad string for a given target `data` size.
pub fn pad_for(payload_bytes: usize) -> String {
    "x".repeat(payload_bytes.saturating_sub(DATA_OVERHEAD))
}

fn push_data(out: &mut Vec<u8>, t: u64, pad: &str) {
    out.extend_from_slice(b"{\"t\":");
    out.extend_from_slice(t.to_string().as_bytes());
    out.extend_from_slice(b",\"pad\":\"");
    out.extend_from_slice(pad.as_bytes());
    out.extend_from_slice(b"\"}");
}

/// Body of `POST /v1/topics/{topic}/events`.
pub fn single_body(out: &mut Vec<u8>, t: u64, pad: &str) {
    out.clear();
    out.extend_from_slice(b"{\"type\":\"bench.tick\",\"data\":");
    push_data(out, t, pad);
    out.push(b'}');
}

/// Body of `POST /v1/events:batch` with `n` events; `topic_json` is the
/// topic as a JSON string literal.
pub fn batch_body(out: &mut Vec<u8>, n: usize, topic_json: &str, t: u64, pad: &str) {
    out.clear();
    out.extend_from_slice(b"{\"events\":[");
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"topic\":");
        out.extend_from_slice(topic_json.as_bytes());
        out.extend_from_slice(b",\"type\":\"bench.tick\",\"data\":");
        push_data(out, t, pad);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// Counts accepted items in a 2xx batch response: the first array found
/// (top level, or an object field such as `results`) has one entry per event;
/// an entry with an `error` field, `"ok":false` or a `status` >= 400 failed.
/// Without such an array every event counts as accepted.
pub fn batch_accepted(body: &[u8], n: usize) -> usize {
    use serde_json::Value;
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return n;
    };
    let items = match &v {
        Value::Array(a) => Some(a),
        Value::Object(o) => o.values().find_map(Value::as_array),
        _ => None,
    };
    let Some(items) = items else { return n };
    let failed = |it: &Value| {
        it.get("error").is_some_and(|e| !e.is_null())
            || it.get("ok").and_then(Value::as_bool) == Some(false)
            || it.get("status").and_then(Value::as_u64).is_some_and(|s| s >= 400)
    };
    items.iter().filter(|it| !failed(it)).count().min(n)
}

#[derive(Default)]
struct Shared {
    accepted: AtomicU64,
    accepted_per_topic: Vec<AtomicU64>,
    rejected: AtomicU64,
    failed: AtomicU64,
    unsent: AtomicU64,
    requests: AtomicU64,
    max_behind_us: AtomicU64,
    next_request: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    async fn error(&self, e: String) {
        let mut first = self.first_error.lock().await;
        if first.is_none() {
            *first = Some(e);
        }
    }
}

/// Reusable publisher: keeps its HTTP connections across runs (step mode).
#[derive(Debug)]
pub struct Publisher {
    conns: Vec<Arc<Mutex<HttpConn>>>,
}

impl Publisher {
    /// Prepares `plan.connections` lazily opened keep-alive connections.
    pub fn new(plan: &PublishPlan) -> Self {
        let conns = (0..plan.connections.max(1))
            .map(|_| Arc::new(Mutex::new(HttpConn::new(plan.endpoint.addr, &plan.endpoint.host))))
            .collect();
        Self { conns }
    }

    /// Publishes `rate * duration` events on schedule and waits for all responses.
    pub async fn run(&self, plan: &PublishPlan) -> Result<PublishStats> {
        if !(plan.rate > 0.0 && plan.rate.is_finite()) {
            bail!("rate must be positive");
        }
        let batch = plan.batch.max(1);
        let total = (plan.rate * plan.duration.as_secs_f64()).round() as u64;
        let requests = total.div_ceil(batch as u64);
        if batch > 1 && plan.topics.len() > 1 {
            bail!("batches go to one topic: --batch > 1 cannot be combined with --topics > 1");
        }
        let shared = Arc::new(Shared {
            accepted_per_topic: (0..plan.topics.len()).map(|_| AtomicU64::new(0)).collect(),
            ..Shared::default()
        });
        let start = Instant::now();
        let deadline = start + plan.duration + GRACE;
        let paths: Arc<Vec<String>> = Arc::new(if batch > 1 {
            vec![plan.endpoint.batch_path()]
        } else {
            plan.topics
                .names()
                .iter()
                .map(|t| plan.system.publish_path(&plan.endpoint, t))
                .collect()
        });
        let topic_json = serde_json::to_string(&plan.topics.name(0))?;
        let pad = pad_for(plan.payload_bytes);
        let topics = plan.topics.clone();

        let mut tasks = tokio::task::JoinSet::new();
        for conn in &self.conns {
            let (conn, shared, paths, topic_json, pad, topics) = (
                conn.clone(),
                shared.clone(),
                paths.clone(),
                topic_json.clone(),
                pad.clone(),
                topics.clone(),
            );
            let rate = plan.rate;
            tasks.spawn(async move {
                let mut conn = conn.lock().await;
                let mut body = Vec::with_capacity(256 * batch);
                loop {
                    let r = shared.next_request.fetch_add(1, Ordering::Relaxed);
                    if r >= requests {
                        break;
                    }
                    let first = r * batch as u64;
                    let n = (total - first).min(batch as u64) as usize;
                    let due = start + Duration::from_secs_f64(first as f64 / rate);
                    let now = Instant::now();
                    if due > now {
                        tokio::time::sleep_until(due).await;
                    } else if now > deadline {
                        shared.unsent.fetch_add(n as u64, Ordering::Relaxed);
                        continue;
                    } else {
                        let behind = u64::try_from((now - due).as_micros()).unwrap_or(u64::MAX);
                        shared.max_behind_us.fetch_max(behind, Ordering::Relaxed);
                    }
                    let t = unix_nanos();
                    if batch > 1 {
                        batch_body(&mut body, n, &topic_json, t, &pad);
                    } else {
                        single_body(&mut body, t, &pad);
                    }
                    shared.requests.fetch_add(1, Ordering::Relaxed);
                    // One topic per request: a batch has one topic, a single event `first`'s.
                    let topic = if batch > 1 { 0 } else { topics.of_event(first) };
                    match conn.post_json(&paths[topic], &body).await {
                        Ok(resp) => account(&shared, &resp, n, batch > 1, topic).await,
                        Err(e) => {
                            shared.failed.fetch_add(n as u64, Ordering::Relaxed);
                            shared.error(format!("{e:#}")).await;
                        }
                    }
                }
            });
        }
        while let Some(res) = tasks.join_next().await {
            res?;
        }
        // The last request is due 1/rate before the planned end: rate over the plan.
        let elapsed = start.elapsed().as_secs_f64().max(plan.duration.as_secs_f64());
        let accepted = shared.accepted.load(Ordering::Relaxed);
        let first_error = shared.first_error.lock().await.clone();
        let accepted_per_topic = shared
            .accepted_per_topic
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        Ok(PublishStats {
            accepted,
            rejected: shared.rejected.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            unsent: shared.unsent.load(Ordering::Relaxed),
            requests: shared.requests.load(Ordering::Relaxed),
            elapsed_s: elapsed,
            accepted_per_sec: if elapsed > 0.0 { accepted as f64 / elapsed } else { 0.0 },
            max_behind_ms: shared.max_behind_us.load(Ordering::Relaxed) as f64 / 1000.0,
            first_error,
            accepted_per_topic,
        })
    }
}

async fn account(shared: &Shared, resp: &Response, n: usize, is_batch: bool, topic: usize) {
    if (200..300).contains(&resp.status) {
        let ok = if is_batch { batch_accepted(&resp.body, n) } else { n };
        shared.accepted.fetch_add(ok as u64, Ordering::Relaxed);
        if let Some(a) = shared.accepted_per_topic.get(topic) {
            a.fetch_add(ok as u64, Ordering::Relaxed);
        }
        if ok < n {
            shared.rejected.fetch_add((n - ok) as u64, Ordering::Relaxed);
            shared
                .error(format!("batch item errors: {}", String::from_utf8_lossy(&resp.body)))
                .await;
        }
    } else {
        shared.rejected.fetch_add(n as u64, Ordering::Relaxed);
        shared
            .error(format!("HTTP {}: {}", resp.status, String::from_utf8_lossy(&resp.body)))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_the_right_size() -> Result<()> {
        let pad = pad_for(100);
        let mut b = Vec::new();
        single_body(&mut b, 1_700_000_000_000_000_000, &pad);
        let v: serde_json::Value = serde_json::from_slice(&b)?;
        assert_eq!(v["type"], "bench.tick");
        assert_eq!(v["data"]["t"], 1_700_000_000_000_000_000u64);
        assert_eq!(serde_json::to_string(&v["data"])?.len(), 100);

        batch_body(&mut b, 3, "\"be\\\"nch\"", 5, &pad_for(0));
        let v: serde_json::Value = serde_json::from_slice(&b)?;
        let events = v["events"].as_array().map_or(0, Vec::len);
        assert_eq!(events, 3);
        assert_eq!(v["events"][2]["topic"], "be\"nch");
        assert_eq!(v["events"][0]["data"]["pad"], "");
        Ok(())
    }

    #[test]
    fn expected_deliveries_per_topic() {
        let stats = PublishStats {
            accepted_per_topic: vec![3, 2, 0],
            ..PublishStats::default()
        };
        assert_eq!(stats.expected_deliveries(&[2, 2, 5]), 10);
        assert_eq!(stats.expected_deliveries(&[1]), 3);
    }

    #[test]
    fn batch_results() {
        assert_eq!(
            batch_accepted(br#"{"results":[{"offset":1},{"error":{"code":"x"}},{"offset":2}]}"#, 3),
            2
        );
        assert_eq!(batch_accepted(br#"[{"ok":false},{"status":202}]"#, 2), 1);
        assert_eq!(batch_accepted(br#"{"accepted":3}"#, 3), 3);
        assert_eq!(batch_accepted(b"", 4), 4);
    }
}
