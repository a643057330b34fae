//! Kernel arrival timestamps for the subscribers' sockets.
//!
//! The generator multiplexes thousands of clients on one thread, so the moment it
//! gets round to reading a frame includes its own time spent reading every frame
//! queued before it (~5 us each): at 1,000 subscribers that is ~5 ms no real
//! client, reading only its own socket, would see. With `SO_TIMESTAMPNS` the
//! kernel stamps each received segment with the wall clock as it arrives, and
//! `recvmsg` hands back the stamp of the newest segment it copied. Latency taken
//! from that stamp is publish-to-arrival at the client's socket, free of the
//! generator's read order; the read time is kept beside it for comparison.
//!
//! Every message decoded from the bytes of one read is given that read's stamp:
//! the newest segment's, so a frame that arrived earlier in the same read is
//! timed late, never early.
//!
//! The kernel turns receive stamping on for the whole host lazily (a deferred
//! static key, enabled shortly after the first socket asks for it), so the first
//! segments after that may come without a stamp. Those reads are timed at the
//! read and counted ([`ArrivalStream::unstamped`]); by the time a benchmark has
//! opened its connections the key is on.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::latency::unix_nanos;

/// A TCP stream whose reads also report when the kernel received the bytes.
#[derive(Debug)]
pub struct ArrivalStream {
    inner: TcpStream,
    /// Reused ancillary-data buffer for one `SCM_TIMESTAMPNS`.
    cmsg: Vec<u8>,
    /// Unix nanos at which the bytes of the latest read arrived.
    last_arrival: u64,
    /// Reads that came back without a stamp (timed at the read instead).
    unstamped: u64,
}

impl ArrivalStream {
    /// Asks the kernel to stamp `inner`'s received segments.
    pub fn new(inner: TcpStream) -> io::Result<Self> {
        setsockopt(&inner, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        Ok(Self {
            inner,
            cmsg: nix::cmsg_space!(TimeSpec),
            last_arrival: 0,
            unstamped: 0,
        })
    }

    /// Unix nanos at which the bytes of the latest read arrived (0 before any read).
    pub fn last_arrival(&self) -> u64 {
        self.last_arrival
    }

    /// Reads that carried no kernel stamp and were timed when read.
    pub fn unstamped(&self) -> u64 {
        self.unstamped
    }
}

/// One non-blocking `recvmsg` on `fd` into `buf`, with `cmsg` as the ancillary
/// buffer; returns the byte count and the newest segment's stamp.
fn recv(fd: RawFd, buf: &mut [u8], cmsg: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(cmsg), MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)?;
    let stamp = msg.cmsgs().map_err(io::Error::from)?.find_map(|c| match c {
        ControlMessageOwned::ScmTimestampns(ts) => timespec_nanos(ts),
        _ => None,
    });
    Ok((msg.bytes, stamp))
}

fn timespec_nanos(ts: TimeSpec) -> Option<u64> {
    let secs = u64::try_from(ts.tv_sec()).ok()?;
    let nanos = u64::try_from(ts.tv_nsec()).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

impl AsyncRead for ArrivalStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let Self {
            inner,
            cmsg,
            last_arrival,
            unstamped,
        } = self.get_mut();
        loop {
            ready!(inner.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            // try_io clears the readiness on WouldBlock, so the next poll waits for the reactor.
            match inner.try_io(Interest::READABLE, || recv(inner.as_raw_fd(), unfilled, cmsg)) {
                Ok((n, stamp)) => {
                    if n > 0 {
                        *last_arrival = stamp.unwrap_or_else(|| {
                            *unstamped += 1;
                            unix_nanos()
                        });
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ArrivalStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Exchanges bytes until a read comes back stamped: the kernel enables
    /// stamping host-wide a moment after the first socket asks for it.
    async fn warm_up(server: &mut TcpStream, client: &mut ArrivalStream) -> io::Result<()> {
        for _ in 0..200 {
            let before = client.unstamped();
            server.write_all(b"w").await?;
            let mut byte = [0u8; 1];
            client.read_exact(&mut byte).await?;
            if client.unstamped() == before {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(io::Error::other(
            "the kernel never stamped a received segment (SO_TIMESTAMPNS)",
        ))
    }

    #[tokio::test]
    async fn stamps_the_arrival_not_the_read() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let client = TcpStream::connect(listener.local_addr()?).await?;
        let (mut server, _) = listener.accept().await?;
        let mut client = ArrivalStream::new(client)?;
        warm_up(&mut server, &mut client).await?;
        let unstamped = client.unstamped();

        let sent = unix_nanos();
        server.write_all(b"first frame").await?;
        // The bytes wait in the socket: the stamp must say when they came, not when read.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 11];
        client.read_exact(&mut buf).await?;
        let read = unix_nanos();
        assert_eq!(&buf, b"first frame");
        let arrived = client.last_arrival();
        assert!(arrived >= sent, "arrived {arrived} before it was sent at {sent}");
        assert!(read - arrived >= 40_000_000, "stamp {arrived} is the read time {read}");
        assert_eq!(client.unstamped(), unstamped);

        // A later read takes the later segment's stamp; writes pass through.
        server.write_all(b"second").await?;
        let mut buf = [0u8; 6];
        client.read_exact(&mut buf).await?;
        assert!(client.last_arrival() > arrived);
        client.write_all(b"pong").await?;
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        Ok(())
    }

    #[tokio::test]
    async fn reports_end_of_stream() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let client = TcpStream::connect(listener.local_addr()?).await?;
        let (server, _) = listener.accept().await?;
        drop(server);
        let mut client = ArrivalStream::new(client)?;
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).await?, 0);
        assert_eq!(client.last_arrival(), 0);
        Ok(())
    }
}
