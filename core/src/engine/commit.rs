//! Group commit: mutations queue up while a leader task makes a batch durable (fdatasync of every
//! Syrup written, then one WAL record and one WAL fdatasync), applies it to the memtable, and
//! wakes every waiter.
//!
//! Invariants:
//! - Stamps are taken when a mutation joins the queue, so WAL order is HLC order.
//! - Conditional mutations (delete-if-HLC-equals, copy, rename) are decided when they join the
//!   queue, against the state plus every queued mutation, in one synchronous step: nothing can
//!   slip in between the check and the stamp.
//! - The queue is bounded: a partition with too much queued work answers `Busy`.
//! - One leader at a time; it runs as its own task, so a cancelled request never stalls commits.

use std::{collections::VecDeque, rc::Rc};

use bytes::Bytes;
use futures_channel::oneshot;

use super::Engine;
use crate::{
    error::{Error, IoError, Result},
    hlc::Hlc,
    locator::CandyLocator,
    record,
    storage::{Storage, StorageFile},
    types::RangeTombstone,
    wal::{self, WalOpRef},
};

/// One mutation.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Set {
        key: Bytes,
        value: Bytes,
        locator: CandyLocator,
    },
    DeleteRange(RangeTombstone),
    /// The same version of a Candy with its Parts moved to other Syrup bytes (space
    /// reclamation): it keeps its stamp, so it stays the version renames and readers know.
    Relocate {
        key: Bytes,
        locator: CandyLocator,
    },
}

impl Op {
    /// A Set of `locator` under `key`; the stamp is set when it joins the queue.
    pub(crate) fn set(key: &[u8], locator: CandyLocator) -> Op {
        Op::Set { key: Bytes::copy_from_slice(key), value: Bytes::new(), locator }
    }

    fn wal_op(&self) -> WalOpRef<'_> {
        match self {
            Op::Set { key, value, .. } => WalOpRef::Set { key, locator: value },
            Op::DeleteRange(rt) => WalOpRef::DeleteRange(rt),
            Op::Relocate { .. } => unreachable!("a relocation is turned into a Set when it joins the queue"),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Op::Set { key, value, .. } => key.len() + value.len() + 8,
            Op::DeleteRange(rt) => rt.start.len() + rt.end.len() + 32,
            Op::Relocate { key, .. } => key.len() + 8,
        }
    }
}

/// A mutation queued for the group commit: [`Pending::durable`] waits until it is durable and
/// visible (or failed). Dropping it does not withdraw the mutation.
#[must_use = "a queued mutation is acknowledged only once `durable` returns"]
pub struct Pending<T> {
    rx: Option<oneshot::Receiver<Result<()>>>,
    value: T,
}

impl<T> Pending<T> {
    /// Waits for the group commit that holds the mutation.
    ///
    /// # Errors
    /// The commit's I/O failure (`Io`), or `PreviousIo` when the partition failed before it.
    pub async fn durable(self) -> Result<T> {
        if let Some(rx) = self.rx {
            match rx.await {
                Ok(r) => r?,
                Err(_) => return Err(Error::PreviousIo),
            }
        }
        Ok(self.value)
    }

    /// The same pending mutation with its value mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Pending<U> {
        Pending { rx: self.rx, value: f(self.value) }
    }
}

struct Waiting {
    ops: Vec<Op>,
    done: oneshot::Sender<Result<()>>,
}

/// The queue of mutations waiting for durability.
#[derive(Default)]
pub(crate) struct CommitQueue {
    pending: VecDeque<Waiting>,
    inflight: Vec<Op>,
    leader: bool,
}

impl CommitQueue {
    /// The newest queued version of `key`: `Some(Some(locator))` for a queued Set,
    /// `Some(None)` when a queued range tombstone deletes it, `None` when nothing queued touches it.
    pub(crate) fn newest(&self, key: &[u8]) -> Option<Option<CandyLocator>> {
        let queued = self.pending.iter().rev().flat_map(|w| w.ops.iter().rev()).chain(self.inflight.iter().rev());
        for op in queued {
            match op {
                Op::Set { key: k, locator, .. } if k.as_ref() == key => {
                    return Some(locator.is_live().then(|| locator.clone()));
                }
                Op::DeleteRange(rt) if rt.covers_key(key) => return Some(None),
                _ => {}
            }
        }
        None
    }

