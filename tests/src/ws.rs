//! A WebSocket client of the `eventcast.v1` protocol, as a browser or app would use it:
//! JSON text frames, request ids echoed in replies, events arriving in between.
//!
//! Frames that arrive while the test waits for something else (events while waiting
//! for a reply, a reply while waiting for an event) are kept in arrival order and
//! handed out by the next call that wants them, so no frame is lost to the order in
//! which a test asks.

use std::collections::VecDeque;
use std::time::Duration;

use eventcast_api::protocol::SUBPROTOCOL;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::WAIT;

/// How to open a connection.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Sent as `?token=`.
    pub token: Option<String>,
    /// Sent as `Authorization: Bearer ...`.
    pub bearer: Option<String>,
    /// `SO_RCVBUF` of the client socket (disables the kernel's receive-buffer
    /// autotuning), for clients that stop reading on purpose.
    pub recv_buffer: Option<u32>,
}

/// Why no frame was returned.
#[derive(Debug)]
pub enum FrameError {
    Timeout,
    /// The server closed the connection (close code when it sent a close frame).
    Closed(Option<u16>),
    Io(String),
}

/// One client connection.
pub struct WsClient {
    ws: WebSocketStream<TcpStream>,
    pending: VecDeque<Value>,
    next_id: u64,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

fn op_of(frame: &Value) -> &str {
    frame["op"].as_str().unwrap_or_default()
}

impl WsClient {
    /// Connects anonymously; panics when the handshake fails.
    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url, ConnectOptions::default())
            .await
            .unwrap_or_else(|e| panic!("WebSocket connect to {url}: {e}"))
    }

    /// Connects with `opts`. A refused upgrade is `Err(WsError::Http(response))`.
    pub async fn connect_with(url: &str, opts: ConnectOptions) -> Result<Self, WsError> {
        let full = match &opts.token {
            Some(t) => format!("{url}?token={t}"),
            None => url.to_owned(),
        };
        let mut request = full.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
        if let Some(b) = &opts.bearer {
            let v = HeaderValue::from_str(&format!("Bearer {b}")).expect("token is a valid header value");
            request.headers_mut().insert("authorization", v);
        }
        let host = request.uri().authority().expect("URL has a host").as_str().to_owned();
        let addr: std::net::SocketAddr = host.parse().expect("URL host is ip:port");
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        let mut config = WebSocketConfig::default();
        if let Some(size) = opts.recv_buffer {
            socket.set_recv_buffer_size(size)?;
            config = config.read_buffer_size(size as usize);
        }
        let stream = socket.connect(addr).await?;
        let (ws, response) = tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        assert_eq!(protocol, Some(SUBPROTOCOL), "server must select the subprotocol");
        Ok(Self {
            ws,
            pending: VecDeque::new(),
            next_id: 0,
        })
    }

    /// Sends one JSON text frame.
    pub async fn send_json(&mut self, frame: &Value) {
        self.send(Message::text(frame.to_string())).await;
    }

    /// Sends any message (binary, oversized text, ...).
    pub async fn send(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send WebSocket message");
    }

    /// Like [`WsClient::send`], but reports failure (the server may already be gone).
    pub async fn try_send(&mut self, msg: Message) -> Result<(), WsError> {
        self.ws.send(msg).await
    }

    /// Reads the next JSON frame from the socket (not from the kept frames).
    async fn read_frame(&mut self, deadline: Instant) -> Result<Value, FrameError> {
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(FrameError::Timeout),
                Ok(None) => return Err(FrameError::Closed(None)),
                Ok(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed))) => {
                    return Err(FrameError::Closed(None));
                }
                Ok(Some(Err(e))) => return Err(FrameError::Io(e.to_string())),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => {
                    return Ok(serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("server sent a text frame that is not JSON ({e}): {t}")));
                }
                Message::Binary(b) => panic!("server sent a binary frame of {} bytes", b.len()),
                Message::Close(c) => return Err(FrameError::Closed(c.map(|c| u16::from(c.code)))),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// The next frame (kept ones first), or why there is none within `timeout`.
    pub async fn try_next_frame(&mut self, timeout: Duration) -> Result<Value, FrameError> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(f);
        }
        self.read_frame(Instant::now() + timeout).await
    }

    /// The next frame; panics on timeout or close.
    pub async fn next_frame(&mut self, timeout: Duration) -> Value {
        match self.try_next_frame(timeout).await {
            Ok(f) => f,
            Err(e) => panic!("expected a frame within {timeout:?}, got {e:?}"),
        }
    }

    /// The first frame matching `pred` (kept ones first); other frames are kept.
    pub async fn expect_frame(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).expect("index is in range");
        }
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            match self.read_frame(deadline).await {
                Ok(f) if pred(&f) => {
                    self.pending.extend(seen);
                    return f;
                }
                Ok(f) => seen.push(f),
                Err(e) => panic!("expected {what} within {timeout:?}, got {e:?}; frames meanwhile: {seen:?}"),
            }
        }
    }

    /// The first frame with `op`; other frames are kept.
    pub async fn expect_op(&mut self, op: &str, timeout: Duration) -> Value {
        self.expect_frame(&format!("an {op:?} frame"), timeout, |f| op_of(f) == op)
            .await
    }

    /// Sends `frame` (given an `id` if it has none) and returns the `reply` with that id.
    pub async fn request(&mut self, frame: Value) -> Value {
        let mut frame = frame;
        let obj = frame.as_object_mut().expect("a frame is a JSON object");
        if !obj.contains_key("id") {
            self.next_id += 1;
            obj.insert("id".to_owned(), json!(format!("req-{}", self.next_id)));
        }
        let id = obj["id"].clone();
        self.send_json(&frame).await;
        self.expect_frame(&format!("the reply to {frame}"), WAIT, |f| {
            op_of(f) == "reply" && f["id"] == id
        })
        .await
    }

    /// Sends `frame`, asserts an `ok: true` reply, and returns its `result`.
    pub async fn request_ok(&mut self, frame: Value) -> Value {
        let reply = self.request(frame.clone()).await;
        assert_eq!(reply["ok"], true, "request {frame} failed: {reply}");
        reply["result"].clone()
    }

    /// Sends `frame` and returns the `error.code` of its reply, asserting `ok: false`.
    pub async fn request_err(&mut self, frame: Value) -> String {
        let reply = self.request(frame.clone()).await;
        assert_eq!(reply["ok"], false, "request {frame} should fail: {reply}");
        reply["error"]["code"].as_str().unwrap_or_default().to_owned()
    }

    /// Subscribes to `topic` (name or pattern) and returns the reply's result.
    pub async fn subscribe(&mut self, topic: &str) -> Value {
        self.request_ok(json!({"op": "subscribe", "topic": topic})).await
    }

    /// `n` event frames, in arrival order; other frames are kept.
    pub async fn collect_events(&mut self, n: usize, timeout: Duration) -> Vec<Value> {
        self.collect_events_where(n, timeout, |_| true).await
    }

    /// `n` event frames on `topic`; frames of other topics are kept.
    pub async fn collect_topic_events(&mut self, topic: &str, n: usize, timeout: Duration) -> Vec<Value> {
        self.collect_events_where(n, timeout, |f| f["topic"] == topic).await
    }

    async fn collect_events_where(&mut self, n: usize, timeout: Duration, want: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::with_capacity(n);
        let mut other = VecDeque::new();
        let is_wanted = |f: &Value| op_of(f) == "event" && want(f);
        while events.len() < n {
            if let Some(i) = self.pending.iter().position(is_wanted) {
                events.push(self.pending.remove(i).expect("index is in range"));
                continue;
            }
            match self.read_frame(deadline).await {
                Ok(f) if is_wanted(&f) => events.push(f),
                Ok(f) => other.push_back(f),
                Err(e) => panic!(
                    "expected {n} events within {timeout:?}, got {} ({e:?}): {events:?}; other frames: {other:?}",
                    events.len()
                ),
            }
        }
        self.pending.extend(other);
        events
    }

    /// Asserts that no event frame arrives within `within` (kept frames included);
    /// other frames are kept.
    pub async fn expect_no_event(&mut self, within: Duration) {
        if let Some(f) = self.pending.iter().find(|f| op_of(f) == "event") {
            panic!("unexpected event: {f}");
        }
        let deadline = Instant::now() + within;
        loop {
            match self.read_frame(deadline).await {
                Ok(f) if op_of(&f) == "event" => panic!("unexpected event: {f}"),
                Ok(f) => self.pending.push_back(f),
                Err(FrameError::Timeout) => return,
                Err(e) => panic!("connection ended while watching for events: {e:?}"),
            }
        }
    }

    /// Reads until the server ends the connection and returns the `disconnect` frame
    /// it sent (frames before it are dropped), asserting that the socket then closes
    /// with the same code.
    pub async fn expect_disconnect(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut skipped = 0usize;
        let mut disconnect = self.pending.drain(..).find(|f| op_of(f) == "disconnect");
        while disconnect.is_none() {
            match self.read_frame(deadline).await {
                Ok(f) if op_of(&f) == "disconnect" => disconnect = Some(f),
                Ok(_) => skipped += 1,
                Err(e) => {
                    panic!("expected a disconnect frame within {timeout:?} (after {skipped} other frames), got {e:?}")
                }
            }
        }
        let frame = disconnect.expect("loop ends with a disconnect");
        match self.read_frame(deadline).await {
            Err(FrameError::Closed(Some(code))) => {
                assert_eq!(
                    Some(u64::from(code)),
                    frame["code"].as_u64(),
                    "close code = disconnect code"
                );
            }
            Err(FrameError::Closed(None) | FrameError::Io(_)) => {}
            other => panic!("expected the connection to close after {frame}, got {other:?}"),
        }
        frame
    }

    /// Closes the connection from the client side.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Read until the server's close answer so the close handshake completes.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}
