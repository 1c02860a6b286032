//! The relay: copy and rename run by the node, prepare-rename, zero-copy put with its rendezvous
//! marker, and finishing rename intents.

#[allow(clippy::wildcard_imports, reason = "one type split over files by the state each part owns")]
use super::*;
use candybox_core::{engine::CopyOptions, hlc::Hlc};

/// What the relay part owns.
/// The locator a zero-copy put writes: relayed by a client (checked before it is written), or
/// taken from this node's committed state by a copy or rename the node runs itself.
pub(super) enum Relayed<'a> {
    /// The wire bytes a client relayed.
    Wire(&'a [u8]),
    /// A locator a partition of this Box on this node committed.
    Committed(CandyLocator),
}

#[derive(Default)]
pub(super) struct RelayState {
    /// Outcomes of intents finalized here, newest last (at most `RENAME_OUTCOMES_REMEMBERED`).
    resolved: RefCell<std::collections::VecDeque<(u128, fb::RenameOutcome)>>,
}

impl Shard {
    pub(super) async fn prepare_rename(
        &self,
        engine: &PartitionEngine,
        source_key: &[u8],
        target_key: &[u8],
        target_partition: u16,
    ) -> Result<(RenameIntent, CandyLocator), NodeError> {
        let (intent, bytes) = engine.prepare_rename(source_key, target_key, target_partition).await?;
        let l = CandyLocator::decode(&bytes).map_err(|e| NodeError::Internal(format!("own locator: {e}")))?;
        self.metrics().rename_intents_pending.fetch_add(1, Relaxed);
        Ok((intent, l))
    }

    /// The destination's half of a copy or rename: verify and write the relayed locator, publish
    /// this partition's references, then (for a rename) write the rendezvous marker.
    #[expect(clippy::too_many_arguments, reason = "every argument is one fact of the relay")]
    pub(super) async fn zero_copy_put(
        self: &Rc<Self>,
        engine: &PartitionEngine,
        box_name: &str,
        meta: BoxMeta,
        p: u16,
        key: &[u8],
        relayed: Relayed<'_>,
        rename_token: Option<u128>,
        source_partition: Option<u16>,
        opts: &CopyOptions,
    ) -> Result<PutReply, NodeError> {
        let l = match relayed {
            Relayed::Wire(wire) => {
                Some(convert::locator_from_wire(wire, meta.box_uid, self.shared.config.frame_body_bytes_max)?)
            }
            Relayed::Committed(_) => None,
        };
        let lease = self.lease(box_name, meta, p).await?;
        if let (Some(token), Some(sp)) = (rename_token, source_partition) {
            // A rename's destination is written only while its intent still claims the source:
            // once abandoned (or finished), another rename of the source may have won, and a late
            // destination would be a second copy.
            let b = box_name.to_string();
            let held = self
                .invoke_on(self.owner(box_name, sp), move |sh| async move {
                    match sh.engine(&b, meta, sp).await {
                        Ok(e) => Ok(e.rename_intents().iter().any(|i| i.token == token)),
                        Err(e) => Err(e),
                    }
                })
                .await??;
            if !held {
                return Err(NodeError::Engine(CoreError::Conflict(
                    "this rename was abandoned (it took longer than rename_intent_abandon_ms) or has finished; nothing was written"
                        .into(),
                )));
            }
        }
        let put = match (l, relayed) {
            (Some(l), _) => engine.zero_copy_put(key, &l.encode(), opts).await,
            (None, Relayed::Committed(l)) => engine.put_committed_copy(key, l, opts).await,
            (None, Relayed::Wire(_)) => unreachable!("a relayed locator is decoded above"),
        };
        let put = match (put, rename_token, source_partition) {
            (Ok(put), ..) => put,
            (Err(e @ CoreError::PreconditionFailed { .. }), Some(token), Some(sp)) => {
                // A refused rename wrote nothing here and no marker exists: release the source's
                // claim now rather than after rename_intent_abandon_ms.
                let b = box_name.to_string();
                let cleared = self
                    .invoke_on(self.owner(box_name, sp), move |sh| async move {
                        let engine = sh.engine(&b, meta, sp).await?;
                        engine.clear_rename_intent(token).await.map_err(NodeError::from)
                    })
                    .await;
                if !matches!(cleared, Ok(Ok(()))) {
                    tracing::warn!(box_name, "a refused rename's intent could not be cleared now; it is abandoned after rename_intent_abandon_ms");
                }
                return Err(e.into());
            }
            (Err(e), ..) => return Err(e.into()),
        };
        // Durable now; the references must be published before the marker lets the source go
        // (and before the reply). A set this shard already published holds them: it is written
        // again only when it changed.
        self.publish_refs(box_name, p, engine, false).await?;
        if let (Some(token), None) = (rename_token, source_partition) {
            // No partition holds the intent (abandoned, or finished): a marker would be an orphan.
            // The destination stays written; both keys are live, which a rename may end in.
            tracing::warn!(box_name, token = %format!("{token:032x}"), "zero-copy put with a rename token that no intent holds; no marker written");
        }
        if let (Some(token), Some(source_partition)) = (rename_token, source_partition) {
            let marker =
                RenameMarker { source_partition, target_partition: p, target_key: key.to_vec(), created_ms: wall_ms() };
            self.shared
                .coord
                .put_marker(box_name, token, marker, lease.token)
                .await
                .map_err(|e| self.coord_error(e))?;
        }
        Ok(put)
    }

