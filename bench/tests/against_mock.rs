//! End-to-end tests of the `eventcast-bench` binary against a tiny in-process
//! mock of the sidecar: a tokio-tungstenite server speaking the client
//! protocol (subprotocol check, `?token=`, subscribe/reply, event fan-out
//! through a broadcast channel) and a minimal HTTP/1.1 keep-alive server for
//! `POST /v1/topics/{topic}/events` and `POST /v1/events:batch`.
//!
//! The mock serializes its frames with alphabetically sorted keys (`"op"` comes
//! after `"event"`, `"t"` after `"pad"`), which also exercises the bench's
//! byte-search frame parsing. Query flags on the WebSocket URL make it
//! misbehave on purpose: `mocklag=1` sends one `lagged` frame after the
//! subscribe reply, `mockdrop=K` drops every event whose offset is a multiple
//! of K for that connection.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// (topic, offset, serialized event frame)
type Published = (Arc<str>, u64, Utf8Bytes);

#[derive(Default)]
struct Counters {
    subscribes: AtomicU64,
    published: AtomicU64,
    http_requests: AtomicU64,
}

struct State {
    tx: broadcast::Sender<Published>,
    offset: AtomicU64,
    token: Option<String>,
    peers: Mutex<Vec<SocketAddr>>,
    counters: Counters,
}

struct Mock {
    ws: SocketAddr,
    http: SocketAddr,
    state: Arc<State>,
}

