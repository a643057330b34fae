//! Benchmark results: serializable report structs (for `--json`, one object
//! per line) and their human-readable rendering.

use serde::Serialize;

use crate::latency::LatencySummary;
use crate::protocol::System;
use crate::publisher::PublishStats;

/// How opening the clients went.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectReport {
    pub requested: usize,
    pub opened: usize,
    pub failed: usize,
    pub seconds: f64,
    pub first_error: Option<String>,
}

/// One publishing run at one rate.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// Target published events per second.
    pub target_rate: f64,
    pub duration_s: f64,
    /// Subscribers connected when the run started.
    pub subscribers: usize,
    pub publish: PublishStats,
    /// Accepted events x subscribers.
    pub expected: u64,
    /// Event frames received by all subscribers.
    pub received: u64,
    /// `expected - received` (0 if more arrived).
    pub lost: u64,
    /// Deliveries per second after the warm-up.
    pub deliveries_per_sec: f64,
    pub lagged: u64,
    pub disconnects: u64,
    /// Event frames without a readable `event.data.t`.
    pub untimed: u64,
    /// Socket reads without a kernel arrival stamp (their events timed at the read).
    pub unstamped_reads: u64,
    /// Subscriber connections the server closed during the run.
    pub closed_connections: u64,
    /// Publish-to-arrival latency (kernel receive stamp at the client socket) of
    /// events sent after the warm-up; `--max-p99-ms` applies to this one.
    pub latency: LatencySummary,
    /// Publish-to-read latency of the same events: adds the generator's own time
    /// reading the frames queued before each one on its thread.
    pub read_latency: LatencySummary,
    /// The load generator's CPU use, % of one core.
    pub cpu_percent: Option<f64>,
    /// The CPU use of the `--server-pid` processes (summed), % of one core.
    pub server_cpu_percent: Option<f64>,
    /// The whole machine's busy CPU (all processes, all cores), % of one core:
    /// minus the generator and the server, what other processes took.
    pub machine_cpu_percent: Option<f64>,
}

/// `fanout` without `--step`.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub mode: &'static str,
    /// The system under test (`--system`).
    pub system: System,
    pub topic: String,
    /// Number of topics (`--topics`).
    pub topics: usize,
    pub batch: u32,
    pub payload_bytes: usize,
    pub connect: ConnectReport,
    #[serde(flatten)]
    pub result: PhaseReport,
}

/// `fanout --step`.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub mode: &'static str,
    /// The system under test (`--system`).
    pub system: System,
    pub topic: String,
    /// Number of topics (`--topics`).
    pub topics: usize,
    pub batch: u32,
    pub payload_bytes: usize,
    pub max_p99_ms: f64,
    pub connect: ConnectReport,
    pub steps: Vec<PhaseReport>,
    /// Highest deliveries/s of a step that passed.
    pub max_sustained_deliveries_per_sec: f64,
    /// Its publish rate.
    pub max_sustained_rate: Option<f64>,
    pub stop_reason: String,
}

/// `idle`.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub mode: &'static str,
    /// The system under test (`--system`).
    pub system: System,
    pub connect: ConnectReport,
    pub server_pid: Option<u32>,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    pub server_kib_per_connection: Option<f64>,
    pub bench_kib_per_connection: Option<f64>,
    pub hold_s: f64,
    /// Connections the server closed while they were held.
    pub closed_during_hold: u64,
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}%"))
}

/// Human-readable connect summary.
pub fn connect_text(c: &ConnectReport) -> String {
    let mut s = format!("connected   {} of {} in {:.1} s", c.opened, c.requested, c.seconds);
    if c.failed > 0 {
        s.push_str(&format!(
            ", {} failed: {}",
            c.failed,
            c.first_error.as_deref().unwrap_or("?")
        ));
    }
    s
}

/// Percentiles of one latency summary on one line.
pub fn latency_line(l: &LatencySummary) -> String {
    format!(
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}  (n={})",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.samples
    )
}

