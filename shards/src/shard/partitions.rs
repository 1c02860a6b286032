//! The partition table: this shard's engines (opened on first use, reopened after an I/O
//! failure, quarantined when damaged), their leases, and the referenced-Syrup sets they publish.

#[allow(clippy::wildcard_imports, reason = "one type split over files by the state each part owns")]
use super::*;

/// What the partition part owns.
pub(super) struct PartitionTable {
    /// What the commit logs of earlier runs hold for partitions not opened yet (taken at open).
    retired: RefCell<HashMap<(BoxUid, u16), Replay>>,
    /// Damage found in the logs of earlier runs: a partition whose flushed position lies before
    /// it is refused (quarantined), whether or not any of its records could be read.
    damage: Vec<LogDamage>,
    /// Partitions opened in this run: opening one again (after an I/O failure) replays its
    /// records from the live log.
    opened_once: RefCell<std::collections::HashSet<(BoxUid, u16)>>,
    /// Open engines by Box incarnation and partition (looked up without building a name), with
    /// the Box's name.
    pub(super) engines: RefCell<HashMap<(BoxUid, u16), (String, PartitionEngine)>>,
    /// Partitions whose open found damaged files, with the evidence: their requests are answered
    /// `Quarantined` without opening them again (until a restart).
    quarantined: RefCell<HashMap<(String, u16), (BoxUid, String)>>,
    /// Serializes opens (one recovery per partition at a time).
    open_lock: LocalMutex,
    /// The referenced and condemned Syrup sets last published per partition (publication is
    /// skipped when unchanged: each one is a durable coordination write).
    published: RefCell<HashMap<(String, u16), (SyrupSet, SyrupSet)>>,
    /// Leases of the partitions this shard serves, by Box incarnation and partition: valid while
    /// their session is the store's current, connected one.
    leases: RefCell<HashMap<(BoxUid, u16), LeaseEntry>>,
}

impl PartitionTable {
    pub(super) fn new(retired: HashMap<(BoxUid, u16), Replay>, damage: Vec<LogDamage>) -> Self {
        PartitionTable {
            retired: RefCell::new(retired),
            damage,
            opened_once: Default::default(),
            engines: Default::default(),
            quarantined: Default::default(),
            open_lock: LocalMutex::new(),
            published: Default::default(),
            leases: Default::default(),
        }
    }
}

impl Shard {
    /// The lease of a partition this shard serves, taken (with a new fencing token) when not
    /// held in the current session. Every mutation asks for it first.
    ///
    /// # Errors
    /// `Unavailable` while the coordination session is suspended or lost, or the lease cannot be
    /// taken now; `NotOwner` when another node holds it (this node then never mutates the
    /// partition).
    pub async fn lease(&self, box_name: &str, meta: BoxMeta, p: u16) -> Result<LeaseEntry, NodeError> {
        let watch = self.shared.coord.watch();
        if let Some(l) = self.table.leases.borrow().get(&(meta.box_uid, p)) {
            if watch.holds(l.session) {
                return Ok(*l);
            }
        }
        if !watch.connected() {
            self.metrics().lease_refusals.fetch_add(1, Relaxed);
            return Err(NodeError::Unavailable(format!(
                "partition {box_name}/{p}: the coordination session is suspended or lost; mutations wait for it"
            )));
        }
        // Boxed: taking a lease talks to coordination (a large future), once per session.
        Box::pin(self.take_lease(box_name, meta, p)).await
    }

