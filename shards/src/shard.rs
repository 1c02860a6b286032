//! A shard: one core's executor and everything it owns — its partition engines, its Box cache,
//! its end of the cross-shard queues — in a plain `!Send` struct.
//!
//! Invariants:
//! - A partition's engine is opened only by its owner, `placement::shard_for(box, p, n)`; every
//!   other shard reaches it through [`Shard::invoke_on`].
//! - Cross-shard messages go through one bounded queue per shard ([`NodeShared::peers`]); a full
//!   queue is answered with `Busy` (never an unbounded buffer). Jobs carry owned values only
//!   (commands, `Bytes`, body channels), so payloads move by ownership, never by copy.
//! - No lock on the data path: the shard's state is `RefCell`s touched only by its own thread,
//!   never borrowed across an `.await`; the only shared writes are the shard's own metric slot.
//! - Errors reach the wire only through `reply::error_fields`.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    future::Future,
    pin::Pin,
    rc::Rc,
    sync::{atomic::Ordering::Relaxed, Arc},
};

use bytes::Bytes;
use candybox_core::{
    coord::{BoxMeta, LeaseEntry, RenameMarker},
    engine::{Engine, ListOptions, PutReply},
    error::Error as CoreError,
    limits,
    locator::CandyLocator,
    manifest::RenameIntent,
    runtime::{wall_ms, LocalMutex, SystemClock},
    storage::uring::UringStorage,
    types::{partition_for_key, BoxUid},
};
use candybox_wire::fb;

use crate::{
    command::{Command, KeyedOp, PartitionOp},
    config::Config,
    convert,
    coord::{CoordClient, LeaseAnswer},
    metrics::{NodeMetrics, ShardMetrics},
    placement::shard_for,
    reply::{self, BoxInfo, NodeError, Outcome, Topology},
};

/// Most spins skipped after fruitless ones (see [`Shard::poll_while_busy`]).
const SPIN_SKIP_MAX: u32 = 64;

/// A partition engine on the real file system.
pub type PartitionEngine = Engine<UringStorage>;

/// A job run on another shard: built there from the `Send` closure it was sent as.
pub type ShardJob = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// What every shard shares (`Send + Sync`, read-only after start, apart from atomics).
#[derive(Debug)]
pub struct NodeShared {
    /// The configuration.
    pub config: Config,
    /// Metric slots and the ready flag.
    pub metrics: Arc<NodeMetrics>,
    /// Ports and ids for the topology reply.
    pub topology: Topology,
    /// The control thread.
    pub coord: CoordClient,
    /// Each shard's queue, indexed by shard.
    pub peers: Vec<async_channel::Sender<ShardJob>>,
    /// Open client connections of the whole node.
    pub connections: std::sync::atomic::AtomicU32,
}

/// A set of Syrups, as a partition publishes them (referenced, condemned).
type SyrupSet = std::collections::BTreeSet<candybox_core::types::SyrupId>;

