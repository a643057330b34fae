//! Publish-to-receive latency recording in HDR histograms (microsecond
//! precision) plus delivery counters, shared by all subscriber tasks.
//!
//! Each event is timed twice: at its arrival at the client socket (the kernel's
//! receive stamp, see [`arrival`](crate::arrival)), which is the latency the
//! benchmarks report and limit, and at the moment the generator read it, which
//! adds the generator's own reading of the frames queued before it.
//!
//! Subscribers are spread over a few mutex-protected shards so that worker
//! threads rarely contend; readers merge the shards for a report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency tracked exactly (larger values are clamped): 2 minutes.
const MAX_MICROS: u64 = 120_000_000;

/// Current wall-clock time as unix nanoseconds (the events' `t` clock).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Per-shard counters and histogram.
struct Shard {
    /// Publish to arrival at the client socket.
    hist: Histogram<u64>,
    /// Publish to the generator's read.
    read_hist: Histogram<u64>,
    counts: Counts,
}

/// Delivery counters (summed over shards).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Event frames received.
    pub events: u64,
    /// Event frames whose latency went into the histogram.
    pub recorded: u64,
    /// Event frames without a parsable `event.data.t`.
    pub untimed: u64,
    /// `lagged` frames received.
    pub lagged: u64,
    /// `disconnect` frames received.
    pub disconnects: u64,
    /// Socket reads the kernel returned without an arrival stamp; their events
    /// were timed at the read instead.
    pub unstamped_reads: u64,
}

impl Counts {
    fn add(&mut self, o: &Self) {
        self.events += o.events;
        self.recorded += o.recorded;
        self.untimed += o.untimed;
        self.lagged += o.lagged;
        self.disconnects += o.disconnects;
        self.unstamped_reads += o.unstamped_reads;
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencySummary {
    /// Summarizes a histogram of microsecond values.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            samples: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// A batch of observations made by one subscriber, applied under one lock.
#[derive(Debug, Default)]
pub struct Batch {
    /// (arrival, read) latency pairs.
    latencies_us: Vec<(u64, u64)>,
    counts: Counts,
}

impl Batch {
    /// An event frame with send timestamp `t` that arrived at the client socket
    /// at `arrived` and was read at `read` (all unix nanos). Events sent before
    /// `record_from` are counted but not timed (warm-up).
    pub fn event(&mut self, t: Option<u64>, arrived: u64, read: u64, record_from: u64) {
        self.counts.events += 1;
        match t {
            Some(t) if t >= record_from => {
                self.counts.recorded += 1;
                self.latencies_us
                    .push((arrived.saturating_sub(t) / 1000, read.saturating_sub(t) / 1000));
            }
            Some(_) => {}
            None => self.counts.untimed += 1,
        }
    }

    pub fn lagged(&mut self) {
        self.counts.lagged += 1;
    }

    pub fn disconnect(&mut self) {
        self.counts.disconnects += 1;
    }

    /// `n` more socket reads came back without an arrival stamp.
    pub fn unstamped_reads(&mut self, n: u64) {
        self.counts.unstamped_reads += n;
    }

    pub fn is_empty(&self) -> bool {
        self.counts == Counts::default()
    }
}

/// Sharded latency recorder shared by all subscribers.
pub struct Recorder {
    shards: Box<[Mutex<Shard>]>,
    record_from: AtomicU64,
    closed: AtomicU64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).context("creating histogram")
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Recorder {
    /// A recorder with `shards` shards (at least one).
    pub fn new(shards: usize) -> Result<Self> {
        let shards = (0..shards.max(1))
            .map(|_| {
                Ok(Mutex::new(Shard {
                    hist: new_histogram()?,
                    read_hist: new_histogram()?,
                    counts: Counts::default(),
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            shards: shards.into_boxed_slice(),
            record_from: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        })
    }

    /// Events sent (per their `t`) before this instant are not timed.
    pub fn record_from(&self) -> u64 {
        self.record_from.load(Ordering::Relaxed)
    }

    /// Applies a subscriber's batch to shard `key % shards` and empties it.
    pub fn apply(&self, key: usize, batch: &mut Batch) {
        if batch.is_empty() {
            return;
        }
        let mut shard = lock(&self.shards[key % self.shards.len()]);
        for &(arrival, read) in &batch.latencies_us {
            shard.hist.saturating_record(arrival.max(1));
            shard.read_hist.saturating_record(read.max(1));
        }
        shard.counts.add(&batch.counts);
        drop(shard);
        batch.latencies_us.clear();
        batch.counts = Counts::default();
    }

    /// A subscriber connection ended without being asked to.
    pub fn connection_closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections that ended without being asked to, since start.
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    /// Clears histograms and counters; only events sent at or after
    /// `record_from` (unix nanos) will be timed.
    pub fn reset(&self, record_from: u64) {
        self.record_from.store(record_from, Ordering::Relaxed);
        for s in &self.shards {
            let mut s = lock(s);
            s.hist.reset();
            s.read_hist.reset();
            s.counts = Counts::default();
        }
    }

    /// Current counters (cheap: no histogram merge).
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in &self.shards {
            c.add(&lock(s).counts);
        }
        c
    }

    /// Current counters and merged latency summaries: (counters, publish to
    /// arrival, publish to read).
    pub fn snapshot(&self) -> Result<(Counts, LatencySummary, LatencySummary)> {
        let (mut arrival, mut read) = (new_histogram()?, new_histogram()?);
        let mut c = Counts::default();
        for s in &self.shards {
            let s = lock(s);
            arrival.add(&s.hist).context("merging histograms")?;
            read.add(&s.read_hist).context("merging histograms")?;
            c.add(&s.counts);
        }
        Ok((
            c,
            LatencySummary::from_histogram(&arrival),
            LatencySummary::from_histogram(&read),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_resets() -> Result<()> {
        let r = Recorder::new(4)?;
        r.reset(1_000);
        let mut b = Batch::default();
        b.event(Some(2_000), 2_000 + 3_000_000, 2_000 + 4_000_000, r.record_from()); // 3 ms, read at 4
        b.event(Some(500), 10_000_000, 10_000_000, r.record_from()); // before record_from: untimed
        b.event(None, 10_000_000, 10_000_000, r.record_from());
        b.lagged();
        b.disconnect();
        b.unstamped_reads(2);
        r.apply(1, &mut b);
        assert!(b.is_empty());
        let mut b2 = Batch::default();
        b2.event(Some(2_000), 2_000 + 1_000_000, 2_000 + 1_000_000, r.record_from()); // 1 ms
        r.apply(2, &mut b2);
        let (c, l, read) = r.snapshot()?;
        assert_eq!(
            c,
            Counts {
                events: 4,
                recorded: 2,
                untimed: 1,
                lagged: 1,
                disconnects: 1,
                unstamped_reads: 2,
            }
        );
        assert_eq!(l.samples, 2);
        assert!((l.max_ms - 3.0).abs() < 0.01, "{l:?}");
        assert!((l.p50_ms - 1.0).abs() < 0.01, "{l:?}");
        assert_eq!(read.samples, 2);
        assert!((read.max_ms - 4.0).abs() < 0.01, "{read:?}");
        r.reset(0);
        assert_eq!(r.counts(), Counts::default());
        assert_eq!(r.snapshot()?.1.samples, 0);
        Ok(())
    }
}
