//! The Syrups one partition writes and reads: the active Syrup and its reserved end, open
//! handles and mappings, which Syrups hold bytes not yet fdatasync'd, which are being written,
//! the Box each was verified to belong to, and how long each of its own has been unreferenced.
//! It owns these fields; the engine reaches them only through the methods here.
//!
//! Invariants:
//! - A reservation is an extent past every earlier one in the active Syrup; a writer's Syrup
//!   counts as referenced (`writers`) until its guard is dropped.
//! - A Syrup written since the last group commit is in `dirty` until that commit takes it: the
//!   commit fdatasyncs it before its log record, so a committed locator never points at bytes
//!   that are not durable.
//! - Only one task creates a new Syrup at a time (`roll_lock`).
//! - A mapping covers at least the range it was asked for; a longer one is reused.

use std::{
    cell::RefCell,
    collections::{BTreeSet, HashMap},
    path::PathBuf,
};

use super::{SyrupHeader, SyrupMap, SYRUP_HEADER_BYTES};
use crate::{
    error::{Error, IoError, Result},
    limits,
    runtime::LocalMutex,
    storage::{Storage, StorageFile},
    types::{BoxUid, SyrupId},
};

/// The Syrup currently written.
#[derive(Debug)]
pub(crate) struct ActiveSyrup<F> {
    pub(crate) id: SyrupId,
    pub(crate) file: F,
    pub(crate) reserved_end: u64,
}

struct Open<F> {
    active: Option<ActiveSyrup<F>>,
    files: HashMap<SyrupId, F>,
    maps: HashMap<SyrupId, SyrupMap>,
    /// The Box each Syrup's header names, once read (or written).
    verified: HashMap<SyrupId, BoxUid>,
    dirty: BTreeSet<SyrupId>,
    /// Puts writing to each Syrup.
    writers: HashMap<SyrupId, usize>,
    /// Own Syrups nothing referenced at the last GC pass, and since when.
    unreferenced_since: HashMap<SyrupId, u64>,
    /// Cleared write buffers for reuse.
    buffers: Vec<Vec<u8>>,
}

/// The Syrups of one partition (see the module docs).
pub(crate) struct Syrups<S: Storage> {
    storage: S,
    dir: PathBuf,
    roll_lock: LocalMutex,
    open: RefCell<Open<S::File>>,
}

impl<S: Storage> Syrups<S> {
    /// The Syrups in `dir` (the node-global Syrup directory), none open yet.
    pub(crate) fn new(storage: S, dir: PathBuf) -> Self {
        Syrups {
            storage,
            dir,
            roll_lock: LocalMutex::new(),
            open: RefCell::new(Open {
                active: None,
                files: HashMap::new(),
                maps: HashMap::new(),
                verified: HashMap::new(),
                dirty: BTreeSet::new(),
                writers: HashMap::new(),
                unreferenced_since: HashMap::new(),
                buffers: Vec::new(),
            }),
        }
    }

    /// The path of Syrup `id`.
    pub(crate) fn path(&self, id: SyrupId) -> PathBuf {
        self.dir.join(id.file_name())
    }

    /// Reserves `stored` bytes in the active Syrup unless it would pass `roll_bytes` (a fresh
    /// Syrup takes any size), and counts a writer of it.
    ///
    /// # Returns
    /// The Syrup, its handle and the offset of the extent; `None` when a new Syrup is needed.
    pub(crate) fn reserve(&self, stored: u64, roll_bytes: u64) -> Option<(SyrupId, S::File, u64)> {
        let mut o = self.open.borrow_mut();
        let o = &mut *o;
        let a = o.active.as_mut()?;
        let fresh = a.reserved_end == SYRUP_HEADER_BYTES;
        if !fresh && a.reserved_end + stored > roll_bytes {
            return None;
        }
        let offset = a.reserved_end;
        a.reserved_end += stored;
        *o.writers.entry(a.id).or_insert(0) += 1;
        Some((a.id, a.file.clone(), offset))
    }

    /// Held while a new Syrup is created.
    pub(crate) fn roll_lock(&self) -> &LocalMutex {
        &self.roll_lock
    }

    /// True when a reservation of `stored` bytes needs a new Syrup.
    pub(crate) fn needs_roll(&self, stored: u64, roll_bytes: u64) -> bool {
        self.open
            .borrow()
            .active
            .as_ref()
            .is_none_or(|a| a.reserved_end != SYRUP_HEADER_BYTES && a.reserved_end + stored > roll_bytes)
    }

