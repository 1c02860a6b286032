//! Group commit: mutations queue up in the partition while the shard's commit log leader makes a
//! batch durable (fdatasync of every Syrup written, then one log record holding every waiting
//! partition's section and one fdatasync); the partition then applies its section to the
//! memtable and wakes every waiter.
//!
//! Invariants:
//! - Stamps are taken when a mutation joins the queue, so log order is HLC order.
//! - Conditional mutations (delete-if-HLC-equals, copy, rename) are decided when they join the
//!   queue, against the state plus every queued mutation, in one synchronous step: nothing can
//!   slip in between the check and the stamp.
//! - The queue is bounded: a partition with too much queued work answers `Busy`.
//! - A partition is in its log's queue at most once (`queued`), and has at most one batch in a
//!   record at a time: its batches are applied in log order.

use std::{cell::RefCell, collections::VecDeque, rc::Rc};

use bytes::Bytes;
use futures_channel::oneshot;

use super::{Engine, Inner};
use crate::{
    error::{Error, IoError, Result},
    hlc::Hlc,
    keyspace::{self, Versioning},
    locator::{CandyLocator, Kind},
    log::{Batch, Committer, LogPosition, Took},
    storage::Storage,
    types::RangeTombstone,
    wal::WalOpRef,
};

/// One mutation.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Set {
        key: Bytes,
        value: Bytes,
        locator: CandyLocator,
        /// In a versioned Box, a user-space Set also writes its version-space twin when it is
        /// stamped (a new version); false for the entries versioning itself writes.
        twin: bool,
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
    /// A Set of `locator` under `key`: a new version (its own id is its stamp, set when it joins
    /// the queue; in a versioned Box its twin goes to the version space in the same batch).
    pub(crate) fn set(key: &[u8], mut locator: CandyLocator) -> Op {
        locator.version_id = None;
        Op::Set { key: Bytes::copy_from_slice(key), value: Bytes::new(), locator, twin: true }
    }

    /// A Set that makes no version of its own (a version-space entry, or a user-space entry
    /// that holds an existing version again); `locator.version_id` is kept.
    pub(crate) fn set_plain(key: &[u8], locator: CandyLocator) -> Op {
        Op::Set { key: Bytes::copy_from_slice(key), value: Bytes::new(), locator, twin: false }
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
    /// Set on this partition's part of a joint mutation ([`Joint`]): the partition's own batches
    /// stop in front of it, and the joint writes it (with its other part) as one record.
    joint: Option<Rc<dyn std::any::Any>>,
}

/// The queue of mutations waiting for durability.
#[derive(Default)]
pub(crate) struct CommitQueue {
    pending: VecDeque<Waiting>,
    /// The mutations handed to the log's current record, and their waiters.
    inflight: Vec<Op>,
    inflight_waiters: Vec<oneshot::Sender<Result<()>>>,
    /// The batch sequence of the mutations in the log's current record.
    inflight_seq: u64,
    /// True while the log holds this partition in its queue (or is writing its batch).
    queued: bool,
}

impl CommitQueue {
    /// The newest queued version of `key`: `Some(Some(locator))` for a queued Set,
    /// `Some(None)` when a queued range tombstone deletes it, `None` when nothing queued touches it.
    pub(crate) fn newest(&self, key: &[u8]) -> Option<Option<CandyLocator>> {
        let queued = self.pending.iter().rev().flat_map(|w| w.ops.iter().rev()).chain(self.inflight.iter().rev());
        for op in queued {
            match op {
                Op::Set { key: k, locator, .. } if k.as_ref() == key => {
                    // A delete marker is a value (of the version space), like a live Candy.
                    return Some((locator.kind != Kind::Tombstone).then(|| locator.clone()));
                }
                Op::DeleteRange(rt) if rt.covers_key(key) => return Some(None),
                _ => {}
            }
        }
        None
    }

