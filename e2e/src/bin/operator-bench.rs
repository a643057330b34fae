//! Operator benchmark (issue 5) against the in-process Kubernetes API test server:
//!
//! 1. N Topics (default 1,000) created at once through the kube client (`--concurrency`
//!    requests in flight) with S sidecars (default 10) connected: time until every
//!    Topic's status shows `Ready=True`, `Programmed=True` and `sidecars.acked == S`.
//! 2. One Topic's `spec.retention.maxEvents` patched `--changes` times, sequentially:
//!    time from the patch call returning until every sidecar runs the new config
//!    (seen at the sidecars) and until every sidecar's ack is recorded by the operator.
//! 3. The operator binary as a separate process with `--memory-topics` (default 10,000)
//!    Topics: its VmRSS / VmHWM once all of them are Ready.
//!
//! Sidecars are real `eventcast-sidecar` servers, in process, in operator mode with a
//! state directory (like a pod with a cache volume). The operator uses its production
//! status interval (2 s) and debounce (50 ms).
//!
//! `cargo run --release -p eventcast-e2e --bin operator-bench -- --help`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use eventcast_api::crd::status::condition_type::{PROGRAMMED, READY};
use eventcast_api::crd::{Topic, TopicSpec};
use eventcast_e2e::Cluster;
use futures_util::StreamExt;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};

const NAMESPACE: &str = "default";

/// Operator benchmark against the in-process Kubernetes API test server.
#[derive(Debug, Parser)]
#[command(name = "operator-bench")]
struct Args {
    /// Topics of scenario 1.
    #[arg(long, default_value_t = 1000)]
    topics: usize,
    /// Connected sidecars (scenarios 1-3).
    #[arg(long, default_value_t = 10)]
    sidecars: usize,
    /// Create requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Sequential single-Topic changes of scenario 2.
    #[arg(long, default_value_t = 50)]
    changes: usize,
    /// Pause between two changes of scenario 2, in ms.
    #[arg(long, default_value_t = 200)]
    change_gap_ms: u64,
    /// Topics of scenario 3 (operator memory).
    #[arg(long, default_value_t = 10_000)]
    memory_topics: usize,
    /// Operator status interval (production default 2s).
    #[arg(long, default_value_t = 2000)]
    status_interval_ms: u64,
    /// Operator debounce (production default 50ms).
    #[arg(long, default_value_t = 50)]
    debounce_ms: u64,
    /// Operator startup grace (the operator starts before any Topic exists).
    #[arg(long, default_value_t = 100)]
    startup_grace_ms: u64,
    /// Scenarios to run (1, 2 and 3; 2 needs 1).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    scenarios: Vec<u8>,
    /// The operator binary for scenario 3.
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// Extra environment of the operator process of scenario 3 (`KEY=VALUE`, repeatable),
    /// e.g. `MALLOC_ARENA_MAX=2`.
    #[arg(long = "operator-env")]
    operator_env: Vec<String>,
    /// Give up on a scenario after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
}

fn topic_name(i: usize) -> String {
    format!("bench-{i:05}")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// VmRSS and VmHWM of a process, in MiB.
fn rss_mib(pid: &str) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// `GET path` over HTTP/1.0; the body.
async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let ok = out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200");
    ok.then(|| {
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    })
}

/// Sums of the counters/histogram counts of interest in a Prometheus text page.
fn metric_summary(text: &str) -> BTreeMap<String, f64> {
    let wanted = [
        "eventcast_operator_reconciles_total",
        "eventcast_operator_reconcile_duration_seconds_sum",
        "eventcast_operator_reconcile_duration_seconds_count",
        "eventcast_operator_config_pushes_total",
        "eventcast_operator_config_acks_total",
        "eventcast_operator_push_latency_seconds_sum",
        "eventcast_operator_push_latency_seconds_count",
        "eventcast_operator_status_writes_total",
        "eventcast_operator_status_write_errors_total",
        "eventcast_operator_watch_errors_total",
    ];
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name_labels.split('{').next().unwrap_or_default();
        if wanted.contains(&name) {
            let v: f64 = value.parse().unwrap_or(0.0);
            *out.entry(name.to_owned()).or_insert(0.0) += v;
        }
    }
    out
}

fn print_metrics(title: &str, m: &BTreeMap<String, f64>) {
    println!("\n{title}");
    println!("| metric | value |\n|---|---|");
    for (k, v) in m {
        println!("| `{k}` | {v:.3} |");
    }
}

/// Real sidecars of `NAMESPACE` taking config from the operator at `addr`.
async fn start_sidecars(addr: SocketAddr, n: usize, dir: &std::path::Path) -> Vec<eventcast_sidecar::server::Running> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut s = eventcast_sidecar::settings::Settings::for_tests_with_operator(
            &format!("http://{addr}"),
            dir.join(format!("sidecar-{i}")),
        );
        s.namespace = NAMESPACE.to_owned();
        s.pod_name = format!("bench-sidecar-{i}");
        out.push(eventcast_sidecar::server::start(s).await.expect("sidecar starts"));
    }
    out
}

