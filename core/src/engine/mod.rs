//! The partition engine: one partition's memtable, SSTables, manifest, and the Syrups it writes;
//! its mutations are made durable through its shard's commit log ([`crate::log`]).
//!
//! Invariants:
//! - Nothing is acknowledged before its Syrup bytes and its log record are durable (fdatasync of
//!   every Syrup written, then of the shard's log, shared by every mutation of a group commit).
//! - Mutations become visible (memtable) only after they are durable, in log order; a log
//!   position is applied at most once (positions applied strictly increase).
//! - A flushed position never passes the log's durable end.
//! - HLC stamps are strictly increasing within the partition, across restarts: open observes every
//!   durable stamp (WAL, SSTables, manifest floor, intents) before stamping anything.
//! - After a failed write or fdatasync the engine answers [`Error::PreviousIo`] until reopened.
//! - No `RefCell` borrow of the state is held across an `.await`.
//! - A Syrup is deleted only when no live locator (by the last live scan, plus every locator
//!   committed since it started; before the first scan: no table or memtable), upload, pending
//!   commit or open writer of this partition references it, it is absent from the caller's
//!   foreign set, and it has been unreferenced for the GC grace period.

mod commit;
mod maintain;
mod migrate;
mod open;
mod read;
mod reclaim;
mod relay;
mod versions;
/// Table file names (`T-<number>.sst`), for offline tools that list a partition's files.
pub use crate::version::{parse_table_file_name, table_file_name};
pub use open::RecoveryReport;
pub use reclaim::{LiveScan, ReclaimReport};
pub use relay::{PartInfo, UploadInfo};
mod write;

use std::{
    cell::{Cell, RefCell},
    collections::BTreeSet,
    path::PathBuf,
    rc::Rc,
};

pub use self::{
    commit::Pending,
    read::{ByteRange, GetReply, ListEntry, ListOptions, ListPage},
    versions::{VersionEntry, VersionListOptions, VersionPage},
    write::{BodyStream, CopyOptions, MetaReplace, PutOptions, PutReply, SliceBody},
};
pub use crate::keyspace::Versioning;
pub use crate::{
    condition::WriteCondition,
    syrup::{CandyReader, Piece},
};
use crate::{
    error::{Error, Result},
    hlc::HlcClock,
    log::CommitLog,
    manifest::ManifestLog,
    memtable::Memtables,
    runtime::{Clock, LocalMutex},
    storage::Storage,
    syrup::Syrups,
    types::{BoxUid, SyrupId},
    version::Lsm,
};

/// Settings of one partition engine. Every size and period of SPEC §10 that concerns a partition.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This partition's directory (WAL, manifest, tables).
    pub partition_dir: PathBuf,
    /// The node-global Syrup directory.
    pub syrup_dir: PathBuf,
    /// The Box incarnation this partition belongs to.
    pub box_uid: BoxUid,
    /// This partition's index in its Box.
    pub partition: u16,
    /// The node id (high bits of Syrup ids, HLC tie-breaker).
    pub node_id: u16,
    /// Chunk payload bytes.
    pub chunk_bytes: u32,
    /// A Syrup is rolled once this many bytes are reserved in it.
    pub syrup_roll_bytes: u64,
    /// Candies up to this size are stored in their locator.
    pub inline_bytes_max: usize,
    /// A memtable is frozen and flushed past this size.
    pub memtable_bytes: usize,
    /// L0 tables that trigger a compaction into L1.
    pub l0_compaction_trigger: usize,
    /// L0 tables at which writes get `Busy`.
    pub l0_stall: usize,
    /// Byte budget of L1.
    pub level_base_bytes: u64,
    /// Each level below L1 holds this many times the level above.
    pub level_multiplier: u64,
    /// Compaction cuts output tables at about this size.
    pub table_target_bytes: usize,
    /// SSTable data block size.
    pub table_block_bytes: usize,
    /// Bloom filter bits per key.
    pub bloom_bits_per_key: u32,
    /// Obsolete files and unreferenced Syrups are deleted after this long.
    pub gc_grace_ms: u64,
    /// Tombstones are dropped at the bottom level only when older than this.
    pub tombstone_grace_ms: u64,
    /// Multipart uploads older than this are expired.
    pub upload_ttl_ms: u64,
    /// Smallest multipart part other than the last.
    pub multipart_part_bytes_min: u64,
    /// The manifest is checkpointed past this size.
    pub manifest_checkpoint_bytes: u64,
    /// Flush and compact automatically in background tasks (tests may drive them by hand).
    pub auto_maintenance: bool,
    /// Seed of the generator of upload ids and rename tokens (mixed with the clock).
    pub seed: u64,
    /// A Syrup whose live bytes are under this fraction of its size is compacted: its live
    /// Parts are moved out and it is deleted (space amplification stays under 1 / this).
    pub syrup_live_ratio_min: f64,
    /// The active Syrup is retired and compacted like the others once it is at least this large
    /// and as dead (smaller ones wait for their roll).
    pub syrup_compact_bytes_min: u64,
    /// A changed partition's live Candies are scanned at most this often for reclamation.
    pub reclaim_scan_interval_ms: u64,
    /// Bytes moved out of dead Syrups per reclamation pass, at most (about: one Candy may pass).
    pub relocate_bytes_per_pass: u64,
    /// A copy (and get-locator, the first step of a relayed copy) reads and checks the source's
    /// bytes when the Candy is at most this large, so that damage is refused, not multiplied;
    /// larger Candies are copied without reading them (zero-copy), and damage shows on reads.
    pub copy_verify_bytes_max: u64,
    /// The commit log of a partition opened on its own ([`Engine::open`]) starts a new segment
    /// past this size.
    pub log_segment_bytes: u64,
    /// The commit log of a partition opened on its own asks for a flush past this size.
    pub log_bytes_max: u64,
    /// The Box's versioning state when the partition opens (changed later with
    /// [`Engine::set_versioning`]; docs/versioning.md).
    pub versioning: crate::keyspace::Versioning,
}

