//! Plain Rust values of the client API: what requests take and what replies become. Nothing here
//! borrows from a frame, except the relayed locators, which are `Bytes` slices of the received
//! frame so that they can be sent on verbatim.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

/// A hybrid logical clock stamp: last writer wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    /// Wall-clock milliseconds.
    pub physical_ms: u64,
    /// Counter within one millisecond.
    pub logical: u32,
    /// The node that stamped it.
    pub node: u16,
}

impl Hlc {
    /// The zero stamp: a versioned Box's null version id.
    pub const ZERO: Hlc = Hlc { physical_ms: 0, logical: 0, node: 0 };
}

/// A Box as head-box, create-box and list-boxes describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxInfo {
    /// The Box's name.
    pub name: String,
    /// Its partition count, fixed at creation.
    pub partitions: u16,
    /// When it was created (Unix ms).
    pub created_ms: u64,
    /// Its incarnation (a recreated Box has a new one).
    pub box_uid: u64,
    /// The node that serves it (0: not placed, a single node's Box).
    pub node: u16,
    /// Its versioning state.
    pub versioning: Versioning,
}

/// What a completed put (or multipart completion, or zero-copy put) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PutDone {
    /// Bytes stored.
    pub size: u64,
    /// CRC-32 of the Candy's bytes.
    pub checksum: u32,
    /// The write's stamp.
    pub hlc: Hlc,
}

/// A Candy's metadata (head, and the start of a get).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CandyMeta {
    /// Total bytes of the Candy.
    pub size: u64,
    /// CRC-32 of all its bytes.
    pub checksum: u32,
    /// The stamp of the write that made it.
    pub hlc: Hlc,
    /// Its content type (empty when none was given).
    pub content_type: String,
    /// User metadata, in the order given at put.
    pub user_meta: Vec<(String, String)>,
    /// When it was written (Unix ms).
    pub created_ms: u64,
}

/// Which bytes of a Candy a get returns (HTTP Range semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteRange {
    /// All of it.
    #[default]
    Whole,
    /// `[first, last]`, inclusive.
    FromTo {
        /// First byte.
        first: u64,
        /// Last byte (inclusive).
        last: u64,
    },
    /// From `first` to the end.
    From {
        /// First byte.
        first: u64,
    },
    /// The last `length` bytes.
    Suffix {
        /// How many bytes at the end.
        length: u64,
    },
}

/// Why a range string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid byte range `{0}`: expected FIRST-LAST, FIRST- or -LENGTH (e.g. 0-99, 100-, -50)")]
pub struct ByteRangeError(pub String);

impl FromStr for ByteRange {
    type Err = ByteRangeError;

    /// Parses `0-99`, `100-` and `-50`.
    fn from_str(s: &str) -> Result<ByteRange, ByteRangeError> {
        let bad = || ByteRangeError(s.to_owned());
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let num = |x: &str| x.parse::<u64>().map_err(|_| bad());
        match (a.is_empty(), b.is_empty()) {
            (false, false) => {
                let (first, last) = (num(a)?, num(b)?);
                if last < first {
                    return Err(bad());
                }
                Ok(ByteRange::FromTo { first, last })
            }
            (false, true) => Ok(ByteRange::From { first: num(a)? }),
            (true, false) => Ok(ByteRange::Suffix { length: num(b)? }),
            (true, true) => Err(bad()),
        }
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteRange::Whole => write!(f, "whole"),
            ByteRange::FromTo { first, last } => write!(f, "{first}-{last}"),
            ByteRange::From { first } => write!(f, "{first}-"),
            ByteRange::Suffix { length } => write!(f, "-{length}"),
        }
    }
}

/// Options of a put (and of a multipart upload's creation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// The content type to store.
    pub content_type: Option<String>,
    /// User metadata (at most 8 KiB in all).
    pub user_meta: Vec<(String, String)>,
    /// The exact body size when known; the node then checks it.
    pub size: Option<u64>,
    /// Store only if the key meets this (`None`: always).
    pub condition: Option<Condition>,
    /// Digests the client computes while it streams the body and attaches at its end (in the
    /// trailer of a streamed put, with the request of a put in one frame): user metadata named
    /// by [`Digest::meta_key`], lowercase hex. Head, get and list return them.
    pub digests: Vec<Digest>,
}