    /// Creates the file of a new Syrup with `header` (or the next free id after it: a file of
    /// that name may exist), writes the header and makes file and name durable.
    ///
    /// # Returns
    /// The Syrup's id and handle (not active yet: [`Syrups::activate`]).
    ///
    /// # Errors
    /// The I/O failure (a file whose header could not be written on a full disk is removed).
    pub(crate) async fn create(&self, mut header: SyrupHeader) -> std::result::Result<(SyrupId, S::File), IoError> {
        let mut attempts = 0;
        header.id = claim_id(header.id);
        let file = loop {
            match self.storage.create(&self.path(header.id)).await {
                Ok(f) => break f,
                Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists && attempts < 1024 => {
                    attempts += 1;
                    header.id = claim_id(SyrupId(header.id.0 + 1));
                }
                Err(e) => return Err(e),
            }
        };
        // A fresh id: nothing of this engine's caches may describe it (see `claim_id`).
        self.forget(header.id);
        if let Err(e) = file.write_at(header.encode(), 0).await {
            if e.is_no_space() {
                // Named by nothing yet: give it back.
                let _ = self.storage.remove(&self.path(header.id)).await;
            }
            return Err(e);
        }
        file.sync_data().await?;
        self.storage.sync_dir(&self.dir).await?;
        Ok((header.id, file))
    }

    /// Makes a Syrup created by [`Syrups::create`] (for `box_uid`) the one reservations go to.
    pub(crate) fn activate(&self, id: SyrupId, file: S::File, box_uid: BoxUid) {
        let mut o = self.open.borrow_mut();
        o.files.insert(id, file.clone());
        o.verified.insert(id, box_uid);
        o.active = Some(ActiveSyrup { id, file, reserved_end: SYRUP_HEADER_BYTES });
    }

    /// The active Syrup and its reserved end.
    pub(crate) fn active(&self) -> Option<(SyrupId, u64)> {
        self.open.borrow().active.as_ref().map(|a| (a.id, a.reserved_end))
    }

    /// Stops writing to Syrup `id` when it is the active one and no put writes to it.
    ///
    /// # Returns
    /// Whether it was retired.
    pub(crate) fn retire_active(&self, id: SyrupId) -> bool {
        let mut o = self.open.borrow_mut();
        if o.writers.contains_key(&id) || o.active.as_ref().map(|a| a.id) != Some(id) {
            return false;
        }
        o.active = None;
        true
    }