/// One shard's state. `!Send`: it lives and dies on its thread.
pub struct Shard {
    /// This shard's index.
    pub id: u16,
    /// Shared facts.
    pub shared: Arc<NodeShared>,
    boxes: RefCell<HashMap<String, BoxMeta>>,
    /// Open engines by Box incarnation and partition (looked up without building a name), with
    /// the Box's name.
    partitions: RefCell<HashMap<(BoxUid, u16), (String, PartitionEngine)>>,
    /// Partitions whose open found damaged files, with the evidence: their requests are answered
    /// `Quarantined` without opening them again (until a restart).
    quarantined: RefCell<HashMap<(String, u16), (BoxUid, String)>>,
    open_lock: LocalMutex,
    /// The referenced and condemned Syrup sets last published per partition (publication is
    /// skipped when unchanged: each one is a durable coordination write).
    published: RefCell<HashMap<(String, u16), (SyrupSet, SyrupSet)>>,
    /// Leases of the partitions this shard serves, by Box incarnation and partition: valid while
    /// their session is the store's current, connected one.
    leases: RefCell<HashMap<(BoxUid, u16), LeaseEntry>>,
    /// Outcomes of intents finalized here, newest last (at most `RENAME_OUTCOMES_REMEMBERED`).
    resolved: RefCell<std::collections::VecDeque<(u128, fb::RenameOutcome)>>,
    /// This shard's client connections, for the watchdog and shutdown.
    pub connections: crate::connection::Registry,
    /// Requests executing on this shard (its own connections' and forwarded ones).
    pub in_flight: Cell<usize>,
    /// Connections over `connections_max` being answered Busy right now.
    pub refusing: Cell<usize>,
    /// Boxes a delete-box is removing: their partitions refuse new operations on this shard.
    deleting: RefCell<std::collections::HashSet<BoxUid>>,
    /// Operations using a partition engine of each Box on this shard right now ([`EngineInUse`]).
    box_ops: Rc<RefCell<HashMap<BoxUid, usize>>>,
    /// Set when shutdown starts.
    pub stopping: Cell<bool>,
    /// Closed by the main thread at shutdown; every waiter wakes.
    shutdown: async_channel::Receiver<()>,
    /// When the last request arrived, and the parked poller to wake ([`Shard::poll_while_busy`]).
    last_request: Cell<std::time::Instant>,
    /// Requests noted so far (wrapping): the poller tells a spin that caught one from one that did not.
    arrivals: Cell<u64>,
    poller: RefCell<Option<std::task::Waker>>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("id", &self.id).finish()
    }
}

/// A partition engine in use by one operation. While any is alive on a shard, a delete-box of
/// its Box waits there, so that nothing is acknowledged into a Box after the delete checked it
/// was empty.
pub struct EngineInUse {
    engine: PartitionEngine,
    _op: BoxOp,
}

impl std::ops::Deref for EngineInUse {
    type Target = PartitionEngine;
    fn deref(&self) -> &PartitionEngine {
        &self.engine
    }
}

/// Counts one operation on a Box's partitions of this shard while alive.
struct BoxOp {
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

/// Counts a request in flight while alive.
pub struct InFlight {
    shard: Rc<Shard>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shard.in_flight.set(self.shard.in_flight.get() - 1);
        self.shard.metrics().in_flight.fetch_sub(1, Relaxed);
    }
}

impl Shard {
    /// A shard with nothing open yet.
    pub fn new(id: u16, shared: Arc<NodeShared>, shutdown: async_channel::Receiver<()>) -> Rc<Shard> {
        Rc::new(Shard {
            id,
            shared,
            boxes: RefCell::new(HashMap::new()),
            partitions: RefCell::new(HashMap::new()),
            quarantined: RefCell::new(HashMap::new()),
            open_lock: LocalMutex::new(),
            published: RefCell::new(HashMap::new()),
            leases: RefCell::new(HashMap::new()),
            resolved: RefCell::new(std::collections::VecDeque::new()),
            connections: crate::connection::Registry::default(),
            in_flight: Cell::new(0),
            refusing: Cell::new(0),
            deleting: RefCell::new(std::collections::HashSet::new()),
            box_ops: Rc::new(RefCell::new(HashMap::new())),
            stopping: Cell::new(false),
            shutdown,
            last_request: Cell::new(std::time::Instant::now()),
            arrivals: Cell::new(0),
            poller: RefCell::new(None),
        })
    }

    /// Notes a request's arrival (at `at`) for the spin-before-park poller, waking it when parked.
    pub fn note_request(&self, at: std::time::Instant) {
        self.last_request.set(at);
        self.arrivals.set(self.arrivals.get().wrapping_add(1));
        if let Some(w) = self.poller.borrow_mut().take() {
            w.wake();
        }
    }

