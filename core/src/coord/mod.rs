//! The coordination interface of SPEC §8: a small hierarchical key-value store with versions,
//! compare-and-set and ephemeral entries, and the layout the node keeps in it.
//!
//! Two implementations keep one contract (`crate::testing::coord_contract` checks it): the
//! embedded, file-backed store in the data directory (the default; [`embedded`]) and ZooKeeper
//! (in `shards`, a later issue).
//!
//! Invariants:
//! - Calls are blocking and run on the node's control thread, never on a data-path core; shards
//!   reach the store through bounded channels.
//! - A call that returns `Ok` for a mutation is durable (the embedded store fsyncs before it
//!   returns; ZooKeeper commits to a quorum).
//! - Every entry has a version: 0 at creation, +1 at each set. A compare-and-set or delete with
//!   an expected version fails with [`CoordError::BadVersion`] when it differs.
//! - Ephemeral entries belong to the session that created them and vanish when it ends (the
//!   embedded store's session ends when it is dropped or the process dies).
//! - Paths are `/`-separated, relative to the root (the chroot), without a leading slash:
//!   `boxes/photos/meta`. A segment is non-empty and has no `/`; [`validate_path`] holds the whole
//!   rule (at most `COORD_PATH_BYTES_MAX` bytes), and every implementation applies it before it
//!   touches its store. The root itself is not an entry.
//! - Data is at most `COORD_DATA_BYTES_MAX` bytes; a larger value is refused with
//!   [`CoordError::Store`] and changes nothing.
//! - An ephemeral entry has no children (as in ZooKeeper): creating below one is refused with
//!   [`CoordError::BadPath`].
//! - The entry encodings ([`BoxMeta`], [`RenameMarker`], [`encode_refs`]) start with a version
//!   byte, are little-endian, and decode arbitrary bytes into a [`DecodeError`], never a panic.

pub mod embedded;

use crate::{
    codec::{Put, Reader},
    error::DecodeError,
};

/// Version of an entry: 0 at creation, incremented by each set.
pub type Version = u64;

/// Whether an entry outlives its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// Kept until deleted.
    Persistent,
    /// Deleted when the creating session ends.
    Ephemeral,
}

/// Why a coordination call failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// The entry does not exist.
    #[error("coordination entry {0} does not exist")]
    NoNode(String),
    /// The entry already exists.
    #[error("coordination entry {0} already exists")]
    NodeExists(String),
    /// The entry's version is not the expected one.
    #[error("coordination entry {path}: version {found}, expected {expected}")]
    BadVersion {
        /// The entry.
        path: String,
        /// The version asked for.
        expected: Version,
        /// The version found.
        found: Version,
    },
    /// The entry has children and cannot be deleted.
    #[error("coordination entry {0} has children")]
    NotEmpty(String),
    /// The path is not valid.
    #[error("invalid coordination path {0:?}")]
    BadPath(String),
    /// The store is unreachable or the session is lost; mutations must stop (fencing).
    #[error("coordination unavailable: {0}")]
    Unavailable(String),
    /// The store's own files failed or are damaged.
    #[error("coordination store: {0}")]
    Store(String),
    /// A fenced write was refused: the fence entry is not at the version (the fencing token) the
    /// writer holds, so another holder has taken the lease since.
    #[error("coordination entry {path}: fencing token {token} refused (the lease is now at {found:?})")]
    Fenced {
        /// The fence entry.
        path: String,
        /// The token the writer presented.
        token: Version,
        /// The fence's version now (`None`: the fence entry is gone).
        found: Option<Version>,
    },
}

/// A fencing condition for a write: the entry at `path` must be at `version`, the fencing token
/// of the writer's lease. Leases bump the version of their fence entry when they are taken, so a
/// write by an old holder is refused once a new one holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The fence entry (for partition leases `boxes/<box>/partitions/<p>`).
    pub path: String,
    /// The fencing token: the fence entry's version when the lease was taken.
    pub version: Version,
}

/// The state of a store's session, shared with the data path: shards read it (two atomic loads)
/// before every mutation, and the store updates it as its session changes.
#[derive(Debug)]
pub struct SessionWatch {
    /// The session is connected and live: its ephemeral entries and leases are held.
    connected: std::sync::atomic::AtomicBool,
    /// The live session's id (0 while none has been established).
    session: std::sync::atomic::AtomicU64,
    /// Until when (ms of [`monotonic_ms`]) the session is known live: the start of the last call
    /// the server answered plus a safe fraction of the session timeout. A node paused longer (a
    /// stop, a swap storm) must not act on leases the server may have expired meanwhile.
    valid_until_ms: std::sync::atomic::AtomicU64,
}

