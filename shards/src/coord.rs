//! Coordination on the node's control thread, and the typed calls shards make to it.
//!
//! Invariants:
//! - The store (`core::coord::Coordination`, blocking) lives on one control thread, never on a
//!   data-path core. Shards send it jobs over one bounded channel ([`COORD_QUEUE_MAX`]) and await
//!   a oneshot reply, so a slow store delays only the requests that need it.
//! - Every entry is encoded by the one encoder of its kind ([`codec`]).
//! - The layout is core's (`core::coord::paths`): `boxes/<box>/meta`,
//!   `boxes/<box>/partitions/<p>/refs`, `boxes/<box>/renames/<token>`.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

use candybox_core::{
    coord::{
        paths, BoxMeta, CoordError, Coordination, CreateMode, Fence, MemberEntry, RenameMarker, SessionWatch, Version,
    },
    types::SyrupId,
};

use crate::limits::COORD_QUEUE_MAX;
pub use candybox_shards::lease::{register_member, take_lease, LeaseAnswer};

/// How often the control thread checks its session when idle (re-registers the member entry of
/// a new session).
const KEEPALIVE_MS: u64 = 250;

/// The fence of a partition's lease: its persistent entry at the lease's token.
pub fn partition_fence(box_name: &str, partition: u16, token: Version) -> Fence {
    Fence { path: paths::partition(box_name, partition), version: token }
}

/// One call to run on the control thread.
pub type CoordJob = Box<dyn FnOnce(&mut dyn Coordination) + Send>;

/// A shard's handle on the control thread (`Send`, cheap to clone).
#[derive(Clone, Debug)]
pub struct CoordClient {
    tx: async_channel::Sender<CoordJob>,
    /// This node's registration, renewed in every session (set once the ports are bound).
    member: Arc<Mutex<Option<Registration>>>,
    /// The store's session, read by shards before every mutation.
    watch: Arc<SessionWatch>,
}

/// Starts the control thread around `store`.
///
/// # Returns
/// The client and the thread, which ends once every client is dropped.
///
/// # Errors
/// When the thread cannot be spawned.
pub fn start(mut store: Box<dyn Coordination>) -> std::io::Result<(CoordClient, JoinHandle<()>)> {
    let (tx, rx) = async_channel::bounded::<CoordJob>(COORD_QUEUE_MAX);
    let member: Arc<Mutex<Option<Registration>>> = Arc::new(Mutex::new(None));
    let watch = store.session_watch();
    let registered = member.clone();
    let thread = std::thread::Builder::new().name("candybox-control".into()).spawn(move || {
        let mut last_keepalive = std::time::Instant::now();
        while let Ok(job) = rx.recv_blocking() {
            job(store.as_mut());
            if last_keepalive.elapsed() >= std::time::Duration::from_millis(KEEPALIVE_MS) {
                store.keepalive();
                last_keepalive = std::time::Instant::now();
            }
            keep_registered(store.as_mut(), &registered);
        }
    })?;
    // Wakes the control thread when idle, so a new session is noticed (and registered) without a
    // request; ends once the queue is closed.
    let ticker = tx.clone();
    std::thread::Builder::new().name("candybox-control-tick".into()).spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(KEEPALIVE_MS));
        let noop: CoordJob = Box::new(|_| {});
        if let Err(async_channel::TrySendError::Closed(_)) = ticker.try_send(noop) {
            return;
        }
    })?;
    Ok((CoordClient { tx, member, watch }, thread))
}

/// This node's registration: its member entry, and the session it was last registered in.
#[derive(Debug, Clone)]
struct Registration {
    entry: MemberEntry,
    /// The session of this node's last registration (this process's, or read from
    /// `session_file` at start): an entry of that session is this node's own and may be replaced;
    /// any other is another live process with this node id, never taken over.
    previous: Option<u64>,
    /// Where the last registered session is remembered across restarts (in the data directory,
    /// which one process at a time holds).
    session_file: std::path::PathBuf,
    /// The session this process registered in, once it has: the control loop registers again
    /// only when the store's session differs (the start-up registration counts, so the entry is
    /// written, and `member registered` logged, once per session).
    registered_in: Option<u64>,
}

