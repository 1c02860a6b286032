//! The locator relay (SPEC §7) and multipart uploads.
//!
//! Invariants:
//! - A zero-copy put writes a new locator that reuses the relayed Parts verbatim, only after
//!   proving every SegmentRef lies in a Syrup of this Box (its header says so), within the
//!   Syrup's durable length (the destination makes the Syrup durable, then reads its length), on
//!   real chunk boundaries (the first and last chunks verify at their offsets).
//! - A rename intent is durable in the manifest before prepare-rename returns.
//! - delete-if-HLC-equals deletes only the exact version named: a re-put source is never deleted.
//! - Multipart parts are durable (Syrup synced, manifest edit) before upload-part returns; the
//!   completed Candy is one WAL record; the upload is ended after it.

use bytes::Bytes;
use rand::Rng;

use super::{
    commit::Op,
    write::{merge_meta, validate_meta},
    CopyOptions, Engine, PutOptions, PutReply, WriteCondition,
};
use crate::{
    codec::Reader,
    error::{Error, ForgedLocator, Result},
    hlc::Hlc,
    limits,
    locator::{CandyBody, CandyLocator, Kind, Part, SegmentRef, CHUNK_TRAILER_BYTES},
    manifest::{Change, RenameIntent, Upload, UploadPart},
    storage::{Storage, StorageFile},
    syrup::{chunk_crc, SyrupHeader, SYRUP_HEADER_BYTES},
    types::{validate_key, SyrupId},
};

/// A part of an upload, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// Part number.
    pub number: u32,
    /// Bytes.
    pub size: u64,
    /// CRC-32 of the part.
    pub checksum: u32,
    /// Upload time.
    pub created_ms: u64,
}

/// An in-flight upload, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// Upload id.
    pub id: u64,
    /// Destination key.
    pub key: Vec<u8>,
    /// Creation time.
    pub created_ms: u64,
    /// Parts uploaded so far.
    pub parts: usize,
}

impl<S: Storage> Engine<S> {
    /// The live locator of `key` and its exact encoded bytes (what a client relays), after
    /// checking the Candy's bytes when it is at most `copy_verify_bytes_max` large.
    ///
    /// # Errors
    /// `NotFound` when absent; `ChecksumMismatch` for damaged bytes.
    pub async fn get_locator(&self, key: &[u8]) -> Result<(CandyLocator, Bytes)> {
        validate_key(key)?;
        let (bytes, l) = self.lookup(key)?.ok_or(Error::NotFound)?;
        // The first step of a copy across partitions: damaged bytes are not handed on.
        self.verify_candy(&l).await?;
        Ok((l, bytes))
    }

    /// Records a durable rename intent for `source_key` → `target_key` (in `target_partition`)
    /// and returns it with the source's locator bytes.
    ///
    /// # Errors
    /// `NotFound` when the source is absent; I/O failures.
    pub async fn prepare_rename(
        &self,
        source_key: &[u8],
        target_key: &[u8],
        target_partition: u16,
    ) -> Result<(RenameIntent, Bytes)> {
        validate_key(source_key)?;
        validate_key(target_key)?;
        self.check_writable()?;
        let (bytes, l) = self.lookup(source_key)?.ok_or(Error::NotFound)?;
        // The claim is taken in the same synchronous step as the checks below, and held until
        // the intent is durable (or the edit failed): two renames of one source can never both
        // pass, whichever of this path or a same-partition rename comes first.
        if self.current_locator(source_key)?.map(|c| c.hlc) != Some(l.hlc) {
            return Err(Error::Conflict("the source is being changed by another request; retry".into()));
        }
        let _claim = RenameClaim::take(self, source_key)?;
        let token = self.fresh_token();
        let intent = RenameIntent {
            token,
            source_key: source_key.to_vec(),
            source_hlc: l.hlc,
            target_key: target_key.to_vec(),
            target_partition,
            created_ms: self.now_ms(),
        };
        self.log_edit(vec![Change::Intent(intent.clone())]).await?;
        Ok((intent, bytes))
    }

