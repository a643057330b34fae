//! The `fanout` subcommand: opens the subscribers (on one topic, or spread over
//! `--topics`), then runs the publisher once at `--rate` or, with `--step`, at
//! increasing rates over the same connections until latency or loss limits are
//! exceeded, and reports deliveries/s, loss, latency percentiles and the CPU use
//! of the generator (and of the `--server-pid` processes).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

use crate::cli::{FanoutArgs, secs};
use crate::connections::{self, Clients};
use crate::endpoint;
use crate::latency::{Recorder, unix_nanos};
use crate::procfs::CpuMark;
use crate::publisher::{PublishPlan, Publisher};
use crate::report::{self, ConnectReport, FanoutReport, PhaseReport, StepReport};

/// A drain ends early when no delivery arrived for this long.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// Number of doublings of --rate when --step is given without --rates.
const DEFAULT_STEPS: u32 = 10;

/// Everything a run needs besides the rate.
struct Rig {
    rec: Arc<Recorder>,
    publisher: Arc<Publisher>,
    plan: PublishPlan,
    subscribers: usize,
    /// Subscribers per topic (index as in the plan's `TopicSet`).
    subscribers_per_topic: Vec<u64>,
    server_pids: Vec<u32>,
    warmup: Duration,
    drain: Duration,
}

impl Rig {
    /// One publishing run at `rate` events/s.
    async fn phase(&self, rate: f64) -> Result<PhaseReport> {
        let duration = self.plan.duration;
        let warmup = if self.warmup < duration {
            self.warmup
        } else {
            Duration::ZERO
        };
        let warmup_nanos = u64::try_from(warmup.as_nanos()).unwrap_or(u64::MAX);
        self.rec.reset(unix_nanos().saturating_add(warmup_nanos));
        let closed_before = self.rec.closed();

        let plan = PublishPlan {
            rate,
            ..self.plan.clone()
        };
        let publisher = self.publisher.clone();
        let cpu_start = CpuMark::now();
        let server_start = CpuMark::of(&self.server_pids);
        let machine_start = CpuMark::machine();
        let start = Instant::now();
        let publishing = tokio::spawn(async move { publisher.run(&plan).await });

        tokio::time::sleep_until(start + warmup).await;
        let (w_at, w_events) = (Instant::now(), self.rec.counts().events);
        tokio::time::sleep_until(start + duration).await;
        let (e_at, e_events) = (Instant::now(), self.rec.counts().events);
        let cpu_end = CpuMark::now();
        let server_end = CpuMark::of(&self.server_pids);
        let machine_end = CpuMark::machine();
        let stats = publishing.await??;

        let expected = stats.expected_deliveries(&self.subscribers_per_topic);
        self.drain_until(expected).await;
        let (counts, latency, read_latency) = self.rec.snapshot()?;
        let window = e_at.duration_since(w_at).as_secs_f64();
        Ok(PhaseReport {
            target_rate: rate,
            duration_s: duration.as_secs_f64(),
            subscribers: self.subscribers,
            publish: stats,
            expected,
            received: counts.events,
            lost: expected.saturating_sub(counts.events),
            deliveries_per_sec: if window > 0.0 {
                e_events.saturating_sub(w_events) as f64 / window
            } else {
                0.0
            },
            lagged: counts.lagged,
            disconnects: counts.disconnects,
            untimed: counts.untimed,
            unstamped_reads: counts.unstamped_reads,
            closed_connections: self.rec.closed() - closed_before,
            latency,
            read_latency,
            cpu_percent: cpu_start.percent_since(&cpu_end),
            server_cpu_percent: server_start.percent_since(&server_end),
            machine_cpu_percent: machine_start.percent_since(&machine_end),
        })
    }

    /// Waits until `expected` deliveries arrived, nothing arrived for
    /// [`DRAIN_IDLE`], or `--drain` elapsed.
    async fn drain_until(&self, expected: u64) {
        let deadline = Instant::now() + self.drain;
        let (mut last, mut last_change) = (self.rec.counts().events, Instant::now());
        while last < expected {
            let now = Instant::now();
            if now >= deadline || now.duration_since(last_change) >= DRAIN_IDLE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            let events = self.rec.counts().events;
            if events != last {
                (last, last_change) = (events, Instant::now());
            }
        }
    }
}

fn step_rates(args: &FanoutArgs) -> Vec<f64> {
    if args.rates.is_empty() {
        (0..DEFAULT_STEPS).map(|k| args.rate * f64::from(1u32 << k)).collect()
    } else {
        args.rates.clone()
    }
}

/// Why a step fails, if it does.
fn step_failure(p: &PhaseReport, max_p99_ms: f64) -> Option<String> {
    if p.lost > 0 {
        Some(format!("{} deliveries lost at {} ev/s", p.lost, p.target_rate))
    } else if p.latency.p99_ms > max_p99_ms {
        Some(format!(
            "p99 {:.2} ms > {max_p99_ms} ms at {} ev/s",
            p.latency.p99_ms, p.target_rate
        ))
    } else if p.publish.unsent > 0 || p.publish.failed > 0 || p.publish.rejected > 0 {
        Some(format!(
            "publisher could not deliver the rate {} ev/s ({} unsent, {} failed, {} rejected)",
            p.target_rate, p.publish.unsent, p.publish.failed, p.publish.rejected
        ))
    } else if p.publish.accepted == 0 {
        Some("nothing was published".to_owned())
    } else {
        None
    }
}