/// Human-readable multi-line report of one run.
pub fn phase_text(p: &PhaseReport) -> String {
    let l = &p.latency;
    let pb = &p.publish;
    let mut s = String::new();
    s.push_str(&format!(
        "published   {} accepted ({:.1}/s of {} target), {} rejected, {} failed, {} unsent; max {:.1} ms behind schedule\n",
        pb.accepted, pb.accepted_per_sec, p.target_rate, pb.rejected, pb.failed, pb.unsent, pb.max_behind_ms
    ));
    if let Some(e) = &pb.first_error {
        s.push_str(&format!("            first publish error: {e}\n"));
    }
    s.push_str(&format!(
        "deliveries  {} received of {} expected ({} subscribers), lost {}; {:.0}/s after warm-up\n",
        p.received, p.expected, p.subscribers, p.lost, p.deliveries_per_sec
    ));
    s.push_str(&format!(
        "frames      lagged {}, disconnect {}, untimed events {}, connections closed {}\n",
        p.lagged, p.disconnects, p.untimed, p.closed_connections
    ));
    s.push_str(&format!(
        "latency ms  {}  (arrival at the client socket)\n",
        latency_line(l)
    ));
    s.push_str(&format!(
        "            {}  (read by the generator)\n",
        latency_line(&p.read_latency)
    ));
    if p.unstamped_reads > 0 {
        s.push_str(&format!(
            "            {} reads had no arrival stamp and were timed when read\n",
            p.unstamped_reads
        ));
    }
    s.push_str(&format!("bench CPU   {} of one core", opt_pct(p.cpu_percent)));
    if p.server_cpu_percent.is_some() {
        s.push_str(&format!("; server CPU {}", opt_pct(p.server_cpu_percent)));
    }
    s.push_str(&format!("; whole machine {}", opt_pct(p.machine_cpu_percent)));
    s
}

/// One line per `--step` step.
pub fn step_line(p: &PhaseReport, verdict: &str) -> String {
    format!(
        "rate {:>8} ev/s  {:>10.0} deliveries/s  lost {:>7}  p50 {:>7.2}  p99 {:>7.2}  max {:>8.2} ms  (read p99 {:>7.2})  cpu {:>6}{}  machine {:>6}  {}",
        p.target_rate,
        p.deliveries_per_sec,
        p.lost,
        p.latency.p50_ms,
        p.latency.p99_ms,
        p.latency.max_ms,
        p.read_latency.p99_ms,
        opt_pct(p.cpu_percent),
        p.server_cpu_percent
            .map_or_else(String::new, |c| format!("  server {:>6}", format!("{c:.1}%"))),
        opt_pct(p.machine_cpu_percent),
        verdict
    )
}

/// Server memory line of the idle report.
pub fn idle_rss_text(pid: Option<u32>, before: Option<u64>, after: Option<u64>, per_conn: Option<f64>) -> String {
    match (pid, before, after) {
        (Some(pid), Some(b), Some(a)) => format!(
            "server RSS  pid {pid}: {b} KiB -> {a} KiB, {:.2} KiB per connection",
            per_conn.unwrap_or(0.0)
        ),
        _ => "server RSS  not measured (give --server-pid)".to_owned(),
    }
}

/// Human-readable end of the idle report (the connect and RSS lines are
/// printed as soon as they are known).
pub fn idle_text(r: &IdleReport) -> String {
    let mut s = String::new();
    if let Some(k) = r.bench_kib_per_connection {
        s.push_str(&format!("bench RSS   {k:.2} KiB per connection (client side)\n"));
    }
    s.push_str(&format!(
        "held        {:.1} s, {} closed by the server meanwhile",
        r.hold_s, r.closed_during_hold
    ));
    s
}

/// A progress/result line: to stdout in human mode, to stderr with `--json`
/// (where stdout carries only the JSON object).
pub fn note(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}