    /// Refuses a rename of `source_key` while another rename of it is pending (a durable
    /// intent, or a prepare-rename that has claimed it and is writing its intent).
    ///
    /// # Errors
    /// `Conflict`.
    pub(crate) fn check_rename_unclaimed(&self, source_key: &[u8]) -> Result<()> {
        let st = self.inner.state.borrow();
        if st.rename_claims.contains(source_key)
            || self.inner.manifest.state().intents.values().any(|i| i.source_key == source_key)
        {
            return Err(Error::Conflict("another rename of this source is in progress".into()));
        }
        Ok(())
    }

    /// A rename token no live intent has (a repeat would make two renames share a marker).
    fn fresh_token(&self) -> u128 {
        let mut st = self.inner.state.borrow_mut();
        loop {
            let token: u128 = st.rng.gen();
            if token != 0 && !self.inner.manifest.state().intents.contains_key(&token) {
                return token;
            }
        }
    }

    /// An upload id no live upload has (a repeat would replace that upload's key and parts).
    fn fresh_upload_id(&self) -> u64 {
        let mut st = self.inner.state.borrow_mut();
        loop {
            let id = st.rng.gen::<u64>() | 1;
            if !self.inner.manifest.state().uploads.contains_key(&id) {
                return id;
            }
        }
    }

    /// Pending rename intents.
    pub fn rename_intents(&self) -> Vec<RenameIntent> {
        self.inner.manifest.state().intents.values().cloned().collect()
    }

    /// Clears a rename intent (finalized or abandoned). Clearing an unknown token succeeds.
    ///
    /// # Errors
    /// I/O failures.
    pub async fn clear_rename_intent(&self, token: u128) -> Result<()> {
        if !self.inner.manifest.state().intents.contains_key(&token) {
            return Ok(());
        }
        self.log_edit(vec![Change::IntentCleared(token)]).await
    }

    /// Deletes `key` only if its live version is stamped exactly `hlc`.
    ///
    /// # Returns
    /// `true` when it deleted, `false` when the key is absent or holds another version.
    ///
    /// # Errors
    /// `Busy`, I/O failures.
    pub async fn delete_if_hlc_equals(&self, key: &[u8], hlc: Hlc) -> Result<bool> {
        validate_key(key)?;
        let (deleted, _) = self
            .commit_with(|e| {
                let live = e.current_locator(key)?;
                if live.is_some_and(|l| l.hlc == hlc) {
                    Ok((vec![Op::set(key, CandyLocator::tombstone(Hlc::ZERO))], true))
                } else {
                    Ok((Vec::new(), false))
                }
            })
            .await?;
        Ok(deleted)
    }

    /// Writes a relayed locator's Parts under `key` after verifying them (zero-copy: no byte of
    /// the Candy moves).
    ///
    /// # Errors
    /// `Forged` when the locator does not decode, is not live, or a SegmentRef escapes this Box
    /// or the durable bytes; `Busy`; I/O failures.
    pub async fn zero_copy_put(&self, key: &[u8], locator_bytes: &[u8], opts: &CopyOptions) -> Result<PutReply> {
        validate_key(key)?;
        opts.validate()?;
        self.check_writable()?;
        // A condition already broken fails before any Syrup is opened; it is checked again, for
        // good, when the put joins the queue.
        self.check_condition(key, opts.condition.as_ref())?;
        let mut source = CandyLocator::decode(locator_bytes).map_err(ForgedLocator::Undecodable)?;
        if source.kind != Kind::Put {
            return Err(ForgedLocator::NotLive.into());
        }
        if let CandyBody::Parts(parts) = &source.body {
            // Each Syrup is opened, checked and made durable once, however many segments of the
            // Candy it holds (a 1 GiB Candy has 16 or more): the cost grows with the Syrups
            // named, not with the Candy's size.
            let mut syrups: Vec<(SyrupId, S::File, u64)> = Vec::new();
            for p in parts {
                for s in &p.segments {
                    let known = syrups.iter().find(|(id, ..)| *id == s.syrup).map(|(_, f, d)| (f.clone(), *d));
                    let (file, durable) = match known {
                        Some(k) => k,
                        None => {
                            let (f, d) = self.durable_syrup(s.syrup).await?;
                            syrups.push((s.syrup, f.clone(), d));
                            (f, d)
                        }
                    };
                    verify_segment(&file, durable, p, s).await?;
                }
            }
        }
        let (size, checksum) = (source.size, source.checksum);
        let hlc = self
            .commit_with(|e| {
                opts.admit(e, key, &mut source)?;
                Ok((vec![Op::set(key, source)], ()))
            })
            .await?
            .1;
        Ok(PutReply { size, checksum, hlc })
    }

