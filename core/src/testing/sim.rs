//! The simulated storage: an in-memory [`Storage`] that keeps what was written apart from what is
//! durable, crashes on demand, corrupts bytes, and injects I/O errors. Crash and fault tests of the
//! engine run on it; `tests/storage_contract.rs` checks that it honours the same contract as
//! [`crate::storage::uring::UringStorage`].
//!
//! Model:
//! - A path names an inode through the entry map of its parent directory. Each directory keeps two
//!   entry maps: `current` (what `open` and `list` see) and `durable` (what a crash leaves).
//!   `create`, `rename` and `remove` change `current`; `sync_dir` copies `current` to `durable`.
//!   Directories themselves are durable as soon as `create_dir_all` returns, and are never removed.
//! - An inode keeps two byte vectors, `current` and `durable`, and the list of its unsynced writes
//!   in the order they were issued. `write_at` changes `current` and appends to the list;
//!   `sync_data` replays the list onto `durable` and empties it.
//! - A failed `sync_data` empties the list without replaying it: as on Linux after an fdatasync
//!   error, the pages count as clean, so reads still see the bytes but no later `sync_data` makes
//!   them durable. Every other failed operation has no effect at all.
//! - [`SimStorage::crash`] replaces every current view by its durable view (optionally tearing the
//!   most recent unsynced write, see [`CrashMode`]), then starts a new generation: handles opened
//!   before the crash fail every operation with `EIO`.
//!
//! Invariants:
//! - An inode's durable bytes change only through `sync_data` of that inode, a crash, or the
//!   corruption helpers ([`SimStorage::flip_byte`], [`SimStorage::set_len`]).
//! - A directory's durable entries change only through `sync_dir` of that directory or a crash.
//! - `durable.len() <= current.len()` for every inode: every write replayed onto `durable` was
//!   also applied to `current`, and only `set_len` shortens a file, and it shortens both.
//! - No `RefCell` borrow is held across an `.await`: each operation optionally yields first, then
//!   borrows the state, applies the whole operation and releases the borrow before returning.
//! - A handle belongs to the generation it was opened in, so a handle (or an operation in flight)
//!   from before a crash can never change the recovered state.
//! - An inode lives while an entry (current or durable) names it or an open handle holds it.
//! - Runs are deterministic: state lives in ordered maps and the optional yields come from a seeded
//!   generator, so one seed reproduces one interleaving.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    fmt, io,
    path::{Path, PathBuf},
    rc::Rc,
};

use bytes::Bytes;

use crate::{
    error::IoError,
    runtime::yield_now,
    storage::{Storage, StorageFile},
};

/// Largest file the simulator holds. A write past it fails with `EFBIG` instead of letting an
/// engine bug (a wild offset) allocate the test machine's memory away.
pub const FILE_BYTES_MAX: usize = 1 << 30;

/// A kind of operation that faults can target: every call that mutates or syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`StorageFile::write_at`].
    Write,
    /// [`StorageFile::sync_data`].
    Sync,
    /// [`Storage::create`].
    Create,
    /// [`Storage::rename`].
    Rename,
    /// [`Storage::remove`].
    Remove,
    /// [`Storage::sync_dir`].
    SyncDir,
}

/// What a crash keeps of the writes that were not yet synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write, create, rename and remove is lost.
    DropUnsynced,
    /// The most recent unsynced `write_at` (across all files) is torn: its first
    /// `min(keep_bytes, len)` bytes reach the durable contents of its file. The unsynced writes
    /// issued to that same file before it reach the disk whole, in order (the write stream reached
    /// the disk up to the tear, which is the torn log tail recovery sees most often). Unsynced
    /// writes to every other file are lost, and so are unsynced namespace changes.
    TearLastWrite {
        /// How many leading bytes of the torn write survive. Where that point falls inside bytes
        /// the file already holds durably (an overwrite), it moves back to a sector boundary of
        /// the file ([`crate::record::TEAR_SECTOR_BYTES`]): a disk writes a sector whole or not at
        /// all. Past the file's durable end (an append) it may fall at any byte.
        keep_bytes: usize,
    },
    /// Like [`CrashMode::TearLastWrite`], except that the earlier unsynced writes to the torn
    /// file are lost too, so only the torn prefix lands on the durable contents. When it lands
    /// past the durable end, the gap reads as zeros (a hole), as a file system may leave it.
    TearLastWriteAlone {
        /// How many leading bytes of the torn write survive (moved back to a sector boundary
        /// inside bytes the file already holds, as for [`CrashMode::TearLastWrite`]).
        keep_bytes: usize,
    },
}

/// An injected I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The kind of operation that fails; `None` for any kind.
    pub kind: Option<OpKind>,
    /// How many matching calls succeed before the failing one.
    pub skip: u64,
    /// The `errno` of the error, such as `libc::ENOSPC` or `libc::EIO`.
    pub errno: i32,
    /// When true the fault stays armed after it fires, so every later matching call fails too
    /// (a full disk); when false it fires once.
    pub sticky: bool,
}

/// Counts of operations that completed successfully, and of injected failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Successful `write_at` calls.
    pub write_calls: u64,
    /// Bytes written by successful `write_at` calls.
    pub bytes_written: u64,
    /// Successful `sync_data` calls.
    pub sync_data_calls: u64,
    /// Successful `sync_dir` calls.
    pub sync_dir_calls: u64,
    /// Successful `create` calls.
    pub creates: u64,
    /// Successful `rename` calls.
    pub renames: u64,
    /// Successful `remove` calls.
    pub removes: u64,
    /// Calls failed by an injected [`Fault`].
    pub faults_fired: u64,
    /// Calls of [`SimStorage::crash`].
    pub crashes: u64,
}

/// In-memory storage with a durable view, crashes and fault injection. Clones share one file
/// system; it is single-threaded, like the shard that owns it.
#[derive(Clone)]
pub struct SimStorage {
    state: Rc<RefCell<State>>,
}

/// An open file of a [`SimStorage`]. Clones share one open file.
#[derive(Debug, Clone)]
pub struct SimFile {
    inner: Rc<Handle>,
}

/// One open file: the inode it points at, and the generation it was opened in.
struct Handle {
    state: Rc<RefCell<State>>,
    inode: u64,
    generation: u64,
    path: PathBuf,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("path", &self.path)
            .field("inode", &self.inode)
            .field("generation", &self.generation)
            .finish()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // A panic here while a failing test unwinds would abort the whole test binary and hide
        // the first failure, so bookkeeping is skipped then.
        if std::thread::panicking() {
            return;
        }
        // A handle is never dropped while the state is borrowed, because no borrow outlives a
        // method call; `try_borrow_mut` only keeps a simulator bug from turning into a panic here.
        if let Ok(mut state) = self.state.try_borrow_mut() {
            state.close(self.inode, self.generation);
        }
    }
}

