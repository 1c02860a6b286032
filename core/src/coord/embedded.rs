//! The embedded coordination store: durable, file-backed, inside the data directory; one node.
//!
//! The whole tree lives in memory (a `BTreeMap` of path → data, version, mode and children). Every
//! persistent mutation is appended to a log of CRC-framed records ([`crate::record`]) and
//! fdatasync'd before the call returns. Files in the store's directory (`<data>/coord`):
//!
//! ```text
//! LOCK      flock'd exclusively while a store is open: one process (one session) per directory
//! LOG       header (magic "CANDYCRD", version, generation) + records, each one call's changes
//! LOG.tmp   only while a compaction writes the next LOG; deleted at open
//! ```
//!
//! Invariants:
//! - A mutation is applied in memory only after its record is durable. A failed write or sync
//!   stops the store: every later mutation fails with [`CoordError::Store`] until it is reopened,
//!   because the log's state is no longer known (reads keep answering from memory).
//! - One record is one call: a `create` and the parents it adds become durable together.
//! - Ephemeral entries are never written to disk; they die with the value (its session). Only
//!   persistent entries can have children, so replay never meets a persistent entry whose parent
//!   was ephemeral.
//! - Only the last record can be unsynced, so at open a torn last record is discarded (the file is
//!   truncated to the last whole record before anything is appended), and a bad record followed by
//!   more bytes is corruption: open fails naming the file and the offset.
//! - Replay checks what the writer guarantees: a put of an existing entry carries its version + 1,
//!   a new entry's parent exists, a deleted entry exists and has no children.
//! - Compaction writes the live persistent entries (parents before children, with their versions)
//!   as a new log in `LOG.tmp`, fdatasyncs it, renames it over `LOG` and fsyncs the directory, so
//!   `LOG` is always the old log or the complete new one. It runs when the log is larger than
//!   `compact_bytes_min` and `compact_ratio` times a snapshot, which bounds replay at open.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use super::{validate_path, CoordError, Coordination, CreateMode, Version};
use crate::{
    codec::{Put, Reader},
    error::{DecodeError, IoError},
    limits,
    record::{self, ScanEnd, LOG_HEADER_BYTES, RECORD_HEADER_BYTES},
};

/// Magic bytes of the embedded coordination log.
pub const COORD_LOG_MAGIC: [u8; 8] = *b"CANDYCRD";
/// Format version of the embedded coordination log (file header).
pub const COORD_LOG_VERSION: u16 = 1;
/// Version byte of a coordination log record body.
pub const COORD_RECORD_VERSION: u8 = 1;
/// The log file.
pub const LOG_FILE: &str = "LOG";
/// The next log while a compaction (or the first open) writes it.
pub const LOG_TMP_FILE: &str = "LOG.tmp";
/// The lock file, flock'd while the store is open.
pub const LOCK_FILE: &str = "LOCK";

/// Bytes of a record body before its changes: version u8, change count u16.
const BODY_HEADER_BYTES: usize = 1 + 2;
/// Bytes of a put change besides its path and data: tag u8, path length u16, version u64, data
/// length u32.
const PUT_FIXED_BYTES: usize = 1 + 2 + 8 + 4;
const _: () = assert!(PUT_FIXED_BYTES == 15);
const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;

/// One change of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogChange<'a> {
    /// The persistent entry `path` now holds `data` at `version` (created if absent).
    Put {
        /// The entry.
        path: &'a str,
        /// Its version after the change.
        version: Version,
        /// Its data after the change.
        data: &'a [u8],
    },
    /// The persistent entry `path` (which has no children) is gone.
    Delete {
        /// The entry.
        path: &'a str,
    },
}

/// Bytes a snapshot spends on one persistent entry: a record holding one put.
fn snapshot_entry_bytes(path: &str, data: &[u8]) -> u64 {
    (RECORD_HEADER_BYTES + BODY_HEADER_BYTES + PUT_FIXED_BYTES + path.len() + data.len()) as u64
}