    /// Every queued mutation, oldest first: the batch being written, then those waiting.
    pub(crate) fn queued_oldest_first(&self) -> impl Iterator<Item = &Op> {
        self.inflight.iter().chain(self.pending.iter().flat_map(|w| w.ops.iter()))
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

    /// True when nothing waits and nothing is being written.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.inflight_waiters.is_empty() && !self.queued
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
        self.inner.log.check()?;
        let st = self.inner.state.borrow();
        let cfg = &self.inner.config;
        if st.lsm.l0_tables() >= cfg.l0_stall {
            return Err(Error::Busy { reason: "too many L0 tables", retry_after_ms: 200 });
        }
        if st.mem.live().bytes() >= cfg.memtable_bytes.saturating_mul(2) {
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
        let ops = self.prepare_versions(ops)?;
        if ops.is_empty() {
            return Ok(Pending { rx: None, value: (out, Hlc::ZERO) });
        }
        let (tx, rx) = oneshot::channel();
        let first = self.queue(ops, tx, None);
        Ok(Pending { rx: Some(rx), value: (out, first) })
    }

    /// In a versioned Box, what a batch must also write before its mutations are stamped: the
    /// current Candy of each key a mutation makes a new version of, when it has no version of
    /// its own yet (written while versioning was off), is kept as a version under its stamp.
    ///
    /// # Errors
    /// A lookup's failure.
    pub(crate) fn prepare_versions(&self, ops: Vec<Op>) -> Result<Vec<Op>> {
        if self.inner.versioning.get() == Versioning::Off {
            return Ok(ops);
        }
        let mut out = Vec::with_capacity(ops.len() + 1);
        for op in ops {
            if let Op::Set { key, twin: true, .. } = &op {
                if !keyspace::is_version_key(key) {
                    if let Some(cur) = self.current_locator(key)? {
                        let vkey = keyspace::version_key(key, cur.version());
                        if self.current_locator(&vkey)?.is_none() {
                            let id = cur.version();
                            // Relocated: it keeps its stamp, its write time.
                            out.push(Op::Relocate {
                                key: Bytes::from(vkey),
                                locator: CandyLocator { version_id: Some(id), ..cur },
                            });
                        }
                    }
                }
            }
            out.push(op);
        }
        Ok(out)
    }

    /// Stamps `ops` with this partition's clock (a relocation keeps its stamp) and queues them
    /// with `done`; unless `joint` (a part of a joint mutation, which its joint commits), the
    /// partition joins its log's queue. In a versioned Box each new version's twin is written to
    /// the version space in the same batch (docs/versioning.md).
    ///
    /// # Returns
    /// The version id of the first op (its stamp, or `Hlc::ZERO` for a null version).
    fn queue(&self, ops: Vec<Op>, done: oneshot::Sender<Result<()>>, joint: Option<Rc<dyn std::any::Any>>) -> Hlc {
        let (mut first, mut relocated_first) = (None, None);
        let versioning = self.inner.versioning.get();
        let mut st = self.inner.state.borrow_mut();
        let wall = self.inner.clock.now_ms();
        let mut stamped = Vec::with_capacity(ops.len() * 2);
        for op in ops {
            let hlc = match &op {
                Op::Relocate { locator, .. } => locator.hlc,
                _ => st.clock.now(wall),
            };
            match op {
                Op::Set { key, mut locator, twin, .. } => {
                    locator.hlc = hlc;
                    let mut id = hlc;
                    let versioned = twin && versioning != Versioning::Off && !keyspace::is_version_key(&key);
                    if versioned {
                        if versioning == Versioning::Suspended {
                            id = Hlc::ZERO;
                            if locator.is_live() {
                                locator.version_id = Some(id);
                            }
                        }
                        let twin_locator = if locator.is_live() {
                            CandyLocator { version_id: Some(id), ..locator.clone() }
                        } else {
                            CandyLocator::delete_marker(hlc, Some(id))
                        };
                        first.get_or_insert(id);
                        let value = Bytes::from(locator.encode());
                        stamped.push(Op::Set { key: key.clone(), value, locator, twin: false });
                        let vkey = Bytes::from(keyspace::version_key(&key, id));
                        let value = Bytes::from(twin_locator.encode());
                        stamped.push(Op::Set { key: vkey, value, locator: twin_locator, twin: false });
                        continue;
                    }
                    first.get_or_insert(locator.version());
                    let value = Bytes::from(locator.encode());
                    stamped.push(Op::Set { key, value, locator, twin: false });
                }
                Op::DeleteRange(mut rt) => {
                    first.get_or_insert(hlc);
                    rt.hlc = hlc;
                    stamped.push(Op::DeleteRange(rt));
                }
                Op::Relocate { key, locator } => {
                    // Not a new version: a batch's reply names its first mutation's.
                    relocated_first.get_or_insert(hlc);
                    let value = Bytes::from(locator.encode());
                    stamped.push(Op::Set { key, value, locator, twin: false });
                }
            }
        }
        let is_joint = joint.is_some();
        st.commit.pending.push_back(Waiting { ops: stamped, done, joint });
        if !is_joint && !st.commit.queued {
            st.commit.queued = true;
            drop(st);
            self.inner.log.enqueue(self.inner.clone());
        }
        first.or(relocated_first).unwrap_or(Hlc::ZERO)
    }

    /// Commits `ops` unconditionally and returns the first op's stamp.
    pub(crate) async fn commit(&self, ops: Vec<Op>) -> Result<Hlc> {
        Ok(self.commit_with(|_| Ok((ops, ()))).await?.1)
    }

    /// Freezes the memtable into the frozen slot when the slot is free and the memtable is full
    /// (or, with `force`, holds anything). Synchronous: a batch is applied whole, before or after,
    /// so the frozen memtable holds every record of this partition up to the position it notes.
    ///
    /// # Returns
    /// Whether it froze.
    pub(crate) fn freeze_memtable(&self, force: bool) -> bool {
        self.inner.state.borrow_mut().mem.freeze(force, self.inner.config.memtable_bytes)
    }

    /// Tells the log the oldest segment this partition still needs.
    pub(crate) fn report_need(&self) {
        let need = self.inner.state.borrow().mem.oldest_segment();
        self.inner.log.set_need(self.inner.log_client.get(), need);
    }

    /// Freezes a full memtable and starts its flush.
    fn maybe_rotate(&self) {
        if self.freeze_memtable(false) && self.inner.config.auto_maintenance {
            self.spawn_background();
        }
    }
}

impl<S: Storage> Inner<S> {
    fn engine(&self) -> Option<Engine<S>> {
        self.me.upgrade().map(|inner| Engine { inner })
    }
}

impl<S: Storage> Committer<S::File> for Inner<S> {
    fn take(&self, batch: &mut Batch<S::File>) -> Took {
        let mut st = self.state.borrow_mut();
        // Out of the log's queue now; back in it (by the log) when this returns `Later` or `more`.
        st.commit.queued = false;
        if st.failed || st.closed {
            let rest: Vec<_> = st.commit.pending.drain(..).collect();
            drop(st);
            for w in rest {
                let _ = w.done.send(Err(Error::PreviousIo));
            }
            return Took::Nothing;
        }
        if !st.commit.inflight.is_empty() {
            // A joint mutation put a section of this partition in this record already: one
            // batch of a partition per record.
            st.commit.queued = true;
            return Took::Later;
        }
        let mut ops = Vec::new();
        let mut waiters = Vec::new();
        let mut bytes = 0usize;
        while let Some(front) = st.commit.pending.front() {
            if front.joint.is_some() {
                // A joint mutation's part: its joint writes it, in a record of its own choosing.
                break;
            }
            let add: usize = front.ops.iter().map(Op::bytes).sum();
            let first_of_record = waiters.is_empty() && batch.record.sections() == 0;
            let fits = ops.len() + front.ops.len() <= crate::limits::COMMIT_BATCH_OPS_MAX
                && batch.record.fits(ops.len() + front.ops.len(), bytes + add);
            if !fits && !first_of_record {
                break;
            }
            let Some(w) = st.commit.pending.pop_front() else { break };
            bytes += add;
            ops.extend(w.ops);
            waiters.push(w.done);
        }
        if waiters.is_empty() {
            // Nothing fitted this record: stay queued for the next one (a joint's part at the
            // front is the joint's to take: it is in the log's queue itself).
            return match st.commit.pending.front() {
                None => Took::Nothing,
                Some(w) if w.joint.is_some() => Took::Nothing,
                Some(_) => {
                    st.commit.queued = true;
                    Took::Later
                }
            };
        }
        // One batch of a partition is in the log at a time, so its sequence follows the last applied.
        let seq = st.mem.next_seq();
        batch.record.section(self.config.box_uid, self.config.partition, seq, ops.iter().map(Op::wal_op));
        st.stats.syrup_syncs += self.syrups.take_dirty(&mut batch.syncs);
        st.commit.inflight = ops;
        st.commit.inflight_seq = seq;
        st.commit.inflight_waiters = waiters;
        let more = !st.commit.pending.is_empty();
        st.commit.queued = more;
        Took::Section { more }
    }

