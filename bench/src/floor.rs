//! The `floor` subcommand: the physical floor of one-core fan-out latency on
//! this machine, with no server implementation in the way.
//!
//! A pinned sender thread plays the ideal server: every round it writes one
//! ready-made frame to each of N loopback TCP connections with blocking
//! `write_all`, and nothing else (no parsing, no queues, no WebSocket framing
//! beyond the frame's bytes). A receiver thread, pinned to another core, reads
//! the frames on a current-thread tokio runtime — as the `fanout` clients do —
//! and records publish-to-arrival latency from the kernel's receive stamps (see
//! [`arrival`](crate::arrival)) and publish-to-read latency beside it. If a latency target is below these
//! percentiles, no server can meet it on this machine at that fan-out; the
//! report is evidence for BENCHMARKS.md, not a benchmark of Eventcast.
//!
//! Both threads, and the kernel's stamps, take time from the one wall clock
//! (`CLOCK_REALTIME`), as the `fanout` clients and the events' `t` do.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::arrival::ArrivalStream;
use crate::cli::{FloorArgs, secs};
use crate::latency::{LatencySummary, unix_nanos};
use crate::procfs;
use crate::report;

/// Bytes of a frame's header: send time and round number.
pub const HEADER_BYTES: usize = 16;
/// Highest latency tracked exactly (larger values are clamped): 2 minutes.
const MAX_MICROS: u64 = 120_000_000;
/// Descriptors besides the 2N sockets: stdio, the listener, the runtime's
/// epoll and eventfd, /proc reads.
const SPARE_FDS: u64 = 32;
/// Byte the frame is padded with after its header.
const PAD: u8 = b'x';

/// A CPU to pin a thread to, or `none` (let the scheduler place it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuPin(pub Option<usize>);

impl FromStr for CpuPin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("none") {
            return Ok(Self(None));
        }
        s.parse()
            .map(|cpu| Self(Some(cpu)))
            .map_err(|_| format!("expected a CPU number or `none`, got `{s}`"))
    }
}

impl fmt::Display for CpuPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(cpu) => write!(f, "{cpu}"),
            None => f.write_str("none"),
        }
    }
}

/// The header of a floor frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Unix nanoseconds when the round started.
    pub sent_at_nanos: u64,
    pub round: u64,
}

impl FrameHeader {
    /// Writes the header into the first [`HEADER_BYTES`] of `frame`.
    pub fn encode(&self, frame: &mut [u8]) -> Result<()> {
        let Some(header) = frame.get_mut(..HEADER_BYTES) else {
            bail!(
                "a frame needs at least {HEADER_BYTES} bytes, this one has {}",
                frame.len()
            );
        };
        header[..8].copy_from_slice(&self.sent_at_nanos.to_le_bytes());
        header[8..].copy_from_slice(&self.round.to_le_bytes());
        Ok(())
    }

    /// Reads the header from the start of `frame` (None if it is too short).
    pub fn decode(frame: &[u8]) -> Option<Self> {
        let sent_at_nanos = u64::from_le_bytes(frame.get(..8)?.try_into().ok()?);
        let round = u64::from_le_bytes(frame.get(8..HEADER_BYTES)?.try_into().ok()?);
        Some(Self { sent_at_nanos, round })
    }
}

/// Number of rounds due strictly before `secs` at `rate` rounds/s (round k is
/// due at k / rate).
pub fn rounds_before(secs: f64, rate: f64) -> u64 {
    // The epsilon keeps 0.3 s x 10/s from counting a 4th round through rounding.
    let n = (secs * rate - 1e-9).ceil();
    if n > 0.0 { n as u64 } else { 0 }
}

/// One validated `floor` run.
#[derive(Debug, Clone)]
pub struct FloorPlan {
    pub conns: usize,
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub frame_bytes: usize,
    pub sender_cpu: Option<usize>,
    pub receiver_cpu: Option<usize>,
}

impl FloorPlan {
    /// Validates the command line, naming the flag at fault.
    pub fn from_args(args: &FloorArgs) -> Result<Self> {
        let plan = Self {
            conns: args.conns,
            rate: args.rate,
            duration: secs("--duration", args.duration)?,
            warmup: secs("--warmup", args.warmup)?,
            frame_bytes: args.frame_bytes,
            sender_cpu: args.sender_cpu.0,
            receiver_cpu: args.receiver_cpu.0,
        };
        plan.validate()?;
        Ok(plan)
    }

