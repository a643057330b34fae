//! `eventcast-sidecar` binary: parse flags, start, run until SIGTERM, drain, exit.

use anyhow::Context;
use clap::Parser;
use eventcast_sidecar::server;
use eventcast_sidecar::settings::Settings;
use eventcast_sidecar::telemetry;

fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    telemetry::init(settings.log_format, &settings.log);
    runtime()?.block_on(async {
        let running = server::start(settings).await.context("starting eventcast-sidecar")?;
        server::shutdown_signal().await;
        running.shutdown().await;
        Ok(())
    })
}

/// One worker per CPU this process may run on; with a single CPU (a pod limited to one
/// core, or `taskset`), the current-thread scheduler, which does the same work without
/// the multi-thread scheduler's cross-thread bookkeeping on every wake-up.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build().context("starting the tokio runtime")
}