/// Encodes a log record body: `version u8 | change_count u16 | change …`.
///
/// # Panics
/// With no changes or more than `u16::MAX` (a call makes at most one per path segment).
pub fn encode_log_record(changes: &[LogChange<'_>], out: &mut Vec<u8>) {
    assert!(!changes.is_empty(), "a record holds at least one change");
    let count = u16::try_from(changes.len()).unwrap_or(u16::MAX);
    assert!(usize::from(count) == changes.len(), "more changes than a record holds");
    out.put_u8(COORD_RECORD_VERSION);
    out.put_u16(count);
    for change in changes {
        match *change {
            LogChange::Put { path, version, data } => {
                out.put_u8(TAG_PUT);
                out.put_bytes16(path.as_bytes());
                out.put_u64(version);
                out.put_bytes32(data);
            }
            LogChange::Delete { path } => {
                out.put_u8(TAG_DELETE);
                out.put_bytes16(path.as_bytes());
            }
        }
    }
}

/// Decodes a log record body, borrowing paths and data from it.
///
/// # Errors
/// [`DecodeError`] for an unknown version or tag, no changes, an invalid path, data over
/// `COORD_DATA_BYTES_MAX`, a short body or trailing bytes.
pub fn decode_log_record(body: &[u8]) -> Result<Vec<LogChange<'_>>, DecodeError> {
    let mut r = Reader::new(body);
    let version = r.u8()?;
    if version != COORD_RECORD_VERSION {
        return Err(DecodeError::UnsupportedVersion(u16::from(version)));
    }
    let count = r.u16()?;
    if count == 0 {
        return Err(DecodeError::Malformed { what: "change count", offset: 1 });
    }
    let mut out = Vec::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        let at = r.position() as u64;
        let tag = r.u8()?;
        let path_at = r.position() as u64;
        let path = std::str::from_utf8(r.bytes16()?)
            .map_err(|_| DecodeError::Malformed { what: "coordination path", offset: path_at })?;
        if validate_path(path).is_err() {
            return Err(DecodeError::Malformed { what: "coordination path", offset: path_at });
        }
        let change = match tag {
            TAG_PUT => {
                let version = r.u64()?;
                let data_at = r.position() as u64;
                let data = r.bytes32()?;
                if data.len() > limits::COORD_DATA_BYTES_MAX {
                    return Err(DecodeError::Malformed { what: "coordination data length", offset: data_at });
                }
                LogChange::Put { path, version, data }
            }
            TAG_DELETE => LogChange::Delete { path },
            _ => return Err(DecodeError::Malformed { what: "change tag", offset: at }),
        };
        out.push(change);
    }
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed { what: "trailing bytes", offset: r.position() as u64 });
    }
    Ok(out)
}

/// Tuning of the embedded store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The log is not compacted below this size.
    pub compact_bytes_min: u64,
    /// The log is compacted when larger than this many times a snapshot of the live entries.
    pub compact_ratio: u64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self { compact_bytes_min: limits::COORD_LOG_COMPACT_BYTES_MIN, compact_ratio: limits::COORD_LOG_COMPACT_RATIO }
    }
}

/// What open found in the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Records replayed.
    pub records: u64,
    /// A torn tail that was discarded: its offset and length.
    pub torn: Option<(u64, u64)>,
    /// Whether the log was compacted at open.
    pub compacted: bool,
}

#[derive(Debug)]
struct Node {
    data: Vec<u8>,
    version: Version,
    mode: CreateMode,
    /// Names of the direct children, in byte order.
    children: BTreeSet<String>,
}

/// The parent path and the last segment, or `None` for a top-level path.
fn split_parent(path: &str) -> Option<(&str, &str)> {
    path.rsplit_once('/')
}

/// The in-memory tree and the accounting of its snapshot size.
#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
    /// Σ `snapshot_entry_bytes` over persistent entries.
    persistent_bytes: u64,
}