#[derive(Debug, Default)]
struct Dir {
    /// File entries as `open` and `list` see them.
    current: BTreeMap<String, u64>,
    /// File entries as a crash leaves them.
    durable: BTreeMap<String, u64>,
    /// Names of the child directories; they are durable from creation.
    subdirs: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Inode {
    /// The bytes reads see.
    current: Vec<u8>,
    /// The bytes a crash leaves.
    durable: Vec<u8>,
    /// Writes not yet synced, oldest first.
    pending: Vec<PendingWrite>,
    /// Directory entries naming this inode, counting current and durable maps separately.
    links: u64,
    /// Open handles of the current generation.
    open_handles: u64,
}

#[derive(Debug)]
struct PendingWrite {
    /// Position in the global write order, to find the most recent write across files.
    seq: u64,
    offset: usize,
    data: Vec<u8>,
}

struct State {
    /// Bumped by each crash; handles of an older generation are stale.
    generation: u64,
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: BTreeMap<u64, Inode>,
    inode_next: u64,
    write_seq_next: u64,
    faults: Vec<Fault>,
    /// State of the splitmix64 generator that decides yields; `None` never yields.
    yield_rng: Option<u64>,
    stats: SimStats,
}

fn os_error(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// Splits a path into its directory and its file name.
fn split(path: &Path) -> io::Result<(&Path, String)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name.to_string_lossy().into_owned())),
        _ => Err(os_error(libc::EINVAL)),
    }
}

/// Writes `data` at `offset`, extending `buf` with zeros (a hole) when `offset` is past its end.
/// The caller keeps `offset + data.len()` within [`FILE_BYTES_MAX`].
fn apply(buf: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if data.is_empty() {
        // A write of nothing does not extend a file, even past its end.
        return;
    }
    let end = offset.saturating_add(data.len());
    if buf.len() < end {
        buf.resize(end, 0);
    }
    // The resize above makes the range always present.
    if let Some(target) = buf.get_mut(offset..end) {
        target.copy_from_slice(data);
    }
}

impl State {
    fn new() -> Self {
        let mut dirs = BTreeMap::new();
        // The roots of absolute and relative paths exist from the start, as on a real system.
        dirs.insert(PathBuf::from("/"), Dir::default());
        dirs.insert(PathBuf::new(), Dir::default());
        Self {
            generation: 0,
            dirs,
            inodes: BTreeMap::new(),
            inode_next: 1,
            write_seq_next: 0,
            faults: Vec::new(),
            yield_rng: None,
            stats: SimStats::default(),
        }
    }

    fn check_generation(&self, generation: u64) -> io::Result<()> {
        if generation == self.generation {
            Ok(())
        } else {
            Err(os_error(libc::EIO))
        }
    }

    /// Counts one call of `kind` against every armed fault, and fails it when one fires.
    fn take_fault(&mut self, kind: OpKind) -> io::Result<()> {
        let mut fired = None;
        self.faults.retain_mut(|fault| {
            if fault.kind.is_some_and(|k| k != kind) {
                return true;
            }
            if fault.skip > 0 {
                fault.skip -= 1;
                return true;
            }
            if fired.is_some() {
                // Another fault already fails this call; this one stays armed for the next.
                return true;
            }
            fired = Some(fault.errno);
            fault.sticky
        });
        match fired {
            Some(errno) => {
                self.stats.faults_fired += 1;
                Err(os_error(errno))
            }
            None => Ok(()),
        }
    }

    fn roll_yield(&mut self) -> bool {
        let Some(rng) = self.yield_rng.as_mut() else {
            return false;
        };
        // splitmix64: tiny, and its output depends on the seed alone, not on a crate version.
        *rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        z & 1 == 1
    }

    /// The inode `path` names now.
    fn lookup(&self, path: &Path) -> io::Result<u64> {
        if self.dirs.contains_key(path) {
            return Err(os_error(libc::EISDIR));
        }
        let (parent, name) = split(path)?;
        let dir = self.dirs.get(parent).ok_or_else(|| os_error(libc::ENOENT))?;
        dir.current.get(&name).copied().ok_or_else(|| os_error(libc::ENOENT))
    }

    /// The inode `path` names in the durable namespace.
    fn lookup_durable(&self, path: &Path) -> Option<u64> {
        let (parent, name) = split(path).ok()?;
        self.dirs.get(parent)?.durable.get(&name).copied()
    }

    /// The inode of a handle, if the handle is of the current generation.
    fn inode_mut(&mut self, inode: u64, generation: u64) -> io::Result<&mut Inode> {
        self.check_generation(generation)?;
        // An open handle keeps its inode alive, so a missing inode is a simulator bug; EIO says
        // the file is unusable without taking the test down.
        self.inodes.get_mut(&inode).ok_or_else(|| os_error(libc::EIO))
    }

    fn link(&mut self, inode: u64) {
        let Some(node) = self.inodes.get_mut(&inode) else {
            panic!("sim: linking inode {inode}, which does not exist");
        };
        node.links += 1;
    }

    fn unlink(&mut self, inode: u64) {
        let Some(node) = self.inodes.get_mut(&inode) else {
            panic!("sim: unlinking inode {inode}, which does not exist");
        };
        assert!(node.links > 0, "sim: inode {inode} unlinked more often than linked");
        node.links -= 1;
        if node.links == 0 && node.open_handles == 0 {
            self.inodes.remove(&inode);
        }
    }

    fn close(&mut self, inode: u64, generation: u64) {
        if generation != self.generation {
            // The crash already forgot every handle of that generation.
            return;
        }
        let Some(node) = self.inodes.get_mut(&inode) else {
            return;
        };
        assert!(node.open_handles > 0, "sim: inode {inode} closed more often than opened");
        node.open_handles -= 1;
        if node.links == 0 && node.open_handles == 0 {
            self.inodes.remove(&inode);
        }
    }

    fn create(&mut self, generation: u64, path: &Path) -> io::Result<u64> {
        self.check_generation(generation)?;
        self.take_fault(OpKind::Create)?;
        if self.dirs.contains_key(path) {
            return Err(os_error(libc::EEXIST));
        }
        let (parent, name) = split(path)?;
        let dir = self.dirs.get_mut(parent).ok_or_else(|| os_error(libc::ENOENT))?;
        if dir.current.contains_key(&name) {
            return Err(os_error(libc::EEXIST));
        }
        let inode = self.inode_next;
        self.inode_next += 1;
        dir.current.insert(name, inode);
        self.inodes.insert(inode, Inode { links: 1, open_handles: 1, ..Inode::default() });
        self.stats.creates += 1;
        Ok(inode)
    }

    fn open(&mut self, generation: u64, path: &Path) -> io::Result<u64> {
        self.check_generation(generation)?;
        let inode = self.lookup(path)?;
        self.inode_mut(inode, generation)?.open_handles += 1;
        Ok(inode)
    }

