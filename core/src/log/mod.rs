//! The shard commit log: one log per shard, shared by every partition the shard owns. One leader
//! per log batches every partition's waiting mutations into one record and one fdatasync (after
//! the fdatasyncs of the Syrups those mutations point into).
//!
//! The log owns its segments, its write position and its leader; a partition takes part through
//! the [`Committer`] trait (it hands over its waiting mutations, and is told where they became
//! durable), and tells the log which segment it still needs ([`CommitLog::set_need`]).
//!
//! Invariants:
//! - A record is written only at the end of the current segment, after every Syrup its
//!   mutations point into is durable; a mutation is acknowledged only after its record's
//!   fdatasync returned `Ok`.
//! - Positions handed to committers strictly increase.
//! - After a failed write or fdatasync (other than a full disk met by the write, whose partial
//!   bytes are zeroed) the log refuses every record with `PreviousIo` until it is restarted
//!   ([`CommitLog::restart`]) on a new segment.
//! - A segment is deleted only when it is not the current one and every registered partition's
//!   oldest unflushed record lies in a later segment.
//! - The leader runs as its own task, so a cancelled request never stalls commits.

pub mod format;
pub mod recover;

use std::{
    cell::RefCell,
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
    rc::{Rc, Weak},
};

pub use format::LogPosition;
use format::{RecordBuilder, SegmentHeader, SEGMENT_HEADER_BYTES};

use futures_channel::oneshot;

use crate::{
    error::{Error, IoError, Result},
    storage::{Storage, StorageFile},
};

/// Settings of a shard's log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// When the live segments hold more than this, the partitions holding the oldest one back
    /// are asked to flush, so the log stays bounded.
    pub bytes_max: u64,
    /// Write the next segment full of zeros in the background before it is needed
    /// (`LOG-<n>.prep`, renamed in at the roll): records then overwrite written blocks, and an
    /// fdatasync needs no journal commit for a size change (about half the latency on ext4).
    /// Paced by the current segment's filling ([`prepare_allowance`]). Off in
    /// `LogConfig::default()` (tests on the simulated disk); the node turns it on by default
    /// (`log_prepare_segments`).
    pub prepare: bool,
    /// When set, a segment is prepared only while the file system's free space (this reads it)
    /// stays above `prepare_reserve_bytes` after the preparation: zeros written ahead must not
    /// eat the space that puts, flushes and GC need.
    pub free_bytes: Option<FreeBytes>,
    /// Free space a preparation leaves, at least (with `free_bytes`).
    pub prepare_reserve_bytes: u64,
}

/// Reads the free space of the log's file system (cheaply: the node keeps it in an atomic).
#[derive(Clone)]
pub struct FreeBytes(pub std::sync::Arc<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for FreeBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FreeBytes({})", (self.0)())
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 * 1024 * 1024,
            bytes_max: 1024 * 1024 * 1024,
            prepare: false,
            free_bytes: None,
            prepare_reserve_bytes: 0,
        }
    }
}

/// Bytes of zeros a preparation writes, and makes durable, at a time: the most that a record's
/// fdatasync can find queued ahead of it on the device because of a preparation.
const PREPARE_WRITE_BYTES: u64 = 1024 * 1024;

/// The name of segment `number` while it is being prepared.
fn prep_name(number: u64) -> String {
    format!("{}{PREP_SUFFIX}", format::file_name(number))
}

/// The suffix of a segment being prepared: recovery ignores such files (they hold no record).
pub const PREP_SUFFIX: &str = ".prep";

/// What a committer did with the room it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    /// Nothing was waiting.
    Nothing,
    /// Mutations wait but none can go in this record (none fitted, or the partition already has
    /// a section in it): queue it for the next one.
    Later,
    /// It added its section; `more` when mutations are left for the next record.
    Section {
        /// Mutations are left that did not fit.
        more: bool,
    },
}

/// The batch a leader builds: the record and the Syrup files to make durable before it.
#[derive(Debug)]
pub struct Batch<F> {
    /// The record being built.
    pub record: RecordBuilder,
    /// Files to fdatasync before the record is written.
    pub syncs: Vec<F>,
}

