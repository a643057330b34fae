//! `eventcast-bench` command line entry point: parses the CLI, raises the
//! open-file limit, builds a multi-threaded tokio runtime with `--threads`
//! workers and runs the chosen subcommand (`floor` runs on its own threads).

use anyhow::{Context, Result};
use clap::Parser;
use eventcast_bench::cli::{Cli, Command};
use eventcast_bench::{fanout, floor, idle};

/// Raises the soft RLIMIT_NOFILE to the hard limit (every client is a socket).
fn raise_nofile_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => eprintln!("open file limit: {n}"),
        Err(e) => eprintln!("warning: could not raise the open file limit: {e}"),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    raise_nofile_limit();
    // `floor` runs its own pinned threads; the shared runtime would only add idle workers.
    if let Command::Floor(args) = &cli.command {
        return floor::run(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(cli.threads))
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async {
        match &cli.command {
            Command::Fanout(args) => fanout::run(args).await,
            Command::Idle(args) => idle::run(args).await,
            Command::Floor(args) => floor::run(args),
        }
    })
}
