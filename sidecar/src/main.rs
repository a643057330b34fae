//! `eventcast-sidecar` binary: parse flags, start, run until SIGTERM, drain, exit.

use anyhow::Context;
use clap::Parser;
use eventcast_sidecar::server;
use eventcast_sidecar::settings::Settings;
use eventcast_sidecar::telemetry;

// See the workspace Cargo.toml for why jemalloc.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    telemetry::init(settings.log_format, &settings.log);
    let running = server::start(settings).await.context("starting eventcast-sidecar")?;
    server::shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}
