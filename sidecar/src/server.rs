//! Starting and stopping a sidecar: bind the listeners, load the config, run the
//! background tasks, and on shutdown stop accepting, let every connection drain and
//! say `disconnect` (reconnect: true), then exit within the configured bound.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::extract::connect_info::Connected;
use axum::response::Response;
use axum::serve::{IncomingStream, Listener, ListenerExt, TapIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::backend::redis::RedisError;
use crate::backend::{Backend, MemoryBackend, RedisBackend};
use crate::config_source::{manifests, operator};
use crate::http::public_listener::{PublicListener, PublicPeer, set_nodelay};
use crate::hub::Hub;
use crate::live_config::{ConfigStore, LiveConfig};
use crate::metrics::Metrics;
use crate::policy::rate_limit::RateLimits;
use crate::settings::{BackendKind, ConfigSource, Settings};
use crate::state::SidecarState;

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("loading manifests: {0}")]
    Config(#[from] manifests::LoadError),
    #[error("operator config source: {0}")]
    Operator(#[from] operator::OperatorError),
    #[error("exactly one of --manifests and --operator must be given")]
    NoConfigSource,
    #[error("binding {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("redis backend: {0}")]
    Redis(#[from] RedisError),
}

/// The config source after the initial load, to run as a task.
enum Source {
    Manifests(PathBuf),
    Operator(operator::OperatorSource),
}

/// A started sidecar.
#[derive(Debug)]
pub struct Running {
    pub state: Arc<SidecarState>,
    pub public_addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    tasks: JoinSet<()>,
    shutdown_timeout: Duration,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// The local and metrics listeners: plain TCP with `TCP_NODELAY`.
fn plain(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    listener.tap_io(set_nodelay)
}

/// Serves `service` on `listener`, telling handlers the connection as `C`.
fn serve<L, C, S>(tasks: &mut JoinSet<()>, listener: L, service: S, state: &Arc<SidecarState>, what: &'static str)
where
    L: Listener<Addr = SocketAddr>,
    C: for<'a> Connected<IncomingStream<'a, L>> + Clone + Send + Sync + 'static,
    S: tower_service::Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send,
{
    let stop = state.shutdown.clone();
    tasks.spawn(async move {
        let app = axum::ServiceExt::<Request>::into_make_service_with_connect_info::<C>(service);
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(listener = what, error = %e, "listener failed");
        }
    });
}

/// Loads the config, binds the listeners and starts serving.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let metrics = Metrics::new().map_err(StartError::Metrics)?;
    // Operator mode without a cached config starts unready: nothing to serve yet.
    let (live, source, ready) = match settings.config_source().ok_or(StartError::NoConfigSource)? {
        ConfigSource::Manifests(dir) => {
            let live = manifests::load_live(&dir, &settings.namespace, &metrics)?;
            tracing::info!(version = %live.version, topics = live.topics.len(), dir = %dir.display(), "config loaded");
            (live, Source::Manifests(dir), true)
        }
        ConfigSource::Operator { url, state_dir } => {
            let mut source =
                operator::OperatorSource::new(&url, state_dir.as_deref(), &settings.namespace, &settings.pod_name)?;
            let initial = source.initial(&metrics)?;
            (initial.live, Source::Operator(source), initial.cached)
        }
    };
    if ready {
        metrics.set_config_version(&live.version);
    }
    let store = Arc::new(ConfigStore::new(live));
    let hub = Arc::new(Hub::new());
    let backend = match settings.redis()? {
        None => {
            debug_assert_eq!(settings.backend, BackendKind::Memory);
            Backend::Memory(Arc::new(MemoryBackend::new(hub.clone())))
        }
        Some(redis) => Backend::Redis(Arc::new(
            RedisBackend::connect(&redis, hub.clone(), store.clone(), metrics.clone()).await?,
        )),
    };
    let state = Arc::new(SidecarState::new(
        settings.namespace.clone(),
        settings.pod_name.clone(),
        store.clone(),
        backend,
        hub,
        Arc::new(RateLimits::new()),
        metrics.clone(),
    ));

    // Subscription workers exist before the first publish can arrive.
    let sinks_watch = state.publisher.sinks.start(state.shutdown.clone());

    let public = bind("public", settings.public).await?;
    let local = bind("local", settings.local).await?;
    let metrics_listener = bind("metrics", settings.metrics).await?;
    let addr = |l: &TcpListener, fallback| l.local_addr().unwrap_or(fallback);
    let public_addr = addr(&public, settings.public);
    let local_addr = addr(&local, settings.local);
    let metrics_addr = addr(&metrics_listener, settings.metrics);

    let mut tasks = JoinSet::new();
    state.backend.spawn_tasks(&mut tasks, &state.shutdown);
    if let Backend::Redis(redis) = &state.backend {
        tasks.spawn(crate::presence_keeper::run(state.clone(), redis.clone()));
    }
    serve::<_, PublicPeer, _>(
        &mut tasks,
        PublicListener::new(public),
        crate::http::public_router(state.clone()),
        &state,
        "public",
    );
    serve::<_, SocketAddr, _>(
        &mut tasks,
        plain(local),
        crate::http::local_service(state.clone()),
        &state,
        "local",
    );
    serve::<_, SocketAddr, _>(
        &mut tasks,
        plain(metrics_listener),
        crate::http::metrics_router(state.clone()),
        &state,
        "metrics",
    );

    let backend = state.backend.clone();
    let on_applied = move |live: &LiveConfig| backend.retain_topics(&|t| live.topics.contains_key(t));
    match source {
        Source::Manifests(dir) => {
            let ns = settings.namespace.clone();
            let stop = state.shutdown.clone();
            tasks.spawn(manifests::watch(dir, ns, store, metrics, on_applied, stop)?);
        }
        Source::Operator(operator) => {
            tracing::info!(url = operator.url(), "taking config from the operator");
            tasks.spawn(operator.run(state.clone(), on_applied));
        }
    }

    tasks.spawn(sinks_watch);

    let maint = state.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                () = maint.shutdown.cancelled() => return,
                _ = tick.tick() => maint.limits.retain_recent(),
            }
        }
    });

    // Not `set_ready(ready)`: the operator client may already have made a config live.
    if ready {
        state.set_ready(true);
    }
    tracing::info!(%public_addr, %local_addr, %metrics_addr, backend = state.backend.name(), "eventcast sidecar serving");
    Ok(Running {
        state,
        public_addr,
        local_addr,
        metrics_addr,
        tasks,
        shutdown_timeout: settings.shutdown_timeout,
    })
}

impl Running {
    /// Graceful shutdown; returns once connections drained or the timeout passed.
    pub async fn shutdown(mut self) {
        tracing::info!(
            connections = self.state.connections.len(),
            "shutting down: draining connections"
        );
        self.state.set_ready(false);
        self.state.shutdown.cancel();
        self.state.tracker.close();
        let drained = tokio::time::timeout(self.shutdown_timeout, self.state.tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                left = self.state.connections.len(),
                "shutdown timeout: closing remaining connections"
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        // Listeners are closed: no more publishes. Flush subscription deliveries (bounded).
        self.state.publisher.sinks.shutdown().await;
        self.tasks.abort_all();
        self.state.backend.close().await;
        tracing::info!("stopped");
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