fn validate(args: &FanoutArgs) -> Result<()> {
    if args.subscribers == 0 {
        bail!("--subscribers must be at least 1");
    }
    if args.batch > 1 && !args.client.system.supports_batch() {
        bail!("--batch > 1 is only supported with --system eventcast");
    }
    if args.batch > 1 && args.client.topics > 1 {
        bail!("--batch > 1 publishes to one topic: it cannot be combined with --topics > 1");
    }
    let rates = if args.step { step_rates(args) } else { vec![args.rate] };
    if rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        bail!("rates must be positive numbers");
    }
    if secs("--duration", args.duration)?.is_zero() {
        bail!("--duration must be positive");
    }
    Ok(())
}

/// Runs the `fanout` subcommand.
pub async fn run(args: &FanoutArgs) -> Result<()> {
    validate(args)?;
    let ws = endpoint::ws_endpoint(&args.client.ws_url(), args.client.token.as_deref()).await?;
    let http = endpoint::http_endpoint(&args.publish_url()).await?;
    let connect_plan = args.client.connect_plan(ws)?;
    connections::check_sources(&connect_plan)?;
    let shards = 64;
    let rec = Arc::new(Recorder::new(shards)?);

    eprintln!(
        "opening {} {} subscribers on {} (topic {})",
        args.subscribers, args.client.system, connect_plan.endpoint.url, connect_plan.topics
    );
    let clients = connections::open(&connect_plan, args.subscribers, &rec).await;
    let connect = ConnectReport {
        requested: args.subscribers,
        opened: clients.opened,
        failed: clients.failed,
        seconds: clients.elapsed.as_secs_f64(),
        first_error: clients.first_error.as_deref().map(|e| connections::explain(Some(e))),
    };
    report::note(args.client.json, &report::connect_text(&connect));
    if clients.opened == 0 {
        clients.close(Duration::from_secs(1)).await;
        bail!(
            "no subscriber could connect: {}",
            connect.first_error.as_deref().unwrap_or("?")
        );
    }

    let plan = PublishPlan {
        system: args.client.system,
        endpoint: http,
        topics: connect_plan.topics.clone(),
        rate: args.rate,
        duration: secs("--duration", args.duration)?,
        batch: args.batch as usize,
        connections: args.http_conns.max(1),
        payload_bytes: args.payload_bytes,
    };
    let rig = Rig {
        rec,
        publisher: Arc::new(Publisher::new(&plan)),
        plan,
        subscribers: clients.opened,
        subscribers_per_topic: clients.opened_per_topic.clone(),
        server_pids: args.server_pids.clone(),
        warmup: secs("--warmup", args.warmup)?,
        drain: secs("--drain", args.drain)?,
    };
    let result = if args.step {
        run_steps(args, &rig, connect).await
    } else {
        run_once(args, &rig, connect).await
    };
    close(clients).await;
    result
}

async fn close(clients: Clients) {
    clients.close(Duration::from_secs(5)).await;
}

async fn run_once(args: &FanoutArgs, rig: &Rig, connect: ConnectReport) -> Result<()> {
    eprintln!(
        "publishing {} ev/s for {} s to {} subscribers (batch {}, {} B payload)",
        args.rate, args.duration, rig.subscribers, args.batch, args.payload_bytes
    );
    let result = rig.phase(args.rate).await?;
    let report = FanoutReport {
        mode: "fanout",
        system: args.client.system,
        topic: args.client.topic.clone(),
        topics: args.client.topics as usize,
        batch: args.batch,
        payload_bytes: args.payload_bytes,
        connect,
        result,
    };
    if args.client.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report::phase_text(&report.result));
    }
    Ok(())
}

async fn run_steps(args: &FanoutArgs, rig: &Rig, connect: ConnectReport) -> Result<()> {
    let mut steps = Vec::new();
    let (mut best_dps, mut best_rate) = (0.0, None);
    let mut stop_reason = "all steps passed".to_owned();
    for rate in step_rates(args) {
        let p = rig.phase(rate).await?;
        let failure = step_failure(&p, args.max_p99_ms);
        let line = report::step_line(&p, failure.as_deref().map_or("ok", |_| "FAIL"));
        report::note(args.client.json, &line);
        if failure.is_none() && p.deliveries_per_sec > best_dps {
            (best_dps, best_rate) = (p.deliveries_per_sec, Some(rate));
        }
        steps.push(p);
        if let Some(f) = failure {
            stop_reason = f;
            break;
        }
        if rig.rec.closed() as usize >= rig.subscribers {
            stop_reason = "all subscribers were disconnected".to_owned();
            break;
        }
    }
    let report = StepReport {
        mode: "step",
        system: args.client.system,
        topic: args.client.topic.clone(),
        topics: args.client.topics as usize,
        batch: args.batch,
        payload_bytes: args.payload_bytes,
        max_p99_ms: args.max_p99_ms,
        connect,
        steps,
        max_sustained_deliveries_per_sec: best_dps,
        max_sustained_rate: best_rate,
        stop_reason,
    };
    if args.client.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "max sustained: {:.0} deliveries/s (at {} ev/s x {} subscribers); stopped: {}",
            report.max_sustained_deliveries_per_sec,
            report
                .max_sustained_rate
                .map_or_else(|| "-".to_owned(), |r| r.to_string()),
            rig.subscribers,
            report.stop_reason
        );
    }
    Ok(())
}
