//! [`Table`]: reads an SSTable through a memory mapping, and [`TableIter`] scans a key range.
//!
//! Invariants:
//! - [`Table::open`] trusts nothing: footer magic, version and CRC-32; the exact tiling of the
//!   file by its blocks; the CRC-32 and structure of the index, bloom, range-tombstone and meta
//!   blocks; and their agreement with each other. A table that opens has a sound index.
//! - A data block is verified every time it is read: CRC-32 against its index entry, then its
//!   structure, then its entry count, last key and first key against the index and meta. So no
//!   read returns bytes the writer did not write under that key.
//! - Keys and values handed out are [`Bytes`] slices of the mapping: no copies, and they keep the
//!   mapping alive.
//! - Lookups and seeks use the index (binary search), never a scan from the start.

use std::{ops::Bound, sync::Arc};

use bytes::Bytes;

use super::{
    at_offset,
    block::Block,
    bloom::{self, Bloom},
    footer::{BlockHandle, Footer, FOOTER_BYTES},
    index::{self, IndexEntry},
    malformed,
    meta::TableMeta,
    sub_bytes, tombstones,
};
use crate::{
    codec::{crc32, Short},
    error::DecodeError,
    types::RangeTombstone,
};

/// An open SSTable; cloning it is cheap (a reference count).
#[derive(Debug, Clone)]
pub struct Table {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The whole file.
    data: Bytes,
    meta: TableMeta,
    range_tombstones: Vec<RangeTombstone>,
    index: Vec<IndexEntry>,
    bloom: Bloom,
}

/// The bytes of the block at `handle`, after checking they lie in `data` and match the CRC-32.
fn checked_block(data: &Bytes, handle: BlockHandle) -> Result<Bytes, DecodeError> {
    let bad_handle = || DecodeError::Malformed { what: "block handle", offset: handle.offset };
    let start = usize::try_from(handle.offset).map_err(|_| bad_handle())?;
    let end = start.checked_add(handle.length as usize).ok_or_else(bad_handle)?;
    let bytes = sub_bytes(data, start..end).ok_or_else(bad_handle)?;
    let found = crc32(&[&bytes]);
    if found != handle.crc32 {
        return Err(DecodeError::ChecksumMismatch { offset: handle.offset, expected: handle.crc32, found });
    }
    Ok(bytes)
}

/// Checks that the block at `handle` ends exactly at `next`, where the following structure begins.
fn check_ends_at(handle: BlockHandle, next: u64, what: &'static str, footer_offset: usize) -> Result<(), DecodeError> {
    if handle.end() == Some(next) {
        Ok(())
    } else {
        Err(malformed(what, footer_offset))
    }
}

impl Table {
    /// Opens a table from its whole file's bytes (usually a memory mapping).
    ///
    /// Verifies the footer (magic, version, CRC-32), that the blocks tile the file exactly, the
    /// CRC-32 and structure of the index, bloom, range-tombstone and meta blocks, and that they
    /// agree. Data blocks are verified when read. Offsets in errors are file offsets.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] for a file shorter than a footer; [`DecodeError::BadMagic`] for
    /// a truncated or foreign file; [`DecodeError::UnsupportedVersion`];
    /// [`DecodeError::ChecksumMismatch`] at the offset of the bad block or footer;
    /// [`DecodeError::Malformed`] naming the broken invariant.
    pub fn open(data: Bytes) -> Result<Table, DecodeError> {
        let footer_offset = data.len().checked_sub(FOOTER_BYTES).ok_or(Short { at: 0, needed: FOOTER_BYTES })?;
        let footer_bytes = data.get(footer_offset..).unwrap_or_default();
        let footer = Footer::decode(footer_bytes).map_err(|e| at_offset(e, footer_offset as u64))?;

        // The non-data blocks follow each other in this order and the index ends at the footer,
        // so all of them lie inside the file.
        check_ends_at(footer.index, footer_offset as u64, "index block handle", footer_offset)?;
        check_ends_at(footer.meta, footer.index.offset, "meta block handle", footer_offset)?;
        check_ends_at(footer.range_tombstones, footer.meta.offset, "range tombstone block handle", footer_offset)?;
        check_ends_at(footer.bloom, footer.range_tombstones.offset, "bloom block handle", footer_offset)?;

        let index_block = checked_block(&data, footer.index)?;
        let (index, data_end) = index::decode(&index_block).map_err(|e| at_offset(e, footer.index.offset))?;
        // The data blocks start at 0 (checked by index::decode) and end where the bloom begins.
        if data_end != footer.bloom.offset {
            return Err(DecodeError::Malformed { what: "data blocks end", offset: footer.index.offset });
        }

        let bloom_block = checked_block(&data, footer.bloom)?;
        let bloom = Bloom::decode(bloom_block).map_err(|e| at_offset(e, footer.bloom.offset))?;

        let rt_block = checked_block(&data, footer.range_tombstones)?;
        let range_tombstones =
            tombstones::decode(&rt_block).map_err(|e| at_offset(e, footer.range_tombstones.offset))?;

        let meta_block = checked_block(&data, footer.meta)?;
        let meta = TableMeta::decode(&meta_block).map_err(|e| at_offset(e, footer.meta.offset))?;

        let meta_error = |what| DecodeError::Malformed { what, offset: footer.meta.offset };
        let indexed_entries: u64 = index.iter().map(|e| u64::from(e.entry_count)).sum();
        if meta.entry_count != indexed_entries {
            return Err(meta_error("meta entry count"));
        }
        let index_last_key = index.last().map(|e| e.last_key.as_ref()).unwrap_or_default();
        if meta.largest_key.as_slice() != index_last_key {
            return Err(meta_error("meta largest key"));
        }
        if meta.range_tombstone_count != range_tombstones.len() as u64 {
            return Err(meta_error("meta range tombstone count"));
        }
        if range_tombstones.iter().any(|rt| rt.hlc < meta.min_hlc || rt.hlc > meta.max_hlc) {
            return Err(meta_error("meta hlc range"));
        }
        Ok(Table { inner: Arc::new(Inner { data, meta, range_tombstones, index, bloom }) })
    }

