//! Parsing of the `--ws` and `--publish` URLs into what the clients need:
//! the resolved socket address, the request URL / path prefix and the `Host`.
//!
//! Only plain `ws://` and `http://` are supported: the benchmark targets a
//! sidecar on this machine, and TLS would measure the TLS stack instead.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};

/// The sidecar's public WebSocket endpoint.
#[derive(Debug, Clone)]
pub struct WsEndpoint {
    /// Full request URL, including `?token=` when a token was given.
    pub url: String,
    /// Resolved server address.
    pub addr: SocketAddr,
}

/// The sidecar's local publish API.
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    /// Resolved server address.
    pub addr: SocketAddr,
    /// Value of the `Host` header.
    pub host: String,
    /// Path prefix without trailing slash (usually empty).
    pub prefix: String,
}

impl HttpEndpoint {
    /// `POST` path for publishing one event to `topic`.
    pub fn topic_events_path(&self, topic: &str) -> String {
        format!("{}/v1/topics/{}/events", self.prefix, percent_encode(topic))
    }

    /// `POST` path of the batch publish endpoint.
    pub fn batch_path(&self) -> String {
        format!("{}/v1/events:batch", self.prefix)
    }
}

/// Splits `scheme://authority/rest` into (authority, rest) for the given scheme.
fn split_url<'a>(url: &'a str, scheme: &str) -> Result<(&'a str, &'a str)> {
    let Some(rest) = url.strip_prefix(scheme).and_then(|r| r.strip_prefix("://")) else {
        bail!("{url:?}: only {scheme}:// URLs are supported");
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        bail!("{url:?}: bad host");
    }
    Ok((authority, tail))
}

/// Adds the default port when the authority has none (handles `[v6]` hosts).
fn with_port(authority: &str, default: u16) -> String {
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{default}")
    }
}

async fn resolve(host_port: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(host_port)
        .await
        .with_context(|| format!("resolving {host_port}"))?
        .next()
        .with_context(|| format!("{host_port}: no address"))
}

/// Parses a `ws://host[:port]/path[?query]` URL and appends `token=` if given.
pub async fn ws_endpoint(url: &str, token: Option<&str>) -> Result<WsEndpoint> {
    let (authority, tail) = split_url(url, "ws")?;
    let addr = resolve(&with_port(authority, 80)).await?;
    let mut full = url.to_owned();
    if tail.is_empty() {
        full.push('/');
    }
    if let Some(token) = token {
        full.push(if full.contains('?') { '&' } else { '?' });
        full.push_str("token=");
        full.push_str(&percent_encode(token));
    }
    Ok(WsEndpoint { url: full, addr })
}

/// Parses an `http://host[:port][/prefix]` URL.
pub async fn http_endpoint(url: &str) -> Result<HttpEndpoint> {
    let (authority, tail) = split_url(url, "http")?;
    if tail.contains('?') {
        bail!("{url:?}: the publish URL takes no query");
    }
    let addr = resolve(&with_port(authority, 80)).await?;
    Ok(HttpEndpoint {
        addr,
        host: authority.to_owned(),
        prefix: tail.trim_end_matches('/').to_owned(),
    })
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ws_url_with_token() -> Result<()> {
        let e = ws_endpoint("ws://127.0.0.1:8080/v1/ws", Some("a.b+c")).await?;
        assert_eq!(e.url, "ws://127.0.0.1:8080/v1/ws?token=a.b%2Bc");
        assert_eq!(e.addr, "127.0.0.1:8080".parse()?);
        let e = ws_endpoint("ws://127.0.0.1/v1/ws?x=1", Some("t")).await?;
        assert_eq!(e.url, "ws://127.0.0.1/v1/ws?x=1&token=t");
        assert_eq!(e.addr.port(), 80);
        assert!(ws_endpoint("wss://127.0.0.1/v1/ws", None).await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn http_paths() -> Result<()> {
        let e = http_endpoint("http://127.0.0.1:7070/").await?;
        assert_eq!(e.topic_events_path("chat room"), "/v1/topics/chat%20room/events");
        assert_eq!(e.batch_path(), "/v1/events:batch");
        assert_eq!(e.host, "127.0.0.1:7070");
        let e = http_endpoint("http://[::1]:7070/api").await?;
        assert_eq!(e.batch_path(), "/api/v1/events:batch");
        assert_eq!(with_port("[::1]", 80), "[::1]:80");
        Ok(())
    }
}