/// A partition as the log sees it.
pub trait Committer<F> {
    /// Moves the partition's waiting mutations (as many as fit) into `batch` as one section, with
    /// the Syrups they need synced.
    fn take(&self, batch: &mut Batch<F>) -> Took;
    /// The mutations last taken are durable and end at `end` (`Ok`), or failed.
    fn complete(&self, result: std::result::Result<LogPosition, &Error>);
    /// The log grew past its bound and this partition holds its oldest segment: flush.
    fn flush_wanted(&self);
}

/// Counters of one log.
#[derive(Debug, Default, Clone)]
pub struct LogStats {
    /// Records written (group commits).
    pub records: u64,
    /// Sections written (partition batches).
    pub sections: u64,
    /// Mutations written.
    pub ops: u64,
    /// Records by mutation count: bucket `i` counts records of `(2^(i-1), 2^i]` mutations
    /// (bucket 0: exactly one), the last bucket everything larger
    /// ([`commit_size_bucket`]).
    pub record_sizes: [u64; crate::limits::GROUP_COMMIT_SIZE_BUCKETS],
    /// fdatasyncs of the log.
    pub syncs: u64,
    /// fdatasyncs of Syrups made for its records.
    pub syrup_syncs: u64,
    /// Segments created.
    pub segments_created: u64,
    /// Segments created from a prepared (zero-filled) file.
    pub segments_prepared: u64,
    /// Preparations not started because the file system had too little free space.
    pub prepares_skipped: u64,
    /// Segments deleted.
    pub segments_deleted: u64,
    /// Flushes asked of partitions that held the log past its bound.
    pub flushes_wanted: u64,
}

struct Client<F> {
    committer: Weak<dyn Committer<F>>,
    /// The oldest segment holding a record of this partition that is not flushed yet.
    need: Option<u64>,
}

struct State<F> {
    file: Option<F>,
    segment: u64,
    len: u64,
    durable: LogPosition,
    first: u64,
    /// Closed segments of this run, oldest first, with their sizes.
    closed: VecDeque<(u64, u64)>,
    ready: VecDeque<Rc<dyn Committer<F>>>,
    leader: bool,
    failed: bool,
    buffer: Vec<u8>,
    clients: BTreeMap<u64, Client<F>>,
    next_client: u64,
    stats: LogStats,
    /// The next segment, written full of zeros ahead of the roll: its number and file.
    prepared: Option<(u64, F)>,
    /// A preparation is running.
    preparing: bool,
    /// A preparation waiting for the current segment to fill further (the allowance it waits
    /// for, and its wake-up): see [`prepare_allowance`].
    pacer: Option<(u64, oneshot::Sender<()>)>,
}

struct Inner<S: Storage> {
    storage: S,
    dir: PathBuf,
    shard: u16,
    base: u64,
    stride: u64,
    config: LogConfig,
    state: RefCell<State<S::File>>,
}

/// A shard's commit log. Cloning shares it; it belongs to one shard (`!Send`).
pub struct CommitLog<S: Storage> {
    inner: Rc<Inner<S>>,
}

impl<S: Storage> Clone for CommitLog<S> {
    fn clone(&self) -> Self {
        CommitLog { inner: self.inner.clone() }
    }
}

impl<S: Storage> std::fmt::Debug for CommitLog<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitLog").field("dir", &self.inner.dir).finish()
    }
}

/// The writer of a log: a shard in one node start. Positions of one writer are ordered; a
/// partition's records are in one writer's log between two node starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LogWriter {
    /// The first segment number of the node start (every segment of that start is at or above
    /// it, every segment of an earlier start below it).
    pub base: u64,
    /// The shard.
    pub shard: u16,
}

/// A registration of a partition with a log: its id for [`CommitLog::set_need`].
pub type ClientId = u64;

