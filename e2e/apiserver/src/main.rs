//! `eventcast-test-apiserver --listen 127.0.0.1:PORT --write-kubeconfig PATH [--state FILE]`:
//! starts the server, writes a kubeconfig pointing at it, serves until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use eventcast_test_apiserver::{Options, kubeconfig, start};

/// Kubernetes API test server (test infrastructure, not Kubernetes).
#[derive(Debug, Parser)]
#[command(name = "eventcast-test-apiserver", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (the kubeconfig names the real one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig for this server to PATH once listening.
    #[arg(long, value_name = "PATH")]
    write_kubeconfig: Option<PathBuf>,
    /// Save the state to FILE after every write and load it at start.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Changes retained for watches; a watch from an older resourceVersion gets 410 Gone.
    #[arg(long, default_value_t = 10_000)]
    watch_window: usize,
    /// Seconds between watch bookmarks (for clients that allow them).
    #[arg(long, default_value_t = 60)]
    bookmark_interval: u64,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let server = start(Options {
        listen: cli.listen,
        watch_window: cli.watch_window,
        bookmark_interval: Duration::from_secs(cli.bookmark_interval.max(1)),
        state_file: cli.state.clone(),
    })
    .await
    .context("starting eventcast-test-apiserver")?;
    if let Some(path) = &cli.write_kubeconfig {
        kubeconfig::write(path, &server.url()).with_context(|| format!("writing kubeconfig {}", path.display()))?;
    }
    println!("eventcast-test-apiserver listening on {}", server.url());
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