    fn validate(&self) -> Result<()> {
        if self.conns == 0 {
            bail!("--conns must be at least 1");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!(
                "--rate must be a positive number of fan-outs per second, got {}",
                self.rate
            );
        }
        if self.frame_bytes < HEADER_BYTES {
            bail!(
                "--frame-bytes must be at least {HEADER_BYTES} (the header), got {}",
                self.frame_bytes
            );
        }
        if self.warmup >= self.duration && !self.warmup.is_zero() {
            bail!(
                "--warmup ({} s) must be shorter than --duration ({} s)",
                self.warmup.as_secs_f64(),
                self.duration.as_secs_f64()
            );
        }
        if self.rounds() == 0 {
            bail!("--duration x --rate gives no round to send");
        }
        Ok(())
    }

    /// Rounds sent in the run.
    pub fn rounds(&self) -> u64 {
        rounds_before(self.duration.as_secs_f64(), self.rate)
    }

    /// Rounds in the warm-up: sent and counted, not timed.
    pub fn warmup_rounds(&self) -> u64 {
        rounds_before(self.warmup.as_secs_f64(), self.rate).min(self.rounds())
    }

    /// When round `k` is due, from the start of sending.
    fn due(&self, k: u64) -> Duration {
        Duration::from_secs_f64(k as f64 / self.rate)
    }
}

/// `floor`.
#[derive(Debug, Clone, Serialize)]
pub struct FloorReport {
    pub mode: &'static str,
    pub conns: usize,
    /// Target fan-outs (rounds) per second.
    pub rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Rounds sent.
    pub rounds: u64,
    /// Rounds after the warm-up, whose frames are timed.
    pub recorded_rounds: u64,
    pub frame_bytes: usize,
    pub sender_cpu: Option<usize>,
    pub receiver_cpu: Option<usize>,
    /// From the start of a round to each frame's arrival at its client socket
    /// (kernel receive stamp), rounds after the warm-up.
    pub latency: LatencySummary,
    /// From the start of a round to the receiver thread's read of each frame.
    pub read_latency: LatencySummary,
    /// From the start of a round to the end of its last write.
    pub span_mean_ms: f64,
    pub span_max_ms: f64,
    /// Mean span / conns: the cost of one write on the sender's core.
    pub per_send_us: f64,
    /// How late the latest round started against its open-loop schedule.
    pub max_behind_ms: f64,
    /// The sender thread's CPU time over the recorded rounds, % of one core.
    pub sender_cpu_percent: Option<f64>,
    pub frames_sent: u64,
    pub frames_received: u64,
    /// `frames_sent - frames_received`.
    pub frames_lost: u64,
    /// Client connections that ended with an error instead of EOF.
    pub receive_errors: u64,
    pub first_receive_error: Option<String>,
}

impl FloorReport {
    /// Human-readable multi-line report, in the style of `fanout`'s.
    pub fn text(&self) -> String {
        let pin = |c: Option<usize>| c.map_or_else(|| "unpinned".to_owned(), |c| format!("CPU {c}"));
        let mut s = format!(
            "floor       {} conns, {} fan-outs/s for {:.1} s: {} rounds ({} after {:.1} s warm-up) of {}-byte frames; sender {}, receiver {}\n",
            self.conns,
            self.rate,
            self.duration_s,
            self.rounds,
            self.recorded_rounds,
            self.warmup_s,
            self.frame_bytes,
            pin(self.sender_cpu),
            pin(self.receiver_cpu)
        );
        s.push_str(&format!(
            "frames      {} sent, {} received, lost {}",
            self.frames_sent, self.frames_received, self.frames_lost
        ));
        if self.receive_errors > 0 {
            s.push_str(&format!(
                "; {} connections failed: {}",
                self.receive_errors,
                self.first_receive_error.as_deref().unwrap_or("?")
            ));
        }
        s.push('\n');
        s.push_str(&format!(
            "latency ms  {}  (arrival at the client socket)\n",
            report::latency_line(&self.latency)
        ));
        s.push_str(&format!(
            "            {}  (read by the receiver thread)\n",
            report::latency_line(&self.read_latency)
        ));
        s.push_str(&format!(
            "fan-out     span mean {:.3} ms, max {:.3} ms; {:.2} us per send; max {:.1} ms behind schedule\n",
            self.span_mean_ms, self.span_max_ms, self.per_send_us, self.max_behind_ms
        ));
        s.push_str(&format!(
            "sender CPU  {} of one core",
            self.sender_cpu_percent
                .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}%"))
        ));
        s
    }
}