impl<S: Storage> CommitLog<S> {
    /// Starts a log in `dir` whose first segment is `first_segment`; later ones are numbered
    /// `stride` apart (the shards of a node interleave their numbers, so every segment number of a
    /// run is unique on the node without the shards talking). `base` is the first segment number
    /// of this node start (shard `s` starts at `base + s`).
    ///
    /// # Errors
    /// I/O failures creating the directory or the first segment.
    pub async fn create(
        storage: S,
        dir: impl Into<PathBuf>,
        shard: u16,
        base: u64,
        first_segment: u64,
        stride: u64,
        config: LogConfig,
    ) -> Result<CommitLog<S>> {
        assert!(base > 0 && base <= first_segment && stride > 0);
        let dir = dir.into();
        storage.create_dir_all(&dir).await?;
        let header = SegmentHeader {
            shard,
            number: first_segment,
            base,
            first: first_segment,
            previous: 0,
            previous_end: Some(0),
        };
        // Segments prepared by an earlier run of this directory hold nothing.
        recover::discard_prepared(&storage, std::slice::from_ref(&dir)).await?;
        let file = create_segment(&storage, &dir, &header).await?;
        let log = CommitLog {
            inner: Rc::new(Inner {
                storage,
                dir,
                shard,
                base,
                stride,
                config,
                state: RefCell::new(State {
                    file: Some(file),
                    segment: first_segment,
                    len: SEGMENT_HEADER_BYTES as u64,
                    durable: LogPosition::start_of(first_segment),
                    first: first_segment,
                    closed: VecDeque::new(),
                    ready: VecDeque::new(),
                    leader: false,
                    failed: false,
                    buffer: Vec::new(),
                    clients: BTreeMap::new(),
                    next_client: 1,
                    stats: LogStats { segments_created: 1, ..Default::default() },
                    prepared: None,
                    preparing: false,
                    pacer: None,
                }),
            }),
        };
        log.start_preparing();
        Ok(log)
    }

    /// True when `other` is this same log (its partitions can commit together in one record).
    pub fn same_log(&self, other: &CommitLog<S>) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Who writes this log: the node start's base segment number and the shard. Positions are
    /// comparable only between logs of one writer.
    pub fn writer(&self) -> LogWriter {
        LogWriter { base: self.inner.base, shard: self.inner.shard }
    }

    /// The position just past the last durable record: a partition opened now has every record
    /// of its before it.
    pub fn durable_end(&self) -> LogPosition {
        self.inner.state.borrow().durable
    }

    /// A copy of the counters.
    pub fn stats(&self) -> LogStats {
        self.inner.state.borrow().stats.clone()
    }

    /// Bytes of the live segments of this run (closed ones and the current one).
    pub fn live_bytes(&self) -> u64 {
        let st = self.inner.state.borrow();
        st.closed.iter().map(|(_, b)| *b).sum::<u64>() + st.len
    }

    /// Refuses new mutations after a failure.
    ///
    /// # Errors
    /// `PreviousIo` once a write or fdatasync of the log failed (until [`CommitLog::restart`]).
    pub fn check(&self) -> Result<()> {
        if self.inner.state.borrow().failed {
            return Err(Error::PreviousIo);
        }
        Ok(())
    }

    /// True after a failure, until [`CommitLog::restart`].
    pub fn is_failed(&self) -> bool {
        self.inner.state.borrow().failed
    }

    /// Registers a partition; it starts with no unflushed record.
    pub fn register(&self, committer: Weak<dyn Committer<S::File>>) -> ClientId {
        let mut st = self.inner.state.borrow_mut();
        let id = st.next_client;
        st.next_client += 1;
        st.clients.insert(id, Client { committer, need: None });
        id
    }

    /// Forgets a partition (closed or deleted).
    pub fn unregister(&self, id: ClientId) {
        self.inner.state.borrow_mut().clients.remove(&id);
    }

    /// Records the oldest segment holding an unflushed record of partition `id` (`None`: all
    /// flushed).
    pub fn set_need(&self, id: ClientId, need: Option<u64>) {
        if let Some(c) = self.inner.state.borrow_mut().clients.get_mut(&id) {
            c.need = need;
        }
    }

    /// Queues a partition with waiting mutations, starting a leader when none runs.
    pub fn enqueue(&self, committer: Rc<dyn Committer<S::File>>) {
        let mut st = self.inner.state.borrow_mut();
        st.ready.push_back(committer);
        if !st.leader {
            st.leader = true;
            drop(st);
            let log = self.clone();
            crate::runtime::spawn(async move { log.lead().await });
        }
    }