/// A content digest the client library can compute while it streams a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Digest {
    /// MD5 (S3's ETag of a single put).
    Md5,
    /// CRC-32 (ISO-HDLC; S3's `CRC32`).
    Crc32,
    /// CRC-32C (Castagnoli; S3's `CRC32C`).
    Crc32c,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl Digest {
    /// Every kind, in this order.
    pub const ALL: [Digest; 5] = [Digest::Md5, Digest::Crc32, Digest::Crc32c, Digest::Sha1, Digest::Sha256];

    /// Its short name (`md5`, `crc32`, `crc32c`, `sha1`, `sha256`).
    pub fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Crc32 => "crc32",
            Digest::Crc32c => "crc32c",
            Digest::Sha1 => "sha1",
            Digest::Sha256 => "sha256",
        }
    }

    /// The user-metadata name its value is stored under (`digest-md5`, ...).
    pub fn meta_key(self) -> &'static str {
        match self {
            Digest::Md5 => "digest-md5",
            Digest::Crc32 => "digest-crc32",
            Digest::Crc32c => "digest-crc32c",
            Digest::Sha1 => "digest-sha1",
            Digest::Sha256 => "digest-sha256",
        }
    }

    /// The digest of `data`'s value in a `meta` list, if there.
    pub fn find(self, meta: &[(String, String)]) -> Option<&str> {
        meta.iter().find(|(k, _)| k == self.meta_key()).map(|(_, v)| v.as_str())
    }

    /// The condition "the key's object has this digest" (S3's If-Match on an ETag).
    pub fn condition(self, hex: &str) -> Condition {
        Condition::IfMeta { key: self.meta_key().to_string(), value: hex.to_ascii_lowercase() }
    }
}

impl FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Digest, String> {
        Digest::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown digest `{s}`: one of md5, crc32, crc32c, sha1, sha256"))
    }
}

/// Metadata that replaces an object's own: a copy's or rename's target (S3's REPLACE directive)
/// or a set-meta. Both fields replace (an absent content type with none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaReplace {
    /// The new content type.
    pub content_type: Option<String>,
    /// The new user metadata.
    pub user_meta: Vec<(String, String)>,
}

/// What a copy or rename asks of its target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Only if the target key meets this (`None`: always).
    pub condition: Option<Condition>,
    /// The target's metadata instead of the source's (`None`: kept).
    pub replace: Option<MetaReplace>,
    /// A copy of this version of the source (`None`: the current one; not for a rename).
    pub source_version: Option<Hlc>,
}

/// A Box's versioning state (one definition with the engine's, in `candybox-types`).
pub use candybox_types::Versioning;

/// What a list-versions asks for: versions of keys with `prefix`, after the markers, in (key,
/// newest first) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionListOptions {
    /// Only keys with this prefix.
    pub prefix: Option<Vec<u8>>,
    /// Continue after this key: after its version `version_marker` when given, else after all of
    /// its versions.
    pub key_marker: Option<Vec<u8>>,
    /// With `key_marker`: the last version seen.
    pub version_marker: Option<Hlc>,
    /// Page size; 0 means the node's maximum.
    pub limit: u32,
    /// Entries carry their user metadata.
    pub with_meta: bool,
}

/// One version or delete marker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionEntry {
    /// Its key.
    pub key: Vec<u8>,
    /// Its id (zero: the null version).
    pub version: Hlc,
    /// The key's current version (or current delete marker).
    pub is_latest: bool,
    /// A delete marker (no bytes).
    pub delete_marker: bool,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32 of its bytes.
    pub checksum: u32,
    /// Content type.
    pub content_type: String,
    /// When its bytes were first written (Unix ms).
    pub created_ms: u64,
    /// When this version was written (Unix ms).
    pub modified_ms: u64,
    /// User metadata, when asked for.
    pub user_meta: Vec<(String, String)>,
}

/// A page of versions: of one partition, or of the whole Box merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionPage {
    /// Entries in (key, newest first) order.
    pub entries: Vec<VersionEntry>,
    /// When more follow: the markers of the next page.
    pub next: Option<(Vec<u8>, Hlc)>,
}

/// What a delete did: in a versioned Box, the delete marker it wrote, or the version it removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteDone {
    /// The marker's (or the deleted version's) id; zero from an unversioned Box.
    pub version: Hlc,
    /// A delete marker was written.
    pub delete_marker: bool,
}

/// One key of a delete-many.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteKey {
    /// The key.
    pub key: Vec<u8>,
    /// Only if the key meets this.
    pub condition: Option<Condition>,
    /// This version for good instead of the key (no condition then).
    pub version_id: Option<Hlc>,
}

impl DeleteKey {
    /// The key, unconditionally.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        DeleteKey { key: key.into(), ..DeleteKey::default() }
    }
}

/// One key's outcome in a delete-many.
#[derive(Debug, Clone)]
pub struct DeleteOutcome {
    /// The key.
    pub key: Vec<u8>,
    /// The version asked for, if any.
    pub version_id: Option<Hlc>,
    /// What was done (deleted, or already absent; the marker written), else why not.
    pub result: Result<DeleteDone, super::ClientError>,
}

/// What a conditional put or delete requires of its key's current version. The node checks it
/// when the mutation joins the partition's commit queue, so of writers racing on one key at
/// most one meets a condition the other's write breaks; a failed one is
/// [`ClientError::PreconditionFailed`](super::ClientError::PreconditionFailed) with the key's
/// current version, and nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// No live object under the key (S3's `If-None-Match: *`).
    IfAbsent,
    /// The key's current version is this one: the stamp a put returned or head, get and list
    /// report (S3's `If-Match` with a version).
    IfVersion(Hlc),
    /// The key holds a live object last written at or before this time, in milliseconds since
    /// the Unix epoch (S3's `If-Unmodified-Since`).
    IfUnmodifiedSince(u64),
    /// The key holds a live object whose user metadata has entry `key` = `value`: a content
    /// digest ([`Digest::condition`]; S3's `If-Match` with an ETag).
    IfMeta {
        /// The entry's name.
        key: String,
        /// Its value, compared byte for byte.
        value: String,
    },
}

