//! A bare-bones WebSocket client over a plain TCP socket that does only what the test
//! tells it: in particular it never answers pings. (tokio-tungstenite answers pings
//! as a side effect of reading, and once the server has closed the socket, flushing
//! that answer fails every later read, hiding frames the server sent before closing.)
//! Used to play a client that went silent.

use std::time::Duration;

use eventcast_api::protocol::SUBPROTOCOL;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One frame from the server.
#[derive(Debug)]
pub enum RawFrame {
    Text(Value),
    Binary(usize),
    Ping,
    Pong,
    Close(Option<u16>),
}

/// A client connection that speaks WebSocket framing by hand.
#[derive(Debug)]
pub struct RawWsClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWsClient {
    /// Opens `ws://host:port/path` with the `eventcast.v1` subprotocol.
    pub async fn connect(url: &str) -> Self {
        let rest = url.strip_prefix("ws://").expect("ws:// URL");
        let (host, path) = rest
            .split_once('/')
            .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
        let mut stream = TcpStream::connect(host).await.expect("TCP connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("send handshake");
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.expect("read handshake");
            assert!(n > 0, "connection closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        buf.drain(..end);
        Self { stream, buf }
    }

    /// Sends a masked text frame.
    pub async fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | u8::try_from(len).expect("< 126"));
        } else if let Ok(len16) = u16::try_from(len) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&len16.to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.expect("send frame");
    }

    async fn fill(&mut self, want: usize) -> bool {
        while self.buf.len() < want {
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    }

    /// The next frame, or `None` when the connection ended (or `timeout` passed).
    pub async fn next(&mut self, timeout: Duration) -> Option<RawFrame> {
        tokio::time::timeout(timeout, self.read_frame()).await.ok().flatten()
    }

    async fn read_frame(&mut self) -> Option<RawFrame> {
        if !self.fill(2).await {
            return None;
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(b0 & 0x80, 0x80, "fragmented frames are not expected from the server");
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        let (len, header) = match b1 & 0x7f {
            126 => {
                if !self.fill(4).await {
                    return None;
                }
                (usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
            }
            127 => {
                if !self.fill(10).await {
                    return None;
                }
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.buf[2..10]);
                (usize::try_from(u64::from_be_bytes(n)).expect("fits"), 10)
            }
            n => (usize::from(n), 2),
        };
        if !self.fill(header + len).await {
            return None;
        }
        let payload: Vec<u8> = self.buf[header..header + len].to_vec();
        self.buf.drain(..header + len);
        Some(match b0 & 0x0f {
            0x1 => RawFrame::Text(serde_json::from_slice(&payload).expect("text frames are JSON")),
            0x2 => RawFrame::Binary(payload.len()),
            0x8 => RawFrame::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))),
            0x9 => RawFrame::Ping,
            0xA => RawFrame::Pong,
            op => panic!("unexpected opcode {op:#x}"),
        })
    }
}