    async fn lead(self) {
        loop {
            let (queued, buffer) = {
                let mut st = self.inner.state.borrow_mut();
                if st.ready.is_empty() {
                    st.leader = false;
                    return;
                }
                (std::mem::take(&mut st.ready), std::mem::take(&mut st.buffer))
            };
            let mut batch = Batch { record: RecordBuilder::new(buffer), syncs: Vec::new() };
            let mut members = Vec::with_capacity(queued.len());
            let mut again = Vec::new();
            let mut queued = queued.into_iter();
            for c in queued.by_ref() {
                match c.take(&mut batch) {
                    Took::Nothing => {}
                    Took::Later => again.push(c),
                    Took::Section { more } => {
                        if more {
                            again.push(c.clone());
                        }
                        members.push(c);
                    }
                }
                if !batch.record.fits(1, 0) {
                    break;
                }
            }
            {
                // What did not fit goes first next time, then whoever has more.
                let mut st = self.inner.state.borrow_mut();
                let rest: Vec<_> = queued.collect();
                for c in rest.into_iter().chain(again).rev() {
                    st.ready.push_front(c);
                }
            }
            if members.is_empty() {
                self.inner.state.borrow_mut().buffer = batch.record.finish_empty();
                // Only committers that could not go in an empty record: let the rest of the shard
                // run before trying again (they wait for each other's turn in an order that the
                // next round settles; never spin the core).
                crate::runtime::yield_now().await;
                continue;
            }
            let written = if self.is_failed() { Err(Error::PreviousIo) } else { self.write(batch).await };
            match written {
                Ok(end) => {
                    for c in &members {
                        c.complete(Ok(end));
                    }
                }
                Err(e) => {
                    for c in &members {
                        c.complete(Err(&e));
                    }
                }
            }
        }
    }

    /// Makes the batch's Syrups durable, then writes and syncs its record.
    async fn write(&self, batch: Batch<S::File>) -> Result<LogPosition> {
        let Batch { record, syncs } = batch;
        let syrup_syncs = syncs.len() as u64;
        sync_all(syncs).await.map_err(|e| self.failed(e.into()))?;
        if self.inner.state.borrow().len >= self.inner.config.segment_bytes {
            self.roll(false).await.map_err(|e| self.failed(e))?;
        }
        let (file, offset) = {
            let st = self.inner.state.borrow();
            (st.file.clone(), st.len)
        };
        let file = file.ok_or(Error::Closed)?;
        let sections = u64::from(record.sections());
        let ops = record.ops() as u64;
        let bytes = record.finish(offset);
        let n = bytes.len() as u64;
        let bytes = match file.write_at(bytes, offset).await {
            Ok(b) => b,
            Err(e) if e.is_no_space() => {
                // Part of the record may be in the file: zero it, so the next record (written at
                // the same offset) has nothing but zeros behind it, which recovery reads as an
                // unwritten tail, never as a damaged record.
                if let Err(e) = clear_tail(&file, offset).await {
                    return Err(self.failed(e.into()));
                }
                return Err(Error::NoSpace);
            }
            Err(e) => return Err(self.failed(e.into())),
        };
        {
            // The length advances only after the write: a failed write stops the log, so nothing
            // is ever appended behind a hole.
            let mut st = self.inner.state.borrow_mut();
            st.len = offset + n;
            if bytes.capacity() <= crate::limits::WAL_BUFFER_KEEP_BYTES {
                st.buffer = bytes;
            }
            let len = st.len;
            if st.pacer.as_ref().is_some_and(|(wants, _)| prepare_allowance(&self.inner.config, len) >= *wants) {
                wake_pacer(&mut st);
            }
        }
        file.sync_data().await.map_err(|e| self.failed(e.into()))?;
        let mut st = self.inner.state.borrow_mut();
        let end = LogPosition { segment: st.segment, offset: offset + n };
        assert!(end > st.durable, "log positions increase");
        st.durable = end;
        st.stats.records += 1;
        st.stats.sections += sections;
        st.stats.ops += ops;
        if let Some(b) = st.stats.record_sizes.get_mut(commit_size_bucket(ops as usize)) {
            *b += 1;
        }
        st.stats.syncs += 1;
        st.stats.syrup_syncs += syrup_syncs;
        Ok(end)
    }

