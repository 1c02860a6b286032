//! Dispatch: a command to the shard that owns its partition, and the per-key and per-partition
//! operations run there.

#[allow(clippy::wildcard_imports, reason = "one type split over files by the state each part owns")]
use super::*;
use candybox_core::{engine::WriteCondition, hlc::Hlc};
use std::collections::BTreeMap;

/// A read's error, naming the delete marker that hides the key when it is `NotFound` in a
/// versioned Box whose newest version of the key is one.
fn not_found_marker(engine: &PartitionEngine, key: &[u8], e: CoreError) -> NodeError {
    if !matches!(e, CoreError::NotFound) || engine.versioning() == Versioning::Off {
        return e.into();
    }
    match engine.versions_of(key) {
        Ok(vs) => match vs.iter().max_by_key(|(_, l)| l.hlc) {
            Some((v, l)) if l.kind == candybox_core::locator::Kind::DeleteMarker => NodeError::NotFoundMarker(*v),
            _ => e.into(),
        },
        Err(_) => e.into(),
    }
}

/// One key of a delete-many in its partition's group: its index in the request, the key, its
/// condition, the version to delete for good.
type DeleteInGroup = (usize, Vec<u8>, Option<WriteCondition>, Option<Hlc>);

/// What a delete-many did to one key: the version deleted or the marker written, and whether it
/// was a marker.
type DeletedOne = Result<(Hlc, bool), NodeError>;

impl Shard {
    /// Answers one request, forwarding it to the owning shard when needed.
    pub async fn handle(self: &Rc<Self>, cmd: Command) -> Outcome {
        match self.handle_inner(cmd).await {
            Ok(o) => o,
            Err(e) => Outcome::error(&e),
        }
    }

    pub(super) async fn handle_inner(self: &Rc<Self>, cmd: Command) -> Result<Outcome, NodeError> {
        if self.stopping.get() {
            return Err(NodeError::ShuttingDown);
        }
        match cmd {
            // Rare requests run boxed: their futures are large, and an unboxed arm would make
            // every request's future (a get's too) as large as the largest, copied at each spawn.
            Command::CreateBox { name, partitions, versioning } => {
                Box::pin(self.create_box(name, partitions, versioning)).await
            }
            Command::SetVersioning { name, versioning } => Box::pin(self.set_versioning(name, versioning)).await,
            Command::DeleteBox { name, force } => Box::pin(self.delete_box(name, force)).await,
            Command::HeadBox { name } => {
                let meta = Box::pin(self.shared.coord.get_box(&name)).await.map_err(|e| self.coord_error(e))?;
                let meta = meta.ok_or_else(|| NodeError::BoxNotFound(name.clone()))?;
                Ok(Outcome::Reply(reply::box_reply(&info(&name, &meta))))
            }
            Command::ListBoxes => {
                let boxes = Box::pin(self.shared.coord.list_boxes()).await.map_err(|e| self.coord_error(e))?;
                let infos: Vec<BoxInfo> = boxes.iter().map(|(n, m)| info(n, m)).collect();
                Ok(Outcome::Reply(reply::box_list(&infos)))
            }
            Command::Topology => Ok(Outcome::Reply(reply::topology(&self.shared.topology, self.id))),
            Command::Stats => {
                let all: Vec<_> = self.shared.metrics.shards.iter().map(ShardMetrics::counters).collect();
                Ok(Outcome::Reply(reply::stats(&all)))
            }
            Command::Keyed { box_name, key, mut op } => {
                let meta = self.served_meta(&box_name).await?;
                match &mut op {
                    KeyedOp::ZeroCopyPut { rename_token: Some(_), source_partition: None, .. } => {
                        // The marker names the source partition, whose sweep finalizes the rename.
                        return Err(NodeError::invalid(
                            "source_partition",
                            "a rename's zero-copy put names the source partition prepare-rename returned",
                        ));
                    }
                    KeyedOp::ZeroCopyPut { source_partition: Some(source), .. } if *source >= meta.partitions => {
                        return Err(NodeError::invalid(
                            "source_partition",
                            format!("box {box_name} has {} partitions", meta.partitions),
                        ));
                    }
                    _ => {}
                }
                let p = partition_for_key(&key, meta.partitions);
                let owner = self.owner(&box_name, p);
                self.invoke_on(owner, move |sh| async move {
                    sh.keyed(&box_name, meta, p, key, op).await.unwrap_or_else(|e| Outcome::error(&e))
                })
                .await
            }
            Command::Partitioned { box_name, partition, op } => {
                let meta = self.served_meta(&box_name).await?;
                if partition >= meta.partitions {
                    return Err(NodeError::invalid(
                        "partition",
                        format!("box {box_name} has {} partitions", meta.partitions),
                    ));
                }
                let owner = self.owner(&box_name, partition);
                Box::pin(self.invoke_on(owner, move |sh| async move {
                    sh.partitioned(&box_name, meta, partition, op).await.unwrap_or_else(|e| Outcome::error(&e))
                }))
                .await
            }
            Command::DeleteMany { box_name, keys } => {
                let meta = self.served_meta(&box_name).await?;
                Ok(Outcome::Reply(reply::delete_many(&Box::pin(self.delete_many(box_name, meta, keys)).await)))
            }
            Command::CopyOrRename { box_name, source_key, target_key, rename, opts, source_version } => {
                let meta = self.served_meta(&box_name).await?;
                let put = match source_version {
                    None => Box::pin(self.copy_or_rename(box_name, meta, source_key, target_key, rename, opts)).await?,
                    Some(_) if rename => {
                        return Err(NodeError::invalid("source_version", "a rename moves the current version only"));
                    }
                    Some(v) => Box::pin(self.copy_version(box_name, meta, source_key, v, target_key, opts)).await?,
                };
                Ok(Outcome::Reply(reply::put_done(&put)))
            }
        }
    }