    /// Spin-before-park. monoio parks the executor in `io_uring_enter` as soon as no task is
    /// ready, and every request that arrives next costs a wake-up. While requests arrived within
    /// the last `window`, this task stays ready (bouncing behind every other task through a
    /// partner task spawned once: no spawn per turn), so the executor keeps reaping completions
    /// without parking; once quiet, it waits for the next request without spinning.
    ///
    /// Adaptive: a spin that catches no request before it gives up cost a whole window for
    /// nothing, so the spins after it are skipped (parking at once), doubling the skip after
    /// every fruitless spin up to [`SPIN_SKIP_MAX`]; one that catches a request ends the skipping.
    /// Under steady load every spin pays; under sparse load spinning costs about nothing. Ends at
    /// shutdown; returns at once when `window` is zero (switched off).
    pub async fn poll_while_busy(self: Rc<Self>, window: std::time::Duration) {
        if window.is_zero() {
            return;
        }
        let bouncer = candybox_core::runtime::Bouncer::new();
        let mut skip = 0u32;
        let mut skipped = 0u32;
        while !self.stopping.get() {
            // Parked: wait for the next request.
            let arrivals = self.arrivals.get();
            std::future::poll_fn(|cx| {
                if self.stopping.get() || self.arrivals.get() != arrivals {
                    return std::task::Poll::Ready(());
                }
                *self.poller.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            })
            .await;
            if skipped < skip {
                skipped += 1;
                continue;
            }
            skipped = 0;
            // Spinning: until no request arrived for `window`.
            let first = self.arrivals.get();
            while !self.stopping.get() && self.last_request.get().elapsed() < window {
                bouncer.yield_now().await;
            }
            skip = if self.arrivals.get() != first { 0 } else { (skip * 2).clamp(1, SPIN_SKIP_MAX) };
        }
    }

    /// A receiver that fails (wakes) once shutdown starts.
    pub fn shutdown_signal(&self) -> async_channel::Receiver<()> {
        self.shutdown.clone()
    }

    /// This shard's metric slot.
    pub fn metrics(&self) -> &ShardMetrics {
        let slot = self.shared.metrics.shards.get(usize::from(self.id));
        #[expect(clippy::expect_used, reason = "one slot per shard is allocated at start")]
        slot.expect("metric slot of this shard")
    }

    /// The shard count.
    pub fn shard_count(&self) -> u16 {
        self.shared.peers.len() as u16
    }

    /// The owner of a partition.
    pub fn owner(&self, box_name: &str, partition: u16) -> u16 {
        shard_for(box_name, partition, self.shard_count())
    }

    /// Marks a request in flight until the guard drops.
    pub fn enter(self: &Rc<Self>) -> InFlight {
        self.in_flight.set(self.in_flight.get() + 1);
        self.metrics().in_flight.fetch_add(1, Relaxed);
        InFlight { shard: self.clone() }
    }