impl Mock {
    async fn start(token: Option<&str>) -> Result<Self> {
        let (tx, _) = broadcast::channel(65_536);
        let state = Arc::new(State {
            tx,
            offset: AtomicU64::new(0),
            token: token.map(str::to_owned),
            peers: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let ws_listener = TcpListener::bind("127.0.0.1:0").await?;
        let http_listener = TcpListener::bind("127.0.0.1:0").await?;
        let mock = Self {
            ws: ws_listener.local_addr()?,
            http: http_listener.local_addr()?,
            state: state.clone(),
        };
        let ws_state = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, peer)) = ws_listener.accept().await {
                tokio::spawn(ws_conn(stream, peer, ws_state.clone()));
            }
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = http_listener.accept().await {
                tokio::spawn(http_conn(stream, state.clone()));
            }
        });
        Ok(mock)
    }

    fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/v1/ws{query}", self.ws)
    }

    fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    fn peer_ips(&self) -> BTreeSet<IpAddr> {
        self.state
            .peers
            .lock()
            .map(|p| p.iter().map(SocketAddr::ip).collect())
            .unwrap_or_default()
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

async fn recv(sub: &mut Option<broadcast::Receiver<Published>>) -> Result<Published, broadcast::error::RecvError> {
    match sub {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

// The handshake callback's signature (a large `Err`) is fixed by tungstenite.
#[allow(clippy::result_large_err)]
async fn ws_conn(stream: TcpStream, peer: SocketAddr, state: Arc<State>) -> Result<()> {
    let query = Arc::new(Mutex::new(String::new()));
    let (query_cb, token) = (query.clone(), state.token.clone());
    let callback = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let reject = |code: StatusCode| {
            let mut r = ErrorResponse::new(None);
            *r.status_mut() = code;
            Err(r)
        };
        let q = req.uri().query().unwrap_or("").to_owned();
        let proto = req
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !proto.split(',').any(|p| p.trim() == "eventcast.v1") {
            return reject(StatusCode::BAD_REQUEST);
        }
        if let Some(t) = &token
            && query_param(&q, "token") != Some(t.as_str())
        {
            return reject(StatusCode::UNAUTHORIZED);
        }
        resp.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("eventcast.v1"));
        if let Ok(mut slot) = query_cb.lock() {
            *slot = q;
        }
        Ok(resp)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback).await?;
    if let Ok(mut p) = state.peers.lock() {
        p.push(peer);
    }
    let query = query.lock().map(|q| q.clone()).unwrap_or_default();
    let lag = query_param(&query, "mocklag") == Some("1");
    let drop_every: u64 = query_param(&query, "mockdrop")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);

    let mut topic: Option<Arc<str>> = None;
    let mut sub = None;
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str())?;
                    if v["op"] != "subscribe" {
                        continue;
                    }
                    let id = v["id"].clone();
                    let name = v["topic"].as_str().unwrap_or("").to_owned();
                    if name == "forbidden" {
                        let reply = json!({"op":"reply","id":id,"ok":false,
                            "error":{"code":"forbidden","message":"not allowed"}});
                        ws.send(Message::text(reply.to_string())).await?;
                        continue;
                    }
                    sub = Some(state.tx.subscribe());
                    topic = Some(name.into());
                    state.counters.subscribes.fetch_add(1, Ordering::Relaxed);
                    let reply = json!({"op":"reply","id":id,"ok":true,
                        "result":{"offset":0,"epoch":"e1","recovered":true}});
                    ws.send(Message::text(reply.to_string())).await?;
                    if lag {
                        let lagged = json!({"op":"lagged","topic":topic.as_deref(),"from":0,"to":0});
                        ws.send(Message::text(lagged.to_string())).await?;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
            ev = recv(&mut sub) => match ev {
                Ok((t, offset, frame)) => {
                    let dropped = drop_every > 0 && offset % drop_every == 0;
                    if topic.as_deref() == Some(&*t) && !dropped {
                        ws.send(Message::Text(frame)).await?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let lagged = json!({"op":"lagged","topic":topic.as_deref(),"from":0,"to":n});
                    ws.send(Message::text(lagged.to_string())).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// Appends one event and broadcasts its frame; returns the 202 body.
fn publish(state: &State, topic: &str, event: &Value) -> Value {
    let offset = state.offset.fetch_add(1, Ordering::Relaxed) + 1;
    let frame = json!({
        "op": "event", "topic": topic, "offset": offset, "epoch": "e1",
        "event": {"id": format!("ev-{offset}"), "type": event["type"], "time": "2025-01-01T00:00:00Z",
                  "priority": "normal", "source": "mock", "data": event["data"], "requiresAck": false},
    });
    state.counters.published.fetch_add(1, Ordering::Relaxed);
    let _ = state
        .tx
        .send((topic.into(), offset, Utf8Bytes::from(frame.to_string())));
    json!({"id": format!("ev-{offset}"), "topic": topic, "offset": offset, "epoch": "e1"})
}

fn route(state: &State, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (400, json!({"error":{"code":"malformed","message":"bad JSON"}}));
    };
    let topic = path.strip_prefix("/v1/topics/").and_then(|r| r.strip_suffix("/events"));
    match (method, topic, path) {
        ("POST", Some(topic), _) => (202, publish(state, topic, &v)),
        ("POST", None, "/v1/events:batch") => {
            let results: Vec<Value> = v["events"]
                .as_array()
                .map(|evs| {
                    evs.iter()
                        .map(|e| publish(state, e["topic"].as_str().unwrap_or(""), e))
                        .collect()
                })
                .unwrap_or_default();
            (200, json!({ "results": results }))
        }
        _ => (404, json!({"error":{"code":"not_found","message":path}})),
    }
}

async fn http_conn(mut s: TcpStream, state: Arc<State>) -> Result<()> {
    let mut buf = Vec::new();
    loop {
        let (head_len, method, path, content_length) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(n) = req.parse(&buf)? {
                let len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .unwrap_or(0);
                break (
                    n,
                    req.method.unwrap_or("").to_owned(),
                    req.path.unwrap_or("").to_owned(),
                    len,
                );
            }
            if s.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        while buf.len() < head_len + content_length {
            if s.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let body: Vec<u8> = buf.drain(..head_len + content_length).skip(head_len).collect();
        state.counters.http_requests.fetch_add(1, Ordering::Relaxed);
        let (status, resp) = route(&state, &method, &path, &body);
        let resp = resp.to_string();
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            resp.len()
        );
        s.write_all(format!("{head}{resp}").as_bytes()).await?;
    }
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn bench(args: &[&str]) -> Result<Run> {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventcast-bench"))
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), child)
        .await
        .context("bench timed out")??;
    Ok(Run {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout)?,
        stderr: String::from_utf8(out.stderr)?,
    })
}

/// Runs the bench with `--json` and parses its one-line report.
async fn bench_json(args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let run = bench(&all).await?;
    ensure!(run.ok, "bench failed\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    ensure!(lines.len() == 1, "expected one JSON line, got: {}", run.stdout);
    Ok(serde_json::from_str(lines[0])?)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_counts_deliveries_and_records_latency() -> Result<()> {
    let mock = Mock::start(Some("tok.en")).await?;
    let (ws, http) = (mock.ws_url(""), mock.http_url());
    let r = bench_json(&[
        "fanout",
        "--ws",
        &ws,
        "--publish",
        &http,
        "--topic",
        "bench",
        "--subscribers",
        "20",
        "--rate",
        "200",
        "--duration",
        "2",
        "--payload-bytes",
        "100",
        "--token",
        "tok.en",
        "--drain",
        "3",
    ])
    .await?;
    assert_eq!(r["mode"], "fanout");
    assert_eq!(u(&r["connect"]["opened"]), 20, "{r}");
    assert_eq!(u(&r["connect"]["failed"]), 0);
    assert_eq!(u(&r["publish"]["accepted"]), 400, "{r}");
    assert_eq!(
        u(&r["publish"]["rejected"]) + u(&r["publish"]["failed"]) + u(&r["publish"]["unsent"]),
        0
    );
    assert_eq!(u(&r["expected"]), 8000);
    assert_eq!(u(&r["received"]), 8000, "{r}");
    assert_eq!(u(&r["lost"]), 0);
    assert_eq!(u(&r["untimed"]), 0);
    assert_eq!(u(&r["lagged"]) + u(&r["disconnects"]) + u(&r["closed_connections"]), 0);
    // Events of the warm-up second are counted but not timed.
    let samples = u(&r["latency"]["samples"]);
    assert!((2000..8000).contains(&samples), "{r}");
    let (p50, p99, max) = (
        f(&r["latency"]["p50_ms"]),
        f(&r["latency"]["p99_ms"]),
        f(&r["latency"]["max_ms"]),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max && max < 2000.0, "{r}");
    // Every read carried the kernel's arrival stamp, and a frame is read after it arrives.
    assert_eq!(u(&r["unstamped_reads"]), 0, "{r}");
    assert_eq!(u(&r["read_latency"]["samples"]), samples, "{r}");
    assert!(f(&r["read_latency"]["max_ms"]) >= max, "{r}");
    let dps = f(&r["deliveries_per_sec"]);
    assert!((1000.0..8000.0).contains(&dps), "target 4000/s: {r}");
    assert!(f(&r["cpu_percent"]) >= 0.0, "{r}");
    assert_eq!(mock.state.counters.published.load(Ordering::Relaxed), 400);
    assert_eq!(mock.state.counters.subscribes.load(Ordering::Relaxed), 20);
    Ok(())
}

/// `--topics 3` with 7 subscribers: clients 0,3,6 on `bench-0`, 1,4 on `bench-1`,
/// 2,5 on `bench-2`; 60 events round-robin, 20 per topic: 20*3 + 20*2 + 20*2 deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_topics_spread_subscribers_and_publishes() -> Result<()> {
    let mock = Mock::start(None).await?;
    let (ws, http) = (mock.ws_url(""), mock.http_url());
    let me = std::process::id().to_string();
    let r = bench_json(&[
        "fanout",
        "--ws",
        &ws,
        "--publish",
        &http,
        "--topic",
        "bench",
        "--topics",
        "3",
        "--subscribers",
        "7",
        "--rate",
        "30",
        "--duration",
        "2",
        "--drain",
        "3",
        "--server-pid",
        &me,
    ])
    .await?;
    assert_eq!(u(&r["topics"]), 3, "{r}");
    assert_eq!(u(&r["connect"]["opened"]), 7, "{r}");
    assert_eq!(u(&r["publish"]["accepted"]), 60, "{r}");
    assert_eq!(u(&r["expected"]), 140, "{r}");
    assert_eq!(u(&r["received"]), 140, "{r}");
    assert_eq!(u(&r["lost"]), 0);
    assert!(f(&r["server_cpu_percent"]) >= 0.0, "{r}");
    assert_eq!(mock.state.counters.subscribes.load(Ordering::Relaxed), 7);
    // A batch names one topic, so it cannot spread over several.
    let refused = bench(&[
        "fanout",
        "--ws",
        &ws,
        "--publish",
        &http,
        "--topics",
        "2",
        "--batch",
        "5",
    ])
    .await?;
    assert!(!refused.ok && refused.stderr.contains("--topics"), "{}", refused.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_publishing_source_addrs_and_lagged_frames() -> Result<()> {
    let mock = Mock::start(None).await?;
    let (ws, http) = (mock.ws_url("?mocklag=1"), mock.http_url());
    let r = bench_json(&[
        "fanout",
        "--ws",
        &ws,
        "--publish",
        &http,
        "--subscribers",
        "12",
        "--rate",
        "500",
        "--duration",
        "2",
        "--batch",
        "10",
        "--http-conns",
        "2",
        "--source-addrs",
        "127.0.0.2-127.0.0.4",
        "--threads",
        "1",
    ])
    .await?;
    assert_eq!(u(&r["connect"]["opened"]), 12, "{r}");
    assert_eq!(u(&r["batch"]), 10);
    assert_eq!(u(&r["publish"]["accepted"]), 1000, "{r}");
    assert_eq!(u(&r["publish"]["requests"]), 100, "{r}");
    assert_eq!(mock.state.counters.http_requests.load(Ordering::Relaxed), 100);
    assert_eq!(u(&r["received"]), 12_000, "{r}");
    assert_eq!(u(&r["lost"]), 0);
    assert_eq!(u(&r["lagged"]), 12, "one lagged frame per subscriber: {r}");
    assert!(u(&r["latency"]["samples"]) > 0);
    let want: BTreeSet<IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    assert_eq!(mock.peer_ips(), want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_mode_reports_each_step_and_stops_on_loss() -> Result<()> {
    let mock = Mock::start(None).await?;
    let (ws, http) = (mock.ws_url(""), mock.http_url());
    let common = [
        "--publish",
        &http,
        "--subscribers",
        "5",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--drain",
        "1",
    ];

    let mut args = vec![
        "fanout",
        "--ws",
        &ws,
        "--step",
        "--rates",
        "50,100",
        "--max-p99-ms",
        "1000",
    ];
    args.extend(common);
    let r = bench_json(&args).await?;
    assert_eq!(r["mode"], "step");
    let steps = r["steps"].as_array().context("steps")?;
    assert_eq!(steps.len(), 2, "{r}");
    assert_eq!(u(&steps[0]["publish"]["accepted"]), 50);
    assert_eq!(u(&steps[1]["publish"]["accepted"]), 100);
    assert_eq!(u(&steps[1]["received"]), 500, "{r}");
    assert!(f(&r["max_sustained_deliveries_per_sec"]) > 0.0, "{r}");
    assert_eq!(f(&r["max_sustained_rate"]), 100.0);
    assert_eq!(r["stop_reason"], "all steps passed");

    // The mock drops every 10th event: the first step loses and stops the run.
    let lossy = mock.ws_url("?mockdrop=10");
    let mut args = vec!["fanout", "--ws", &lossy, "--step", "--rates", "50,100,200"];
    args.extend(common);
    let r = bench_json(&args).await?;
    let steps = r["steps"].as_array().context("steps")?;
    assert_eq!(steps.len(), 1, "{r}");
    assert_eq!(u(&steps[0]["expected"]), 250);
    assert_eq!(u(&steps[0]["lost"]), 25, "{r}");
    assert_eq!(f(&r["max_sustained_deliveries_per_sec"]), 0.0);
    assert!(r["stop_reason"].as_str().unwrap_or("").contains("lost"), "{r}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_readable_reports() -> Result<()> {
    let mock = Mock::start(None).await?;
    let (ws, http) = (mock.ws_url(""), mock.http_url());
    let run = bench(&[
        "fanout",
        "--ws",
        &ws,
        "--publish",
        &http,
        "--subscribers",
        "3",
        "--rate",
        "20",
        "--duration",
        "1",
        "--warmup",
        "0",
    ])
    .await?;
    ensure!(run.ok, "{}", run.stderr);
    for want in [
        "connected   3 of 3",
        "published   20 accepted",
        "deliveries  60 received of 60 expected (3 subscribers), lost 0",
        "latency ms  p50 ",
        "bench CPU   ",
    ] {
        assert!(run.stdout.contains(want), "{want:?} missing in:\n{}", run.stdout);
    }

    let pid = std::process::id().to_string();
    let run = bench(&[
        "idle",
        "--ws",
        &ws,
        "--connections",
        "3",
        "--server-pid",
        &pid,
        "--hold",
        "0",
    ])
    .await?;
    ensure!(run.ok, "{}", run.stderr);
    for want in [
        "connected   3 of 3",
        "server RSS  pid ",
        "KiB per connection",
        "held        0.0 s",
    ] {
        assert!(run.stdout.contains(want), "{want:?} missing in:\n{}", run.stdout);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_measures_server_rss() -> Result<()> {
    let mock = Mock::start(None).await?;
    let ws = mock.ws_url("");
    let pid = std::process::id().to_string();
    let r = bench_json(&[
        "idle",
        "--ws",
        &ws,
        "--connections",
        "40",
        "--server-pid",
        &pid,
        "--settle",
        "0.2",
        "--hold",
        "0.5",
    ])
    .await?;
    assert_eq!(r["mode"], "idle");
    assert_eq!(u(&r["connect"]["opened"]), 40, "{r}");
    assert!(
        u(&r["server_rss_before_kib"]) > 0 && u(&r["server_rss_after_kib"]) > 0,
        "{r}"
    );
    assert!(r["server_kib_per_connection"].is_f64(), "{r}");
    assert_eq!(f(&r["hold_s"]), 0.5);
    assert_eq!(u(&r["closed_during_hold"]), 0);
    assert_eq!(mock.state.counters.subscribes.load(Ordering::Relaxed), 40);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_subscribe_and_refused_connect_fail_clearly() -> Result<()> {
    let mock = Mock::start(Some("secret")).await?;
    let (ws, http) = (mock.ws_url(""), mock.http_url());

    let run = bench(&[
        "fanout",
        "--ws",
        &ws,
        "--publish",
        &http,
        "--topic",
        "forbidden",
        "--token",
        "secret",
        "--subscribers",
        "3",
        "--duration",
        "1",
    ])
    .await?;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("refused") && run.stderr.contains("forbidden"),
        "{}",
        run.stderr
    );

    let run = bench(&[
        "idle",
        "--ws",
        &ws,
        "--connections",
        "2",
        "--token",
        "wrong",
        "--hold",
        "0",
    ])
    .await?;
    assert!(!run.ok);
    assert!(run.stdout.contains("connected   0 of 2"), "{}", run.stdout);
    assert!(run.stderr.contains("HTTP 401"), "{}", run.stderr);

    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let run = bench(&[
        "fanout",
        "--ws",
        &format!("ws://{closed}/v1/ws"),
        "--publish",
        &http,
        "--subscribers",
        "2",
        "--connect-retries",
        "1",
    ])
    .await?;
    if run.ok {
        bail!("connecting to a closed port succeeded: {}", run.stdout);
    }
    assert!(run.stderr.contains("no subscriber could connect"), "{}", run.stderr);
    Ok(())
}
