//! One WebSocket connection from upgrade to close: authentication, the read loop that
//! dispatches client frames, and clean-up (unsubscribe, presence leave, registry).
//! Reading and writing run concurrently inside the connection's single task (see
//! `halves`: each loop is polled only when it was woken), so an idle connection costs
//! one task and a few small structs.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{Message, WebSocket};
use eventcast_api::protocol::{ClientFrame, ServerFrame, disconnect_code, error_code, parse_client_frame};
use futures_util::StreamExt;
use parking_lot::Mutex;
use rand::Rng;
use serde_json::json;

use super::ConnInfo;
use super::acks::AckTracker;
use super::halves::first_of;
use super::outbox::{CloseReason, Outbox};
use super::socket::{Incoming, Socket};
use super::stream::DirectStream;
use super::subscribe::SubscriptionSet;
use super::writer::write_loop;
use crate::event::unix_ms;
use crate::policy::{AuthError, Identity};
use crate::publish::Origin;
use crate::state::SidecarState;

/// Queued event bytes per connection before the lowest classes are shed.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;

/// State both loops of a connection share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub state: Arc<SidecarState>,
    pub info: Arc<ConnInfo>,
    pub acks: Mutex<AckTracker>,
    /// Unix ms of the last frame from the client (any kind, including pongs).
    pub last_seen: AtomicU64,
    /// Unix seconds when the token expires (0: no expiry).
    pub token_expiry: AtomicU64,
}

/// How the upgrade request authenticated.
#[derive(Debug)]
pub enum PreAuth {
    /// No token in the query or header: the first frame may be `auth`.
    None,
    Verified(Identity),
    Failed(AuthError),
}

fn new_session_id() -> Arc<str> {
    let mut rng = rand::rng();
    Arc::from(format!("{:016x}", rng.random::<u64>()))
}

fn auth_failure(e: &AuthError) -> CloseReason {
    if e.is_expired() {
        CloseReason {
            code: disconnect_code::TOKEN_EXPIRED,
            reason: format!("token expired: {e}"),
            reconnect: true,
        }
    } else {
        CloseReason {
            code: disconnect_code::UNAUTHORIZED,
            reason: format!("authentication failed: {e}"),
            reconnect: false,
        }
    }
}

/// Runs a connection to completion. The caller reserved a connection slot.
/// `stream` is the TCP stream under `ws` when direct writes may use it.
pub async fn serve(
    state: Arc<SidecarState>,
    ws: WebSocket,
    stream: Option<DirectStream>,
    ip: IpAddr,
    pre_auth: PreAuth,
) {
    // Batching.maxDelay asks every write to wait for more frames: no direct writes then.
    let batching = state.config.get().compiled.connection.max_batch_delay_ms > 0;
    let socket = Arc::new(Socket::new(
        ws,
        stream.filter(|_| !batching),
        state.metrics.clone(),
        state.connections.backlog.clone(),
    ));
    let info = Arc::new(ConnInfo {
        id: state.connections.next_id(),
        session: new_session_id(),
        ip,
        connected_at_ms: unix_ms(),
        outbox: Arc::new(Outbox::with_socket(MAX_QUEUED_BYTES, socket.clone())),
        subscriptions: Default::default(),
    });
    state.connections.insert(info.clone());
    state.metrics.connections.inc();
    let shared = Shared {
        state: state.clone(),
        info: info.clone(),
        acks: Mutex::new(AckTracker::default()),
        last_seen: AtomicU64::new(unix_ms()),
        token_expiry: AtomicU64::new(0),
    };
    let mut reader = Reader {
        shared: &shared,
        identity: None,
        first_frame: true,
        subs: SubscriptionSet::default(),
    };
    match pre_auth {
        PreAuth::None => {}
        PreAuth::Verified(identity) => {
            reader.first_frame = false;
            reader.set_identity(identity);
        }
        PreAuth::Failed(e) => info.outbox.close(auth_failure(&e)),
    }

    first_of(reader.run(Incoming(socket.clone())), write_loop(&socket, &shared)).await;
    // Close the TCP connection now, even while a fan-out still holds the outbox.
    socket.release();
    info.outbox.release();

    Box::pin(reader.subs.clear(&shared)).await;
    state.connections.remove(info.id);
    state.connections.release();
    state.metrics.connections.dec();
    if let Some(reason) = info.outbox.closing() {
        state
            .metrics
            .disconnects
            .with_label_values(&[&reason.code.to_string()])
            .inc();
    }
}

pub(crate) struct Reader<'a> {
    pub shared: &'a Shared,
    pub identity: Option<Arc<Identity>>,
    first_frame: bool,
    pub subs: SubscriptionSet,
}

