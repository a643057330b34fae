//! Command-line interface definitions (clap): the `fanout`, `idle` and `floor`
//! subcommands and the client options they share.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::connections::ConnectPlan;
use crate::endpoint::WsEndpoint;
use crate::floor::CpuPin;
use crate::protocol::System;
use crate::source_addr::SourceAddrs;
use crate::topic_set::{PLACEHOLDER, TopicSet};

/// Load generator for the Eventcast sidecar (and, with --system, the peers it is
/// compared with: Socket.IO 4 and nchan).
#[derive(Debug, Parser)]
#[command(name = "eventcast-bench", version, about, long_about = None)]
pub struct Cli {
    /// Tokio worker threads of the load generator.
    #[arg(long, global = true, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// N subscribers on one topic (or spread over --topics), a publisher at a
    /// target rate: throughput, loss and publish-to-receive latency (a fixed
    /// moderate rate is the latency test).
    Fanout(FanoutArgs),
    /// N idle subscribed connections: the server's memory per connection.
    Idle(IdleArgs),
    /// No server: one pinned thread writes a ready-made frame to each of N
    /// loopback TCP connections per round, another core reads them. The
    /// latency floor of one-core fan-out on this machine.
    Floor(FloorArgs),
}

/// Options shared by every subcommand that opens WebSocket clients.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The system under test: which protocol to speak.
    #[arg(long, value_enum, default_value_t = System::Eventcast)]
    pub system: System,
    /// The server's WebSocket URL; `{topic}` in it is replaced by each client's
    /// topic [default: eventcast ws://127.0.0.1:8080/v1/ws;
    /// socketio ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket;
    /// nchan ws://127.0.0.1:8090/sub/{topic}].
    #[arg(long)]
    pub ws: Option<String>,
    /// Topic to subscribe to (and publish to); with --topics N the base of the
    /// names `TOPIC-0` .. `TOPIC-{N-1}`.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Number of topics: client i subscribes to `TOPIC-{i mod N}`, event k is
    /// published to `TOPIC-{k mod N}` (1: the single topic `TOPIC`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub topics: u32,
    /// JWT sent as `?token=` (anonymous if absent).
    #[arg(long, env = "EVENTCAST_BENCH_TOKEN")]
    pub token: Option<String>,
    /// Bind client sockets round-robin to these local addresses, e.g.
    /// `127.0.0.2-127.0.0.50` (needed beyond ~28k connections per address).
    #[arg(long)]
    pub source_addrs: Option<SourceAddrs>,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Retries of a transient connect failure.
    #[arg(long, default_value_t = 5)]
    pub connect_retries: u32,
    /// Seconds allowed for one attempt (connect + upgrade + subscribe reply).
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Print one JSON object line instead of the human-readable report.
    #[arg(long)]
    pub json: bool,
}

impl ClientArgs {
    /// `--ws`, or the system's default (possibly a `{topic}` template).
    pub fn ws_url(&self) -> String {
        self.ws
            .clone()
            .unwrap_or_else(|| self.system.default_ws_url().to_owned())
    }

    /// The topics of the run.
    pub fn topic_set(&self) -> TopicSet {
        TopicSet::new(&self.topic, self.topics as usize)
    }

    /// Checks that every client can reach its own topic: a system that names the
    /// channel in the URL needs the `{topic}` placeholder when there are many topics.
    pub fn validate(&self) -> Result<()> {
        if self.topics > 1 && self.system.topic_in_url() && !self.ws_url().contains(PLACEHOLDER) {
            bail!(
                "--topics {} with --system {}: the URL names the channel, so --ws needs {PLACEHOLDER} \
                 (e.g. ws://127.0.0.1:8090/sub/{PLACEHOLDER})",
                self.topics,
                self.system
            );
        }
        Ok(())
    }