    /// Deletes many keys of a Box: grouped by partition, every group sent to its owner at once,
    /// and each group's deletes admitted together (one group commit). One result per key, in
    /// request order (`None`: deleted).
    async fn delete_many(
        self: &Rc<Self>,
        box_name: String,
        meta: BoxMeta,
        keys: Vec<crate::command::DeleteOne>,
    ) -> Vec<Result<(Hlc, bool), Rc<NodeError>>> {
        let mut results: Vec<Result<(Hlc, bool), Rc<NodeError>>> =
            (0..keys.len()).map(|_| Ok((Hlc::ZERO, false))).collect();
        let mut groups: BTreeMap<u16, Vec<DeleteInGroup>> = BTreeMap::new();
        for (i, (key, condition, version)) in keys.into_iter().enumerate() {
            groups.entry(partition_for_key(&key, meta.partitions)).or_default().push((i, key, condition, version));
        }
        let mut running = Vec::with_capacity(groups.len());
        for (p, group) in groups {
            let indexes: Vec<usize> = group.iter().map(|(i, ..)| *i).collect();
            let (sh, b) = (self.clone(), box_name.clone());
            let owner = self.owner(&box_name, p);
            let task = monoio::spawn(async move {
                sh.invoke_on(owner, move |sh| async move { sh.delete_group(&b, meta, p, group).await }).await
            });
            running.push((indexes, task));
        }
        for (indexes, task) in running {
            match task.await.and_then(|r| r) {
                Ok(done) => {
                    for (i, r) in done {
                        if let Some(slot) = results.get_mut(i) {
                            *slot = r.map_err(Rc::new);
                        }
                    }
                }
                Err(e) => {
                    // The group did not run (its shard's queue was full, its lease is not held,
                    // the node is stopping): each of its keys says so.
                    let e = Rc::new(e);
                    for i in indexes {
                        if let Some(slot) = results.get_mut(i) {
                            *slot = Err(e.clone());
                        }
                    }
                }
            }
        }
        results
    }