/// Runs the `floor` subcommand.
pub fn run(args: &FloorArgs) -> Result<()> {
    let plan = FloorPlan::from_args(args)?;
    report::note(
        args.json,
        &format!(
            "opening {} loopback connections; {} rounds at {}/s",
            plan.conns,
            plan.rounds(),
            plan.rate
        ),
    );
    let report = measure(&plan)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.text());
    }
    Ok(())
}

/// Opens the connections, runs the sender and the receiver and joins both.
pub fn measure(plan: &FloorPlan) -> Result<FloorReport> {
    plan.validate()?;
    check_nofile(plan.conns)?;
    let (servers, clients) = connect_pairs(plan.conns)?;

    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let receiver_plan = plan.clone();
    let receiver = thread::Builder::new()
        .name("floor-receiver".to_owned())
        .spawn(move || receive(&receiver_plan, clients, &ready_tx))
        .context("spawning the receiver thread")?;
    if ready_rx.recv().is_err() {
        // The receiver ended before it was ready: its error says why.
        join(receiver, "receiver")??;
        bail!("the receiver thread ended before it was ready");
    }

    let sender_plan = plan.clone();
    let sender = thread::Builder::new()
        .name("floor-sender".to_owned())
        .spawn(move || send(&sender_plan, servers))
        .context("spawning the sender thread")?;
    // Join both before looking at either result, so that no thread outlives the run.
    let sent = join(sender, "sender");
    let received = join(receiver, "receiver");
    let sent = sent??;
    let received = received??;
    summarize(plan, &sent, received)
}

fn join<T>(handle: thread::JoinHandle<T>, role: &str) -> Result<T> {
    handle.join().map_err(|_| anyhow!("the {role} thread panicked"))
}

/// Fails early with a clear message if 2N sockets would not fit under the
/// open-file limit (instead of an EMFILE halfway through connecting).
fn check_nofile(conns: usize) -> Result<()> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).context("reading RLIMIT_NOFILE")?;
    let needed = (conns as u64).saturating_mul(2).saturating_add(SPARE_FDS);
    if soft < needed {
        bail!(
            "--conns {conns} needs about {needed} open files (two sockets per connection), \
             the limit is {soft} (hard {hard}); raise it with `ulimit -n` or use fewer --conns"
        );
    }
    Ok(())
}

/// N connected loopback pairs: (server side, client side).
fn connect_pairs(conns: usize) -> Result<(Vec<TcpStream>, Vec<TcpStream>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a loopback listener")?;
    let addr = listener.local_addr().context("reading the listener's address")?;
    let mut servers = Vec::with_capacity(conns);
    let mut clients = Vec::with_capacity(conns);
    for i in 0..conns {
        let client = TcpStream::connect(addr).with_context(|| format!("connecting client {i} to {addr}"))?;
        let (server, _) = listener
            .accept()
            .with_context(|| format!("accepting connection {i} on {addr}"))?;
        // A server would disable Nagle too: each frame must leave at once.
        server
            .set_nodelay(true)
            .with_context(|| format!("TCP_NODELAY on connection {i}"))?;
        servers.push(server);
        clients.push(client);
    }
    Ok((servers, clients))
}

/// Pins the calling thread to `cpu` (no-op for `None`).
fn pin_current_thread(cpu: Option<usize>, flag: &str) -> Result<()> {
    let Some(cpu) = cpu else { return Ok(()) };
    let allowed = core_affinity::get_core_ids().context("reading the CPUs this process may run on")?;
    let Some(core) = allowed.iter().find(|c| c.id == cpu) else {
        let ids: Vec<String> = allowed.iter().map(|c| c.id.to_string()).collect();
        bail!(
            "{flag} {cpu}: no such CPU among those this process may run on ({})",
            ids.join(",")
        );
    };
    if !core_affinity::set_for_current(*core) {
        bail!("{flag} {cpu}: pinning the thread to CPU {cpu} failed");
    }
    Ok(())
}