    fn rename(&mut self, generation: u64, from: &Path, to: &Path) -> io::Result<()> {
        self.check_generation(generation)?;
        self.take_fault(OpKind::Rename)?;
        if self.dirs.contains_key(from) {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "the simulator does not rename directories"));
        }
        if self.dirs.contains_key(to) {
            return Err(os_error(libc::EISDIR));
        }
        let inode = self.lookup(from)?;
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        if from_dir == to_dir && from_name == to_name {
            // POSIX: renaming a file onto itself succeeds and changes nothing.
            self.stats.renames += 1;
            return Ok(());
        }
        let target = self.dirs.get_mut(to_dir).ok_or_else(|| os_error(libc::ENOENT))?;
        // The new name is linked before the old one is unlinked, so the inode always has a name
        // and is never collected in between; the replaced target loses its name in the same step.
        let replaced = target.current.insert(to_name, inode);
        self.link(inode);
        if let Some(old) = replaced {
            self.unlink(old);
        }
        if let Some(source) = self.dirs.get_mut(from_dir) {
            source.current.remove(&from_name);
        }
        self.unlink(inode);
        self.stats.renames += 1;
        Ok(())
    }

    fn remove(&mut self, generation: u64, path: &Path) -> io::Result<()> {
        self.check_generation(generation)?;
        self.take_fault(OpKind::Remove)?;
        let inode = self.lookup(path)?;
        let (parent, name) = split(path)?;
        if let Some(dir) = self.dirs.get_mut(parent) {
            dir.current.remove(&name);
        }
        self.unlink(inode);
        self.stats.removes += 1;
        Ok(())
    }

    fn list(&self, generation: u64, path: &Path) -> io::Result<Vec<String>> {
        self.check_generation(generation)?;
        let Some(dir) = self.dirs.get(path) else {
            return Err(match self.lookup(path) {
                Ok(_) => os_error(libc::ENOTDIR),
                Err(e) => e,
            });
        };
        Ok(dir.current.keys().chain(dir.subdirs.iter()).cloned().collect())
    }

    fn create_dir_all(&mut self, generation: u64, path: &Path) -> io::Result<()> {
        self.check_generation(generation)?;
        let mut chain: Vec<&Path> = path.ancestors().collect();
        // Top-down, so each directory's parent exists by the time it is created.
        chain.reverse();
        for dir in chain {
            if self.dirs.contains_key(dir) {
                continue;
            }
            let (parent, name) = split(dir)?;
            let parent = self.dirs.get_mut(parent).ok_or_else(|| os_error(libc::ENOENT))?;
            if parent.current.contains_key(&name) {
                return Err(os_error(libc::EEXIST));
            }
            parent.subdirs.insert(name);
            self.dirs.insert(dir.to_path_buf(), Dir::default());
        }
        Ok(())
    }

    fn sync_dir(&mut self, generation: u64, path: &Path) -> io::Result<()> {
        self.check_generation(generation)?;
        self.take_fault(OpKind::SyncDir)?;
        let Some(dir) = self.dirs.get_mut(path) else {
            // Stricter than Linux, where fsync of a file opened as a "directory" succeeds: the
            // engine syncing a file as a directory is a bug worth a failure.
            return Err(match self.lookup(path) {
                Ok(_) => os_error(libc::ENOTDIR),
                Err(e) => e,
            });
        };
        let old = std::mem::replace(&mut dir.durable, dir.current.clone());
        let new: Vec<u64> = dir.durable.values().copied().collect();
        // Link the new entries before unlinking the old, so an inode named by both survives.
        for inode in new {
            self.link(inode);
        }
        for inode in old.into_values() {
            self.unlink(inode);
        }
        self.stats.sync_dir_calls += 1;
        Ok(())
    }

    fn write(&mut self, inode: u64, generation: u64, data: &[u8], offset: u64) -> io::Result<()> {
        self.check_generation(generation)?;
        self.take_fault(OpKind::Write)?;
        let offset = usize::try_from(offset)
            .ok()
            .filter(|o| o.checked_add(data.len()).is_some_and(|end| end <= FILE_BYTES_MAX))
            .ok_or_else(|| os_error(libc::EFBIG))?;
        let seq = self.write_seq_next;
        let node = self.inode_mut(inode, generation)?;
        if !data.is_empty() {
            apply(&mut node.current, offset, data);
            node.pending.push(PendingWrite { seq, offset, data: data.to_vec() });
            self.write_seq_next += 1;
        }
        self.stats.write_calls += 1;
        self.stats.bytes_written += data.len() as u64;
        Ok(())
    }

    fn read(&mut self, inode: u64, generation: u64, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let node = self.inode_mut(inode, generation)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let range = usize::try_from(offset).ok().and_then(|start| Some(start..start.checked_add(len)?));
        match range.and_then(|r| node.current.get(r)) {
            Some(bytes) => Ok(bytes.to_vec()),
            // The same error kind and message as monoio's `read_exact_at`.
            None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer")),
        }
    }

    fn sync(&mut self, inode: u64, generation: u64) -> io::Result<()> {
        self.check_generation(generation)?;
        let fault = self.take_fault(OpKind::Sync);
        let node = self.inode_mut(inode, generation)?;
        let pending = std::mem::take(&mut node.pending);
        // On failure the unsynced writes are dropped unreplayed: see the module doc.
        fault?;
        for write in &pending {
            apply(&mut node.durable, write.offset, &write.data);
        }
        self.stats.sync_data_calls += 1;
        Ok(())
    }

    fn len(&mut self, inode: u64, generation: u64) -> io::Result<u64> {
        Ok(self.inode_mut(inode, generation)?.current.len() as u64)
    }

    fn map(&mut self, inode: u64, generation: u64, offset: u64, len: usize) -> io::Result<Bytes> {
        let node = self.inode_mut(inode, generation)?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        let durable_len = node.durable.len();
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(len)?))
            .filter(|r| r.end <= durable_len);
        // The bytes come from the current view, as a real mapping shows the page cache; within the
        // durable length the two views agree unless the engine rewrote durable bytes.
        // EINVAL rather than a message, so tests can match `raw_os_error()`; the IoError around it
        // names the operation and the file.
        range.and_then(|r| node.current.get(r)).map(Bytes::copy_from_slice).ok_or_else(|| os_error(libc::EINVAL))
    }

    /// The inode and sequence number of the most recent unsynced write, and its length.
    fn last_unsynced_write(&self) -> Option<(u64, u64, usize)> {
        self.inodes
            .iter()
            .flat_map(|(inode, node)| node.pending.iter().map(move |w| (*inode, w.seq, w.data.len())))
            .max_by_key(|&(_, seq, _)| seq)
    }

    fn crash(&mut self, mode: CrashMode) {
        let tear = match mode {
            CrashMode::DropUnsynced => None,
            CrashMode::TearLastWrite { keep_bytes } => Some((keep_bytes, true)),
            CrashMode::TearLastWriteAlone { keep_bytes } => Some((keep_bytes, false)),
        };
        if let (Some((keep_bytes, keep_earlier)), Some((inode, seq, _))) = (tear, self.last_unsynced_write()) {
            if let Some(node) = self.inodes.get_mut(&inode) {
                for write in std::mem::take(&mut node.pending) {
                    if write.seq == seq {
                        let mut keep = keep_bytes.min(write.data.len());
                        let tear_at = write.offset + keep;
                        if tear_at < node.durable.len() {
                            // Inside bytes the file already holds (an overwrite of a prepared
                            // file): a disk writes a sector whole or not at all.
                            let sector = usize::try_from(crate::record::TEAR_SECTOR_BYTES).unwrap_or(512);
                            keep = (tear_at / sector * sector).saturating_sub(write.offset);
                        }
                        let kept = write.data.get(..keep).unwrap_or_default();
                        apply(&mut node.durable, write.offset, kept);
                    } else if keep_earlier {
                        // The torn write is the most recent of all, so every other write of this
                        // file precedes it, and the list is in issue order.
                        apply(&mut node.durable, write.offset, &write.data);
                    }
                }
            }
        }
        let State { dirs, inodes, .. } = self;
        for node in inodes.values_mut() {
            node.pending.clear();
            node.current.clone_from(&node.durable);
            node.open_handles = 0;
            node.links = 0;
        }
        for dir in dirs.values_mut() {
            dir.current.clone_from(&dir.durable);
            // Each durable entry is now also a current entry: two links.
            for inode in dir.durable.values() {
                if let Some(node) = inodes.get_mut(inode) {
                    node.links += 2;
                }
            }
        }
        inodes.retain(|_, node| node.links > 0);
        self.faults.clear();
        self.generation += 1;
        self.stats.crashes += 1;
    }
}