    /// # Returns
    /// The table's meta block.
    pub fn meta(&self) -> &TableMeta {
        &self.inner.meta
    }

    /// # Returns
    /// The range tombstones, sorted by (start, end, hlc).
    pub fn range_tombstones(&self) -> &[RangeTombstone] {
        &self.inner.range_tombstones
    }

    /// # Returns
    /// The size of the table file in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.inner.data.len() as u64
    }

    /// # Returns
    /// The number of data blocks.
    pub fn block_count(&self) -> usize {
        self.inner.index.len()
    }

    /// # Returns
    /// False only when `key` is certainly not in the table (key range and bloom filter); reads no
    /// data block.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        let meta = &self.inner.meta;
        meta.entry_count > 0
            && key >= meta.smallest_key.as_slice()
            && key <= meta.largest_key.as_slice()
            && self.inner.bloom.may_contain(bloom::key_hash(key))
    }

    /// Looks `key` up: key range and bloom filter first, then a binary search of the index, then
    /// of the one block that may hold the key, whose CRC-32 is verified.
    ///
    /// # Returns
    /// The value, a slice of the mapping, or `None` when the key is absent.
    ///
    /// # Errors
    /// [`DecodeError`] when the block read is corrupt.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, DecodeError> {
        if !self.may_contain(key) {
            return Ok(None);
        }
        let i = self.inner.index.partition_point(|e| e.last_key.as_ref() < key);
        if i >= self.inner.index.len() {
            return Ok(None);
        }
        let block = self.read_block(i)?;
        let at = block.partition_point(|k| k < key)?;
        if at < block.len() && block.key(at)? == key {
            return Ok(Some(block.value(at)?));
        }
        Ok(None)
    }

    /// Iterates the entries with keys between `lo` and `hi`, in increasing key order or, when
    /// `reverse`, decreasing. The iterator seeks with the index and holds a clone of the table, so
    /// it borrows nothing. An empty or inverted range yields nothing.
    pub fn range(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>, reverse: bool) -> TableIter {
        TableIter { table: self.clone(), lo, hi, reverse, state: IterState::Unstarted }
    }

    /// Reads and verifies data block `i`: CRC-32, structure, and agreement with the index and meta.
    fn read_block(&self, i: usize) -> Result<Block, DecodeError> {
        let inner = &*self.inner;
        let entry = inner.index.get(i).ok_or(DecodeError::Malformed { what: "block number", offset: 0 })?;
        let offset = entry.handle.offset;
        let bytes = checked_block(&inner.data, entry.handle)?;
        let block = Block::parse(bytes).map_err(|e| at_offset(e, offset))?;
        let bad = |what| DecodeError::Malformed { what, offset };
        if block.len() != entry.entry_count as usize {
            return Err(bad("block entry count"));
        }
        if block.key(block.len() - 1)? != entry.last_key.as_ref() {
            return Err(bad("block last key"));
        }
        let first_key = block.key(0)?;
        let first_key_fits = match i.checked_sub(1).and_then(|p| inner.index.get(p)) {
            None => first_key == inner.meta.smallest_key.as_slice(),
            Some(previous) => first_key > previous.last_key.as_ref(),
        };
        if !first_key_fits {
            return Err(bad("block first key"));
        }
        Ok(block)
    }
}

