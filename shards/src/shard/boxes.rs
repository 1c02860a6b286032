//! The Box cache and home checks: which Boxes this node serves, their descriptors, and the
//! Box-level requests (create, delete, and forgetting a deleted Box's partitions).

#[allow(clippy::wildcard_imports, reason = "one type split over files by the state each part owns")]
use super::*;

/// What the Box part owns.
#[derive(Default)]
pub(super) struct BoxCache {
    /// Descriptors of the Boxes this shard has seen, by name.
    pub(super) by_name: RefCell<rustc_hash::FxHashMap<String, BoxMeta>>,
    /// Boxes a delete-box is removing: their partitions refuse new operations on this shard.
    deleting: RefCell<std::collections::HashSet<BoxUid>>,
    /// Operations using a partition engine of each Box on this shard right now ([`EngineInUse`]).
    ops: Rc<RefCell<HashMap<BoxUid, usize>>>,
}

impl BoxCache {
    /// The cached descriptor of `name`.
    pub(super) fn cached(&self, name: &str) -> Option<BoxMeta> {
        self.by_name.borrow().get(name).copied()
    }

    /// Caches a descriptor (start-up recovery).
    pub(super) fn insert(&self, name: String, meta: BoxMeta) {
        self.by_name.borrow_mut().insert(name, meta);
    }

    /// True while a delete-box is removing the Box incarnation `uid`.
    pub(super) fn is_deleting(&self, uid: BoxUid) -> bool {
        self.deleting.borrow().contains(&uid)
    }

    /// Counts an operation on a partition of Box `uid` until the guard drops (a delete-box
    /// waits for none to be left).
    pub(super) fn op(&self, uid: BoxUid) -> BoxOp {
        *self.ops.borrow_mut().entry(uid).or_insert(0) += 1;
        BoxOp { box_uid: uid, box_ops: self.ops.clone() }
    }
}

/// Counts one operation on a Box's partitions of this shard while alive.
pub(super) struct BoxOp {
    box_uid: BoxUid,
    box_ops: Rc<RefCell<HashMap<BoxUid, usize>>>,
}

impl Drop for BoxOp {
    fn drop(&mut self) {
        let mut ops = self.box_ops.borrow_mut();
        if let Some(n) = ops.get_mut(&self.box_uid) {
            *n -= 1;
            if *n == 0 {
                ops.remove(&self.box_uid);
            }
        }
    }
}

impl Shard {
    /// True when this node serves the Box (v1: a Box lives on one node; 0 is an unplaced,
    /// single-node Box).
    pub fn serves(&self, meta: &BoxMeta) -> bool {
        meta.node == 0 || meta.node == self.node_id()
    }

    /// The descriptor of a Box this node serves. A cached descriptor naming another node is read
    /// again first (the Box may have been deleted and created again elsewhere), so a stale cache
    /// never sends a client in circles.
    ///
    /// # Errors
    /// `BoxNotFound`; as [`Shard::check_home`]; coordination failures.
    pub async fn served_meta(&self, box_name: &str) -> Result<BoxMeta, NodeError> {
        let meta = self.box_meta(box_name).await?;
        if self.serves(&meta) {
            return Ok(meta);
        }
        let fresh = self.shared.coord.get_box(box_name).await.map_err(|e| self.coord_error(e))?;
        let Some(fresh) = fresh else {
            self.boxes.by_name.borrow_mut().remove(box_name);
            return Err(NodeError::BoxNotFound(box_name.to_string()));
        };
        self.boxes.by_name.borrow_mut().insert(box_name.to_string(), fresh);
        self.check_home(box_name, &fresh).await?;
        Ok(fresh)
    }

    /// Refuses a request for a Box that another node serves, naming that node's address.
    ///
    /// # Errors
    /// `NotOwner` with the serving node's address; `Unavailable` when that node is not a live
    /// member (it is down: its Box waits for it); coordination failures.
    pub async fn check_home(&self, box_name: &str, meta: &BoxMeta) -> Result<(), NodeError> {
        if self.serves(meta) {
            return Ok(());
        }
        Err(self.not_owner(box_name, meta.node, &format!("box {box_name}")).await)
    }