    /// Runs `f` on shard `target` (here when it is this shard) and returns its result.
    ///
    /// # Errors
    /// `Busy` when the target's queue is full; `ShuttingDown` when it is gone.
    pub async fn invoke_on<T, F, Fut>(self: &Rc<Self>, target: u16, f: F) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(f(self.clone()).await);
        }
        let Some(peer) = self.shared.peers.get(usize::from(target)) else {
            return Err(NodeError::Internal(format!("no shard {target}")));
        };
        let (tx, rx) = futures_channel::oneshot::channel();
        let job: ShardJob = Box::new(move |shard| {
            Box::pin(async move {
                let _guard = shard.enter();
                shard.metrics().forwards_received.fetch_add(1, Relaxed);
                let _ = tx.send(f(shard.clone()).await);
            })
        });
        match peer.try_send(job) {
            Ok(()) => {}
            Err(async_channel::TrySendError::Full(_)) => {
                return Err(NodeError::Busy {
                    reason: "cross-shard queue full",
                    retry_after_ms: crate::limits::QUEUE_FULL_RETRY_AFTER_MS,
                });
            }
            Err(async_channel::TrySendError::Closed(_)) => return Err(NodeError::ShuttingDown),
        }
        self.metrics().cross_shard_forwards.fetch_add(1, Relaxed);
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Receives and runs jobs from other shards until the queue closes.
    pub async fn serve_queue(self: Rc<Self>, rx: async_channel::Receiver<ShardJob>) {
        while let Ok(job) = rx.recv().await {
            self.metrics().queue_depth.store(rx.len() as u64, Relaxed);
            drop(monoio::spawn(job(self.clone())));
        }
    }

    fn coord_error(&self, e: candybox_core::coord::CoordError) -> NodeError {
        self.metrics().coord_errors.fetch_add(1, Relaxed);
        tracing::warn!(shard = self.id, error = %e, "coordination call failed");
        NodeError::Coord(e)
    }

    /// This node's id.
    pub fn node_id(&self) -> u16 {
        self.shared.config.node_id
    }

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
            self.boxes.borrow_mut().remove(box_name);
            return Err(NodeError::BoxNotFound(box_name.to_string()));
        };
        self.boxes.borrow_mut().insert(box_name.to_string(), fresh);
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
    async fn not_owner(&self, box_name: &str, node: u16, subject: &str) -> NodeError {
        let members = match self.shared.coord.members().await {
            Ok(m) => m,
            Err(e) => return self.coord_error(e),
        };
        match members.into_iter().find(|m| m.node == node) {
            Some(m) => NodeError::NotOwner { box_name: box_name.to_string(), node, owner: m.addr },
            None => NodeError::Unavailable(format!("{subject} is served by node {node}, which is not a live member")),
        }
    }

    /// The lease of a partition this shard serves, taken (with a new fencing token) when not
    /// held in the current session. Every mutation asks for it first.
    ///
    /// # Errors
    /// `Unavailable` while the coordination session is suspended or lost, or the lease cannot be
    /// taken now; `NotOwner` when another node holds it (this node then never mutates the
    /// partition).
    pub async fn lease(&self, box_name: &str, meta: BoxMeta, p: u16) -> Result<LeaseEntry, NodeError> {
        let watch = self.shared.coord.watch();
        if let Some(l) = self.leases.borrow().get(&(meta.box_uid, p)) {
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

    async fn take_lease(&self, box_name: &str, meta: BoxMeta, p: u16) -> Result<LeaseEntry, NodeError> {
        match self.shared.coord.take_lease(box_name, p, self.node_id()).await {
            Ok(LeaseAnswer::Held(l)) => {
                let renewed = self.leases.borrow_mut().insert((meta.box_uid, p), l);
                if renewed.is_none_or(|old| old.token != l.token) {
                    self.metrics().leases_taken.fetch_add(1, Relaxed);
                    // A new token: the published set must be written again under it.
                    self.published.borrow_mut().remove(&(box_name.to_string(), p));
                    tracing::info!(shard = self.id, box_name, partition = p, token = l.token, session = %format!("{:#x}", l.session), "partition lease taken");
                }
                Ok(l)
            }
            Ok(LeaseAnswer::Other { node }) => {
                self.leases.borrow_mut().remove(&(meta.box_uid, p));
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

    /// The descriptor of a Box: cached, else read from coordination (and cached).
    ///
    /// # Errors
    /// `BoxNotFound`; coordination failures.
    pub async fn box_meta(&self, name: &str) -> Result<BoxMeta, NodeError> {
        if let Some(m) = self.boxes.borrow().get(name) {
            return Ok(*m);
        }
        match self.shared.coord.get_box(name).await.map_err(|e| self.coord_error(e))? {
            Some(m) => {
                self.boxes.borrow_mut().insert(name.to_string(), m);
                Ok(m)
            }
            None => Err(NodeError::BoxNotFound(name.to_string())),
        }
    }

    /// The engine of `key`'s partition when a request can run on it right now, without waiting:
    /// the Box cached and served by this node, the partition this shard's and open, no delete of
    /// the Box under way, not shutting down. `None` sends the request down the ordinary path
    /// (which answers every refusal properly).
    pub fn engine_now(&self, box_name: &str, key: &[u8]) -> Option<PartitionEngine> {
        if self.stopping.get() {
            return None;
        }
        let meta = *self.boxes.borrow().get(box_name)?;
        if !self.serves(&meta) || self.deleting.borrow().contains(&meta.box_uid) {
            return None;
        }
        let p = partition_for_key(key, meta.partitions);
        if self.owner(box_name, p) != self.id {
            return None;
        }
        self.partitions.borrow().get(&(meta.box_uid, p)).map(|(_, e)| e.clone())
    }

    /// The engine of a partition this shard owns, opened on first use, for one operation.
    ///
    /// # Errors
    /// `Busy` while a delete-box is removing the Box; what the open reports (corruption, I/O).
    pub async fn engine(&self, box_name: &str, meta: BoxMeta, partition: u16) -> Result<EngineInUse, NodeError> {
        if self.deleting.borrow().contains(&meta.box_uid) {
            // Retryable: the delete may yet be refused (the Box not empty), and then it is back.
            return Err(NodeError::Busy {
                reason: "the box is being deleted",
                retry_after_ms: crate::limits::QUEUE_FULL_RETRY_AFTER_MS,
            });
        }
        // Counted before the open awaits anything, so a delete-box that starts now waits for it.
        *self.box_ops.borrow_mut().entry(meta.box_uid).or_insert(0) += 1;
        let op = BoxOp { box_uid: meta.box_uid, box_ops: self.box_ops.clone() };
        let engine = self.open_engine(box_name, meta, partition).await?;
        Ok(EngineInUse { engine, _op: op })
    }

    /// The engine of a partition this shard owns, opened on first use (no delete-box fence:
    /// recovery and delete-box's own emptiness check).
    ///
    /// # Errors
    /// What the open reports (corruption, I/O).
    async fn open_engine(&self, box_name: &str, meta: BoxMeta, partition: u16) -> Result<PartitionEngine, NodeError> {
        assert_eq!(self.owner(box_name, partition), self.id, "a partition is opened only by its owner");
        if let Some((_, e)) = self.partitions.borrow().get(&(meta.box_uid, partition)) {
            return Ok(e.clone());
        }
        // Boxed: opening (recovery) is a large future, and every request's future would
        // otherwise carry its size for the open that happens once.
        Box::pin(self.open_engine_slow(box_name, meta, partition)).await
    }

    async fn open_engine_slow(
        &self,
        box_name: &str,
        meta: BoxMeta,
        partition: u16,
    ) -> Result<PartitionEngine, NodeError> {
        let _open = self.open_lock.lock().await;
        if let Some((_, e)) = self.partitions.borrow().get(&(meta.box_uid, partition)) {
            return Ok(e.clone());
        }
        let stale: Vec<(BoxUid, u16)> = self
            .partitions
            .borrow()
            .iter()
            .filter(|((_, p), (b, _))| *p == partition && b == box_name)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            // A Box of the same name was deleted and created again: the old incarnation is gone.
            let old = self.partitions.borrow_mut().remove(&k);
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
        match self.quarantined.borrow().get(&key) {
            Some((uid, evidence)) if *uid == meta.box_uid => return Err(quarantined(evidence.clone())),
            _ => {}
        }
        let config = self.shared.config.engine_config(box_name, meta.box_uid, partition);
        // Engine::open creates the partition directory; the storage layer tolerates shards
        // creating sibling partitions (and so their shared parents) at the same time.
        let (engine, report) = match Engine::open(UringStorage::new(), Rc::new(SystemClock), config).await {
            Ok(opened) => opened,
            Err(CoreError::Corrupt(c)) => {
                // One damaged file takes its partition out of service, never the node.
                let evidence = crate::reply::evidence(&c);
                tracing::error!(shard = self.id, box_name, partition, error = %c, "partition quarantined: its files are damaged; every other partition is served (see candybox-inspect --verify)");
                self.quarantined.borrow_mut().insert(key, (meta.box_uid, evidence.clone()));
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
        self.partitions.borrow_mut().insert((meta.box_uid, partition), (box_name.to_string(), engine.clone()));
        self.metrics().partitions_open.store(self.partitions.borrow().len() as u64, Relaxed);
        Ok(engine)
    }

    /// Closes a partition that stopped after an I/O failure and opens it again (recovery replays
    /// its WAL, as after a crash): once the cause is gone (space freed) it serves again without a
    /// restart. An open that fails is logged; the partition's next request tries again.
    pub async fn reopen_failed(&self, box_name: &str, p: u16, uid: BoxUid) {
        let key = (uid, p);
        let engine = match self.partitions.borrow().get(&key) {
            Some((_, e)) if e.is_failed() => e.clone(),
            _ => return,
        };
        self.partitions.borrow_mut().remove(&key);
        engine.close().await;
        self.metrics().partitions_open.store(self.partitions.borrow().len() as u64, Relaxed);
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
        self.partitions.borrow().iter().map(|((u, p), (b, e))| (b.clone(), *p, *u, e.clone())).collect()
    }

    /// Opens every partition of every Box that this shard owns (start-up recovery).
    ///
    /// # Errors
    /// The first partition that fails to open, or coordination failures.
    pub async fn recover(&self) -> Result<usize, NodeError> {
        let boxes = self.shared.coord.list_boxes().await.map_err(|e| self.coord_error(e))?;
        let mut opened = 0;
        for (name, meta) in boxes {
            self.boxes.borrow_mut().insert(name.clone(), meta);
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

    /// Flushes and closes every engine (shutdown).
    pub async fn close_all(&self) {
        for (b, p, _, e) in self.open_partitions() {
            if let Err(err) = e.flush().await {
                tracing::warn!(shard = self.id, box_name = %b, partition = p, error = %err, "flush at shutdown failed");
            }
            e.close().await;
        }
        self.partitions.borrow_mut().clear();
    }

    /// Answers one request, forwarding it to the owning shard when needed.
    pub async fn handle(self: &Rc<Self>, cmd: Command) -> Outcome {
        match self.handle_inner(cmd).await {
            Ok(o) => o,
            Err(e) => Outcome::error(&e),
        }
    }

    async fn handle_inner(self: &Rc<Self>, cmd: Command) -> Result<Outcome, NodeError> {
        if self.stopping.get() {
            return Err(NodeError::ShuttingDown);
        }
        match cmd {
            // Rare requests run boxed: their futures are large, and an unboxed arm would make
            // every request's future (a get's too) as large as the largest, copied at each spawn.
            Command::CreateBox { name, partitions } => Box::pin(self.create_box(name, partitions)).await,
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
            Command::CopyOrRename { box_name, source_key, target_key, rename } => {
                let meta = self.served_meta(&box_name).await?;
                let put = Box::pin(self.copy_or_rename(box_name, meta, source_key, target_key, rename)).await?;
                Ok(Outcome::Reply(reply::put_done(&put)))
            }
        }
    }

    async fn create_box(self: &Rc<Self>, name: String, partitions: u16) -> Result<Outcome, NodeError> {
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
        let meta = BoxMeta { partitions, created_ms: wall_ms(), box_uid: BoxUid(rand::random::<u64>() | 1), node };
        match self.shared.coord.create_box(&name, meta).await {
            Ok(()) => {}
            Err(candybox_core::coord::CoordError::NodeExists(_)) => return Err(NodeError::BoxExists(name)),
            Err(e) => return Err(self.coord_error(e)),
        }
        self.boxes.borrow_mut().insert(name.clone(), meta);
        tracing::info!(box_name = %name, partitions, box_uid = meta.box_uid.0, node, "box created");
        Ok(Outcome::Reply(reply::box_reply(&info(&name, &meta))))
    }

    async fn delete_box(self: &Rc<Self>, name: String, force: bool) -> Result<Outcome, NodeError> {
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
    async fn fence_box(self: &Rc<Self>, uid: BoxUid) -> Result<(), NodeError> {
        for s in 0..self.shard_count() {
            self.invoke_on(s, move |sh| async move {
                sh.deleting.borrow_mut().insert(uid);
                let deadline =
                    std::time::Instant::now() + std::time::Duration::from_millis(crate::limits::BOX_DELETE_DRAIN_MS);
                while sh.box_ops.borrow().contains_key(&uid) {
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
    async fn unfence_box(self: &Rc<Self>, uid: BoxUid) {
        for s in 0..self.shard_count() {
            if let Err(e) = self.invoke_on(s, move |sh| async move { sh.deleting.borrow_mut().remove(&uid) }).await {
                tracing::warn!(shard = s, box_uid = uid.0, error = %e, "could not lift a delete-box fence");
            }
        }
    }

    /// True when no partition of the Box holds a live Candy.
    async fn box_is_empty(self: &Rc<Self>, name: &str, meta: BoxMeta) -> Result<bool, NodeError> {
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
        self.boxes.borrow_mut().remove(name);
        self.published.borrow_mut().retain(|(b, _), _| b != name);
        let doomed: Vec<(u16, PartitionEngine)> = self
            .partitions
            .borrow()
            .iter()
            .filter(|((u, _), _)| *u == uid)
            .map(|((_, p), (_, e))| (*p, e.clone()))
            .collect();
        for (p, engine) in doomed {
            self.partitions.borrow_mut().remove(&(uid, p));
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
            .quarantined
            .borrow()
            .iter()
            .filter(|((b, _), (u, _))| b == name && *u == uid)
            .map(|((_, p), _)| *p)
            .collect();
        for p in lifted {
            self.quarantined.borrow_mut().remove(&(name.to_string(), p));
            self.shared.metrics.unquarantine(name, p);
        }
        self.metrics().partitions_open.store(self.partitions.borrow().len() as u64, Relaxed);
        // The old incarnation is closed and its descriptor gone: a new Box of this name is a new
        // incarnation, open to all.
        self.deleting.borrow_mut().remove(&uid);
    }

    /// Runs a per-key operation on this shard, the partition's owner.
    async fn keyed(
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
            KeyedOp::Get { range } => {
                let g = engine.get(&key, range).await?;
                let reply = reply::get_done(&g.locator, g.first, g.len);
                return Ok(Outcome::Get { reply, len: g.len, body: g.body });
            }
            KeyedOp::Head => reply::head(&engine.head(&key).await?),
            KeyedOp::Delete => {
                engine.delete(&key).await?;
                reply::done()
            }
            KeyedOp::CreateUpload { opts } => reply::upload_created(Box::pin(engine.create_upload(&key, opts)).await?),
            KeyedOp::UploadPart { upload_id, part_number, size, body } => {
                self.check_upload_key(&engine, upload_id, &key)?;
                let part = Box::pin(engine.upload_part(upload_id, part_number, size, body)).await?;
                reply::put_done(&PutReply { size: part.size, checksum: part.checksum, hlc: Default::default() })
            }
            KeyedOp::CompleteUpload { upload_id, parts } => {
                self.check_upload_key(&engine, upload_id, &key)?;
                reply::put_done(&Box::pin(engine.complete_upload(upload_id, &parts)).await?)
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
            KeyedOp::GetLocator => {
                let (l, _) = engine.get_locator(&key).await?;
                reply::locator_reply(&convert::locator_to_wire(&l, meta.box_uid), p)
            }
            KeyedOp::PrepareRename { target_key } => {
                let tp = partition_for_key(&target_key, meta.partitions);
                let (intent, wire) = Box::pin(self.prepare_rename(&engine, meta, &key, &target_key, tp)).await?;
                reply::rename_prepared(intent.token, &wire, intent.source_hlc, p, tp)
            }
            KeyedOp::ZeroCopyPut { locator, rename_token, source_partition } => {
                let put = Box::pin(self.zero_copy_put(
                    &engine,
                    box_name,
                    meta,
                    p,
                    &key,
                    &locator,
                    rename_token,
                    source_partition,
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
    fn check_upload_key(&self, engine: &PartitionEngine, upload_id: u64, key: &[u8]) -> Result<(), NodeError> {
        match engine.list_uploads().into_iter().find(|u| u.id == upload_id) {
            Some(u) if u.key == key => Ok(()),
            _ => Err(NodeError::Engine(CoreError::NotFound)),
        }
    }

    async fn partitioned(&self, box_name: &str, meta: BoxMeta, p: u16, op: PartitionOp) -> Result<Outcome, NodeError> {
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
        }))
    }

    async fn prepare_rename(
        &self,
        engine: &PartitionEngine,
        meta: BoxMeta,
        source_key: &[u8],
        target_key: &[u8],
        target_partition: u16,
    ) -> Result<(RenameIntent, Bytes), NodeError> {
        let (intent, bytes) = engine.prepare_rename(source_key, target_key, target_partition).await?;
        let l = CandyLocator::decode(&bytes).map_err(|e| NodeError::Internal(format!("own locator: {e}")))?;
        self.metrics().rename_intents_pending.fetch_add(1, Relaxed);
        Ok((intent, convert::locator_to_wire(&l, meta.box_uid)))
    }

    /// The destination's half of a copy or rename: verify and write the relayed locator, publish
    /// this partition's references, then (for a rename) write the rendezvous marker.
    #[expect(clippy::too_many_arguments, reason = "every argument is one fact of the relay")]
    async fn zero_copy_put(
        self: &Rc<Self>,
        engine: &PartitionEngine,
        box_name: &str,
        meta: BoxMeta,
        p: u16,
        key: &[u8],
        wire: &[u8],
        rename_token: Option<u128>,
        source_partition: Option<u16>,
    ) -> Result<PutReply, NodeError> {
        let l = convert::locator_from_wire(wire, meta.box_uid, self.shared.config.frame_body_bytes_max)?;
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
        let put = engine.zero_copy_put(key, &l.encode()).await?;
        // Durable now; the references must be published before the marker lets the source go.
        self.publish_refs(box_name, p, engine, true).await?;
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
        if !always && self.published.borrow().get(&key) == Some(&published) {
            return Ok(());
        }
        let (refs, condemned) = &published;
        self.shared.coord.put_refs(box_name, p, lease.token, refs, condemned).await.map_err(|e| self.coord_error(e))?;
        self.published.borrow_mut().insert(key, published);
        Ok(())
    }

    /// The outcome of an intent finalized here recently, if remembered.
    fn resolved_outcome(&self, token: u128) -> Option<fb::RenameOutcome> {
        self.resolved.borrow().iter().rev().find(|(t, _)| *t == token).map(|(_, o)| *o)
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
            let mut resolved = self.resolved.borrow_mut();
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

    /// Copy or rename run by the node: one engine call when both keys share a partition, else
    /// the relay's durable steps (SPEC §7) across the two owners.
    async fn copy_or_rename(
        self: &Rc<Self>,
        box_name: String,
        meta: BoxMeta,
        source_key: Vec<u8>,
        target_key: Vec<u8>,
        rename: bool,
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
                    let r = if rename {
                        e.rename(&source_key, &target_key).await
                    } else {
                        e.copy(&source_key, &target_key).await
                    };
                    r.map_err(NodeError::from)
                })
                .await?;
        }
        if !rename {
            let (b, k) = (box_name.clone(), source_key.clone());
            let wire = self
                .invoke_on(source_owner, move |sh| async move {
                    let e = sh.engine(&b, meta, sp).await?;
                    let (l, _) = e.get_locator(&k).await?;
                    Ok::<Bytes, NodeError>(convert::locator_to_wire(&l, meta.box_uid))
                })
                .await??;
            let b = box_name.clone();
            return self
                .invoke_on(target_owner, move |sh| async move {
                    let e = sh.engine(&b, meta, tp).await?;
                    sh.zero_copy_put(&e, &b, meta, tp, &target_key, &wire, None, None).await
                })
                .await?;
        }
        let (b, s, t) = (box_name.clone(), source_key.clone(), target_key.clone());
        let (token, wire) = self
            .invoke_on(source_owner, move |sh| async move {
                sh.lease(&b, meta, sp).await?;
                let e = sh.engine(&b, meta, sp).await?;
                let (intent, wire) = sh.prepare_rename(&e, meta, &s, &t, tp).await?;
                Ok::<(u128, Bytes), NodeError>((intent.token, wire))
            })
            .await??;
        let (b, t) = (box_name.clone(), target_key.clone());
        let put = self
            .invoke_on(target_owner, move |sh| async move {
                let e = sh.engine(&b, meta, tp).await?;
                sh.zero_copy_put(&e, &b, meta, tp, &t, &wire, Some(token), Some(sp)).await
            })
            .await??;
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

fn info(name: &str, m: &BoxMeta) -> BoxInfo {
    BoxInfo {
        name: name.to_string(),
        partitions: m.partitions,
        created_ms: m.created_ms,
        box_uid: m.box_uid.0,
        node: m.node,
    }
}