/// Creates `n` Topics with `concurrency` requests in flight; the elapsed time.
async fn create_topics(api: &Api<Topic>, n: usize, concurrency: usize) -> Duration {
    let start = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let topic = Topic::new(&topic_name(i), TopicSpec::default());
                api.create(&PostParams::default(), &topic).await
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors.is_empty(),
        "{} creates failed, first: {:?}",
        errors.len(),
        errors.first()
    );
    start.elapsed()
}

fn condition_true(t: &Topic, type_: &str) -> bool {
    t.status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Topics (of those named `bench-*`) that are Ready, Programmed and acked by `sidecars`.
async fn count_done(api: &Api<Topic>, sidecars: u32) -> (usize, usize) {
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("list failed: {e}");
            return (0, 0);
        }
    };
    let bench: Vec<&Topic> = list
        .items
        .iter()
        .filter(|t| t.metadata.name.as_deref().is_some_and(|n| n.starts_with("bench-")))
        .collect();
    let done = bench
        .iter()
        .filter(|t| {
            condition_true(t, READY)
                && condition_true(t, PROGRAMMED)
                && t.status
                    .as_ref()
                    .and_then(|s| s.sidecars.as_ref())
                    .is_some_and(|c| c.acked == sidecars)
        })
        .count();
    (done, bench.len())
}

