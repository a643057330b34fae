//! Opening many subscribed WebSocket clients: each TCP socket is optionally
//! bound to a source address (round-robin), connected, upgraded (with
//! `Sec-WebSocket-Protocol: eventcast.v1` for Eventcast), and subscribed the
//! way the system under test expects (see [`protocol`](crate::protocol); for
//! Eventcast `{"op":"subscribe","id":1,"topic":T}`, then waiting for the
//! `reply` with id 1). Connections are opened with bounded concurrency and
//! transient failures are retried; each opened client then runs the
//! [`subscriber`](crate::subscriber) loop until [`Clients::close`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::arrival::ArrivalStream;
use crate::endpoint::WsEndpoint;
use crate::latency::Recorder;
use crate::protocol::System;
use crate::source_addr::SourceAddrs;
use crate::subscriber;
use crate::topic_set::{TopicSet, expand_url};

/// The WebSocket subprotocol of the Eventcast client protocol.
pub const SUBPROTOCOL: &str = crate::protocol::eventcast::SUBPROTOCOL;
/// Per-connection read buffer. tungstenite allocates it eagerly (its 128 KiB
/// default would cost gigabytes of address space at 15k connections) and
/// zero-fills the free part before every read, so its size is paid per read:
/// at 16 KiB that memset was 7% of the generator's CPU at one event per read
/// and pushed every system's p99 up. 4 KiB still takes ~13 event frames per read.
const READ_BUFFER: usize = 4 * 1024;

/// How to open the clients.
#[derive(Debug, Clone)]
pub struct ConnectPlan {
    /// The protocol to speak.
    pub system: System,
    pub endpoint: WsEndpoint,
    pub sources: Option<SourceAddrs>,
    /// Client `i` subscribes to topic `topics.of_client(i)`.
    pub topics: TopicSet,
    /// Connection attempts in flight at once.
    pub concurrency: usize,
    /// Extra attempts after a transient failure.
    pub retries: u32,
    /// Limit for one attempt (connect + handshake + subscribe reply).
    pub attempt_timeout: Duration,
    /// Print progress to stderr.
    pub progress: bool,
}

/// A failed attempt; transient ones are retried.
#[derive(Debug)]
pub(crate) enum AttemptError {
    Transient(anyhow::Error),
    Fatal(anyhow::Error),
}

impl AttemptError {
    fn into_inner(self) -> anyhow::Error {
        match self {
            Self::Transient(e) | Self::Fatal(e) => e,
        }
    }
}

pub(crate) fn transient(e: impl Into<anyhow::Error>) -> AttemptError {
    AttemptError::Transient(e.into())
}

fn handshake_error(e: tungstenite::Error) -> AttemptError {
    match e {
        tungstenite::Error::Http(resp) if resp.status().is_client_error() => {
            AttemptError::Fatal(anyhow!("WebSocket upgrade refused: HTTP {}", resp.status()))
        }
        tungstenite::Error::Io(_)
        | tungstenite::Error::Http(_)
        | tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed => transient(anyhow::Error::new(e).context("WebSocket handshake")),
        other => AttemptError::Fatal(anyhow::Error::new(other).context("WebSocket handshake")),
    }
}

async fn tcp_connect(plan: &ConnectPlan, i: usize) -> Result<TcpStream, AttemptError> {
    let addr = plan.endpoint.addr;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    let socket = socket.map_err(|e| transient(anyhow::Error::new(e).context("creating socket")))?;
    if let Some(src) = plan.sources.as_ref().map(|s| s.pick(i)) {
        socket
            .bind((src, 0).into())
            .map_err(|e| transient(anyhow::Error::new(e).context(format!("binding to {src}"))))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| transient(anyhow::Error::new(e).context(format!("connecting to {addr}"))))?;
    stream.set_nodelay(true).map_err(transient)?;
    Ok(stream)
}

async fn attempt(plan: &ConnectPlan, i: usize) -> Result<WebSocketStream<ArrivalStream>, AttemptError> {
    let stream = tcp_connect(plan, i).await?;
    let stream = ArrivalStream::new(stream).map_err(|e| {
        AttemptError::Fatal(anyhow::Error::new(e).context("enabling receive timestamps (SO_TIMESTAMPNS)"))
    })?;
    let topic = plan.topics.name(plan.topics.of_client(i));
    let mut request = expand_url(&plan.endpoint.url, &topic)
        .into_client_request()
        .map_err(|e| AttemptError::Fatal(e.into()))?;
    if let Some(subprotocol) = plan.system.subprotocol() {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(subprotocol));
    }
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (mut ws, _resp) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(handshake_error)?;
    plan.system.subscribe(&mut ws, &topic).await?;
    Ok(ws)
}

