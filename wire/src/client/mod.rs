//! The async client library of the Candybox wire protocol.
//!
//! Layers, bottom up:
//! - **Protocol core, no I/O**: [`request`] builds `Request` bodies, [`codec`] splits a message
//!   into frames at the cap and decodes received bytes into checked frames, [`demux`] routes
//!   frames to requests by id, [`reply`] turns verified replies into [`types`], [`list`] merges
//!   per-partition listing pages, [`placement`] computes the owning shard.
//! - **Driver**: [`Driver`] abstracts the runtime (sockets, timer, spawn); [`TokioDriver`] and
//!   [`MonoioDriver`] implement it (cargo features `tokio` and `monoio`).
//! - **Connection**: [`connection::Connection`] pipelines many requests over one TCP
//!   connection with a writer loop and a demultiplexing reader loop, in bounded memory.
//! - **Client**: [`Client`] routes each request to its shard's port, retries `Busy`,
//!   scatter-gathers listings, relays locators.
//!
//! Invariants:
//! - Nothing received is read before its frame header was checked and its flatbuffer verified
//!   with explicit limits; no byte from the network is `unwrap`ped.
//! - Every queue is bounded; a slow consumer slows its connection, never grows memory.
//! - Relayed locator bytes are kept as slices of the received frame and sent back unchanged.
//!
//! Constructing a client:
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn tokio_example() -> Result<(), candybox_wire::client::ClientError> {
//! use candybox_wire::client::{ClientConfig, TokioClient};
//! let client = TokioClient::connect(ClientConfig::new("127.0.0.1:7420")).await?;
//! client.create_box("photos", None).await?;
//! # Ok(()) }
//! ```
//!
//! On monoio the same with `MonoioClient`, inside a runtime built with the timer enabled.

mod api;
pub mod chan;
pub mod codec;
pub mod connection;
pub mod demux;
pub mod digest;
pub mod driver;
mod error;
pub mod list;
#[cfg(feature = "monoio")]
pub mod monoio;
pub mod placement;
pub mod reply;
pub mod request;
pub mod source;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod types;

#[cfg(test)]
mod tests;

#[cfg(feature = "monoio")]
pub use self::monoio::{MonoioClient, MonoioDriver};
#[cfg(feature = "tokio")]
pub use self::tokio::{ReaderSource, TokioClient, TokioDriver};
pub use api::{
    Client, ClientConfig, GetStream, DEFAULT_PORT, DELETE_MANY_KEYS_MAX, MULTIPART_PARTS_MAX, MULTIPART_PART_BYTES_MIN,
};
pub use driver::Driver;
pub use error::ClientError;
pub use source::{BodySource, Pieces};
pub use types::*;
