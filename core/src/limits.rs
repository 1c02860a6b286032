//! Named limits of the product (SPEC §10) and of every buffer, queue and batch in the engine.
//!
//! Relations between limits are asserted at compile time below, next to the limits they relate.

/// Longest CandyKey in bytes.
pub const KEY_BYTES_MAX: usize = 1024;
/// Bytes a versioned Box's version-space key adds to its user key (`keyspace::version_key`: a
/// leading 0xFF, a 0x00 terminator and the 14-byte inverted version id; docs/versioning.md).
pub const VERSION_KEY_OVERHEAD_BYTES: usize = 16;
/// Longest key the storage formats (table blocks, log and WAL records) hold: a user key with its
/// version suffix, so users keep the whole [`KEY_BYTES_MAX`].
pub const STORED_KEY_BYTES_MAX: usize = KEY_BYTES_MAX + VERSION_KEY_OVERHEAD_BYTES;
/// Largest total user metadata (keys + values) in bytes.
pub const USER_META_BYTES_MAX: usize = 8 * 1024;
/// Longest content type in bytes.
pub const CONTENT_TYPE_BYTES_MAX: usize = 256;
/// Largest encoded CandyLocator in bytes.
pub const LOCATOR_BYTES_MAX: usize = 256 * 1024;
/// Most parts in one multipart upload.
pub const MULTIPART_PARTS_MAX: u32 = 10_000;
/// Smallest part of a multipart upload other than the last (SPEC §6), by default.
pub const MULTIPART_PART_BYTES_MIN: u64 = 5 * 1024 * 1024;
/// Shortest Box name.
pub const BOX_NAME_BYTES_MIN: usize = 3;
/// Longest Box name.
pub const BOX_NAME_BYTES_MAX: usize = 63;
/// Default partition count of a Box.
pub const PARTITION_COUNT_DEFAULT: u16 = 8;
/// Most partitions of one Box.
pub const PARTITION_COUNT_MAX: u16 = 1024;

/// Smallest Syrup chunk payload.
pub const CHUNK_BYTES_MIN: u32 = 512;
/// Largest Syrup chunk payload.
pub const CHUNK_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// Largest contiguous extent one put reserves in a Syrup at once; a larger body gets several
/// SegmentRefs. Bounds the hole an abandoned put can leave.
pub const EXTENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Most SegmentRefs one Part may hold: with extents of at most `EXTENT_BYTES_MAX` this bounds one
/// streamed put at 256 GiB (multipart Candies have a Part per part and no such bound).
pub const PART_SEGMENTS_MAX: usize = 4096;
/// Largest inline Candy (stored in its locator) that the configuration may allow.
pub const INLINE_BYTES_MAX: usize = 64 * 1024;

/// Largest WAL record (one group-commit batch) in bytes.
pub const WAL_RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most mutations in one group-commit batch.
pub const COMMIT_BATCH_OPS_MAX: usize = 1024;
/// Most mutations in one record of a shard's commit log (every partition's batch together).
pub const LOG_RECORD_OPS_MAX: usize = 4 * COMMIT_BATCH_OPS_MAX;
/// Most partitions with mutations in one record of a shard's commit log.
pub const LOG_RECORD_SECTIONS_MAX: usize = 1024;
/// Largest manifest edit in bytes (a multipart part list is the biggest).
pub const MANIFEST_EDIT_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest SSTable block in bytes (a block holds at least one whole entry).
pub const TABLE_BLOCK_BYTES_MAX: usize = 2 * LOCATOR_BYTES_MAX;
/// Most LSM levels.
pub const LEVELS_MAX: usize = 7;
/// Most entries one list page may hold.
pub const LIST_PAGE_ENTRIES_MAX: usize = 10_000;
/// Bytes of keys, content types and (when asked) user metadata one listing page holds at most
/// (at least one entry): a page with metadata of 8 KiB per entry ends well before 10,000
/// entries, and every page fits a reply frame under the default 16 MiB cap.
pub const LIST_PAGE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// A large put starts the writeback of its Syrup after each this many bytes (an fdatasync run in
/// the background while the body keeps streaming), so the device works while the bytes arrive
/// and the put's own sync at the end has only the tail left.
pub const EARLY_SYNC_BYTES: u64 = 16 * 1024 * 1024;
/// Largest write the put path submits at once (one write buffer).
pub const WRITE_BUFFER_BYTES: usize = 1024 * 1024;
/// Write buffers kept for reuse (about one per concurrent large put).
pub const WRITE_BUFFERS_POOLED_MAX: usize = 32;
/// First extent of a body of unknown size; each next extent doubles, up to `EXTENT_BYTES_MAX`.
pub const EXTENT_BYTES_FIRST: u64 = 1024 * 1024;
/// Bytes of a body of unknown size gathered before its first extent is reserved.
pub const UNSIZED_PROBE_BYTES: usize = 256 * 1024;
/// The WAL record buffer is kept for the next batch up to this capacity (a rare huge batch does
/// not pin its memory).
pub const WAL_BUFFER_KEEP_BYTES: usize = 4 * 1024 * 1024;
/// Most mutation groups waiting for a commit before new ones get `Busy`.
pub const COMMIT_QUEUE_WAITERS_MAX: usize = 4096;
/// Entries a compaction merges (or a flush writes) between yields, so that neither holds its
/// core for long: a 32 MiB memtable of small Candies is ~200,000 entries, tens of milliseconds
/// of table building that client requests on the shard would otherwise wait behind.
pub const COMPACTION_YIELD_ENTRIES: usize = 512;