    /// A put stopped writing to `id`.
    pub(crate) fn writer_done(&self, id: SyrupId) {
        let mut o = self.open.borrow_mut();
        if let Some(n) = o.writers.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                o.writers.remove(&id);
            }
        }
    }

    /// True when a put writes to `id`.
    pub(crate) fn is_written(&self, id: SyrupId) -> bool {
        self.open.borrow().writers.contains_key(&id)
    }

    /// Syrups being written, and the active one: referenced whatever the tables say.
    pub(crate) fn in_use(&self) -> Vec<SyrupId> {
        let o = self.open.borrow();
        o.writers.keys().copied().chain(o.active.as_ref().map(|a| a.id)).collect()
    }

    /// Bytes were written to `id` that the next group commit must make durable.
    pub(crate) fn dirtied(&self, id: SyrupId) {
        self.open.borrow_mut().dirty.insert(id);
    }

    /// Hands the Syrups written since the last commit to this one: their handles go into
    /// `syncs`.
    ///
    /// # Returns
    /// How many.
    pub(crate) fn take_dirty(&self, syncs: &mut Vec<S::File>) -> u64 {
        let mut o = self.open.borrow_mut();
        let dirty = std::mem::take(&mut o.dirty);
        let mut n = 0;
        for id in dirty {
            if let Some(f) = o.files.get(&id) {
                syncs.push(f.clone());
                n += 1;
            }
        }
        n
    }

    /// An open handle of Syrup `id` (opened once, then kept).
    ///
    /// # Errors
    /// Opening it failed.
    pub(crate) async fn file(&self, id: SyrupId) -> Result<S::File> {
        if let Some(f) = self.open.borrow().files.get(&id) {
            return Ok(f.clone());
        }
        let f = self.storage.open(&self.path(id)).await?;
        self.open.borrow_mut().files.insert(id, f.clone());
        Ok(f)
    }

    /// Keeps `file` as the handle of `id` (opened by name by the caller).
    pub(crate) fn set_file(&self, id: SyrupId, file: S::File) {
        self.open.borrow_mut().files.insert(id, file);
    }

    /// A mapping of Syrup `id` that covers at least `[0, end)`, which the caller knows is durable.
    ///
    /// # Errors
    /// Opening or mapping it failed.
    pub(crate) async fn map(&self, id: SyrupId, end: u64) -> Result<SyrupMap> {
        let known_fd = match self.open.borrow().maps.get(&id) {
            Some(m) if m.bytes.len() as u64 >= end => return Ok(m.clone()),
            Some(m) => m.fd.clone(),
            None => None,
        };
        let file = self.file(id).await?;
        let len = usize::try_from(end).map_err(|_| Error::invalid("segment", "offset beyond address space"))?;
        let map = SyrupMap { bytes: file.map(0, len)?, fd: known_fd.or_else(|| file.splice_fd()) };
        self.open.borrow_mut().maps.insert(id, map.clone());
        Ok(map)
    }

    /// The Box Syrup `id` was verified to belong to, if it was.
    pub(crate) fn verified(&self, id: SyrupId) -> Option<BoxUid> {
        self.open.borrow().verified.get(&id).copied()
    }

    /// Notes that `id`'s header names `box_uid`.
    pub(crate) fn set_verified(&self, id: SyrupId, box_uid: BoxUid) {
        self.open.borrow_mut().verified.insert(id, box_uid);
    }

    /// Notes which own Syrups nothing references now (`unreferenced`, at `now`); Syrups that
    /// were referenced meanwhile start over.
    ///
    /// # Returns
    /// Those unreferenced for at least `grace` ms, and how many others wait.
    pub(crate) fn unreferenced(&self, unreferenced: &[SyrupId], now: u64, grace: u64) -> (Vec<SyrupId>, usize) {
        let mut o = self.open.borrow_mut();
        let keep: HashMap<SyrupId, u64> =
            unreferenced.iter().map(|s| (*s, o.unreferenced_since.get(s).copied().unwrap_or(now))).collect();
        o.unreferenced_since = keep;
        let due: Vec<SyrupId> = o
            .unreferenced_since
            .iter()
            .filter(|(_, since)| since.saturating_add(grace) <= now)
            .map(|(s, _)| *s)
            .collect();
        let waiting = o.unreferenced_since.len() - due.len();
        (due, waiting)
    }

    /// Forgets everything about a deleted (or newly created) Syrup.
    pub(crate) fn forget(&self, id: SyrupId) {
        let mut o = self.open.borrow_mut();
        o.unreferenced_since.remove(&id);
        o.files.remove(&id);
        o.maps.remove(&id);
        o.verified.remove(&id);
    }

    /// A cleared write buffer from the pool (or a new one): large puts reuse the same few buffers
    /// instead of allocating and faulting in a fresh megabyte per write.
    pub(crate) fn take_buffer(&self) -> Vec<u8> {
        let mut buf = self.open.borrow_mut().buffers.pop().unwrap_or_default();
        buf.clear();
        buf
    }

    /// Gives a write buffer back to the pool, which holds at most `WRITE_BUFFERS_POOLED_MAX`.
    pub(crate) fn return_buffer(&self, buf: Vec<u8>) {
        let mut o = self.open.borrow_mut();
        if o.buffers.len() < limits::WRITE_BUFFERS_POOLED_MAX && buf.capacity() <= 4 * limits::WRITE_BUFFER_BYTES {
            o.buffers.push(buf);
        }
    }
}

/// The last Syrup sequence claimed in this process, per bucket of node ids (a Syrup id is the
/// node in its high 16 bits and a sequence below).
static CLAIMED: [std::sync::atomic::AtomicU64; 64] = [const { std::sync::atomic::AtomicU64::new(0) }; 64];

/// `candidate`, or the next id of its node above every id this process has claimed for it: a
/// Syrup id is never created twice in one process, even after the Syrup it named was deleted.
/// Every partition caches what it knows of a Syrup by id (its mapping, its open handle, the Box
/// it was verified to belong to), and another partition may have cached a Syrup it read through
/// a copy: a reused id would serve the deleted Syrup's bytes for the new one's (found by the
/// shared-log model test as a checksum mismatch on an acknowledged put). Across a restart every
/// cache starts empty, and the clock has moved the ids past the earlier ones anyway.
pub(crate) fn claim_id(candidate: SyrupId) -> SyrupId {
    use std::sync::atomic::Ordering;
    let node_bits = candidate.0 & !((1u64 << 48) - 1);
    let seq_mask = (1u64 << 48) - 1;
    let Some(bucket) = CLAIMED.get(usize::from(candidate.node()) % CLAIMED.len()) else { return candidate };
    let mut last = bucket.load(Ordering::Relaxed);
    loop {
        let seq = (candidate.0 & seq_mask).max(last.saturating_add(1)).min(seq_mask);
        match bucket.compare_exchange_weak(last, seq, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return SyrupId(node_bits | seq),
            Err(now) => last = now,
        }
    }
}