impl fmt::Display for Hlc {
    /// `physical_ms.logical@node`, the form [`Hlc::from_str`] reads (and the node's logs write).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.physical_ms, self.logical, self.node)
    }
}

impl FromStr for Hlc {
    type Err = String;

    /// Reads `physical_ms.logical@node`, as [`Hlc`]'s `Display` writes it.
    fn from_str(s: &str) -> Result<Hlc, String> {
        let bad = || format!("`{s}` is not a version: expected physical_ms.logical@node, e.g. 1700000000000.0@1");
        let (time, node) = s.split_once('@').ok_or_else(bad)?;
        let (ms, logical) = time.split_once('.').ok_or_else(bad)?;
        Ok(Hlc {
            physical_ms: ms.parse().map_err(|_| bad())?,
            logical: logical.parse().map_err(|_| bad())?,
            node: node.parse().map_err(|_| bad())?,
        })
    }
}

/// A listing request over a whole Box (one definition with the engine's, in `candybox-types`).
pub use candybox_types::ListOptions;

/// One listed Candy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListEntry {
    /// Its key.
    pub key: Vec<u8>,
    /// Its size in bytes.
    pub size: u64,
    /// CRC-32 of its bytes.
    pub checksum: u32,
    /// Its write stamp.
    pub hlc: Hlc,
    /// Its content type.
    pub content_type: String,
    /// When it was written (Unix ms).
    pub created_ms: u64,
    /// Its user metadata (digests included), when the listing asked for it
    /// (`ListOptions::with_meta`).
    pub user_meta: Vec<(String, String)>,
}

impl ListEntry {
    /// The key as text (lossy for keys that are not UTF-8).
    pub fn key_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.key)
    }
}

/// A page of a listing: of one partition as the node returns it, or of the whole Box merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// Entries in key order (descending when reverse).
    pub entries: Vec<ListEntry>,
    /// Present when more entries follow: the `start_after` of the next page.
    pub next_start_after: Option<Vec<u8>>,
}

/// The keys a delete-range removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Every key with this prefix.
    Prefix(Vec<u8>),
    /// Every key in `[start, end)`.
    Between {
        /// First key included.
        start: Vec<u8>,
        /// First key excluded.
        end: Vec<u8>,
    },
}

/// An in-progress multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// The key it will complete to.
    pub key: Vec<u8>,
    /// Its id.
    pub upload_id: u64,
    /// When it was created (Unix ms).
    pub created_ms: u64,
    /// Parts uploaded so far.
    pub parts: u32,
}

/// An uploaded part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartInfo {
    /// Its number (1-based, as given).
    pub part_number: u32,
    /// Its size in bytes.
    pub size: u64,
    /// CRC-32 of its bytes.
    pub checksum: u32,
}

/// A key's live locator as get-locator returned it: relay `locator` verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedLocator {
    /// The `Locator` flatbuffer bytes, a slice of the received frame.
    pub locator: Bytes,
    /// The source partition.
    pub partition: u16,
}

/// A recorded rename intent as prepare-rename returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenamePrepared {
    /// The intent's token (carry it to zero-copy-put and complete-rename).
    pub token: Bytes,
    /// The source's `Locator` flatbuffer bytes, a slice of the received frame.
    pub locator: Bytes,
    /// The source's stamp when the intent was recorded.
    pub source_hlc: Hlc,
    /// The source key's partition.
    pub source_partition: u16,
    /// The target key's partition.
    pub target_partition: u16,
}

/// How complete-rename ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameOutcome {
    /// The source was tombstoned; the rename is done.
    Finalized,
    /// The source was re-put since the intent: it stays, both keys live.
    SourceChanged,
    /// The destination's marker is not there yet; maintenance finishes (or abandons) it.
    Pending,
}

impl fmt::Display for RenameOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RenameOutcome::Finalized => "finalized",
            RenameOutcome::SourceChanged => "source-changed",
            RenameOutcome::Pending => "pending",
        })
    }
}

/// How the node places partitions on shards and where each shard listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The node's id.
    pub node_id: u16,
    /// Its shard count.
    pub shard_count: u16,
    /// Each shard's own port, indexed by shard.
    pub ports: Vec<u16>,
    /// The port every shard accepts on.
    pub main_port: u16,
    /// The placement function's name.
    pub placement: String,
    /// The shard that answered.
    pub shard: u16,
}

/// One shard's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStats {
    /// The shard.
    pub shard: u16,
    /// Counter names and values.
    pub counters: Vec<(String, u64)>,
}
