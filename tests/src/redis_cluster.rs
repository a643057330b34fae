//! The real Redis Cluster the Redis backend's tests run against: 6 nodes (3 masters,
//! 3 replicas) on loopback, started by `e2e/redis-cluster.sh` (from `scripts/test.sh`),
//! and handed to tests through the environment:
//!
//! - `EVENTCAST_TEST_REDIS_CLUSTER`: the nodes, `127.0.0.1:7100,...,127.0.0.1:7105`
//!   (what the sidecar's `--redis-cluster` takes, see [`RedisCluster::nodes_arg`]);
//! - `EVENTCAST_TEST_REDIS_CLUSTER_SCRIPT`: the script, for killing and restarting nodes
//!   (defaults to `e2e/redis-cluster.sh` of this checkout);
//! - `EVENTCAST_SKIP_REDIS_TESTS=1`: skip the cluster tests. Without it, a missing
//!   cluster is a test failure, never a silent pass ([`RedisCluster::from_env`]).
//!
//! A test that needs the cluster starts with
//!
//! ```ignore
//! let Some(cluster) = RedisCluster::from_env() else { return };
//! let _guard = RedisCluster::shared().await;      // or exclusive(), see below
//! let topic = unique_topic("t");                  // isolate by name, not by FLUSHALL
//! ```
//!
//! **Serialization.** Cargo runs test binaries one after another, but the tests of one
//! binary in parallel. A test that changes the topology (kills, restarts, fails over or
//! reshards) takes [`RedisCluster::exclusive`]; every other test using the cluster takes
//! [`RedisCluster::shared`], so it never runs during someone's failover: the cluster
//! keeps `cluster-require-full-coverage yes`, so while a killed master's slots have no
//! owner *every* node answers `CLUSTERDOWN`, not only the killed master's slots. When the
//! exclusive guard is dropped (also when its test panicked), nodes killed under it and
//! not restarted are restarted and the cluster is waited for, so the next test finds 6
//! healthy nodes. (The lock is per process: a runner that executes tests of one binary
//! in several processes, such as cargo-nextest, must run these tests serially.)
//!
//! Everything here runs `redis-cli` (Debian's `redis-tools`) as a child process: no Redis
//! client crate. The calls are async (`tokio::process`) so that an in-process sidecar on
//! the test's runtime keeps running while a test polls the cluster.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::process::Command;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The cluster's nodes, comma-separated `host:port`.
pub const ENV_NODES: &str = "EVENTCAST_TEST_REDIS_CLUSTER";
/// Path of `e2e/redis-cluster.sh`.
pub const ENV_SCRIPT: &str = "EVENTCAST_TEST_REDIS_CLUSTER_SCRIPT";
/// `1` skips the tests that need the cluster.
pub const ENV_SKIP: &str = "EVENTCAST_SKIP_REDIS_TESTS";

/// Bound of one `redis-cli` call.
const CLI_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`ExclusiveGuard`]'s drop waits for the cluster to be healthy again.
const HEAL_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
const SLOTS: usize = 16384;

/// Readers: tests that use the cluster; writer: a test that changes its topology.
static TOPOLOGY: RwLock<()> = RwLock::const_new(());
/// Nodes killed by [`RedisCluster::kill_master_for`] and not restarted yet, with when.
static KILLED: Mutex<Vec<(u16, Instant)>> = Mutex::new(Vec::new());

/// Error replies as `redis-cli` prints them outside a terminal (on stdout, exit code 0).
const ERROR_PREFIXES: &[&str] = &[
    "ERR",
    "WRONGTYPE",
    "MOVED",
    "ASK",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "CROSSSLOT",
    "READONLY",
    "LOADING",
    "MASTERDOWN",
    "NOSCRIPT",
    "BUSY",
    "NOAUTH",
    "NOPERM",
    "EXECABORT",
    "NOREPLICAS",
    "OOM",
    "MISCONF",
    "BUSYKEY",
    "NOGROUP",
    "BUSYGROUP",
    "UNKILLABLE",
    "NOTBUSY",
];

/// The cluster under test: its nodes and the script that manages them.
#[derive(Debug, Clone)]
pub struct RedisCluster {
    nodes: Vec<SocketAddr>,
    script: PathBuf,
}