    /// The answer for a Box or partition that node `node` serves: `NotOwner` naming its address,
    /// or `Unavailable` when it is not a live member (it is down: what it serves waits for it).
    pub(super) async fn not_owner(&self, box_name: &str, node: u16, subject: &str) -> NodeError {
        let members = match self.shared.coord.members().await {
            Ok(m) => m,
            Err(e) => return self.coord_error(e),
        };
        match members.into_iter().find(|m| m.node == node) {
            Some(m) => NodeError::NotOwner { box_name: box_name.to_string(), node, owner: m.addr },
            None => NodeError::Unavailable(format!("{subject} is served by node {node}, which is not a live member")),
        }
    }

    /// The descriptor of a Box: cached, else read from coordination (and cached).
    ///
    /// # Errors
    /// `BoxNotFound`; coordination failures.
    pub async fn box_meta(&self, name: &str) -> Result<BoxMeta, NodeError> {
        if let Some(m) = self.boxes.by_name.borrow().get(name) {
            return Ok(*m);
        }
        match self.shared.coord.get_box(name).await.map_err(|e| self.coord_error(e))? {
            Some(m) => {
                self.boxes.by_name.borrow_mut().insert(name.to_string(), m);
                Ok(m)
            }
            None => Err(NodeError::BoxNotFound(name.to_string())),
        }
    }

    pub(super) async fn create_box(
        self: &Rc<Self>,
        name: String,
        partitions: u16,
        versioning: Versioning,
    ) -> Result<Outcome, NodeError> {
        let partitions = if partitions == 0 { self.shared.config.default_partitions } else { partitions };
        if partitions > limits::PARTITION_COUNT_MAX {
            return Err(NodeError::Engine(CoreError::LimitExceeded {
                limit: "partitions",
                value: u64::from(partitions),
                max: u64::from(limits::PARTITION_COUNT_MAX),
            }));
        }
        let members = self.shared.coord.members().await.map_err(|e| self.coord_error(e))?;
        let nodes: Vec<u16> = members.iter().map(|m| m.node).collect();
        let node = crate::placement::node_for(&name, &nodes).unwrap_or(self.node_id());
        let meta =
            BoxMeta { partitions, created_ms: wall_ms(), box_uid: BoxUid(rand::random::<u64>() | 1), node, versioning };
        match self.shared.coord.create_box(&name, meta).await {
            Ok(()) => {}
            Err(candybox_core::coord::CoordError::NodeExists(_)) => return Err(NodeError::BoxExists(name)),
            Err(e) => return Err(self.coord_error(e)),
        }
        self.boxes.by_name.borrow_mut().insert(name.clone(), meta);
        tracing::info!(box_name = %name, partitions, box_uid = meta.box_uid.0, node, "box created");
        Ok(Outcome::Reply(reply::box_reply(&info(&name, &meta))))
    }

    /// Sets a Box's versioning state: in the coordination store (a conditional write), then in
    /// every shard's cached descriptor and open partition, before the reply; a mutation admitted
    /// after the reply follows the new state.
    pub(super) async fn set_versioning(
        self: &Rc<Self>,
        name: String,
        versioning: Versioning,
    ) -> Result<Outcome, NodeError> {
        let meta = self.served_meta(&name).await?;
        if versioning == Versioning::Off && meta.versioning != Versioning::Off {
            return Err(NodeError::invalid("versioning", "a versioned Box can be suspended, not turned off"));
        }
        let meta = self.shared.coord.set_box_versioning(&name, versioning).await.map_err(|e| match e {
            candybox_core::coord::CoordError::NoNode(_) => NodeError::BoxNotFound(name.clone()),
            e => self.coord_error(e),
        })?;
        for s in 0..self.shard_count() {
            let n = name.clone();
            self.invoke_on(s, move |sh| async move {
                sh.boxes.by_name.borrow_mut().insert(n, meta);
                for ((uid, _), (_, e)) in sh.table.engines.borrow().iter() {
                    if *uid == meta.box_uid {
                        // Only Off -> on is refused, which was checked above.
                        let _ = e.set_versioning(versioning);
                    }
                }
            })
            .await?;
        }
        tracing::info!(box_name = %name, versioning = ?versioning, "box versioning set");
        Ok(Outcome::Reply(reply::box_reply(&info(&name, &meta))))
    }