    fn failed(&self, e: Error) -> Error {
        tracing::error!(dir = %self.inner.dir.display(), error = %e, "commit log stopped after an I/O failure; the shard's writes are refused until it restarts its log");
        let mut st = self.inner.state.borrow_mut();
        st.failed = true;
        wake_pacer(&mut st);
        e
    }

    /// Closes the current segment and starts the next one; asks the partitions holding the
    /// oldest segment to flush when the log is past its bound.
    ///
    /// A `new_run` segment starts a chain of its own (after a failure: the old segment may end in
    /// a torn record, which recovery accepts only at the end of a run).
    async fn roll(&self, new_run: bool) -> Result<()> {
        let (header, prepared) = {
            let mut st = self.inner.state.borrow_mut();
            let number = st.segment + self.inner.stride;
            let header = if new_run {
                SegmentHeader {
                    shard: self.inner.shard,
                    number,
                    base: self.inner.base,
                    first: number,
                    previous: 0,
                    previous_end: Some(0),
                }
            } else {
                let end = u32::try_from(st.len).map_err(|_| {
                    Error::invalid("log_segment_bytes", "a segment grew past 4 GiB: use segments of at most 1 GiB")
                })?;
                SegmentHeader {
                    shard: self.inner.shard,
                    number,
                    base: self.inner.base,
                    first: st.first,
                    previous: st.segment,
                    previous_end: Some(end),
                }
            };
            let prepared = match st.prepared.take() {
                Some((n, f)) if n == number => Some(f),
                _ => None,
            };
            (header, prepared)
        };
        let file = match prepared {
            Some(f) => self.install_prepared(f, &header).await?,
            None => create_segment(&self.inner.storage, &self.inner.dir, &header).await?,
        };
        let wanted = {
            let mut st = self.inner.state.borrow_mut();
            let (old, len) = (st.segment, st.len);
            st.closed.push_back((old, len));
            st.file = Some(file);
            st.segment = header.number;
            st.first = header.first;
            st.len = SEGMENT_HEADER_BYTES as u64;
            st.durable = LogPosition::start_of(header.number);
            st.stats.segments_created += 1;
            // A preparation of the segment just started is stale: let it see that and stop.
            wake_pacer(&mut st);
            let live = st.closed.iter().map(|(_, b)| *b).sum::<u64>() + st.len;
            let oldest = st.closed.front().map(|(s, _)| *s);
            match oldest {
                Some(oldest) if live > self.inner.config.bytes_max => {
                    let wanted: Vec<_> = st
                        .clients
                        .values()
                        .filter(|c| c.need.is_some_and(|n| n <= oldest))
                        .filter_map(|c| c.committer.upgrade())
                        .collect();
                    st.stats.flushes_wanted += wanted.len() as u64;
                    wanted
                }
                _ => Vec::new(),
            }
        };
        for c in wanted {
            c.flush_wanted();
        }
        self.start_preparing();
        Ok(())
    }

    /// Makes a prepared file segment `header.number`: its header, made durable, then its name.
    async fn install_prepared(&self, file: S::File, header: &SegmentHeader) -> Result<S::File> {
        let dir = &self.inner.dir;
        file.write_at(format::encode_header(header), 0).await?;
        file.sync_data().await?;
        self.inner
            .storage
            .rename(&dir.join(prep_name(header.number)), &dir.join(format::file_name(header.number)))
            .await?;
        self.inner.storage.sync_dir(dir).await?;
        self.inner.state.borrow_mut().stats.segments_prepared += 1;
        Ok(file)
    }