fn lock_member(m: &Mutex<Option<Registration>>) -> std::sync::MutexGuard<'_, Option<Registration>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers in the current session and remembers it (in memory and in the session file).
fn register_now(store: &mut dyn Coordination, member: &Mutex<Option<Registration>>) -> Result<u64, CoordError> {
    let Some(reg) = lock_member(member).clone() else { return Err(CoordError::Unavailable("not registered".into())) };
    let session = store.session_id()?;
    register_member(store, &MemberEntry { session, ..reg.entry.clone() }, reg.previous)?;
    if let Some(r) = lock_member(member).as_mut() {
        r.previous = Some(session);
        r.registered_in = Some(session);
    }
    if let Err(e) = std::fs::write(&reg.session_file, format!("{session:016x}\n")) {
        tracing::warn!(file = %reg.session_file.display(), error = %e, "could not remember the coordination session");
    }
    tracing::info!(node = reg.entry.node, session = %format!("{session:#x}"), "member registered");
    Ok(session)
}

/// Registers `members/<node>` in the current session when it is not yet (a new node, or a new
/// session after the last one expired).
fn keep_registered(store: &mut dyn Coordination, member: &Mutex<Option<Registration>>) {
    let registered_in = match lock_member(member).as_ref() {
        None => return,
        Some(r) => r.registered_in,
    };
    let session = match store.session_id() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "coordination session unavailable");
            return;
        }
    };
    if registered_in == Some(session) {
        return;
    }
    if let Err(e) = register_now(store, member) {
        tracing::warn!(error = %e, "could not register the member entry; retrying");
    }
}

impl CoordClient {
    /// Stops the control thread once the calls already queued have run (shutdown).
    pub fn close(&self) {
        self.tx.close();
    }

    /// The store's session state (atomics; cheap).
    pub fn watch(&self) -> &SessionWatch {
        &self.watch
    }

    /// A shared handle on the store's session state (for the metrics thread).
    pub fn watch_handle(&self) -> Arc<SessionWatch> {
        self.watch.clone()
    }

    /// Registers this node (`members/<node>`) now and in every later session; `session_file`
    /// remembers the last registered session across restarts.
    ///
    /// # Errors
    /// `NodeExists` when another session holds this node id; store failures.
    pub async fn register(&self, entry: MemberEntry, session_file: std::path::PathBuf) -> Result<(), CoordError> {
        let previous = std::fs::read_to_string(&session_file).ok().and_then(|t| u64::from_str_radix(t.trim(), 16).ok());
        *lock_member(&self.member) = Some(Registration { entry, previous, session_file, registered_in: None });
        let member = self.member.clone();
        self.call(move |s| register_now(s, &member).map(|_| ())).await
    }

    /// Takes (or confirms) a partition's lease for `node` ([`take_lease`]).
    ///
    /// # Errors
    /// Store failures.
    pub async fn take_lease(&self, box_name: &str, partition: u16, node: u16) -> Result<LeaseAnswer, CoordError> {
        let name = box_name.to_string();
        self.call(move |s| take_lease(s, &name, partition, node)).await
    }

