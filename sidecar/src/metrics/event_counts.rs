//! Per-topic event counters kept as plain atomics, and the collector that exports them
//! as `eventcast_events_in_total` / `eventcast_events_out_total{topic,priority}`.
//!
//! Why not `IntCounterVec` children: each child is its own allocation, so counting one
//! publish and its deliveries touched several cache lines per topic. With thousands of
//! topics those lines are cold, and on the many-topics profile counting cost as much as
//! a good part of the fan-out. Here a topic's counts in each direction share one line.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use eventcast_api::Priority;
use parking_lot::RwLock;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};

use super::TopicMetrics;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One count per priority class, indexed by `Priority::index()`, on one cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct ByPriority(pub [Count; 5]);

impl std::ops::Index<usize> for ByPriority {
    type Output = Count;

    fn index(&self, class: usize) -> &Count {
        &self.0[class]
    }
}

impl ByPriority {
    pub fn total(&self) -> u64 {
        self.0.iter().map(Count::get).sum()
    }
}

/// Topic name -> its metric handles, shared by `Metrics` and the collector.
pub type TopicTable = Arc<RwLock<HashMap<String, Arc<TopicMetrics>>>>;

const IN_NAME: &str = "eventcast_events_in_total";
const IN_HELP: &str = "Events accepted for publishing";
const OUT_NAME: &str = "eventcast_events_out_total";
const OUT_HELP: &str = "Event deliveries written to WebSocket clients";

/// Exports every topic's [`ByPriority`] counts at scrape time.
pub struct EventCounts {
    topics: TopicTable,
    descs: [Desc; 2],
}

impl EventCounts {
    pub fn new(topics: TopicTable) -> Result<Self, prometheus::Error> {
        let desc = |name: &str, help: &str| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                vec!["topic".to_owned(), "priority".to_owned()],
                HashMap::new(),
            )
        };
        Ok(Self {
            topics,
            descs: [desc(IN_NAME, IN_HELP)?, desc(OUT_NAME, OUT_HELP)?],
        })
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_owned());
    l.set_value(value.to_owned());
    l
}

fn family(name: &str, help: &str, rows: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(MetricType::COUNTER);
    f.set_metric(rows);
    f
}

impl Collector for EventCounts {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let topics = self.topics.read();
        let mut sorted: Vec<_> = topics.iter().collect();
        sorted.sort_by_key(|(name, _)| *name);
        let mut rows_in = Vec::with_capacity(sorted.len() * 5);
        let mut rows_out = Vec::with_capacity(sorted.len() * 5);
        for (name, t) in sorted {
            for p in Priority::HIGHEST_FIRST {
                let row = |count: &Count| {
                    // Label pairs in name order, as the text format expects them.
                    let mut m = Metric::from_label(vec![label("priority", p.as_str()), label("topic", name)]);
                    let mut c = Counter::default();
                    // Counts stay far below 2^53, where f64 is exact.
                    c.set_value(count.get() as f64);
                    m.set_counter(c);
                    m
                };
                rows_in.push(row(&t.events_in[p.index()]));
                rows_out.push(row(&t.events_out[p.index()]));
            }
        }
        if rows_in.is_empty() {
            return Vec::new();
        }
        vec![family(IN_NAME, IN_HELP, rows_in), family(OUT_NAME, OUT_HELP, rows_out)]
    }
}
