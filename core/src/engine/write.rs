//! The write path: streamed puts into the partition's active Syrup, and the small mutations
//! (delete, delete-range, same-partition copy and rename).
//!
//! Invariants:
//! - A put reserves a contiguous extent of its Syrup before writing, so concurrent puts never
//!   interleave chunks; an extent is at most `EXTENT_BYTES_MAX`, so a large or unsized body gets
//!   several SegmentRefs and an abandoned put leaves a bounded hole.
//! - Bytes are copied once, from the caller's buffers into a write buffer of at most
//!   `WRITE_BUFFER_BYTES`; nothing buffers a whole Candy unless it is inline-sized.
//! - While a put writes to a Syrup, the Syrup counts as referenced (GC keeps it).

use std::{cell::Cell, rc::Rc};

use bytes::Bytes;

use super::{
    commit::{Op, Pending},
    Engine,
};
use crate::{
    condition::WriteCondition,
    error::{Error, Result},
    hlc::Hlc,
    limits,
    locator::{stored_len, CandyBody, CandyLocator, Kind, Part, SegmentRef},
    manifest::Change,
    storage::{Storage, StorageFile},
    syrup::{ChunkEncoder, SyrupHeader},
    types::{prefix_end, validate_key, RangeTombstone, SyrupId},
};

/// A body streamed into a put, piece by piece.
#[expect(async_fn_in_trait, reason = "thread-per-core: bodies are !Send by design")]
pub trait BodyStream {
    /// The next piece, or `None` at the end.
    ///
    /// # Errors
    /// Whatever the source reports; the put fails with it and nothing is committed.
    async fn next_piece(&mut self) -> Result<Option<Bytes>>;

    /// Metadata the sender attached at the end of the body (a digest it computed while
    /// streaming), taken once `next_piece` has returned `None`: committed with the object,
    /// added to its user metadata (a repeated key replaces).
    fn take_trailer(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A body made of pieces already in memory.
#[derive(Debug, Default)]
pub struct SliceBody {
    pieces: std::collections::VecDeque<Bytes>,
}

impl SliceBody {
    /// One piece.
    pub fn new(data: impl Into<Bytes>) -> Self {
        Self { pieces: [data.into()].into_iter().collect() }
    }

    /// Several pieces, in order.
    pub fn pieces(pieces: impl IntoIterator<Item = Bytes>) -> Self {
        Self { pieces: pieces.into_iter().collect() }
    }
}

impl BodyStream for SliceBody {
    async fn next_piece(&mut self) -> Result<Option<Bytes>> {
        Ok(self.pieces.pop_front())
    }
}

/// Metadata of a put.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// MIME type.
    pub content_type: String,
    /// User metadata.
    pub user_meta: Vec<(String, String)>,
    /// The exact body size when known (lets small bodies go inline at once and sizes extents);
    /// the body must then have exactly this many bytes.
    pub size: Option<u64>,
    /// Store only if the key's current state meets this (checked when the put joins the commit
    /// queue, after its body is stored: a refused put commits nothing, and its bytes are
    /// garbage the Box-global GC reclaims).
    pub condition: Option<WriteCondition>,
}

/// Metadata that replaces an object's own: a copy's or rename's target with S3's REPLACE
/// directive, or a set-meta. Both fields replace (an empty one with nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaReplace {
    /// MIME type.
    pub content_type: String,
    /// User metadata.
    pub user_meta: Vec<(String, String)>,
}

impl MetaReplace {
    /// Checks the limits a put's metadata keeps.
    ///
    /// # Errors
    /// As a put's metadata.
    pub fn validate(&self) -> Result<()> {
        validate_meta_fields(&self.content_type, &self.user_meta)
    }

    /// Writes the replacement into `locator`.
    pub(crate) fn apply(&self, locator: &mut CandyLocator) {
        locator.content_type.clone_from(&self.content_type);
        locator.user_meta.clone_from(&self.user_meta);
    }
}

/// What a copy, rename or relayed put asks of its target key and does to its metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Only if the target key meets this (`None`: always).
    pub condition: Option<WriteCondition>,
    /// The target's metadata instead of the source's (`None`: kept).
    pub replace: Option<MetaReplace>,
}

impl CopyOptions {
    /// Only if the target meets `condition`, metadata kept.
    pub fn when(condition: Option<WriteCondition>) -> Self {
        CopyOptions { condition, replace: None }
    }

