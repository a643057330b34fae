//! Webhook sinks: POST a delivery's JSON body to the subscription's URL with its
//! headers (static ones merged with the Secret by the compiler) plus
//! `Content-Type: application/json` and `X-Eventcast-Subscription`.
//!
//! A 2xx accepts the delivery. 408, 429, 5xx, timeouts and connection failures are
//! retried with [`Backoff`] (a `Retry-After` in seconds is honoured up to
//! `maxInterval`) until `maxAttempts`; any other status (4xx, and 3xx: redirects are not
//! followed, a webhook URL is expected to be exact) is final at once. A delivery that
//! is not accepted is dead-lettered event by event, with the attempts made, the last
//! error and the last HTTP status.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use eventcast_api::config::RetryConfig;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};

use super::SinkError;
use super::backoff::Backoff;
use super::dead_letter::{self, Failure};
use super::payload;
use crate::event::SharedEvent;
use crate::metrics::SubscriptionMetrics;
use crate::publish::{Origin, Publisher};

/// Header naming the subscription on every request.
pub const SUBSCRIPTION_HEADER: &str = "x-eventcast-subscription";
/// Most response body bytes read (to reuse the connection) before giving up on it.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Most response body bytes quoted in an error.
const MAX_QUOTED_BYTES: usize = 256;

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    #[error("HTTP {status}{}", quote(body))]
    Status {
        status: StatusCode,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("no response within {0} ms")]
    Timeout(u64),
    #[error("connecting failed: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("invalid request: {0}")]
    Request(String),
}

fn quote(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl AttemptError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            AttemptError::Timeout(_) | AttemptError::Connect(_) | AttemptError::Transport(_) => true,
            AttemptError::Request(_) => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptError::Status { status, .. } => Some(status.as_u16()),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// `Retry-After` in delay-seconds (the HTTP-date form is not used by webhook receivers
/// in practice and is ignored).
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// The error with its sources, which is where reqwest puts the useful part.
fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Settings of one webhook sink, from its subscription's config.
#[derive(Debug, Clone)]
pub struct WebhookConfig<'a> {
    pub url: &'a str,
    pub headers: &'a std::collections::BTreeMap<String, String>,
    pub timeout_ms: u64,
    pub retry: &'a RetryConfig,
    pub dead_letter_topic: Option<&'a str>,
    /// Batched subscriptions POST arrays.
    pub as_array: bool,
}

/// The webhook sink of one subscription.
#[derive(Debug)]
pub struct WebhookSink {
    subscription: Arc<str>,
    client: Client,
    url: Url,
    headers: HeaderMap,
    timeout: Duration,
    max_attempts: u32,
    backoff: Backoff,
    dead_letter_topic: Option<String>,
    as_array: bool,
    publisher: Weak<Publisher>,
    metrics: SubscriptionMetrics,
}

