//! The storage trait: every file operation the engine does, and nothing else.
//!
//! Two implementations: [`uring::UringStorage`] (io_uring through monoio; production) and
//! [`crate::testing::sim::SimStorage`] (in memory, keeps "written" apart from "durable", injects
//! faults).
//!
//! Contract (the engine relies on each point; `tests/storage_contract.rs` checks both
//! implementations against it):
//! - `create` makes a new, empty file and fails if the path exists; the new name is durable only
//!   after `sync_dir` of its directory. `rename` and `remove` are likewise durable only after
//!   `sync_dir`.
//! - `write_at` bytes are durable only after `sync_data` of that file returns `Ok`.
//! - `read_at` reads exactly `len` bytes or fails with `UnexpectedEof`.
//! - `map` returns a read-only view of a range that is already durable; it never maps bytes that
//!   could still change. Removing a mapped file only unlinks it: mappings stay valid.
//! - The futures are `!Send` by design: a storage handle belongs to one shard.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::IoError;

pub mod uring;

/// A handle to a directory tree of files.
#[expect(async_fn_in_trait, reason = "thread-per-core: storage futures are !Send by design")]
pub trait Storage: Clone + 'static {
    /// An open file.
    type File: StorageFile;

    /// Creates a new empty file for reading and writing; fails if `path` exists.
    ///
    /// # Errors
    /// [`IoError`] with op `create`.
    async fn create(&self, path: &Path) -> Result<Self::File, IoError>;

    /// Opens an existing file for reading and writing.
    ///
    /// # Errors
    /// [`IoError`] with op `open` (`is_not_found()` when absent).
    async fn open(&self, path: &Path) -> Result<Self::File, IoError>;

    /// Renames `from` to `to`, replacing `to` atomically if it exists.
    ///
    /// # Errors
    /// [`IoError`] with op `rename`.
    async fn rename(&self, from: &Path, to: &Path) -> Result<(), IoError>;

    /// Unlinks a file; open handles and mappings of it stay valid.
    ///
    /// # Errors
    /// [`IoError`] with op `remove`.
    async fn remove(&self, path: &Path) -> Result<(), IoError>;

    /// Names of the entries of a directory, in no particular order.
    ///
    /// # Errors
    /// [`IoError`] with op `list`.
    async fn list(&self, dir: &Path) -> Result<Vec<String>, IoError>;

    /// Creates a directory and its parents.
    ///
    /// # Errors
    /// [`IoError`] with op `mkdir`.
    async fn create_dir_all(&self, dir: &Path) -> Result<(), IoError>;

    /// Makes the directory's entries (creates, renames, removes) durable.
    ///
    /// # Errors
    /// [`IoError`] with op `fsync dir`.
    async fn sync_dir(&self, dir: &Path) -> Result<(), IoError>;
}

/// An open file. Cloning shares the same open file.
#[expect(async_fn_in_trait, reason = "thread-per-core: storage futures are !Send by design")]
#[expect(clippy::len_without_is_empty, reason = "`len` is a stat of a file, not of a collection")]
pub trait StorageFile: Clone + 'static {
    /// The path the file was opened at.
    fn path(&self) -> &Path;

    /// Writes all of `buf` at `offset`, returning the buffer for reuse.
    ///
    /// # Errors
    /// [`IoError`] with op `write`.
    async fn write_at(&self, buf: Vec<u8>, offset: u64) -> Result<Vec<u8>, IoError>;

    /// Reads exactly `len` bytes at `offset`.
    ///
    /// # Errors
    /// [`IoError`] with op `read`; `UnexpectedEof` when the file is shorter.
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, IoError>;

    /// Makes every byte written so far durable (fdatasync).
    ///
    /// # Errors
    /// [`IoError`] with op `fdatasync`.
    async fn sync_data(&self) -> Result<(), IoError>;

    /// The file's current length.
    ///
    /// # Errors
    /// [`IoError`] with op `stat`.
    async fn len(&self) -> Result<u64, IoError>;

    /// Maps `[offset, offset + len)` read-only. The caller guarantees the range is durable.
    ///
    /// # Errors
    /// [`IoError`] with op `mmap`.
    fn map(&self, offset: u64, len: usize) -> Result<Bytes, IoError>;

    /// A descriptor of this file that stays open as long as anyone holds it (even after the file
    /// is closed or removed here), for splicing its durable bytes to a socket; `None` where the
    /// storage has no kernel file (the simulator) or the descriptor cannot be duplicated.
    fn splice_fd(&self) -> Option<SpliceFd> {
        None
    }
}

/// An open descriptor shared by the readers that may splice from it.
pub type SpliceFd = std::sync::Arc<std::os::fd::OwnedFd>;

/// Joins a directory and a file name.
pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// The whole content of the file at `path`.
///
/// # Errors
/// [`IoError`] opening, sizing or reading it.
pub(crate) async fn read_whole<S: Storage>(storage: &S, path: &Path) -> Result<Vec<u8>, IoError> {
    let f = storage.open(path).await?;
    let len = f.len().await?;
    f.read_at(0, usize::try_from(len).unwrap_or(usize::MAX)).await
}
