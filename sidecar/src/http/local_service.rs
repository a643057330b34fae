//! The local listener's service: `POST /v1/topics/{topic}/events`, the route an app
//! calls for every event it publishes, is matched here by hand and goes straight to its
//! handler; every other request goes through the local API's router.
//!
//! Why: on the many-topics profile the router's share (route lookup, matched-path and
//! path-parameter extensions, response mapping) was a measurable part of the CPU spent
//! per publish, for a route whose shape is fixed. Responses are the same either way:
//! the fast path calls the very handler the router would.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use tower_service::Service;

use super::local_api::publish_one;
use crate::state::SidecarState;

/// The topic of a `/v1/topics/{topic}/events` path, when it needs no decoding (no `%`)
/// and is one non-empty segment. Anything else is left to the router, which decodes
/// and answers errors.
fn publish_topic(path: &str) -> Option<&str> {
    let topic = path.strip_prefix("/v1/topics/")?.strip_suffix("/events")?;
    (!topic.is_empty() && !topic.contains(['/', '%'])).then_some(topic)
}

/// See the module docs.
#[derive(Clone)]
pub struct LocalService {
    state: Arc<SidecarState>,
    router: Router,
}

impl LocalService {
    pub fn new(state: Arc<SidecarState>, router: Router) -> Self {
        Self { state, router }
    }
}

impl Service<Request> for LocalService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.method() == Method::POST
            && let Some(topic) = publish_topic(req.uri().path())
        {
            let topic = topic.to_owned();
            let state = self.state.clone();
            return Box::pin(async move {
                Ok(match publish_one(State(state), Path(topic), req).await {
                    Ok(response) => response,
                    Err(e) => e.into_response(),
                })
            });
        }
        Box::pin(Service::call(&mut self.router, req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_plain_publish_paths_only() {
        assert_eq!(publish_topic("/v1/topics/chat.room-1/events"), Some("chat.room-1"));
        assert_eq!(publish_topic("/v1/topics//events"), None);
        assert_eq!(publish_topic("/v1/topics/a/b/events"), None);
        assert_eq!(publish_topic("/v1/topics/a%2Eb/events"), None);
        assert_eq!(publish_topic("/v1/topics/chat/history"), None);
        assert_eq!(publish_topic("/v1/events:batch"), None);
    }
}