/// Milliseconds of a monotonic clock (it counts while the process is stopped), from the first
/// call in this process.
pub fn monotonic_ms() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(std::time::Instant::now);
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl SessionWatch {
    /// A watch of a connected session `session`.
    pub fn new(session: u64) -> std::sync::Arc<SessionWatch> {
        std::sync::Arc::new(SessionWatch {
            connected: std::sync::atomic::AtomicBool::new(true),
            session: std::sync::atomic::AtomicU64::new(session),
            valid_until_ms: std::sync::atomic::AtomicU64::new(u64::MAX),
        })
    }

    /// Records that the server answered a call that started at `started_ms` (of
    /// [`monotonic_ms`]): the session is known live until `started_ms + valid_ms`.
    pub fn renew(&self, started_ms: u64, valid_ms: u64) {
        self.valid_until_ms.fetch_max(started_ms.saturating_add(valid_ms), std::sync::atomic::Ordering::AcqRel);
    }

    /// Resets the validity to `until_ms` (a new session; or 0: unknown until the server answers).
    pub fn set_valid_until(&self, until_ms: u64) {
        self.valid_until_ms.store(until_ms, std::sync::atomic::Ordering::Release);
    }

    /// True while the session is connected and live.
    pub fn connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The id of the current session.
    pub fn session(&self) -> u64 {
        self.session.load(std::sync::atomic::Ordering::Acquire)
    }

    /// True while `session` is the current, connected session and known live: a lease taken in
    /// it still holds.
    pub fn holds(&self, session: u64) -> bool {
        self.connected()
            && self.session() == session
            && monotonic_ms() < self.valid_until_ms.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records a change of the session (the store calls this).
    pub fn set(&self, session: u64, connected: bool) {
        // The id first: a reader that sees `connected` sees the id it belongs to.
        self.session.store(session, std::sync::atomic::Ordering::Release);
        self.connected.store(connected, std::sync::atomic::Ordering::Release);
    }

    /// Records that the session is suspended or lost (the store calls this).
    pub fn set_disconnected(&self) {
        self.connected.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// The coordination store. See the module invariants.
pub trait Coordination: Send + 'static {
    /// The entry's data and version, or `None` when absent.
    ///
    /// # Errors
    /// `BadPath`, `Unavailable`, `Store`.
    fn get(&mut self, path: &str) -> Result<Option<(Vec<u8>, Version)>, CoordError>;

    /// Creates an entry (and any missing parents, as empty persistent entries).
    ///
    /// # Errors
    /// `NodeExists` when it exists; `BadPath`, `Unavailable`, `Store`.
    fn create(&mut self, path: &str, data: &[u8], mode: CreateMode) -> Result<Version, CoordError>;

    /// Replaces an entry's data. With `expected`, only when its version is that (compare-and-set).
    /// Returns the new version.
    ///
    /// # Errors
    /// `NoNode`, `BadVersion`; `BadPath`, `Unavailable`, `Store`.
    fn set(&mut self, path: &str, data: &[u8], expected: Option<Version>) -> Result<Version, CoordError>;

    /// Deletes an entry that has no children. With `expected`, only at that version.
    ///
    /// # Errors
    /// `NoNode`, `BadVersion`, `NotEmpty`; `BadPath`, `Unavailable`, `Store`.
    fn delete(&mut self, path: &str, expected: Option<Version>) -> Result<(), CoordError>;

    /// Names of the entry's direct children, sorted by byte order (empty when it has none).
    ///
    /// # Errors
    /// `NoNode`; `BadPath`, `Unavailable`, `Store`.
    fn children(&mut self, path: &str) -> Result<Vec<String>, CoordError>;

    /// Creates the entry or replaces its data, whatever its version.
    ///
    /// # Errors
    /// As [`Coordination::create`] and [`Coordination::set`].
    fn put(&mut self, path: &str, data: &[u8]) -> Result<Version, CoordError> {
        match self.set(path, data, None) {
            Err(CoordError::NoNode(_)) => match self.create(path, data, CreateMode::Persistent) {
                // Created by someone else in between: set it.
                Err(CoordError::NodeExists(_)) => self.set(path, data, None),
                other => other,
            },
            other => other,
        }
    }

    /// Creates the entry or replaces its data, only while `fence` holds (the fence entry is at
    /// the fence's version), atomically with the check.
    ///
    /// The default checks and then writes: atomic for stores with one session at a time (the
    /// embedded and memory stores, used from one control thread). Shared stores override it
    /// (ZooKeeper: one multi-operation of a version check and the write).
    ///
    /// # Errors
    /// `Fenced` when the fence does not hold (nothing is written); as [`Coordination::put`].
    fn put_fenced(&mut self, fence: &Fence, path: &str, data: &[u8]) -> Result<Version, CoordError> {
        check_fence(self, fence)?;
        self.put(path, data)
    }

    /// Deletes an entry (an absent one is fine), only while `fence` holds. Atomicity as
    /// [`Coordination::put_fenced`].
    ///
    /// # Errors
    /// `Fenced` when the fence does not hold (nothing is deleted); `NotEmpty`; `BadPath`,
    /// `Unavailable`, `Store`.
    fn delete_fenced(&mut self, fence: &Fence, path: &str) -> Result<(), CoordError> {
        check_fence(self, fence)?;
        match self.delete(path, None) {
            Err(CoordError::NoNode(_)) => Ok(()),
            other => other,
        }
    }

    /// The id of the current session, establishing a new session first when the last one
    /// expired (its ephemeral entries are then gone). Ids of successive sessions differ.
    ///
    /// # Errors
    /// `Unavailable` when no session can be established now.
    fn session_id(&mut self) -> Result<u64, CoordError>;

    /// The shared view of the session's state, updated by the store as it changes.
    fn session_watch(&self) -> std::sync::Arc<SessionWatch>;

    /// Proves the session live with one cheap round trip (renewing its [`SessionWatch`]); the
    /// control thread calls it a few times a second. A store whose session cannot lapse does
    /// nothing.
    fn keepalive(&mut self) {}

    /// Deletes an entry and everything below it. Deleting an absent entry succeeds.
    ///
    /// # Errors
    /// `BadPath`, `Unavailable`, `Store`.
    fn delete_tree(&mut self, path: &str) -> Result<(), CoordError> {
        let children = match self.children(path) {
            Ok(c) => c,
            Err(CoordError::NoNode(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        for child in children {
            self.delete_tree(&format!("{path}/{child}"))?;
        }
        match self.delete(path, None) {
            Err(CoordError::NoNode(_)) => Ok(()),
            other => other,
        }
    }
}

/// Refuses a write whose fence does not hold: the check of the default fenced writes.
///
/// # Errors
/// `Fenced` naming the fence; what the store's `get` fails with.
pub fn check_fence<C: Coordination + ?Sized>(store: &mut C, fence: &Fence) -> Result<(), CoordError> {
    match store.get(&fence.path)? {
        Some((_, v)) if v == fence.version => Ok(()),
        other => {
            Err(CoordError::Fenced { path: fence.path.clone(), token: fence.version, found: other.map(|(_, v)| v) })
        }
    }
}

/// The paths of SPEC §8.
pub mod paths {
    /// `members/<node>`: ephemeral; address, shard count, ports.
    pub fn member(node: u16) -> String {
        format!("members/{node}")
    }
    /// `boxes`: parent of every Box.
    pub const BOXES: &str = "boxes";
    /// `boxes/<box>`.
    pub fn box_root(box_name: &str) -> String {
        format!("boxes/{box_name}")
    }
    /// `boxes/<box>/meta`: partition count, created-at, Box uid ([`super::BoxMeta`]).
    pub fn box_meta(box_name: &str) -> String {
        format!("boxes/{box_name}/meta")
    }
    /// `boxes/<box>/partitions/<p>`: persistent; its version is the partition's last fencing
    /// token (each lease taken bumps it), its data the node that took it ([`super::LeaseRecord`]).
    pub fn partition(box_name: &str, partition: u16) -> String {
        format!("boxes/{box_name}/partitions/{partition}")
    }
    /// `boxes/<box>/partitions/<p>/owner`: ephemeral lease with a fencing token.
    pub fn partition_owner(box_name: &str, partition: u16) -> String {
        format!("boxes/{box_name}/partitions/{partition}/owner")
    }
    /// `boxes/<box>/partitions/<p>/refs`: the partition's published referenced-Syrup set.
    pub fn partition_refs(box_name: &str, partition: u16) -> String {
        format!("boxes/{box_name}/partitions/{partition}/refs")
    }
    /// `boxes/<box>/partitions/<p>/condemned`: the Syrups the partition created and condemned
    /// (mostly dead): every partition moves its live Parts out of them. Same encoding as `refs`.
    pub fn partition_condemned(box_name: &str, partition: u16) -> String {
        format!("boxes/{box_name}/partitions/{partition}/condemned")
    }
    /// `boxes/<box>/renames`: parent of the rename markers.
    pub fn renames(box_name: &str) -> String {
        format!("boxes/{box_name}/renames")
    }
    /// `boxes/<box>/renames/<token>` (token as 32 lowercase hex digits).
    pub fn rename_marker(box_name: &str, token: u128) -> String {
        format!("boxes/{box_name}/renames/{token:032x}")
    }
}

/// `boxes/<box>/meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxMeta {
    /// Partitions of the Box (fixed at creation).
    pub partitions: u16,
    /// Creation time (ms since the Unix epoch).
    pub created_ms: u64,
    /// The Box incarnation (Syrup headers carry it; a re-created Box gets a new one).
    pub box_uid: crate::types::BoxUid,
    /// The node that serves the Box (its data lives there), chosen among the live members at
    /// creation. 0: not placed (a version 1 entry, written by a single node): the node that
    /// reads it serves it.
    pub node: u16,
    /// Its versioning state (version 3 entries; older ones are `Off`).
    pub versioning: crate::keyspace::Versioning,
}

/// `members/<node>`: a live node (ephemeral), so that others can name it in a not-owner reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEntry {
    /// The node id.
    pub node: u16,
    /// The session that registered it (a restarted node replaces an entry of its old session).
    pub session: u64,
    /// `host:port` of its main port, as clients should dial it.
    pub addr: String,
    /// Each shard's own port, indexed by shard.
    pub shard_ports: Vec<u16>,
}

/// `boxes/<box>/partitions/<p>/owner`: the lease of a partition (ephemeral).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseEntry {
    /// The holding node.
    pub node: u16,
    /// The holder's session: the lease is the holder's only while this session lives.
    pub session: u64,
    /// The fencing token: the version of `boxes/<box>/partitions/<p>` when the lease was taken.
    /// Fenced writes of the holder check it; every new lease has a larger one.
    pub token: Version,
}

/// `boxes/<box>/partitions/<p>`: who took the partition's last lease. The entry's *version* is
/// the last fencing token handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The node that took the last lease.
    pub node: u16,
    /// When (ms since the Unix epoch).
    pub taken_ms: u64,
}

/// `boxes/<box>/renames/<token>`: written by the destination once its zero-copy put is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenameMarker {
    /// The source partition (whose intent this marker answers).
    pub source_partition: u16,
    /// The destination partition.
    pub target_partition: u16,
    /// The destination key.
    pub target_key: Vec<u8>,
    /// When the marker was written (ms since the Unix epoch); orphans are reaped by age.
    pub created_ms: u64,
}