    /// Starts writing the next segment full of zeros in the background, unless preparation is
    /// off, one is ready or running, or the log failed.
    fn start_preparing(&self) {
        if !self.inner.config.prepare {
            return;
        }
        let number = {
            let mut st = self.inner.state.borrow_mut();
            let number = st.segment + self.inner.stride;
            if st.preparing || st.failed || st.prepared.as_ref().is_some_and(|(n, _)| *n == number) {
                return;
            }
            if let Some(free) = &self.inner.config.free_bytes {
                let want = prepared_bytes(&self.inner.config).saturating_add(self.inner.config.prepare_reserve_bytes);
                if (free.0)() < want {
                    st.stats.prepares_skipped += 1;
                    return;
                }
            }
            st.preparing = true;
            number
        };
        // The task holds the log weakly while it waits, so a dropped log ends it.
        let weak = Rc::downgrade(&self.inner);
        let path = self.inner.dir.join(prep_name(number));
        crate::runtime::spawn(async move {
            let made = prepare(&weak, number, &path).await;
            let Some(inner) = weak.upgrade() else { return };
            let log = CommitLog { inner };
            let (stale, rolled_past) = {
                let mut st = log.inner.state.borrow_mut();
                st.preparing = false;
                match made {
                    // Still the next segment: it waits for the roll.
                    Ok(Some(file)) if st.segment < number => {
                        st.prepared = Some((number, file));
                        (false, false)
                    }
                    Ok(_) => (true, !st.failed),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "preparing the next commit log segment failed; the roll creates it as it goes");
                        (true, false)
                    }
                }
            };
            if stale {
                let _ = log.inner.storage.remove(&path).await;
            }
            if rolled_past {
                // The log rolled before this one was ready: prepare the segment after the current.
                log.start_preparing();
            }
        });
    }

    /// Deletes the closed segments that no registered partition needs any more.
    ///
    /// # Errors
    /// I/O failures removing them (they are retried by the next call).
    pub async fn release(&self) -> Result<()> {
        let doomed: Vec<u64> = {
            let mut st = self.inner.state.borrow_mut();
            let need = st.clients.values().filter_map(|c| c.need).min().unwrap_or(u64::MAX).min(st.segment);
            let mut doomed = Vec::new();
            while let Some(&(s, _)) = st.closed.front() {
                if s >= need {
                    break;
                }
                st.closed.pop_front();
                doomed.push(s);
            }
            doomed
        };
        if doomed.is_empty() {
            return Ok(());
        }
        for s in &doomed {
            match self.inner.storage.remove(&self.inner.dir.join(format::file_name(*s))).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.inner.storage.sync_dir(&self.inner.dir).await?;
        self.inner.state.borrow_mut().stats.segments_deleted += doomed.len() as u64;
        Ok(())
    }

    /// Starts a new segment after a failure, so the shard's partitions can be reopened and
    /// written again: nothing is appended behind what the failure left in the old segment.
    ///
    /// # Errors
    /// I/O failures creating the segment (the log stays failed).
    pub async fn restart(&self) -> Result<()> {
        if !self.is_failed() {
            return Ok(());
        }
        self.roll(true).await?;
        self.inner.state.borrow_mut().failed = false;
        tracing::info!(dir = %self.inner.dir.display(), "commit log restarted on a new segment");
        Ok(())
    }

    /// Reads the records of one partition from this run's live segments (a partition reopened
    /// while the node runs, after an I/O failure), up to the durable end.
    ///
    /// # Errors
    /// I/O failures.
    pub async fn replay_live(&self, box_uid: crate::types::BoxUid, partition: u16) -> Result<recover::Replay> {
        let durable = self.durable_end();
        let mut found = recover::recover(&self.inner.storage, std::slice::from_ref(&self.inner.dir)).await?;
        let mut replay = found.take(box_uid, partition);
        replay.batches.retain(|b| b.end <= durable);
        Ok(replay)
    }
}

/// Bytes of a prepared segment: `segment_bytes` rounded up to 64 KiB (the record that crosses
/// `segment_bytes` usually lands in it too).
fn prepared_bytes(config: &LogConfig) -> u64 {
    config.segment_bytes.max(1).next_multiple_of(64 * 1024)
}

/// Bytes of zeros the preparation of the next segment may have written once the current segment
/// holds `len` bytes: one write at once, the rest spread over the current segment's filling, so
/// the whole is ready when it is two-thirds full. The zeros then reach the device in small steps
/// between records, instead of as one long write that every record's fdatasync queues behind.
fn prepare_allowance(config: &LogConfig, len: u64) -> u64 {
    let total = prepared_bytes(config);
    let filled = u128::from(len.saturating_sub(SEGMENT_HEADER_BYTES as u64));
    let paced = filled * 3 / 2 * u128::from(total) / u128::from(config.segment_bytes.max(1));
    PREPARE_WRITE_BYTES.saturating_add(u64::try_from(paced).unwrap_or(u64::MAX)).min(total)
}