/// Polls every `every` until `n` Topics are done; the time from `start` and list count.
async fn wait_all_done(
    api: &Api<Topic>,
    n: usize,
    sidecars: u32,
    start: Instant,
    every: Duration,
    timeout: Duration,
) -> Option<(Duration, usize)> {
    let mut polls = 0;
    let mut last_report = Instant::now();
    loop {
        polls += 1;
        let (done, seen) = count_done(api, sidecars).await;
        if done >= n {
            return Some((start.elapsed(), polls));
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  .. {:.1}s: {done}/{n} done ({seen} exist)",
                start.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if start.elapsed() > timeout {
            eprintln!("timed out: {done}/{n} done");
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn latency_row(what: &str, mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "| {what} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
        v.len(),
        ms(percentile(&v, 50.0)),
        ms(percentile(&v, 90.0)),
        ms(percentile(&v, 99.0)),
        ms(v.last().copied().unwrap_or_default()),
    )
}

fn operator_settings(args: &Args) -> eventcast_operator::Settings {
    let mut s = eventcast_operator::Settings::for_tests();
    s.identity = Some("bench-operator".to_owned());
    s.status_interval = Duration::from_millis(args.status_interval_ms);
    s.debounce = Duration::from_millis(args.debounce_ms);
    s.startup_grace = Duration::from_millis(args.startup_grace_ms);
    s
}

async fn wait_leader(leader: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = tokio::time::timeout(Duration::from_secs(30), leader.wait_for(|l| *l)).await;
}

async fn wait_connected(registry: &eventcast_operator::stream::Registry, n: usize) {
    let start = Instant::now();
    while registry.connected() < n {
        assert!(start.elapsed() < Duration::from_secs(30), "sidecars did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Scenarios 1 and 2 with an in-process operator.
async fn scenarios_1_2(args: &Args) {
    let cluster = Cluster::start().await;
    let settings = operator_settings(args);
    println!(
        "\nOperator settings: status_interval={:?} debounce={:?} startup_grace={:?} status_concurrency={} resync={:?}",
        settings.status_interval,
        settings.debounce,
        settings.startup_grace,
        settings.status_concurrency,
        settings.resync_interval
    );
    let mut op = eventcast_operator::start(settings, cluster.client())
        .await
        .expect("operator starts");
    wait_leader(&mut op.leader).await;
    let state = tempfile::tempdir().expect("temp dir");
    let sidecars = start_sidecars(op.config_stream_addr, args.sidecars, state.path()).await;
    wait_connected(&op.registry, args.sidecars).await;
    // Past the startup grace before the clock starts.
    tokio::time::sleep(Duration::from_millis(args.startup_grace_ms + 200)).await;

    let api: Api<Topic> = Api::namespaced(cluster.client(), NAMESPACE);
    let n = args.topics;
    let timeout = Duration::from_secs(args.timeout_s);
    println!(
        "\n### Scenario 1: {n} Topics created at once ({} in flight, kube client), {} real sidecars",
        args.concurrency, args.sidecars
    );
    let start = Instant::now();
    // Time until every sidecar runs a config with all N topics.
    let watch_sidecars = {
        let states: Vec<_> = sidecars.iter().map(|s| s.state.clone()).collect();
        tokio::spawn(async move {
            loop {
                let all = states
                    .iter()
                    .all(|s| s.config.get().topics.keys().filter(|k| k.starts_with("bench-")).count() >= n);
                if all {
                    return start.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let created = create_topics(&api, n, args.concurrency).await;
    let on_sidecars = tokio::time::timeout(timeout, watch_sidecars)
        .await
        .ok()
        .and_then(Result::ok);
    let done = wait_all_done(
        &api,
        n,
        args.sidecars as u32,
        start,
        Duration::from_millis(100),
        timeout,
    )
    .await;
    println!("\n| step | time from start of applying |\n|---|---|");
    println!("| all {n} creates returned | {:.0} ms |", ms(created));
    match on_sidecars {
        Some(t) => println!(
            "| all {} sidecars run all {n} Topics | {:.0} ms |",
            args.sidecars,
            ms(t)
        ),
        None => println!("| all sidecars run all Topics | timed out |"),
    }
    match done {
        Some((t, polls)) => println!(
            "| every Topic Ready=True, Programmed=True, sidecars.acked={} | **{:.0} ms** (target < 10 s; {polls} list polls at 100 ms) |",
            args.sidecars,
            ms(t)
        ),
        None => println!("| every Topic Ready/Programmed/acked | timed out after {timeout:?} |"),
    }
    let m1 = metric_summary(&op.metrics.render());
    print_metrics("Operator metrics after scenario 1:", &m1);

    if args.scenarios.contains(&2) {
        scenario_2(args, &api, &op, &sidecars).await;
        let m2 = metric_summary(&op.metrics.render());
        print_metrics("Operator metrics after scenario 2 (cumulative):", &m2);
    }
    if let Some((rss, hwm)) = rss_mib("self") {
        println!(
            "\nBench process (API test server + operator + {} sidecars, in process): VmRSS {rss:.0} MiB, VmHWM {hwm:.0} MiB",
            args.sidecars
        );
    }
    for s in sidecars {
        s.shutdown().await;
    }
    op.shutdown().await;
}

/// Scenario 2: sequential single-Topic changes.
async fn scenario_2(
    args: &Args,
    api: &Api<Topic>,
    op: &eventcast_operator::Running,
    sidecars: &[eventcast_sidecar::server::Running],
) {
    let name = topic_name(0);
    println!(
        "\n### Scenario 2: {} sequential changes of one Topic (spec.retention.maxEvents, {} ms apart), {} Topics in the namespace",
        args.changes, args.change_gap_ms, args.topics
    );
    let mut applied = Vec::new();
    let mut acked = Vec::new();
    let mut with_call = Vec::new();
    let mut patch_calls = Vec::new();
    let timeout = Duration::from_secs(10);
    for i in 0..args.changes {
        let value = 10_000 + i as u32;
        let prev = op.registry.view(NAMESPACE).current.map(|(v, _)| v);
        let patch = serde_json::json!({"spec": {"retention": {"maxEvents": value}}});
        let before = Instant::now();
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch");
        let t0 = Instant::now();
        patch_calls.push(t0 - before);
        let mut applied_at: Vec<Option<Instant>> = vec![None; sidecars.len()];
        let mut acked_at = None;
        loop {
            let now = Instant::now();
            for (s, at) in sidecars.iter().zip(applied_at.iter_mut()) {
                if at.is_none()
                    && s.state
                        .config
                        .get()
                        .topics
                        .get(&name)
                        .is_some_and(|t| t.config.retention.max_events == value)
                {
                    *at = Some(now);
                }
            }
            if acked_at.is_none() {
                let view = op.registry.view(NAMESPACE);
                if let Some((version, seq)) = &view.current
                    && Some(version) != prev.as_ref()
                    && view.sidecars.len() == sidecars.len()
                    && view.sidecars.iter().all(|s| s.acked_seq == Some(*seq))
                    && applied_at.iter().all(Option::is_some)
                {
                    acked_at = Some(now);
                }
            }
            if let (Some(ack), true) = (acked_at, applied_at.iter().all(Option::is_some)) {
                let last_applied = applied_at.iter().flatten().max().copied().unwrap_or(ack);
                applied.push(last_applied - t0);
                acked.push(ack - t0);
                with_call.push(ack - before);
                break;
            }
            if t0.elapsed() > timeout {
                eprintln!("change {i}: not everywhere after {timeout:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(args.change_gap_ms)).await;
    }
    println!("\n| latency | n | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|");
    println!(
        "{}",
        latency_row("patch returned → new config live on all sidecars", applied)
    );
    println!(
        "{}",
        latency_row(
            "patch returned → all sidecars' acks recorded by the operator (target p99 < 500 ms)",
            acked
        )
    );
    println!("{}", latency_row("patch call sent → all acks recorded", with_call));
    println!("{}", latency_row("the patch call itself", patch_calls));
}

/// A free loopback port (bound and released).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Scenario 3: operator memory with many Topics, operator as a separate process.
async fn scenario_3(args: &Args) {
    let bin = args
        .operator_bin
        .clone()
        .unwrap_or_else(|| eventcast_e2e::cluster::workspace_root().join("target/release/eventcast-operator"));
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p eventcast-operator",
        bin.display()
    );
    let n = args.memory_topics;
    println!(
        "\n### Scenario 3: operator process memory with {n} Topics, {} real sidecars",
        args.sidecars
    );
    let cluster = Cluster::start().await;
    let (stream, metrics) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(&bin)
        .args([
            "--config-stream",
            &stream.to_string(),
            "--metrics",
            &metrics.to_string(),
            "--identity",
            "bench-operator",
            "--status-interval",
            &format!("{}ms", args.status_interval_ms),
            "--debounce",
            &format!("{}ms", args.debounce_ms),
            "--startup-grace",
            &format!("{}ms", args.startup_grace_ms),
            "--log",
            "warn",
        ])
        .envs(args.operator_env.iter().filter_map(|kv| kv.split_once('=')))
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .kill_on_drop(true)
        .spawn()
        .expect("operator process starts");
    let pid = child.id().expect("pid").to_string();
    println!(
        "Operator: `{}{} --status-interval {}ms --debounce {}ms --startup-grace {}ms` (pid {pid})",
        args.operator_env.iter().map(|e| format!("{e} ")).collect::<String>(),
        bin.display(),
        args.status_interval_ms,
        args.debounce_ms,
        args.startup_grace_ms
    );
    let start = Instant::now();
    while http_get(metrics, "/readyz").await.is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "operator not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some((rss, _)) = rss_mib(&pid) {
        println!("Operator RSS at start (no Topics): {rss:.1} MiB");
    }
    let state = tempfile::tempdir().expect("temp dir");
    let sidecars = start_sidecars(stream, args.sidecars, state.path()).await;
    // Sidecars connect and the startup grace ends before the clock starts.
    let start = Instant::now();
    loop {
        let page = http_get(metrics, "/metrics").await.unwrap_or_default();
        let connected: f64 = page
            .lines()
            .filter(|l| l.starts_with("eventcast_operator_connected_sidecars"))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum();
        if connected as usize >= args.sidecars {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "sidecars did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(args.startup_grace_ms + 2000)).await;

    let api: Api<Topic> = Api::namespaced(cluster.client(), NAMESPACE);
    let start = Instant::now();
    let created = create_topics(&api, n, args.concurrency).await;
    let done = wait_all_done(
        &api,
        n,
        args.sidecars as u32,
        start,
        Duration::from_secs(1),
        Duration::from_secs(args.timeout_s),
    )
    .await;
    let ready_rss = rss_mib(&pid);
    // Settle: one more status interval, then read again.
    tokio::time::sleep(Duration::from_millis(args.status_interval_ms + 1000)).await;
    let settled_rss = rss_mib(&pid);
    println!("\n| measure | value |\n|---|---|");
    println!("| all {n} creates returned | {:.1} s |", created.as_secs_f64());
    match done {
        Some((t, _)) => println!(
            "| all {n} Topics Ready/Programmed/acked={} | {:.1} s (list polled every 1 s) |",
            args.sidecars,
            t.as_secs_f64()
        ),
        None => println!("| all {n} Topics Ready | timed out |"),
    }
    if let Some((rss, hwm)) = ready_rss {
        println!("| operator VmRSS when all Ready | **{rss:.1} MiB** (target < 200 MiB) |");
        println!("| operator VmHWM (peak) when all Ready | {hwm:.1} MiB |");
    }
    if let Some((rss, hwm)) = settled_rss {
        println!(
            "| operator VmRSS / VmHWM {:.0} s later | {rss:.1} / {hwm:.1} MiB |",
            (args.status_interval_ms + 1000) as f64 / 1000.0
        );
    }
    if let Some((rss, hwm)) = rss_mib("self") {
        println!(
            "| bench process (API test server + {} sidecars; excluded from the above) VmRSS / VmHWM | {rss:.0} / {hwm:.0} MiB |",
            args.sidecars
        );
    }
    let page = http_get(metrics, "/metrics").await.unwrap_or_default();
    print_metrics("Operator process metrics after scenario 3:", &metric_summary(&page));
    for s in sidecars {
        s.shutdown().await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    println!("## operator-bench");
    println!(
        "Machine: {} cores; Kubernetes API test server in process (not a real kube-apiserver); args: {args:?}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    if args.scenarios.contains(&1) {
        scenarios_1_2(&args).await;
    }
    if args.scenarios.contains(&3) {
        scenario_3(&args).await;
    }
}
