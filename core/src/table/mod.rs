//! SSTables: the immutable sorted files of one partition's LSM tree.
//!
//! A table maps sorted, unique CandyKeys to one opaque value each (an encoded `CandyLocator`),
//! and also carries range tombstones and metadata. It is written whole by [`TableWriter`] and
//! read by [`Table`] through a memory mapping given as [`Bytes`]: keys and values returned by
//! the reader are slices of that mapping, never copies.
//!
//! File layout (every integer little-endian; `docs/format.md` has the byte diagrams):
//!
//! ```text
//! +--------------+-----+----------------+-------+----------------+------+-------+--------+
//! | data block 0 | ... | data block n-1 | bloom | range tombst.  | meta | index | footer |
//! +--------------+-----+----------------+-------+----------------+------+-------+--------+
//! 0                                                                              len-80  len
//! ```
//!
//! Invariants (the writer asserts them; [`Table::open`] and the block reader check them and
//! answer a typed [`DecodeError`] instead of panicking):
//! - The blocks tile the file with no gap and no padding: data blocks start at 0, each block
//!   starts where the previous one ends, and the index ends where the fixed-size [`Footer`]
//!   begins. So every byte of the file is covered by exactly one CRC-32.
//! - A block's CRC-32 is stored in what points to it: each data block's in its index entry, the
//!   bloom, range-tombstone, meta and index blocks' in the footer, and the footer's in itself.
//! - Keys are non-empty, at most `KEY_BYTES_MAX` bytes, and strictly increasing in unsigned byte
//!   order, within a block and across blocks; each index entry holds its block's last key.
//! - A data block holds at least one entry and at most `TABLE_BLOCK_BYTES_MAX` bytes; values are
//!   at most `LOCATOR_BYTES_MAX` bytes.
//! - The meta block agrees with the rest of the file: its entry count is the sum of the index's
//!   per-block counts, its largest key is the index's last key, its smallest key is the first key
//!   of block 0, its range-tombstone count is the range-tombstone block's length, and every
//!   range tombstone's stamp lies within its HLC range.
//! - The index, bloom, range-tombstone and meta blocks are verified when the table is opened;
//!   a data block is verified (CRC-32, then structure, then agreement with its index entry) each
//!   time it is read, so a lookup never returns bytes that were not written.

use std::ops::Range;

use bytes::Bytes;

use crate::{codec::Short, error::DecodeError};

mod block;
mod bloom;
mod footer;
mod index;
mod meta;
mod reader;
mod tombstones;
mod writer;

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests index buffers they just built; a panic fails the test")]
mod tests;

pub use block::{decode_block, encode_block, OwnedEntry};
pub use footer::{BlockHandle, Footer, FormatVersion, BLOCK_HANDLE_BYTES, FOOTER_BYTES, TABLE_MAGIC};
pub use meta::TableMeta;
pub use reader::{Table, TableIter};
pub use writer::{
    TableOptions, TableWriter, BLOCK_BYTES_TARGET_DEFAULT, BLOOM_BITS_PER_KEY_DEFAULT, BLOOM_BITS_PER_KEY_MAX,
};

/// Moves the offsets of a decode error found inside a sub-structure (a block, an entry) by
/// `base`, the sub-structure's offset in the enclosing input, so errors name file offsets.
pub(crate) fn at_offset(error: DecodeError, base: u64) -> DecodeError {
    match error {
        DecodeError::ChecksumMismatch { offset, expected, found } => {
            DecodeError::ChecksumMismatch { offset: offset.saturating_add(base), expected, found }
        }
        DecodeError::Malformed { what, offset } => DecodeError::Malformed { what, offset: offset.saturating_add(base) },
        DecodeError::Truncated(Short { at, needed }) => {
            let base = usize::try_from(base).unwrap_or(usize::MAX);
            DecodeError::Truncated(Short { at: at.saturating_add(base), needed })
        }
        other @ (DecodeError::BadMagic { .. } | DecodeError::UnsupportedVersion(_)) => other,
    }
}

/// A zero-copy sub-slice of `bytes`, or `None` when `range` does not lie inside it.
/// [`Bytes::slice`] panics on a bad range; every range computed from disk bytes goes through here.
pub(crate) fn sub_bytes(bytes: &Bytes, range: Range<usize>) -> Option<Bytes> {
    if range.start <= range.end && range.end <= bytes.len() {
        Some(bytes.slice(range))
    } else {
        None
    }
}

/// Shorthand for a [`DecodeError::Malformed`] at `offset`.
pub(crate) fn malformed(what: &'static str, offset: usize) -> DecodeError {
    DecodeError::Malformed { what, offset: offset as u64 }
}