/// Version byte of an encoded [`BoxMeta`] (version 1, without the node, is still read).
pub const BOX_META_VERSION: u8 = 2;
/// Version byte of a [`BoxMeta`] with a versioning state (one byte after the node), written
/// only for a Box whose versioning is not `Off`, so every other entry stays version 2.
pub const BOX_META_VERSION_VERSIONING: u8 = 3;
/// Bytes of an encoded [`BoxMeta`]: version, partitions, created_ms, box_uid, node.
pub const BOX_META_BYTES: usize = 1 + 2 + 8 + 8 + 2;
/// Bytes of a version 1 [`BoxMeta`]: version, partitions, created_ms, box_uid.
pub const BOX_META_V1_BYTES: usize = 1 + 2 + 8 + 8;
/// Version byte of an encoded [`MemberEntry`].
pub const MEMBER_VERSION: u8 = 1;
/// Version byte of an encoded [`LeaseEntry`].
pub const LEASE_VERSION: u8 = 1;
/// Bytes of an encoded [`LeaseEntry`]: version, node, session, token.
pub const LEASE_BYTES: usize = 1 + 2 + 8 + 8;
/// Version byte of an encoded [`LeaseRecord`].
pub const LEASE_RECORD_VERSION: u8 = 1;
/// Bytes of an encoded [`LeaseRecord`]: version, node, taken_ms.
pub const LEASE_RECORD_BYTES: usize = 1 + 2 + 8;
/// Version byte of an encoded [`RenameMarker`].
pub const RENAME_MARKER_VERSION: u8 = 1;
/// Bytes of an encoded [`RenameMarker`] before its target key: version, source and target
/// partitions, created_ms, key length.
pub const RENAME_MARKER_FIXED_BYTES: usize = 1 + 2 + 2 + 8 + 2;
/// Version byte of an encoded referenced-Syrup set ([`encode_refs`]).
pub const REFS_VERSION: u8 = 1;