    pub(super) async fn delete_box(self: &Rc<Self>, name: String, force: bool) -> Result<Outcome, NodeError> {
        let meta = self.shared.coord.get_box(&name).await.map_err(|e| self.coord_error(e))?;
        let meta = meta.ok_or_else(|| NodeError::BoxNotFound(name.clone()))?;
        self.check_home(&name, &meta).await?;
        // Fence: every shard refuses new operations on the Box and waits for those in flight,
        // so no put is acknowledged into it after the emptiness check below.
        let fenced = self.fence_box(meta.box_uid).await;
        if let Err(e) = fenced {
            self.unfence_box(meta.box_uid).await;
            return Err(e);
        }
        if !force {
            match self.box_is_empty(&name, meta).await {
                Ok(true) => {}
                Ok(false) => {
                    self.unfence_box(meta.box_uid).await;
                    return Err(NodeError::BoxNotEmpty(name));
                }
                Err(e) => {
                    self.unfence_box(meta.box_uid).await;
                    return Err(e);
                }
            }
        }
        // The descriptor goes first: a crash after it leaves only unreferenced files of this
        // incarnation (its directory is named by its uid, so a new Box of the name never sees them).
        self.shared.coord.delete_box(&name).await.map_err(|e| self.coord_error(e))?;
        for s in 0..self.shard_count() {
            let n = name.clone();
            self.invoke_on(s, move |sh| async move { sh.forget_box(&n, meta.box_uid).await }).await?;
        }
        let dir = self.shared.config.box_dir(&name, meta.box_uid);
        let _ = candybox_core::runtime::unblock(move || std::fs::remove_dir_all(dir)).await;
        tracing::info!(box_name = %name, force, "box deleted");
        Ok(Outcome::Reply(reply::done()))
    }

    /// Marks the Box incarnation `uid` as being deleted on every shard and waits (bounded) until
    /// no operation uses its partitions anywhere.
    ///
    /// # Errors
    /// `Busy` when operations are still running after `BOX_DELETE_DRAIN_MS`; queue errors.
    pub(super) async fn fence_box(self: &Rc<Self>, uid: BoxUid) -> Result<(), NodeError> {
        for s in 0..self.shard_count() {
            self.invoke_on(s, move |sh| async move {
                sh.boxes.deleting.borrow_mut().insert(uid);
                let deadline =
                    std::time::Instant::now() + std::time::Duration::from_millis(crate::limits::BOX_DELETE_DRAIN_MS);
                while sh.boxes.ops.borrow().contains_key(&uid) {
                    if std::time::Instant::now() > deadline {
                        return Err(NodeError::Busy {
                            reason: "operations on the box are still running",
                            retry_after_ms: crate::limits::QUEUE_FULL_RETRY_AFTER_MS,
                        });
                    }
                    candybox_core::runtime::sleep(std::time::Duration::from_millis(1)).await;
                }
                Ok(())
            })
            .await??;
        }
        Ok(())
    }

    /// Lifts the fence of [`Shard::fence_box`] on every shard (the delete did not happen).
    pub(super) async fn unfence_box(self: &Rc<Self>, uid: BoxUid) {
        for s in 0..self.shard_count() {
            if let Err(e) =
                self.invoke_on(s, move |sh| async move { sh.boxes.deleting.borrow_mut().remove(&uid) }).await
            {
                tracing::warn!(shard = s, box_uid = uid.0, error = %e, "could not lift a delete-box fence");
            }
        }
    }

    /// True when no partition of the Box holds a live Candy.
    pub(super) async fn box_is_empty(self: &Rc<Self>, name: &str, meta: BoxMeta) -> Result<bool, NodeError> {
        for p in 0..meta.partitions {
            let owner = self.owner(name, p);
            let n = name.to_string();
            let empty = self
                .invoke_on(owner, move |sh| async move {
                    let e = sh.open_engine(&n, meta, p).await?;
                    let page = e.list(&ListOptions { limit: 1, ..ListOptions::default() }).await?;
                    Ok::<bool, NodeError>(page.entries.is_empty())
                })
                .await??;
            if !empty {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Drops a deleted Box: its cache entry, and its engines and their files on this shard.
    pub async fn forget_box(&self, name: &str, uid: BoxUid) {
        self.boxes.by_name.borrow_mut().remove(name);
        self.forget_partitions(name, uid).await;
        // The old incarnation is closed and its descriptor gone: a new Box of this name is a new
        // incarnation, open to all.
        self.boxes.deleting.borrow_mut().remove(&uid);
    }
}
