//! Candybox core: the domain types, limits, on-disk formats, storage and the partition LSM engine.
//!
//! Invariants kept by every module of this crate:
//! - All integers on disk are little-endian; every file starts with magic bytes and a format
//!   version, and every record carries a CRC-32.
//! - Bytes read from disk are never trusted: decoders return typed errors with evidence
//!   (file, offset, expected vs found), never panic.
//! - The engine never blocks its core: every file operation goes through [`storage::Storage`],
//!   whose production implementation submits to io_uring.
//! - This crate depends on no other crate of the workspace.
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]
#![deny(clippy::indexing_slicing)]
// Tests may index: a wrong index there is a failing test, not a crash on bytes from disk.
#![cfg_attr(test, allow(clippy::indexing_slicing))]

pub mod codec;
pub mod condition;
pub mod coord;
pub mod engine;
pub mod error;
pub mod hlc;
pub mod keyspace;
pub mod limits;
pub mod locator;
pub mod log;
pub mod manifest;
pub mod memtable;
pub mod record;
pub mod runtime;
pub mod storage;
pub mod syrup;
pub mod table;
pub mod testing;
pub mod types;
pub(crate) mod version;
pub mod wal;