    fn complete(&self, result: std::result::Result<LogPosition, &Error>) {
        let Some(engine) = self.engine() else { return };
        let (waiters, outcome) = {
            let mut st = self.state.borrow_mut();
            let waiters = std::mem::take(&mut st.commit.inflight_waiters);
            let ops = std::mem::take(&mut st.commit.inflight);
            match result {
                // A partition stopped meanwhile is reopened from the log: what it holds after
                // that is what a restart would give, so nothing more is applied here (the
                // mutations are durable but not acknowledged).
                Ok(_) if st.failed => (waiters, Err(Error::PreviousIo)),
                Ok(end) => {
                    let st = &mut *st;
                    let mem = st.mem.apply(end, st.commit.inflight_seq);
                    st.stats.commit_batches += 1;
                    st.stats.commit_ops += ops.len() as u64;
                    st.stats.wal_syncs += 1;
                    if let Some(b) = st.stats.commit_sizes.get_mut(super::commit_size_bucket(ops.len())) {
                        *b += 1;
                    }
                    for op in ops {
                        match op {
                            Op::Set { key, value, locator, .. } => {
                                st.reclaim.committed(&locator);
                                mem.set(key, value, &locator);
                            }
                            Op::DeleteRange(rt) => mem.delete_range(rt),
                            Op::Relocate { .. } => unreachable!("stamped into a Set"),
                        }
                    }
                    (waiters, Ok(()))
                }
                Err(e) => (waiters, Err(share(e))),
            }
        };
        match outcome {
            Ok(()) => {
                engine.report_need();
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
                engine.maybe_rotate();
            }
            Err(e) => {
                for w in waiters {
                    let _ = w.send(Err(share(&e)));
                }
                // A full disk refused this batch and nothing of it is in the log: the next batch
                // may go through (a delete, once space is freed).
                if !matches!(e, Error::NoSpace | Error::PreviousIo) {
                    let _: Result<()> = engine.fail(e);
                } else if matches!(e, Error::PreviousIo) && engine.inner.log.is_failed() {
                    engine.inner.state.borrow_mut().failed = true;
                }
            }
        }
        if !self.state.borrow().commit.pending.is_empty() && !self.state.borrow().commit.queued {
            self.state.borrow_mut().commit.queued = true;
            self.log.enqueue(engine.inner.clone());
        }
    }