    /// Writes `locator` under `key`: a copy of a Candy that a partition of this Box on this node
    /// has committed (the node runs a copy or rename itself, and the locator never left it). Its
    /// Parts were durable before their source's commit (every commit syncs the Syrups its
    /// mutations point into), so none of the checks of a relayed locator is needed: no Syrup is
    /// opened, read or synced, and the copy costs one log record.
    ///
    /// # Errors
    /// `InvalidArgument` for a tombstone; `Busy`; I/O failures.
    pub async fn put_committed_copy(
        &self,
        key: &[u8],
        mut locator: CandyLocator,
        opts: &CopyOptions,
    ) -> Result<PutReply> {
        validate_key(key)?;
        opts.validate()?;
        self.check_writable()?;
        if locator.kind != Kind::Put {
            return Err(Error::invalid("locator", "a copy needs a live Candy"));
        }
        let (size, checksum) = (locator.size, locator.checksum);
        let hlc = self
            .commit_with(|e| {
                opts.admit(e, key, &mut locator)?;
                Ok((vec![Op::set(key, locator)], ()))
            })
            .await?
            .1;
        Ok(PutReply { size, checksum, hlc })
    }

    /// Renames `source_key` of this partition to `target_key` of `target`, another partition of
    /// this Box that commits through the same shard commit log: the target's new locator (the
    /// source's Parts, no byte moved) and the source's tombstone are sections of one log record,
    /// so after a crash both happened or neither — no rename intent, no marker. The check that
    /// the source is live and unclaimed, both stamps and both queue entries are one synchronous
    /// step.
    ///
    /// # Errors
    /// `InvalidArgument` when `target` is not on this partition's log or not of this Box;
    /// `NotFound` when the source is absent; `Conflict` when a rename holds the source; `Busy`;
    /// I/O failures.
    pub async fn rename_to(
        &self,
        source_key: &[u8],
        target: &Engine<S>,
        target_key: &[u8],
        opts: &CopyOptions,
    ) -> Result<PutReply> {
        validate_key(source_key)?;
        validate_key(target_key)?;
        opts.validate()?;
        if std::rc::Rc::ptr_eq(&self.inner, &target.inner) {
            return self.copy_or_rename_if(source_key, target_key, true, opts).await;
        }
        if !self.inner.log.same_log(&target.inner.log) {
            return Err(Error::invalid("target", "is not on this partition's commit log"));
        }
        if target.inner.config.box_uid != self.inner.config.box_uid {
            return Err(Error::invalid("target", "is a partition of another Box"));
        }
        self.check_writable()?;
        target.check_writable()?;
        self.check_rename_unclaimed(source_key)?;
        let mut source = self.current_locator(source_key)?.ok_or(Error::NotFound)?;
        // In the same synchronous step as both queue entries: nothing can reach the target's
        // queue between the check and the joint record.
        opts.admit(target, target_key, &mut source)?;
        let (size, checksum) = (source.size, source.checksum);
        let source_ops = self.prepare_versions(vec![Op::set(source_key, CandyLocator::tombstone(Hlc::ZERO))])?;
        let target_ops = target.prepare_versions(vec![Op::set(target_key, source)])?;
        let (done, hlc) = self.queue_joint(source_ops, target, target_ops);
        match done.await {
            Ok(r) => r?,
            Err(_) => return Err(Error::PreviousIo),
        }
        Ok(PutReply { size, checksum, hlc })
    }