/// True when `key` lies below the lower bound.
fn below(lo: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match lo {
        Bound::Unbounded => false,
        Bound::Included(lo) => key < lo.as_slice(),
        Bound::Excluded(lo) => key <= lo.as_slice(),
    }
}

/// True when `key` lies above the upper bound.
fn above(hi: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match hi {
        Bound::Unbounded => false,
        Bound::Included(hi) => key > hi.as_slice(),
        Bound::Excluded(hi) => key >= hi.as_slice(),
    }
}

/// Where a [`TableIter`] is.
#[derive(Debug)]
enum IterState {
    /// Not yet positioned: the seek happens on the first `next`, so creating an iterator reads
    /// nothing.
    Unstarted,
    /// In data block `block_index`. Forward, `pos` is the next entry to yield; in reverse, it is
    /// one past it.
    At { block_index: usize, block: Block, pos: usize },
    /// Exhausted, or stopped after an error.
    Done,
}

/// Iterator over a key range of a [`Table`]; see [`Table::range`]. It owns a clone of the table.
/// After yielding an error it yields nothing more.
#[derive(Debug)]
pub struct TableIter {
    table: Table,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    reverse: bool,
    state: IterState,
}

impl TableIter {
    /// Positions the iterator on the first entry of the range in its direction.
    fn seek(&self) -> Result<IterState, DecodeError> {
        let index = &self.table.inner.index;
        if !self.reverse {
            // The first block whose last key is not below `lo` holds the first entry >= lo.
            let block_index = index.partition_point(|e| below(&self.lo, &e.last_key));
            if block_index >= index.len() {
                return Ok(IterState::Done);
            }
            let block = self.table.read_block(block_index)?;
            let pos = block.partition_point(|k| below(&self.lo, k))?;
            Ok(IterState::At { block_index, block, pos })
        } else {
            if index.is_empty() {
                return Ok(IterState::Done);
            }
            // The first block whose last key is above `hi` may still start with keys <= hi; if no
            // block's last key is above `hi`, the range's last entry is the table's last.
            let block_index = index.partition_point(|e| !above(&self.hi, &e.last_key)).min(index.len() - 1);
            let block = self.table.read_block(block_index)?;
            let pos = block.partition_point(|k| !above(&self.hi, k))?;
            Ok(IterState::At { block_index, block, pos })
        }
    }

    /// Advances by one entry.
    fn step(&mut self) -> Result<Option<(Bytes, Bytes)>, DecodeError> {
        loop {
            match &mut self.state {
                IterState::Done => return Ok(None),
                IterState::Unstarted => self.state = self.seek()?,
                IterState::At { block_index, block, pos } if !self.reverse => {
                    if *pos >= block.len() {
                        let next = *block_index + 1;
                        if next >= self.table.inner.index.len() {
                            return Ok(None);
                        }
                        self.state = IterState::At { block_index: next, block: self.table.read_block(next)?, pos: 0 };
                        continue;
                    }
                    let (key, value) = block.entry(*pos)?;
                    if above(&self.hi, &key) {
                        return Ok(None);
                    }
                    *pos += 1;
                    return Ok(Some((key, value)));
                }
                IterState::At { block_index, block, pos } => {
                    if *pos == 0 {
                        let Some(previous) = block_index.checked_sub(1) else {
                            return Ok(None);
                        };
                        let block = self.table.read_block(previous)?;
                        let pos = block.len();
                        self.state = IterState::At { block_index: previous, block, pos };
                        continue;
                    }
                    let (key, value) = block.entry(*pos - 1)?;
                    if below(&self.lo, &key) {
                        return Ok(None);
                    }
                    *pos -= 1;
                    return Ok(Some((key, value)));
                }
            }
        }
    }
}

impl Iterator for TableIter {
    type Item = Result<(Bytes, Bytes), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.state = IterState::Done;
                None
            }
            Err(e) => {
                self.state = IterState::Done;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for TableIter {}