    /// The connect plan for a resolved endpoint.
    pub fn connect_plan(&self, endpoint: WsEndpoint) -> Result<ConnectPlan> {
        self.validate()?;
        Ok(ConnectPlan {
            system: self.system,
            endpoint,
            sources: self.source_addrs.clone(),
            topics: self.topic_set(),
            concurrency: self.connect_concurrency.max(1),
            retries: self.connect_retries,
            attempt_timeout: secs("--connect-timeout", self.connect_timeout)?,
            progress: true,
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Base URL of the publish API [default: eventcast http://127.0.0.1:7070;
    /// socketio and nchan: the --ws server's http:// origin].
    #[arg(long)]
    pub publish: Option<String>,
    /// Number of subscribed WebSocket clients.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Published events per second (each is delivered to every subscriber).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds of publishing (per step with --step).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Approximate size in bytes of each event's JSON `data`.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Events per request; above 1 uses `POST /v1/events:batch` (Eventcast only).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    /// Concurrent keep-alive HTTP connections of the publisher.
    #[arg(long, default_value_t = 4)]
    pub http_conns: usize,
    /// Seconds at the start of each run excluded from deliveries/s and latency.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds to wait after publishing for in-flight deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Step the rate up (see --rates) until p99 > --max-p99-ms or any loss.
    #[arg(long)]
    pub step: bool,
    /// Rates for --step, e.g. `10,20,40,80` (default: --rate doubled 10 times).
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// Server processes whose CPU use (summed, % of one core) is reported beside
    /// the load generator's, e.g. `--server-pid 1234,1240`.
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// --step stops after a step whose p99 latency exceeds this.
    #[arg(long, default_value_t = 50.0)]
    pub max_p99_ms: f64,
}

impl FanoutArgs {
    /// `--publish`, or the system's default.
    pub fn publish_url(&self) -> String {
        self.publish
            .clone()
            .unwrap_or_else(|| self.client.system.default_publish_url(&self.client.ws_url()))
    }
}

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Number of idle subscribed connections.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// The server's PID, to read its VmRSS from /proc before and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Seconds to wait after opening before measuring memory.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Seconds to hold the connections open after measuring.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
}

#[derive(Debug, Clone, Args)]
pub struct FloorArgs {
    /// Number of loopback TCP connections written to per round.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Fan-out rounds per second (open loop: round k is due at k / rate).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Size of each written frame (16-byte header: send time, round).
    #[arg(long, default_value_t = 200)]
    pub frame_bytes: usize,
    /// CPU the sender (the ideal server) is pinned to, or `none`.
    #[arg(long, default_value = "0")]
    pub sender_cpu: CpuPin,
    /// CPU the receiving clients' thread is pinned to, or `none`.
    #[arg(long, default_value = "1")]
    pub receiver_cpu: CpuPin,
    /// Seconds at the start whose rounds are sent but not timed.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Print one JSON object line instead of the human-readable report.
    #[arg(long)]
    pub json: bool,
}

/// A non-negative, finite number of seconds as a `Duration`.
pub fn secs(flag: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{flag} must be a non-negative number of seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_fanout_step() -> Result<()> {
        let cli = Cli::try_parse_from([
            "eventcast-bench",
            "fanout",
            "--subscribers",
            "5",
            "--step",
            "--rates",
            "10,20,40",
            "--source-addrs",
            "127.0.0.2-127.0.0.3",
            "--threads",
            "3",
        ])?;
        assert_eq!(cli.threads, 3);
        let Command::Fanout(f) = cli.command else {
            bail!("not fanout")
        };
        assert_eq!(f.rates, vec![10.0, 20.0, 40.0]);
        assert!(f.step);
        assert_eq!(f.client.source_addrs.as_ref().map(SourceAddrs::len), Some(2));
        assert!(secs("x", -1.0).is_err());
        assert_eq!(f.client.system, System::Eventcast);
        assert_eq!(f.client.ws_url(), "ws://127.0.0.1:8080/v1/ws");
        assert_eq!(f.publish_url(), "http://127.0.0.1:7070");
        Ok(())
    }

    #[test]
    fn parses_system() -> Result<()> {
        let cli = Cli::try_parse_from([
            "eventcast-bench",
            "fanout",
            "--system",
            "nchan",
            "--ws",
            "ws://127.0.0.1:9999/sub/bench",
        ])?;
        let Command::Fanout(f) = cli.command else {
            bail!("not fanout")
        };
        assert_eq!(f.client.system, System::Nchan);
        assert_eq!(f.publish_url(), "http://127.0.0.1:9999");
        let cli = Cli::try_parse_from(["eventcast-bench", "idle", "--system", "socketio"])?;
        let Command::Idle(i) = cli.command else {
            bail!("not idle")
        };
        assert_eq!(i.client.ws_url(), System::Socketio.default_ws_url());
        assert!(Cli::try_parse_from(["eventcast-bench", "idle", "--system", "kafka"]).is_err());
        Ok(())
    }

    #[test]
    fn parses_floor() -> Result<()> {
        let cli = Cli::try_parse_from(["eventcast-bench", "floor"])?;
        let Command::Floor(f) = cli.command else {
            bail!("not floor")
        };
        assert_eq!((f.conns, f.frame_bytes, f.json), (1000, 200, false));
        assert_eq!((f.sender_cpu, f.receiver_cpu), (CpuPin(Some(0)), CpuPin(Some(1))));
        let cli = Cli::try_parse_from([
            "eventcast-bench",
            "floor",
            "--conns",
            "20",
            "--frame-bytes",
            "16",
            "--sender-cpu",
            "none",
            "--json",
        ])?;
        let Command::Floor(f) = cli.command else {
            bail!("not floor")
        };
        assert_eq!(
            (f.conns, f.frame_bytes, f.sender_cpu, f.json),
            (20, 16, CpuPin(None), true)
        );
        assert!(Cli::try_parse_from(["eventcast-bench", "floor", "--receiver-cpu", "x"]).is_err());
        Ok(())
    }

    #[test]
    fn many_topics_need_a_url_template_for_nchan() -> Result<()> {
        let parse = |args: &[&str]| -> Result<FanoutArgs> {
            let cli = Cli::try_parse_from([&["eventcast-bench", "fanout"], args].concat())?;
            let Command::Fanout(f) = cli.command else {
                bail!("not fanout")
            };
            Ok(f)
        };
        let f = parse(&["--system", "nchan", "--topics", "5000", "--server-pid", "1,2"])?;
        assert_eq!(f.client.ws_url(), "ws://127.0.0.1:8090/sub/{topic}");
        assert_eq!(f.publish_url(), "http://127.0.0.1:8090");
        assert_eq!(f.client.topic_set().name(4999), "bench-4999");
        assert_eq!(f.server_pids, vec![1, 2]);
        f.client.validate()?;
        let f = parse(&[
            "--system",
            "nchan",
            "--topics",
            "2",
            "--ws",
            "ws://127.0.0.1:1/sub/bench",
        ])?;
        assert!(f.client.validate().is_err());
        let f = parse(&["--topics", "2"])?;
        f.client.validate()?;
        assert!(parse(&["--topics", "0"]).is_err());
        Ok(())
    }
}