const _: () = assert!(BOX_META_BYTES == 21 && BOX_META_V1_BYTES == 19);
const _: () = assert!(LEASE_BYTES == 19 && LEASE_RECORD_BYTES == 11);
const _: () = assert!(RENAME_MARKER_FIXED_BYTES == 15);
// The largest entries fit the coordination store's data bound.
const _: () = assert!(RENAME_MARKER_FIXED_BYTES + crate::limits::KEY_BYTES_MAX <= crate::limits::COORD_DATA_BYTES_MAX);

fn check_version(r: &mut Reader<'_>, expected: u8) -> Result<(), DecodeError> {
    let version = r.u8()?;
    if version != expected {
        return Err(DecodeError::UnsupportedVersion(u16::from(version)));
    }
    Ok(())
}

fn check_end(r: &Reader<'_>) -> Result<(), DecodeError> {
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed { what: "trailing bytes", offset: r.position() as u64 });
    }
    Ok(())
}

fn check_partition_count(partitions: u16, offset: u64) -> Result<(), DecodeError> {
    if partitions == 0 || partitions > crate::limits::PARTITION_COUNT_MAX {
        return Err(DecodeError::Malformed { what: "partition count", offset });
    }
    Ok(())
}

fn check_partition(partition: u16, offset: u64) -> Result<(), DecodeError> {
    if partition >= crate::limits::PARTITION_COUNT_MAX {
        return Err(DecodeError::Malformed { what: "partition", offset });
    }
    Ok(())
}

impl BoxMeta {
    /// Encodes the entry (format in docs/format.md, "Coordination store and entries"):
    /// `version u8 = 2 | partitions u16 | created_ms u64 | box_uid u64 | node u16`, 21 bytes.
    ///
    /// # Panics
    /// When `partitions` is outside 1..=`PARTITION_COUNT_MAX` (a Box is validated at creation).
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.partitions > 0, "a box has at least one partition");
        assert!(self.partitions <= crate::limits::PARTITION_COUNT_MAX, "partition count over the limit");
        let mut out = Vec::with_capacity(BOX_META_BYTES + 1);
        let versioned = self.versioning != crate::keyspace::Versioning::Off;
        out.put_u8(if versioned { BOX_META_VERSION_VERSIONING } else { BOX_META_VERSION });
        out.put_u16(self.partitions);
        out.put_u64(self.created_ms);
        out.put_u64(self.box_uid.0);
        out.put_u16(self.node);
        if versioned {
            out.put_u8(self.versioning.to_u8());
        }
        out
    }

    /// Decodes the entry: version 2, or version 1 (19 bytes, no node: `node` is 0).
    ///
    /// # Errors
    /// A [`crate::error::DecodeError`] for bytes that are not a valid entry: an unknown version,
    /// a short input, a partition count outside 1..=`PARTITION_COUNT_MAX`, trailing bytes.
    pub fn decode(buf: &[u8]) -> Result<BoxMeta, crate::error::DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u8()?;
        if !(1..=BOX_META_VERSION_VERSIONING).contains(&version) {
            return Err(DecodeError::UnsupportedVersion(u16::from(version)));
        }
        let at = r.position() as u64;
        let partitions = r.u16()?;
        check_partition_count(partitions, at)?;
        let created_ms = r.u64()?;
        let box_uid = crate::types::BoxUid(r.u64()?);
        let node = if version == 1 { 0 } else { r.u16()? };
        let versioning = if version == BOX_META_VERSION_VERSIONING {
            let at = r.position() as u64;
            crate::keyspace::Versioning::from_u8(r.u8()?)
                .ok_or(DecodeError::Malformed { what: "versioning state", offset: at })?
        } else {
            crate::keyspace::Versioning::Off
        };
        check_end(&r)?;
        Ok(BoxMeta { partitions, created_ms, box_uid, node, versioning })
    }
}

impl MemberEntry {
    /// Encodes the entry: `version u8 = 1 | node u16 | session u64 | addr bytes16 |
    /// shard count u16 | port u16 × count`.
    ///
    /// # Panics
    /// When the address is longer than 255 bytes or there are more than `u16::MAX` ports.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.addr.len() <= 255, "member address over 255 bytes");
        assert!(self.shard_ports.len() <= usize::from(u16::MAX), "too many shard ports");
        let mut out = Vec::with_capacity(1 + 2 + 8 + 2 + self.addr.len() + 2 + 2 * self.shard_ports.len());
        out.put_u8(MEMBER_VERSION);
        out.put_u16(self.node);
        out.put_u64(self.session);
        out.put_bytes16(self.addr.as_bytes());
        out.put_u16(self.shard_ports.len() as u16);
        for p in &self.shard_ports {
            out.put_u16(*p);
        }
        out
    }

    /// Decodes the entry.
    ///
    /// # Errors
    /// A [`crate::error::DecodeError`]: an unknown version, a short input, an address that is not
    /// UTF-8 or longer than 255 bytes, trailing bytes.
    pub fn decode(buf: &[u8]) -> Result<MemberEntry, DecodeError> {
        let mut r = Reader::new(buf);
        check_version(&mut r, MEMBER_VERSION)?;
        let node = r.u16()?;
        let session = r.u64()?;
        let at = r.position() as u64;
        let addr = r.bytes16()?;
        if addr.len() > 255 {
            return Err(DecodeError::Malformed { what: "member address length", offset: at });
        }
        let addr = std::str::from_utf8(addr)
            .map_err(|_| DecodeError::Malformed { what: "member address", offset: at })?
            .to_owned();
        let count = r.u16()?;
        let mut shard_ports = Vec::with_capacity(usize::from(count).min(r.remaining() / 2));
        for _ in 0..count {
            shard_ports.push(r.u16()?);
        }
        check_end(&r)?;
        Ok(MemberEntry { node, session, addr, shard_ports })
    }
}

