//! Starting and stopping the operator: Kubernetes caches, leader election, the config
//! stream and metrics listeners, the reconcile loop and the status writer. On shutdown
//! every task stops, config stream connections close (sidecars keep serving their last
//! config and reconnect to another replica), and the Lease is released.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::reconcile::Reconciler;
use crate::reconcile::caches::Caches;
use crate::reconcile::dirty::Dirty;
use crate::reconcile::events::Events;
use crate::settings::Settings;
use crate::status::StatusWriter;
use crate::stream::Registry;

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("leader election Lease: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
}

/// A started operator.
#[derive(Debug)]
pub struct Running {
    pub config_stream_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub caches: Caches,
    pub leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    lease: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

#[derive(Clone)]
struct ProbeState {
    caches: Caches,
    metrics: Arc<Metrics>,
}

async fn metrics_handler(State(s): State<ProbeState>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<ProbeState>) -> impl IntoResponse {
    if s.caches.synced() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

fn serve(tasks: &mut JoinSet<()>, listener: TcpListener, router: Router, stop: CancellationToken, what: &'static str) {
    tasks.spawn(async move {
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(listener = what, error = %e, "listener failed");
        }
    });
}

/// Starts the operator with a Kubernetes client.
pub async fn start(settings: Settings, client: kube::Client) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let dirty = Arc::new(Dirty::default());

    let on_change_dirty = dirty.clone();
    let registry = Arc::new(Registry::new(
        metrics.clone(),
        Arc::new(move |ns: &str| on_change_dirty.mark(ns, false)),
    ));

    let stream_listener = bind("config stream", settings.config_stream).await?;
    let metrics_listener = bind("metrics", settings.metrics).await?;
    let config_stream_addr = stream_listener.local_addr().unwrap_or(settings.config_stream);
    let metrics_addr = metrics_listener.local_addr().unwrap_or(settings.metrics);

    let caches = Caches::start(
        &client,
        settings.namespace.as_deref(),
        dirty.clone(),
        metrics.clone(),
        &mut tasks,
        &shutdown,
    );

    let identity = settings.identity();
    let lease_secs = settings.lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
        .with_namespace(&settings.lease_namespace)
        .with_identity(&identity)
        .with_duration(lease_secs)
        .with_grace((lease_secs / 3).max(1))
        .build()
        .await?;
    let (leader, lease) = manager.watch().await;
    let mut leader_log = leader.clone();
    let leader_metrics = metrics.clone();
    let leader_stop = shutdown.clone();
    let leader_identity = identity.clone();
    tasks.spawn(async move {
        loop {
            let leading = *leader_log.borrow_and_update();
            leader_metrics.leader.set(i64::from(leading));
            tracing::info!(identity = %leader_identity, leading, "leader election");
            tokio::select! {
                () = leader_stop.cancelled() => return,
                changed = leader_log.changed() => if changed.is_err() { return },
            }
        }
    });

    tasks.spawn(crate::stream::peers::run(
        client.clone(),
        settings.lease_namespace.clone(),
        identity.clone(),
        registry.clone(),
        shutdown.clone(),
    ));

    let writer = Arc::new(StatusWriter::new(
        client.clone(),
        settings.status_interval,
        settings.status_concurrency,
        settings.startup_grace,
        metrics.clone(),
    ));
    tasks.spawn(writer.clone().run(leader.clone(), shutdown.clone()));

    let (events, events_task) = Events::start(client.clone(), identity, shutdown.clone());
    tasks.spawn(events_task);

    let outcomes: crate::autoscale::Outcomes = Default::default();
    tasks.spawn(
        crate::autoscale::Autoscaler {
            client: client.clone(),
            caches: caches.clone(),
            registry: registry.clone(),
            dirty: dirty.clone(),
            events: events.clone(),
            leader: leader.clone(),
            every: settings.autoscale_interval,
            outcomes: outcomes.clone(),
        }
        .run(shutdown.clone()),
    );

    let reconciler = Reconciler {
        client,
        caches: caches.clone(),
        registry: registry.clone(),
        writer,
        events,
        dirty: dirty.clone(),
        metrics: metrics.clone(),
        leader: leader.clone(),
        autoscaling: outcomes,
        debounce: settings.debounce,
        resync_interval: settings.resync_interval,
    };
    tasks.spawn(reconciler.run(shutdown.clone()));

    serve(
        &mut tasks,
        stream_listener,
        crate::stream::server::router(registry.clone(), shutdown.clone()),
        shutdown.clone(),
        "config stream",
    );
    let probes = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ProbeState {
            caches: caches.clone(),
            metrics: metrics.clone(),
        });
    serve(&mut tasks, metrics_listener, probes, shutdown.clone(), "metrics");

    tracing::info!(%config_stream_addr, %metrics_addr, lease = %settings.lease_name, "eventcast operator running");
    Ok(Running {
        config_stream_addr,
        metrics_addr,
        registry,
        metrics,
        caches,
        leader,
        shutdown,
        tasks,
        lease,
    })
}

impl Running {
    /// Stops every task, closes sidecar connections and releases the Lease.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        // Dropping the last leader receiver makes the lease manager release the Lease.
        drop(self.leader);
        match tokio::time::timeout(Duration::from_secs(5), self.lease).await {
            Ok(Ok(Ok(_))) => tracing::info!("leader Lease released"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader Lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "lease task failed"),
            Err(_) => tracing::warn!("releasing the leader Lease timed out"),
        }
    }

    /// Stops without releasing the Lease or closing connections politely (tests of a
    /// leader that dies).
    pub fn kill(mut self) {
        self.shutdown.cancel();
        self.tasks.abort_all();
        self.lease.abort();
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
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
