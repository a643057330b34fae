//! `--manifests DIR`: reads every `*.yaml`/`*.yml` file in the directory, compiles it
//! all-or-nothing, and watches the directory. A bad edit keeps the last good config
//! and logs every error with the file, document, resource and field it is about.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eventcast_api::manifest::parse_manifests;
use eventcast_api::{CompiledConfig, compile_strict};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::live_config::{ConfigStore, LiveConfig};
use crate::metrics::Metrics;

/// Quiet time after the last file event before reloading (editors write in steps).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Why the manifests could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} invalid manifest(s):\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
    #[error("{0}")]
    Live(String),
    #[error("watching {path}: {message}")]
    Watch { path: PathBuf, message: String },
}

/// Reads and compiles the manifests in `dir`.
pub fn load(dir: &Path, namespace: &str) -> Result<CompiledConfig, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut sources = Vec::with_capacity(files.len());
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| LoadError::Io {
            path: f.clone(),
            source,
        })?;
        let name = f
            .file_name()
            .map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into_owned());
        sources.push((name, text));
    }
    let set = parse_manifests(namespace, &sources)
        .map_err(|errs| LoadError::Invalid(errs.iter().map(ToString::to_string).collect()))?;
    for note in &set.skipped {
        tracing::info!(note = %note, "manifest skipped");
    }
    compile_strict(&set.input).map_err(|errs| LoadError::Invalid(errs.iter().map(ToString::to_string).collect()))
}

/// Loads, compiles and makes live.
pub fn load_live(dir: &Path, namespace: &str, metrics: &Metrics) -> Result<LiveConfig, LoadError> {
    let compiled = load(dir, namespace)?;
    LiveConfig::build(compiled, metrics).map_err(|e| LoadError::Live(e.to_string()))
}

/// Starts watching `dir` now (so no change after this call is missed) and returns the
/// reload loop, which runs until `cancel`, reloading into `store` on change.
pub fn watch(
    dir: PathBuf,
    namespace: String,
    store: Arc<ConfigStore>,
    metrics: Arc<Metrics>,
    on_applied: impl Fn(&LiveConfig) + Send + 'static,
    cancel: CancellationToken,
) -> Result<impl Future<Output = ()> + Send + 'static, LoadError> {
    // Full queue: a reload is already pending, so dropping the event loses nothing.
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| LoadError::Watch {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| LoadError::Watch {
            path: dir.clone(),
            message: e.to_string(),
        })?;
    Ok(async move {
        // The watcher stops when dropped: keep it for as long as the loop runs.
        let _watcher = watcher;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Debounce: wait until the directory is quiet.
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(DEBOUNCE) => break,
                    _ = rx.recv() => {}
                }
            }
            let (dir2, ns, m) = (dir.clone(), namespace.clone(), metrics.clone());
            let loaded = tokio::task::spawn_blocking(move || load_live(&dir2, &ns, &m)).await;
            match loaded {
                Ok(Ok(live)) if live.version == store.get().version => {
                    metrics.config_reloads.with_label_values(&["unchanged"]).inc();
                }
                Ok(Ok(live)) => {
                    tracing::info!(version = %live.version, topics = live.topics.len(), "config reloaded");
                    metrics.config_reloads.with_label_values(&["ok"]).inc();
                    metrics.set_config_version(&live.version);
                    on_applied(&live);
                    store.set(live);
                }
                Ok(Err(e)) => {
                    metrics.config_reloads.with_label_values(&["error"]).inc();
                    tracing::warn!(error = %e, version = %store.get().version, "manifests rejected; keeping the last good config");
                }
                Err(e) => tracing::error!(error = %e, "config reload task failed"),
            }
        }
    })
}