impl LeaseEntry {
    /// Encodes the entry: `version u8 = 1 | node u16 | session u64 | token u64`, 19 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEASE_BYTES);
        out.put_u8(LEASE_VERSION);
        out.put_u16(self.node);
        out.put_u64(self.session);
        out.put_u64(self.token);
        assert!(out.len() == LEASE_BYTES);
        out
    }

    /// Decodes the entry.
    ///
    /// # Errors
    /// A [`crate::error::DecodeError`]: an unknown version, a short input, trailing bytes.
    pub fn decode(buf: &[u8]) -> Result<LeaseEntry, DecodeError> {
        let mut r = Reader::new(buf);
        check_version(&mut r, LEASE_VERSION)?;
        let node = r.u16()?;
        let session = r.u64()?;
        let token = r.u64()?;
        check_end(&r)?;
        Ok(LeaseEntry { node, session, token })
    }
}

impl LeaseRecord {
    /// Encodes the entry: `version u8 = 1 | node u16 | taken_ms u64`, 11 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEASE_RECORD_BYTES);
        out.put_u8(LEASE_RECORD_VERSION);
        out.put_u16(self.node);
        out.put_u64(self.taken_ms);
        assert!(out.len() == LEASE_RECORD_BYTES);
        out
    }

    /// Decodes the entry; empty data (the entry created as a parent, before any lease) is `None`.
    ///
    /// # Errors
    /// A [`crate::error::DecodeError`]: an unknown version, a short input, trailing bytes.
    pub fn decode(buf: &[u8]) -> Result<Option<LeaseRecord>, DecodeError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let mut r = Reader::new(buf);
        check_version(&mut r, LEASE_RECORD_VERSION)?;
        let node = r.u16()?;
        let taken_ms = r.u64()?;
        check_end(&r)?;
        Ok(Some(LeaseRecord { node, taken_ms }))
    }
}

impl RenameMarker {
    /// Encodes the entry (format in docs/format.md, "Coordination store and entries"):
    /// `version u8 = 1 | source_partition u16 | target_partition u16 | created_ms u64 |
    /// target_key bytes16`.
    ///
    /// # Panics
    /// When the target key is empty or longer than `KEY_BYTES_MAX`, or a partition is not below
    /// `PARTITION_COUNT_MAX` (the engine validates both before it writes a marker).
    pub fn encode(&self) -> Vec<u8> {
        assert!(!self.target_key.is_empty(), "rename marker without a target key");
        assert!(self.target_key.len() <= crate::limits::KEY_BYTES_MAX, "rename marker key over the limit");
        assert!(self.source_partition < crate::limits::PARTITION_COUNT_MAX, "source partition over the limit");
        assert!(self.target_partition < crate::limits::PARTITION_COUNT_MAX, "target partition over the limit");
        let mut out = Vec::with_capacity(RENAME_MARKER_FIXED_BYTES + self.target_key.len());
        out.put_u8(RENAME_MARKER_VERSION);
        out.put_u16(self.source_partition);
        out.put_u16(self.target_partition);
        out.put_u64(self.created_ms);
        out.put_bytes16(&self.target_key);
        assert!(out.len() == RENAME_MARKER_FIXED_BYTES + self.target_key.len());
        out
    }

    /// Decodes the entry.
    ///
    /// # Errors
    /// A [`crate::error::DecodeError`] for bytes that are not a valid entry: an unknown version,
    /// a short input, a partition not below `PARTITION_COUNT_MAX`, an empty key or one longer than
    /// `KEY_BYTES_MAX`, trailing bytes.
    pub fn decode(buf: &[u8]) -> Result<RenameMarker, crate::error::DecodeError> {
        let mut r = Reader::new(buf);
        check_version(&mut r, RENAME_MARKER_VERSION)?;
        let at = r.position() as u64;
        let source_partition = r.u16()?;
        check_partition(source_partition, at)?;
        let at = r.position() as u64;
        let target_partition = r.u16()?;
        check_partition(target_partition, at)?;
        let created_ms = r.u64()?;
        let at = r.position() as u64;
        let target_key = r.bytes16()?;
        if target_key.is_empty() || target_key.len() > crate::limits::KEY_BYTES_MAX {
            return Err(DecodeError::Malformed { what: "rename marker key length", offset: at });
        }
        check_end(&r)?;
        Ok(RenameMarker { source_partition, target_partition, target_key: target_key.to_vec(), created_ms })
    }
}

/// Encodes a published referenced-Syrup set compactly (sorted, delta varints, version byte):
/// `version u8 = 1 | count varint | first id varint | (id − previous id) varint × (count − 1)`.
///
/// Ids of one node are close together (they grow with time), so a delta usually costs 3–4 bytes;
/// 100,000 ids take well under 1 MB even when spread over the whole `u64` range.
pub fn encode_refs(refs: &std::collections::BTreeSet<crate::types::SyrupId>) -> Vec<u8> {
    // A varint of a delta is at most 10 bytes; most are far shorter, so reserve a typical size.
    let mut out = Vec::with_capacity(1 + 10 + refs.len().saturating_mul(4));
    out.put_u8(REFS_VERSION);
    out.put_varint(refs.len() as u64);
    let mut previous: Option<u64> = None;
    for id in refs {
        match previous {
            None => out.put_varint(id.0),
            Some(p) => {
                // A BTreeSet iterates strictly increasing, so every delta is at least 1.
                assert!(id.0 > p, "refs iterate in increasing order");
                out.put_varint(id.0 - p);
            }
        }
        previous = Some(id.0);
    }
    out
}

