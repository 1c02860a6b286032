//! Data blocks: sorted key/value entries and an offset array, so a lookup binary-searches the
//! block and a scan walks it in either direction.
//!
//! ```text
//! +---------+-----+-------------+------------+-----+--------------+------------+
//! | entry 0 | ... | entry n-1   | offset 0   | ... | offset n-1   | count = n  |
//! |         |     |             | u32        |     | u32          | u32        |
//! +---------+-----+-------------+------------+-----+--------------+------------+
//! entry = key_len: varint | value_len: varint | key: key_len bytes | value: value_len bytes
//! ```
//!
//! Keys are stored whole (no prefix compression) so that the reader hands out keys as zero-copy
//! slices of the mapped file. The block's CRC-32 is in its index entry, not in the block.
//!
//! Invariants (asserted by [`BlockBuilder`], checked by [`Block::parse`] and [`decode_block`]):
//! - `count >= 1`: a block holds at least one entry, so every block has a last key to index.
//! - `offset 0 == 0`, and entry `i` spans exactly `[offset i, offset i+1)` (the last one ends
//!   where the offset array starts): entries tile the front of the block with no gap.
//! - Varints are canonical (shortest form), so one set of entries has exactly one encoding.
//! - `1 <= key_len <= STORED_KEY_BYTES_MAX`, `value_len <= LOCATOR_BYTES_MAX`.
//! - Keys are strictly increasing in unsigned byte order.

use std::ops::Range;

use bytes::Bytes;

use super::{at_offset, malformed, sub_bytes};
use crate::{
    codec::{crc32, Put, Reader, Short},
    error::DecodeError,
    limits::{LOCATOR_BYTES_MAX, STORED_KEY_BYTES_MAX, TABLE_BLOCK_BYTES_MAX},
};

/// Bytes of one entry's slot in the offset array.
const OFFSET_BYTES: usize = size_of::<u32>();
/// Bytes of the entry count at the block's end.
const COUNT_BYTES: usize = size_of::<u32>();
/// Longest varint the codec writes for a `u64`.
const VARINT_BYTES_MAX: usize = 10;

/// Bytes an unsigned LEB128 varint of `v` takes.
pub(crate) const fn varint_len(v: u64) -> usize {
    let mut n = 1;
    let mut rest = v >> 7;
    while rest != 0 {
        n += 1;
        rest >>= 7;
    }
    n
}

/// Bytes one entry adds to a block: its header, key, value and offset slot.
pub(crate) const fn entry_bytes(key_len: usize, value_len: usize) -> usize {
    varint_len(key_len as u64) + varint_len(value_len as u64) + key_len + value_len + OFFSET_BYTES
}

/// Smallest possible block: one entry with a one-byte key and an empty value.
pub(crate) const BLOCK_BYTES_MIN: usize = entry_bytes(1, 0) + COUNT_BYTES;

// A block holding one largest entry still fits the block limit, so "a block holds at least one
// entry" never forces a block past TABLE_BLOCK_BYTES_MAX.
const _: () = assert!(entry_bytes(STORED_KEY_BYTES_MAX, LOCATOR_BYTES_MAX) + COUNT_BYTES <= TABLE_BLOCK_BYTES_MAX);
// Offsets inside a block fit the u32 slots of the offset array.
const _: () = assert!(TABLE_BLOCK_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(varint_len(u64::MAX) == VARINT_BYTES_MAX);

/// Builds one data block in a reusable buffer.
#[derive(Debug, Default)]
pub(crate) struct BlockBuilder {
    /// The entries written so far, then (in `finish_into`) the offset array and count.
    buf: Vec<u8>,
    /// Where each entry starts in `buf`.
    offsets: Vec<u32>,
}

/// What [`BlockBuilder::finish_into`] wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FinishedBlock {
    /// Block length in bytes.
    pub(crate) length: u32,
    /// CRC-32 of the block.
    pub(crate) crc32: u32,
    /// Entries in the block.
    pub(crate) entry_count: u32,
}

impl BlockBuilder {
    /// True when no entry has been added since the last finish.
    pub(crate) fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Bytes the block would have if finished now.
    pub(crate) fn size(&self) -> usize {
        self.buf.len() + self.offsets.len() * OFFSET_BYTES + COUNT_BYTES
    }

