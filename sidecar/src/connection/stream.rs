//! The TCP stream under a public connection, shared by the HTTP/WebSocket stack (hyper,
//! then tungstenite, own it as their IO) and the fan-out's direct writes.
//!
//! Why: a direct write through tungstenite copies the frame into its write buffer,
//! frames it and flushes through four IO layers, once per delivery. An event frame is
//! the same bytes for every subscriber, so [`crate::event::SharedEvent`] frames it once
//! and the fan-out hands those bytes to the kernel with one nonblocking `write` here.
//!
//! Bytes of two writers never interleave: a direct write is made only when the stack
//! has nothing half-written (its last write did not stall, see [`Inner::stack_stalled`])
//! and no earlier direct write left a tail. A tail the kernel did not take is kept here
//! and written before anything the stack writes next, so the connection's writer only
//! has to flush (see [`DirectWrite`](super::socket::DirectWrite)). The socket lock of
//! [`super::socket::Socket`] serializes every use of the stack and every direct write.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

#[derive(Debug)]
struct Inner {
    tcp: TcpStream,
    /// The tail of a direct write the kernel did not take.
    tail: Mutex<Vec<u8>>,
    /// The stack's last write returned `Pending`: it may hold part of a frame.
    stack_stalled: AtomicBool,
}

/// The IO handed to hyper for one accepted connection.
#[derive(Debug)]
pub struct SharedStream(Arc<Inner>);

/// The direct-write side of a [`SharedStream`], kept by the connection.
#[derive(Clone, Debug)]
pub struct DirectStream(Arc<Inner>);

/// Outcome of [`DirectStream::try_write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawWrite {
    /// Everything is with the kernel.
    Written,
    /// Nothing was written (the stack or an earlier tail is in the way, or the kernel
    /// buffer is full): queue the frame instead.
    NotNow,
    /// Part was written; the rest goes out on the next flush of the stack.
    Partial,
    /// The socket failed.
    Failed,
}

impl SharedStream {
    pub fn new(tcp: TcpStream) -> Self {
        Self(Arc::new(Inner {
            tcp,
            tail: Mutex::new(Vec::new()),
            stack_stalled: AtomicBool::new(false),
        }))
    }

    pub fn direct(&self) -> DirectStream {
        DirectStream(self.0.clone())
    }
}

impl Inner {
    /// Writes some of `buf` once the socket is writable.
    fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }

    /// Writes the tail of a direct write; `Ready(Ok)` once none is left.
    fn poll_write_tail(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut tail = self.tail.lock();
        while !tail.is_empty() {
            match ready!(self.poll_send(cx, &tail))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => drop(tail.drain(..n)),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_write_now(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_write_tail(cx))?;
        self.poll_send(cx, buf)
    }
}

