//! What the client needs from an async runtime, so that one [`super::Client`] runs on monoio
//! (io_uring, owned buffers) and on tokio alike.
//!
//! Invariants:
//! - Reads append into the spare capacity of a `BytesMut` the decoder lends (owned-buffer I/O, as
//!   io_uring needs) and hand it back; writes take owned `Bytes`.
//! - Futures need not be `Send`: monoio's are not. A driver whose types are `Send` may spawn the
//!   connection's tasks on a multi-threaded executor.
//! - The only thing a driver spawns is a connection's reader and writer loops
//!   ([`ConnectionIo`]); they end when the connection closes.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::error::ClientError;

pub use super::connection::ConnectionIo;

/// An async runtime's sockets, timer and spawner.
pub trait Driver: Sized + 'static {
    /// The read half of a connected TCP stream.
    type Reader: 'static;
    /// The write half of a connected TCP stream.
    type Writer: 'static;

    /// Connects to `addr` (`host:port`) with `TCP_NODELAY` set.
    fn connect(addr: &str) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer)>>;

    /// Reads into the spare capacity of `buf` (appending), returning how many bytes arrived
    /// (0 at end of stream) and the buffer.
    fn read(reader: &mut Self::Reader, buf: BytesMut) -> impl Future<Output = (io::Result<usize>, BytesMut)>;

    /// Writes all of `buf`.
    fn write_all(writer: &mut Self::Writer, buf: Bytes) -> impl Future<Output = io::Result<()>>;

    /// Shuts the write direction down (the node then closes its side).
    fn shutdown(writer: &mut Self::Writer) -> impl Future<Output = io::Result<()>>;

    /// Completes after `duration`.
    fn sleep(duration: Duration) -> impl Future<Output = ()>;

    /// Spawns a new connection's reader and writer loops ([`ConnectionIo::reader`] and
    /// [`ConnectionIo::writer`]) on the current executor.
    fn spawn_connection(io: ConnectionIo<Self>);
}

/// Runs `f`, giving up with [`ClientError::Timeout`] after `after`.
///
/// # Errors
/// [`ClientError::Timeout`] naming `what`.
pub async fn timeout<D: Driver, F: Future>(after: Duration, what: &str, f: F) -> Result<F::Output, ClientError> {
    let mut f = pin!(f);
    let mut sleep = pin!(D::sleep(after));
    poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(ClientError::Timeout { what: what.to_owned(), after }));
        }
        Poll::Pending
    })
    .await
}
