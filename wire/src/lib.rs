//! Candybox wire protocol (the node issue fills this crate: schema, framing, client library).
//!
//! Today it names the frame constants that the protocol will use, so that the workspace layout of
//! the specification exists from the first commit.
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]
#![deny(clippy::indexing_slicing)]

/// Magic bytes at the start of every frame header.
pub const FRAME_MAGIC: [u8; 4] = *b"CBX1";
/// Default cap on a frame body (SPEC §10).
pub const FRAME_BODY_BYTES_MAX_DEFAULT: u32 = 16 * 1024 * 1024;