    /// Appends an entry; the caller (the table writer) has checked key order and lengths.
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        assert!(!key.is_empty(), "table keys are non-empty");
        assert!(key.len() <= STORED_KEY_BYTES_MAX, "key longer than STORED_KEY_BYTES_MAX");
        assert!(value.len() <= LOCATOR_BYTES_MAX, "value longer than LOCATOR_BYTES_MAX");
        assert!(self.size() + entry_bytes(key.len(), value.len()) <= TABLE_BLOCK_BYTES_MAX, "block too large");
        self.offsets.push(self.buf.len() as u32);
        self.buf.put_varint(key.len() as u64);
        self.buf.put_varint(value.len() as u64);
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
    }

    /// Appends the finished block to `out` and empties the builder for the next block.
    pub(crate) fn finish_into(&mut self, out: &mut Vec<u8>) -> FinishedBlock {
        assert!(!self.is_empty(), "a block holds at least one entry");
        let expected = self.size();
        for &offset in &self.offsets {
            self.buf.put_u32(offset);
        }
        let entry_count = self.offsets.len() as u32;
        self.buf.put_u32(entry_count);
        assert_eq!(self.buf.len(), expected);
        let finished = FinishedBlock { length: self.buf.len() as u32, crc32: crc32(&[&self.buf]), entry_count };
        out.extend_from_slice(&self.buf);
        self.buf.clear();
        self.offsets.clear();
        finished
    }
}

/// Where the parts of a validated block are.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Number of entries, at least 1.
    count: usize,
    /// Offset of the offset array: where the entries end.
    offsets_start: usize,
}

/// Reads the count and locates the offset array.
fn layout(buf: &[u8]) -> Result<Layout, DecodeError> {
    let count_at = buf.len().checked_sub(COUNT_BYTES).ok_or(Short { at: 0, needed: COUNT_BYTES })?;
    let count = Reader::new(buf.get(count_at..).unwrap_or_default()).u32()? as usize;
    if count == 0 {
        return Err(malformed("block entry count", count_at));
    }
    let offsets_start = count
        .checked_mul(OFFSET_BYTES)
        .and_then(|n| count_at.checked_sub(n))
        .ok_or_else(|| malformed("block entry count", count_at))?;
    Ok(Layout { count, offsets_start })
}

/// Where entry `i` starts: its slot in the offset array, or the array's start for `i == count`.
fn entry_start(buf: &[u8], layout: Layout, i: usize) -> Result<usize, DecodeError> {
    if i == layout.count {
        return Ok(layout.offsets_start);
    }
    let slot = i.checked_mul(OFFSET_BYTES).and_then(|n| n.checked_add(layout.offsets_start));
    let slot = slot.ok_or_else(|| malformed("block entry index", layout.offsets_start))?;
    let bytes = buf.get(slot..).ok_or(Short { at: slot, needed: OFFSET_BYTES })?;
    Ok(Reader::new(bytes).u32().map_err(|e| Short { at: slot, ..e })? as usize)
}

/// Reads a varint and refuses a non-canonical (over-long) encoding.
fn canonical_varint(r: &mut Reader<'_>, what: &'static str) -> Result<u64, DecodeError> {
    let at = r.position();
    let v = r.varint()?;
    if r.position() - at != varint_len(v) {
        return Err(malformed(what, at));
    }
    Ok(v)
}

/// The key and value ranges of entry `i`, checked against the entry's bounds and the limits.
fn entry_ranges(buf: &[u8], layout: Layout, i: usize) -> Result<(Range<usize>, Range<usize>), DecodeError> {
    if i >= layout.count {
        return Err(malformed("block entry index", layout.offsets_start));
    }
    let start = entry_start(buf, layout, i)?;
    let end = entry_start(buf, layout, i + 1)?;
    if start >= end || end > layout.offsets_start {
        // i < count and count * OFFSET_BYTES fits before the count, so this cannot overflow.
        return Err(malformed("block entry offset", layout.offsets_start + i * OFFSET_BYTES));
    }
    let body = buf.get(start..end).ok_or_else(|| malformed("block entry offset", start))?;
    let mut r = Reader::new(body);
    let parse = |r: &mut Reader<'_>| -> Result<(u64, u64), DecodeError> {
        Ok((canonical_varint(r, "entry key length")?, canonical_varint(r, "entry value length")?))
    };
    let (key_len, value_len) = parse(&mut r).map_err(|e| at_offset(e, start as u64))?;
    // Compared as u64, before any cast, so a huge length cannot wrap into range.
    if key_len == 0 || key_len > STORED_KEY_BYTES_MAX as u64 {
        return Err(malformed("entry key length", start));
    }
    if value_len > LOCATOR_BYTES_MAX as u64 {
        return Err(malformed("entry value length", start));
    }
    let (key_len, value_len) = (key_len as usize, value_len as usize);
    // Both lengths are bounded above, so these sums cannot overflow.
    let key_start = start + r.position();
    let value_start = key_start + key_len;
    let value_end = value_start + value_len;
    if value_end != end {
        return Err(malformed("entry length", start));
    }
    Ok((key_start..value_start, value_start..value_end))
}