/// On-CPU time of the calling thread in nanoseconds.
fn thread_cpu_nanos() -> Option<u64> {
    // schedstat has nanoseconds; stat only 10 ms ticks, too coarse for short runs.
    if let Some(ns) = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
    {
        return Some(ns);
    }
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    procfs::parse_stat_cpu_ticks(&stat).map(|ticks| ticks * 10_000_000)
}

/// What the sender measured.
#[derive(Debug, Default)]
struct Sent {
    rounds: u64,
    frames: u64,
    /// Spans of the recorded rounds, nanoseconds.
    span_sum_nanos: u64,
    span_max_nanos: u64,
    max_behind: Duration,
    cpu_percent: Option<f64>,
}

/// The sender thread: the ideal one-core server.
fn send(plan: &FloorPlan, mut servers: Vec<TcpStream>) -> Result<Sent> {
    pin_current_thread(plan.sender_cpu, "--sender-cpu")?;
    let (rounds, warmup_rounds) = (plan.rounds(), plan.warmup_rounds());
    let mut frame = vec![PAD; plan.frame_bytes];
    let mut sent = Sent::default();
    let mut cpu_start = None;
    let start = Instant::now();
    for round in 0..rounds {
        let due = start + plan.due(round);
        let now = Instant::now();
        if let Some(wait) = due.checked_duration_since(now) {
            thread::sleep(wait);
        }
        if round == warmup_rounds {
            cpu_start = Some((Instant::now(), thread_cpu_nanos()));
        }
        sent.max_behind = sent.max_behind.max(Instant::now().saturating_duration_since(due));
        let t0 = unix_nanos();
        FrameHeader {
            sent_at_nanos: t0,
            round,
        }
        .encode(&mut frame)?;
        for (i, stream) in servers.iter_mut().enumerate() {
            stream
                .write_all(&frame)
                .with_context(|| format!("writing round {round} to connection {i}"))?;
            sent.frames += 1;
        }
        let span = unix_nanos().saturating_sub(t0);
        sent.rounds += 1;
        if round >= warmup_rounds {
            sent.span_sum_nanos += span;
            sent.span_max_nanos = sent.span_max_nanos.max(span);
        }
    }
    if let Some((at, Some(cpu0))) = cpu_start {
        let wall = at.elapsed();
        sent.cpu_percent = thread_cpu_nanos()
            .and_then(|cpu1| cpu1.checked_sub(cpu0))
            .filter(|_| !wall.is_zero())
            .map(|cpu| cpu as f64 / wall.as_nanos() as f64 * 100.0);
    }
    // Closing the server side is the receivers' end-of-run signal (EOF).
    drop(servers);
    Ok(sent)
}

/// What the receiver measured.
#[derive(Debug)]
struct Received {
    /// Publish to arrival.
    hist: Histogram<u64>,
    /// Publish to read.
    read_hist: Histogram<u64>,
    frames: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Received {
    /// A whole frame arrived at `arrived` and was read at `read` (unix nanos).
    fn frame(&mut self, frame: &[u8], arrived: u64, read: u64, record_from_round: u64) {
        self.frames += 1;
        if let Some(h) = FrameHeader::decode(frame)
            && h.round >= record_from_round
        {
            let us = |at: u64| (at.saturating_sub(h.sent_at_nanos) / 1000).max(1);
            self.hist.saturating_record(us(arrived));
            self.read_hist.saturating_record(us(read));
        }
    }

    fn error(&mut self, e: &io::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

/// The receiver thread: all client connections on one current-thread runtime.
fn receive(plan: &FloorPlan, clients: Vec<TcpStream>, ready: &mpsc::SyncSender<()>) -> Result<Received> {
    pin_current_thread(plan.receiver_cpu, "--receiver-cpu")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("building the receiver's runtime")?;
    let local = tokio::task::LocalSet::new();
    let frame_bytes = plan.frame_bytes;
    let record_from_round = plan.warmup_rounds();
    // One thread runs every task, so one RefCell'd histogram needs no lock and no merge.
    let tally = Rc::new(RefCell::new(Received {
        hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).context("creating histogram")?,
        read_hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).context("creating histogram")?,
        frames: 0,
        errors: 0,
        first_error: None,
    }));
    let tasks_tally = tally.clone();
    local.block_on(&runtime, async move {
        let mut tasks = Vec::with_capacity(clients.len());
        for (i, client) in clients.into_iter().enumerate() {
            client
                .set_nonblocking(true)
                .with_context(|| format!("non-blocking mode on client {i}"))?;
            let stream = tokio::net::TcpStream::from_std(client).with_context(|| format!("registering client {i}"))?;
            let stream = ArrivalStream::new(stream).with_context(|| format!("receive timestamps on client {i}"))?;
            let tally = tasks_tally.clone();
            tasks.push(tokio::task::spawn_local(read_frames(
                stream,
                frame_bytes,
                record_from_round,
                tally,
            )));
        }
        ready.send(()).context("the floor run went away")?;
        for task in tasks {
            task.await.context("a receiver task failed")?;
        }
        anyhow::Ok(())
    })?;
    drop(local);
    Rc::try_unwrap(tally)
        .map(RefCell::into_inner)
        .map_err(|_| anyhow!("receiver tasks still hold the tally"))
}

/// One client connection: whole frames until EOF.
async fn read_frames(
    mut stream: ArrivalStream,
    frame_bytes: usize,
    record_from_round: u64,
    tally: Rc<RefCell<Received>>,
) {
    let mut frame = vec![0u8; frame_bytes];
    loop {
        match stream.read_exact(&mut frame).await {
            Ok(_) => tally
                .borrow_mut()
                .frame(&frame, stream.last_arrival(), unix_nanos(), record_from_round),
            // The sender closed the connection: the run is over (a partial
            // frame before it shows up as lost).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                tally.borrow_mut().error(&e);
                break;
            }
        }
    }
}