    /// The outcome of an intent finalized here recently, if remembered.
    pub(super) fn resolved_outcome(&self, token: u128) -> Option<fb::RenameOutcome> {
        self.relay.resolved.borrow().iter().rev().find(|(t, _)| *t == token).map(|(_, o)| *o)
    }

    /// Settles a rename intent at the source: marker present → delete the source if still the
    /// same version, clear intent and marker; absent → pending, or (with `may_abandon`, past the
    /// abandon window) drop the intent and keep the source.
    ///
    /// # Returns
    /// The outcome, or `None` while pending.
    pub async fn resolve_intent(
        &self,
        engine: &PartitionEngine,
        box_name: &str,
        intent: &RenameIntent,
        may_abandon: bool,
    ) -> Result<Option<fb::RenameOutcome>, NodeError> {
        let meta = self.box_meta(box_name).await?;
        let source = engine.partition();
        let lease = self.lease(box_name, meta, source).await?;
        let marker = self.shared.coord.get_marker(box_name, intent.token).await.map_err(|e| self.coord_error(e))?;
        let m = self.metrics();
        if marker.is_some() {
            let deleted = engine.delete_if_hlc_equals(&intent.source_key, intent.source_hlc).await?;
            engine.clear_rename_intent(intent.token).await?;
            self.shared
                .coord
                .delete_marker(box_name, intent.token, source, lease.token)
                .await
                .map_err(|e| self.coord_error(e))?;
            m.rename_intents_finalized.fetch_add(1, Relaxed);
            m.rename_intents_pending.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1))).ok();
            let outcome = if deleted { fb::RenameOutcome::Finalized } else { fb::RenameOutcome::SourceChanged };
            let mut resolved = self.relay.resolved.borrow_mut();
            if resolved.len() >= crate::limits::RENAME_OUTCOMES_REMEMBERED {
                resolved.pop_front();
            }
            resolved.push_back((intent.token, outcome));
            return Ok(Some(outcome));
        }
        let age = wall_ms().saturating_sub(intent.created_ms);
        if may_abandon && age > self.shared.config.rename_intent_abandon_ms {
            engine.clear_rename_intent(intent.token).await?;
            m.rename_intents_abandoned.fetch_add(1, Relaxed);
            m.rename_intents_pending.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1))).ok();
            tracing::info!(box_name, token = %format!("{:032x}", intent.token), "rename intent abandoned; source kept");
        }
        Ok(None)
    }

    /// A copy of version `version` of `source_key` (S3's copy source with a version id): the
    /// source partition's checked locator of that version, committed at the target (no byte
    /// moves).
    pub(super) async fn copy_version(
        self: &Rc<Self>,
        box_name: String,
        meta: BoxMeta,
        source_key: Vec<u8>,
        version: Hlc,
        target_key: Vec<u8>,
        opts: CopyOptions,
    ) -> Result<PutReply, NodeError> {
        let sp = partition_for_key(&source_key, meta.partitions);
        let tp = partition_for_key(&target_key, meta.partitions);
        let b = box_name.clone();
        let l = self
            .invoke_on(self.owner(&box_name, sp), move |sh| async move {
                let e = sh.engine(&b, meta, sp).await?;
                Ok::<CandyLocator, NodeError>(e.get_version_locator(&source_key, version).await?)
            })
            .await??;
        let b = box_name.clone();
        self.invoke_on(self.owner(&box_name, tp), move |sh| async move {
            sh.lease(&b, meta, tp).await?;
            let e = sh.engine(&b, meta, tp).await?;
            sh.zero_copy_put(&e, &b, meta, tp, &target_key, Relayed::Committed(l), None, None, &opts).await
        })
        .await?
    }

    /// Copy or rename run by the node: one engine call when both keys share a partition, else
    /// the relay's durable steps (SPEC §7) across the two owners.
    pub(super) async fn copy_or_rename(
        self: &Rc<Self>,
        box_name: String,
        meta: BoxMeta,
        source_key: Vec<u8>,
        target_key: Vec<u8>,
        rename: bool,
        opts: CopyOptions,
    ) -> Result<PutReply, NodeError> {
        let sp = partition_for_key(&source_key, meta.partitions);
        let tp = partition_for_key(&target_key, meta.partitions);
        let (source_owner, target_owner) = (self.owner(&box_name, sp), self.owner(&box_name, tp));
        if sp == tp {
            let b = box_name.clone();
            return self
                .invoke_on(source_owner, move |sh| async move {
                    sh.lease(&b, meta, sp).await?;
                    let e = sh.engine(&b, meta, sp).await?;
                    e.copy_or_rename_if(&source_key, &target_key, rename, &opts).await.map_err(NodeError::from)
                })
                .await?;
        }
        if rename && source_owner == target_owner {
            // Both partitions commit through one shard's log: the target's locator and the
            // source's tombstone are one record (one fdatasync), atomic without intent or marker.
            let b = box_name.clone();
            return self
                .invoke_on(source_owner, move |sh| async move {
                    sh.lease(&b, meta, sp).await?;
                    sh.lease(&b, meta, tp).await?;
                    let source = sh.engine(&b, meta, sp).await?;
                    let target = sh.engine(&b, meta, tp).await?;
                    let put = source.rename_to(&source_key, &target, &target_key, &opts).await?;
                    // The target's references are published (when they changed) before the
                    // reply, as after a zero-copy put.
                    sh.publish_refs(&b, tp, &target, false).await?;
                    Ok(put)
                })
                .await?;
        }
        if !rename {
            let (b, k) = (box_name.clone(), source_key.clone());
            let l = self
                .invoke_on(source_owner, move |sh| async move {
                    let e = sh.engine(&b, meta, sp).await?;
                    let (l, _) = e.get_locator(&k).await?;
                    Ok::<CandyLocator, NodeError>(l)
                })
                .await??;
            let b = box_name.clone();
            return self
                .invoke_on(target_owner, move |sh| async move {
                    let e = sh.engine(&b, meta, tp).await?;
                    sh.zero_copy_put(&e, &b, meta, tp, &target_key, Relayed::Committed(l), None, None, &opts).await
                })
                .await?;
        }
        let (b, s, t) = (box_name.clone(), source_key.clone(), target_key.clone());
        let (token, l) = self
            .invoke_on(source_owner, move |sh| async move {
                sh.lease(&b, meta, sp).await?;
                let e = sh.engine(&b, meta, sp).await?;
                let (intent, l) = sh.prepare_rename(&e, &s, &t, tp).await?;
                Ok::<(u128, CandyLocator), NodeError>((intent.token, l))
            })
            .await??;
        let (b, t) = (box_name.clone(), target_key.clone());
        let put = self
            .invoke_on(target_owner, move |sh| async move {
                let e = sh.engine(&b, meta, tp).await?;
                sh.zero_copy_put(&e, &b, meta, tp, &t, Relayed::Committed(l), Some(token), Some(sp), &opts).await
            })
            .await?;
        let put = put?;
        let b = box_name.clone();
        let settled = self
            .invoke_on(source_owner, move |sh| async move {
                let e = sh.engine(&b, meta, sp).await?;
                match e.rename_intents().into_iter().find(|i| i.token == token) {
                    Some(intent) => sh.resolve_intent(&e, &b, &intent, false).await.map(|_| Settled::Done),
                    // Finished by the maintenance sweep (its outcome is remembered), or abandoned:
                    // the destination came later than rename_intent_abandon_ms.
                    None if sh.resolved_outcome(token).is_some() => Ok(Settled::Done),
                    None => Ok(Settled::Abandoned),
                }
            })
            .await?;
        match settled {
            Ok(Settled::Done) => {}
            Ok(Settled::Abandoned) => {
                // The source's claim lapsed, so another rename of it may have won since: this one
                // must not leave a second copy. Its destination goes again (only the exact version
                // written here), and the caller learns the rename did not happen.
                let (b, h) = (box_name.clone(), put.hlc);
                let undone = self
                    .invoke_on(target_owner, move |sh| async move {
                        let e = sh.engine(&b, meta, tp).await?;
                        e.delete_if_hlc_equals(&target_key, h).await.map_err(NodeError::from)
                    })
                    .await;
                tracing::warn!(box_name = %box_name, undone = ?undone.map(|r| r.is_ok()), "rename abandoned before its destination was written; the destination was removed again");
                return Err(NodeError::Engine(CoreError::Conflict(
                    "the rename took longer than rename_intent_abandon_ms and was abandoned; the source is unchanged"
                        .into(),
                )));
            }
            Err(e) => {
                // The destination is durable and the marker written: the maintenance sweep finishes
                // the source later. The rename itself succeeded.
                tracing::warn!(box_name = %box_name, error = %e, "rename: finalizing the source failed; the sweep will retry");
            }
        }
        Ok(put)
    }
}

/// How the source of a node-run rename ended.
enum Settled {
    /// Finalized (or found changed) now or by the sweep.
    Done,
    /// The intent was abandoned before the destination was written.
    Abandoned,
}