/// Held by a test using the cluster without changing its topology.
#[must_use = "the guard serializes cluster tests only while it is held"]
#[derive(Debug)]
pub struct SharedGuard {
    _lock: RwLockReadGuard<'static, ()>,
}

/// Held by a test that kills, restarts, fails over or reshards; on drop, restarts the
/// nodes it killed and left down and waits until the cluster is healthy.
#[must_use = "the guard serializes cluster tests only while it is held"]
#[derive(Debug)]
pub struct ExclusiveGuard {
    cluster: Option<RedisCluster>,
    _lock: RwLockWriteGuard<'static, ()>,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    pub addr: SocketAddr,
    /// `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`, ...
    pub flags: Vec<String>,
    /// The master's id, for a replica.
    pub master_id: Option<String>,
    pub connected: bool,
    /// Slot ranges served (migration markers such as `[5->-id]` left out).
    pub slots: Vec<RangeInclusive<u16>>,
}

impl ClusterNode {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    pub fn is_master(&self) -> bool {
        self.has_flag("master")
    }

    /// Marked failing (`fail`) or suspected (`fail?`) by the node whose view this is.
    pub fn is_failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|r| r.contains(&slot))
    }
}

/// Parses `CLUSTER NODES` output.
pub fn parse_cluster_nodes(text: &str) -> Result<Vec<ClusterNode>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return Err(format!("short CLUSTER NODES line: {line:?}"));
            }
            // ip:port@cport[,hostname]
            let addr = f[1].split(['@', ',']).next().unwrap_or_default();
            let addr = addr
                .parse()
                .map_err(|e| format!("bad address {addr:?} in CLUSTER NODES line {line:?}: {e}"))?;
            let mut slots = Vec::new();
            for s in f.iter().skip(8).filter(|s| !s.starts_with('[')) {
                let (lo, hi) = s.split_once('-').unwrap_or((s, s));
                let parse = |x: &str| x.parse::<u16>().map_err(|e| format!("bad slot {s:?} in {line:?}: {e}"));
                slots.push(parse(lo)?..=parse(hi)?);
            }
            Ok(ClusterNode {
                id: f[0].to_owned(),
                addr,
                flags: f[2].split(',').map(str::to_owned).collect(),
                master_id: (f[3] != "-").then(|| f[3].to_owned()),
                connected: f[7] == "connected",
                slots,
            })
        })
        .collect()
}

/// Parses `INFO`/`CLUSTER INFO` output into `field -> value`.
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A topic name no other test (or earlier run) uses: `{prefix}-{16 hex digits}.x`.
/// Tests isolate their data by topic (each topic has its own hash tag, so its own
/// keys) instead of flushing the cluster.
pub fn unique_topic(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one((n, std::process::id(), SystemTime::now()));
    format!("{prefix}-{random:016x}.x")
}

impl RedisCluster {
    /// The cluster from the environment; `None` (with a note on stderr) when
    /// `EVENTCAST_SKIP_REDIS_TESTS=1`.
    ///
    /// # Panics
    /// When `EVENTCAST_TEST_REDIS_CLUSTER` is unset or malformed (and the tests are not
    /// skipped explicitly), or the script is missing.
    pub fn from_env() -> Option<Self> {
        if std::env::var(ENV_SKIP).is_ok_and(|v| v == "1") {
            eprintln!("{ENV_SKIP}=1: skipping a test that needs the Redis Cluster");
            return None;
        }
        match Self::configured() {
            Ok(Some(cluster)) => Some(cluster),
            Ok(None) => panic!(
                "{ENV_NODES} is not set: this test needs the real Redis Cluster. Run ./scripts/test.sh \
                 (it starts one), or `bash e2e/redis-cluster.sh start` and export \
                 {ENV_NODES}=$(bash e2e/redis-cluster.sh nodes); set {ENV_SKIP}=1 to skip these tests \
                 (see e2e/README.md)"
            ),
            Err(e) => panic!("{e}"),
        }
    }

