//! [`TableWriter`]: builds a whole SSTable in memory from sorted entries and range tombstones.
//!
//! Invariants (asserted: breaking one is a bug in the caller, not an operating error):
//! - Keys are added in strictly increasing unsigned byte order, are non-empty and at most
//!   `STORED_KEY_BYTES_MAX` bytes; values are at most `LOCATOR_BYTES_MAX` bytes.
//! - A data block is cut before an entry that would take it past `block_bytes_target`, unless the
//!   block is empty: a block holds at least one entry, so one large entry makes one large block
//!   (never past `TABLE_BLOCK_BYTES_MAX`, asserted in `block.rs`).
//! - The output is a pure function of the options and the calls: range tombstones are sorted and
//!   Syrups deduplicated, so equal inputs give byte-identical files.

use std::collections::BTreeSet;

use super::{
    block::BlockBuilder,
    bloom,
    footer::{BlockHandle, Footer, FOOTER_BYTES},
    index::{self, INDEX_COUNT_BYTES, INDEX_ENTRY_FIXED_BYTES},
    meta::TableMeta,
    tombstones::{self, TOMBSTONE_COUNT_BYTES},
};
use crate::{
    codec::Put,
    hlc::Hlc,
    limits::{KEY_BYTES_MAX, LOCATOR_BYTES_MAX, STORED_KEY_BYTES_MAX, TABLE_BLOCK_BYTES_MAX},
    types::{RangeTombstone, SyrupId},
};

/// Default data block size: large enough that the index stays small (one entry per 16 KiB),
/// small enough that a point read checksums little more than it needs.
pub const BLOCK_BYTES_TARGET_DEFAULT: usize = 16 * 1024;
/// Default bloom filter bits per key: about 1 % false positives.
pub const BLOOM_BITS_PER_KEY_DEFAULT: u32 = 10;
/// Most bloom filter bits per key: past this the filter costs memory for no measurable gain.
pub const BLOOM_BITS_PER_KEY_MAX: u32 = 64;

const _: () = assert!(BLOCK_BYTES_TARGET_DEFAULT <= TABLE_BLOCK_BYTES_MAX);
const _: () = assert!(BLOOM_BITS_PER_KEY_DEFAULT <= BLOOM_BITS_PER_KEY_MAX);

/// How a table is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// A data block is cut before the entry that would make it larger than this, in bytes:
    /// smaller blocks make point reads cheaper, larger ones make the index smaller and scans
    /// cheaper. At most `TABLE_BLOCK_BYTES_MAX`.
    pub block_bytes_target: usize,
    /// Bloom filter bits per key: 10 gives about 1 % false positives; 0 writes no filter.
    /// At most [`BLOOM_BITS_PER_KEY_MAX`].
    pub bloom_bits_per_key: u32,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions { block_bytes_target: BLOCK_BYTES_TARGET_DEFAULT, bloom_bits_per_key: BLOOM_BITS_PER_KEY_DEFAULT }
    }
}

/// Builds one SSTable in memory; [`TableWriter::finish`] returns the file's bytes.
#[derive(Debug)]
pub struct TableWriter {
    options: TableOptions,
    /// The file so far: finished data blocks.
    out: Vec<u8>,
    /// The data block being filled.
    block: BlockBuilder,
    /// Encoded index entries of the finished data blocks (the count is prepended at finish).
    index_entries: Vec<u8>,
    /// Number of finished data blocks.
    index_count: u32,
    /// Bloom hashes of every key, turned into the filter at finish.
    key_hashes: Vec<u64>,
    range_tombstones: Vec<RangeTombstone>,
    /// Encoded size of `range_tombstones`, for [`TableWriter::estimated_bytes`].
    range_tombstone_bytes: usize,
    syrups: BTreeSet<SyrupId>,
    entry_count: u64,
    smallest_key: Vec<u8>,
    /// The last key added: the order check and the current block's index key.
    last_key: Vec<u8>,
    /// Smallest and greatest stamps seen, over entries and tombstones.
    hlc_range: Option<(Hlc, Hlc)>,
}