/// Decodes a published referenced-Syrup set.
///
/// # Errors
/// A [`crate::error::DecodeError`] for bytes that are not a valid set: an input longer than
/// `COORD_DATA_BYTES_MAX`, an unknown version, a count larger than the remaining bytes could
/// hold, a short input, a zero delta (ids must strictly increase), an id past `u64::MAX`,
/// trailing bytes.
pub fn decode_refs(buf: &[u8]) -> Result<std::collections::BTreeSet<crate::types::SyrupId>, crate::error::DecodeError> {
    if buf.len() > crate::limits::COORD_DATA_BYTES_MAX {
        return Err(DecodeError::Malformed { what: "refs length", offset: 0 });
    }
    let mut r = Reader::new(buf);
    check_version(&mut r, REFS_VERSION)?;
    let at = r.position() as u64;
    let count = r.varint()?;
    // Each id takes at least one byte: a larger count is damage, refused before any work.
    if count > r.remaining() as u64 {
        return Err(DecodeError::Malformed { what: "refs count", offset: at });
    }
    let mut out = std::collections::BTreeSet::new();
    let mut previous: Option<u64> = None;
    for _ in 0..count {
        let at = r.position() as u64;
        let v = r.varint()?;
        let id = match previous {
            None => v,
            Some(_) if v == 0 => return Err(DecodeError::Malformed { what: "refs delta", offset: at }),
            Some(p) => p.checked_add(v).ok_or(DecodeError::Malformed { what: "refs delta", offset: at })?,
        };
        out.insert(crate::types::SyrupId(id));
        previous = Some(id);
    }
    check_end(&r)?;
    assert!(out.len() as u64 == count, "strictly increasing ids are distinct");
    Ok(out)
}

/// Checks a coordination path: the rules every implementation applies before it touches its store.
///
/// A path is 1..=`COORD_PATH_BYTES_MAX` bytes of `/`-separated segments, without a leading or
/// trailing `/`; a segment is non-empty, is not `.` or `..`, and holds no control character
/// (U+0000–U+001F, U+007F–U+009F) and no character ZooKeeper refuses (U+E000–U+F8FF,
/// U+FFF0–U+FFFF), so a path valid here is valid in both implementations.
///
/// # Errors
/// [`CoordError::BadPath`] naming the path.
pub fn validate_path(path: &str) -> Result<(), CoordError> {
    let bad = || CoordError::BadPath(path.to_owned());
    if path.is_empty() || path.len() > crate::limits::COORD_PATH_BYTES_MAX {
        return Err(bad());
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(bad());
        }
        if segment
            .chars()
            .any(|c| c.is_control() || ('\u{e000}'..='\u{f8ff}').contains(&c) || ('\u{fff0}'..='\u{ffff}').contains(&c))
        {
            return Err(bad());
        }
    }
    Ok(())
}