    /// The cluster named by the environment, if any, without panicking or skip logic.
    fn configured() -> Result<Option<Self>, String> {
        let Ok(list) = std::env::var(ENV_NODES) else {
            return Ok(None);
        };
        let nodes = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<SocketAddr>()
                    .map_err(|e| format!("{ENV_NODES}: {s:?} is not host:port (an IP address and port): {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.is_empty() {
            return Err(format!("{ENV_NODES} is set but lists no nodes"));
        }
        let script = std::env::var_os(ENV_SCRIPT).map_or_else(
            || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../e2e/redis-cluster.sh")),
            PathBuf::from,
        );
        if !script.is_file() {
            return Err(format!("{ENV_SCRIPT}: {} is not a file", script.display()));
        }
        Ok(Some(Self { nodes, script }))
    }

    /// Takes the cluster for a test that does not change its topology: waits while a
    /// topology-changing test ([`RedisCluster::exclusive`]) runs in this process.
    pub async fn shared() -> SharedGuard {
        SharedGuard {
            _lock: TOPOLOGY.read().await,
        }
    }

    /// Takes the cluster alone, for a test that kills, restarts, fails over or reshards.
    pub async fn exclusive() -> ExclusiveGuard {
        let lock = TOPOLOGY.write().await;
        ExclusiveGuard {
            cluster: Self::configured().ok().flatten(),
            _lock: lock,
        }
    }

    /// `e2e/redis-cluster.sh`, as configured.
    pub fn script_path(&self) -> &Path {
        &self.script
    }

    /// The nodes, as configured.
    pub fn nodes(&self) -> &[SocketAddr] {
        &self.nodes
    }

    /// The nodes as `host:port,host:port,...` (the sidecar's `--redis-cluster`).
    pub fn nodes_arg(&self) -> String {
        self.nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    }

    /// The configured node on `port`.
    ///
    /// # Panics
    /// When no configured node uses that port.
    pub fn node(&self, port: u16) -> SocketAddr {
        *self
            .nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node of {ENV_NODES} on port {port}"))
    }

    /// Runs `redis-cli -h HOST -p PORT ARGS...` against one node, bounded in time.
    /// `Ok` holds the reply as printed (trimmed, `\r` removed); `Err` a connection
    /// failure, a timeout or an error reply (`ERR ...`, `MOVED ...`, `CLUSTERDOWN ...`).
    pub async fn cli_at(&self, node: SocketAddr, args: &[&str]) -> Result<String, String> {
        run_cli(node, false, args).await
    }

    /// Runs `redis-cli -c ARGS...` against `node`, following MOVED/ASK redirections to
    /// the node serving the key.
    pub async fn cluster_cli_at(&self, node: SocketAddr, args: &[&str]) -> Result<String, String> {
        run_cli(node, true, args).await
    }

    /// Runs `redis-cli -c ARGS...` (following redirections) against the first node that
    /// accepts the connection: what a cluster client would see.
    pub async fn cli(&self, args: &[&str]) -> Result<String, String> {
        let mut last = String::from("no nodes");
        for &node in &self.nodes {
            match run_cli(node, true, args).await {
                Err(e) if e.contains("Could not connect") || e.contains("timed out") => last = e,
                other => return other,
            }
        }
        Err(last)
    }

    /// `CLUSTER NODES` as seen by `node`.
    pub async fn cluster_nodes(&self, node: SocketAddr) -> Result<Vec<ClusterNode>, String> {
        parse_cluster_nodes(&self.cli_at(node, &["cluster", "nodes"]).await?)
    }

    /// `INFO section` (or `CLUSTER INFO` for section `cluster`) of `node` as a map.
    pub async fn info(&self, node: SocketAddr, section: &str) -> Result<HashMap<String, String>, String> {
        let text = if section == "cluster" {
            self.cli_at(node, &["cluster", "info"]).await?
        } else {
            self.cli_at(node, &["info", section]).await?
        };
        Ok(parse_info(&text))
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`; `{...}` hash tags count).
    ///
    /// # Panics
    /// When no node answers.
    pub async fn slot_for(&self, key: &str) -> u16 {
        let reply = self
            .cli(&["cluster", "keyslot", key])
            .await
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key:?}: {e}"));
        reply
            .parse()
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key:?} answered {reply:?}: {e}"))
    }

    /// The master serving `key`'s slot, as that master itself confirms (retried for up
    /// to 10 s, e.g. while a failover settles).
    ///
    /// # Panics
    /// When no live master serves the slot within 10 s.
    pub async fn master_for(&self, key: &str) -> SocketAddr {
        let slot = self.slot_for(key).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let last = match self.find_master(slot).await {
                Ok(addr) => return addr,
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "no live master serves slot {slot} of key {key:?} after 10 s: {last}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn find_master(&self, slot: u16) -> Result<SocketAddr, String> {
        let mut last = String::from("no node answered");
        for &node in &self.nodes {
            let view = match self.cluster_nodes(node).await {
                Ok(v) => v,
                Err(e) => {
                    last = format!("{node}: {e}");
                    continue;
                }
            };
            let Some(owner) = view.iter().find(|n| n.is_master() && !n.is_failing() && n.serves(slot)) else {
                last = format!("{node} knows no live master of slot {slot}");
                continue;
            };
            // The owner must agree that it is that master.
            let owner_view = self.cluster_nodes(owner.addr).await.unwrap_or_default();
            if owner_view
                .iter()
                .any(|n| n.has_flag("myself") && n.is_master() && n.serves(slot))
            {
                return Ok(owner.addr);
            }
            last = format!("{node} says {} serves slot {slot}, but it does not", owner.addr);
        }
        Err(last)
    }

    /// SIGKILLs the master serving `key`'s slot (`redis-cluster.sh kill-master-for`) and
    /// returns its port. Take [`RedisCluster::exclusive`] first.
    ///
    /// # Panics
    /// When the script fails.
    pub async fn kill_master_for(&self, key: &str) -> u16 {
        let out = self
            .script(&["kill-master-for", key], CLI_TIMEOUT * 3)
            .await
            .unwrap_or_else(|e| panic!("kill-master-for {key:?}: {e}"));
        let port: u16 = out
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("kill-master-for {key:?} printed {out:?}: {e}"));
        lock_killed().push((port, Instant::now()));
        port
    }

    /// Starts a killed node again (`redis-cluster.sh restart-node`); it rejoins as a
    /// replica. Returns once it answers PING: use [`RedisCluster::wait_healthy`] for
    /// "replica with its link up".
    ///
    /// # Panics
    /// When the script fails.
    pub async fn restart_node(&self, port: u16) {
        self.script(&["restart-node", &port.to_string()], CLI_TIMEOUT * 3)
            .await
            .unwrap_or_else(|e| panic!("restart-node {port}: {e}"));
        lock_killed().retain(|(p, _)| *p != port);
    }

    /// Waits until every node runs and is healthy (`redis-cluster.sh wait`: cluster
    /// state ok, all slots served, no node seen failing, every replica's link up).
    ///
    /// # Panics
    /// When that takes longer than `timeout` (with each node's problem).
    pub async fn wait_healthy(&self, timeout: Duration) {
        let secs = timeout.as_secs_f64().ceil().max(1.0).to_string();
        if let Err(e) = self.script(&["wait", &secs], timeout + CLI_TIMEOUT * 2).await {
            panic!("Redis Cluster not healthy within {timeout:?}: {e}");
        }
    }

    /// Whether every node is healthy right now (see [`RedisCluster::wait_healthy`]).
    pub async fn is_healthy(&self) -> bool {
        self.script(&["wait", "0"], CLI_TIMEOUT * 3).await.is_ok()
    }

    /// Polls until the slots of the killed node on `killed_port` are served by a
    /// promoted replica: every other node answers, reports `cluster_state:ok` with all
    /// 16384 slots ok, and no longer counts the killed node as owning any slot. Returns
    /// the time since [`RedisCluster::kill_master_for`] killed it (since this call for
    /// a node killed otherwise).
    ///
    /// # Panics
    /// After `timeout`, with what the nodes reported last.
    pub async fn wait_for_failover(&self, killed_port: u16, timeout: Duration) -> Duration {
        let called = Instant::now();
        let since = lock_killed()
            .iter()
            .find(|(p, _)| *p == killed_port)
            .map_or(called, |(_, t)| *t);
        loop {
            let last = match self.failover_done(killed_port).await {
                Ok(()) => return since.elapsed(),
                Err(e) => e,
            };
            assert!(
                called.elapsed() < timeout,
                "the slots of killed node {killed_port} not served by a promoted replica within {timeout:?}: {last}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn failover_done(&self, killed_port: u16) -> Result<(), String> {
        for &node in self.nodes.iter().filter(|n| n.port() != killed_port) {
            let info = self.info(node, "cluster").await.map_err(|e| format!("{node}: {e}"))?;
            let state = info.get("cluster_state").map_or("?", String::as_str);
            let slots_ok = info.get("cluster_slots_ok").map_or("?", String::as_str);
            if state != "ok" || slots_ok != SLOTS.to_string() {
                return Err(format!("{node}: cluster_state:{state} cluster_slots_ok:{slots_ok}"));
            }
            let view = self.cluster_nodes(node).await.map_err(|e| format!("{node}: {e}"))?;
            if view.iter().any(|n| n.addr.port() == killed_port && !n.slots.is_empty()) {
                return Err(format!("{node} still has {killed_port} serving slots"));
            }
        }
        Ok(())
    }

    /// The masters serving slots, as the first answering node sees them.
    ///
    /// # Panics
    /// When no node answers.
    pub async fn masters(&self) -> Vec<SocketAddr> {
        for &node in &self.nodes {
            if let Ok(view) = self.cluster_nodes(node).await {
                return view
                    .iter()
                    .filter(|n| n.is_master() && !n.is_failing() && !n.slots.is_empty())
                    .map(|n| n.addr)
                    .collect();
            }
        }
        panic!("no node of the Redis Cluster answers CLUSTER NODES");
    }

    /// `FLUSHALL` on every master (replicas follow). Prefer [`unique_topic`]: flushing
    /// under other running tests removes their data too.
    ///
    /// # Panics
    /// When a master refuses.
    pub async fn flushall(&self) {
        for master in self.masters().await {
            let reply = self
                .cli_at(master, &["flushall"])
                .await
                .unwrap_or_else(|e| panic!("FLUSHALL on {master}: {e}"));
            assert_eq!(reply, "OK", "FLUSHALL on {master}");
        }
    }

    /// Runs the script with the base port of these nodes; stdout, or stderr as error.
    async fn script(&self, args: &[&str], timeout: Duration) -> Result<String, String> {
        let base = self.nodes.iter().map(SocketAddr::port).min().unwrap_or(7100);
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script)
            .args(args)
            .env("REDIS_CLUSTER_BASE_PORT", base.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| format!("{} {args:?} timed out after {timeout:?}", self.script.display()))?
            .map_err(|e| format!("run {}: {e}", self.script.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{} {args:?} failed ({}): {}",
                self.script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

async fn run_cli(node: SocketAddr, follow: bool, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("redis-cli");
    if follow {
        cmd.arg("-c");
    }
    cmd.args(["-h", &node.ip().to_string(), "-p", &node.port().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(CLI_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("redis-cli {args:?} on {node} timed out after {CLI_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run redis-cli (apt-get install redis-tools): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reply = stdout.trim().to_owned();
    if !out.status.success() || (reply.is_empty() && !stderr.trim().is_empty()) {
        return Err(format!("redis-cli {args:?} on {node}: {}{}", stderr.trim(), reply));
    }
    let first = reply.split_whitespace().next().unwrap_or_default();
    if ERROR_PREFIXES.contains(&first) {
        return Err(format!("redis-cli {args:?} on {node}: {reply}"));
    }
    Ok(reply)
}

fn lock_killed() -> std::sync::MutexGuard<'static, Vec<(u16, Instant)>> {
    KILLED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for ExclusiveGuard {
    /// Restarts nodes killed under this guard and left down, then waits until the
    /// cluster is healthy (blocking: this runs at the end of a test).
    fn drop(&mut self) {
        let Some(cluster) = &self.cluster else { return };
        let base = cluster
            .nodes
            .iter()
            .map(SocketAddr::port)
            .min()
            .unwrap_or(7100)
            .to_string();
        let run = |args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new("timeout")
                .arg((HEAL_TIMEOUT + CLI_TIMEOUT).as_secs().to_string())
                .arg("bash")
                .arg(&cluster.script)
                .args(args)
                .env("REDIS_CLUSTER_BASE_PORT", &base)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("run {}: {e}", cluster.script.display()))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
            }
        };
        let killed: Vec<u16> = lock_killed().drain(..).map(|(p, _)| p).collect();
        let mut result = Ok(());
        for port in killed {
            eprintln!("Redis Cluster: restarting node {port}, killed by a test that did not restart it");
            result = result.and(run(&["restart-node", &port.to_string()]));
        }
        let result = result.and_then(|()| run(&["wait", &HEAL_TIMEOUT.as_secs().to_string()]));
        if let Err(e) = result {
            let msg = format!("Redis Cluster not healthy after a topology-changing test: {e}");
            if std::thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}
