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

use candybox_core::{
    coord::{BoxMeta, LeaseEntry, RenameMarker},
    engine::{Engine, ListOptions, PutReply, Versioning},
    error::Error as CoreError,
    limits,
    locator::CandyLocator,
    log::{
        recover::{LogDamage, Replay},
        CommitLog,
    },
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

mod boxes;
mod dispatch;
mod partitions;
mod relay;

/// Idle spinning after which a spin still going is judged (and stopped when it is not paying).
const SPIN_JUDGE_IDLE: std::time::Duration = std::time::Duration::from_micros(500);
/// How long spinning rests after a spin that did not pay, at first and at most (doubling after
/// each such spin; see [`Shard::poll_while_busy`]).
const SPIN_REST_MIN: std::time::Duration = std::time::Duration::from_millis(1);
const SPIN_REST_MAX: std::time::Duration = std::time::Duration::from_millis(64);
/// A spin turn at most this long ran nothing but the bounce and the ring's submit: it counts as
/// idle spinning (`candybox_shard_spin_seconds_total`). A turn in which a request was handled
/// takes longer.
const SPIN_TURN_IDLE_MAX: std::time::Duration = std::time::Duration::from_micros(3);
/// What a spin saves per batch of requests it catches, in CPU: a parked shard's wake-up costs
/// more (tens of µs here), but with the ring's cooperative task running a wake-up serves several
/// completions; measured here, spinning at 40k requests/s saved about 2 µs of CPU per request.
/// A spin pays when its catches saved at least its idle time.
const SPIN_WAKE_COST: std::time::Duration = std::time::Duration::from_micros(2);

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
    /// The Box cache (boxes.rs).
    boxes: boxes::BoxCache,
    /// The partition table (partitions.rs).
    table: partitions::PartitionTable,
    /// The shard's commit log, shared by every partition it owns.
    log: CommitLog<UringStorage>,
    /// What the relay remembers (relay.rs).
    relay: relay::RelayState,
    /// This shard's client connections, for the watchdog and shutdown.
    pub connections: crate::connection::Registry,
    /// Requests executing on this shard (its own connections' and forwarded ones).
    pub in_flight: Cell<usize>,
    /// Connections over `connections_max` being answered Busy right now.
    pub refusing: Cell<usize>,
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
    _op: boxes::BoxOp,
}

impl std::ops::Deref for EngineInUse {
    type Target = PartitionEngine;
    fn deref(&self) -> &PartitionEngine {
        &self.engine
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
    /// A shard with nothing open yet, committing through `log`; `replays` holds what the logs
    /// of earlier runs recovered for the partitions it owns, `damage` what was found damaged in
    /// them (every partition opened checks it, records or not).
    pub fn new(
        id: u16,
        shared: Arc<NodeShared>,
        shutdown: async_channel::Receiver<()>,
        log: CommitLog<UringStorage>,
        replays: HashMap<(BoxUid, u16), Replay>,
        damage: Vec<LogDamage>,
    ) -> Rc<Shard> {
        Rc::new(Shard {
            id,
            shared,
            boxes: boxes::BoxCache::default(),
            table: partitions::PartitionTable::new(replays, damage),
            log,
            relay: relay::RelayState::default(),
            connections: crate::connection::Registry::default(),
            in_flight: Cell::new(0),
            refusing: Cell::new(0),
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
    /// Adaptive: a spin pays when the wake-ups it saved (the batches of requests it caught,
    /// [`SPIN_WAKE_COST`] each) are worth the time it spun idle. One that did not makes spinning
    /// rest (parking at once) for [`SPIN_REST_MIN`], doubling after every spin that did not pay
    /// up to [`SPIN_REST_MAX`]; one that paid ends the rest. Under heavy load every spin pays;
    /// under light load (3k requests/s spun ~30 % of a core when any caught request ended the
    /// skipping) spinning costs about nothing. Ends at shutdown; returns at once when `window`
    /// is zero (switched off).
    pub async fn poll_while_busy(self: Rc<Self>, window: std::time::Duration) {
        if window.is_zero() {
            return;
        }
        let bouncer = candybox_core::runtime::Bouncer::new();
        // After a spin that did not pay, spinning rests this long (doubling, up to SPIN_REST_MAX).
        let mut rest = std::time::Duration::ZERO;
        let mut rest_until = std::time::Instant::now();
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
            if std::time::Instant::now() < rest_until {
                continue;
            }
            // Spinning: until no request arrived for `window`.
            let first = self.arrivals.get();
            let mut turn = std::time::Instant::now();
            let mut idle = std::time::Duration::ZERO;
            loop {
                let now = std::time::Instant::now();
                // A turn this short ran nothing but the bounce and the ring's submit: idle spin.
                if now.duration_since(turn) <= SPIN_TURN_IDLE_MAX {
                    idle += now.duration_since(turn);
                }
                if self.stopping.get() || now.saturating_duration_since(self.last_request.get()) >= window {
                    break;
                }
                // A long spin is judged as it goes: one that stopped paying parks now.
                if idle >= SPIN_JUDGE_IDLE {
                    let caught = u32::try_from(self.arrivals.get().wrapping_sub(first)).unwrap_or(u32::MAX);
                    if SPIN_WAKE_COST.saturating_mul(caught) < idle {
                        break;
                    }
                }
                turn = now;
                bouncer.yield_now().await;
            }
            crate::metrics::own_add(&self.metrics().spin_idle_ns, idle.as_nanos() as u64);
            let caught = u32::try_from(self.arrivals.get().wrapping_sub(first)).unwrap_or(u32::MAX);
            // What the spin cost is its idle turns (the rest was the requests' own work).
            let paid = SPIN_WAKE_COST.saturating_mul(caught) >= idle;
            if paid {
                rest = std::time::Duration::ZERO;
            } else {
                rest = (rest * 2).clamp(SPIN_REST_MIN, SPIN_REST_MAX);
                rest_until = std::time::Instant::now() + rest;
            }
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
}

pub(super) fn info(name: &str, m: &BoxMeta) -> BoxInfo {
    BoxInfo {
        name: name.to_string(),
        partitions: m.partitions,
        created_ms: m.created_ms,
        box_uid: m.box_uid.0,
        node: m.node,
        versioning: m.versioning,
    }
}
