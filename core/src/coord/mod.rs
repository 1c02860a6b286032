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
//!   `boxes/photos/meta`. A segment is non-empty and has no `/`.

pub mod embedded;

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
    /// `boxes/<box>/partitions/<p>/owner`: ephemeral lease with a fencing token.
    pub fn partition_owner(box_name: &str, partition: u16) -> String {
        format!("boxes/{box_name}/partitions/{partition}/owner")
    }
    /// `boxes/<box>/partitions/<p>/refs`: the partition's published referenced-Syrup set.
    pub fn partition_refs(box_name: &str, partition: u16) -> String {
        format!("boxes/{box_name}/partitions/{partition}/refs")
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

impl BoxMeta {
    /// Encodes the entry (format in docs/format.md, "Coordination entries").
    pub fn encode(&self) -> Vec<u8> {
        unimplemented!("lands with the coordination work")
    }
    /// Decodes the entry.
    ///
    /// # Errors
    /// A [`crate::error::DecodeError`] for bytes that are not a valid entry.
    pub fn decode(buf: &[u8]) -> Result<BoxMeta, crate::error::DecodeError> {
        let _ = buf;
        unimplemented!("lands with the coordination work")
    }
}

impl RenameMarker {
    /// Encodes the entry (format in docs/format.md, "Coordination entries").
    pub fn encode(&self) -> Vec<u8> {
        unimplemented!("lands with the coordination work")
    }
    /// Decodes the entry.
    ///
    /// # Errors
    /// A [`crate::error::DecodeError`] for bytes that are not a valid entry.
    pub fn decode(buf: &[u8]) -> Result<RenameMarker, crate::error::DecodeError> {
        let _ = buf;
        unimplemented!("lands with the coordination work")
    }
}

/// Encodes a published referenced-Syrup set compactly (sorted, delta varints, version byte).
pub fn encode_refs(refs: &std::collections::BTreeSet<crate::types::SyrupId>) -> Vec<u8> {
    let _ = refs;
    unimplemented!("lands with the coordination work")
}

/// Decodes a published referenced-Syrup set.
///
/// # Errors
/// A [`crate::error::DecodeError`] for bytes that are not a valid set.
pub fn decode_refs(buf: &[u8]) -> Result<std::collections::BTreeSet<crate::types::SyrupId>, crate::error::DecodeError> {
    let _ = buf;
    unimplemented!("lands with the coordination work")
}