    /// One partition's share of a delete-many, on its owner: admitted together, then awaited.
    async fn delete_group(
        self: &Rc<Self>,
        box_name: &str,
        meta: BoxMeta,
        p: u16,
        group: Vec<DeleteInGroup>,
    ) -> Result<Vec<(usize, DeletedOne)>, NodeError> {
        self.lease(box_name, meta, p).await?;
        let engine = self.engine(box_name, meta, p).await?;
        let marker = engine.versioning() != Versioning::Off;
        let (by_version, keys): (Vec<_>, Vec<_>) = group.into_iter().partition(|(.., v)| v.is_some());
        let admitted: Vec<_> = keys.into_iter().map(|(i, key, c, _)| (i, engine.admit_delete_if(&key, c))).collect();
        let mut out = Vec::with_capacity(admitted.len() + by_version.len());
        for (i, a) in admitted {
            let r = match a {
                Ok(pending) => pending.durable().await.map(|v| (v, marker)),
                Err(e) => Err(e),
            };
            out.push((i, r.map_err(NodeError::from)));
        }
        for (i, key, _, version) in by_version {
            let v = version.unwrap_or(Hlc::ZERO);
            out.push((i, engine.delete_version(&key, v).await.map(|marker| (v, marker)).map_err(NodeError::from)));
        }
        Ok(out)
    }

    /// Runs a per-key operation on this shard, the partition's owner.
    pub(super) async fn keyed(
        self: &Rc<Self>,
        box_name: &str,
        meta: BoxMeta,
        p: u16,
        key: Vec<u8>,
        op: KeyedOp,
    ) -> Result<Outcome, NodeError> {
        if op.adds_data() && self.shared.metrics.disk.is_full() {
            return Err(NodeError::Engine(CoreError::NoSpace));
        }
        if op.mutates() {
            self.lease(box_name, meta, p).await?;
        }
        let engine = self.engine(box_name, meta, p).await?;
        let reply = match op {
            // Boxed: a put's future (its body stream) is twice a get's, and every request's future
            // would otherwise be as large (moved at each spawn).
            KeyedOp::Put { opts, body } => reply::put_done(&Box::pin(engine.put(&key, opts, body)).await?),
            KeyedOp::Get { range, version } => {
                let g = match version {
                    None => engine.get(&key, range).await.map_err(|e| not_found_marker(&engine, &key, e))?,
                    Some(v) => engine.get_version(&key, v, range).await?,
                };
                let reply = reply::get_done(&g.locator, g.first, g.len);
                return Ok(Outcome::Get { reply, len: g.len, body: g.body });
            }
            KeyedOp::Head { version: None } => {
                reply::head(&engine.head(&key).await.map_err(|e| not_found_marker(&engine, &key, e))?)
            }
            KeyedOp::Head { version: Some(v) } => reply::head(&engine.version_locator(&key, v)?),
            KeyedOp::Delete { condition, version: None } => {
                let v = engine.delete_if(&key, condition).await?;
                reply::delete_done(v, engine.versioning() != Versioning::Off)
            }
            KeyedOp::Delete { condition: Some(_), version: Some(_) } => {
                return Err(NodeError::invalid("condition", "a delete of a version by id takes no condition"));
            }
            KeyedOp::Delete { condition: None, version: Some(v) } => {
                let was_marker = engine.delete_version(&key, v).await?;
                reply::delete_done(v, was_marker)
            }
            KeyedOp::CreateUpload { opts } => reply::upload_created(Box::pin(engine.create_upload(&key, opts)).await?),
            KeyedOp::UploadPart { upload_id, part_number, size, body } => {
                self.check_upload_key(&engine, upload_id, &key)?;
                let part = Box::pin(engine.upload_part(upload_id, part_number, size, body)).await?;
                reply::put_done(&PutReply { size: part.size, checksum: part.checksum, hlc: Default::default() })
            }
            KeyedOp::CompleteUpload { upload_id, parts, user_meta, condition } => {
                self.check_upload_key(&engine, upload_id, &key)?;
                let done = engine.complete_upload_with(upload_id, &parts, user_meta, condition.as_ref());
                reply::put_done(&Box::pin(done).await?)
            }
            KeyedOp::SetMeta { replace, condition } => {
                reply::put_done(&Box::pin(engine.set_meta(&key, &replace, condition.as_ref())).await?)
            }
            KeyedOp::AbortUpload { upload_id } => {
                self.check_upload_key(&engine, upload_id, &key)?;
                Box::pin(engine.abort_upload(upload_id)).await?;
                reply::done()
            }
            KeyedOp::ListParts { upload_id } => {
                self.check_upload_key(&engine, upload_id, &key)?;
                reply::part_list(&engine.list_parts(upload_id)?)
            }
            KeyedOp::GetLocator { version } => {
                let l = match version {
                    None => engine.get_locator(&key).await?.0,
                    Some(v) => engine.get_version_locator(&key, v).await?,
                };
                reply::locator_reply(&convert::locator_to_wire(&l, meta.box_uid), p)
            }
            KeyedOp::PrepareRename { target_key } => {
                let tp = partition_for_key(&target_key, meta.partitions);
                let (intent, l) = Box::pin(self.prepare_rename(&engine, &key, &target_key, tp)).await?;
                let wire = convert::locator_to_wire(&l, meta.box_uid);
                reply::rename_prepared(intent.token, &wire, intent.source_hlc, p, tp)
            }
            KeyedOp::ZeroCopyPut { locator, rename_token, source_partition, opts } => {
                let put = Box::pin(self.zero_copy_put(
                    &engine,
                    box_name,
                    meta,
                    p,
                    &key,
                    relay::Relayed::Wire(&locator),
                    rename_token,
                    source_partition,
                    &opts,
                ))
                .await?;
                reply::put_done(&put)
            }
            KeyedOp::CompleteRename { token } => {
                let intent = engine.rename_intents().into_iter().find(|i| i.token == token && i.source_key == key);
                let outcome = match intent {
                    Some(intent) => Box::pin(self.resolve_intent(&engine, box_name, &intent, false)).await?,
                    // Already finished, maybe by the maintenance sweep: answer what it decided.
                    None => Some(self.resolved_outcome(token).ok_or(NodeError::Engine(CoreError::NotFound))?),
                };
                reply::rename_completed(outcome.unwrap_or(fb::RenameOutcome::Pending))
            }
        };
        Ok(Outcome::Reply(reply))
    }