impl EngineConfig {
    /// The defaults for a partition stored under `partition_dir` with Syrups in `syrup_dir`.
    pub fn new(
        partition_dir: impl Into<PathBuf>,
        syrup_dir: impl Into<PathBuf>,
        box_uid: BoxUid,
        partition: u16,
    ) -> Self {
        EngineConfig {
            partition_dir: partition_dir.into(),
            syrup_dir: syrup_dir.into(),
            box_uid,
            partition,
            node_id: 1,
            chunk_bytes: 64 * 1024,
            syrup_roll_bytes: 1024 * 1024 * 1024,
            inline_bytes_max: 4096,
            memtable_bytes: 32 * 1024 * 1024,
            l0_compaction_trigger: 4,
            l0_stall: 12,
            level_base_bytes: 64 * 1024 * 1024,
            level_multiplier: 10,
            table_target_bytes: 32 * 1024 * 1024,
            table_block_bytes: 16 * 1024,
            bloom_bits_per_key: 10,
            gc_grace_ms: 10 * 60 * 1000,
            tombstone_grace_ms: 24 * 60 * 60 * 1000,
            upload_ttl_ms: 7 * 24 * 60 * 60 * 1000,
            multipart_part_bytes_min: crate::limits::MULTIPART_PART_BYTES_MIN,
            manifest_checkpoint_bytes: 4 * 1024 * 1024,
            auto_maintenance: true,
            seed: 0,
            syrup_live_ratio_min: 0.5,
            syrup_compact_bytes_min: 64 * 1024 * 1024,
            reclaim_scan_interval_ms: 10_000,
            relocate_bytes_per_pass: 64 * 1024 * 1024,
            copy_verify_bytes_max: 16 * 1024 * 1024,
            log_segment_bytes: crate::log::LogConfig::default().segment_bytes,
            log_bytes_max: crate::log::LogConfig::default().bytes_max,
            versioning: crate::keyspace::Versioning::Off,
        }
    }

    /// Checks the settings against the limits.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        use crate::limits::*;
        if !(CHUNK_BYTES_MIN..=CHUNK_BYTES_MAX).contains(&self.chunk_bytes) {
            return Err(Error::invalid("chunk_bytes", format!("must lie in {CHUNK_BYTES_MIN}..={CHUNK_BYTES_MAX}")));
        }
        if self.inline_bytes_max > INLINE_BYTES_MAX {
            return Err(Error::invalid("inline_bytes_max", format!("must be at most {INLINE_BYTES_MAX}")));
        }
        if self.l0_stall <= self.l0_compaction_trigger {
            return Err(Error::invalid("l0_stall", "must exceed l0_compaction_trigger"));
        }
        if self.level_multiplier < 2 {
            return Err(Error::invalid("level_multiplier", "must be at least 2"));
        }
        for (field, value) in [
            ("memtable_bytes", self.memtable_bytes as u64),
            ("table_target_bytes", self.table_target_bytes as u64),
            ("syrup_roll_bytes", self.syrup_roll_bytes),
            ("l0_compaction_trigger", self.l0_compaction_trigger as u64),
        ] {
            if value == 0 {
                return Err(Error::invalid(field, "must be positive"));
            }
        }
        if !(512..=TABLE_BLOCK_BYTES_MAX).contains(&self.table_block_bytes) {
            return Err(Error::invalid("table_block_bytes", format!("must lie in 512..={TABLE_BLOCK_BYTES_MAX}")));
        }
        if !(self.syrup_live_ratio_min >= 0.0 && self.syrup_live_ratio_min < 1.0) {
            return Err(Error::invalid("syrup_live_ratio_min", "must lie in [0, 1)"));
        }
        if self.bloom_bits_per_key > crate::table::BLOOM_BITS_PER_KEY_MAX {
            return Err(Error::invalid(
                "bloom_bits_per_key",
                format!("must be at most {}", crate::table::BLOOM_BITS_PER_KEY_MAX),
            ));
        }
        Ok(())
    }
}

