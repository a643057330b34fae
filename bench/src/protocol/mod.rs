//! The client protocols of the systems the bench can drive (`--system`), one
//! module each:
//!
//! - [`eventcast`]: Eventcast's client protocol v1 (subprotocol `eventcast.v1`,
//!   `subscribe`/`reply`/`event` JSON frames) and its local publish API;
//! - [`socketio`]: Socket.IO 4 / Engine.IO v4 over a raw WebSocket, against the
//!   peer server in `bench/peers/socketio/` (room per topic, `POST /publish/{topic}`);
//! - [`nchan`]: nchan's WebSocket subscriber (every message is one published
//!   body) and its HTTP publisher (`POST /pub/{topic}`).
//!
//! Every system is published the same body, `{"type":"bench.tick","data":{"t":<unix
//! nanos>,"pad":"x..."}}` (Eventcast stores `data` and delivers it inside its event
//! envelope; the peers relay the body as-is), and each subscriber finds the send
//! time `t` as the first `"t"` after the first `"data"` key, so latency is measured
//! identically for all systems.

pub mod eventcast;
pub mod nchan;
pub mod socketio;

use serde::Serialize;
use tokio_tungstenite::WebSocketStream;

use crate::arrival::ArrivalStream;
use crate::connections::AttemptError;
use crate::endpoint::HttpEndpoint;
use crate::frame::Frame;

/// The system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// The Eventcast sidecar (client protocol v1, local publish API).
    #[default]
    Eventcast,
    /// Socket.IO 4 (Engine.IO v4, WebSocket transport) with the bench peer server.
    Socketio,
    /// nginx + nchan: WebSocket subscriber, HTTP publisher.
    Nchan,
}

impl System {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Eventcast => "eventcast",
            Self::Socketio => "socketio",
            Self::Nchan => "nchan",
        }
    }

    /// Default WebSocket URL when `--ws` is not given (nchan's is a `{topic}`
    /// template, see [`crate::topic_set::expand_url`]).
    pub fn default_ws_url(self) -> &'static str {
        match self {
            Self::Eventcast => eventcast::DEFAULT_WS,
            Self::Socketio => socketio::DEFAULT_WS,
            Self::Nchan => nchan::DEFAULT_WS,
        }
    }

    /// Whether the WebSocket URL names the channel (no subscribe message).
    pub fn topic_in_url(self) -> bool {
        self == Self::Nchan
    }

    /// Default publish base URL when `--publish` is not given: Eventcast's local
    /// API; for the peers the HTTP origin of the WebSocket URL (same server).
    pub fn default_publish_url(self, ws_url: &str) -> String {
        match self {
            Self::Eventcast => eventcast::DEFAULT_PUBLISH.to_owned(),
            Self::Socketio | Self::Nchan => origin_of(ws_url),
        }
    }

    /// The `Sec-WebSocket-Protocol` to request, if any.
    pub fn subprotocol(self) -> Option<&'static str> {
        match self {
            Self::Eventcast => Some(eventcast::SUBPROTOCOL),
            Self::Socketio | Self::Nchan => None,
        }
    }

    /// Makes a freshly upgraded connection receive `topic`'s events; returns
    /// once the server confirmed (Eventcast reply, Socket.IO ack) or, for
    /// nchan, right away (the URL names the channel).
    pub(crate) async fn subscribe(
        self,
        ws: &mut WebSocketStream<ArrivalStream>,
        topic: &str,
    ) -> Result<(), AttemptError> {
        match self {
            Self::Eventcast => eventcast::subscribe(ws, topic).await,
            Self::Socketio => socketio::subscribe(ws, topic).await,
            Self::Nchan => Ok(()),
        }
    }

    /// Classifies one server message of an established subscription.
    pub fn classify(self, payload: &[u8]) -> Frame {
        match self {
            Self::Eventcast => crate::frame::classify(payload),
            Self::Socketio => socketio::classify(payload),
            Self::Nchan => nchan::classify(payload),
        }
    }

    /// The text message answering a [`Frame::Ping`] (protocol-level heartbeat).
    pub fn pong(self) -> Option<&'static str> {
        match self {
            Self::Socketio => Some(socketio::PONG),
            Self::Eventcast | Self::Nchan => None,
        }
    }

    /// `POST` path publishing one event to `topic`.
    pub fn publish_path(self, endpoint: &HttpEndpoint, topic: &str) -> String {
        match self {
            Self::Eventcast => endpoint.topic_events_path(topic),
            Self::Socketio => socketio::publish_path(endpoint, topic),
            Self::Nchan => nchan::publish_path(endpoint, topic),
        }
    }

    /// Whether `--batch` > 1 (one request carrying many events) is supported.
    pub fn supports_batch(self) -> bool {
        self == Self::Eventcast
    }
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `ws://host:port/...` -> `http://host:port` (anything else is returned as is,
/// for the URL parser to reject with a proper message).
fn origin_of(ws_url: &str) -> String {
    let Some(rest) = ws_url.strip_prefix("ws://") else {
        return ws_url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    format!("http://{}", &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        assert_eq!(System::default(), System::Eventcast);
        assert_eq!(System::Eventcast.default_ws_url(), "ws://127.0.0.1:8080/v1/ws");
        assert_eq!(
            System::Socketio.default_ws_url(),
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(System::Nchan.default_ws_url(), "ws://127.0.0.1:8090/sub/{topic}");
        assert!(System::Nchan.topic_in_url() && !System::Eventcast.topic_in_url());
        assert_eq!(
            System::Socketio.default_publish_url("ws://127.0.0.1:3000/socket.io/?EIO=4"),
            "http://127.0.0.1:3000"
        );
        assert_eq!(System::Nchan.default_publish_url("ws://[::1]:81"), "http://[::1]:81");
        assert_eq!(
            System::Eventcast.default_publish_url("ws://127.0.0.1:1/v1/ws"),
            "http://127.0.0.1:7070"
        );
        assert_eq!(System::Nchan.default_publish_url("wss://h/x"), "wss://h/x");
    }
}