    /// Opens Syrup `id` of this Box by name, checks its header, makes it durable and returns it
    /// with its durable length.
    async fn durable_syrup(&self, id: SyrupId) -> Result<(S::File, u64)> {
        // Open by name every time: a cached handle would still read a Syrup that its creator has
        // deleted since, and the new locator would then dangle.
        let path = self.inner.config.syrup_dir.join(id.file_name());
        let file = match self.inner.storage.open(&path).await {
            Ok(f) => f,
            Err(e) if e.is_not_found() => return Err(ForgedLocator::UnknownSyrup { syrup: id.0 }.into()),
            Err(e) => return Err(e.into()),
        };
        self.inner.syrups.set_file(id, file.clone());
        let known = self.inner.syrups.verified(id);
        let box_uid = match known {
            Some(b) => b,
            None => {
                let bytes = match file.read_at(0, SYRUP_HEADER_BYTES as usize).await {
                    Ok(b) => b,
                    Err(_) => return Err(ForgedLocator::UnknownSyrup { syrup: id.0 }.into()),
                };
                let h = SyrupHeader::decode(&bytes).map_err(|_| ForgedLocator::UnknownSyrup { syrup: id.0 })?;
                if h.id != id {
                    return Err(ForgedLocator::UnknownSyrup { syrup: id.0 }.into());
                }
                self.inner.syrups.set_verified(id, h.box_uid);
                h.box_uid
            }
        };
        if box_uid != self.inner.config.box_uid {
            return Err(ForgedLocator::OtherBox { syrup: id.0 }.into());
        }
        // Every byte written before this length was read becomes durable with the sync below.
        let durable = file.len().await?;
        if let Err(e) = file.sync_data().await {
            return self.fail(e);
        }
        Ok((file, durable))
    }

    /// The Syrups this partition references, for publication (SPEC §7.4).
    pub fn published_refs(&self) -> std::collections::BTreeSet<SyrupId> {
        self.referenced_syrups()
    }

    /// Starts a multipart upload for `key`.
    ///
    /// # Errors
    /// A bad key or metadata; I/O failures.
    pub async fn create_upload(&self, key: &[u8], opts: PutOptions) -> Result<u64> {
        validate_key(key)?;
        validate_meta(&opts)?;
        self.check_writable()?;
        let id = self.fresh_upload_id();
        self.log_edit(vec![Change::UploadCreated {
            id,
            key: key.to_vec(),
            content_type: opts.content_type,
            user_meta: opts.user_meta,
            created_ms: self.now_ms(),
        }])
        .await?;
        Ok(id)
    }

    /// Uploads part `number` (1-based) of an upload; a second upload of a number replaces it.
    ///
    /// # Errors
    /// `NotFound` for an unknown upload; `InvalidArgument` for a bad part number; body errors; I/O.
    pub async fn upload_part<B: super::BodyStream>(
        &self,
        upload: u64,
        number: u32,
        size: Option<u64>,
        body: B,
    ) -> Result<PartInfo> {
        if number == 0 || number > limits::MULTIPART_PARTS_MAX {
            return Err(Error::invalid("part_number", format!("must lie in 1..={}", limits::MULTIPART_PARTS_MAX)));
        }
        if !self.inner.manifest.state().uploads.contains_key(&upload) {
            return Err(Error::NotFound);
        }
        self.check_writable()?;
        let mut body = body;
        let stored = self.store_body(&mut body, size, false).await?;
        if !body.take_trailer().is_empty() {
            return Err(Error::invalid(
                "trailer",
                "an upload part takes no metadata: attach it to complete-upload, which commits the object",
            ));
        }
        let part = match &stored.body {
            CandyBody::Parts(p) => p.first().cloned().unwrap_or(Part {
                length: 0,
                chunk_size: self.inner.config.chunk_bytes,
                checksum: stored.checksum,
                segments: Vec::new(),
            }),
            CandyBody::Inline(_) => return Err(Error::invalid("part", "parts are never inline")),
        };
        // The part's bytes must be durable before the manifest names them.
        let syrups: std::collections::BTreeSet<SyrupId> = part.segments.iter().map(|s| s.syrup).collect();
        for id in syrups {
            let f = self.inner.syrups.file(id).await?;
            if let Err(e) = f.sync_data().await {
                return self.fail(e);
            }
        }
        if !self.inner.manifest.state().uploads.contains_key(&upload) {
            return Err(Error::NotFound);
        }
        let created_ms = self.now_ms();
        let info = PartInfo { number, size: part.length, checksum: part.checksum, created_ms };
        self.log_edit(vec![Change::UploadPart { id: upload, number, part: UploadPart { part, created_ms } }]).await?;
        drop(stored);
        Ok(info)
    }

