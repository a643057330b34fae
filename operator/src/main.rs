//! The `eventcast-operator` binary.

use anyhow::Context;
use clap::Parser;
use eventcast_operator::settings::{LogFormat, Settings};
use tracing_subscriber::EnvFilter;

// jemalloc keeps RSS close to the live heap under the operator's allocation pattern
// (see the dependency's comment in Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let filter = EnvFilter::try_new(&settings.log).context("invalid --log filter")?;
    match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
    }
    // In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config.
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let running = eventcast_operator::start(settings, client)
        .await
        .context("starting the operator")?;
    eventcast_operator::server::shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}