/// Yields to sibling tasks when the seeded generator says so. The borrow ends before the yield.
async fn maybe_yield(state: &RefCell<State>) {
    let yield_now_wanted = state.borrow_mut().roll_yield();
    if yield_now_wanted {
        yield_now().await;
    }
}

/// Starts a namespace operation: the generation is read before the optional yield, so an
/// operation in flight across a crash fails instead of changing the recovered state.
async fn enter(state: &RefCell<State>) -> u64 {
    let generation = state.borrow().generation;
    maybe_yield(state).await;
    generation
}

impl Default for SimStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state.try_borrow() {
            Ok(state) => f
                .debug_struct("SimStorage")
                .field("generation", &state.generation)
                .field("dirs", &state.dirs.len())
                .field("inodes", &state.inodes.len())
                .field("stats", &state.stats)
                .finish(),
            Err(_) => f.write_str("SimStorage { <borrowed> }"),
        }
    }
}

impl SimStorage {
    /// An empty file system holding only the root directories `/` and `` (for relative paths).
    pub fn new() -> Self {
        Self { state: Rc::new(RefCell::new(State::new())) }
    }

    /// Simulates a power loss: every current view becomes its durable view, as [`CrashMode`]
    /// says; handles opened before the crash fail from now on with `EIO`, armed faults are
    /// cleared (inject new ones to fail recovery), and the yield mode carries on unchanged.
    pub fn crash(&self, mode: CrashMode) {
        self.state.borrow_mut().crash(mode);
    }

    /// The length of the most recent unsynced `write_at` across all files (the one
    /// [`CrashMode::TearLastWrite`] tears), so a test can pick a tear point.
    ///
    /// # Returns
    /// `None` when every write is synced.
    pub fn last_unsynced_write_len(&self) -> Option<usize> {
        self.state.borrow().last_unsynced_write().map(|(_, _, len)| len)
    }

    /// Arms a fault. Every call of a targeted kind counts against every armed fault, whether or
    /// not the call would have succeeded; reads, `open`, `list`, `len`, `map` and
    /// `create_dir_all` are never failed.
    pub fn inject(&self, fault: Fault) {
        self.state.borrow_mut().faults.push(fault);
    }

    /// Fails the `(n_ops + 1)`-th call from now of any mutating or syncing kind (write_at,
    /// sync_data, create, rename, remove, sync_dir) with `errno`, once.
    pub fn fail_after(&self, n_ops: u64, errno: i32) {
        self.inject(Fault { kind: None, skip: n_ops, errno, sticky: false });
    }

    /// Fails the next call of `kind` with `errno`, once.
    pub fn fail_next(&self, kind: OpKind, errno: i32) {
        self.inject(Fault { kind: Some(kind), skip: 0, errno, sticky: false });
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.state.borrow_mut().faults.clear();
    }

    /// Makes every operation yield to sibling tasks with probability 1/2 before it takes effect,
    /// decided by a generator seeded with `seed`, so tasks interleave differently per seed and
    /// identically for one seed. Off by default.
    pub fn set_yield_seed(&self, seed: u64) {
        self.state.borrow_mut().yield_rng = Some(seed);
    }

    /// Turns the yield mode off: operations complete without yielding.
    pub fn stop_yielding(&self) {
        self.state.borrow_mut().yield_rng = None;
    }

    /// Counts of operations so far.
    pub fn stats(&self) -> SimStats {
        self.state.borrow().stats
    }

    /// XORs the byte at `offset` of the file `path` names now with `0xFF`, in its current view
    /// and, when the durable view is that long, in its durable view: media corruption of synced
    /// bytes. An unsynced write covering `offset` would overwrite the flip when synced.
    ///
    /// # Panics
    /// When `path` names no file or `offset` is past its current end: a broken test.
    pub fn flip_byte(&self, path: &Path, offset: u64) {
        let mut state = self.state.borrow_mut();
        let inode = state.lookup(path).unwrap_or_else(|e| panic!("flip_byte {}: {e}", path.display()));
        let Some(node) = state.inodes.get_mut(&inode) else {
            panic!("flip_byte {}: inode {inode} does not exist", path.display());
        };
        let at = usize::try_from(offset).unwrap_or(usize::MAX);
        let Some(byte) = node.current.get_mut(at) else {
            panic!("flip_byte {}: offset {offset} is past the end {}", path.display(), node.current.len());
        };
        *byte ^= 0xFF;
        if let Some(byte) = node.durable.get_mut(at) {
            *byte ^= 0xFF;
        }
    }