impl Reader<'_> {
    fn outbox(&self) -> &Outbox {
        &self.shared.info.outbox
    }

    fn reply(&self, frame: &ServerFrame) {
        self.outbox().push_control(frame);
    }

    fn set_identity(&mut self, identity: Identity) {
        self.shared
            .token_expiry
            .store(identity.expires_at.unwrap_or(0), Ordering::Release);
        self.identity = Some(Arc::new(identity));
    }

    /// Closes the connection with `reason` and waits for the writer to send it.
    async fn close_and_wait(&self, reason: CloseReason) {
        self.outbox().close(reason);
        std::future::pending::<()>().await;
    }

    async fn run(&mut self, mut stream: Incoming) {
        let mut config_changes = self.shared.state.config.subscribe();
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { return };
                    self.shared.last_seen.store(unix_ms(), Ordering::Relaxed);
                    match msg {
                        // Boxed: the rarely-used request handling must not enlarge every idle
                        // connection's state machine by its biggest await.
                        Ok(Message::Text(text)) => Box::pin(self.handle_text(text.as_str())).await,
                        Ok(Message::Binary(_)) => self.reply(&ServerFrame::err(
                            None,
                            error_code::BAD_REQUEST,
                            "binary frames are not supported; send JSON text frames",
                        )),
                        Ok(Message::Ping(_) | Message::Pong(_)) => {}
                        Ok(Message::Close(_)) => return,
                        Err(e) => {
                            let text = e.to_string();
                            if text.contains("too long") || text.contains("Space limit") || text.contains("size") {
                                let max = self.shared.state.config.get().max_frame_bytes;
                                self.close_and_wait(CloseReason {
                                    code: eventcast_api::protocol::disconnect_code::MESSAGE_TOO_BIG,
                                    reason: format!("message larger than {max} bytes"),
                                    reconnect: false,
                                })
                                .await;
                            }
                            tracing::debug!(session = %self.shared.info.session, error = %text, "websocket read ended");
                            return;
                        }
                    }
                }
                changed = config_changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    Box::pin(self.subs.resync(self.shared, self.identity.as_deref())).await;
                }
            }
        }
    }

    async fn handle_text(&mut self, text: &str) {
        let frame = match parse_client_frame(text) {
            Ok(f) => f,
            Err((id, message)) => {
                self.shared
                    .state
                    .metrics
                    .client_frames
                    .with_label_values(&["malformed"])
                    .inc();
                self.reply(&ServerFrame::err(id, error_code::BAD_REQUEST, message));
                return;
            }
        };
        let first = std::mem::replace(&mut self.first_frame, false);
        let state = &self.shared.state;
        match frame {
            ClientFrame::Auth { token } => {
                state.metrics.client_frames.with_label_values(&["auth"]).inc();
                self.authenticate(&token, first).await;
            }
            ClientFrame::Subscribe(req) => {
                state.metrics.client_frames.with_label_values(&["subscribe"]).inc();
                let id = req.id.clone();
                let reply = match self.subs.subscribe(self.shared, self.identity.as_deref(), req).await {
                    Ok(result) => ServerFrame::ok(id, result),
                    Err((code, message)) => ServerFrame::err(id, code, message),
                };
                self.reply(&reply);
            }
            ClientFrame::Unsubscribe { id, topic } => {
                state.metrics.client_frames.with_label_values(&["unsubscribe"]).inc();
                let reply = if self.subs.unsubscribe(self.shared, &topic).await {
                    ServerFrame::ok(id, json!({"topic": topic}))
                } else {
                    ServerFrame::err(id, error_code::NOT_SUBSCRIBED, format!("not subscribed to {topic:?}"))
                };
                self.reply(&reply);
            }
            ClientFrame::Publish { id, topic, event } => {
                state.metrics.client_frames.with_label_values(&["publish"]).inc();
                let origin = Origin::Client {
                    identity: self.identity.as_deref(),
                    ip: self.shared.info.ip,
                };
                let reply = match state.publisher.publish(&topic, event, origin).await {
                    Ok(accepted) => ServerFrame::ok(id, serde_json::to_value(&accepted).unwrap_or_default()),
                    Err(e) => {
                        let mut frame = ServerFrame::err(id, e.code(), e.message.clone());
                        if let (ServerFrame::Reply { error: Some(body), .. }, Some(after)) =
                            (&mut frame, e.retry_after())
                        {
                            body.retry_after_ms = Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX).max(1));
                        }
                        frame
                    }
                };
                self.reply(&reply);
            }
            ClientFrame::Ack { topic, offsets } => {
                state.metrics.client_frames.with_label_values(&["ack"]).inc();
                let acked = self.shared.acks.lock().ack(&topic, &offsets);
                if acked > 0
                    && let Some(t) = state.config.get().topic(&topic)
                {
                    t.metrics.acks.inc_by(acked as u64);
                }
            }
            ClientFrame::Presence { id, topic } => {
                state.metrics.client_frames.with_label_values(&["presence"]).inc();
                let reply = match self.subs.presence(self.shared, self.identity.as_deref(), &topic).await {
                    Ok(result) => ServerFrame::ok(id, result),
                    Err((code, message)) => ServerFrame::err(id, code, message),
                };
                self.reply(&reply);
            }
            ClientFrame::Ping { id } => {
                state.metrics.client_frames.with_label_values(&["ping"]).inc();
                self.reply(&ServerFrame::Pong { id });
            }
        }
    }

    async fn authenticate(&mut self, token: &str, first: bool) {
        let auth = &self.shared.state.config.get().auth;
        match auth.verify(token) {
            Ok(identity) => {
                let same_user = self.identity.as_ref().is_none_or(|cur| cur.user == identity.user);
                if !first && !same_user {
                    self.reply(&ServerFrame::err(
                        None,
                        error_code::FORBIDDEN,
                        "a connection cannot switch users; open a new connection",
                    ));
                    return;
                }
                let result = json!({
                    "session": &*self.shared.info.session,
                    "user": identity.user,
                    "device": identity.device,
                    "expiresAt": identity.expires_at,
                });
                self.set_identity(identity);
                self.reply(&ServerFrame::ok(None, result));
            }
            Err(e) => {
                self.reply(&ServerFrame::err(None, error_code::UNAUTHORIZED, e.to_string()));
                if self.identity.is_none() {
                    self.outbox().close(auth_failure(&e));
                }
            }
        }
    }
}