impl Tree {
    fn insert(&mut self, path: &str, data: &[u8], version: Version, mode: CreateMode) {
        assert!(!self.nodes.contains_key(path), "insert of an existing entry");
        if let Some((parent, name)) = split_parent(path) {
            let p = self.nodes.get_mut(parent);
            let p = p.unwrap_or_else(|| panic!("insert of {path} below a missing parent"));
            assert!(p.mode == CreateMode::Persistent, "only persistent entries have children");
            p.children.insert(name.to_owned());
        }
        if mode == CreateMode::Persistent {
            self.persistent_bytes += snapshot_entry_bytes(path, data);
        }
        let node = Node { data: data.to_vec(), version, mode, children: BTreeSet::new() };
        self.nodes.insert(path.to_owned(), node);
    }

    fn replace(&mut self, path: &str, data: &[u8], version: Version) {
        let node = self.nodes.get_mut(path).unwrap_or_else(|| panic!("replace of missing {path}"));
        if node.mode == CreateMode::Persistent {
            self.persistent_bytes -= snapshot_entry_bytes(path, &node.data);
            self.persistent_bytes += snapshot_entry_bytes(path, data);
        }
        node.data = data.to_vec();
        node.version = version;
    }

    fn remove(&mut self, path: &str) {
        let node = self.nodes.remove(path).unwrap_or_else(|| panic!("remove of missing {path}"));
        assert!(node.children.is_empty(), "remove of an entry with children");
        if node.mode == CreateMode::Persistent {
            self.persistent_bytes -= snapshot_entry_bytes(path, &node.data);
        }
        if let Some((parent, name)) = split_parent(path) {
            if let Some(p) = self.nodes.get_mut(parent) {
                p.children.remove(name);
            }
        }
    }

    /// Applies a change read from the log, checking what the writer guarantees.
    fn replay(&mut self, change: &LogChange<'_>) -> Result<(), &'static str> {
        match *change {
            LogChange::Put { path, version, data } => match self.nodes.get(path) {
                Some(node) if node.version.checked_add(1) != Some(version) => Err("entry version not one above"),
                Some(_) => {
                    self.replace(path, data, version);
                    Ok(())
                }
                None => {
                    if let Some((parent, _)) = split_parent(path) {
                        if !self.nodes.contains_key(parent) {
                            return Err("entry without its parent");
                        }
                    }
                    self.insert(path, data, version, CreateMode::Persistent);
                    Ok(())
                }
            },
            LogChange::Delete { path } => match self.nodes.get(path) {
                None => Err("delete of a missing entry"),
                Some(node) if !node.children.is_empty() => Err("delete of an entry with children"),
                Some(_) => {
                    self.remove(path);
                    Ok(())
                }
            },
        }
    }
}

/// The embedded store. Its session is the value: ephemeral entries vanish when it is dropped
/// (and are never written to disk).
pub struct EmbeddedCoordination {
    dir: PathBuf,
    log_path: PathBuf,
    /// The open log, appended at `log_bytes`.
    log: File,
    log_bytes: u64,
    /// The log header's generation: 1 for a new store, +1 at each compaction.
    generation: u64,
    tree: Tree,
    config: EmbeddedConfig,
    /// A write or sync failed: the log's state is unknown, so no more mutations.
    stopped: bool,
    report: OpenReport,
    /// This value's session: random per open, so a reopened store is a new session.
    watch: std::sync::Arc<super::SessionWatch>,
    /// Held (flock'd) for as long as the value lives. Declared last so it is dropped (and the lock
    /// released) after the log is closed.
    _lock: File,
}

impl std::fmt::Debug for EmbeddedCoordination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCoordination")
            .field("dir", &self.dir)
            .field("entries", &self.tree.nodes.len())
            .field("log_bytes", &self.log_bytes)
            .field("generation", &self.generation)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

fn io_error(op: &'static str, path: &Path, e: io::Error) -> CoordError {
    CoordError::Store(IoError::new(op, path, e).to_string())
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> CoordError {
    CoordError::Store(format!("corrupt coordination log {}: {what}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<(), CoordError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("fsync directory", dir, e))
}

/// Takes the exclusive flock of `path`, without waiting.
fn lock(path: &Path, dir: &Path) -> Result<File, CoordError> {
    use std::os::fd::AsRawFd;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error("open", path, e))?;
    #[expect(unsafe_code, reason = "see SAFETY")]
    // SAFETY: flock takes a file descriptor and flags and touches no memory; the descriptor is
    // valid for the call because `file` owns it.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(CoordError::Store(format!(
                "coordination store {} is already open (lock {} is held by another process or session)",
                dir.display(),
                path.display()
            )));
        }
        return Err(io_error("flock", path, e));
    }
    Ok(file)
}