    pub(super) async fn take_lease(&self, box_name: &str, meta: BoxMeta, p: u16) -> Result<LeaseEntry, NodeError> {
        match self.shared.coord.take_lease(box_name, p, self.node_id()).await {
            Ok(LeaseAnswer::Held(l)) => {
                let renewed = self.table.leases.borrow_mut().insert((meta.box_uid, p), l);
                if renewed.is_none_or(|old| old.token != l.token) {
                    self.metrics().leases_taken.fetch_add(1, Relaxed);
                    // A new token: the published set must be written again under it.
                    self.table.published.borrow_mut().remove(&(box_name.to_string(), p));
                    tracing::info!(shard = self.id, box_name, partition = p, token = l.token, session = %format!("{:#x}", l.session), "partition lease taken");
                }
                Ok(l)
            }
            Ok(LeaseAnswer::Other { node }) => {
                self.table.leases.borrow_mut().remove(&(meta.box_uid, p));
                self.metrics().lease_refusals.fetch_add(1, Relaxed);
                tracing::warn!(
                    shard = self.id,
                    box_name,
                    partition = p,
                    holder = node,
                    "partition lease held by another node; not mutating it"
                );
                Err(self.not_owner(box_name, node, &format!("partition {box_name}/{p}")).await)
            }
            Err(e) => {
                self.metrics().lease_refusals.fetch_add(1, Relaxed);
                Err(self.coord_error(e))
            }
        }
    }

    /// The engine of `key`'s partition when a request can run on it right now, without waiting:
    /// the Box cached and served by this node, the partition this shard's and open, no delete of
    /// the Box under way, not shutting down. `None` sends the request down the ordinary path
    /// (which answers every refusal properly).
    pub fn engine_now(&self, box_name: &str, key: &[u8]) -> Option<PartitionEngine> {
        self.engine_now_for(box_name, |meta| Some(partition_for_key(key, meta.partitions))).map(|(e, _, _)| e)
    }

    /// [`Shard::engine_now`] for a mutation of `key`: also the partition's lease held in the
    /// current coordination session and, for one that adds data, room on the disk; with the
    /// Box-operation count a delete-box waits for. `None` sends it down the task path, which
    /// takes the lease or gives the refusal.
    pub fn mutable_now(&self, box_name: &str, key: &[u8], adds_data: bool) -> Option<EngineInUse> {
        if adds_data && self.shared.metrics.disk.is_full() {
            return None;
        }
        let (engine, meta, p) = self.engine_now_for(box_name, |meta| Some(partition_for_key(key, meta.partitions)))?;
        let watch = self.shared.coord.watch();
        let held = self.table.leases.borrow().get(&(meta.box_uid, p)).is_some_and(|l| watch.holds(l.session));
        held.then(|| EngineInUse { engine, _op: self.boxes.op(meta.box_uid) })
    }

    /// [`Shard::engine_now`] for a request that names its partition (a list page).
    pub fn engine_now_at(&self, box_name: &str, partition: u16) -> Option<PartitionEngine> {
        self.engine_now_for(box_name, |meta| (partition < meta.partitions).then_some(partition)).map(|(e, _, _)| e)
    }

    fn engine_now_for(
        &self,
        box_name: &str,
        partition: impl FnOnce(&BoxMeta) -> Option<u16>,
    ) -> Option<(PartitionEngine, BoxMeta, u16)> {
        if self.stopping.get() {
            return None;
        }
        let meta = self.boxes.cached(box_name)?;
        if !self.serves(&meta) || self.boxes.is_deleting(meta.box_uid) {
            return None;
        }
        let p = partition(&meta)?;
        if self.owner(box_name, p) != self.id {
            return None;
        }
        self.table.engines.borrow().get(&(meta.box_uid, p)).map(|(_, e)| (e.clone(), meta, p))
    }

    /// The engine of a partition this shard owns, opened on first use, for one operation.
    ///
    /// # Errors
    /// `Busy` while a delete-box is removing the Box; what the open reports (corruption, I/O).
    pub async fn engine(&self, box_name: &str, meta: BoxMeta, partition: u16) -> Result<EngineInUse, NodeError> {
        if self.boxes.is_deleting(meta.box_uid) {
            // Retryable: the delete may yet be refused (the Box not empty), and then it is back.
            return Err(NodeError::Busy {
                reason: "the box is being deleted",
                retry_after_ms: crate::limits::QUEUE_FULL_RETRY_AFTER_MS,
            });
        }
        // Counted before the open awaits anything, so a delete-box that starts now waits for it.
        let op = self.boxes.op(meta.box_uid);
        let engine = self.open_engine(box_name, meta, partition).await?;
        Ok(EngineInUse { engine, _op: op })
    }