    /// Every live member, by node id (undecodable entries are skipped).
    ///
    /// # Errors
    /// Store failures.
    pub async fn members(&self) -> Result<Vec<MemberEntry>, CoordError> {
        self.call(|s| {
            let names = match s.children("members") {
                Ok(n) => n,
                Err(CoordError::NoNode(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                if let Some((bytes, _)) = s.get(&format!("members/{name}"))? {
                    if let Ok(m) = MemberEntry::decode(&bytes) {
                        out.push(m);
                    }
                }
            }
            out.sort_by_key(|m| m.node);
            Ok(out)
        })
        .await
    }

    /// Runs `f` on the control thread and returns its result.
    ///
    /// # Errors
    /// What `f` returns; `Unavailable` when the control thread is gone.
    pub async fn call<T, F>(&self, f: F) -> Result<T, CoordError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Coordination) -> Result<T, CoordError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = futures_channel::oneshot::channel();
        let job: CoordJob = Box::new(move |store| {
            let _ = reply_tx.send(f(store));
        });
        if self.tx.send(job).await.is_err() {
            return Err(CoordError::Unavailable("control thread stopped".into()));
        }
        reply_rx.await.unwrap_or_else(|_| Err(CoordError::Unavailable("control thread dropped a call".into())))
    }

    /// The descriptor of a Box, if it exists.
    ///
    /// # Errors
    /// Store failures; `Store` for an undecodable entry.
    pub async fn get_box(&self, name: &str) -> Result<Option<BoxMeta>, CoordError> {
        let path = paths::box_meta(name);
        self.call(move |s| match s.get(&path)? {
            Some((bytes, _)) => codec::decode_box_meta(&bytes).map(Some),
            None => Ok(None),
        })
        .await
    }

    /// Creates a Box's descriptor.
    ///
    /// # Errors
    /// `NodeExists` when the Box exists; store failures.
    pub async fn create_box(&self, name: &str, meta: BoxMeta) -> Result<(), CoordError> {
        let path = paths::box_meta(name);
        self.call(move |s| s.create(&path, &codec::encode_box_meta(&meta), CreateMode::Persistent).map(|_| ())).await
    }