    /// Cuts (or extends with zeros) the file `path` names now to `len` bytes, and makes that its
    /// durable contents too, forgetting its unsynced writes: as if it were truncated and synced.
    /// Simulates a file cut short, for corruption tests.
    ///
    /// # Panics
    /// When `path` names no file, or `len` is over [`FILE_BYTES_MAX`]: a broken test.
    pub fn set_len(&self, path: &Path, len: u64) {
        let mut state = self.state.borrow_mut();
        let inode = state.lookup(path).unwrap_or_else(|e| panic!("set_len {}: {e}", path.display()));
        let Some(node) = state.inodes.get_mut(&inode) else {
            panic!("set_len {}: inode {inode} does not exist", path.display());
        };
        let len = usize::try_from(len).ok().filter(|&l| l <= FILE_BYTES_MAX);
        let Some(len) = len else {
            panic!("set_len {}: length over FILE_BYTES_MAX", path.display());
        };
        node.current.resize(len, 0);
        node.durable.clone_from(&node.current);
        node.pending.clear();
    }

    /// What a crash would leave at `path` now ([`CrashMode::DropUnsynced`]): the durable bytes
    /// of the inode that the durable namespace names there.
    ///
    /// # Returns
    /// `None` when no durable entry names a file at `path`.
    pub fn read_durable(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let inode = state.lookup_durable(path)?;
        state.inodes.get(&inode).map(|node| node.durable.clone())
    }

    /// What reads see at `path` now.
    ///
    /// # Returns
    /// `None` when no file is at `path`.
    pub fn read_current(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let inode = state.lookup(path).ok()?;
        state.inodes.get(&inode).map(|node| node.current.clone())
    }

    /// True when a file or directory is at `path` now.
    pub fn exists(&self, path: &Path) -> bool {
        let state = self.state.borrow();
        state.dirs.contains_key(path) || state.lookup(path).is_ok()
    }

    fn handle(&self, inode: u64, generation: u64, path: &Path) -> SimFile {
        SimFile {
            inner: Rc::new(Handle { state: Rc::clone(&self.state), inode, generation, path: path.to_path_buf() }),
        }
    }
}

impl Storage for SimStorage {
    type File = SimFile;

    async fn create(&self, path: &Path) -> Result<SimFile, IoError> {
        let generation = enter(&self.state).await;
        let inode = self.state.borrow_mut().create(generation, path).map_err(|e| IoError::new("create", path, e))?;
        Ok(self.handle(inode, generation, path))
    }

    async fn open(&self, path: &Path) -> Result<SimFile, IoError> {
        let generation = enter(&self.state).await;
        let inode = self.state.borrow_mut().open(generation, path).map_err(|e| IoError::new("open", path, e))?;
        Ok(self.handle(inode, generation, path))
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), IoError> {
        let generation = enter(&self.state).await;
        self.state.borrow_mut().rename(generation, from, to).map_err(|e| IoError::new("rename", from, e))
    }

