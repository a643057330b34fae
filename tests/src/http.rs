//! Answers of the sidecar's HTTP listeners, read completely so tests can assert on
//! status, headers and body together.

use reqwest::header::HeaderMap;
use serde_json::Value;

/// One HTTP answer.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
}

impl HttpReply {
    /// Sends `req` and reads the whole answer; panics when the request itself fails.
    pub async fn from(req: reqwest::RequestBuilder) -> Self {
        let resp = req.send().await.expect("HTTP request to the sidecar");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("read HTTP body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of a `{"error":{"code","message"}}` body.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}
