//! A minimal HTTP/1.1 keep-alive client over a tokio `TcpStream`, just enough
//! to `POST` JSON to the sidecar's local publish API as fast as possible:
//! one request in flight per connection, request head and body written with
//! one syscall, responses framed by `Content-Length` or chunked encoding.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted (the publish API answers with small JSON).
const MAX_RESPONSE: usize = 16 << 20;
/// Give up on one request after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One keep-alive connection (reconnects transparently after errors).
#[derive(Debug)]
pub struct HttpConn {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

/// How the body of a parsed response head is framed.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    len: usize,
    framing: Framing,
    close: bool,
}

/// Parses a response head at the start of `buf`; `None` if incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf).context("malformed HTTP response")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.context("no status code")?;
    let mut framing = Framing::UntilClose;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            framing = Framing::Length(v.parse().context("bad Content-Length")?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
            framing = Framing::Chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    if status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    Ok(Some(Head {
        status,
        len,
        framing,
        close,
    }))
}

/// Decodes a complete chunked body at the start of `buf`.
/// Returns (body, bytes consumed) or `None` if more input is needed.
fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..pos + eol]).context("bad chunk header")?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).context("bad chunk size")?;
        pos += eol + 2;
        if size == 0 {
            // Skip trailers up to the empty line.
            loop {
                let Some(eol) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
        if body.len() > MAX_RESPONSE {
            bail!("response too large");
        }
    }
}

impl HttpConn {
    /// A connection to `addr`, opened lazily; `host` is the `Host` header.
    pub fn new(addr: SocketAddr, host: &str) -> Self {
        Self {
            addr,
            host: host.to_owned(),
            stream: None,
            rbuf: Vec::with_capacity(4096),
            wbuf: Vec::with_capacity(4096),
        }
    }

    /// POSTs a JSON body to `path`. Retries once on a fresh connection if a
    /// reused keep-alive connection turned out to be closed by the server.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> Result<Response> {
        let reused = self.stream.is_some();
        match self.try_post(path, body).await {
            Ok(r) => Ok(r),
            Err(e) if reused => {
                self.stream = None;
                self.try_post(path, body).await.context(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn try_post(&mut self, path: &str, body: &[u8]) -> Result<Response> {
        let res = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(path, body)).await;
        let res = res.unwrap_or_else(|_| Err(anyhow::anyhow!("request timed out")));
        if res.is_err() {
            self.stream = None;
        }
        res
    }

    async fn exchange(&mut self, path: &str, body: &[u8]) -> Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.rbuf.clear();
        }
        let Self {
            stream: Some(stream),
            rbuf,
            wbuf,
            host,
            ..
        } = self
        else {
            bail!("not connected")
        };
        wbuf.clear();
        wbuf.extend_from_slice(b"POST ");
        wbuf.extend_from_slice(path.as_bytes());
        wbuf.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        wbuf.extend_from_slice(host.as_bytes());
        wbuf.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
        wbuf.extend_from_slice(body.len().to_string().as_bytes());
        wbuf.extend_from_slice(b"\r\n\r\n");
        wbuf.extend_from_slice(body);
        stream.write_all(wbuf).await.context("sending request")?;

        let head = loop {
            if let Some(h) = parse_head(rbuf)? {
                break h;
            }
            read_more(stream, rbuf).await?;
        };
        let (body, consumed) = match head.framing {
            Framing::Length(n) => {
                if n > MAX_RESPONSE {
                    bail!("response too large");
                }
                while rbuf.len() < head.len + n {
                    read_more(stream, rbuf).await?;
                }
                (rbuf[head.len..head.len + n].to_vec(), head.len + n)
            }
            Framing::Chunked => loop {
                if let Some((b, used)) = decode_chunked(&rbuf[head.len..])? {
                    break (b, head.len + used);
                }
                read_more(stream, rbuf).await?;
            },
            Framing::UntilClose => {
                while read_more(stream, rbuf).await.is_ok() {}
                (rbuf[head.len..].to_vec(), rbuf.len())
            }
        };
        rbuf.drain(..consumed);
        if head.close || matches!(head.framing, Framing::UntilClose) {
            self.stream = None;
        }
        Ok(Response {
            status: head.status,
            body,
        })
    }
}

/// Reads more bytes into `buf`; an error on EOF or when the buffer is full.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    if buf.len() > MAX_RESPONSE {
        bail!("response too large");
    }
    buf.reserve(8192);
    let n = stream.read_buf(buf).await.context("reading response")?;
    if n == 0 {
        bail!("connection closed by server");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_chunks() -> Result<()> {
        let r = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}";
        let h = parse_head(r)?.context("complete")?;
        assert_eq!(h.status, 202);
        assert!(matches!(h.framing, Framing::Length(2)));
        assert!(!h.close);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")?.is_none());
        let h =
            parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")?.context("c")?;
        assert!(matches!(h.framing, Framing::Chunked) && h.close);
        let (b, used) = decode_chunked(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nNEXT")?.context("complete")?;
        assert_eq!(b, b"abcde");
        assert_eq!(used, 24);
        assert!(decode_chunked(b"3\r\nab")?.is_none());
        assert!(decode_chunked(b"zz\r\n").is_err());
        Ok(())
    }

    #[tokio::test]
    async fn keep_alive_round_trips() -> Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await?;
            let mut buf = Vec::new();
            let mut served = 0;
            while served < 3 {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                // Each request here is head + 2-byte body "{}".
                while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    if buf.len() < end + 4 + 2 {
                        break;
                    }
                    buf.drain(..end + 6);
                    served += 1;
                    let resp: &[u8] = if served == 2 {
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\n{\"a\"}"
                    };
                    s.write_all(resp).await?;
                }
            }
            anyhow::Ok(served)
        });
        let mut c = HttpConn::new(addr, "x");
        for i in 0..3 {
            let r = c.post_json("/p", b"{}").await?;
            if i == 1 {
                assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
            } else {
                assert_eq!(r.status, 202);
            }
        }
        drop(c);
        assert_eq!(server.await??, 3);
        Ok(())
    }
}