    /// Validates the replacement, if any.
    pub(crate) fn validate(&self) -> Result<()> {
        self.replace.as_ref().map_or(Ok(()), MetaReplace::validate)
    }

    /// Checks the condition on `key` of `engine` and applies the replacement to `locator`: the
    /// synchronous step a target's commit runs.
    pub(crate) fn admit<S: Storage>(&self, engine: &Engine<S>, key: &[u8], locator: &mut CandyLocator) -> Result<()> {
        engine.check_condition(key, self.condition.as_ref())?;
        if let Some(r) = &self.replace {
            r.apply(locator);
        }
        Ok(())
    }
}

/// The reply to a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutReply {
    /// Bytes stored.
    pub size: u64,
    /// CRC-32 of the whole Candy.
    pub checksum: u32,
    /// The version's stamp.
    pub hlc: Hlc,
}

/// A stored body: inline bytes or one Part. Until it is dropped, the Syrups it wrote count as
/// referenced, so the caller drops it only once a commit or manifest edit references the Part.
pub(crate) struct StoredBody<S: Storage> {
    pub(crate) body: CandyBody,
    pub(crate) size: u64,
    pub(crate) checksum: u32,
    pub(crate) writers: Vec<WriterGuard<S>>,
}

/// Keeps a Syrup referenced while a put writes to it.
pub(crate) struct WriterGuard<S: Storage> {
    engine: Engine<S>,
    syrup: SyrupId,
}

impl<S: Storage> Drop for WriterGuard<S> {
    fn drop(&mut self) {
        self.engine.inner.syrups.writer_done(self.syrup);
    }
}

/// Adds `extra` to `meta` (a trailer, or the metadata of an upload's completion): an entry whose
/// name `meta` has replaces it.
pub(crate) fn merge_meta(meta: &mut Vec<(String, String)>, extra: Vec<(String, String)>) {
    for (k, v) in extra {
        meta.retain(|(name, _)| *name != k);
        meta.push((k, v));
    }
}

pub(crate) fn validate_meta(opts: &PutOptions) -> Result<()> {
    validate_meta_fields(&opts.content_type, &opts.user_meta)
}

fn validate_meta_fields(content_type: &str, user_meta: &[(String, String)]) -> Result<()> {
    if content_type.len() > limits::CONTENT_TYPE_BYTES_MAX {
        return Err(Error::LimitExceeded {
            limit: "content type length",
            value: content_type.len() as u64,
            max: limits::CONTENT_TYPE_BYTES_MAX as u64,
        });
    }
    let meta: usize = user_meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    if meta > limits::USER_META_BYTES_MAX || user_meta.len() > usize::from(u16::MAX) {
        return Err(Error::LimitExceeded {
            limit: "user metadata bytes",
            value: meta as u64,
            max: limits::USER_META_BYTES_MAX as u64,
        });
    }
    if user_meta.iter().any(|(k, _)| k.is_empty() || k.len() > usize::from(u16::MAX)) {
        return Err(Error::invalid("user_meta", "keys must be non-empty"));
    }
    Ok(())
}

impl<S: Storage> Engine<S> {
    /// Stores a Candy under `key`, streaming its body into the active Syrup (or inline when
    /// small), and returns once it is durable.
    ///
    /// # Errors
    /// `InvalidArgument`/`LimitExceeded` for a bad key or metadata, `Busy` when overloaded,
    /// `Body` when the body fails or does not match `opts.size`, `Io` (and `PreviousIo` after).
    pub async fn put<B: BodyStream>(&self, key: &[u8], mut opts: PutOptions, body: B) -> Result<PutReply> {
        validate_key(key)?;
        validate_meta(&opts)?;
        self.check_writable()?;
        // A condition already broken fails before the body is stored; it is checked again, for
        // good, when the put joins the queue.
        self.check_condition(key, opts.condition.as_ref())?;
        let condition = opts.condition.take();
        let mut body = body;
        let stored = self.store_body(&mut body, opts.size, true).await?;
        merge_meta(&mut opts.user_meta, body.take_trailer());
        validate_meta(&opts)?;
        let writers = stored.writers;
        let locator = self.put_locator(opts, stored.size, stored.checksum, stored.body);
        let (size, checksum) = (locator.size, locator.checksum);
        let hlc = self
            .commit_with(|e| {
                e.check_condition(key, condition.as_ref())?;
                // Queued, the Part is referenced by the commit queue; the writers may go.
                drop(writers);
                Ok((vec![Op::set(key, locator)], ()))
            })
            .await?
            .1;
        Ok(PutReply { size, checksum, hlc })
    }