    /// An upload is addressed by its key too: refuse an id that belongs to another key.
    pub(super) fn check_upload_key(
        &self,
        engine: &PartitionEngine,
        upload_id: u64,
        key: &[u8],
    ) -> Result<(), NodeError> {
        match engine.list_uploads().into_iter().find(|u| u.id == upload_id) {
            Some(u) if u.key == key => Ok(()),
            _ => Err(NodeError::Engine(CoreError::NotFound)),
        }
    }

    pub(super) async fn partitioned(
        &self,
        box_name: &str,
        meta: BoxMeta,
        p: u16,
        op: PartitionOp,
    ) -> Result<Outcome, NodeError> {
        if matches!(op, PartitionOp::DeleteRange { .. }) {
            self.lease(box_name, meta, p).await?;
        }
        let engine = self.engine(box_name, meta, p).await?;
        Ok(Outcome::Reply(match op {
            PartitionOp::List(opts) => reply::list_page(&engine.list(&opts).await?),
            PartitionOp::DeleteRange { start, end, prefix } => {
                match prefix {
                    Some(prefix) => engine.delete_prefix(&prefix).await?,
                    None => engine.delete_range(&start, &end).await?,
                };
                reply::done()
            }
            PartitionOp::ListUploads => reply::upload_list(&engine.list_uploads()),
            PartitionOp::ListVersions(opts) => reply::version_page(&engine.list_versions(&opts)?),
        }))
    }
}