impl WebhookSink {
    pub fn new(
        subscription: Arc<str>,
        config: &WebhookConfig<'_>,
        client: Client,
        publisher: Weak<Publisher>,
        metrics: SubscriptionMetrics,
    ) -> Result<Self, SinkError> {
        let url = Url::parse(config.url).map_err(|e| SinkError::Url {
            subscription: subscription.to_string(),
            message: e.to_string(),
        })?;
        let header_error = |name: &str, message: String| SinkError::Header {
            subscription: subscription.to_string(),
            name: name.to_owned(),
            message,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in config.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| header_error(k, e.to_string()))?;
            let mut value = HeaderValue::from_str(v).map_err(|e| header_error(k, e.to_string()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            HeaderName::from_static(SUBSCRIPTION_HEADER),
            HeaderValue::from_str(&subscription).map_err(|e| header_error(SUBSCRIPTION_HEADER, e.to_string()))?,
        );
        Ok(Self {
            client,
            url,
            headers,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            max_attempts: config.retry.max_attempts.max(1),
            backoff: Backoff::new(config.retry),
            dead_letter_topic: config.dead_letter_topic.map(str::to_owned),
            as_array: config.as_array,
            subscription,
            publisher,
            metrics,
        })
    }

    /// Delivers one batch: retries, then dead-letters what the webhook did not accept.
    pub async fn deliver(&self, batch: &[Arc<SharedEvent>]) {
        let body = match payload::encode(&self.subscription, batch, self.as_array) {
            Ok(body) => body,
            Err(e) => {
                let failure = Failure {
                    attempts: 0,
                    last_error: format!("encoding the request body: {e}"),
                    status: None,
                };
                return self.dead_letter(batch, &failure).await;
            }
        };
        let mut failures = 0;
        loop {
            let err = match self.attempt(body.clone()).await {
                Ok(()) => {
                    self.metrics.delivered.inc_by(batch.len() as u64);
                    return;
                }
                Err(err) => err,
            };
            failures += 1;
            if err.is_retryable() && failures < self.max_attempts {
                self.metrics.retries.inc();
                let delay = self.backoff.delay(failures, err.retry_after(), &mut rand::rng());
                tracing::debug!(
                    subscription = %self.subscription,
                    attempt = failures,
                    error = %err,
                    retry_in_ms = delay.as_millis(),
                    "webhook delivery failed; retrying"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            tracing::warn!(
                subscription = %self.subscription,
                url = %self.url,
                attempts = failures,
                events = batch.len(),
                error = %err,
                "webhook did not accept the delivery; dead-lettering"
            );
            let failure = Failure {
                attempts: failures,
                last_error: err.to_string(),
                status: err.status(),
            };
            return self.dead_letter(batch, &failure).await;
        }
    }

    /// One POST.
    async fn attempt(&self, body: Bytes) -> Result<(), AttemptError> {
        let sent = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .body(body)
            .send()
            .await;
        let mut resp = sent.map_err(|e| {
            let text = describe(&e);
            if e.is_timeout() {
                AttemptError::Timeout(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX))
            } else if e.is_connect() {
                AttemptError::Connect(text)
            } else if e.is_builder() {
                AttemptError::Request(text)
            } else {
                AttemptError::Transport(text)
            }
        })?;
        let status = resp.status();
        let retry_after = parse_retry_after(resp.headers());
        // Read (a bounded amount of) the body so the connection can be reused, keeping
        // the start of it for the error message. A body that fails midway after a 2xx
        // still counts as accepted: the receiver has answered.
        let mut quoted = Vec::new();
        let mut read = 0usize;
        while read < MAX_RESPONSE_BYTES {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    let room = MAX_QUOTED_BYTES.saturating_sub(quoted.len());
                    quoted.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        if status.is_success() {
            return Ok(());
        }
        Err(AttemptError::Status {
            status,
            body: String::from_utf8_lossy(&quoted).trim().to_owned(),
            retry_after,
        })
    }

    async fn dead_letter(&self, batch: &[Arc<SharedEvent>], failure: &Failure) {
        let Some(topic) = &self.dead_letter_topic else {
            self.metrics.failed.inc_by(batch.len() as u64);
            tracing::error!(
                subscription = %self.subscription,
                events = batch.len(),
                error = %failure.last_error,
                "webhook delivery failed and the subscription has no dead-letter topic: events not delivered"
            );
            return;
        };
        let Some(publisher) = self.publisher.upgrade() else {
            self.metrics.failed.inc_by(batch.len() as u64);
            return;
        };
        for ev in batch {
            if dead_letter::is_dead_letter(ev) {
                self.metrics.failed.inc();
                tracing::warn!(
                    subscription = %self.subscription,
                    topic = %ev.topic,
                    offset = ev.offset,
                    "a dead letter was not accepted by the webhook; not dead-lettering it again"
                );
                continue;
            }
            let req = dead_letter::request(&self.subscription, ev, failure);
            match publisher.publish(topic, req, Origin::Internal).await {
                Ok(_) => self.metrics.dead_lettered.inc(),
                Err(e) => {
                    self.metrics.failed.inc();
                    tracing::error!(
                        subscription = %self.subscription,
                        topic = %ev.topic,
                        offset = ev.offset,
                        dead_letter_topic = %topic,
                        error = %e,
                        "dead-lettering failed: event not delivered"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> AttemptError {
        AttemptError::Status {
            status: StatusCode::from_u16(code).expect("valid code"),
            body: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn retries_server_errors_throttling_and_network_failures() {
        for code in [500, 502, 503, 504, 429, 408] {
            assert!(status(code).is_retryable(), "{code}");
        }
        assert!(AttemptError::Timeout(10).is_retryable());
        assert!(AttemptError::Connect("refused".into()).is_retryable());
        assert!(AttemptError::Transport("reset".into()).is_retryable());
    }

    #[test]
    fn other_statuses_are_final() {
        for code in [400, 401, 403, 404, 410, 413, 422, 301, 302] {
            assert!(!status(code).is_retryable(), "{code}");
        }
        assert!(!AttemptError::Request("bad header".into()).is_retryable());
    }

    #[test]
    fn errors_say_what_happened() {
        let e = AttemptError::Status {
            status: StatusCode::BAD_REQUEST,
            body: "missing field".into(),
            retry_after: None,
        };
        assert_eq!(e.to_string(), "HTTP 400 Bad Request: missing field");
        assert_eq!(e.status(), Some(400));
        assert_eq!(status(503).to_string(), "HTTP 503 Service Unavailable");
        assert_eq!(AttemptError::Timeout(2000).to_string(), "no response within 2000 ms");
        assert_eq!(AttemptError::Timeout(2000).status(), None);
    }

    #[test]
    fn retry_after_seconds_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(parse_retry_after(&h), None);
    }
}