fn summarize(plan: &FloorPlan, sent: &Sent, received: Received) -> Result<FloorReport> {
    let recorded_rounds = sent.rounds.saturating_sub(plan.warmup_rounds());
    let span_mean_ms = if recorded_rounds > 0 {
        sent.span_sum_nanos as f64 / recorded_rounds as f64 / 1e6
    } else {
        0.0
    };
    Ok(FloorReport {
        mode: "floor",
        conns: plan.conns,
        rate: plan.rate,
        duration_s: plan.duration.as_secs_f64(),
        warmup_s: plan.warmup.as_secs_f64(),
        rounds: sent.rounds,
        recorded_rounds,
        frame_bytes: plan.frame_bytes,
        sender_cpu: plan.sender_cpu,
        receiver_cpu: plan.receiver_cpu,
        latency: LatencySummary::from_histogram(&received.hist),
        read_latency: LatencySummary::from_histogram(&received.read_hist),
        span_mean_ms,
        span_max_ms: sent.span_max_nanos as f64 / 1e6,
        per_send_us: span_mean_ms * 1000.0 / plan.conns as f64,
        max_behind_ms: sent.max_behind.as_secs_f64() * 1000.0,
        sender_cpu_percent: sent.cpu_percent,
        frames_sent: sent.frames,
        frames_received: received.frames,
        frames_lost: sent.frames.saturating_sub(received.frames),
        receive_errors: received.errors,
        first_receive_error: received.first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conns: usize, rate: f64, duration: f64, warmup: f64) -> FloorPlan {
        FloorPlan {
            conns,
            rate,
            duration: Duration::from_secs_f64(duration),
            warmup: Duration::from_secs_f64(warmup),
            frame_bytes: 200,
            sender_cpu: None,
            receiver_cpu: None,
        }
    }

    #[test]
    fn frame_header_round_trips() -> Result<()> {
        let mut frame = vec![PAD; 200];
        let h = FrameHeader {
            sent_at_nanos: 0x0102_0304_0506_0708,
            round: 42,
        };
        h.encode(&mut frame)?;
        assert_eq!(frame[0], 0x08, "little endian");
        assert_eq!(frame[8], 42);
        assert_eq!(frame[HEADER_BYTES], PAD, "padding untouched");
        assert_eq!(FrameHeader::decode(&frame), Some(h));
        let mut exact = [0u8; HEADER_BYTES];
        h.encode(&mut exact)?;
        assert_eq!(FrameHeader::decode(&exact), Some(h));
        assert!(h.encode(&mut [0u8; HEADER_BYTES - 1]).is_err());
        assert_eq!(FrameHeader::decode(&exact[..HEADER_BYTES - 1]), None);
        Ok(())
    }

    #[test]
    fn counts_rounds() {
        assert_eq!(rounds_before(10.0, 50.0), 500);
        assert_eq!(rounds_before(0.5, 20.0), 10);
        assert_eq!(rounds_before(0.3, 10.0), 3, "no extra round through float rounding");
        assert_eq!(rounds_before(0.25, 10.0), 3, "rounds at 0, 0.1 and 0.2 s");
        assert_eq!(rounds_before(0.0, 50.0), 0);
        let p = plan(10, 50.0, 10.0, 1.0);
        assert_eq!((p.rounds(), p.warmup_rounds()), (500, 50));
        assert_eq!(p.due(25), Duration::from_millis(500));
    }

    #[test]
    fn validates_the_plan() {
        assert!(plan(1, 50.0, 1.0, 0.0).validate().is_ok());
        assert!(plan(0, 50.0, 1.0, 0.0).validate().is_err());
        assert!(plan(1, 0.0, 1.0, 0.0).validate().is_err());
        assert!(plan(1, f64::NAN, 1.0, 0.0).validate().is_err());
        assert!(
            plan(1, 50.0, 1.0, 1.0).validate().is_err(),
            "warm-up as long as the run"
        );
        assert!(plan(1, 50.0, 0.0, 0.0).validate().is_err(), "no round");
        let mut short = plan(1, 50.0, 1.0, 0.0);
        short.frame_bytes = HEADER_BYTES - 1;
        assert!(short.validate().is_err());
    }

    #[test]
    fn parses_cpu_pins() {
        assert_eq!("3".parse(), Ok(CpuPin(Some(3))));
        assert_eq!("none".parse(), Ok(CpuPin(None)));
        assert!("-1".parse::<CpuPin>().is_err());
        assert_eq!(CpuPin(Some(1)).to_string(), "1");
        assert_eq!(CpuPin(None).to_string(), "none");
    }

    #[test]
    fn refuses_a_cpu_that_does_not_exist() {
        let e = pin_current_thread(Some(100_000), "--sender-cpu").expect_err("pinned to CPU 100000");
        assert!(e.to_string().contains("--sender-cpu 100000"), "{e}");
    }

    #[test]
    fn times_warm_up_rounds_out() -> Result<()> {
        let mut r = Received {
            hist: Histogram::new_with_bounds(1, MAX_MICROS, 3)?,
            read_hist: Histogram::new_with_bounds(1, MAX_MICROS, 3)?,
            frames: 0,
            errors: 0,
            first_error: None,
        };
        let mut frame = [0u8; 32];
        FrameHeader {
            sent_at_nanos: 1_000,
            round: 0,
        }
        .encode(&mut frame)?;
        r.frame(&frame, 3_000_000, 3_500_000, 1);
        FrameHeader {
            sent_at_nanos: 1_000,
            round: 1,
        }
        .encode(&mut frame)?;
        r.frame(&frame, 2_001_000, 2_501_000, 1);
        assert_eq!(r.frames, 2);
        assert_eq!(r.hist.len(), 1);
        assert_eq!(r.hist.max(), 2000);
        assert_eq!(r.read_hist.len(), 1);
        assert!(r.read_hist.equivalent(r.read_hist.max(), 2500));
        Ok(())
    }

    #[test]
    fn measures_in_process() -> Result<()> {
        let report = measure(&plan(20, 20.0, 0.5, 0.0))?;
        assert_eq!(report.rounds, 10);
        assert_eq!(report.recorded_rounds, 10);
        assert_eq!(report.frames_sent, 200);
        assert_eq!(report.frames_received, 200);
        assert_eq!(report.frames_lost, 0);
        assert_eq!(report.receive_errors, 0, "{:?}", report.first_receive_error);
        assert_eq!(report.latency.samples, 200);
        assert_eq!(report.read_latency.samples, 200);
        // A frame is read after it arrived, never before.
        assert!(report.read_latency.max_ms >= report.latency.max_ms, "{report:?}");
        assert!(
            report.span_max_ms >= report.span_mean_ms && report.span_mean_ms > 0.0,
            "{report:?}"
        );
        assert!(report.per_send_us > 0.0);
        let json = serde_json::to_value(&report)?;
        assert_eq!(json["mode"], "floor");
        assert_eq!(json["frames_lost"], 0);
        assert!(report.text().contains("lost 0"));
        Ok(())
    }
}