/// Opens client `i`, retrying transient failures with exponential backoff.
async fn open_one(plan: &ConnectPlan, i: usize) -> anyhow::Result<WebSocketStream<ArrivalStream>> {
    let mut tries = 0;
    loop {
        let res = match timeout(plan.attempt_timeout, attempt(plan, i)).await {
            Ok(r) => r,
            Err(_) => Err(transient(anyhow!("attempt timed out after {:?}", plan.attempt_timeout))),
        };
        match res {
            Ok(ws) => return Ok(ws),
            Err(AttemptError::Transient(e)) if tries < plan.retries => {
                tries += 1;
                // Spread retries a little so a burst of refusals does not retry in lockstep.
                let jitter = (i % 50) as u64;
                tokio::time::sleep(Duration::from_millis((50 << tries.min(6)) + jitter)).await;
                drop(e);
            }
            Err(e) => return Err(e.into_inner().context(format!("client {i}"))),
        }
    }
}

/// A set of open subscribed clients, each running its reader loop.
#[derive(Debug)]
pub struct Clients {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// Clients connected and subscribed.
    pub opened: usize,
    /// Of those, how many per topic (index as in [`TopicSet`]).
    pub opened_per_topic: Vec<u64>,
    /// Clients that could not be opened.
    pub failed: usize,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// Time taken to open them all.
    pub elapsed: Duration,
}

impl Clients {
    /// Asks every client to close and waits (at most `limit`) for them.
    pub async fn close(mut self, limit: Duration) {
        let _ = self.shutdown.send(true);
        let drained = timeout(limit, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            self.tasks.abort_all();
        }
    }
}

/// Opens `n` subscribed clients recording into `rec`.
pub async fn open(plan: &ConnectPlan, n: usize, rec: &Arc<Recorder>) -> Clients {
    let start = Instant::now();
    let plan = Arc::new(plan.clone());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let (done_tx, mut done_rx) = mpsc::channel::<Result<usize, String>>(1024);
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (plan, permits, done_tx, rec, shutdown_rx) = (
            plan.clone(),
            permits.clone(),
            done_tx.clone(),
            rec.clone(),
            shutdown_rx.clone(),
        );
        tasks.spawn(async move {
            let Ok(permit) = permits.acquire_owned().await else {
                return;
            };
            let res = open_one(&plan, i).await;
            drop(permit);
            match res {
                Ok(ws) => {
                    let _ = done_tx.send(Ok(plan.topics.of_client(i))).await;
                    drop(done_tx);
                    subscriber::run(ws, plan.system, i, rec, shutdown_rx).await;
                }
                Err(e) => {
                    let _ = done_tx.send(Err(format!("{e:#}"))).await;
                }
            }
        });
    }
    drop(done_tx);
    let (mut opened, mut failed, mut first_error) = (0, 0, None);
    let mut opened_per_topic = vec![0u64; plan.topics.len()];
    let mut last_report = Instant::now();
    while let Some(res) = done_rx.recv().await {
        match res {
            Ok(topic) => {
                opened += 1;
                opened_per_topic[topic] += 1;
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        if plan.progress && last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            eprintln!("  connecting: {opened} open, {failed} failed of {n}");
        }
        if opened + failed == n {
            break;
        }
    }
    Clients {
        shutdown,
        tasks,
        opened,
        opened_per_topic,
        failed,
        first_error,
        elapsed: start.elapsed(),
    }
}

/// Describes a connect failure for the user, with a hint for port exhaustion.
pub fn explain(first_error: Option<&str>) -> String {
    let Some(e) = first_error else {
        return String::new();
    };
    let hint = if e.contains("Cannot assign requested address") || e.contains("Address already in use") {
        " (out of local ports: use --source-addrs 127.0.0.2-127.0.0.50)"
    } else if e.contains("Too many open files") {
        " (file descriptor limit: raise `ulimit -n` for this process and the server)"
    } else {
        ""
    };
    format!("{e}{hint}")
}

/// Checks that the source addresses match the server's address family.
pub fn check_sources(plan: &ConnectPlan) -> anyhow::Result<()> {
    if let Some(s) = &plan.sources {
        let v4 = plan.endpoint.addr.is_ipv4();
        let bad = s.addrs().iter().find(|a| a.is_ipv4() != v4);
        if let Some(a) = bad {
            return Err(anyhow!(
                "source address {a} is not the same family as {}",
                plan.endpoint.addr
            ))
            .context("--source-addrs");
        }
    }
    Ok(())
}
