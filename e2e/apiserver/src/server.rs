//! The HTTP server: routes (`/version`, health, OpenAPI, discovery, resources), the
//! shared [`App`] state, bootstrap namespaces, and start/shutdown. Watches hold their
//! response open; shutdown cancels them so graceful shutdown does not wait for their
//! timeouts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::discovery;
use crate::handlers::{self, respond};
use crate::object;
use crate::openapi;
use crate::request::{Target, wants_aggregated_discovery};
use crate::status::ApiError;
use crate::store::{ObjectKey, PersistError, Store};

/// Namespaces every cluster starts with.
pub const BOOTSTRAP_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Largest request body (the apiserver's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Settings of a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Changes kept for watches; older versions get 410 Gone.
    pub watch_window: usize,
    /// Interval of watch bookmarks when a client allows them.
    pub bookmark_interval: Duration,
    /// File the state is saved to after every write and loaded from at start.
    pub state_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            watch_window: 10_000,
            bookmark_interval: Duration::from_secs(60),
            state_file: None,
        }
    }
}

/// Settings handlers read.
#[derive(Debug)]
pub struct Config {
    pub bookmark_interval: Duration,
    /// `host:port` clients reach the server at.
    pub address: String,
}

/// Shared state of every handler.
#[derive(Clone, Debug)]
pub struct App {
    pub store: Arc<Store>,
    pub config: Arc<Config>,
    /// Cancelled at shutdown; open watches end on it.
    pub shutdown: CancellationToken,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    State(#[from] PersistError),
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, ends open watches, waits for in-flight requests.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server error"),
            Err(e) => tracing::error!(error = %e, "server task failed"),
        }
    }
}

fn bootstrap(store: &Store) {
    let Some(info) = store.read(|s| s.registry.find("", "v1", "namespaces")) else {
        return;
    };
    store.write(|s| {
        for ns in BOOTSTRAP_NAMESPACES {
            let key = ObjectKey::new("", "namespaces", "", ns);
            if s.get(&key).is_none()
                && let Ok(obj) = object::prepare_create(&info, None, serde_json::json!({"metadata": {"name": ns}}))
            {
                s.put(key, obj);
            }
        }
    });
}

/// Binds and starts serving.
pub async fn start(options: Options) -> Result<RunningServer, StartError> {
    let store = Arc::new(match &options.state_file {
        Some(path) => Store::with_state_file(options.watch_window, path)?,
        None => Store::new(options.watch_window),
    });
    bootstrap(&store);
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: options.listen,
        source,
    })?;
    let shutdown = CancellationToken::new();
    let app = App {
        store: store.clone(),
        config: Arc::new(Config {
            bookmark_interval: options.bookmark_interval,
            address: addr.to_string(),
        }),
        shutdown: shutdown.clone(),
    };
    let router = router(app);
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    tracing::info!(%addr, "eventcast-test-apiserver listening");
    Ok(RunningServer {
        addr,
        store,
        shutdown,
        task,
    })
}

/// The routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { respond(StatusCode::OK, &discovery::version()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3_root))
        .route("/openapi/v3/{*path}", get(openapi_v3_doc))
        .route("/api", get(core_versions))
        .route("/api/{*rest}", any(core_resources))
        .route("/apis", get(group_list))
        .route("/apis/{*rest}", any(group_resources))
        .fallback(|| async { ApiError::no_route().into_response() })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(app)
}

/// Logs every request at debug level (method, path and query, status, media types).
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let (accept, content_type) = {
        let header = |name: axum::http::header::HeaderName| -> String {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        (header(axum::http::header::ACCEPT), header(CONTENT_TYPE))
    };
    let response = next.run(request).await;
    tracing::debug!(%method, %uri, status = response.status().as_u16(), %accept, %content_type, "http");
    response
}

fn with_content_type(mut response: Response, content_type: &'static str) -> Response {
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn core_versions(State(app): State<App>, headers: HeaderMap) -> Response {
    if wants_aggregated_discovery(&headers) {
        let doc = app.store.read(|s| discovery::aggregated(&s.registry, true));
        return with_content_type(respond(StatusCode::OK, &doc), discovery::AGGREGATED_CONTENT_TYPE);
    }
    respond(StatusCode::OK, &discovery::core_versions(&app.config.address))
}

async fn group_list(State(app): State<App>, headers: HeaderMap) -> Response {
    if wants_aggregated_discovery(&headers) {
        let doc = app.store.read(|s| discovery::aggregated(&s.registry, false));
        return with_content_type(respond(StatusCode::OK, &doc), discovery::AGGREGATED_CONTENT_TYPE);
    }
    respond(StatusCode::OK, &app.store.read(|s| discovery::group_list(&s.registry)))
}

fn segments(uri: &Uri) -> Vec<String> {
    uri.path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

async fn core_resources(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs = segments(&uri);
    let parts: Vec<&str> = segs.iter().skip(1).map(String::as_str).collect();
    match parts.as_slice() {
        ["v1"] => match app.store.read(|s| discovery::resource_list(&s.registry, "", "v1")) {
            Some(doc) => respond(StatusCode::OK, &doc),
            None => ApiError::no_route().into_response(),
        },
        ["v1", rest @ ..] => resource(app, method, "", "v1", rest, query, headers, body).await,
        _ => ApiError::no_route().into_response(),
    }
}

async fn group_resources(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs = segments(&uri);
    let parts: Vec<&str> = segs.iter().skip(1).map(String::as_str).collect();
    let doc: Option<Value> = match parts.as_slice() {
        [group] => app.store.read(|s| discovery::group(&s.registry, group)),
        [group, version] => app
            .store
            .read(|s| discovery::resource_list(&s.registry, group, version)),
        [group, version, rest @ ..] => return resource(app, method, group, version, rest, query, headers, body).await,
        [] => None,
    };
    match doc {
        Some(doc) => respond(StatusCode::OK, &doc),
        None => ApiError::no_route().into_response(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    app: App,
    method: Method,
    group: &str,
    version: &str,
    rest: &[&str],
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match app.store.read(|s| Target::resolve(&s.registry, group, version, rest)) {
        Ok(target) => handlers::dispatch(app, method, target, query, headers, body).await,
        Err(e) => e.into_response(),
    }
}

async fn openapi_v2(State(app): State<App>, headers: HeaderMap) -> Response {
    openapi::v2(&app, &headers)
}

async fn openapi_v3_root(State(app): State<App>) -> Response {
    openapi::v3_root(&app)
}

async fn openapi_v3_doc(State(app): State<App>, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches("/openapi/v3/").to_string();
    openapi::v3_document(&app, &path)
}