impl DirectStream {
    /// Hands `frame` (a complete WebSocket frame) to the kernel without waiting.
    pub fn try_write(&self, frame: &[u8]) -> RawWrite {
        if self.0.stack_stalled.load(Ordering::Acquire) {
            return RawWrite::NotNow;
        }
        let mut tail = self.0.tail.lock();
        if !tail.is_empty() {
            return RawWrite::NotNow;
        }
        match self.0.tcp.try_write(frame) {
            Ok(n) if n == frame.len() => RawWrite::Written,
            Ok(0) => RawWrite::Failed,
            Ok(n) => {
                tail.extend_from_slice(&frame[n..]);
                RawWrite::Partial
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => RawWrite::NotNow,
            Err(_) => RawWrite::Failed,
        }
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let tcp = &self.0.tcp;
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            let room = buf.remaining();
            let mut short = false;
            // As tokio's own `TcpStream` does: a read that did not fill the buffer drained
            // the socket, so readiness is cleared (by answering `WouldBlock` to `try_io`)
            // and the next poll waits for epoll instead of spending a syscall on `EAGAIN`.
            let r = tcp.try_io(Interest::READABLE, || {
                // `ReadBuf` as `BufMut`: reads into the unfilled part without zeroing it.
                let n = tcp.try_read_buf(buf)?;
                if n > 0 && n < room {
                    short = true;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            match r {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if short {
                        return Poll::Ready(Ok(()));
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = self.0.poll_write_now(cx, buf);
        // The stack keeps what it could not write and tries again later; direct writes
        // must wait until it has.
        self.0.stack_stalled.store(r.is_pending(), Ordering::Release);
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_write_tail(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.0.poll_write_tail(cx))?;
        let r = socket2::SockRef::from(&self.0.tcp).shutdown(std::net::Shutdown::Write);
        Poll::Ready(match r {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (SharedStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (server, _) = accepted.expect("accept");
        (SharedStream::new(server), client.expect("connect"))
    }

    #[tokio::test]
    async fn stack_and_direct_writes_arrive_in_order() {
        let (mut stream, mut client) = pair().await;
        let direct = stream.direct();
        stream.write_all(b"one,").await.expect("write");
        assert_eq!(direct.try_write(b"two,"), RawWrite::Written);
        stream.write_all(b"three").await.expect("write");
        stream.flush().await.expect("flush");
        let mut got = vec![0u8; 13];
        client.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"one,two,three");

        client.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
    }

    #[tokio::test]
    async fn reads_return_what_arrived_and_then_wait_for_more() {
        let (mut stream, mut client) = pair().await;
        let mut buf = [0u8; 64];
        for round in 0..3u8 {
            client.write_all(&[round; 10]).await.expect("write");
            let n = stream.read(&mut buf).await.expect("read");
            assert_eq!(&buf[..n], &[round; 10][..n]);
            let mut rest = vec![0u8; 10 - n];
            stream.read_exact(&mut rest).await.expect("read");
        }
        drop(client);
        assert_eq!(stream.read(&mut buf).await.expect("read"), 0, "end of stream");
    }

    #[tokio::test]
    async fn a_tail_the_kernel_did_not_take_goes_out_before_the_stack_writes() {
        let (mut stream, mut client) = pair().await;
        let direct = stream.direct();
        // More than the kernel's send and receive buffers together hold, while the
        // client reads nothing: the kernel takes only part of it.
        let chunk = vec![b'a'; 32 * 1024 * 1024];
        assert_eq!(direct.try_write(&chunk), RawWrite::Partial);
        let sent = chunk.len();
        assert_eq!(direct.try_write(b"x"), RawWrite::NotNow, "a tail is pending");

        // The stack's next write waits for the tail; the client sees tail first.
        let writer = tokio::spawn(async move {
            stream.write_all(b"END").await.expect("write");
            stream.flush().await.expect("flush");
            stream
        });
        let mut got = vec![0u8; sent + 3];
        client.read_exact(&mut got).await.expect("read");
        assert!(got[..sent].iter().all(|&b| b == b'a'));
        assert_eq!(&got[sent..], b"END");
        let _stream = writer.await.expect("writer");
        assert_eq!(direct.try_write(b"x"), RawWrite::Written, "nothing pending any more");
    }

    #[tokio::test]
    async fn direct_writes_wait_while_the_stack_is_stalled() {
        let (stream, mut client) = pair().await;
        let direct = stream.direct();
        let mut stream = Box::pin(stream);
        let chunk = vec![b'b'; 64 * 1024];
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut written = 0usize;
        loop {
            match stream.as_mut().poll_write(&mut cx, &chunk) {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => panic!("write failed: {e}"),
                Poll::Pending => break,
            }
        }
        assert_eq!(direct.try_write(b"x"), RawWrite::NotNow, "the stack stalled");
        let mut got = vec![0u8; written];
        client.read_exact(&mut got).await.expect("read");
        // Once the stack writes successfully again, direct writes resume.
        let mut stream = Pin::into_inner(stream);
        stream.write_all(b"y").await.expect("write");
        assert_eq!(direct.try_write(b"z"), RawWrite::Written);
        let mut two = [0u8; 2];
        client.read_exact(&mut two).await.expect("read");
        assert_eq!(&two, b"yz");
    }
}