    fn flush_wanted(&self) {
        let Some(engine) = self.engine() else { return };
        if engine.inner.config.auto_maintenance && engine.freeze_memtable(true) {
            engine.spawn_background();
        }
    }
}

/// A mutation of two partitions that share a commit log, written as one record: each partition's
/// part is a section of it, so after a crash both parts or neither happened. Each part waits in
/// its partition's queue (the partition's own batches stop in front of it, so its order holds);
/// the joint goes in a record once both parts are at the front of their queues and neither
/// partition has a section in that record yet.
pub(crate) struct Joint<S: Storage> {
    parts: [Engine<S>; 2],
    done: RefCell<Option<oneshot::Sender<Result<()>>>>,
}

impl<S: Storage> Joint<S> {
    /// True when `e`'s next waiting batch is this joint's part.
    fn at_front(&self, e: &Engine<S>) -> bool {
        let me = self as *const Self as *const ();
        e.inner
            .state
            .borrow()
            .commit
            .pending
            .front()
            .and_then(|w| w.joint.as_ref())
            .is_some_and(|j| Rc::as_ptr(j) as *const () == me)
    }

    /// Withdraws both parts and answers `e`.
    fn abort(&self, e: Error) {
        let me = self as *const Self as *const ();
        for p in &self.parts {
            let mut st = p.inner.state.borrow_mut();
            st.commit.pending.retain(|w| w.joint.as_ref().is_none_or(|j| Rc::as_ptr(j) as *const () != me));
            // The partition's own batches waited behind this part, out of the log's queue: back
            // to it with them, even when the partition failed or closed (its `take` then refuses
            // them; left here, nothing would answer them and `close` would wait forever).
            if !st.commit.pending.is_empty() && !st.commit.queued {
                st.commit.queued = true;
                drop(st);
                p.inner.log.enqueue(p.inner.clone());
            }
        }
        if let Some(done) = self.done.borrow_mut().take() {
            let _ = done.send(Err(e));
        }
    }
}

impl<S: Storage> Committer<S::File> for Joint<S> {
    fn take(&self, batch: &mut Batch<S::File>) -> Took {
        for p in &self.parts {
            let st = p.inner.state.borrow();
            if st.failed || st.closed {
                drop(st);
                self.abort(Error::PreviousIo);
                return Took::Nothing;
            }
            if !st.commit.inflight.is_empty() {
                return Took::Later;
            }
        }
        if !self.parts.iter().all(|p| self.at_front(p)) {
            return Took::Later;
        }
        let (ops, bytes) = self.parts.iter().fold((0, 0), |(n, b), p| {
            let st = p.inner.state.borrow();
            let w = st.commit.pending.front();
            (n + w.map_or(0, |w| w.ops.len()), b + w.map_or(0, |w| w.ops.iter().map(Op::bytes).sum::<usize>()))
        });
        if batch.record.sections() > 0 && !batch.record.fits(ops, bytes + crate::log::format::SECTION_HEADER_BYTES) {
            return Took::Later;
        }
        for p in &self.parts {
            let inner = &p.inner;
            let mut st = inner.state.borrow_mut();
            let Some(w) = st.commit.pending.pop_front() else { continue };
            let seq = st.mem.next_seq();
            batch.record.section(inner.config.box_uid, inner.config.partition, seq, w.ops.iter().map(Op::wal_op));
            st.stats.syrup_syncs += inner.syrups.take_dirty(&mut batch.syncs);
            st.commit.inflight = w.ops;
            st.commit.inflight_seq = seq;
        }
        Took::Section { more: false }
    }