    /// Every Syrup referenced by a queued mutation.
    pub(crate) fn syrups(&self) -> Vec<crate::types::SyrupId> {
        let queued = self.pending.iter().flat_map(|w| w.ops.iter()).chain(self.inflight.iter());
        queued
            .filter_map(|op| match op {
                Op::Set { locator, .. } | Op::Relocate { locator, .. } => Some(locator.syrups().collect::<Vec<_>>()),
                Op::DeleteRange(_) => None,
            })
            .flatten()
            .collect()
    }
}

/// Copies an error for the other waiters of a failed batch.
fn share(e: &Error) -> Error {
    match e {
        Error::NoSpace => Error::NoSpace,
        Error::Io(io) => {
            let source = match io.source.raw_os_error() {
                Some(errno) => std::io::Error::from_raw_os_error(errno),
                None => std::io::Error::new(io.source.kind(), io.source.to_string()),
            };
            Error::Io(IoError::new(io.op, io.path.clone(), source))
        }
        _ => Error::PreviousIo,
    }
}

impl<S: Storage> Engine<S> {
    /// Refuses new writes when the partition is overloaded.
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_usable()?;
        let st = self.inner.state.borrow();
        let cfg = &self.inner.config;
        if st.version.levels.first().map_or(0, Vec::len) >= cfg.l0_stall {
            return Err(Error::Busy { reason: "too many L0 tables", retry_after_ms: 200 });
        }
        if st.mem.bytes() >= cfg.memtable_bytes.saturating_mul(2) {
            return Err(Error::Busy { reason: "memtable full while a flush is running", retry_after_ms: 50 });
        }
        if st.commit.pending.len() >= crate::limits::COMMIT_QUEUE_WAITERS_MAX {
            return Err(Error::Busy { reason: "commit queue full", retry_after_ms: 10 });
        }
        Ok(())
    }

    /// Stamps `ops`, queues them and waits until they are durable and visible.
    ///
    /// `decide` runs synchronously with the state and the queue and returns the ops to commit
    /// (or `None` to commit nothing); this is where conditional mutations check their condition.
    ///
    /// # Returns
    /// `decide`'s value and the stamp of the first op (`Hlc::ZERO` when nothing was committed).
    pub(crate) async fn commit_with<T>(&self, decide: impl FnOnce(&Self) -> Result<(Vec<Op>, T)>) -> Result<(T, Hlc)> {
        self.admit_with(decide)?.durable().await
    }

    /// The synchronous half of [`Engine::commit_with`]: checks, decides, stamps and queues `ops`
    /// (starting a leader when none runs), without waiting. The ops are durable and visible once
    /// the returned [`Pending`] resolves; dropping it does not withdraw them.
    pub(crate) fn admit_with<T>(
        &self,
        decide: impl FnOnce(&Self) -> Result<(Vec<Op>, T)>,
    ) -> Result<Pending<(T, Hlc)>> {
        self.check_writable()?;
        let (ops, out) = decide(self)?;
        if ops.is_empty() {
            return Ok(Pending { rx: None, value: (out, Hlc::ZERO) });
        }
        let mut first = None;
        let rx = {
            let mut st = self.inner.state.borrow_mut();
            let wall = self.inner.clock.now_ms();
            let mut stamped = Vec::with_capacity(ops.len());
            for op in ops {
                let hlc = match &op {
                    Op::Relocate { locator, .. } => locator.hlc,
                    _ => st.clock.now(wall),
                };
                first.get_or_insert(hlc);
                stamped.push(match op {
                    Op::Set { key, mut locator, .. } => {
                        locator.hlc = hlc;
                        let value = Bytes::from(locator.encode());
                        Op::Set { key, value, locator }
                    }
                    Op::DeleteRange(mut rt) => {
                        rt.hlc = hlc;
                        Op::DeleteRange(rt)
                    }
                    Op::Relocate { key, locator } => {
                        let value = Bytes::from(locator.encode());
                        Op::Set { key, value, locator }
                    }
                });
            }
            let (tx, rx) = oneshot::channel();
            st.commit.pending.push_back(Waiting { ops: stamped, done: tx });
            if !st.commit.leader {
                st.commit.leader = true;
                let engine = self.clone();
                drop(st);
                crate::runtime::spawn(async move { engine.lead_commits().await });
            }
            rx
        };
        Ok(Pending { rx: Some(rx), value: (out, first.unwrap_or(Hlc::ZERO)) })
    }

    /// Commits `ops` unconditionally and returns the first op's stamp.
    pub(crate) async fn commit(&self, ops: Vec<Op>) -> Result<Hlc> {
        Ok(self.commit_with(|_| Ok((ops, ()))).await?.1)
    }

    async fn lead_commits(self) {
        loop {
            let (ops, waiters, dirty) = {
                let mut st = self.inner.state.borrow_mut();
                if st.commit.pending.is_empty() || st.failed {
                    st.commit.leader = false;
                    let err = if st.failed { Some(()) } else { None };
                    let rest: Vec<_> = st.commit.pending.drain(..).collect();
                    drop(st);
                    if err.is_some() {
                        for w in rest {
                            let _ = w.done.send(Err(Error::PreviousIo));
                        }
                    }
                    return;
                }
                let mut ops = Vec::new();
                let mut waiters = Vec::new();
                let mut bytes = 0usize;
                while let Some(front) = st.commit.pending.front() {
                    let add: usize = front.ops.iter().map(Op::bytes).sum();
                    let fits = ops.len() + front.ops.len() <= crate::limits::COMMIT_BATCH_OPS_MAX
                        && bytes + add <= crate::limits::WAL_RECORD_BYTES_MAX / 2;
                    if !waiters.is_empty() && !fits {
                        break;
                    }
                    let Some(w) = st.commit.pending.pop_front() else { break };
                    bytes += add;
                    ops.extend(w.ops.iter().cloned());
                    waiters.push(w.done);
                }
                st.commit.inflight = ops.clone();
                let dirty: Vec<_> = std::mem::take(&mut st.dirty_syrups).into_iter().collect();
                (ops, waiters, dirty)
            };
            let wal_guard = self.inner.wal_lock.lock().await;
            match self.write_batch(&ops, &dirty).await {
                Ok(()) => {
                    {
                        let mut st = self.inner.state.borrow_mut();
                        st.stats.commit_batches += 1;
                        st.stats.commit_ops += ops.len() as u64;
                        if let Some(b) = st.stats.commit_sizes.get_mut(super::commit_size_bucket(ops.len())) {
                            *b += 1;
                        }
                        for op in std::mem::take(&mut st.commit.inflight) {
                            match op {
                                Op::Set { key, value, locator } => {
                                    st.reclaim.committed(&locator);
                                    st.mem.set(key, value, &locator);
                                }
                                Op::DeleteRange(rt) => st.mem.delete_range(rt),
                                Op::Relocate { .. } => unreachable!("stamped into a Set"),
                            }
                        }
                    }
                    drop(wal_guard);
                    for w in waiters {
                        let _ = w.send(Ok(()));
                    }
                    if let Err(e) = self.maybe_rotate().await {
                        let _: Result<()> = self.fail(e);
                    }
                }
                Err(e) => {
                    drop(wal_guard);
                    self.inner.state.borrow_mut().commit.inflight.clear();
                    for w in waiters {
                        let _ = w.send(Err(share(&e)));
                    }
                    // A full disk refused this batch and nothing of it is in the WAL: the next
                    // batch may go through (a delete, once space is freed).
                    if !matches!(e, Error::NoSpace) {
                        let _: Result<()> = self.fail(e);
                    }
                }
            }
        }
    }

    /// Makes the Syrups written and then the WAL record durable.
    async fn write_batch(&self, ops: &[Op], dirty: &[crate::types::SyrupId]) -> Result<()> {
        for id in dirty {
            let file = self.inner.state.borrow().syrup_files.get(id).cloned();
            if let Some(f) = file {
                f.sync_data().await?;
                self.inner.state.borrow_mut().stats.syrup_syncs += 1;
            }
        }

        let (file, offset, mut rec) = {
            let mut st = self.inner.state.borrow_mut();
            // One buffer, reused batch after batch: no allocation (and no page faults) per commit.
            (st.wal_file.clone(), st.wal_len, std::mem::take(&mut st.wal_buffer))
        };
        let file = file.ok_or(Error::Closed)?;
        rec.clear();
        record::encode_record_with(offset, &mut rec, |out| wal::encode_body_into(ops.iter().map(Op::wal_op), out));
        let n = rec.len() as u64;
        let rec = match file.write_at(rec, offset).await {
            Ok(r) => r,
            Err(e) if e.is_no_space() => {
                // Part of the record may be in the file: zero it, so the next record (written at
                // the same offset) has nothing but zeros behind it, which recovery reads as an
                // unwritten tail, never as a damaged record.
                self.clear_tail(&file, offset).await?;
                return Err(Error::NoSpace);
            }
            Err(e) => return Err(e.into()),
        };
        if rec.capacity() <= crate::limits::WAL_BUFFER_KEEP_BYTES {
            self.inner.state.borrow_mut().wal_buffer = rec;
        }
        // The WAL length advances only after the write: a failed write stops the partition, so
        // nothing is ever appended behind a hole.
        self.inner.state.borrow_mut().wal_len = offset + n;
        file.sync_data().await?;
        self.inner.state.borrow_mut().stats.wal_syncs += 1;
        Ok(())
    }

    /// Freezes a full memtable and starts a new WAL for the next one.
    async fn maybe_rotate(&self) -> Result<()> {
        if self.freeze_memtable(false).await? && self.inner.config.auto_maintenance {
            self.spawn_background();
        }
        Ok(())
    }

    /// Freezes the memtable into the frozen slot and switches to a new WAL, when the slot is free
    /// and the memtable is full (or, with `force`, holds anything).
    ///
    /// The switch happens under the WAL lock, which the commit leader holds from a batch's WAL
    /// write until its apply: a batch is therefore always in the WAL of the memtable it lands in,
    /// and flushing that memtable can never make a WAL obsolete that holds unflushed records.
    ///
    /// # Returns
    /// Whether it froze.
    pub(crate) async fn freeze_memtable(&self, force: bool) -> Result<bool> {
        let wanted = |e: &Self| {
            let st = e.inner.state.borrow();
            st.imm.is_none() && if force { !st.mem.is_empty() } else { st.mem.bytes() >= e.inner.config.memtable_bytes }
        };
        if !wanted(self) {
            return Ok(false);
        }
        let number = self.alloc_file_number();
        let file = match self.create_wal(number).await {
            Ok(f) => f,
            Err(e) => return self.fail(e),
        };
        let _wal = self.inner.wal_lock.lock().await;
        if !wanted(self) {
            // Someone else froze meanwhile; the new WAL is empty and unused.
            let path = self.inner.config.partition_dir.join(wal::file_name(number));
            drop(_wal);
            let _ = self.inner.storage.remove(&path).await;
            return Ok(false);
        }
        let mut st = self.inner.state.borrow_mut();
        let mem = std::mem::take(&mut st.mem);
        st.imm = Some(Rc::new(mem));
        st.imm_next_log = number;
        st.wal_file = Some(file);
        st.wal_number = number;
        st.wal_len = wal::WAL_HEADER_BYTES as u64;
        Ok(true)
    }

    /// Creates WAL `number` with its header, durably. On a full disk the file is removed again.
    pub(crate) async fn create_wal(&self, number: u64) -> Result<S::File> {
        let dir = &self.inner.config.partition_dir;
        let path = dir.join(wal::file_name(number));
        let file = self.inner.storage.create(&path).await?;
        if let Err(e) = file.write_at(wal::encode_header(number), 0).await {
            if e.is_no_space() {
                let _ = self.inner.storage.remove(&path).await;
            }
            return Err(e.into());
        }
        file.sync_data().await?;
        self.inner.storage.sync_dir(dir).await?;
        Ok(file)
    }

    /// Overwrites whatever lies in `file` from `from` to its end with zeros and makes that
    /// durable: what a failed append left behind reads as an unwritten tail. Overwriting bytes
    /// already allocated needs no new space.
    ///
    /// # Errors
    /// I/O failures (the caller stops the partition).
    pub(crate) async fn clear_tail(&self, file: &S::File, from: u64) -> Result<()> {
        let len = file.len().await?;
        if len > from {
            let zeros = vec![0u8; usize::try_from(len - from).unwrap_or(usize::MAX)];
            file.write_at(zeros, from).await?;
            file.sync_data().await?;
        }
        Ok(())
    }
}
