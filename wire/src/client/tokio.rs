//! The tokio driver: for the CLI and the S3 proxy.
//!
//! Invariants:
//! - A connection's loops are spawned with `tokio::spawn`, so a [`TokioClient`] works on a
//!   current-thread or multi-thread runtime without a `LocalSet`; the runtime needs `time`.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::driver::{ConnectionIo, Driver};
use super::source::BodySource;
use super::Client;

/// Runs the client on tokio.
#[derive(Debug, Clone, Copy)]
pub struct TokioDriver;

/// A client on tokio.
pub type TokioClient = Client<TokioDriver>;

impl Driver for TokioDriver {
    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;

    async fn connect(addr: &str) -> io::Result<(OwnedReadHalf, OwnedWriteHalf)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream.into_split())
    }

    async fn read(reader: &mut OwnedReadHalf, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        let result = reader.read_buf(&mut buf).await;
        (result, buf)
    }

    async fn write_all(writer: &mut OwnedWriteHalf, buf: Bytes) -> io::Result<()> {
        writer.write_all(&buf).await
    }

    async fn shutdown(writer: &mut OwnedWriteHalf) -> io::Result<()> {
        writer.shutdown().await
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn spawn_connection(io: ConnectionIo<Self>) {
        let (reader, writer) = io.into_loops();
        tokio::spawn(reader.run());
        tokio::spawn(writer.run());
    }
}

/// A body source reading an `AsyncRead` (a file, stdin) in pieces of `piece_bytes`.
#[derive(Debug)]
pub struct ReaderSource<R> {
    reader: R,
    piece_bytes: usize,
}

/// Pieces of 1 MiB: few frames, little memory.
pub const READER_PIECE_BYTES_DEFAULT: usize = 1024 * 1024;

impl<R: AsyncRead + Unpin> ReaderSource<R> {
    /// Reads `reader` in pieces of [`READER_PIECE_BYTES_DEFAULT`].
    pub fn new(reader: R) -> ReaderSource<R> {
        ReaderSource { reader, piece_bytes: READER_PIECE_BYTES_DEFAULT }
    }

    /// Reads `reader` in pieces of `piece_bytes` (at least 1).
    pub fn with_piece_bytes(reader: R, piece_bytes: usize) -> ReaderSource<R> {
        ReaderSource { reader, piece_bytes: piece_bytes.max(1) }
    }
}

impl<R: AsyncRead + Unpin> BodySource for ReaderSource<R> {
    async fn next_piece(&mut self) -> io::Result<Option<Bytes>> {
        let mut buf = BytesMut::with_capacity(self.piece_bytes);
        // Fill the piece (a pipe returns little per read) so that frames stay few.
        while buf.len() < self.piece_bytes {
            if self.reader.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        Ok(if buf.is_empty() { None } else { Some(buf.freeze()) })
    }
}