/// Checks an entry's data against `COORD_DATA_BYTES_MAX`: the bound every implementation applies
/// before it writes.
///
/// # Errors
/// [`CoordError::Store`] naming the entry, the size and the limit.
pub fn validate_data(path: &str, data: &[u8]) -> Result<(), CoordError> {
    if data.len() > crate::limits::COORD_DATA_BYTES_MAX {
        return Err(CoordError::Store(format!(
            "coordination entry {path}: data of {} bytes is over the limit of {} bytes",
            data.len(),
            crate::limits::COORD_DATA_BYTES_MAX
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::{rngs::SmallRng, Rng, SeedableRng};

    use super::*;
    use crate::types::{BoxUid, SyrupId};

    fn meta() -> BoxMeta {
        BoxMeta {
            partitions: 8,
            created_ms: 1_700_000_000_000,
            box_uid: BoxUid(0x0102_0304_0506_0708),
            node: 3,
            versioning: Default::default(),
        }
    }

    fn marker() -> RenameMarker {
        RenameMarker {
            source_partition: 3,
            target_partition: 5,
            target_key: "photos/ключ.png".as_bytes().to_vec(),
            created_ms: 1_700_000_000_001,
        }
    }

    /// Ids as a node makes them: a few nodes, sequences growing by a random number of ms.
    fn realistic_refs(rng: &mut SmallRng, count: usize) -> BTreeSet<SyrupId> {
        let mut out = BTreeSet::new();
        let mut wall = [1_700_000_000_000u64; 4];
        while out.len() < count {
            let node = rng.gen_range(0..4usize);
            wall[node] += rng.gen_range(1..10_000);
            out.insert(SyrupId(SyrupId::first_at(node as u16 + 1, wall[node]).0 + rng.gen_range(0..128)));
        }
        out
    }

    #[test]
    fn box_meta_round_trips_with_its_layout() {
        let m = meta();
        let b = m.encode();
        assert_eq!(b.len(), BOX_META_BYTES);
        assert_eq!(b[0], BOX_META_VERSION);
        assert_eq!(&b[1..3], &8u16.to_le_bytes());
        assert_eq!(BoxMeta::decode(&b), Ok(m));
        let one = BoxMeta { partitions: 1, created_ms: 0, box_uid: BoxUid(0), node: 0, versioning: Default::default() };
        assert_eq!(BoxMeta::decode(&one.encode()), Ok(one));
        let most = BoxMeta {
            partitions: crate::limits::PARTITION_COUNT_MAX,
            created_ms: u64::MAX,
            box_uid: BoxUid(u64::MAX),
            node: u16::MAX,
            versioning: crate::keyspace::Versioning::Suspended,
        };
        assert_eq!(BoxMeta::decode(&most.encode()), Ok(most));
        // A versioned Box's entry is version 3, one byte longer; an unversioned one stays 2.
        for v in [crate::keyspace::Versioning::Enabled, crate::keyspace::Versioning::Suspended] {
            let m = BoxMeta { versioning: v, ..meta() };
            let b = m.encode();
            assert_eq!((b[0], b.len()), (BOX_META_VERSION_VERSIONING, BOX_META_BYTES + 1));
            assert_eq!(BoxMeta::decode(&b), Ok(m));
        }
    }

    #[test]
    fn box_meta_refuses_bad_bytes() {
        let good = meta().encode();
        let mut v4 = good.clone();
        v4[0] = 4;
        assert_eq!(BoxMeta::decode(&v4), Err(DecodeError::UnsupportedVersion(4)));
        // Version 3 needs its versioning byte, and a known one.
        let mut v3 = good.clone();
        v3[0] = 3;
        assert!(BoxMeta::decode(&v3).is_err(), "a version 3 entry without its state");
        v3.push(7);
        assert!(matches!(BoxMeta::decode(&v3), Err(DecodeError::Malformed { what: "versioning state", .. })));
        // A version 1 entry has no node; a version 2 one cut there is short.
        let mut v1 = good[..BOX_META_V1_BYTES].to_vec();
        v1[0] = 1;
        assert_eq!(BoxMeta::decode(&v1), Ok(BoxMeta { node: 0, ..meta() }));
        let mut v1_long = good.clone();
        v1_long[0] = 1;
        assert!(matches!(BoxMeta::decode(&v1_long), Err(DecodeError::Malformed { what: "trailing bytes", .. })));
        let mut zero = good.clone();
        zero[1..3].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(BoxMeta::decode(&zero), Err(DecodeError::Malformed { what: "partition count", offset: 1 }));
        let mut huge = good.clone();
        huge[1..3].copy_from_slice(&(crate::limits::PARTITION_COUNT_MAX + 1).to_le_bytes());
        assert!(matches!(BoxMeta::decode(&huge), Err(DecodeError::Malformed { .. })));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(BoxMeta::decode(&long), Err(DecodeError::Malformed { what: "trailing bytes", offset: 21 }));
        for cut in 0..good.len() {
            assert!(matches!(BoxMeta::decode(&good[..cut]), Err(DecodeError::Truncated(_))), "cut {cut}");
        }
    }

    #[test]
    fn member_and_lease_entries_round_trip_and_refuse_bad_bytes() {
        let member = MemberEntry {
            node: 2,
            session: 0x1122_3344_5566_7788,
            addr: "127.0.0.1:7420".into(),
            shard_ports: vec![7421, 7422],
        };
        let lease = LeaseEntry { node: 2, session: 9, token: 41 };
        let record = LeaseRecord { node: 2, taken_ms: 1_700_000_000_000 };
        let (m, l, r) = (member.encode(), lease.encode(), record.encode());
        assert_eq!((m[0], l[0], r[0]), (MEMBER_VERSION, LEASE_VERSION, LEASE_RECORD_VERSION));
        assert_eq!((l.len(), r.len()), (LEASE_BYTES, LEASE_RECORD_BYTES));
        assert_eq!(MemberEntry::decode(&m), Ok(member.clone()));
        assert_eq!(LeaseEntry::decode(&l), Ok(lease));
        assert_eq!(LeaseRecord::decode(&r), Ok(Some(record)));
        assert_eq!(LeaseRecord::decode(&[]), Ok(None), "a partition entry created as a parent");
        for cut in 1..m.len() {
            assert!(matches!(MemberEntry::decode(&m[..cut]), Err(DecodeError::Truncated(_))), "member cut {cut}");
        }
        for cut in 1..l.len() {
            assert!(matches!(LeaseEntry::decode(&l[..cut]), Err(DecodeError::Truncated(_))), "lease cut {cut}");
        }
        for cut in 1..r.len() {
            assert!(matches!(LeaseRecord::decode(&r[..cut]), Err(DecodeError::Truncated(_))), "record cut {cut}");
        }
        let mut bad_utf8 = m.clone();
        bad_utf8[13] = 0xff;
        assert_eq!(MemberEntry::decode(&bad_utf8), Err(DecodeError::Malformed { what: "member address", offset: 11 }));
        let mut v2 = l.clone();
        v2[0] = 2;
        assert_eq!(LeaseEntry::decode(&v2), Err(DecodeError::UnsupportedVersion(2)));
    }

    #[test]
    fn rename_marker_round_trips_with_its_layout() {
        let m = marker();
        let b = m.encode();
        assert_eq!(b.len(), RENAME_MARKER_FIXED_BYTES + m.target_key.len());
        assert_eq!(b[0], RENAME_MARKER_VERSION);
        assert_eq!(RenameMarker::decode(&b), Ok(m));
        let longest = RenameMarker { target_key: vec![b'k'; crate::limits::KEY_BYTES_MAX], ..marker() };
        assert_eq!(RenameMarker::decode(&longest.encode()), Ok(longest));
    }

    #[test]
    fn rename_marker_refuses_bad_bytes() {
        let good = marker().encode();
        let mut v9 = good.clone();
        v9[0] = 9;
        assert_eq!(RenameMarker::decode(&v9), Err(DecodeError::UnsupportedVersion(9)));
        let mut partition = good.clone();
        partition[3..5].copy_from_slice(&crate::limits::PARTITION_COUNT_MAX.to_le_bytes());
        assert_eq!(RenameMarker::decode(&partition), Err(DecodeError::Malformed { what: "partition", offset: 3 }));
        let empty = [&good[..13], &[0, 0][..]].concat();
        assert_eq!(
            RenameMarker::decode(&empty),
            Err(DecodeError::Malformed { what: "rename marker key length", offset: 13 })
        );
        let mut over = good[..13].to_vec();
        over.put_bytes16(&[b'k'; crate::limits::KEY_BYTES_MAX + 1]);
        assert!(matches!(RenameMarker::decode(&over), Err(DecodeError::Malformed { .. })));
        let mut long = good.clone();
        long.push(1);
        assert!(matches!(RenameMarker::decode(&long), Err(DecodeError::Malformed { what: "trailing bytes", .. })));
        for cut in 0..good.len() {
            assert!(matches!(RenameMarker::decode(&good[..cut]), Err(DecodeError::Truncated(_))), "cut {cut}");
        }
    }

    #[test]
    fn refs_round_trip() {
        let mut rng = SmallRng::seed_from_u64(7);
        let empty = BTreeSet::new();
        assert_eq!(encode_refs(&empty), vec![REFS_VERSION, 0]);
        assert_eq!(decode_refs(&encode_refs(&empty)), Ok(empty));
        let edges: BTreeSet<SyrupId> = [SyrupId(0), SyrupId(1), SyrupId(u64::MAX - 1), SyrupId(u64::MAX)].into();
        assert_eq!(decode_refs(&encode_refs(&edges)), Ok(edges));
        for n in [1, 2, 3, 100, 1000] {
            let set = realistic_refs(&mut rng, n);
            assert_eq!(decode_refs(&encode_refs(&set)).as_ref(), Ok(&set), "{n} ids");
        }
    }

    #[test]
    fn refs_of_100_000_syrups_stay_well_under_a_megabyte() {
        let mut rng = SmallRng::seed_from_u64(100_000);
        let set = realistic_refs(&mut rng, 100_000);
        let b = encode_refs(&set);
        assert!(b.len() < 450 * 1000, "realistic ids take {} bytes", b.len());
        assert_eq!(decode_refs(&b).as_ref(), Ok(&set));
        // The worst spread: ids uniform over the whole u64 range (deltas of about 2^47).
        let mut spread = BTreeSet::new();
        while spread.len() < 100_000 {
            spread.insert(SyrupId(rng.gen()));
        }
        let b = encode_refs(&spread);
        assert!(b.len() < 800 * 1000, "spread ids take {} bytes", b.len());
        assert!(b.len() <= crate::limits::COORD_DATA_BYTES_MAX);
        assert_eq!(decode_refs(&b).as_ref(), Ok(&spread));
    }

    #[test]
    fn refs_refuse_bad_bytes() {
        assert!(matches!(decode_refs(&[]), Err(DecodeError::Truncated(_))));
        assert_eq!(decode_refs(&[2, 0]), Err(DecodeError::UnsupportedVersion(2)));
        // A count no input of this length could hold.
        assert_eq!(decode_refs(&[1, 5, 1, 1]), Err(DecodeError::Malformed { what: "refs count", offset: 1 }));
        // A repeated id is a zero delta.
        assert_eq!(decode_refs(&[1, 2, 7, 0]), Err(DecodeError::Malformed { what: "refs delta", offset: 3 }));
        // A delta past u64::MAX.
        let mut over = vec![1, 2];
        over.put_varint(u64::MAX);
        over.put_varint(1);
        assert!(matches!(decode_refs(&over), Err(DecodeError::Malformed { what: "refs delta", .. })));
        assert!(matches!(decode_refs(&[1, 1, 7, 0]), Err(DecodeError::Malformed { what: "trailing bytes", .. })));
        assert!(matches!(decode_refs(&[1, 1, 0xff]), Err(DecodeError::Truncated(_))));
        let huge = vec![0u8; crate::limits::COORD_DATA_BYTES_MAX + 1];
        assert_eq!(decode_refs(&huge), Err(DecodeError::Malformed { what: "refs length", offset: 0 }));
    }

    #[test]
    fn mutated_entries_never_panic() {
        let mut rng = SmallRng::seed_from_u64(42);
        let refs = encode_refs(&realistic_refs(&mut rng, 50));
        let member = MemberEntry { node: 1, session: 2, addr: "h:1".into(), shard_ports: vec![1, 2, 3] };
        let goods = [
            meta().encode(),
            marker().encode(),
            refs,
            member.encode(),
            LeaseEntry { node: 1, session: 2, token: 3 }.encode(),
        ];
        for _ in 0..20_000 {
            for good in &goods {
                let bad = crate::testing::mutate(&mut rng, good, 8);
                let _ = BoxMeta::decode(&bad);
                let _ = RenameMarker::decode(&bad);
                let _ = decode_refs(&bad);
                let _ = MemberEntry::decode(&bad);
                let _ = LeaseEntry::decode(&bad);
                let _ = LeaseRecord::decode(&bad);
            }
            let len = rng.gen_range(0..64);
            let noise: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = BoxMeta::decode(&noise);
            let _ = RenameMarker::decode(&noise);
            let _ = decode_refs(&noise);
        }
    }

    #[test]
    fn paths_are_validated() {
        for good in
            ["a", "boxes/photos/meta", "a/b-c/d.e", "ключ/..x/x..", &"a".repeat(crate::limits::COORD_PATH_BYTES_MAX)]
        {
            assert!(validate_path(good).is_ok(), "{good:?}");
        }
        let long = "a".repeat(crate::limits::COORD_PATH_BYTES_MAX + 1);
        for bad in [
            "",
            "/",
            "/a",
            "a/",
            "a//b",
            ".",
            "a/./b",
            "a/..",
            "a\0b",
            "a\nb",
            "a\u{7f}",
            "a\u{e000}",
            "\u{fff0}",
            &long,
        ] {
            assert!(matches!(validate_path(bad), Err(CoordError::BadPath(p)) if p == bad), "{bad:?}");
        }
    }
}
