//! The monoio driver: for the load generator, one client per core on io_uring.
//!
//! Invariants:
//! - A connection's loops are spawned with `monoio::spawn` on the current thread: a
//!   [`MonoioClient`] stays on the thread that made it (its futures are not `Send`).
//! - The runtime must have its timer enabled (`RuntimeBuilder::enable_timer`, or
//!   `#[monoio::main(timer_enabled = true)]`): timeouts and busy backoff sleep.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::driver::{ConnectionIo, Driver};
use super::Client;

/// Runs the client on monoio.
#[derive(Debug, Clone, Copy)]
pub struct MonoioDriver;

/// A client on monoio.
pub type MonoioClient = Client<MonoioDriver>;

impl Driver for MonoioDriver {
    type Reader = OwnedReadHalf<TcpStream>;
    type Writer = OwnedWriteHalf<TcpStream>;

    async fn connect(addr: &str) -> io::Result<(Self::Reader, Self::Writer)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream.into_split())
    }

    async fn read(reader: &mut Self::Reader, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        // monoio reads into a buffer from its start; a slice from `len` appends instead.
        let len = buf.len();
        let (result, slice) = reader.read(buf.slice_mut(len..)).await;
        (result, slice.into_inner())
    }

    async fn write_all(writer: &mut Self::Writer, buf: Bytes) -> io::Result<()> {
        let (result, _buf) = writer.write_all(buf).await;
        result.map(|_| ())
    }

    async fn shutdown(writer: &mut Self::Writer) -> io::Result<()> {
        writer.shutdown().await
    }

    async fn sleep(duration: Duration) {
        monoio::time::sleep(duration).await;
    }

    fn spawn_connection(io: ConnectionIo<Self>) {
        let (reader, writer) = io.into_loops();
        monoio::spawn(reader.run());
        monoio::spawn(writer.run());
    }
}