    /// Sets a Box's versioning state: a conditional write of its descriptor (read, changed, written
    /// only if nobody wrote it meanwhile, retried a few times), so concurrent changes by several
    /// nodes or gateways never lose one. Returns the new descriptor.
    ///
    /// # Errors
    /// `NoNode` when the Box does not exist; `BadVersion` when it kept changing; store failures.
    pub async fn set_box_versioning(
        &self,
        name: &str,
        versioning: candybox_core::keyspace::Versioning,
    ) -> Result<BoxMeta, CoordError> {
        let path = paths::box_meta(name);
        self.call(move |s| {
            let mut last = None;
            for _ in 0..8 {
                let Some((bytes, version)) = s.get(&path)? else { return Err(CoordError::NoNode(path.clone())) };
                let mut meta = codec::decode_box_meta(&bytes)?;
                meta.versioning = versioning;
                match s.set(&path, &codec::encode_box_meta(&meta), Some(version)) {
                    Ok(_) => return Ok(meta),
                    Err(e @ CoordError::BadVersion { .. }) => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
            Err(last.unwrap_or_else(|| CoordError::NoNode(path.clone())))
        })
        .await
    }

    /// Deletes a Box's whole subtree (descriptor, published refs, markers).
    ///
    /// # Errors
    /// Store failures.
    pub async fn delete_box(&self, name: &str) -> Result<(), CoordError> {
        let path = paths::box_root(name);
        self.call(move |s| s.delete_tree(&path)).await
    }

    /// Every Box with its descriptor, by name.
    ///
    /// # Errors
    /// Store failures; `Store` for an undecodable descriptor.
    pub async fn list_boxes(&self) -> Result<Vec<(String, BoxMeta)>, CoordError> {
        self.call(|s| {
            let names = match s.children(paths::BOXES) {
                Ok(n) => n,
                Err(CoordError::NoNode(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                // A Box whose descriptor is missing is half-created or half-deleted: not listed.
                if let Some((bytes, _)) = s.get(&paths::box_meta(&name))? {
                    out.push((name, codec::decode_box_meta(&bytes)?));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Publishes a partition's referenced-Syrup set and the Syrups it condemned, fenced by the
    /// partition's lease `token`.
    ///
    /// # Errors
    /// `Fenced` when the lease moved on; store failures.
    pub async fn put_refs(
        &self,
        box_name: &str,
        partition: u16,
        token: Version,
        refs: &BTreeSet<SyrupId>,
        condemned: &BTreeSet<SyrupId>,
    ) -> Result<(), CoordError> {
        let refs_path = paths::partition_refs(box_name, partition);
        let condemned_path = paths::partition_condemned(box_name, partition);
        let fence = partition_fence(box_name, partition, token);
        let (refs, condemned) = (codec::encode_refs(refs), codec::encode_refs(condemned));
        self.call(move |s| {
            s.put_fenced(&fence, &refs_path, &refs)?;
            s.put_fenced(&fence, &condemned_path, &condemned).map(|_| ())
        })
        .await
    }

    /// The union of the published reference sets, and of the condemned sets, of every partition
    /// of the Box but `except`.
    ///
    /// # Errors
    /// Store failures; `Store` for an undecodable set (the caller then skips Syrup GC: any doubt
    /// keeps the Syrup).
    pub async fn foreign_refs(
        &self,
        box_name: &str,
        partitions: u16,
        except: u16,
    ) -> Result<(BTreeSet<SyrupId>, BTreeSet<SyrupId>), CoordError> {
        let name = box_name.to_string();
        self.call(move |s| {
            let (mut refs, mut condemned) = (BTreeSet::new(), BTreeSet::new());
            for p in (0..partitions).filter(|p| *p != except) {
                if let Some((bytes, _)) = s.get(&paths::partition_refs(&name, p))? {
                    refs.extend(codec::decode_refs(&bytes)?);
                }
                if let Some((bytes, _)) = s.get(&paths::partition_condemned(&name, p))? {
                    condemned.extend(codec::decode_refs(&bytes)?);
                }
            }
            Ok((refs, condemned))
        })
        .await
    }

    /// Writes the rendezvous marker of a rename, fenced by the destination partition's lease.
    ///
    /// # Errors
    /// `Fenced` when that lease moved on; store failures.
    pub async fn put_marker(
        &self,
        box_name: &str,
        token: u128,
        marker: RenameMarker,
        lease_token: Version,
    ) -> Result<(), CoordError> {
        let path = paths::rename_marker(box_name, token);
        let fence = partition_fence(box_name, marker.target_partition, lease_token);
        self.call(move |s| s.put_fenced(&fence, &path, &codec::encode_marker(&marker)).map(|_| ())).await
    }

    /// The rendezvous marker of a rename, if written.
    ///
    /// # Errors
    /// Store failures; `Store` for an undecodable marker.
    pub async fn get_marker(&self, box_name: &str, token: u128) -> Result<Option<RenameMarker>, CoordError> {
        let path = paths::rename_marker(box_name, token);
        self.call(move |s| match s.get(&path)? {
            Some((bytes, _)) => codec::decode_marker(&bytes).map(Some),
            None => Ok(None),
        })
        .await
    }

    /// Deletes a rendezvous marker (an absent one is fine), fenced by the lease `lease_token` of
    /// the partition `partition` that consumes it.
    ///
    /// # Errors
    /// `Fenced` when that lease moved on; store failures.
    pub async fn delete_marker(
        &self,
        box_name: &str,
        token: u128,
        partition: u16,
        lease_token: Version,
    ) -> Result<(), CoordError> {
        let path = paths::rename_marker(box_name, token);
        let fence = partition_fence(box_name, partition, lease_token);
        self.call(move |s| s.delete_fenced(&fence, &path)).await
    }

    /// Every rendezvous marker of a Box (undecodable ones are skipped with a warning).
    ///
    /// # Errors
    /// Store failures.
    pub async fn list_markers(&self, box_name: &str) -> Result<Vec<(u128, RenameMarker)>, CoordError> {
        let name = box_name.to_string();
        self.call(move |s| {
            let children = match s.children(&paths::renames(&name)) {
                Ok(c) => c,
                Err(CoordError::NoNode(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            for child in children {
                let Ok(token) = u128::from_str_radix(&child, 16) else { continue };
                if let Some((bytes, _)) = s.get(&format!("{}/{child}", paths::renames(&name)))? {
                    match codec::decode_marker(&bytes) {
                        Ok(m) => out.push((token, m)),
                        Err(e) => tracing::warn!(box_name = %name, marker = %child, error = %e, "skipping undecodable rename marker"),
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

/// The encodings of coordination entries: core's (`core::coord`, docs/format.md), with decode
/// errors turned into store errors that name the entry.
pub mod codec {
    use std::collections::BTreeSet;

    use candybox_core::{
        coord::{self, BoxMeta, CoordError, RenameMarker},
        error::DecodeError,
        types::SyrupId,
    };

    fn bad(what: &str, e: DecodeError) -> CoordError {
        CoordError::Store(format!("undecodable {what} entry: {e}"))
    }

    /// `boxes/<box>/meta`.
    pub fn encode_box_meta(m: &BoxMeta) -> Vec<u8> {
        m.encode()
    }

    /// Decodes `boxes/<box>/meta`.
    ///
    /// # Errors
    /// `Store` for bytes that are not an entry.
    pub fn decode_box_meta(b: &[u8]) -> Result<BoxMeta, CoordError> {
        let m = BoxMeta::decode(b).map_err(|e| bad("box meta", e))?;
        if m.partitions == 0 {
            return Err(CoordError::Store("box meta with 0 partitions".into()));
        }
        Ok(m)
    }

    /// `boxes/<box>/renames/<token>`.
    pub fn encode_marker(m: &RenameMarker) -> Vec<u8> {
        m.encode()
    }

    /// Decodes `boxes/<box>/renames/<token>`.
    ///
    /// # Errors
    /// `Store` for bytes that are not an entry.
    pub fn decode_marker(b: &[u8]) -> Result<RenameMarker, CoordError> {
        RenameMarker::decode(b).map_err(|e| bad("rename marker", e))
    }

    /// `boxes/<box>/partitions/<p>/refs`.
    pub fn encode_refs(refs: &BTreeSet<SyrupId>) -> Vec<u8> {
        coord::encode_refs(refs)
    }

    /// Decodes a published set.
    ///
    /// # Errors
    /// `Store` for bytes that are not a set.
    pub fn decode_refs(b: &[u8]) -> Result<BTreeSet<SyrupId>, CoordError> {
        coord::decode_refs(b).map_err(|e| bad("refs", e))
    }
}

/// A coordination store in memory: `coordination = "memory"`. Not durable (everything is lost at
/// exit); for tests and experiments. Ephemeral entries behave as persistent ones for the life of
/// the process (its only session).
#[derive(Debug)]
pub struct MemoryCoordination {
    entries: BTreeMap<String, (Vec<u8>, Version)>,
    watch: std::sync::Arc<candybox_core::coord::SessionWatch>,
}

impl Default for MemoryCoordination {
    fn default() -> Self {
        MemoryCoordination {
            entries: BTreeMap::new(),
            watch: candybox_core::coord::SessionWatch::new(rand::random::<u64>() | 1),
        }
    }
}

fn check_path(path: &str) -> Result<(), CoordError> {
    if path.is_empty() || path.split('/').any(str::is_empty) {
        return Err(CoordError::BadPath(path.into()));
    }
    Ok(())
}

impl MemoryCoordination {
    fn has_children(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.entries.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

impl Coordination for MemoryCoordination {
    fn session_id(&mut self) -> Result<u64, CoordError> {
        Ok(self.watch.session())
    }

    fn session_watch(&self) -> std::sync::Arc<candybox_core::coord::SessionWatch> {
        self.watch.clone()
    }

    fn get(&mut self, path: &str) -> Result<Option<(Vec<u8>, Version)>, CoordError> {
        check_path(path)?;
        Ok(self.entries.get(path).cloned())
    }

    fn create(&mut self, path: &str, data: &[u8], _mode: CreateMode) -> Result<Version, CoordError> {
        check_path(path)?;
        if self.entries.contains_key(path) {
            return Err(CoordError::NodeExists(path.into()));
        }
        let mut at = 0;
        while let Some(i) = path.get(at..).and_then(|rest| rest.find('/')) {
            let parent = path.get(..at + i).unwrap_or_default().to_string();
            self.entries.entry(parent).or_insert_with(|| (Vec::new(), 0));
            at += i + 1;
        }
        self.entries.insert(path.into(), (data.to_vec(), 0));
        Ok(0)
    }

    fn set(&mut self, path: &str, data: &[u8], expected: Option<Version>) -> Result<Version, CoordError> {
        check_path(path)?;
        let e = self.entries.get_mut(path).ok_or_else(|| CoordError::NoNode(path.into()))?;
        if let Some(x) = expected {
            if x != e.1 {
                return Err(CoordError::BadVersion { path: path.into(), expected: x, found: e.1 });
            }
        }
        e.0 = data.to_vec();
        e.1 += 1;
        Ok(e.1)
    }

    fn delete(&mut self, path: &str, expected: Option<Version>) -> Result<(), CoordError> {
        check_path(path)?;
        let version = self.entries.get(path).ok_or_else(|| CoordError::NoNode(path.into()))?.1;
        if let Some(x) = expected {
            if x != version {
                return Err(CoordError::BadVersion { path: path.into(), expected: x, found: version });
            }
        }
        if self.has_children(path) {
            return Err(CoordError::NotEmpty(path.into()));
        }
        self.entries.remove(path);
        Ok(())
    }

    fn children(&mut self, path: &str) -> Result<Vec<String>, CoordError> {
        check_path(path)?;
        if !self.entries.contains_key(path) {
            return Err(CoordError::NoNode(path.into()));
        }
        let prefix = format!("{path}/");
        Ok(self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| k.get(prefix.len()..).filter(|rest| !rest.contains('/')).map(str::to_string))
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use candybox_core::types::BoxUid;

    use super::*;

    #[test]
    fn memory_store_keeps_the_contract_basics() {
        let mut s = MemoryCoordination::default();
        assert_eq!(s.create("boxes/a/meta", b"x", CreateMode::Persistent).unwrap(), 0);
        assert!(matches!(s.create("boxes/a/meta", b"x", CreateMode::Persistent), Err(CoordError::NodeExists(_))));
        assert_eq!(s.children("boxes").unwrap(), vec!["a".to_string()]);
        assert!(matches!(s.set("boxes/a/meta", b"y", Some(5)), Err(CoordError::BadVersion { .. })));
        assert_eq!(s.set("boxes/a/meta", b"y", Some(0)).unwrap(), 1);
        assert!(matches!(s.delete("boxes/a", None), Err(CoordError::NotEmpty(_))));
        s.delete_tree("boxes/a").unwrap();
        assert!(s.get("boxes/a/meta").unwrap().is_none());
        assert!(matches!(s.get("boxes//x"), Err(CoordError::BadPath(_))));
    }

    #[test]
    fn entries_round_trip() {
        let m = BoxMeta { partitions: 8, created_ms: 5, box_uid: BoxUid(77), node: 1, versioning: Default::default() };
        assert_eq!(codec::decode_box_meta(&codec::encode_box_meta(&m)).unwrap(), m);
        let r = RenameMarker { source_partition: 1, target_partition: 2, target_key: b"k".to_vec(), created_ms: 9 };
        assert_eq!(codec::decode_marker(&codec::encode_marker(&r)).unwrap(), r);
        let refs: BTreeSet<SyrupId> = [SyrupId(3), SyrupId(1 << 50)].into_iter().collect();
        assert_eq!(codec::decode_refs(&codec::encode_refs(&refs)).unwrap(), refs);
        assert!(codec::decode_refs(&[1, 9]).is_err());
    }
}