/// Writes `bytes` as a new durable file `tmp` and renames it to `target`, then fsyncs `dir`.
/// Returns the new file, open for reading and writing.
///
/// # Errors
/// `Store` with the failed operation; `renamed` tells whether the rename was attempted (after
/// which `target` may name either file until the directory sync succeeds).
fn replace_file(dir: &Path, tmp: &Path, target: &Path, bytes: &[u8], renamed: &mut bool) -> Result<File, CoordError> {
    match std::fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("remove", tmp, e)),
    }
    let mut file =
        OpenOptions::new().read(true).write(true).create_new(true).open(tmp).map_err(|e| io_error("create", tmp, e))?;
    file.write_all(bytes).map_err(|e| io_error("write", tmp, e))?;
    file.sync_data().map_err(|e| io_error("fdatasync", tmp, e))?;
    *renamed = true;
    std::fs::rename(tmp, target).map_err(|e| io_error("rename", tmp, e))?;
    sync_dir(dir)?;
    Ok(file)
}

impl EmbeddedCoordination {
    /// Opens (or creates) the store in `dir`, replaying its log.
    ///
    /// # Errors
    /// `Store` when its files cannot be read or are damaged (naming the file and the offset), or
    /// when another process (or another live value) holds the store open.
    pub fn open(dir: &Path) -> Result<EmbeddedCoordination, CoordError> {
        Self::open_with(dir, EmbeddedConfig::default())
    }