    async fn remove(&self, path: &Path) -> Result<(), IoError> {
        let generation = enter(&self.state).await;
        self.state.borrow_mut().remove(generation, path).map_err(|e| IoError::new("remove", path, e))
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>, IoError> {
        let generation = enter(&self.state).await;
        self.state.borrow().list(generation, dir).map_err(|e| IoError::new("list", dir, e))
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<(), IoError> {
        let generation = enter(&self.state).await;
        self.state.borrow_mut().create_dir_all(generation, dir).map_err(|e| IoError::new("mkdir", dir, e))
    }

    async fn sync_dir(&self, dir: &Path) -> Result<(), IoError> {
        let generation = enter(&self.state).await;
        self.state.borrow_mut().sync_dir(generation, dir).map_err(|e| IoError::new("fsync dir", dir, e))
    }
}

impl StorageFile for SimFile {
    fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn write_at(&self, buf: Vec<u8>, offset: u64) -> Result<Vec<u8>, IoError> {
        let h = &self.inner;
        maybe_yield(&h.state).await;
        h.state
            .borrow_mut()
            .write(h.inode, h.generation, &buf, offset)
            .map_err(|e| IoError::new("write", &h.path, e))?;
        Ok(buf)
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
        let h = &self.inner;
        maybe_yield(&h.state).await;
        h.state.borrow_mut().read(h.inode, h.generation, offset, len).map_err(|e| IoError::new("read", &h.path, e))
    }

    async fn sync_data(&self) -> Result<(), IoError> {
        let h = &self.inner;
        maybe_yield(&h.state).await;
        h.state.borrow_mut().sync(h.inode, h.generation).map_err(|e| IoError::new("fdatasync", &h.path, e))
    }

    async fn len(&self) -> Result<u64, IoError> {
        let h = &self.inner;
        maybe_yield(&h.state).await;
        h.state.borrow_mut().len(h.inode, h.generation).map_err(|e| IoError::new("stat", &h.path, e))
    }

    fn map(&self, offset: u64, len: usize) -> Result<Bytes, IoError> {
        let h = &self.inner;
        h.state.borrow_mut().map(h.inode, h.generation, offset, len).map_err(|e| IoError::new("mmap", &h.path, e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test fails loudly on any surprise")]
mod tests {
    use super::*;
    use crate::runtime::block_on;

    const DIR: &str = "/data/partitions/p/0";

    fn path(name: &str) -> PathBuf {
        Path::new(DIR).join(name)
    }

    async fn setup() -> SimStorage {
        let sim = SimStorage::new();
        sim.create_dir_all(Path::new(DIR)).await.unwrap();
        sim
    }

    /// A file whose name and contents are both durable.
    async fn durable_file(sim: &SimStorage, name: &str, contents: &[u8]) -> SimFile {
        let file = sim.create(&path(name)).await.unwrap();
        file.write_at(contents.to_vec(), 0).await.unwrap();
        file.sync_data().await.unwrap();
        sim.sync_dir(Path::new(DIR)).await.unwrap();
        file
    }

    async fn contents(sim: &SimStorage, name: &str) -> Vec<u8> {
        let file = sim.open(&path(name)).await.unwrap();
        let len = file.len().await.unwrap();
        file.read_at(0, usize::try_from(len).unwrap()).await.unwrap()
    }

    fn inode_count(sim: &SimStorage) -> usize {
        sim.state.borrow().inodes.len()
    }

    #[test]
    fn crash_drops_unsynced_write_and_keeps_synced_one() {
        block_on(async {
            let sim = setup().await;
            let file = durable_file(&sim, "f", b"abc").await;
            file.write_at(b"def".to_vec(), 3).await.unwrap();
            assert_eq!(sim.read_current(&path("f")).unwrap(), b"abcdef");
            assert_eq!(sim.read_durable(&path("f")).unwrap(), b"abc");
            sim.crash(CrashMode::DropUnsynced);
            assert_eq!(contents(&sim, "f").await, b"abc");
        });
    }

    #[test]
    fn torn_write_keeps_exactly_k_bytes_after_earlier_writes_of_its_file() {
        block_on(async {
            let sim = setup().await;
            let other = durable_file(&sim, "g", b"xy").await;
            let file = durable_file(&sim, "f", b"abc").await;
            other.write_at(b"zz".to_vec(), 2).await.unwrap();
            file.write_at(b"DEFG".to_vec(), 3).await.unwrap();
            file.write_at(b"HIJKLM".to_vec(), 7).await.unwrap();
            assert_eq!(sim.last_unsynced_write_len(), Some(6));
            sim.crash(CrashMode::TearLastWrite { keep_bytes: 2 });
            assert_eq!(contents(&sim, "f").await, b"abcDEFGHI");
            assert_eq!(contents(&sim, "g").await, b"xy");
            assert_eq!(sim.last_unsynced_write_len(), None);
        });
    }

    #[test]
    fn torn_write_alone_leaves_a_zero_hole_where_earlier_writes_were() {
        block_on(async {
            let sim = setup().await;
            let file = durable_file(&sim, "f", b"abc").await;
            file.write_at(b"DEFG".to_vec(), 3).await.unwrap();
            file.write_at(b"HIJKLM".to_vec(), 7).await.unwrap();
            sim.crash(CrashMode::TearLastWriteAlone { keep_bytes: 2 });
            assert_eq!(contents(&sim, "f").await, b"abc\0\0\0\0HI");
        });
    }

    #[test]
    fn torn_write_keeps_at_most_the_whole_write() {
        block_on(async {
            let sim = setup().await;
            let file = durable_file(&sim, "f", b"abc").await;
            file.write_at(b"DEF".to_vec(), 3).await.unwrap();
            sim.crash(CrashMode::TearLastWrite { keep_bytes: 100 });
            assert_eq!(contents(&sim, "f").await, b"abcDEF");
        });
    }

    #[test]
    fn torn_overwrite_changes_only_its_kept_prefix_in_whole_sectors() {
        block_on(async {
            let sim = setup().await;
            let file = durable_file(&sim, "f", b"abcdef").await;
            file.write_at(b"XYZ".to_vec(), 1).await.unwrap();
            sim.crash(CrashMode::TearLastWrite { keep_bytes: 1 });
            assert_eq!(contents(&sim, "f").await, b"abcdef", "a sector is written whole or not at all");
            let file = durable_file(&sim, "g", &[b'a'; 1024]).await;
            file.write_at(vec![b'X'; 1000], 100).await.unwrap();
            sim.crash(CrashMode::TearLastWrite { keep_bytes: 600 });
            let got = contents(&sim, "g").await;
            assert_eq!(&got[..100], &[b'a'; 100][..]);
            assert_eq!(&got[100..512], &[b'X'; 412][..], "up to the sector boundary before the tear");
            assert_eq!(&got[512..], &[b'a'; 512][..]);
        });
    }

    #[test]
    fn torn_write_of_zero_bytes_drops_the_write() {
        block_on(async {
            let sim = setup().await;
            let file = durable_file(&sim, "f", b"abc").await;
            file.write_at(b"DEF".to_vec(), 3).await.unwrap();
            sim.crash(CrashMode::TearLastWrite { keep_bytes: 0 });
            assert_eq!(contents(&sim, "f").await, b"abc");
        });
    }

    #[test]
    fn crash_reverts_unsynced_create() {
        block_on(async {
            let sim = setup().await;
            let file = sim.create(&path("f")).await.unwrap();
            file.write_at(b"abc".to_vec(), 0).await.unwrap();
            file.sync_data().await.unwrap();
            assert_eq!(sim.read_durable(&path("f")), None);
            sim.crash(CrashMode::DropUnsynced);
            assert!(sim.open(&path("f")).await.unwrap_err().is_not_found());
            assert!(sim.list(Path::new(DIR)).await.unwrap().is_empty());
            assert_eq!(inode_count(&sim), 0);
        });
    }

    #[test]
    fn crash_reverts_unsynced_remove() {
        block_on(async {
            let sim = setup().await;
            durable_file(&sim, "f", b"abc").await;
            sim.remove(&path("f")).await.unwrap();
            assert!(!sim.exists(&path("f")));
            sim.crash(CrashMode::DropUnsynced);
            assert_eq!(contents(&sim, "f").await, b"abc");
        });
    }

    #[test]
    fn crash_keeps_synced_remove() {
        block_on(async {
            let sim = setup().await;
            durable_file(&sim, "f", b"abc").await;
            sim.remove(&path("f")).await.unwrap();
            sim.sync_dir(Path::new(DIR)).await.unwrap();
            sim.crash(CrashMode::DropUnsynced);
            assert!(!sim.exists(&path("f")));
            assert_eq!(inode_count(&sim), 0);
        });
    }

    #[test]
    fn crash_reverts_unsynced_rename() {
        block_on(async {
            let sim = setup().await;
            durable_file(&sim, "a", b"old-a").await;
            durable_file(&sim, "b", b"old-b").await;
            sim.rename(&path("a"), &path("b")).await.unwrap();
            assert!(!sim.exists(&path("a")));
            assert_eq!(contents(&sim, "b").await, b"old-a");
            sim.crash(CrashMode::DropUnsynced);
            assert_eq!(contents(&sim, "a").await, b"old-a");
            assert_eq!(contents(&sim, "b").await, b"old-b");
        });
    }

    #[test]
    fn crash_keeps_synced_rename_and_collects_the_replaced_file() {
        block_on(async {
            let sim = setup().await;
            drop(durable_file(&sim, "a", b"old-a").await);
            drop(durable_file(&sim, "b", b"old-b").await);
            sim.rename(&path("a"), &path("b")).await.unwrap();
            sim.sync_dir(Path::new(DIR)).await.unwrap();
            assert_eq!(inode_count(&sim), 1);
            sim.crash(CrashMode::DropUnsynced);
            assert!(!sim.exists(&path("a")));
            assert_eq!(contents(&sim, "b").await, b"old-a");
        });
    }

    #[test]
    fn rename_replaces_target_while_its_open_handle_keeps_the_old_inode() {
        block_on(async {
            let sim = setup().await;
            durable_file(&sim, "a", b"new").await;
            let old = durable_file(&sim, "b", b"old").await;
            sim.rename(&path("a"), &path("b")).await.unwrap();
            assert_eq!(old.read_at(0, 3).await.unwrap(), b"old");
            assert_eq!(contents(&sim, "b").await, b"new");
            assert_eq!(sim.list(Path::new(DIR)).await.unwrap(), vec!["b".to_owned()]);
        });
    }

    #[test]
    fn rename_onto_itself_changes_nothing() {
        block_on(async {
            let sim = setup().await;
            durable_file(&sim, "a", b"abc").await;
            sim.rename(&path("a"), &path("a")).await.unwrap();
            assert_eq!(contents(&sim, "a").await, b"abc");
        });
    }

    #[test]
    fn stale_handles_fail_after_crash_and_change_nothing() {
        block_on(async {
            let sim = setup().await;
            let file = durable_file(&sim, "f", b"abc").await;
            sim.crash(CrashMode::DropUnsynced);
            let eio = Some(libc::EIO);
            assert_eq!(file.write_at(b"X".to_vec(), 0).await.unwrap_err().raw_os_error(), eio);
            assert_eq!(file.read_at(0, 1).await.unwrap_err().raw_os_error(), eio);
            assert_eq!(file.sync_data().await.unwrap_err().raw_os_error(), eio);
            assert_eq!(file.len().await.unwrap_err().raw_os_error(), eio);
            assert_eq!(file.map(0, 1).unwrap_err().raw_os_error(), eio);
            assert_eq!(contents(&sim, "f").await, b"abc");
            assert_eq!(sim.read_durable(&path("f")).unwrap(), b"abc");
        });
    }

    #[test]
    fn operation_in_flight_across_crash_fails() {
        // The first roll of this seed yields, so the create below is suspended inside `enter`
        // when the crash happens.
        let seed = (0..64)
            .find(|&seed| {
                let mut state = State::new();
                state.yield_rng = Some(seed);
                state.roll_yield()
            })
            .unwrap();
        block_on(async move {
            let sim = setup().await;
            sim.set_yield_seed(seed);
            let task = {
                let sim = sim.clone();
                crate::runtime::spawn(async move { sim.create(&path("f")).await.map(drop) })
            };
            // Lets the task start and suspend in its yield.
            yield_now().await;
            sim.crash(CrashMode::DropUnsynced);
            sim.stop_yielding();
            let result = task.await;
            assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EIO));
            assert!(!sim.exists(&path("f")));
        });
    }

    #[test]
    fn fail_after_fails_exactly_the_next_plus_nth_mutating_call() {
        block_on(async {
            let sim = setup().await;
            let file = sim.create(&path("f")).await.unwrap();
            sim.fail_after(2, libc::ENOSPC);
            file.write_at(b"a".to_vec(), 0).await.unwrap();
            // Reads are not counted.
            file.read_at(0, 1).await.unwrap();
            file.sync_data().await.unwrap();
            let err = file.write_at(b"b".to_vec(), 1).await.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
            assert_eq!(err.op, "write");
            assert_eq!(sim.read_current(&path("f")).unwrap(), b"a");
            file.write_at(b"c".to_vec(), 1).await.unwrap();
            assert_eq!(sim.read_current(&path("f")).unwrap(), b"ac");
            assert_eq!(sim.stats().faults_fired, 1);
        });
    }

    #[test]
    fn fail_next_targets_only_its_kind() {
        block_on(async {
            let sim = setup().await;
            let file = sim.create(&path("f")).await.unwrap();
            sim.fail_next(OpKind::Sync, libc::EIO);
            file.write_at(b"a".to_vec(), 0).await.unwrap();
            sim.sync_dir(Path::new(DIR)).await.unwrap();
            let err = file.sync_data().await.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EIO));
            assert_eq!(err.op, "fdatasync");
            file.sync_data().await.unwrap();
        });
    }

    #[test]
    fn sticky_fault_fails_until_cleared() {
        block_on(async {
            let sim = setup().await;
            let file = sim.create(&path("f")).await.unwrap();
            sim.inject(Fault { kind: Some(OpKind::Write), skip: 1, errno: libc::ENOSPC, sticky: true });
            file.write_at(b"a".to_vec(), 0).await.unwrap();
            assert_eq!(file.write_at(b"b".to_vec(), 1).await.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
            assert_eq!(file.write_at(b"b".to_vec(), 1).await.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
            sim.clear_faults();
            file.write_at(b"b".to_vec(), 1).await.unwrap();
            assert_eq!(sim.read_current(&path("f")).unwrap(), b"ab");
        });
    }

    #[test]
    fn failed_sync_loses_unsynced_writes_for_good() {
        block_on(async {
            let sim = setup().await;
            let file = durable_file(&sim, "f", b"abc").await;
            file.write_at(b"def".to_vec(), 3).await.unwrap();
            sim.fail_next(OpKind::Sync, libc::EIO);
            file.sync_data().await.unwrap_err();
            // A retry succeeds without making the lost pages durable, as on Linux.
            file.sync_data().await.unwrap();
            assert_eq!(sim.read_current(&path("f")).unwrap(), b"abcdef");
            assert_eq!(sim.read_durable(&path("f")).unwrap(), b"abc");
            sim.crash(CrashMode::DropUnsynced);
            assert_eq!(contents(&sim, "f").await, b"abc");
        });
    }

    #[test]
    fn failed_namespace_operations_change_nothing() {
        block_on(async {
            let sim = setup().await;
            durable_file(&sim, "a", b"abc").await;
            sim.fail_next(OpKind::Create, libc::ENOSPC);
            sim.create(&path("b")).await.unwrap_err();
            assert!(!sim.exists(&path("b")));
            sim.fail_next(OpKind::Rename, libc::EIO);
            sim.rename(&path("a"), &path("b")).await.unwrap_err();
            assert!(sim.exists(&path("a")));
            assert!(!sim.exists(&path("b")));
            sim.fail_next(OpKind::Remove, libc::EIO);
            sim.remove(&path("a")).await.unwrap_err();
            assert!(sim.exists(&path("a")));
            sim.remove(&path("a")).await.unwrap();
            sim.fail_next(OpKind::SyncDir, libc::EIO);
            sim.sync_dir(Path::new(DIR)).await.unwrap_err();
            assert_eq!(sim.read_durable(&path("a")).unwrap(), b"abc");
        });
    }

    #[test]
    fn crash_clears_faults() {
        block_on(async {
            let sim = setup().await;
            sim.fail_next(OpKind::Create, libc::EIO);
            sim.crash(CrashMode::DropUnsynced);
            sim.create(&path("f")).await.unwrap();
        });
    }

    #[test]
    fn flip_byte_corrupts_both_views() {
        block_on(async {
            let sim = setup().await;
            durable_file(&sim, "f", b"abc").await;
            sim.flip_byte(&path("f"), 1);
            let flipped = vec![b'a', b'b' ^ 0xFF, b'c'];
            assert_eq!(sim.read_current(&path("f")).unwrap(), flipped);
            assert_eq!(sim.read_durable(&path("f")).unwrap(), flipped);
            sim.crash(CrashMode::DropUnsynced);
            assert_eq!(contents(&sim, "f").await, flipped);
        });
    }

    #[test]
    fn set_len_cuts_both_views() {
        block_on(async {
            let sim = setup().await;
            let file = durable_file(&sim, "f", b"abcdef").await;
            sim.set_len(&path("f"), 2);
            assert_eq!(file.len().await.unwrap(), 2);
            assert_eq!(sim.read_durable(&path("f")).unwrap(), b"ab");
            let err = file.read_at(0, 3).await.unwrap_err();
            assert_eq!(err.source.kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    #[test]
    fn map_refuses_ranges_past_the_durable_length() {
        block_on(async {
            let sim = setup().await;
            let file = sim.create(&path("f")).await.unwrap();
            file.write_at(b"abcdef".to_vec(), 0).await.unwrap();
            let err = file.map(0, 1).unwrap_err();
            assert_eq!(err.op, "mmap");
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
            file.sync_data().await.unwrap();
            assert_eq!(&file.map(0, 6).unwrap()[..], b"abcdef");
            file.write_at(b"gh".to_vec(), 6).await.unwrap();
            assert_eq!(file.map(4, 4).unwrap_err().raw_os_error(), Some(libc::EINVAL));
            assert_eq!(&file.map(4, 2).unwrap()[..], b"ef");
            assert!(file.map(100, 0).unwrap().is_empty());
            assert_eq!(file.map(u64::MAX, 1).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        });
    }

    #[test]
    fn read_past_end_is_unexpected_eof() {
        block_on(async {
            let sim = setup().await;
            let file = sim.create(&path("f")).await.unwrap();
            file.write_at(b"abc".to_vec(), 0).await.unwrap();
            assert_eq!(file.read_at(0, 3).await.unwrap(), b"abc");
            let err = file.read_at(1, 3).await.unwrap_err();
            assert_eq!(err.source.kind(), io::ErrorKind::UnexpectedEof);
            assert_eq!(err.op, "read");
            assert!(file.read_at(10, 0).await.unwrap().is_empty());
        });
    }

    #[test]
    fn write_past_end_leaves_a_zero_hole() {
        block_on(async {
            let sim = setup().await;
            let file = sim.create(&path("f")).await.unwrap();
            file.write_at(b"x".to_vec(), 4).await.unwrap();
            assert_eq!(file.read_at(0, 5).await.unwrap(), b"\0\0\0\0x");
            file.write_at(Vec::new(), 100).await.unwrap();
            assert_eq!(file.len().await.unwrap(), 5);
        });
    }

    #[test]
    fn write_past_the_size_limit_is_efbig() {
        block_on(async {
            let sim = setup().await;
            let file = sim.create(&path("f")).await.unwrap();
            let err = file.write_at(b"x".to_vec(), FILE_BYTES_MAX as u64).await.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EFBIG));
            assert_eq!(file.len().await.unwrap(), 0);
        });
    }

    #[test]
    fn removed_file_handle_keeps_working_until_dropped() {
        block_on(async {
            let sim = setup().await;
            let file = sim.create(&path("f")).await.unwrap();
            file.write_at(b"abc".to_vec(), 0).await.unwrap();
            sim.remove(&path("f")).await.unwrap();
            assert!(sim.open(&path("f")).await.unwrap_err().is_not_found());
            file.write_at(b"d".to_vec(), 3).await.unwrap();
            file.sync_data().await.unwrap();
            assert_eq!(file.read_at(0, 4).await.unwrap(), b"abcd");
            assert_eq!(&file.map(0, 4).unwrap()[..], b"abcd");
            assert_eq!(inode_count(&sim), 1);
            let clone = file.clone();
            drop(file);
            assert_eq!(inode_count(&sim), 1);
            drop(clone);
            assert_eq!(inode_count(&sim), 0);
        });
    }

    #[test]
    fn missing_and_existing_paths_have_the_right_error_kinds() {
        block_on(async {
            let sim = setup().await;
            durable_file(&sim, "f", b"abc").await;
            assert!(sim.open(&path("missing")).await.unwrap_err().is_not_found());
            assert!(sim.remove(&path("missing")).await.unwrap_err().is_not_found());
            assert!(sim.rename(&path("missing"), &path("g")).await.unwrap_err().is_not_found());
            assert!(sim.list(&path("missing")).await.unwrap_err().is_not_found());
            assert!(sim.sync_dir(&path("missing")).await.unwrap_err().is_not_found());
            assert!(sim.create(Path::new("/nowhere/f")).await.unwrap_err().is_not_found());
            let err = sim.create(&path("f")).await.unwrap_err();
            assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);
            assert_eq!(err.op, "create");
            let err = sim.create(Path::new(DIR)).await.unwrap_err();
            assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);
            let err = sim.create_dir_all(&path("f").join("sub")).await.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
            let err = sim.list(&path("f")).await.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
        });
    }

    #[test]
    fn list_shows_files_and_durable_subdirectories() {
        block_on(async {
            let sim = setup().await;
            sim.create_dir_all(&path("sub")).await.unwrap();
            durable_file(&sim, "f", b"").await;
            let mut names = sim.list(Path::new(DIR)).await.unwrap();
            names.sort();
            assert_eq!(names, vec!["f".to_owned(), "sub".to_owned()]);
            sim.crash(CrashMode::DropUnsynced);
            assert!(sim.exists(&path("sub")));
            assert_eq!(sim.list(Path::new("/data/partitions")).await.unwrap(), vec!["p".to_owned()]);
        });
    }

    #[test]
    fn stats_count_successful_operations() {
        block_on(async {
            let sim = setup().await;
            let file = durable_file(&sim, "f", b"abc").await;
            file.write_at(b"defg".to_vec(), 3).await.unwrap();
            sim.fail_next(OpKind::Sync, libc::EIO);
            file.sync_data().await.unwrap_err();
            sim.rename(&path("f"), &path("g")).await.unwrap();
            sim.remove(&path("g")).await.unwrap();
            sim.crash(CrashMode::DropUnsynced);
            let expected = SimStats {
                write_calls: 2,
                bytes_written: 7,
                sync_data_calls: 1,
                sync_dir_calls: 1,
                creates: 1,
                renames: 1,
                removes: 1,
                faults_fired: 1,
                crashes: 1,
            };
            assert_eq!(sim.stats(), expected);
        });
    }

    /// Two tasks each create a file and write to it eight times; the log records whose write
    /// completed, in order.
    fn interleaving(seed: Option<u64>) -> String {
        block_on(async move {
            let sim = setup().await;
            if let Some(seed) = seed {
                sim.set_yield_seed(seed);
            }
            let log = Rc::new(RefCell::new(String::new()));
            let mut tasks = Vec::new();
            for name in ["a", "b"] {
                let sim = sim.clone();
                let log = Rc::clone(&log);
                tasks.push(crate::runtime::spawn(async move {
                    let file = sim.create(&path(name)).await.unwrap();
                    for offset in 0..8 {
                        file.write_at(vec![1], offset).await.unwrap();
                        log.borrow_mut().push_str(name);
                    }
                }));
            }
            for task in tasks {
                task.await;
            }
            log.take()
        })
    }

    #[test]
    fn yield_mode_interleaves_tasks_reproducibly() {
        assert_eq!(interleaving(None), "aaaaaaaabbbbbbbb");
        let seeded = interleaving(Some(7));
        assert_ne!(seeded, "aaaaaaaabbbbbbbb");
        assert_eq!(seeded.matches('a').count(), 8);
        assert_eq!(interleaving(Some(7)), seeded);
    }
}