    fn put_locator(&self, opts: PutOptions, size: u64, checksum: u32, body: CandyBody) -> CandyLocator {
        CandyLocator {
            hlc: Hlc::ZERO,
            kind: Kind::Put,
            version_id: None,
            content_type: opts.content_type,
            user_meta: opts.user_meta,
            created_ms: self.now_ms(),
            size,
            checksum,
            body,
        }
    }

    /// The synchronous half of a put whose whole body is `data` and small enough to live in its
    /// locator: validated, stamped and queued for the group commit, without waiting. `Ok(None)`
    /// when `data` is over the inline limit (the caller puts it with [`Engine::put`]).
    ///
    /// # Errors
    /// As [`Engine::put`], except I/O, which the returned [`Pending`] reports.
    pub fn admit_put_inline(&self, key: &[u8], mut opts: PutOptions, data: &[u8]) -> Result<Option<Pending<PutReply>>> {
        if data.len() > self.inner.config.inline_bytes_max {
            return Ok(None);
        }
        validate_key(key)?;
        validate_meta(&opts)?;
        check_size(opts.size, data.len() as u64)?;
        let (size, checksum) = (data.len() as u64, crc32fast::hash(data));
        let condition = opts.condition.take();
        let locator = self.put_locator(opts, size, checksum, CandyBody::Inline(data.to_vec()));
        let pending = self.admit_with(|e| {
            e.check_condition(key, condition.as_ref())?;
            Ok((vec![Op::set(key, locator)], ()))
        })?;
        Ok(Some(pending.map(|((), hlc)| PutReply { size, checksum, hlc })))
    }

    /// Deletes `key` with a point tombstone; deleting an absent key succeeds.
    ///
    /// # Errors
    /// A bad key, `Busy`, or an I/O failure.
    pub async fn delete(&self, key: &[u8]) -> Result<Hlc> {
        self.admit_delete(key)?.durable().await
    }

    /// The synchronous half of [`Engine::delete`]: the tombstone is stamped and queued for the
    /// group commit; the returned [`Pending`] resolves once it is durable.
    ///
    /// # Errors
    /// A bad key, `Busy`; I/O through the [`Pending`].
    pub fn admit_delete(&self, key: &[u8]) -> Result<Pending<Hlc>> {
        self.admit_delete_if(key, None)
    }

    /// Deletes `key` only if it meets `condition` (`None`: always).
    ///
    /// # Errors
    /// As [`Engine::delete`]; [`Error::PreconditionFailed`] when the condition is not met.
    pub async fn delete_if(&self, key: &[u8], condition: Option<WriteCondition>) -> Result<Hlc> {
        self.admit_delete_if(key, condition)?.durable().await
    }

    /// The synchronous half of [`Engine::delete_if`].
    ///
    /// # Errors
    /// As [`Engine::delete_if`]; I/O through the [`Pending`].
    pub fn admit_delete_if(&self, key: &[u8], condition: Option<WriteCondition>) -> Result<Pending<Hlc>> {
        validate_key(key)?;
        let pending = self.admit_with(|e| {
            e.check_condition(key, condition.as_ref())?;
            Ok((vec![Op::set(key, CandyLocator::tombstone(Hlc::ZERO))], ()))
        })?;
        Ok(pending.map(|((), hlc)| hlc))
    }