/// The bucket of [`EngineStats::commit_sizes`] a group commit of `mutations` falls in.
pub use crate::log::commit_size_bucket;

/// Counters of one engine, for metrics and tests.
#[derive(Debug, Default, Clone)]
pub struct EngineStats {
    /// Group commits written.
    pub commit_batches: u64,
    /// Mutations committed.
    pub commit_ops: u64,
    /// Group commits by size: bucket `i` counts commits of `(2^(i-1), 2^i]` mutations (bucket 0:
    /// exactly one), the last bucket everything larger (see [`commit_size_bucket`]).
    pub commit_sizes: [u64; crate::limits::GROUP_COMMIT_SIZE_BUCKETS],
    /// fdatasyncs of the shard's commit log that carried this partition's mutations.
    pub wal_syncs: u64,
    /// fdatasyncs of Syrups.
    pub syrup_syncs: u64,
    /// Memtables flushed.
    pub flushes: u64,
    /// Compactions run.
    pub compactions: u64,
    /// Syrups deleted by GC.
    pub syrups_deleted: u64,
    /// Bytes of Syrups deleted by GC.
    pub syrup_bytes_reclaimed: u64,
    /// Obsolete tables and WALs deleted.
    pub files_deleted: u64,
    /// Torn log tails discarded at open.
    pub torn_tails_discarded: u64,
}

pub(crate) struct State {
    /// The live and frozen memtables, and what of the log they hold.
    pub(crate) mem: Memtables,
    /// The live tables, the compaction cursors and the obsolete files.
    pub(crate) lsm: Lsm,
    /// The partition's HLC: every stamp it gives is above every durable one.
    pub(crate) clock: HlcClock,
    /// Mutations waiting for the shard's log, and the batch in its current record.
    pub(crate) commit: commit::CommitQueue,
    /// Set by an I/O failure: everything answers `PreviousIo` until the partition is reopened.
    pub(crate) failed: bool,
    /// Set by `close`.
    pub(crate) closed: bool,
    /// Upload ids and rename tokens.
    pub(crate) rng: rand::rngs::SmallRng,
    /// Counters.
    pub(crate) stats: EngineStats,
    /// Source keys whose prepare-rename is between its checks and its durable intent: together
    /// with the manifest's intents they make a rename's claim on its source exclusive.
    pub(crate) rename_claims: BTreeSet<Vec<u8>>,
    /// Space reclamation: live scans, condemned Syrups.
    pub(crate) reclaim: reclaim::ReclaimState,
    /// The open replayed log records: the next maintenance flushes them, so that the log segments
    /// (and v1 WALs) they came from can be deleted.
    pub(crate) flush_after_open: bool,
}

pub(crate) struct Inner<S: Storage> {
    /// The engine itself, for the commit log's callbacks ([`crate::log::Committer`]).
    pub(crate) me: std::rc::Weak<Inner<S>>,
    /// The shard's commit log, and this partition's registration with it.
    pub(crate) log: CommitLog<S>,
    pub(crate) log_client: Cell<crate::log::ClientId>,
    pub(crate) storage: S,
    pub(crate) clock: Rc<dyn Clock>,
    pub(crate) config: EngineConfig,
    pub(crate) state: RefCell<State>,
    /// The manifest: the partition's durable state other than its log records.
    pub(crate) manifest: ManifestLog<S>,
    /// The Syrups this partition writes and reads.
    pub(crate) syrups: Syrups<S>,
    pub(crate) maintenance_lock: LocalMutex,
    pub(crate) background_tasks: Cell<usize>,
    /// The Box's versioning state, read when a mutation is stamped (`commit::queue`).
    pub(crate) versioning: Cell<crate::keyspace::Versioning>,
}

