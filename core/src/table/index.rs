//! The index block: one entry per data block, in key order.
//!
//! ```text
//! | count: u32 | entry 0 | ... | entry count-1 |
//! entry = | offset: u64 | length: u32 | crc32: u32 | entry_count: u32 | last_key_len: u16 | last_key |
//! ```
//!
//! Invariants (checked by [`decode`] when the table is opened):
//! - Data blocks tile the front of the file: block 0 starts at offset 0 and each block starts
//!   where the previous one ends. The end of the last block is returned so the caller can check
//!   that the bloom block starts there.
//! - `BLOCK_BYTES_MIN <= length <= TABLE_BLOCK_BYTES_MAX`; `entry_count >= 1`.
//! - Last keys are non-empty, at most `STORED_KEY_BYTES_MAX` bytes, and strictly increasing, so a
//!   binary search for the first block whose last key is `>= key` finds the only block that may
//!   hold `key`.

use bytes::Bytes;

use super::{block::BLOCK_BYTES_MIN, footer::BlockHandle, malformed, sub_bytes, BLOCK_HANDLE_BYTES};
use crate::{
    codec::{Put, Reader},
    error::DecodeError,
    limits::{STORED_KEY_BYTES_MAX, TABLE_BLOCK_BYTES_MAX},
};

/// Bytes of the entry count at the start of the index block.
pub(crate) const INDEX_COUNT_BYTES: usize = size_of::<u32>();
/// Bytes of an index entry other than its last key's bytes.
pub(crate) const INDEX_ENTRY_FIXED_BYTES: usize = BLOCK_HANDLE_BYTES + size_of::<u32>() + size_of::<u16>();
/// Fewest bytes an index entry takes (a one-byte last key); bounds the count before allocating.
const INDEX_ENTRY_BYTES_MIN: usize = INDEX_ENTRY_FIXED_BYTES + 1;

const _: () = assert!(INDEX_ENTRY_FIXED_BYTES == 22);
// Last keys are written with a u16 length.
const _: () = assert!(STORED_KEY_BYTES_MAX <= u16::MAX as usize);

/// What the index knows about one data block.
#[derive(Debug, Clone)]
pub(crate) struct IndexEntry {
    /// Where the block is and its CRC-32.
    pub(crate) handle: BlockHandle,
    /// Entries in the block; the reader checks the block agrees.
    pub(crate) entry_count: u32,
    /// The block's last key, a slice of the mapped file.
    pub(crate) last_key: Bytes,
}

/// Appends one index entry (the block writer knows the rest of the block's facts).
pub(crate) fn encode_entry(out: &mut Vec<u8>, handle: BlockHandle, entry_count: u32, last_key: &[u8]) {
    assert!(!last_key.is_empty(), "a block has a last key");
    handle.encode(out);
    out.put_u32(entry_count);
    out.put_bytes16(last_key);
}

/// Decodes an index block whose CRC-32 the caller has verified. Offsets in errors are relative to
/// the block.
///
/// # Returns
/// The entries, and the file offset where the last data block ends (0 without data blocks).
pub(crate) fn decode(block: &Bytes) -> Result<(Vec<IndexEntry>, u64), DecodeError> {
    let mut r = Reader::new(block);
    let count = r.u32()? as usize;
    if count > r.remaining() / INDEX_ENTRY_BYTES_MIN {
        return Err(malformed("index entry count", 0));
    }
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(count);
    let mut data_end = 0u64;
    for _ in 0..count {
        let at = r.position();
        let handle = BlockHandle::decode(&mut r)?;
        if handle.offset != data_end {
            return Err(malformed("data block offset", at));
        }
        let length = handle.length as usize;
        if !(BLOCK_BYTES_MIN..=TABLE_BLOCK_BYTES_MAX).contains(&length) {
            return Err(malformed("data block length", at));
        }
        data_end = handle.end().ok_or_else(|| malformed("data block length", at))?;
        let entry_count = r.u32()?;
        if entry_count == 0 {
            return Err(malformed("block entry count", at));
        }
        let key = r.bytes16()?;
        if key.is_empty() || key.len() > STORED_KEY_BYTES_MAX {
            return Err(malformed("index key length", at));
        }
        if entries.last().is_some_and(|previous| key <= previous.last_key.as_ref()) {
            return Err(malformed("index key order", at));
        }
        let key_end = r.position();
        let last_key = sub_bytes(block, key_end - key.len()..key_end).ok_or_else(|| malformed("index key", at))?;
        entries.push(IndexEntry { handle, entry_count, last_key });
    }
    if r.remaining() != 0 {
        return Err(malformed("index trailing bytes", r.position()));
    }
    Ok((entries, data_end))
}

#[cfg(test)]
mod tests {
    use rand::{rngs::SmallRng, SeedableRng};

    use super::*;

    fn encode(entries: &[(u64, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_u32(entries.len() as u32);
        for &(offset, length, key) in entries {
            encode_entry(&mut out, BlockHandle { offset, length, crc32: 9 }, 3, key);
        }
        out
    }

    #[test]
    fn round_trips() {
        let bytes = Bytes::from(encode(&[(0, 100, b"b"), (100, 50, b"d")]));
        let (entries, end) = decode(&bytes).expect("valid index");
        assert_eq!(end, 150);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries.last().map(|e| e.last_key.as_ref()), Some(b"d".as_slice()));
        let empty = Bytes::from(encode(&[]));
        assert_eq!(decode(&empty).map(|(e, end)| (e.len(), end)), Ok((0, 0)));
    }

    #[test]
    fn broken_invariants_are_malformed() {
        let what = |entries: &[(u64, u32, &[u8])]| match decode(&Bytes::from(encode(entries))) {
            Err(DecodeError::Malformed { what, .. }) => what,
            other => panic!("expected Malformed, got {other:?}"),
        };
        assert_eq!(what(&[(1, 100, b"b")]), "data block offset");
        assert_eq!(what(&[(0, 100, b"b"), (90, 50, b"d")]), "data block offset");
        assert_eq!(what(&[(0, 100, b"b"), (100, 50, b"b")]), "index key order");
        assert_eq!(what(&[(0, 1, b"b")]), "data block length");
        assert_eq!(what(&[(0, TABLE_BLOCK_BYTES_MAX as u32 + 1, b"b")]), "data block length");
        let mut trailing = encode(&[(0, 100, b"b")]);
        trailing.push(0);
        assert!(matches!(
            decode(&Bytes::from(trailing)),
            Err(DecodeError::Malformed { what: "index trailing bytes", .. })
        ));
    }

    #[test]
    fn mutated_bytes_never_panic() {
        let mut rng = SmallRng::seed_from_u64(0x1DE7);
        let good = encode(&[(0, 100, b"b"), (100, 50, b"d"), (150, 30, b"f")]);
        for _ in 0..10_000 {
            let b = crate::testing::mutate(&mut rng, &good, 4);
            let _ = decode(&Bytes::from(b));
        }
    }
}