    /// The engine of a partition this shard owns, opened on first use (no delete-box fence:
    /// recovery and delete-box's own emptiness check).
    ///
    /// # Errors
    /// What the open reports (corruption, I/O).
    pub(super) async fn open_engine(
        &self,
        box_name: &str,
        meta: BoxMeta,
        partition: u16,
    ) -> Result<PartitionEngine, NodeError> {
        assert_eq!(self.owner(box_name, partition), self.id, "a partition is opened only by its owner");
        if let Some((_, e)) = self.table.engines.borrow().get(&(meta.box_uid, partition)) {
            return Ok(e.clone());
        }
        // Boxed: opening (recovery) is a large future, and every request's future would
        // otherwise carry its size for the open that happens once.
        Box::pin(self.open_engine_slow(box_name, meta, partition)).await
    }

    pub(super) async fn open_engine_slow(
        &self,
        box_name: &str,
        meta: BoxMeta,
        partition: u16,
    ) -> Result<PartitionEngine, NodeError> {
        let _open = self.table.open_lock.lock().await;
        if let Some((_, e)) = self.table.engines.borrow().get(&(meta.box_uid, partition)) {
            return Ok(e.clone());
        }
        let stale: Vec<(BoxUid, u16)> = self
            .table
            .engines
            .borrow()
            .iter()
            .filter(|((_, p), (b, _))| *p == partition && b == box_name)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            // A Box of the same name was deleted and created again: the old incarnation is gone.
            let old = self.table.engines.borrow_mut().remove(&k);
            if let Some((_, old)) = old {
                old.close().await;
            }
        }
        let key = (box_name.to_string(), partition);
        if self.stopping.get() {
            return Err(NodeError::ShuttingDown);
        }
        let quarantined =
            |evidence: String| NodeError::Quarantined { box_name: box_name.to_string(), partition, evidence };
        match self.table.quarantined.borrow().get(&key) {
            Some((uid, evidence)) if *uid == meta.box_uid => return Err(quarantined(evidence.clone())),
            _ => {}
        }
        let mut config = self.shared.config.engine_config(box_name, meta.box_uid, partition);
        config.versioning = meta.versioning;
        let uid_p = (meta.box_uid, partition);
        // A partition opened before in this run (stopped after an I/O failure) finds its records
        // in the live log; at its first open, in what the earlier runs' logs held.
        let mut replay = self.table.retired.borrow_mut().remove(&uid_p).unwrap_or_default();
        replay.damage.clone_from(&self.table.damage);
        let reopening = self.table.opened_once.borrow().contains(&uid_p);
        if reopening {
            if let Err(e) = self.log.restart().await {
                self.table.retired.borrow_mut().insert(uid_p, replay);
                return Err(e.into());
            }
            match self.log.replay_live(meta.box_uid, partition).await {
                Ok(live) => {
                    replay.batches.extend(live.batches);
                    replay.damage.extend(live.damage);
                }
                Err(e) => {
                    self.table.retired.borrow_mut().insert(uid_p, replay);
                    return Err(e.into());
                }
            }
        }
        // Engine::open_in creates the partition directory; the storage layer tolerates shards
        // creating sibling partitions (and so their shared parents) at the same time.
        let opened = Engine::open_in(UringStorage::new(), Rc::new(SystemClock), config, &self.log, &replay).await;
        if opened.is_err() && !reopening && !replay.batches.is_empty() {
            // Its records from earlier runs stay for the next try (the next request, or the next
            // start); a reopen reads the live log again.
            self.table.retired.borrow_mut().insert(uid_p, replay);
        }
        let (engine, report) = match opened {
            Ok(opened) => opened,
            Err(CoreError::Corrupt(c)) => {
                // One damaged file takes its partition out of service, never the node.
                let evidence = crate::reply::evidence(&c);
                tracing::error!(shard = self.id, box_name, partition, error = %c, "partition quarantined: its files are damaged; every other partition is served (see candybox-inspect --verify)");
                self.table.quarantined.borrow_mut().insert(key, (meta.box_uid, evidence.clone()));
                self.shared.metrics.quarantine(box_name, partition, &evidence);
                return Err(quarantined(evidence));
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(
            shard = self.id,
            box_name,
            partition,
            created = report.created,
            wal_records = report.wal_records,
            torn_tails = report.torn_tails.len(),
            "partition open"
        );
        self.table.opened_once.borrow_mut().insert(uid_p);
        // A set-versioning may have passed while this partition opened with the older state.
        let cached = self.boxes.by_name.borrow().get(box_name).copied();
        if let Some(now) = cached.filter(|m| m.box_uid == meta.box_uid && m.versioning != meta.versioning) {
            let _ = engine.set_versioning(now.versioning);
        }
        self.table.engines.borrow_mut().insert((meta.box_uid, partition), (box_name.to_string(), engine.clone()));
        self.metrics().partitions_open.store(self.table.engines.borrow().len() as u64, Relaxed);
        Ok(engine)
    }

    /// Closes a partition that stopped after an I/O failure and opens it again (recovery replays
    /// its WAL, as after a crash): once the cause is gone (space freed) it serves again without a
    /// restart. An open that fails is logged; the partition's next request tries again.
    pub async fn reopen_failed(&self, box_name: &str, p: u16, uid: BoxUid) {
        let key = (uid, p);
        let engine = match self.table.engines.borrow().get(&key) {
            Some((_, e)) if e.is_failed() => e.clone(),
            _ => return,
        };
        self.table.engines.borrow_mut().remove(&key);
        engine.close().await;
        self.metrics().partitions_open.store(self.table.engines.borrow().len() as u64, Relaxed);
        let Ok(meta) = self.box_meta(box_name).await else { return };
        match self.open_engine(box_name, meta, p).await {
            Ok(_) => {
                tracing::info!(shard = self.id, box_name, partition = p, "partition reopened after an I/O failure")
            }
            Err(e) => {
                tracing::warn!(shard = self.id, box_name, partition = p, error = %e, "partition stopped after an I/O failure could not be reopened yet; its next request tries again")
            }
        }
    }

    /// Every open partition: (box, partition, uid, engine).
    pub fn open_partitions(&self) -> Vec<(String, u16, BoxUid, PartitionEngine)> {
        self.table.engines.borrow().iter().map(|((u, p), (b, e))| (b.clone(), *p, *u, e.clone())).collect()
    }

    /// Opens every partition of every Box that this shard owns (start-up recovery).
    ///
    /// # Errors
    /// The first partition that fails to open, or coordination failures.
    pub async fn recover(&self) -> Result<usize, NodeError> {
        let boxes = self.shared.coord.list_boxes().await.map_err(|e| self.coord_error(e))?;
        let mut opened = 0;
        for (name, meta) in boxes {
            self.boxes.insert(name.clone(), meta);
            if !self.serves(&meta) {
                continue;
            }
            for p in (0..meta.partitions).filter(|p| self.owner(&name, *p) == self.id) {
                match self.open_engine(&name, meta, p).await {
                    Ok(_) => opened += 1,
                    // Logged and listed in /readyz; the node serves every other partition.
                    Err(NodeError::Quarantined { .. }) => {}
                    // Not the data's fault (a full disk, a failing device): this partition is
                    // opened again by its next request.
                    Err(NodeError::Engine(CoreError::Io(e))) => {
                        tracing::error!(shard = self.id, box_name = %name, partition = p, error = %e, "partition could not be opened at start-up; its next request tries again");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(opened)
    }

    /// Flushes what the opens replayed from the logs of earlier runs, so their segments can be
    /// deleted.
    ///
    /// # Returns
    /// The partitions whose records from earlier runs are not flushed yet (not opened, or their
    /// flush failed: logged).
    pub async fn retire_replayed(&self) -> usize {
        let mut unretired = self.table.retired.borrow().len();
        for (b, p, _, e) in self.open_partitions() {
            if let Err(err) = e.retire_replayed().await {
                tracing::error!(shard = self.id, box_name = %b, partition = p, error = %err, "flushing the records replayed at start-up failed; the old commit log segments are kept");
                unretired += 1;
            }
        }
        unretired
    }

    /// The shard's commit log.
    pub fn commit_log(&self) -> &CommitLog<UringStorage> {
        &self.log
    }

    /// Flushes and closes every engine (shutdown).
    pub async fn close_all(&self) {
        for (b, p, _, e) in self.open_partitions() {
            if let Err(err) = e.flush().await {
                tracing::warn!(shard = self.id, box_name = %b, partition = p, error = %err, "flush at shutdown failed");
            }
            e.close().await;
        }
        self.table.engines.borrow_mut().clear();
    }

    /// Publishes a partition's referenced-Syrup set to `boxes/<box>/partitions/<p>/refs`;
    /// unless `always`, only when it changed since this shard last published it.
    ///
    /// # Errors
    /// Coordination failures.
    pub async fn publish_refs(
        &self,
        box_name: &str,
        p: u16,
        engine: &PartitionEngine,
        always: bool,
    ) -> Result<(), NodeError> {
        let meta = self.box_meta(box_name).await?;
        let lease = self.lease(box_name, meta, p).await?;
        let published = (engine.published_refs(), engine.condemned_syrups());
        let key = (box_name.to_string(), p);
        if !always && self.table.published.borrow().get(&key) == Some(&published) {
            return Ok(());
        }
        let (refs, condemned) = &published;
        self.shared.coord.put_refs(box_name, p, lease.token, refs, condemned).await.map_err(|e| self.coord_error(e))?;
        self.table.published.borrow_mut().insert(key, published);
        Ok(())
    }

    /// Closes and removes the engines of a deleted Box incarnation and their files, its published
    /// sets and its quarantines.
    pub(super) async fn forget_partitions(&self, name: &str, uid: BoxUid) {
        self.table.published.borrow_mut().retain(|(b, _), _| b != name);
        self.table.retired.borrow_mut().retain(|(u, _), _| *u != uid);
        let doomed: Vec<(u16, PartitionEngine)> = self
            .table
            .engines
            .borrow()
            .iter()
            .filter(|((u, _), _)| *u == uid)
            .map(|((_, p), (_, e))| (*p, e.clone()))
            .collect();
        for (p, engine) in doomed {
            self.table.engines.borrow_mut().remove(&(uid, p));
            let syrups: Vec<_> = engine.own_syrups().into_iter().collect();
            engine.close().await;
            let syrup_dir = self.shared.config.syrup_dir();
            let part_dir = self.shared.config.partition_dir(name, uid, p);
            let _ = candybox_core::runtime::unblock(move || {
                for s in syrups {
                    let _ = std::fs::remove_file(syrup_dir.join(s.file_name()));
                }
                let _ = std::fs::remove_dir_all(part_dir);
            })
            .await;
        }
        // A quarantined partition of the Box goes with it (its directory is removed with the
        // Box's; the Syrups it created stay behind as unreferenced files, which is safe).
        let lifted: Vec<u16> = self
            .table
            .quarantined
            .borrow()
            .iter()
            .filter(|((b, _), (u, _))| b == name && *u == uid)
            .map(|((_, p), _)| *p)
            .collect();
        for p in lifted {
            self.table.quarantined.borrow_mut().remove(&(name.to_string(), p));
            self.shared.metrics.unquarantine(name, p);
        }
        self.metrics().partitions_open.store(self.table.engines.borrow().len() as u64, Relaxed);
    }
}