    /// Completes an upload from `parts` (strictly ascending part numbers): one Candy whose Parts
    /// are the uploaded parts, in order. Each part but the last must be at least the configured
    /// minimum.
    ///
    /// # Errors
    /// `NotFound` for an unknown upload; `InvalidArgument` naming the offending part;
    /// `LimitExceeded` for too many parts or a locator over the cap; `Busy`; I/O failures.
    pub async fn complete_upload(&self, upload: u64, parts: &[u32]) -> Result<PutReply> {
        self.complete_upload_with(upload, parts, Vec::new(), None).await
    }

    /// [`Engine::complete_upload`] with `extra_meta` added to the upload's metadata (a repeated
    /// name replaces; a digest of the whole object the sender computed), committed only if the
    /// key meets `condition`. A refused completion leaves the upload in place.
    ///
    /// # Errors
    /// As [`Engine::complete_upload`]; [`Error::PreconditionFailed`]; metadata over its limits.
    pub async fn complete_upload_with(
        &self,
        upload: u64,
        parts: &[u32],
        extra_meta: Vec<(String, String)>,
        condition: Option<&WriteCondition>,
    ) -> Result<PutReply> {
        let u: Upload = self.inner.manifest.state().uploads.get(&upload).cloned().ok_or(Error::NotFound)?;
        if parts.is_empty() {
            return Err(Error::invalid("parts", "at least one part is needed"));
        }
        if parts.len() > limits::MULTIPART_PARTS_MAX as usize {
            return Err(Error::LimitExceeded {
                limit: "parts per upload",
                value: parts.len() as u64,
                max: u64::from(limits::MULTIPART_PARTS_MAX),
            });
        }
        let mut chosen = Vec::with_capacity(parts.len());
        let mut prev = 0u32;
        for (i, n) in parts.iter().enumerate() {
            if *n <= prev {
                return Err(Error::invalid("parts", format!("part numbers must ascend: {n} after {prev}")));
            }
            prev = *n;
            let p = u.parts.get(n).ok_or_else(|| Error::invalid("parts", format!("part {n} was not uploaded")))?;
            if i + 1 < parts.len() && p.part.length < self.inner.config.multipart_part_bytes_min {
                return Err(Error::invalid(
                    "parts",
                    format!(
                        "part {n} has {} bytes; every part but the last needs at least {}",
                        p.part.length, self.inner.config.multipart_part_bytes_min
                    ),
                ));
            }
            chosen.push(p.part.clone());
        }
        let size: u64 = chosen.iter().map(|p| p.length).sum();
        let mut hasher = crc32fast::Hasher::new();
        for p in &chosen {
            hasher.combine(&crc32fast::Hasher::new_with_initial_len(p.checksum, p.length));
        }
        let checksum = hasher.finalize();
        let nonempty: Vec<Part> = chosen.into_iter().filter(|p| p.length > 0).collect();
        let mut user_meta = u.user_meta.clone();
        merge_meta(&mut user_meta, extra_meta);
        validate_meta(&PutOptions {
            content_type: u.content_type.clone(),
            user_meta: user_meta.clone(),
            ..PutOptions::default()
        })?;
        let locator = CandyLocator {
            hlc: Hlc::ZERO,
            kind: Kind::Put,
            version_id: None,
            content_type: u.content_type.clone(),
            user_meta,
            created_ms: self.now_ms(),
            size,
            checksum,
            body: CandyBody::Parts(nonempty),
        };
        let encoded = locator.encode().len();
        if encoded > limits::LOCATOR_BYTES_MAX {
            return Err(Error::LimitExceeded {
                limit: "locator bytes",
                value: encoded as u64,
                max: limits::LOCATOR_BYTES_MAX as u64,
            });
        }
        let hlc = self
            .commit_with(|e| {
                e.check_condition(&u.key, condition)?;
                Ok((vec![Op::set(&u.key, locator)], ()))
            })
            .await?
            .1;
        self.log_edit(vec![Change::UploadEnded(upload)]).await?;
        Ok(PutReply { size, checksum, hlc })
    }