    fn complete(&self, result: std::result::Result<LogPosition, &Error>) {
        for p in &self.parts {
            Committer::complete(&*p.inner, result);
        }
        let outcome = match result {
            // Durable, but a part's partition stopped meanwhile (it did not apply its part): the
            // reopened partition replays it; not acknowledged here.
            Ok(_) if self.parts.iter().any(|p| p.is_failed()) => Err(Error::PreviousIo),
            Ok(_) => Ok(()),
            Err(e) => Err(share(e)),
        };
        if let Some(done) = self.done.borrow_mut().take() {
            let _ = done.send(outcome);
        }
    }

    fn flush_wanted(&self) {}
}

impl<S: Storage> Engine<S> {
    /// Queues a joint mutation: `ops` in this partition and `target_ops` in `target` (another
    /// partition on the same commit log), stamped and queued in one synchronous step, written as
    /// one record.
    ///
    /// # Returns
    /// A receiver answered once the record is durable and both parts are applied, and the stamp
    /// of the target's first op.
    pub(crate) fn queue_joint(
        &self,
        ops: Vec<Op>,
        target: &Engine<S>,
        target_ops: Vec<Op>,
    ) -> (oneshot::Receiver<Result<()>>, Hlc) {
        let (tx, rx) = oneshot::channel();
        let joint = Rc::new(Joint { parts: [self.clone(), target.clone()], done: RefCell::new(Some(tx)) });
        let marker: Rc<dyn std::any::Any> = joint.clone();
        // Each part's own answer goes nowhere: the joint answers for both.
        self.queue(ops, oneshot::channel().0, Some(marker.clone()));
        let hlc = target.queue(target_ops, oneshot::channel().0, Some(marker));
        self.inner.log.enqueue(joint);
        (rx, hlc)
    }
}