// Memory the put path may pin in pooled buffers: WRITE_BUFFERS_POOLED_MAX × (4 × WRITE_BUFFER_BYTES).
const _: () = assert!(WRITE_BUFFERS_POOLED_MAX * 4 * WRITE_BUFFER_BYTES <= 128 * 1024 * 1024);
const _: () = assert!(EXTENT_BYTES_FIRST <= EXTENT_BYTES_MAX);
const _: () = assert!(UNSIZED_PROBE_BYTES as u64 <= EXTENT_BYTES_FIRST);
const _: () = assert!(INLINE_BYTES_MAX <= UNSIZED_PROBE_BYTES);
const _: () = assert!(KEY_BYTES_MAX + USER_META_BYTES_MAX + CONTENT_TYPE_BYTES_MAX < LOCATOR_BYTES_MAX);
const _: () = assert!(INLINE_BYTES_MAX + USER_META_BYTES_MAX + CONTENT_TYPE_BYTES_MAX < LOCATOR_BYTES_MAX / 2);
// A block must hold one entry: key + locator + entry header.
const _: () = assert!(STORED_KEY_BYTES_MAX + LOCATOR_BYTES_MAX + 64 <= TABLE_BLOCK_BYTES_MAX);
// A batch of the largest records still fits one WAL record.
const _: () = assert!(COMMIT_BATCH_OPS_MAX * 2 * (STORED_KEY_BYTES_MAX + 64) < WAL_RECORD_BYTES_MAX);
// One partition's whole batch fits a shard's record, and every section count fits its u16.
const _: () = assert!(COMMIT_BATCH_OPS_MAX <= LOG_RECORD_OPS_MAX);
const _: () = assert!(LOG_RECORD_SECTIONS_MAX <= u16::MAX as usize);
const _: () = assert!(CHUNK_BYTES_MIN as u64 <= EXTENT_BYTES_MAX);
const _: () = assert!(CHUNK_BYTES_MAX as u64 <= EXTENT_BYTES_MAX);

/// Longest coordination path in bytes (`boxes/<box>/renames/<token>` needs about 100).
pub const COORD_PATH_BYTES_MAX: usize = 1024;
/// Largest coordination entry data in bytes. ZooKeeper refuses a request larger than its default
/// `jute.maxbuffer` (0xfffff bytes, path and framing included), so the bound leaves 8 KiB of
/// room: the same entry fits both implementations of the coordination contract.
pub const COORD_DATA_BYTES_MAX: usize = 1024 * 1024 - 8 * 1024;
/// Largest record of the embedded coordination log. The largest record is one `create` that adds
/// its deepest path (one-byte segments) with every parent and the largest data; see the assertion
/// below.
pub const COORD_RECORD_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The embedded coordination log is never compacted below this size: compacting a small log
/// would cost a snapshot write for almost no saved replay.
pub const COORD_LOG_COMPACT_BYTES_MIN: u64 = 1024 * 1024;
/// The embedded coordination log is compacted when it is larger than this many times the size of
/// a snapshot of the live entries (and larger than `COORD_LOG_COMPACT_BYTES_MIN`), so replay at
/// open reads at most this factor times the live data.
pub const COORD_LOG_COMPACT_RATIO: u64 = 4;

// The deepest path has one-byte segments: PATH/2 + 1 entries, each a change of at most
// 15 bytes of fields + the path; the last one also carries the data; plus the record's 3-byte
// header. It must fit one record.
const _: () = assert!(
    3 + (COORD_PATH_BYTES_MAX / 2 + 1) * (15 + COORD_PATH_BYTES_MAX) + COORD_DATA_BYTES_MAX <= COORD_RECORD_BYTES_MAX
);
// Paths are written as bytes16, and data as bytes32.
const _: () = assert!(COORD_PATH_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(COORD_DATA_BYTES_MAX <= u32::MAX as usize);
// Compaction must shrink the log it replaces (the snapshot is at most 1/ratio of it).
const _: () = assert!(COORD_LOG_COMPACT_RATIO >= 2);

/// Buckets of the group-commit size histogram: sizes up to 1, 2, 4, ..., 256 mutations, then
/// more (`EngineStats::commit_sizes`).
pub const GROUP_COMMIT_SIZE_BUCKETS: usize = 10;
const _: () = assert!(GROUP_COMMIT_SIZE_BUCKETS >= 2 && GROUP_COMMIT_SIZE_BUCKETS <= 64);