    /// Aborts an upload; its bytes become garbage for GC.
    ///
    /// # Errors
    /// `NotFound` for an unknown upload; I/O failures.
    pub async fn abort_upload(&self, upload: u64) -> Result<()> {
        if !self.inner.manifest.state().uploads.contains_key(&upload) {
            return Err(Error::NotFound);
        }
        self.log_edit(vec![Change::UploadEnded(upload)]).await
    }

    /// In-flight uploads, by id.
    pub fn list_uploads(&self) -> Vec<UploadInfo> {
        self.inner
            .manifest
            .state()
            .uploads
            .values()
            .map(|u| UploadInfo { id: u.id, key: u.key.clone(), created_ms: u.created_ms, parts: u.parts.len() })
            .collect()
    }

    /// Parts of an upload, by number.
    ///
    /// # Errors
    /// `NotFound` for an unknown upload.
    pub fn list_parts(&self, upload: u64) -> Result<Vec<PartInfo>> {
        let manifest = self.inner.manifest.state();
        let u = manifest.uploads.get(&upload).ok_or(Error::NotFound)?;
        Ok(u.parts
            .iter()
            .map(|(n, p)| PartInfo {
                number: *n,
                size: p.part.length,
                checksum: p.part.checksum,
                created_ms: p.created_ms,
            })
            .collect())
    }

    /// Ends uploads older than the TTL.
    ///
    /// # Returns
    /// The ids expired.
    ///
    /// # Errors
    /// I/O failures.
    pub async fn expire_uploads(&self) -> Result<Vec<u64>> {
        let now = self.now_ms();
        let ttl = self.inner.config.upload_ttl_ms;
        let expired: Vec<u64> = self
            .inner
            .manifest
            .state()
            .uploads
            .values()
            .filter(|u| u.created_ms.saturating_add(ttl) <= now)
            .map(|u| u.id)
            .collect();
        if !expired.is_empty() {
            self.log_edit(expired.iter().copied().map(Change::UploadEnded).collect()).await?;
        }
        Ok(expired)
    }
}

/// A prepare-rename's claim on its source key, released when dropped (also when the request's
/// future is dropped midway); by then the durable intent, if written, holds the source.
struct RenameClaim<S: Storage> {
    engine: Engine<S>,
    key: Vec<u8>,
}

impl<S: Storage> RenameClaim<S> {
    fn take(engine: &Engine<S>, key: &[u8]) -> Result<Self> {
        engine.check_rename_unclaimed(key)?;
        engine.inner.state.borrow_mut().rename_claims.insert(key.to_vec());
        Ok(Self { engine: engine.clone(), key: key.to_vec() })
    }
}

impl<S: Storage> Drop for RenameClaim<S> {
    fn drop(&mut self) {
        self.engine.inner.state.borrow_mut().rename_claims.remove(&self.key);
    }
}

/// Checks that segment `s` of `part` lies within the `durable` bytes of its Syrup `file`, on real
/// chunk boundaries (its first and last chunks verify at their offsets).
async fn verify_segment<F: StorageFile>(file: &F, durable: u64, part: &Part, s: &SegmentRef) -> Result<()> {
    let id = s.syrup;
    if s.offset < SYRUP_HEADER_BYTES {
        return Err(ForgedLocator::NotAChunk { syrup: id.0, offset: s.offset }.into());
    }
    let end = s.offset.saturating_add(s.stored_len(part.chunk_size));
    if end > durable {
        return Err(ForgedLocator::BeyondDurable { syrup: id.0, end, durable }.into());
    }
    let cs = u64::from(part.chunk_size);
    let chunks = s.length.div_ceil(cs);
    for i in [0, chunks - 1] {
        let at = s.offset + i * (cs + CHUNK_TRAILER_BYTES);
        let len = cs.min(s.length - i * cs);
        let bytes = file.read_at(at, (len + CHUNK_TRAILER_BYTES) as usize).await?;
        let (payload, trailer) = bytes.split_at(len as usize);
        let stored = Reader::new(trailer).u32().unwrap_or(0);
        if chunk_crc(at, payload) != stored {
            return Err(ForgedLocator::NotAChunk { syrup: id.0, offset: at }.into());
        }
    }
    Ok(())
}
