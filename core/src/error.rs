//! Typed errors of the engine and of every decoder.
//!
//! - I/O errors record the operation and the path.
//! - Corruption errors carry evidence: the file, the offset, and expected vs found values.
//! - Each operation family has a narrow enum where it helps callers; all of them convert into the
//!   umbrella [`Error`] that crosses the engine's public API.

use std::{fmt, io, path::PathBuf};

use crate::codec::Short;

/// An I/O error with the operation and the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct IoError {
    /// The operation, as a verb phrase: "fdatasync", "open", "write".
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// Wraps `source` with its operation and path.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self { op, path: path.into(), source }
    }

    /// The `errno` of the underlying error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// True when the file or directory does not exist.
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }

    /// True when the file system (or the user's quota) is full.
    pub fn is_no_space(&self) -> bool {
        matches!(self.source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            || self.source.kind() == io::ErrorKind::StorageFull
    }
}

/// Which on-disk structure a corruption was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A Syrup data file.
    Syrup,
    /// A write-ahead log.
    Wal,
    /// An SSTable.
    Table,
    /// A manifest log.
    Manifest,
    /// The CURRENT pointer file.
    Pointer,
    /// A CandyLocator (inside a WAL record or a table entry).
    Locator,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Syrup => "syrup",
            FileKind::Wal => "wal",
            FileKind::Table => "sstable",
            FileKind::Manifest => "manifest",
            FileKind::Pointer => "pointer",
            FileKind::Locator => "locator",
        })
    }
}

/// What is wrong with bytes read from disk. Decoders return this without a path; the caller that
/// knows the file wraps it into a [`Corruption`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The magic bytes are not ours: a misdirected read or a foreign file.
    #[error("bad magic: found {found:02x?}")]
    BadMagic {
        /// The bytes found where the magic should be.
        found: Vec<u8>,
    },
    /// A format version this build does not know.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u16),
    /// A checksum did not match its data.
    #[error("checksum mismatch at offset {offset}: expected {expected:#010x}, found {found:#010x}")]
    ChecksumMismatch {
        /// Offset of the checksummed data in the file.
        offset: u64,
        /// The stored checksum.
        expected: u32,
        /// The checksum of the bytes as read.
        found: u32,
    },
    /// The input ended before the structure did.
    #[error("truncated: {0}")]
    Truncated(#[from] Short),
    /// A field holds a value that cannot be right.
    #[error("malformed {what} at offset {offset}")]
    Malformed {
        /// The field or structure.
        what: &'static str,
        /// Offset within the decoded input.
        offset: u64,
    },
}

/// Corruption found in a file: the evidence of a [`DecodeError`] plus which file it was.
#[derive(Debug, thiserror::Error)]
#[error("corrupt {kind} {path}: {error}")]
pub struct Corruption {
    /// What kind of file.
    pub kind: FileKind,
    /// Which file.
    pub path: PathBuf,
    /// What is wrong, with offsets and checksums.
    pub error: DecodeError,
}

impl Corruption {
    /// Names the file a decode error was found in.
    pub fn new(kind: FileKind, path: impl Into<PathBuf>, error: DecodeError) -> Self {
        Self { kind, path: path.into(), error }
    }
}

/// Why a relayed locator was refused by a zero-copy put.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgedLocator {
    /// The locator bytes do not decode.
    #[error("locator does not decode: {0}")]
    Undecodable(DecodeError),
    /// A SegmentRef names a Syrup that does not exist on this node.
    #[error("syrup {syrup:#018x} does not exist")]
    UnknownSyrup {
        /// The Syrup id.
        syrup: u64,
    },
    /// A SegmentRef names a Syrup of another Box.
    #[error("syrup {syrup:#018x} belongs to another box")]
    OtherBox {
        /// The Syrup id.
        syrup: u64,
    },
    /// A SegmentRef runs beyond the durable length of its Syrup.
    #[error("syrup {syrup:#018x}: range ends at {end}, durable length is {durable}")]
    BeyondDurable {
        /// The Syrup id.
        syrup: u64,
        /// Where the referenced range ends (file offset).
        end: u64,
        /// The Syrup's durable length.
        durable: u64,
    },
    /// The referenced chunks do not carry valid checksums at their claimed places.
    #[error("syrup {syrup:#018x}: no valid chunk at offset {offset}")]
    NotAChunk {
        /// The Syrup id.
        syrup: u64,
        /// The claimed chunk offset.
        offset: u64,
    },
    /// The locator is a tombstone or otherwise not a live Candy.
    #[error("locator is not a live candy")]
    NotLive,
}

/// The umbrella error of the partition engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused an I/O.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A file holds bytes that cannot be right.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// A previous write or fdatasync failed; the partition refuses all work until reopened,
    /// because the state of its files is no longer known.
    #[error("partition stopped after an earlier I/O failure; reopen it")]
    PreviousIo,
    /// The key (or upload, or rename intent) does not exist.
    #[error("not found")]
    NotFound,
    /// A request field is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A request exceeds a limit.
    #[error("{limit} exceeded: {value} > {max}")]
    LimitExceeded {
        /// The limit's name.
        limit: &'static str,
        /// The value asked for.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// The partition is overloaded (L0 stall or memtable full); retry later.
    #[error("busy: {reason}; retry after {retry_after_ms} ms")]
    Busy {
        /// Why.
        reason: &'static str,
        /// A hint of when to retry.
        retry_after_ms: u32,
    },
    /// A relayed locator was refused.
    #[error("forged locator: {0}")]
    Forged(#[from] ForgedLocator),
    /// Bytes read back did not match their checksum.
    #[error("checksum mismatch reading syrup {syrup:#018x} at offset {offset}: expected {expected:#010x}, found {found:#010x}")]
    ChecksumMismatch {
        /// The Syrup id.
        syrup: u64,
        /// The offset of the chunk or Part.
        offset: u64,
        /// The stored checksum.
        expected: u32,
        /// The checksum of the bytes read.
        found: u32,
    },
    /// The request body ended early or failed while streaming.
    #[error("body: {0}")]
    Body(String),
    /// The engine was closed.
    #[error("partition is closed")]
    Closed,
    /// Another request holds what this one needs exclusively: the source of a rename that
    /// another rename has already claimed. Not retryable as such: the other request decides.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A conditional mutation's condition does not hold for the key's current version (`None`:
    /// no live object); nothing was written.
    #[error("precondition failed: {condition:?} does not hold; the key's current version is {}", current.map_or_else(|| "none (no live object)".to_string(), |h| h.to_string()))]
    PreconditionFailed {
        /// The condition asked for.
        condition: crate::condition::WriteCondition,
        /// The key's current version.
        current: Option<crate::hlc::Hlc>,
    },
    /// A read of a versioned Box's version that is a delete marker (S3 answers 405 Method Not
    /// Allowed): the version exists, but holds no object.
    #[error("version {version} is a delete marker")]
    DeleteMarker {
        /// The version asked for.
        version: crate::hlc::Hlc,
    },
    /// The file system has no room for new data. Writes are refused until space is freed;
    /// reads, deletes and garbage collection go on.
    #[error("no space left on the node: new data is refused until space is freed; reads and deletes still work")]
    NoSpace,
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::InvalidArgument`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { field, reason: reason.into() }
    }

    /// True when retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }
}
