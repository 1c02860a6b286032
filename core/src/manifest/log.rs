//! A partition's live manifest: the state its edits built, the open manifest file it appends
//! to, and the file numbers it hands out. It owns these fields; the engine changes them only by
//! edits.
//!
//! Invariants:
//! - An edit is checked against the state before anything is written (an edit that could not
//!   apply never reaches the file, or the next open would fail), and applied only once durable.
//! - Appends are serialized by the manifest's own lock: two interleaved writers would leave a
//!   hole. After a failed write or fdatasync nothing more is appended ([`Error::PreviousIo`]);
//!   a full disk met by the write clears what it left and refuses only that edit.
//! - A checkpoint writes the whole state, fdatasyncs it, and only then points `CURRENT` at it.
//! - File numbers handed out strictly increase and are recorded (`NextFileNumber`) before the
//!   files they name are made live.

use std::{
    cell::{Cell, Ref, RefCell},
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use super::{Change, ManifestState};
use crate::{
    error::{Corruption, DecodeError, Error, FileKind, Result},
    hlc::Hlc,
    limits, record,
    record::ScanEnd,
    runtime::LocalMutex,
    storage::{read_whole, Storage, StorageFile},
};

/// What [`ManifestLog::read`] found in a partition directory that has a `CURRENT`.
#[derive(Debug)]
pub(crate) struct Read {
    /// The state its edits built.
    pub(crate) state: ManifestState,
    /// The manifest `CURRENT` names.
    pub(crate) number: u64,
    /// True when its last edit was torn and dropped.
    pub(crate) torn: bool,
}

struct Open<F> {
    state: ManifestState,
    file: Option<F>,
    number: u64,
    len: u64,
    next_file: u64,
}

/// The manifest of one partition (see the module docs).
pub(crate) struct ManifestLog<S: Storage> {
    storage: S,
    dir: PathBuf,
    checkpoint_bytes: u64,
    lock: LocalMutex,
    failed: Cell<bool>,
    open: RefCell<Open<S::File>>,
}

impl<S: Storage> ManifestLog<S> {
    /// Reads the manifest `CURRENT` names in `dir` and replays its edits (a torn last edit is
    /// dropped, with a warning).
    ///
    /// # Errors
    /// `Corrupt` naming the file when `CURRENT` or the manifest fails its checks; `Io`.
    pub(crate) async fn read(storage: &S, dir: &Path) -> Result<Read> {
        let corrupt =
            |path: PathBuf, kind| move |e: DecodeError| Error::Corrupt(Corruption::new(kind, path.clone(), e));
        let current_path = dir.join(super::CURRENT_FILE);
        let cur = read_whole(storage, &current_path).await?;
        let number = super::decode_current(&cur).map_err(corrupt(current_path, FileKind::Pointer))?;
        let path = dir.join(super::file_name(number));
        let bad = corrupt(path.clone(), FileKind::Manifest);
        let bytes = read_whole(storage, &path).await?;
        let header = bytes.get(..super::MANIFEST_HEADER_BYTES).ok_or_else(|| {
            bad(DecodeError::Truncated(crate::codec::Short { at: 0, needed: super::MANIFEST_HEADER_BYTES }))
        })?;
        if super::decode_header(header).map_err(&bad)? != number {
            return Err(bad(DecodeError::Malformed { what: "manifest number", offset: 16 }));
        }
        let body = bytes.get(super::MANIFEST_HEADER_BYTES..).unwrap_or_default();
        let (records, end) =
            record::scan_records(body, super::MANIFEST_HEADER_BYTES as u64, limits::MANIFEST_EDIT_BYTES_MAX)
                .map_err(&bad)?;
        let torn = matches!(end, ScanEnd::Torn { .. });
        if let ScanEnd::Torn { offset, discarded } = end {
            tracing::warn!(file = %path.display(), offset, discarded, "discarding torn manifest tail");
        }
        let mut state = ManifestState::default();
        for (offset, rec) in records {
            let changes = super::decode_edit(rec).map_err(|e| bad(record::body_error_at(e, offset)))?;
            for c in &changes {
                state.apply(c).map_err(|e| bad(record::body_error_at(e, offset)))?;
            }
        }
        Ok(Read { state, number, torn })
    }

    /// The manifest of the partition in `dir`, holding `state` (read from manifest `number`, or
    /// 0 for a new partition), handing out file numbers from `next_file`. Nothing is appended
    /// before [`ManifestLog::checkpoint`] has written a new manifest.
    pub(crate) fn new(
        storage: S,
        dir: PathBuf,
        checkpoint_bytes: u64,
        state: ManifestState,
        number: u64,
        next_file: u64,
    ) -> Self {
        ManifestLog {
            storage,
            dir,
            checkpoint_bytes,
            lock: LocalMutex::new(),
            failed: Cell::new(false),
            open: RefCell::new(Open { state, file: None, number, len: 0, next_file }),
        }
    }

    /// The state the durable edits built.
    pub(crate) fn state(&self) -> Ref<'_, ManifestState> {
        Ref::map(self.open.borrow(), |o| &o.state)
    }

    /// The number of the manifest `CURRENT` names.
    pub(crate) fn number(&self) -> u64 {
        self.open.borrow().number
    }

    /// The next file number to hand out (an edit records it with `NextFileNumber`).
    pub(crate) fn next_file(&self) -> u64 {
        self.open.borrow().next_file
    }

    /// A new file number.
    pub(crate) fn alloc_file_number(&self) -> u64 {
        let mut o = self.open.borrow_mut();
        let n = o.next_file;
        o.next_file += 1;
        n
    }

    /// The file names the live tables of `state` and the manifest use, for orphan deletion.
    pub(crate) fn live_tables(&self) -> BTreeSet<u64> {
        self.open.borrow().state.tables.keys().copied().collect()
    }

    fn corrupt(&self, e: DecodeError) -> Error {
        Error::Corrupt(Corruption::new(FileKind::Manifest, &self.dir, e))
    }

    /// Stops appending after an I/O failure and passes it on.
    fn failed<T>(&self, e: impl Into<Error>) -> Result<T> {
        self.failed.set(true);
        Err(e.into())
    }

    /// Appends one edit durably, then applies it; checkpoints past the size threshold (the
    /// snapshot's HLC floor is at least `floor()` then).
    ///
    /// # Errors
    /// `NotFound` for a part of an upload that is gone (nothing written); `NoSpace` when the disk
    /// is full (nothing written); `Io` when a write or fdatasync failed (the manifest then
    /// refuses every edit: `PreviousIo`); `Corrupt` when the state refuses the edit.
    pub(crate) async fn edit(&self, changes: Vec<Change>, floor: impl Fn() -> Hlc) -> Result<()> {
        let _g = self.lock.lock().await;
        if self.failed.get() {
            return Err(Error::PreviousIo);
        }
        let (file, offset) = {
            let o = self.open.borrow();
            let mut created = BTreeSet::new();
            for c in &changes {
                match c {
                    Change::UploadCreated { id, .. } => {
                        created.insert(*id);
                    }
                    Change::UploadPart { id, .. } if !o.state.uploads.contains_key(id) && !created.contains(id) => {
                        return Err(Error::NotFound);
                    }
                    _ => {}
                }
            }
            (o.file.clone().ok_or(Error::Closed)?, o.len)
        };
        let mut rec = Vec::new();
        record::encode_record(offset, &super::encode_edit(&changes), &mut rec);
        let n = rec.len() as u64;
        if let Err(e) = file.write_at(rec, offset).await {
            if e.is_no_space() {
                // As for the commit log: zero what the failed append left, and refuse the edit.
                if let Err(e) = crate::log::clear_tail(&file, offset).await {
                    return self.failed(e);
                }
                return Err(Error::NoSpace);
            }
            return self.failed(e);
        }
        if let Err(e) = file.sync_data().await {
            return self.failed(e);
        }
        let needs_checkpoint = {
            let mut o = self.open.borrow_mut();
            o.len = offset + n;
            for c in &changes {
                if let Err(e) = o.state.apply(c) {
                    drop(o);
                    return Err(self.corrupt(e));
                }
            }
            o.len > self.checkpoint_bytes
        };
        if needs_checkpoint {
            self.checkpoint_locked(floor()).await?;
        }
        Ok(())
    }

    /// Writes the whole state into a new manifest (with an HLC floor of at least `floor`) and
    /// switches `CURRENT` to it.
    ///
    /// # Errors
    /// As [`ManifestLog::edit`].
    pub(crate) async fn checkpoint(&self, floor: Hlc) -> Result<()> {
        let _g = self.lock.lock().await;
        if self.failed.get() {
            return Err(Error::PreviousIo);
        }
        self.checkpoint_locked(floor).await
    }

    async fn checkpoint_locked(&self, floor: Hlc) -> Result<()> {
        let (number, snapshot, old) = {
            let mut o = self.open.borrow_mut();
            let number = o.next_file;
            o.next_file += 1;
            o.state.next_file_number = o.next_file;
            o.state.hlc_floor = o.state.hlc_floor.max(floor);
            (number, o.state.snapshot(), o.number)
        };
        let mut bytes = super::encode_header(number);
        // The snapshot goes in records of bounded size: the reader refuses larger edits. The new
        // manifest is named by CURRENT only once all of it is durable, so splitting is safe.
        let mut group: Vec<Change> = Vec::new();
        let mut group_bytes = 0usize;
        let flush_group = |group: &mut Vec<Change>, bytes: &mut Vec<u8>| {
            if !group.is_empty() {
                let at = bytes.len() as u64;
                record::encode_record(at, &super::encode_edit(group), bytes);
                group.clear();
            }
        };
        for c in snapshot {
            let n = super::encode_edit(std::slice::from_ref(&c)).len();
            if group_bytes + n > limits::MANIFEST_EDIT_BYTES_MAX / 2 {
                flush_group(&mut group, &mut bytes);
                group_bytes = 0;
            }
            group_bytes += n;
            group.push(c);
        }
        flush_group(&mut group, &mut bytes);
        let len = bytes.len() as u64;
        let path = self.dir.join(super::file_name(number));
        let written: Result<S::File> = async {
            let file = self.storage.create(&path).await?;
            file.write_at(bytes, 0).await?;
            file.sync_data().await?;
            self.write_current(number).await?;
            Ok(file)
        }
        .await;
        let file = match written {
            Ok(f) => f,
            Err(Error::Io(e)) if e.is_no_space() && matches!(e.op, "write" | "create") => {
                // CURRENT still names the old manifest, which stays live: drop the new one.
                let _ = self.storage.remove(&path).await;
                let _ = self.storage.remove(&self.dir.join("CURRENT.tmp")).await;
                return Err(Error::NoSpace);
            }
            Err(e) => return self.failed(e),
        };
        {
            let mut o = self.open.borrow_mut();
            o.file = Some(file);
            o.number = number;
            o.len = len;
        }
        if old != 0 && old != number {
            // The old manifest is no longer named by CURRENT; nothing reads it.
            let _ = self.storage.remove(&self.dir.join(super::file_name(old))).await;
        }
        Ok(())
    }

    /// Replaces CURRENT atomically: write a temporary file, sync it, rename, sync the directory.
    async fn write_current(&self, number: u64) -> Result<()> {
        let tmp = self.dir.join("CURRENT.tmp");
        let _ = self.storage.remove(&tmp).await;
        let f = self.storage.create(&tmp).await?;
        f.write_at(super::encode_current(number), 0).await?;
        f.sync_data().await?;
        self.storage.rename(&tmp, &self.dir.join(super::CURRENT_FILE)).await?;
        self.storage.sync_dir(&self.dir).await?;
        Ok(())
    }
}