    /// Checks `condition` on `key`'s current version (queued mutations included).
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`]; a lookup's failure.
    pub(crate) fn check_condition(&self, key: &[u8], condition: Option<&WriteCondition>) -> Result<()> {
        let Some(condition) = condition else { return Ok(()) };
        let current = self.current_locator(key)?;
        let live = current.as_ref().map(|l| crate::condition::Current {
            version: l.version(),
            modified_ms: l.modified_ms(),
            meta: &l.user_meta,
        });
        if condition.holds(live) {
            Ok(())
        } else {
            Err(Error::PreconditionFailed { condition: condition.clone(), current: current.map(|l| l.version()) })
        }
    }

    /// Replaces the metadata of `key`'s live object in place: a new version with the same Parts
    /// (no byte moves; one log record), only if the key meets `condition`.
    ///
    /// # Errors
    /// `NotFound` when the key holds no live object; [`Error::PreconditionFailed`]; metadata over
    /// its limits; `Busy`; I/O failures.
    pub async fn set_meta(
        &self,
        key: &[u8],
        replace: &MetaReplace,
        condition: Option<&WriteCondition>,
    ) -> Result<PutReply> {
        validate_key(key)?;
        replace.validate()?;
        self.check_writable()?;
        let ((size, checksum), hlc) = self
            .commit_with(|e| {
                e.check_condition(key, condition)?;
                let mut l = e.current_locator(key)?.ok_or(Error::NotFound)?;
                replace.apply(&mut l);
                let reply = (l.size, l.checksum);
                Ok((vec![Op::set(key, l)], reply))
            })
            .await?;
        Ok(PutReply { size, checksum, hlc })
    }

    /// Deletes every key in `[start, end)` with one range tombstone; an empty `end` means "to the
    /// end of the key space".
    ///
    /// # Errors
    /// `InvalidArgument` when `end` is not after `start`; `Busy`; an I/O failure.
    pub async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<Hlc> {
        if !end.is_empty() && end <= start {
            return Err(Error::invalid("end", "must be greater than start"));
        }
        if start.len() > limits::KEY_BYTES_MAX || end.len() > limits::KEY_BYTES_MAX {
            return Err(Error::invalid("range", "bounds are keys of at most 1 KiB"));
        }
        // A versioned Box's range deletes stop at its version space: versions are deleted one by
        // one.
        let end = if self.inner.versioning.get() != crate::keyspace::Versioning::Off
            && (end.is_empty() || end > crate::keyspace::USER_SPACE_END)
        {
            crate::keyspace::USER_SPACE_END
        } else {
            end
        };
        let rt = RangeTombstone { start: start.to_vec(), end: end.to_vec(), hlc: Hlc::ZERO };
        self.commit(vec![Op::DeleteRange(rt)]).await
    }

    /// Deletes every key that starts with `prefix` (one range tombstone).
    ///
    /// # Errors
    /// As [`Engine::delete_range`].
    pub async fn delete_prefix(&self, prefix: &[u8]) -> Result<Hlc> {
        let end = prefix_end(prefix).unwrap_or_default();
        self.delete_range(prefix, &end).await
    }

    /// Copies `source_key` to `target_key` in this partition without moving bytes: the new
    /// locator reuses the source's Parts.
    ///
    /// # Errors
    /// `NotFound` when the source is absent; a bad key; `Busy`; an I/O failure.
    pub async fn copy(&self, source_key: &[u8], target_key: &[u8]) -> Result<PutReply> {
        self.copy_or_rename_if(source_key, target_key, false, &CopyOptions::default()).await
    }

    /// Renames `source_key` to `target_key` in this partition: the new locator and the source's
    /// tombstone are one WAL record, so after a crash either both or neither happened.
    ///
    /// # Errors
    /// As [`Engine::copy`].
    pub async fn rename(&self, source_key: &[u8], target_key: &[u8]) -> Result<PutReply> {
        self.copy_or_rename_if(source_key, target_key, true, &CopyOptions::default()).await
    }

    /// [`Engine::copy`] or [`Engine::rename`] only if the target key meets `opts.condition`, with
    /// `opts.replace` as the target's metadata.
    ///
    /// # Errors
    /// As [`Engine::copy`]; [`Error::PreconditionFailed`] when the condition is not met.
    pub async fn copy_or_rename_if(
        &self,
        source_key: &[u8],
        target_key: &[u8],
        rename: bool,
        opts: &CopyOptions,
    ) -> Result<PutReply> {
        validate_key(source_key)?;
        validate_key(target_key)?;
        opts.validate()?;
        if rename && source_key == target_key {
            return Err(Error::invalid("target_key", "equals the source key"));
        }
        if !rename {
            // A copy must not multiply damage silently: the source's bytes are checked first
            // (within `copy_verify_bytes_max`; a rename moves the same bytes, no new copy).
            if let Some((_, l)) = self.lookup(source_key)? {
                self.verify_candy(&l).await?;
            }
        }
        let ((size, checksum), hlc) = self
            .commit_with(|e| {
                if rename {
                    e.check_rename_unclaimed(source_key)?;
                }
                let mut source = e.current_locator(source_key)?.ok_or(Error::NotFound)?;
                opts.admit(e, target_key, &mut source)?;
                let reply = (source.size, source.checksum);
                let mut ops = vec![Op::set(target_key, source)];
                if rename {
                    ops.push(Op::set(source_key, CandyLocator::tombstone(Hlc::ZERO)));
                }
                Ok((ops, reply))
            })
            .await?;
        Ok(PutReply { size, checksum, hlc })
    }

    /// Writes a body to Syrups (or keeps it inline when `inline_ok` and it is small enough).
    pub(crate) async fn store_body<B: BodyStream>(
        &self,
        body: &mut B,
        size: Option<u64>,
        inline_ok: bool,
    ) -> Result<StoredBody<S>> {
        let inline_max = if inline_ok { self.inner.config.inline_bytes_max } else { 0 };
        let mut hasher = crc32fast::Hasher::new();
        // Gather a bounded head first: most small puts end here with no Syrup write, and a body of
        // unknown size that ends within the probe gets an extent of exactly its size.
        let probe = match size {
            Some(s) if inline_ok && s <= inline_max as u64 => inline_max,
            Some(_) => 0,
            None => inline_max.max(limits::UNSIZED_PROBE_BYTES),
        };
        let mut head: Vec<u8> = Vec::new();
        let mut pending: Option<Bytes> = None;
        let mut head_ended = false;
        if probe > 0 {
            loop {
                match body.next_piece().await? {
                    None => {
                        head_ended = true;
                        break;
                    }
                    Some(p) if head.len() + p.len() <= probe => head.extend_from_slice(&p),
                    Some(p) => {
                        pending = Some(p);
                        break;
                    }
                }
            }
        }
        if head_ended {
            check_size(size, head.len() as u64)?;
            if head.len() <= inline_max {
                hasher.update(&head);
                let n = head.len() as u64;
                return Ok(StoredBody {
                    body: CandyBody::Inline(head),
                    size: n,
                    checksum: hasher.finalize(),
                    writers: Vec::new(),
                });
            }
        }
        let size = if head_ended { Some(head.len() as u64) } else { size };
        let chunk = self.inner.config.chunk_bytes;
        let mut segments = Vec::new();
        let mut total = 0u64;
        let mut unsized_extent = limits::EXTENT_BYTES_FIRST;
        let mut carry: Option<Bytes> = if head.is_empty() { pending.take() } else { Some(Bytes::from(head)) };
        let mut after_carry = pending;
        let mut ended = false;
        let mut guards: Vec<WriterGuard<S>> = Vec::new();
        let mut unsynced = 0u64;
        let early_sync = Rc::new(Cell::new(false));
        while !ended {
            let want = match size {
                Some(s) => {
                    if s == total {
                        break;
                    }
                    (s - total).min(limits::EXTENT_BYTES_MAX)
                }
                None => {
                    let w = unsized_extent;
                    unsized_extent = (unsized_extent * 2).min(limits::EXTENT_BYTES_MAX);
                    w
                }
            };
            // Do not reserve an extent for a body that has already ended.
            if carry.is_none() {
                carry = match after_carry.take() {
                    Some(p) => Some(p),
                    None => body.next_piece().await?,
                };
                if carry.is_none() {
                    break;
                }
            }
            let (syrup, file, offset) = self.reserve(stored_len(want, chunk)).await?;
            guards.push(WriterGuard { engine: self.clone(), syrup });
            let mut enc = ChunkEncoder::new(offset, chunk);
            let mut buf = self.inner.syrups.take_buffer();
            let mut buf_at = offset;
            loop {
                let piece = match carry.take() {
                    Some(p) => p,
                    None => match after_carry.take() {
                        Some(p) => p,
                        None => match body.next_piece().await? {
                            Some(p) => p,
                            None => {
                                ended = true;
                                break;
                            }
                        },
                    },
                };
                let took = enc.push(&piece, want, &mut buf);
                hasher.update(piece.get(..took).unwrap_or_default());
                if took < piece.len() {
                    carry = Some(piece.slice(took..));
                }
                if buf.len() >= limits::WRITE_BUFFER_BYTES {
                    let n = buf.len() as u64;
                    buf = self.write_syrup(&file, syrup, buf, buf_at).await?;
                    buf.clear();
                    buf_at += n;
                    unsynced += n;
                    if unsynced >= limits::EARLY_SYNC_BYTES && !early_sync.get() {
                        unsynced = 0;
                        self.start_early_sync(&file, &early_sync);
                    }
                }
                if enc.payload_bytes == want {
                    break;
                }
            }
            enc.finish(&mut buf);
            if !buf.is_empty() {
                buf = self.write_syrup(&file, syrup, buf, buf_at).await?;
            }
            self.inner.syrups.return_buffer(buf);
            if enc.payload_bytes > 0 {
                segments.push(SegmentRef { syrup, offset, length: enc.payload_bytes });
                total += enc.payload_bytes;
            }
            if segments.len() > limits::PART_SEGMENTS_MAX {
                return Err(Error::LimitExceeded {
                    limit: "segments per part",
                    value: segments.len() as u64,
                    max: limits::PART_SEGMENTS_MAX as u64,
                });
            }
        }
        if carry.is_some() || after_carry.is_some() {
            return Err(Error::Body(format!("body is longer than its declared size {}", size.unwrap_or(0))));
        }
        if size.is_some() && body.next_piece().await?.is_some_and(|p| !p.is_empty()) {
            return Err(Error::Body(format!("body is longer than its declared size {}", size.unwrap_or(0))));
        }
        check_size(size, total)?;
        let checksum = hasher.finalize();
        let parts =
            if total == 0 { Vec::new() } else { vec![Part { length: total, chunk_size: chunk, checksum, segments }] };
        Ok(StoredBody { body: CandyBody::Parts(parts), size: total, checksum, writers: guards })
    }

    /// Starts an fdatasync of `file` in the background (at most one per put at a time, `running`):
    /// the device writes back what this put has written so far while the body keeps arriving.
    /// A failure fails the engine like any Syrup sync failure (it must not be lost: a later
    /// fdatasync would not report it again).
    fn start_early_sync(&self, file: &S::File, running: &Rc<Cell<bool>>) {
        running.set(true);
        let (engine, file, running) = (self.clone(), file.clone(), running.clone());
        drop(crate::runtime::spawn(async move {
            if let Err(e) = file.sync_data().await {
                let _: Result<()> = engine.fail(e);
            }
            running.set(false);
        }));
    }

    async fn write_syrup(&self, file: &S::File, syrup: SyrupId, buf: Vec<u8>, at: u64) -> Result<Vec<u8>> {
        match file.write_at(buf, at).await {
            Ok(b) => {
                self.inner.syrups.dirtied(syrup);
                Ok(b)
            }
            Err(e) => self.fail(e),
        }
    }

    /// Reserves `stored` bytes in the active Syrup, rolling to a new one when it is full.
    async fn reserve(&self, stored: u64) -> Result<(SyrupId, S::File, u64)> {
        let roll = self.inner.config.syrup_roll_bytes;
        loop {
            if let Some(r) = self.inner.syrups.reserve(stored, roll) {
                return Ok(r);
            }
            let _g = self.inner.syrups.roll_lock().lock().await;
            if self.inner.syrups.needs_roll(stored, roll) {
                self.roll_syrup().await?;
            }
        }
    }

    /// Creates a new Syrup, durably (file, header, directory entry, manifest), and makes it
    /// the active one.
    async fn roll_syrup(&self) -> Result<()> {
        let cfg = &self.inner.config;
        let now = self.now_ms();
        let id = {
            let last =
                self.inner.manifest.state().syrups.iter().next_back().copied().filter(|s| s.node() == cfg.node_id);
            let first = SyrupId::first_at(cfg.node_id, now);
            match last {
                Some(l) if l >= first => SyrupId(l.0 + 1),
                _ => first,
            }
        };
        let header = SyrupHeader { id, box_uid: cfg.box_uid, created_ms: now, partition: cfg.partition };
        let (id, file) = match self.inner.syrups.create(header).await {
            Ok(created) => created,
            Err(e) => return self.fail(e),
        };
        self.log_edit(vec![Change::SyrupCreated(id)]).await?;
        self.inner.syrups.activate(id, file, cfg.box_uid);
        Ok(())
    }
}

fn check_size(declared: Option<u64>, got: u64) -> Result<()> {
    match declared {
        Some(s) if s != got => Err(Error::Body(format!("body has {got} bytes, declared {s}"))),
        _ => Ok(()),
    }
}