/// Checks every invariant of the module doc; O(entries), like the CRC-32 that precedes it.
fn validate(buf: &[u8]) -> Result<Layout, DecodeError> {
    if buf.len() > TABLE_BLOCK_BYTES_MAX {
        return Err(malformed("block length", 0));
    }
    let layout = layout(buf)?;
    if entry_start(buf, layout, 0)? != 0 {
        return Err(malformed("block first offset", layout.offsets_start));
    }
    let mut previous: &[u8] = &[];
    for i in 0..layout.count {
        let (key, _) = entry_ranges(buf, layout, i)?;
        let start = key.start;
        let key = buf.get(key).ok_or_else(|| malformed("entry key", start))?;
        if key <= previous {
            return Err(malformed("block key order", start));
        }
        previous = key;
    }
    Ok(layout)
}

/// A key and its value, copied out of a block by [`decode_block`].
pub type OwnedEntry = (Vec<u8>, Vec<u8>);

/// Encodes entries (sorted, valid keys) as one data block, as the table writer does: the
/// counterpart of [`decode_block`] for seeds and round-trip checks.
///
/// # Panics
/// On entries the writer would refuse (empty, unsorted or over-long keys): programmer errors.
pub fn encode_block<'a>(entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut builder = BlockBuilder::default();
    for (key, value) in entries {
        builder.add(key, value);
    }
    let mut out = Vec::new();
    builder.finish_into(&mut out);
    out
}

/// Decodes one data block on its own (the block fuzzer's entry point); offsets in errors are
/// relative to `block`.
///
/// # Returns
/// The entries in order.
///
/// # Errors
/// [`DecodeError::Truncated`] or [`DecodeError::Malformed`] naming the first invariant broken.
pub fn decode_block(block: &[u8]) -> Result<Vec<OwnedEntry>, DecodeError> {
    let layout = validate(block)?;
    let mut out = Vec::with_capacity(layout.count);
    for i in 0..layout.count {
        let (key, value) = entry_ranges(block, layout, i)?;
        let at = key.start;
        let key = block.get(key).ok_or_else(|| malformed("entry key", at))?;
        let value = block.get(value).ok_or_else(|| malformed("entry value", at))?;
        out.push((key.to_vec(), value.to_vec()));
    }
    Ok(out)
}

/// A validated data block, sharing the bytes of the mapped file.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    data: Bytes,
    layout: Layout,
}

impl Block {
    /// Validates a block whose CRC-32 the caller has verified. Offsets in errors are relative to
    /// the block.
    pub(crate) fn parse(data: Bytes) -> Result<Block, DecodeError> {
        let layout = validate(&data)?;
        Ok(Block { data, layout })
    }

    /// Number of entries, at least 1.
    pub(crate) fn len(&self) -> usize {
        self.layout.count
    }

    /// The key of entry `i`, borrowed.
    pub(crate) fn key(&self, i: usize) -> Result<&[u8], DecodeError> {
        let (key, _) = entry_ranges(&self.data, self.layout, i)?;
        let at = key.start;
        self.data.get(key).ok_or_else(|| malformed("entry key", at))
    }

    /// The key and value of entry `i`, as slices of the file.
    pub(crate) fn entry(&self, i: usize) -> Result<(Bytes, Bytes), DecodeError> {
        let (key, value) = entry_ranges(&self.data, self.layout, i)?;
        let at = key.start;
        let key = sub_bytes(&self.data, key).ok_or_else(|| malformed("entry key", at))?;
        let value = sub_bytes(&self.data, value).ok_or_else(|| malformed("entry value", at))?;
        Ok((key, value))
    }

    /// The value of entry `i`, as a slice of the file.
    pub(crate) fn value(&self, i: usize) -> Result<Bytes, DecodeError> {
        let (_, value) = entry_ranges(&self.data, self.layout, i)?;
        let at = value.start;
        sub_bytes(&self.data, value).ok_or_else(|| malformed("entry value", at))
    }

    /// # Returns
    /// The number of leading entries whose key satisfies `pred`; `pred` must be true for a prefix
    /// of the (sorted) keys and false after it.
    pub(crate) fn partition_point(&self, mut pred: impl FnMut(&[u8]) -> bool) -> Result<usize, DecodeError> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.key(mid)?) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests index buffers they just built; a panic fails the test")]
mod tests {
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    use super::*;

    fn build(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut b = BlockBuilder::default();
        for (k, v) in entries {
            b.add(k, v);
        }
        let mut out = Vec::new();
        let finished = b.finish_into(&mut out);
        assert_eq!(finished.length as usize, out.len());
        assert_eq!(finished.crc32, crc32(&[&out]));
        assert_eq!(finished.entry_count as usize, entries.len());
        out
    }

