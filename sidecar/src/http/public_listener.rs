//! The public listener: accepts connections as [`SharedStream`]s, so that the fan-out
//! can write event frames straight to a WebSocket's socket, and hands each request the
//! peer's address with that socket's direct-write side ([`PublicPeer`]).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};

use crate::connection::stream::{DirectStream, SharedStream};

/// A TCP listener whose connections are [`SharedStream`]s with `TCP_NODELAY`.
#[derive(Debug)]
pub struct PublicListener(TcpListener);

impl PublicListener {
    pub fn new(listener: TcpListener) -> Self {
        Self(listener)
    }
}

impl Listener for PublicListener {
    type Io = SharedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SharedStream, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((mut tcp, addr)) => {
                    set_nodelay(&mut tcp);
                    return (SharedStream::new(tcp), addr);
                }
                // The peer gave up before we accepted: nothing to wait for.
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Most likely out of file descriptors: wait for connections to close
                    // rather than spin on the same error.
                    tracing::error!(error = %e, "accepting a public connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Every listener's connections: small frames must leave at once (Nagle plus delayed
/// ACKs adds up to 40 ms).
pub fn set_nodelay(tcp: &mut TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "setting TCP_NODELAY");
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// What a public request knows about its connection (`ConnectInfo<PublicPeer>`).
#[derive(Clone, Debug)]
pub struct PublicPeer {
    pub addr: SocketAddr,
    pub direct: DirectStream,
}

impl Connected<IncomingStream<'_, PublicListener>> for PublicPeer {
    fn connect_info(stream: IncomingStream<'_, PublicListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            direct: stream.io().direct(),
        }
    }
}
