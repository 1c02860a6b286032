//! Production storage: every file operation is submitted to io_uring through monoio, so the
//! engine never blocks its core. Directory listing has no io_uring op; it runs on a helper thread
//! ([`crate::runtime::unblock`]). This module holds the project's only mmap code.
//!
//! Invariants:
//! - Only durable ranges are mapped (the caller's contract, see [`crate::storage`]); files are
//!   never truncated, so a mapping can never run past the end of its file.

use std::{
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    rc::Rc,
};

use bytes::Bytes;

use super::{Storage, StorageFile};
use crate::error::IoError;

/// Storage on the real file system through io_uring.
#[derive(Debug, Clone, Default)]
pub struct UringStorage;

impl UringStorage {
    /// A handle; it holds no state.
    pub fn new() -> Self {
        UringStorage
    }
}

/// An open file on io_uring.
#[derive(Debug, Clone)]
pub struct UringFile {
    inner: Rc<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: monoio::fs::File,
    path: PathBuf,
}

async fn open_with(path: &Path, create_new: bool) -> Result<UringFile, IoError> {
    let op = if create_new { "create" } else { "open" };
    let file = monoio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create_new)
        .open(path)
        .await
        .map_err(|e| IoError::new(op, path, e))?;
    Ok(UringFile { inner: Rc::new(Inner { file, path: path.to_path_buf() }) })
}

impl Storage for UringStorage {
    type File = UringFile;

    async fn create(&self, path: &Path) -> Result<UringFile, IoError> {
        open_with(path, true).await
    }

    async fn open(&self, path: &Path) -> Result<UringFile, IoError> {
        open_with(path, false).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), IoError> {
        monoio::fs::rename(from, to).await.map_err(|e| IoError::new("rename", from, e))
    }

    async fn remove(&self, path: &Path) -> Result<(), IoError> {
        monoio::fs::remove_file(path).await.map_err(|e| IoError::new("remove", path, e))
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>, IoError> {
        let owned = dir.to_path_buf();
        let listed = crate::runtime::unblock(move || -> std::io::Result<Vec<String>> {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&owned)? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            Ok(names)
        })
        .await;
        match listed {
            Some(r) => r.map_err(|e| IoError::new("list", dir, e)),
            None => Err(IoError::new("list", dir, std::io::Error::other("helper thread died"))),
        }
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<(), IoError> {
        // monoio's `create_dir_all` checks for each ancestor and then creates it, so two shards
        // creating sibling partitions raced on their shared parent (EEXIST). Create every
        // ancestor, outermost first, and accept one that exists (made earlier or concurrently);
        // an ancestor that exists as a file fails its child's mkdir with ENOTDIR.
        for at in dir.ancestors().collect::<Vec<_>>().into_iter().rev() {
            if at.as_os_str().is_empty() {
                continue;
            }
            match monoio::fs::create_dir(at).await {
                Ok(()) => {}
                // A stat only when mkdir found something there (rare: opening a partition).
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && at.is_dir() => {}
                Err(e) => return Err(IoError::new("mkdir", at, e)),
            }
        }
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> Result<(), IoError> {
        let d =
            monoio::fs::OpenOptions::new().read(true).open(dir).await.map_err(|e| IoError::new("open dir", dir, e))?;
        d.sync_all().await.map_err(|e| IoError::new("fsync dir", dir, e))
    }
}

impl StorageFile for UringFile {
    fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn write_at(&self, buf: Vec<u8>, offset: u64) -> Result<Vec<u8>, IoError> {
        let (res, buf) = self.inner.file.write_all_at(buf, offset).await;
        res.map_err(|e| IoError::new("write", &self.inner.path, e))?;
        Ok(buf)
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
        let buf = Vec::with_capacity(len);
        let (res, buf) = self.inner.file.read_exact_at(buf, offset).await;
        res.map_err(|e| IoError::new("read", &self.inner.path, e))?;
        Ok(buf)
    }

    async fn sync_data(&self) -> Result<(), IoError> {
        self.inner.file.sync_data().await.map_err(|e| IoError::new("fdatasync", &self.inner.path, e))
    }

    async fn len(&self) -> Result<u64, IoError> {
        let m = self.inner.file.metadata().await.map_err(|e| IoError::new("stat", &self.inner.path, e))?;
        Ok(m.len())
    }

    fn map(&self, offset: u64, len: usize) -> Result<Bytes, IoError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let fd = self.inner.file.as_raw_fd();
        #[expect(unsafe_code, reason = "see SAFETY")]
        // SAFETY: the mapping is read-only and covers a range the caller guarantees is durable.
        // Candybox never truncates or rewrites a file's durable bytes (Syrups and SSTables are
        // append-only and immutable below their durable length), so the mapped bytes can neither
        // change under a reader nor vanish (SIGBUS). Unlinking the file keeps the mapping valid.
        let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(fd) }
            .map_err(|e| IoError::new("mmap", &self.inner.path, e))?;
        Ok(Bytes::from_owner(map))
    }

    fn splice_fd(&self) -> Option<super::SpliceFd> {
        #[expect(unsafe_code, reason = "see SAFETY")]
        // SAFETY: the descriptor belongs to `self.inner.file`, which is open for the whole borrow
        // (the borrow ends with the duplication below).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.inner.file.as_raw_fd()) };
        fd.try_clone_to_owned().ok().map(std::sync::Arc::new)
    }
}