    #[test]
    fn round_trips_and_searches() {
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            (0..200u32).map(|i| (format!("k{i:05}").into_bytes(), vec![i as u8; (i % 7) as usize])).collect();
        let refs: Vec<(&[u8], &[u8])> = entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        let bytes = build(&refs);
        assert_eq!(decode_block(&bytes), Ok(entries.clone()));
        let block = Block::parse(Bytes::from(bytes)).expect("valid block");
        assert_eq!(block.len(), 200);
        for (i, (k, v)) in entries.iter().enumerate() {
            assert_eq!(block.partition_point(|x| x < k.as_slice()), Ok(i));
            let (bk, bv) = block.entry(i).expect("entry");
            assert_eq!((&bk[..], &bv[..]), (k.as_slice(), v.as_slice()));
        }
        assert_eq!(block.partition_point(|_| true), Ok(200));
    }

    #[test]
    fn broken_invariants_are_malformed() {
        let m = |b: &[u8]| match decode_block(b) {
            Err(DecodeError::Malformed { what, .. }) => what,
            other => panic!("expected Malformed, got {other:?}"),
        };
        // Keys out of order and duplicate keys: build by hand, the builder does not check order.
        let mut b = BlockBuilder::default();
        b.add(b"b", b"1");
        b.add(b"a", b"2");
        let mut out = Vec::new();
        b.finish_into(&mut out);
        assert_eq!(m(&out), "block key order");
        let mut b = BlockBuilder::default();
        b.add(b"a", b"1");
        b.add(b"a", b"2");
        let mut out = Vec::new();
        b.finish_into(&mut out);
        assert_eq!(m(&out), "block key order");
        // Zero entries.
        assert_eq!(m(&[0, 0, 0, 0]), "block entry count");
        // A count whose offset array does not fit.
        assert_eq!(m(&[9, 0, 0, 0]), "block entry count");
        // An empty key: [key_len 0, value_len 0] offset 0, count 1.
        assert_eq!(m(&[0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), "entry key length");
        // A non-canonical varint: key_len 1 written as 0x81 0x00.
        assert_eq!(m(&[0x81, 0, 0, b'k', 0, 0, 0, 0, 1, 0, 0, 0]), "entry key length");
        // A first offset that is not zero.
        assert_eq!(m(&[7, 1, 0, b'k', 1, 0, 0, 0, 1, 0, 0, 0]), "block first offset");
        // Lengths that do not fill the entry exactly.
        assert_eq!(m(&[1, 0, b'k', 9, 0, 0, 0, 0, 1, 0, 0, 0]), "entry length");
        assert!(matches!(decode_block(&[1, 0]), Err(DecodeError::Truncated(_))));
        assert!(matches!(decode_block(&[]), Err(DecodeError::Truncated(_))));
    }

    #[test]
    fn largest_entry_fits_one_block() {
        let key = vec![b'k'; STORED_KEY_BYTES_MAX];
        let value = vec![7u8; LOCATOR_BYTES_MAX];
        let bytes = build(&[(&key, &value)]);
        assert!(bytes.len() <= TABLE_BLOCK_BYTES_MAX);
        assert_eq!(decode_block(&bytes), Ok(vec![(key, value)]));
    }

    /// The block fuzzer: random bytes, and valid blocks with random bytes changed, never panic and
    /// whatever decodes satisfies the invariants.
    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut rng = SmallRng::seed_from_u64(0xB10C);
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..12u8).map(|i| (vec![b'a', i], vec![i; usize::from(i)])).collect();
        let refs: Vec<(&[u8], &[u8])> = entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        let good = build(&refs);
        for round in 0..20_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = rng.gen_range(0..64);
                let mut b: Vec<u8> = (0..len).map(|_| rng.gen_range(0..4u8)).collect();
                // A small plausible count at the end reaches deeper than random bytes would.
                b.extend_from_slice(&rng.gen_range(0..4u32).to_le_bytes());
                b
            } else {
                let mut b = good.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..b.len());
                    b[at] = rng.gen();
                }
                b
            };
            if let Ok(decoded) = decode_block(&bytes) {
                assert!(!decoded.is_empty());
                assert!(decoded.windows(2).all(|w| w[0].0 < w[1].0));
                assert!(decoded.iter().all(|(k, _)| !k.is_empty() && k.len() <= STORED_KEY_BYTES_MAX));
            }
            if let Ok(block) = Block::parse(Bytes::from(bytes)) {
                let _ = block.partition_point(|k| k < b"a\x05".as_slice());
            }
        }
    }
}