/// Wakes a preparation waiting for the log (it re-reads the state: more room, a roll, a failure).
fn wake_pacer<F>(st: &mut State<F>) {
    if let Some((_, tx)) = st.pacer.take() {
        let _ = tx.send(());
    }
}

/// Writes segment `number` full of zeros under `path` (its `.prep` name), a durable write of
/// [`PREPARE_WRITE_BYTES`] at a time paced by [`prepare_allowance`]; its name is made durable by
/// the rename at the roll. `Ok(None)`: stopped because the segment is no longer wanted (the log
/// rolled to it or past it, failed, or was dropped).
async fn prepare<S: Storage>(log: &Weak<Inner<S>>, number: u64, path: &Path) -> Result<Option<S::File>> {
    let (file, total) = {
        let Some(inner) = log.upgrade() else { return Ok(None) };
        let _ = inner.storage.remove(path).await;
        (inner.storage.create(path).await?, prepared_bytes(&inner.config))
    };
    let mut buf = Vec::new();
    let mut at = 0u64;
    while at < total {
        let n = (total - at).min(PREPARE_WRITE_BYTES);
        loop {
            let woken = {
                let Some(inner) = log.upgrade() else { return Ok(None) };
                let mut st = inner.state.borrow_mut();
                if st.failed || st.segment >= number {
                    return Ok(None);
                }
                if prepare_allowance(&inner.config, st.len) >= at + n {
                    break;
                }
                let (tx, rx) = oneshot::channel();
                st.pacer = Some((at + n, tx));
                rx
            };
            if woken.await.is_err() {
                return Ok(None);
            }
        }
        buf.resize(usize::try_from(n).unwrap_or(0), 0);
        buf = file.write_at(buf, at).await?;
        file.sync_data().await?;
        at += n;
    }
    Ok(Some(file))
}

async fn create_segment<S: Storage>(storage: &S, dir: &Path, header: &SegmentHeader) -> Result<S::File> {
    let path = dir.join(format::file_name(header.number));
    let file = storage.create(&path).await?;
    if let Err(e) = file.write_at(format::encode_header(header), 0).await {
        if e.is_no_space() {
            let _ = storage.remove(&path).await;
        }
        return Err(e.into());
    }
    file.sync_data().await?;
    storage.sync_dir(dir).await?;
    Ok(file)
}

/// fdatasyncs every file, at the same time when there are several.
async fn sync_all<F: StorageFile>(files: Vec<F>) -> std::result::Result<(), IoError> {
    let mut files = files.into_iter();
    let Some(first) = files.next() else { return Ok(()) };
    let others: Vec<_> = files.map(|f| crate::runtime::spawn(async move { f.sync_data().await })).collect();
    let mut result = first.sync_data().await;
    for o in others {
        let r = o.await;
        if result.is_ok() {
            result = r;
        }
    }
    result
}

/// The bucket of a histogram of group commit sizes that a commit of `mutations` falls in: bucket
/// `i` counts commits of `(2^(i-1), 2^i]` mutations (bucket 0: exactly one), the last bucket
/// everything larger.
pub fn commit_size_bucket(mutations: usize) -> usize {
    let bits = usize::BITS - mutations.max(1).saturating_sub(1).leading_zeros();
    (bits as usize).min(crate::limits::GROUP_COMMIT_SIZE_BUCKETS - 1)
}

/// Overwrites whatever lies in `file` from `from` to its end with zeros and makes that durable:
/// what a failed append left behind reads as an unwritten tail. Overwriting bytes already
/// allocated needs no new space.
///
/// # Errors
/// I/O failures (the caller stops).
pub(crate) async fn clear_tail<F: StorageFile>(file: &F, from: u64) -> std::result::Result<(), IoError> {
    let len = file.len().await?;
    if len > from {
        let zeros = vec![0u8; usize::try_from(len - from).unwrap_or(usize::MAX)];
        file.write_at(zeros, from).await?;
        file.sync_data().await?;
    }
    Ok(())
}