/// A partition engine. Cloning shares the same engine; it belongs to one shard (`!Send`).
pub struct Engine<S: Storage> {
    pub(crate) inner: Rc<Inner<S>>,
}

impl<S: Storage> Clone for Engine<S> {
    fn clone(&self) -> Self {
        Engine { inner: self.inner.clone() }
    }
}

impl<S: Storage> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("partition_dir", &self.inner.config.partition_dir).finish()
    }
}

/// What a GC pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Obsolete tables and WALs deleted.
    pub files_deleted: usize,
    /// Syrups deleted.
    pub syrups_deleted: Vec<SyrupId>,
    /// Syrups unreferenced but kept for the grace period.
    pub syrups_waiting: usize,
}

impl<S: Storage> Engine<S> {
    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// A copy of the counters.
    pub fn stats(&self) -> EngineStats {
        self.inner.state.borrow().stats.clone()
    }

    /// Number of tables per level.
    pub fn level_table_counts(&self) -> Vec<usize> {
        self.inner.state.borrow().lsm.version().levels().iter().map(Vec::len).collect()
    }

    /// Bytes of tables per level.
    pub fn level_bytes(&self) -> Vec<u64> {
        self.inner.state.borrow().lsm.version().levels().iter().map(|l| l.iter().map(|t| t.rec.size).sum()).collect()
    }

    /// Bytes of the live memtable and of the frozen one (0 when none), for metrics.
    pub fn memtable_bytes(&self) -> (usize, usize) {
        self.inner.state.borrow().mem.bytes()
    }

    /// This partition's index in its Box.
    pub fn partition(&self) -> u16 {
        self.inner.config.partition
    }

    /// Syrups this partition created and has not deleted.
    pub fn own_syrups(&self) -> BTreeSet<SyrupId> {
        self.inner.manifest.state().syrups.clone()
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Refuses work after an I/O failure or close.
    pub(crate) fn check_usable(&self) -> Result<()> {
        let st = self.inner.state.borrow();
        if st.failed {
            return Err(Error::PreviousIo);
        }
        if st.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// True when the partition stopped after an I/O failure (it answers `PreviousIo` until it is
    /// reopened; the node reopens it).
    pub fn is_failed(&self) -> bool {
        self.inner.state.borrow().failed
    }

    /// Marks the engine failed after an I/O error, and passes the error on — except a full disk
    /// met by a write or a create: then the bytes written so far belong to nothing durable (a
    /// reserved Syrup extent, a table, WAL or manifest not yet named; the WAL and manifest appends
    /// clear their tails before they get here), so the write is refused with `NoSpace` and the
    /// partition goes on. A full disk met by a sync still stops it: what reached the disk is then
    /// unknown.
    pub(crate) fn fail<T>(&self, e: impl Into<Error>) -> Result<T> {
        let e = e.into();
        if let Error::Io(io) = &e {
            if io.is_no_space() && matches!(io.op, "write" | "create") {
                tracing::debug!(partition_dir = %self.inner.config.partition_dir.display(), error = %e, "write refused: no space left");
                return Err(Error::NoSpace);
            }
        }
        self.stop(e)
    }

    /// Marks the engine failed after an I/O error and passes the error on.
    pub(crate) fn stop<T>(&self, e: Error) -> Result<T> {
        if matches!(e, Error::Io(_)) {
            tracing::error!(partition_dir = %self.inner.config.partition_dir.display(), error = %e, "partition stopped after I/O failure");
            self.inner.state.borrow_mut().failed = true;
        }
        Err(e)
    }

    /// Waits for background work to finish and refuses further requests. Everything acknowledged
    /// is already durable; closing only stops new work.
    pub async fn close(&self) {
        // Wait for background work without holding the maintenance lock (a background task may be
        // waiting for it), then take the lock so no maintenance step is half-done when we return.
        while self.inner.background_tasks.get() > 0 {
            crate::runtime::sleep(std::time::Duration::from_millis(1)).await;
        }
        let _m = self.inner.maintenance_lock.lock().await;
        self.inner.state.borrow_mut().closed = true;
        // A batch in the log's current record is answered before the partition leaves the log (a
        // reopen then finds it there); waiting ones are refused by the closed flag.
        while !self.inner.state.borrow().commit.is_idle() {
            crate::runtime::sleep(std::time::Duration::from_millis(1)).await;
        }
        self.inner.log.unregister(self.inner.log_client.get());
    }

    /// The shard commit log this partition commits through.
    pub fn commit_log(&self) -> &CommitLog<S> {
        &self.inner.log
    }
}
