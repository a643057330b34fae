//! The `idle` subcommand: opens N subscribed connections that stay idle,
//! reads the server's VmRSS before and after (and this process's own), and
//! reports memory per connection; then holds them for `--hold` seconds.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::{IdleArgs, secs};
use crate::connections;
use crate::endpoint;
use crate::latency::Recorder;
use crate::procfs::vm_rss_kib;
use crate::report::{self, ConnectReport, IdleReport};

fn per_connection(before: Option<u64>, after: Option<u64>, n: usize) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some((a as f64 - b as f64) / n as f64),
        _ => None,
    }
}

/// Runs the `idle` subcommand.
pub async fn run(args: &IdleArgs) -> Result<()> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let settle = secs("--settle", args.settle)?;
    let hold = secs("--hold", args.hold)?;
    let ws = endpoint::ws_endpoint(&args.client.ws_url(), args.client.token.as_deref()).await?;
    let plan = args.client.connect_plan(ws)?;
    connections::check_sources(&plan)?;
    let rec = Arc::new(Recorder::new(16)?);

    let server_before = args.server_pid.map(|p| vm_rss_kib(Some(p))).transpose()?;
    let bench_before = vm_rss_kib(None).ok();
    eprintln!(
        "opening {} idle connections on {} (topic {})",
        args.connections, plan.endpoint.url, plan.topics
    );
    let clients = connections::open(&plan, args.connections, &rec).await;
    let connect = ConnectReport {
        requested: args.connections,
        opened: clients.opened,
        failed: clients.failed,
        seconds: clients.elapsed.as_secs_f64(),
        first_error: clients.first_error.as_deref().map(|e| connections::explain(Some(e))),
    };
    report::note(args.client.json, &report::connect_text(&connect));
    if clients.opened == 0 {
        clients.close(Duration::from_secs(1)).await;
        bail!(
            "no connection could be opened: {}",
            connect.first_error.as_deref().unwrap_or("?")
        );
    }
    tokio::time::sleep(settle).await;
    let server_after = args.server_pid.map(|p| vm_rss_kib(Some(p))).transpose()?;
    let bench_after = vm_rss_kib(None).ok();
    let server_kib = per_connection(server_before, server_after, clients.opened);
    if args.client.json {
        if let Some(k) = server_kib {
            eprintln!("server RSS: {k:.2} KiB per connection");
        }
    } else {
        println!(
            "{}",
            report::idle_rss_text(args.server_pid, server_before, server_after, server_kib)
        );
    }
    report::note(
        args.client.json,
        &format!("holding {} connections for {:.1} s", clients.opened, hold.as_secs_f64()),
    );
    let closed_before = rec.closed();
    tokio::time::sleep(hold).await;
    let closed_during_hold = rec.closed() - closed_before;
    let opened = clients.opened;
    clients.close(Duration::from_secs(10)).await;

    let report = IdleReport {
        mode: "idle",
        system: args.client.system,
        connect,
        server_pid: args.server_pid,
        server_rss_before_kib: server_before,
        server_rss_after_kib: server_after,
        server_kib_per_connection: server_kib,
        bench_kib_per_connection: per_connection(bench_before, bench_after, opened),
        hold_s: hold.as_secs_f64(),
        closed_during_hold,
    };
    if args.client.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report::idle_text(&report));
    }
    Ok(())
}
