//! nchan (nginx module): a WebSocket subscriber at `/sub/{topic}` receives
//! every message published to the channel as one WebSocket message holding
//! the published body unchanged; publishing is `POST /pub/{topic}` with the body
//! (nchan answers 201/202 with a plain-text channel summary). The channel is in
//! the URL, so there is no subscribe step; see `bench/peers/nchan/`.

use crate::endpoint::{HttpEndpoint, percent_encode};
use crate::frame::{Frame, event_t};

/// Default subscriber URL template (the port `bench/peers/nchan/run.sh` examples
/// use); `{topic}` is replaced by each client's topic.
pub const DEFAULT_WS: &str = "ws://127.0.0.1:8090/sub/{topic}";

/// `POST` path of nchan's publisher location for `topic`.
pub fn publish_path(endpoint: &HttpEndpoint, topic: &str) -> String {
    format!("{}/pub/{}", endpoint.prefix, percent_encode(topic))
}

/// Every message is a published body: an event, timed by its `data.t`.
pub fn classify(payload: &[u8]) -> Frame {
    Frame::Event { t: event_t(payload) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_events() {
        assert_eq!(
            classify(br#"{"type":"bench.tick","data":{"t":123,"pad":"xx"}}"#),
            Frame::Event { t: Some(123) }
        );
        assert_eq!(classify(b"hello"), Frame::Event { t: None });
        assert_eq!(classify(b""), Frame::Event { t: None });
    }
}