    /// [`EmbeddedCoordination::open`] with explicit tuning.
    ///
    /// # Errors
    /// As [`EmbeddedCoordination::open`].
    ///
    /// # Panics
    /// When `config.compact_ratio` is below 2 (compaction would not shrink the log).
    pub fn open_with(dir: &Path, config: EmbeddedConfig) -> Result<EmbeddedCoordination, CoordError> {
        assert!(config.compact_ratio >= 2, "compaction must shrink the log");
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|e| io_error("create directory", dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock_file = lock(&dir.join(LOCK_FILE), dir)?;
        let log_path = dir.join(LOG_FILE);
        let tmp_path = dir.join(LOG_TMP_FILE);
        // A leftover LOG.tmp is a compaction (or a first open) that did not finish: LOG, if any,
        // is still the whole truth.
        match std::fs::remove_file(&tmp_path) {
            Ok(()) => tracing::warn!(file = %tmp_path.display(), "removed an unfinished coordination log"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove", &tmp_path, e)),
        }
        if !log_path.exists() {
            // The first log is written whole and renamed into place, so a LOG always has its header.
            let header = record::encode_log_header(&COORD_LOG_MAGIC, COORD_LOG_VERSION, 1);
            replace_file(dir, &tmp_path, &log_path, &header, &mut false)?;
        }
        let bytes = std::fs::read(&log_path).map_err(|e| io_error("read", &log_path, e))?;
        let generation = record::decode_log_header(&bytes, &COORD_LOG_MAGIC, COORD_LOG_VERSION)
            .map_err(|e| corrupt(&log_path, e))?;
        let records = bytes.get(LOG_HEADER_BYTES..).unwrap_or_default();
        let (records, end) = record::scan_records(records, LOG_HEADER_BYTES as u64, limits::COORD_RECORD_BYTES_MAX)
            .map_err(|e| corrupt(&log_path, e))?;
        let mut tree = Tree::default();
        let mut report = OpenReport { records: records.len() as u64, ..OpenReport::default() };
        for (offset, body) in &records {
            let changes =
                decode_log_record(body).map_err(|e| corrupt(&log_path, format!("record at offset {offset}: {e}")))?;
            for change in &changes {
                tree.replay(change).map_err(|what| corrupt(&log_path, format!("record at offset {offset}: {what}")))?;
            }
        }
        let log =
            OpenOptions::new().read(true).write(true).open(&log_path).map_err(|e| io_error("open", &log_path, e))?;
        let log_bytes = match end {
            ScanEnd::Clean => bytes.len() as u64,
            ScanEnd::Torn { offset, discarded } => {
                tracing::warn!(file = %log_path.display(), offset, discarded, "discarding torn coordination log tail");
                // Cut the tear off before anything is appended, so that again only the last
                // record can ever be unsynced.
                log.set_len(offset).map_err(|e| io_error("truncate", &log_path, e))?;
                log.sync_all().map_err(|e| io_error("fsync", &log_path, e))?;
                report.torn = Some((offset, discarded));
                offset
            }
        };
        let mut store = EmbeddedCoordination {
            dir: dir.to_owned(),
            log_path,
            log,
            log_bytes,
            generation,
            tree,
            config,
            stopped: false,
            report,
            watch: super::SessionWatch::new(rand::random::<u64>() | 1),
            _lock: lock_file,
        };
        if store.compaction_due() {
            match store.compact() {
                Ok(()) => store.report.compacted = true,
                // The old log is intact and open: the store works, replay is just longer.
                Err(e) if !store.stopped => tracing::warn!(error = %e, "coordination log compaction failed"),
                Err(e) => return Err(e),
            }
        }
        Ok(store)
    }

    /// What open found in the log.
    pub fn open_report(&self) -> OpenReport {
        self.report
    }

    /// Bytes of the log file now.
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// Bytes a compaction would write now (header and one record per persistent entry).
    pub fn snapshot_bytes(&self) -> u64 {
        LOG_HEADER_BYTES as u64 + self.tree.persistent_bytes
    }

    fn compaction_due(&self) -> bool {
        self.log_bytes > self.config.compact_bytes_min
            && self.log_bytes > self.config.compact_ratio.saturating_mul(self.snapshot_bytes())
    }

    /// Writes the live persistent entries as the next log and switches to it.
    fn compact(&mut self) -> Result<(), CoordError> {
        let generation = self.generation + 1;
        let snapshot_bytes = self.snapshot_bytes();
        let mut out = Vec::with_capacity(usize::try_from(snapshot_bytes).unwrap_or(0));
        out.extend_from_slice(&record::encode_log_header(&COORD_LOG_MAGIC, COORD_LOG_VERSION, generation));
        // Byte order puts every parent before its children, so replay meets parents first.
        for (path, node) in self.tree.nodes.iter().filter(|(_, n)| n.mode == CreateMode::Persistent) {
            let change = LogChange::Put { path, version: node.version, data: &node.data };
            let offset = out.len() as u64;
            record::encode_record_with(offset, &mut out, |body| encode_log_record(&[change], body));
        }
        // The incremental accounting and the snapshot agree (pair of the two size computations).
        assert!(out.len() as u64 == snapshot_bytes, "snapshot size accounting");
        let tmp_path = self.dir.join(LOG_TMP_FILE);
        let mut renamed = false;
        match replace_file(&self.dir, &tmp_path, &self.log_path, &out, &mut renamed) {
            Ok(file) => {
                tracing::debug!(
                    file = %self.log_path.display(), from = self.log_bytes, to = out.len(), generation,
                    "compacted the coordination log"
                );
                self.log = file;
                self.log_bytes = out.len() as u64;
                self.generation = generation;
                Ok(())
            }
            Err(e) => {
                if renamed {
                    // LOG may name the old or the new file after a crash: appending to either
                    // could lose an acknowledged record.
                    self.stopped = true;
                } else {
                    let _ = std::fs::remove_file(&tmp_path);
                }
                Err(e)
            }
        }
    }

    fn check_running(&self) -> Result<(), CoordError> {
        if self.stopped {
            return Err(CoordError::Store(format!(
                "coordination store {} stopped after an earlier I/O failure; reopen it",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Appends one record and syncs it. On failure the store stops.
    fn append(&mut self, changes: &[LogChange<'_>]) -> Result<(), CoordError> {
        self.check_running()?;
        let mut buf = Vec::new();
        record::encode_record_with(self.log_bytes, &mut buf, |body| encode_log_record(changes, body));
        assert!(buf.len() - RECORD_HEADER_BYTES <= limits::COORD_RECORD_BYTES_MAX, "record over the limit");
        let written = self
            .log
            .write_all_at(&buf, self.log_bytes)
            .map_err(|e| io_error("write", &self.log_path, e))
            .and_then(|()| self.log.sync_data().map_err(|e| io_error("fdatasync", &self.log_path, e)));
        if let Err(e) = written {
            self.stopped = true;
            tracing::error!(error = %e, "coordination store stopped");
            return Err(e);
        }
        self.log_bytes += buf.len() as u64;
        Ok(())
    }

    /// Compacts when due, after a mutation that is already durable and applied: a failure is
    /// logged here, not returned, because the mutation itself succeeded.
    fn after_mutation(&mut self) {
        if self.compaction_due() {
            if let Err(e) = self.compact() {
                tracing::warn!(error = %e, stopped = self.stopped, "coordination log compaction failed");
            }
        }
    }
}

impl Coordination for EmbeddedCoordination {
    fn session_id(&mut self) -> Result<u64, CoordError> {
        // The session lives as long as the value; it never expires.
        Ok(self.watch.session())
    }

    fn session_watch(&self) -> std::sync::Arc<super::SessionWatch> {
        self.watch.clone()
    }

    fn get(&mut self, path: &str) -> Result<Option<(Vec<u8>, Version)>, CoordError> {
        validate_path(path)?;
        Ok(self.tree.nodes.get(path).map(|n| (n.data.clone(), n.version)))
    }

    fn create(&mut self, path: &str, data: &[u8], mode: CreateMode) -> Result<Version, CoordError> {
        validate_path(path)?;
        super::validate_data(path, data)?;
        self.check_running()?;
        if self.tree.nodes.contains_key(path) {
            return Err(CoordError::NodeExists(path.to_owned()));
        }
        // Missing ancestors, deepest first; the walk stops at the deepest existing one.
        let mut missing = Vec::new();
        let mut at = path;
        while let Some((parent, _)) = split_parent(at) {
            match self.tree.nodes.get(parent) {
                Some(node) if node.mode == CreateMode::Ephemeral => return Err(CoordError::BadPath(path.to_owned())),
                Some(_) => break,
                None => missing.push(parent),
            }
            at = parent;
        }
        missing.reverse();
        let mut changes: Vec<LogChange<'_>> =
            missing.iter().map(|p| LogChange::Put { path: p, version: 0, data: &[] }).collect();
        if mode == CreateMode::Persistent {
            changes.push(LogChange::Put { path, version: 0, data });
        }
        if !changes.is_empty() {
            self.append(&changes)?;
        }
        for parent in &missing {
            self.tree.insert(parent, &[], 0, CreateMode::Persistent);
        }
        self.tree.insert(path, data, 0, mode);
        self.after_mutation();
        Ok(0)
    }

    fn set(&mut self, path: &str, data: &[u8], expected: Option<Version>) -> Result<Version, CoordError> {
        validate_path(path)?;
        super::validate_data(path, data)?;
        self.check_running()?;
        let node = self.tree.nodes.get(path).ok_or_else(|| CoordError::NoNode(path.to_owned()))?;
        if let Some(expected) = expected.filter(|e| *e != node.version) {
            return Err(CoordError::BadVersion { path: path.to_owned(), expected, found: node.version });
        }
        let mode = node.mode;
        let version = node
            .version
            .checked_add(1)
            .ok_or_else(|| CoordError::Store(format!("coordination entry {path}: version overflow")))?;
        if mode == CreateMode::Persistent {
            self.append(&[LogChange::Put { path, version, data }])?;
        }
        self.tree.replace(path, data, version);
        self.after_mutation();
        Ok(version)
    }

    fn delete(&mut self, path: &str, expected: Option<Version>) -> Result<(), CoordError> {
        validate_path(path)?;
        self.check_running()?;
        let node = self.tree.nodes.get(path).ok_or_else(|| CoordError::NoNode(path.to_owned()))?;
        if let Some(expected) = expected.filter(|e| *e != node.version) {
            return Err(CoordError::BadVersion { path: path.to_owned(), expected, found: node.version });
        }
        if !node.children.is_empty() {
            return Err(CoordError::NotEmpty(path.to_owned()));
        }
        let mode = node.mode;
        if mode == CreateMode::Persistent {
            self.append(&[LogChange::Delete { path }])?;
        }
        self.tree.remove(path);
        self.after_mutation();
        Ok(())
    }

    fn children(&mut self, path: &str) -> Result<Vec<String>, CoordError> {
        validate_path(path)?;
        let node = self.tree.nodes.get(path).ok_or_else(|| CoordError::NoNode(path.to_owned()))?;
        Ok(node.children.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_records_round_trip() {
        let changes = [
            LogChange::Put { path: "boxes", version: 0, data: b"" },
            LogChange::Put { path: "boxes/photos/meta", version: 7, data: b"\x01\x02" },
            LogChange::Delete { path: "members/3" },
        ];
        let mut body = Vec::new();
        encode_log_record(&changes, &mut body);
        assert_eq!(body[0], COORD_RECORD_VERSION);
        assert_eq!(decode_log_record(&body), Ok(changes.to_vec()));
    }

    #[test]
    fn log_records_refuse_bad_bytes() {
        let mut body = Vec::new();
        encode_log_record(&[LogChange::Put { path: "a/b", version: 1, data: b"x" }], &mut body);
        let mut v2 = body.clone();
        v2[0] = 2;
        assert_eq!(decode_log_record(&v2), Err(DecodeError::UnsupportedVersion(2)));
        assert_eq!(decode_log_record(&[1, 0, 0]), Err(DecodeError::Malformed { what: "change count", offset: 1 }));
        let mut tag = body.clone();
        tag[3] = 9;
        assert_eq!(decode_log_record(&tag), Err(DecodeError::Malformed { what: "change tag", offset: 3 }));
        let mut path = body.clone();
        path[6] = b'/';
        assert_eq!(decode_log_record(&path), Err(DecodeError::Malformed { what: "coordination path", offset: 4 }));
        let mut long = body.clone();
        long.push(0);
        assert!(matches!(decode_log_record(&long), Err(DecodeError::Malformed { what: "trailing bytes", .. })));
        for cut in 0..body.len() {
            assert!(decode_log_record(&body[..cut]).is_err(), "cut {cut}");
        }
        let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(3);
        for _ in 0..20_000 {
            let _ = decode_log_record(&crate::testing::mutate(&mut rng, &body, 6));
        }
    }

    #[test]
    fn replay_refuses_what_the_writer_never_writes() {
        let mut tree = Tree::default();
        assert_eq!(
            tree.replay(&LogChange::Put { path: "a/b", version: 0, data: b"" }),
            Err("entry without its parent")
        );
        assert_eq!(tree.replay(&LogChange::Put { path: "a", version: 3, data: b"" }), Ok(()));
        assert_eq!(
            tree.replay(&LogChange::Put { path: "a", version: 3, data: b"" }),
            Err("entry version not one above")
        );
        assert_eq!(tree.replay(&LogChange::Put { path: "a/b", version: 0, data: b"" }), Ok(()));
        assert_eq!(tree.replay(&LogChange::Delete { path: "a" }), Err("delete of an entry with children"));
        assert_eq!(tree.replay(&LogChange::Delete { path: "x" }), Err("delete of a missing entry"));
        assert_eq!(tree.replay(&LogChange::Delete { path: "a/b" }), Ok(()));
        assert_eq!(tree.persistent_bytes, snapshot_entry_bytes("a", b""));
    }
}