impl TableWriter {
    /// A writer with no entries.
    ///
    /// # Panics
    /// When `options.block_bytes_target` is 0 or above `TABLE_BLOCK_BYTES_MAX`, or
    /// `options.bloom_bits_per_key` is above [`BLOOM_BITS_PER_KEY_MAX`].
    pub fn new(options: TableOptions) -> Self {
        assert!(options.block_bytes_target > 0, "block_bytes_target is zero");
        assert!(options.block_bytes_target <= TABLE_BLOCK_BYTES_MAX, "block_bytes_target above TABLE_BLOCK_BYTES_MAX");
        assert!(options.bloom_bits_per_key <= BLOOM_BITS_PER_KEY_MAX, "bloom_bits_per_key above the maximum");
        TableWriter {
            options,
            out: Vec::new(),
            block: BlockBuilder::default(),
            index_entries: Vec::new(),
            index_count: 0,
            key_hashes: Vec::new(),
            range_tombstones: Vec::new(),
            range_tombstone_bytes: 0,
            syrups: BTreeSet::new(),
            entry_count: 0,
            smallest_key: Vec::new(),
            last_key: Vec::new(),
            hlc_range: None,
        }
    }

    /// Adds an entry. `hlc` and `syrups` describe the value (the caller decoded the locator);
    /// the table stores the value as opaque bytes.
    ///
    /// # Panics
    /// When `key` is not strictly greater than the previous key, is empty or longer than
    /// `STORED_KEY_BYTES_MAX`, or `value` is longer than `LOCATOR_BYTES_MAX`: programmer errors.
    pub fn add(&mut self, key: &[u8], value: &[u8], hlc: Hlc, syrups: impl IntoIterator<Item = SyrupId>) {
        assert!(!key.is_empty(), "table keys are non-empty");
        assert!(key.len() <= STORED_KEY_BYTES_MAX, "key longer than STORED_KEY_BYTES_MAX");
        assert!(value.len() <= LOCATOR_BYTES_MAX, "value longer than LOCATOR_BYTES_MAX");
        if self.entry_count > 0 {
            assert!(key > self.last_key.as_slice(), "table keys must be strictly increasing");
        }
        let entry_bytes = super::block::entry_bytes(key.len(), value.len());
        if !self.block.is_empty() && self.block.size() + entry_bytes > self.options.block_bytes_target {
            self.finish_block();
        }
        self.block.add(key, value);
        if self.entry_count == 0 {
            self.smallest_key = key.to_vec();
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        if self.options.bloom_bits_per_key > 0 {
            self.key_hashes.push(bloom::key_hash(key));
        }
        self.syrups.extend(syrups);
        self.observe(hlc);
        self.entry_count += 1;
    }

    /// Adds a range tombstone; tombstones may be added in any order and interleaved with entries.
    ///
    /// # Panics
    /// When `start` or `end` is longer than `KEY_BYTES_MAX`, or `end` is non-empty and not
    /// greater than `start` (an empty range): programmer errors.
    pub fn add_range_tombstone(&mut self, rt: RangeTombstone) {
        assert!(rt.start.len() <= KEY_BYTES_MAX, "range tombstone start longer than KEY_BYTES_MAX");
        assert!(rt.end.len() <= KEY_BYTES_MAX, "range tombstone end longer than KEY_BYTES_MAX");
        assert!(rt.end.is_empty() || rt.start < rt.end, "range tombstone is empty");
        self.observe(rt.hlc);
        self.range_tombstone_bytes += tombstones::encoded_bytes(&rt);
        self.range_tombstones.push(rt);
    }

    /// # Returns
    /// About how many bytes [`TableWriter::finish`] would return now (exact for the data blocks
    /// finished so far), so compaction can cut output tables at a target size.
    pub fn estimated_bytes(&self) -> usize {
        let block = if self.block.is_empty() { 0 } else { self.block.size() };
        let open_index_entry = if self.block.is_empty() { 0 } else { INDEX_ENTRY_FIXED_BYTES + self.last_key.len() };
        let meta = super::meta::META_FIXED_BYTES
            + self.smallest_key.len()
            + self.last_key.len()
            + self.syrups.len() * size_of::<u64>();
        self.out.len()
            + block
            + bloom::estimated_bytes(self.key_hashes.len(), self.options.bloom_bits_per_key)
            + TOMBSTONE_COUNT_BYTES
            + self.range_tombstone_bytes
            + meta
            + INDEX_COUNT_BYTES
            + self.index_entries.len()
            + open_index_entry
            + FOOTER_BYTES
    }

    /// # Returns
    /// The number of entries added so far.
    pub fn entry_count(&self) -> u64 {
        self.entry_count
    }

    /// Writes the remaining blocks and the footer.
    ///
    /// # Returns
    /// The whole file's bytes, and the table's meta (equal to what [`super::Table::meta`] will
    /// decode).
    pub fn finish(mut self) -> (Vec<u8>, TableMeta) {
        if !self.block.is_empty() {
            self.finish_block();
        }
        let bloom_block = bloom::build(&self.key_hashes, self.options.bloom_bits_per_key);
        let bloom = self.append_block(&bloom_block);

        self.range_tombstones.sort_by(tombstones::canonical_order);
        let range_tombstones = self.append_block(&tombstones::encode(&self.range_tombstones));

        let (min_hlc, max_hlc) = self.hlc_range.unwrap_or((Hlc::ZERO, Hlc::ZERO));
        let meta = TableMeta {
            entry_count: self.entry_count,
            smallest_key: std::mem::take(&mut self.smallest_key),
            largest_key: std::mem::take(&mut self.last_key),
            max_hlc,
            min_hlc,
            syrups: std::mem::take(&mut self.syrups).into_iter().collect(),
            range_tombstone_count: self.range_tombstones.len() as u64,
        };
        let mut meta_block = Vec::with_capacity(meta.encoded_bytes());
        meta.encode(&mut meta_block);
        let meta_handle = self.append_block(&meta_block);

        let mut index_block = Vec::with_capacity(INDEX_COUNT_BYTES + self.index_entries.len());
        index_block.put_u32(self.index_count);
        index_block.extend_from_slice(&self.index_entries);
        let index = self.append_block(&index_block);

        let footer = Footer::new(index, bloom, range_tombstones, meta_handle);
        self.out.extend_from_slice(&footer.encode());
        (self.out, meta)
    }

    /// Widens the HLC range to `hlc`.
    fn observe(&mut self, hlc: Hlc) {
        self.hlc_range = Some(match self.hlc_range {
            None => (hlc, hlc),
            Some((min, max)) => (min.min(hlc), max.max(hlc)),
        });
    }

    /// Writes the open data block and its index entry.
    fn finish_block(&mut self) {
        let offset = self.out.len() as u64;
        let finished = self.block.finish_into(&mut self.out);
        let handle = BlockHandle { offset, length: finished.length, crc32: finished.crc32 };
        index::encode_entry(&mut self.index_entries, handle, finished.entry_count, &self.last_key);
        assert!(self.index_count < u32::MAX, "a table has fewer than 2^32 data blocks");
        self.index_count += 1;
    }

    /// Appends a bloom, tombstone, meta or index block and returns its handle.
    fn append_block(&mut self, block: &[u8]) -> BlockHandle {
        assert!(u32::try_from(block.len()).is_ok(), "a table block is shorter than 4 GiB");
        let length = block.len() as u32;
        let handle = BlockHandle { offset: self.out.len() as u64, length, crc32: crate::codec::crc32(&[block]) };
        self.out.extend_from_slice(block);
        handle
    }
}
