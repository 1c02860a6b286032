//! The lean load path of `candybox-bench`: gets, heads and puts of small objects (one size,
//! gets up to 2 MiB, puts up to 1 MiB) over raw monoio sockets, so that the generator spends far less CPU per request than
//! the node and the figures measure the node, not the client.
//!
//! How it differs from the library path (the same requests on the wire, byte for byte):
//! - Every key's request frame is encoded once ([`RequestTable`]); a send copies it into the
//!   connection's send buffer and rewrites only its request id and header CRC.
//! - One task per connection. All requests that are ready go out in one write; replies come in
//!   large reads and every complete frame in the buffer is handled in place before the next read
//!   ([`Pipeline::on_bytes`]): header, body CRC and flatbuffer verified (a body equal to one
//!   verified before by the thread is not verified again: [`VerifiedReplies`]), the reply's status and
//!   size read where they lie, payload bytes counted, nothing copied or allocated per request.
//! - Shard-aware routing: the topology and the Box's partition count are read once with the
//!   library client; each connection is opened to one shard's port and carries only keys that
//!   shard owns (drawn from the key distribution restricted to that shard), the connections
//!   spread round-robin over the shards that own keys.
//! - Open loop: one sender per thread issues the thread's schedule (as the library path's
//!   dispatcher does), each request to the next connection with a free slot; it sleeps on a
//!   precise timer ([`PreciseTimer`]) between sends. Each connection's reader handles replies.
//!
//! Invariants:
//! - No lock on the data path: a thread's connections, sender and tally live on its executor
//!   and share state through `RefCell`s, never borrowed across an await.
//! - Bounded: a connection has `depth` slots; the send buffer holds at most `depth` requests;
//!   the receive buffer grows only to hold the largest frame seen (at most the frame cap).
//! - Every loop ends by the run's end time, plus at most [`DRAIN_MAX`] for replies in flight:
//!   after that a watchdog shuts the sockets down and what was in flight counts as `Closed`.
//! - A `Busy` reply is counted as an error of kind `Busy`, not retried (the library retries it).
//! - Protocol version 2's control frames: a `Credit` grant is ignored (every request goes whole in
//!   its first frame, so none waits for credit); a `Cancel` from the node ends its request as an
//!   error of kind `Cancelled`. A closed loop grants each Data frame's cost back as its header
//!   arrives (its payload is counted, never held), so a get of any size flows.
//! - Payloads of objects from [`DISCARD_PAYLOAD_BYTES_MIN`] on are dropped in the kernel, never
//!   copied to user space; every byte is still counted against what its reply announced.

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    net::{SocketAddr, ToSocketAddrs as _},
    os::fd::{AsRawFd as _, RawFd},
    rc::Rc,
    sync::{Barrier, OnceLock},
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use candybox_wire::{
    client::{
        placement::{partition_of, shard_of, PLACEMENT_V1},
        reply, request, ByteRange, ClientConfig, ClientError, MonoioClient, PutOptions,
    },
    frame::{FrameHeader, FRAME_VERSION},
};
use monoio::{
    buf::IoBufMut as _,
    io::{AsyncWriteRentExt as _, OwnedReadHalf, OwnedWriteHalf, Splitable as _},
    net::TcpStream,
};
use rand::{rngs::SmallRng, Rng as _, SeedableRng as _};

use super::{
    frames::{error_code_name, RequestTable, VerifiedReplies},
    key_name,
    pipeline::{Completion, Outcome, Pipeline, DEPTH_MAX},
    raw::RawClient,
    tally::{micros, Tally},
    timer::{tighten_timer_slack, PreciseTimer},
    KeyChooser, Mix, OpKind, Schedule, SizeSpec,
};

/// Largest object the lean path puts: the request and its bytes go in one frame, as the library
/// sends a put that fits one (larger ones continue in Data frames, which this path does not send).
pub const LEAN_PUT_BYTES_MAX: u64 = 1 << 20;
/// Largest object the lean path gets in an open loop. Its payload streams through the receive
/// buffer, so the buffer sets no limit; the protocol does: from frame version 2 on a reply stream
/// beyond its initial window waits for the receiver's Credit frames, which only the closed loop
/// sends (its one task per connection reads and writes; an open loop's reader does not write).
/// Half the window leaves room for the frames' minimum credit cost. Larger gets in an open loop
/// take the library path.
pub const LEAN_GET_BYTES_MAX: u64 = candybox_wire::frame::STREAM_WINDOW_BYTES / 2;
/// Objects from this size on are received without copying their payload: once a frame's header
/// and body are read, the rest of its payload is dropped in the kernel (`recv` with `MSG_TRUNC`,
/// counted, never copied to user space) and reads are kept short, so a large get costs the
/// generator its headers and the kernel's receive path only.
pub const DISCARD_PAYLOAD_BYTES_MIN: u64 = 256 * 1024;
/// The longest read while payloads are discarded: a reply's header and body and a little of what
/// follows.
const DISCARD_READ_BYTES: usize = 4096;
/// Most keys the lean path encodes requests for (about 100 bytes of frame per key and op).
pub const LEAN_KEYS_MAX: u64 = 4_000_000;
/// How long replies in flight at the end of the run are waited for.
pub const DRAIN_MAX: Duration = Duration::from_secs(10);
/// Error replies in a row after which a connection stops sending.
pub const ERRORS_IN_A_ROW_MAX: u32 = 1000;
/// Smallest receive buffer of a connection.
const RECEIVE_BUFFER_BYTES_MIN: usize = 64 * 1024;
/// Largest receive buffer: payloads stream through it, so it bounds only the size of one read
/// (a frame's header and body, which must be whole in it, are under a few KiB).
const RECEIVE_BUFFER_BYTES_MAX: usize = 1 << 20;
/// Least free room for one read.
const READ_BYTES_MIN: usize = 16 * 1024;
/// A reply's header and flatbuffer body are under this (a `GetDone` with its metadata).
const REPLY_OVERHEAD_BYTES: usize = 512;
/// Draws of a zipfian key before a connection bound to one shard settles for a uniform key of
/// that shard (the shard owns about 1 / shards of the keys, so this is never reached in practice).
const SHARD_DRAWS_MAX: u32 = 1000;

/// Why the lean path cannot run a configuration, or `None` when it can.
pub fn unsupported(mix: &Mix, sizes: &SizeSpec, keys: u64, frame_version: u8, open_loop: bool) -> Option<String> {
    if let Some(&(op, _)) = mix.weights.iter().find(|(op, _)| !matches!(op, OpKind::Get | OpKind::Head | OpKind::Put)) {
        return Some(format!("the mix has {} (the lean path runs get, head and put)", op.name()));
    }
    let SizeSpec::Fixed(size) = sizes else {
        return Some(format!("the size {sizes} is not one fixed size (the lean path checks each reply's size)"));
    };
    if mix.has(OpKind::Put) && *size > LEAN_PUT_BYTES_MAX {
        return Some(format!("puts of {size} bytes are larger than the lean path's {LEAN_PUT_BYTES_MAX}"));
    }
    // Version 1 has no flow control: a reply of any size streams through; a closed loop grants
    // credit as the payload arrives.
    if frame_version >= 2 && open_loop && *size > LEAN_GET_BYTES_MAX {
        return Some(format!(
            "objects of {size} bytes are larger than the lean path's {LEAN_GET_BYTES_MAX} in an open loop"
        ));
    }
    if keys > LEAN_KEYS_MAX {
        return Some(format!("{keys} keys are more than the lean path encodes ({LEAN_KEYS_MAX})"));
    }
    None
}

/// What the lean path needs from the command line.
#[derive(Debug, Clone)]
pub struct LeanConfig {
    /// `host:port` of the node's main port.
    pub server: String,
    /// The Box (it exists: the run created it).
    pub box_name: String,
    /// Shard-aware routing asked for.
    pub routing: bool,
    /// Connections in all.
    pub connections: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// Client threads.
    pub threads: usize,
    /// Open loop at this many requests per second in all; closed loop when `None`.
    pub rate: Option<f64>,
    /// Warm-up (run, discarded).
    pub warmup: Duration,
    /// Measured window.
    pub seconds: Duration,
    /// The operations.
    pub mix: Mix,
    /// How keys are drawn.
    pub keys: KeyChooser,
    /// Keys in the key space.
    pub key_count: u64,
    /// Every object's size.
    pub size: u64,
    /// The bytes of a put (`size` of them; empty without puts).
    pub payload: Vec<u8>,
    /// The frame cap (the node's `frame_body_bytes_max`).
    pub cap: u32,
    /// The frame version requests are written in (replies come in the same); below the
    /// library's own, the set-up goes through [`RawClient`] too.
    pub frame_version: u8,
}

/// Everything the lean path prepared before the run, shared read-only by the client threads.
#[derive(Debug)]
pub struct LeanPlan {
    /// The configuration.
    pub config: LeanConfig,
    /// Request frames by [`OpKind::index`] (`None` for operations outside the mix).
    tables: Vec<Option<RequestTable>>,
    /// The shard owning each key (all 0 without routing).
    key_shard: Vec<u16>,
    /// The keys each shard owns.
    shard_keys: Vec<Vec<u32>>,
    /// Each connection's address and, when routed, its shard.
    targets: Vec<(SocketAddr, Option<u16>)>,
    /// Bytes of the largest request (frame and payload).
    request_bytes_max: usize,
    /// How requests are routed, for the report.
    pub routing_note: String,
}

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("resolve {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))
}

impl LeanPlan {
    /// Reads the node's topology and the Box's partition count with the library client, then
    /// encodes every key's requests and assigns the connections to shards.
    ///
    /// # Errors
    /// When the node cannot be reached or does not know the Box.
    pub async fn build(config: LeanConfig) -> anyhow::Result<LeanPlan> {
        assert!((1..=DEPTH_MAX).contains(&config.depth), "depth checked by the caller");
        let main_addr = resolve(&config.server)?;
        let (partitions, topology) = if config.frame_version < FRAME_VERSION {
            // The library speaks only the newest version: ask in the node's own.
            let mut raw = RawClient::connect(main_addr, config.frame_version, config.cap).await?;
            let head = raw.call(&request::head_box(&config.box_name), &[]).await.context("head the box")?;
            let partitions = reply::box_reply(&head, config.cap).context("head the box")?.partitions;
            let topology = if config.routing {
                let t = raw.call(&request::topology(), &[]).await.context("read the node's topology")?;
                Some(reply::topology(&t, config.cap))
            } else {
                None
            };
            (partitions, topology)
        } else {
            let mut client_config = ClientConfig::new(config.server.clone());
            // This client only asks; the routing decision is made here from its answers.
            client_config.routing = false;
            let admin =
                MonoioClient::connect(client_config).await.with_context(|| format!("connect to {}", config.server))?;
            let partitions = admin.head_box(&config.box_name).await.context("head the box")?.partitions;
            let topology = if config.routing { Some(admin.topology().await) } else { None };
            (partitions, topology)
        };
        let (mut shard_count, mut ports, mut routing_note) = (1u16, Vec::new(), String::new());
        if let Some(topology) = topology {
            match topology {
                Ok(t)
                    if t.placement == PLACEMENT_V1
                        && t.shard_count > 0
                        && t.ports.len() == usize::from(t.shard_count) =>
                {
                    shard_count = t.shard_count;
                    ports = t.ports;
                }
                Ok(t) => {
                    routing_note = format!(
                        "routing off: the node names placement `{}` with {} shards and {} ports",
                        t.placement,
                        t.shard_count,
                        t.ports.len()
                    );
                }
                Err(ClientError::UnknownRequest { .. }) => {
                    routing_note = "routing off: the node does not answer topology requests".into();
                }
                Err(e) => bail!("read the node's topology: {e}"),
            }
        } else {
            routing_note = "routing off (--no-routing): every connection to the main port".into();
        }
        let routed = !ports.is_empty();
        let keys = config.key_count;
        let mut key_shard = Vec::with_capacity(usize::try_from(keys).unwrap_or(0));
        let mut shard_keys = vec![Vec::new(); usize::from(shard_count)];
        for k in 0..keys {
            let s = if routed {
                shard_of(&config.box_name, partition_of(key_name(k).as_bytes(), partitions), shard_count)
            } else {
                0
            };
            key_shard.push(s);
            if let Some(list) = shard_keys.get_mut(usize::from(s)) {
                list.push(u32::try_from(k).context("key index beyond u32")?);
            }
        }
        let mut targets = Vec::with_capacity(config.connections);
        if routed {
            let owning: Vec<u16> =
                (0..shard_count).filter(|&s| shard_keys.get(usize::from(s)).is_some_and(|l| !l.is_empty())).collect();
            for c in 0..config.connections {
                let s = *owning.get(c % owning.len().max(1)).context("no shard owns a key")?;
                let port = *ports.get(usize::from(s)).context("a shard without a port")?;
                targets.push((SocketAddr::new(main_addr.ip(), port), Some(s)));
            }
            routing_note = format!(
                "routing on: {shard_count} shard(s) on ports {ports:?}, {partitions} partitions; connections spread over shards {owning:?}, each carrying only its shard's keys"
            );
        } else {
            targets.resize(config.connections, (main_addr, None));
        }
        let size32 = u32::try_from(config.size).context("object size beyond u32")?;
        let mut tables: Vec<Option<RequestTable>> = vec![None; OpKind::ALL.len()];
        let mut request_bytes_max = 0;
        for &(op, _) in &config.mix.weights {
            let (b, v) = (config.box_name.as_str(), config.frame_version);
            let table = match op {
                OpKind::Get => {
                    RequestTable::build(v, keys, 0, |k| request::get(b, key_name(k).as_bytes(), ByteRange::Whole))
                }
                OpKind::Head => RequestTable::build(v, keys, 0, |k| request::head(b, key_name(k).as_bytes())),
                OpKind::Put => {
                    // As `put_bytes` sends it: the default options with the exact size.
                    let options = PutOptions { size: Some(config.size), ..PutOptions::default() };
                    RequestTable::build(v, keys, size32, |k| request::put(b, key_name(k).as_bytes(), &options))
                }
                other => bail!("the lean path does not run {}", other.name()),
            };
            let payload = if op == OpKind::Put { config.payload.len() } else { 0 };
            request_bytes_max = request_bytes_max.max(table.frame_bytes_max() + payload);
            if let Some(t) = tables.get_mut(op.index()) {
                *t = Some(table);
            }
        }
        Ok(LeanPlan { config, tables, key_shard, shard_keys, targets, request_bytes_max, routing_note })
    }

    /// Draws a key for a connection bound to `shard` (any key when `None`).
    fn sample_key(&self, rng: &mut SmallRng, shard: Option<u16>) -> usize {
        let keys = &self.config.keys;
        let any = |rng: &mut SmallRng| usize::try_from(keys.sample(rng)).unwrap_or(0);
        let Some(s) = shard else { return any(rng) };
        let Some(own) = self.shard_keys.get(usize::from(s)) else { return any(rng) };
        if own.len() == self.key_shard.len() || own.is_empty() {
            return any(rng);
        }
        if let KeyChooser::Zipfian { .. } = keys {
            for _ in 0..SHARD_DRAWS_MAX {
                let k = usize::try_from(keys.sample(rng)).unwrap_or(0);
                if self.key_shard.get(k) == Some(&s) {
                    return k;
                }
            }
        }
        own.get(rng.gen_range(0..own.len())).map_or(0, |&k| k as usize)
    }

    /// Bytes the receive buffer starts with: room for every slot's reply twice over.
    fn receive_bytes(&self) -> usize {
        let reply = REPLY_OVERHEAD_BYTES + usize::try_from(self.config.size).unwrap_or(usize::MAX);
        reply
            .saturating_mul(self.config.depth)
            .saturating_mul(2)
            .clamp(RECEIVE_BUFFER_BYTES_MIN, RECEIVE_BUFFER_BYTES_MAX)
    }
}

/// The run's instants.
#[derive(Debug, Clone, Copy)]
struct Times {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

/// Wakes the sender when a reply frees a slot.
#[derive(Default)]
struct SlotFreed {
    waker: Cell<Option<Waker>>,
    fired: Cell<bool>,
}

impl SlotFreed {
    fn notify(&self) {
        self.fired.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.fired.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
    }
}

fn shutdown(fd: RawFd) {
    // SAFETY: shutdown takes no pointers; `fd` is a socket its thread keeps open until its
    // executor ends (see `thread_main`), so it names no other file.
    let _ = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// How a connection is doing: its error replies in a row and why it stopped sending.
#[derive(Debug, Default)]
struct Health {
    errors_in_a_row: u32,
    /// Set when the connection stops sending (errors, a broken reply, the socket closed).
    stopped: Option<String>,
}

impl Health {
    /// Records one finished request (answered at `done`) and counts error replies in a row.
    fn complete(&mut self, c: &Completion, done: Instant, times: &Times, open: bool, tally: &mut Tally) {
        match c.outcome {
            Outcome::Ok { .. } => self.errors_in_a_row = 0,
            Outcome::Failed(_) | Outcome::Cancelled => {
                self.errors_in_a_row += 1;
                if self.errors_in_a_row >= ERRORS_IN_A_ROW_MAX && self.stopped.is_none() {
                    let last = match c.outcome {
                        Outcome::Failed(code) => error_code_name(code),
                        _ => "Cancelled",
                    };
                    self.stopped = Some(format!(
                        "stopped after {} error replies in a row, the last: {last}",
                        self.errors_in_a_row
                    ));
                }
            }
        }
        if c.intended < times.measure_from {
            return;
        }
        if open {
            tally.lag.saturating_record(micros(c.sent.saturating_duration_since(c.intended)));
        }
        let Some(o) = tally.op(c.op) else { return };
        match c.outcome {
            Outcome::Ok { bytes } => o.record_ok(
                micros(done.saturating_duration_since(c.intended)),
                micros(done.saturating_duration_since(c.sent)),
                bytes,
            ),
            Outcome::Failed(code) => o.record_error(error_code_name(code)),
            Outcome::Cancelled => o.record_error("Cancelled"),
        }
    }
}

/// One connection's request state, shared by its reader and (open loop) the thread's sender.
#[derive(Debug)]
struct Conn {
    /// The shard this connection's keys belong to (`None`: any key, the main port).
    shard: Option<u16>,
    pipeline: Pipeline,
    rng: SmallRng,
    health: Health,
    /// Set when the socket is gone: nothing more will complete.
    closed: bool,
    /// Set by the sender before it shuts the socket down at the end (an EOF is then expected).
    finishing: bool,
}

impl Conn {
    fn new(
        index: usize,
        shard: Option<u16>,
        depth: usize,
        now: Instant,
        replies: Rc<RefCell<VerifiedReplies>>,
        grant_credit: bool,
    ) -> Conn {
        let pipeline = Pipeline::sharing(depth, now, replies);
        Conn {
            shard,
            pipeline: if grant_credit { pipeline.granting_credit() } else { pipeline },
            rng: SmallRng::seed_from_u64(0x1EA4_0000 ^ index as u64),
            health: Health::default(),
            closed: false,
            finishing: false,
        }
    }

    fn can_send(&self) -> bool {
        self.health.stopped.is_none() && !self.closed && self.pipeline.has_free()
    }

    /// True when this connection will never send again.
    fn is_done(&self) -> bool {
        self.health.stopped.is_some() || self.closed
    }

    /// Appends the mix's next request to `out`; false when no slot is free.
    fn push_request(&mut self, plan: &LeanPlan, out: &mut Vec<u8>, intended: Instant, sent: Instant) -> bool {
        if !self.pipeline.has_free() {
            return false;
        }
        let op = plan.config.mix.pick(&mut self.rng);
        let key = plan.sample_key(&mut self.rng, self.shard);
        let Some(table) = plan.tables.get(op.index()).and_then(Option::as_ref) else {
            // Unreachable: every op of the mix has a table.
            self.health.stopped = Some(format!("no request table for {}", op.name()));
            return false;
        };
        if key >= table.len() {
            // Unreachable: keys are drawn from the table's key space.
            self.health.stopped = Some(format!("no request frame for {} of key {key}", op.name()));
            return false;
        }
        let Some(id) = self.pipeline.start(op, plan.config.size, intended, sent) else { return false };
        let appended = table.append(key, id, out);
        debug_assert!(appended, "key {key} is in the table");
        if op == OpKind::Put {
            out.extend_from_slice(&plan.config.payload);
        }
        true
    }

    /// The socket is gone (`why`, when unexpected): every request in flight counts as `Closed`.
    fn close(&mut self, why: Option<String>, times: &Times, tally: &mut Tally) {
        self.closed = true;
        if let (Some(why), None) = (why, &self.health.stopped) {
            self.health.stopped = Some(why);
        }
        self.pipeline.abandon(|op, intended| {
            if intended >= times.measure_from {
                if let Some(o) = tally.op(op) {
                    o.record_error("Closed");
                }
            }
        });
    }
}

/// Handles every complete frame in `recv` (bytes that arrived at `done`), then keeps only the
/// partial frame after them, with room for the next read and for that whole frame.
fn handle(
    recv: &mut Vec<u8>,
    conn: &mut Conn,
    plan: &LeanPlan,
    times: &Times,
    open: bool,
    done: Instant,
    tally: &mut Tally,
) -> Result<(), String> {
    let Conn { pipeline, health, .. } = conn;
    let (used, needed) = pipeline
        .on_bytes(recv, plan.config.cap, |c| health.complete(&c, done, times, open, tally))
        .map_err(|e| e.to_string())?;
    recv.drain(..used);
    let want = needed.max(recv.len() + READ_BYTES_MIN);
    if want > recv.capacity() {
        // Only a frame larger than any before it gets here: growth is bounded by the frame cap.
        recv.reserve(want - recv.len());
    }
    Ok(())
}

/// One read into the free room of `recv`.
async fn read_some<R: monoio::io::AsyncReadRent>(rd: &mut R, recv: &mut Vec<u8>) -> std::io::Result<usize> {
    read_at_most(rd, recv, usize::MAX).await
}

/// One read of at most `max` bytes into the free room of `recv`.
async fn read_at_most<R: monoio::io::AsyncReadRent>(
    rd: &mut R,
    recv: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let len = recv.len();
    let buf = std::mem::take(recv);
    let total = buf.capacity().min(len.saturating_add(max));
    let (result, slice) = rd.read(buf.slice_mut(len..total)).await;
    *recv = slice.into_inner();
    result
}

/// Sleeps until `at` on the precise timer, or (without one) on monoio's millisecond timer and
/// then by yielding.
async fn wait_precise(timer: &mut Option<PreciseTimer>, at: Instant) {
    if let Some(t) = timer.as_mut() {
        match t.sleep_until(at).await {
            Ok(()) => return,
            Err(e) => {
                eprintln!("warning: the precise timer failed ({e}); open-loop sends fall back to a millisecond timer and a spin");
                *timer = None;
            }
        }
    }
    super::wait_until(at).await;
}

/// Closed loop on one connection: fill every free slot, send them in one write (with the credit
/// owed for Data frames received), read, handle every reply, again, until the end; then wait for
/// the replies in flight. Objects of [`DISCARD_PAYLOAD_BYTES_MIN`] and more have their payloads
/// dropped in the kernel as they arrive ([`discard_due`]).
async fn closed_loop(
    plan: std::sync::Arc<LeanPlan>,
    conn: Rc<RefCell<Conn>>,
    mut stream: TcpStream,
    times: Times,
    tally: Rc<RefCell<Tally>>,
) -> TcpStream {
    monoio::time::sleep(times.start.saturating_duration_since(Instant::now())).await;
    let mut send = Vec::with_capacity(plan.config.depth * plan.request_bytes_max);
    let mut recv = Vec::with_capacity(plan.receive_bytes());
    let discard = plan.config.size >= DISCARD_PAYLOAD_BYTES_MIN;
    let read_max = if discard { DISCARD_READ_BYTES } else { usize::MAX };
    loop {
        let now = Instant::now();
        {
            let mut c = conn.borrow_mut();
            if now < times.end && c.health.stopped.is_none() {
                while c.push_request(&plan, &mut send, now, now) {}
            }
            c.pipeline.take_grants(|id, bytes| {
                let (header, body) = FrameHeader::credit(id, bytes);
                send.extend_from_slice(&header);
                send.extend_from_slice(&body);
            });
        }
        if !send.is_empty() {
            let (result, buf) = stream.write_all(send).await;
            send = buf;
            send.clear();
            if let Err(e) = result {
                conn.borrow_mut().close(Some(format!("write: {e}")), &times, &mut tally.borrow_mut());
                return stream;
            }
        }
        if conn.borrow().pipeline.in_flight() == 0 {
            return stream;
        }
        let why = if discard && conn.borrow().pipeline.payload_due() > 0 {
            discard_due(&stream, &conn, &times, &tally).await.err()
        } else {
            match read_at_most(&mut stream, &mut recv, read_max).await {
                Ok(0) => Some("the node closed the connection with requests in flight".to_string()),
                Ok(_) => {
                    let done = Instant::now();
                    handle(&mut recv, &mut conn.borrow_mut(), &plan, &times, false, done, &mut tally.borrow_mut())
                        .err()
                        .map(|e| format!("broken reply: {e}"))
                }
                Err(e) => Some(format!("read: {e}")),
            }
        };
        if let Some(why) = why {
            conn.borrow_mut().close(Some(why), &times, &mut tally.borrow_mut());
            return stream;
        }
    }
}

/// Receives the rest of the payload due on `stream` without copying it: waits until the socket
/// is readable, then drops what is there, up to what is due, in the kernel (`recv` with
/// `MSG_TRUNC`: TCP discards the bytes), counting them; until nothing is due.
async fn discard_due(
    stream: &TcpStream,
    conn: &Rc<RefCell<Conn>>,
    times: &Times,
    tally: &RefCell<Tally>,
) -> Result<(), String> {
    let fd = stream.as_raw_fd();
    loop {
        let due = conn.borrow().pipeline.payload_due();
        if due == 0 {
            return Ok(());
        }
        stream.readable(true).await.map_err(|e| format!("wait for the payload: {e}"))?;
        let want = usize::try_from(due).unwrap_or(usize::MAX);
        // SAFETY: with MSG_TRUNC a TCP socket copies nothing to the buffer, so a null buffer is
        // never written; `fd` is the open socket of `stream`, borrowed for the call.
        let n = unsafe { libc::recv(fd, std::ptr::null_mut(), want, libc::MSG_TRUNC | libc::MSG_DONTWAIT) };
        if n == 0 {
            return Err("the node closed the connection with requests in flight".to_string());
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("discard the payload: {e}"));
        }
        let done = Instant::now();
        let mut c = conn.borrow_mut();
        let Conn { pipeline, health, .. } = &mut *c;
        match pipeline.on_discarded(n as u64) {
            Ok(Some(completion)) => health.complete(&completion, done, times, false, &mut tally.borrow_mut()),
            Ok(None) => {}
            Err(e) => return Err(format!("broken reply: {e}")),
        }
    }
}

/// Open loop: the reader of one connection. Ends at EOF (the sender shuts the socket down once
/// the replies are in) or on an error.
async fn reader(
    plan: std::sync::Arc<LeanPlan>,
    conn: Rc<RefCell<Conn>>,
    mut rd: OwnedReadHalf<TcpStream>,
    times: Times,
    tally: Rc<RefCell<Tally>>,
    freed: Rc<SlotFreed>,
) -> OwnedReadHalf<TcpStream> {
    let mut recv = Vec::with_capacity(plan.receive_bytes());
    loop {
        let why = match read_some(&mut rd, &mut recv).await {
            Ok(0) => {
                let c = conn.borrow();
                if c.finishing && c.pipeline.in_flight() == 0 {
                    None
                } else {
                    Some("the node closed the connection with requests in flight".to_string())
                }
            }
            Ok(_) => {
                let done = Instant::now();
                match handle(&mut recv, &mut conn.borrow_mut(), &plan, &times, true, done, &mut tally.borrow_mut()) {
                    Ok(()) => {
                        freed.notify();
                        continue;
                    }
                    Err(e) => Some(format!("broken reply: {e}")),
                }
            }
            Err(e) => Some(format!("read: {e}")),
        };
        conn.borrow_mut().close(why, &times, &mut tally.borrow_mut());
        freed.notify();
        return rd;
    }
}

/// Open loop: one thread's sender. Issues the thread's schedule, each request to the next
/// connection with a free slot (one write per connection per wake-up), then waits for the replies
/// in flight and shuts the sockets down so the readers end.
#[allow(clippy::too_many_arguments, reason = "the open loop's parts, each used once")]
async fn sender(
    plan: std::sync::Arc<LeanPlan>,
    schedule: Schedule,
    conns: Vec<Rc<RefCell<Conn>>>,
    mut writers: Vec<OwnedWriteHalf<TcpStream>>,
    fds: Vec<RawFd>,
    times: Times,
    freed: Rc<SlotFreed>,
) -> Vec<OwnedWriteHalf<TcpStream>> {
    let mut timer = match PreciseTimer::new() {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("warning: no precise timer ({e}); open-loop sends use a millisecond timer and a spin");
            None
        }
    };
    let n = conns.len();
    let mut bufs: Vec<Vec<u8>> =
        (0..n).map(|_| Vec::with_capacity(plan.config.depth * plan.request_bytes_max)).collect();
    let mut touched: Vec<usize> = Vec::with_capacity(n);
    let (mut next, mut k) = (0usize, 0u64);
    let give_up_at = times.end + DRAIN_MAX;
    'run: loop {
        let first = times.start + schedule.at(k);
        if first >= times.end || Instant::now() >= give_up_at {
            break;
        }
        wait_precise(&mut timer, first).await;
        let now = Instant::now();
        loop {
            let intended = times.start + schedule.at(k);
            if intended > now || intended >= times.end {
                break;
            }
            let free = (0..n).map(|i| (next + i) % n).find(|&c| conns.get(c).is_some_and(|x| x.borrow().can_send()));
            let Some(c) = free else {
                // Every slot is busy: send what is assembled, then wait for a reply to free one.
                // The request keeps its intended time; the wait shows in its latency.
                flush(&mut writers, &mut bufs, &mut touched, &conns, &fds).await;
                if conns.iter().all(|x| x.borrow().is_done()) {
                    break 'run;
                }
                freed.wait().await;
                continue 'run;
            };
            if let (Some(conn), Some(buf)) = (conns.get(c), bufs.get_mut(c)) {
                if buf.is_empty() {
                    touched.push(c);
                }
                conn.borrow_mut().push_request(&plan, buf, intended, now);
            }
            next = c + 1;
            k += 1;
        }
        flush(&mut writers, &mut bufs, &mut touched, &conns, &fds).await;
    }
    // The replies in flight: readers wake this task as they come (the watchdog bounds the wait).
    while !conns.iter().all(|x| {
        let x = x.borrow();
        x.closed || x.pipeline.in_flight() == 0
    }) && Instant::now() < give_up_at
    {
        freed.wait().await;
    }
    for (conn, &fd) in conns.iter().zip(&fds) {
        conn.borrow_mut().finishing = true;
        shutdown(fd);
    }
    writers
}

/// Writes every touched connection's assembled requests, one write each. A connection whose
/// write fails stops, and its socket is shut down so its reader counts what it had in flight.
async fn flush(
    writers: &mut [OwnedWriteHalf<TcpStream>],
    bufs: &mut [Vec<u8>],
    touched: &mut Vec<usize>,
    conns: &[Rc<RefCell<Conn>>],
    fds: &[RawFd],
) {
    for &c in touched.iter() {
        let (Some(wr), Some(slot)) = (writers.get_mut(c), bufs.get_mut(c)) else { continue };
        let buf = std::mem::take(slot);
        let (result, mut buf) = wr.write_all(buf).await;
        buf.clear();
        if let Some(slot) = bufs.get_mut(c) {
            *slot = buf;
        }
        if let Err(e) = result {
            if let Some(conn) = conns.get(c) {
                let mut conn = conn.borrow_mut();
                if conn.health.stopped.is_none() {
                    conn.health.stopped = Some(format!("write: {e}"));
                }
            }
            if let Some(&fd) = fds.get(c) {
                shutdown(fd);
            }
        }
    }
    touched.clear();
}

/// One client thread of the lean path: connects its share of the connections, meets the other
/// threads at `connected` and `go`, runs until the end and returns what it recorded.
///
/// # Errors
/// When a connection cannot be opened or the tally cannot be made.
pub async fn thread_main(
    plan: std::sync::Arc<LeanPlan>,
    t: usize,
    t0: &OnceLock<Instant>,
    connected: &Barrier,
    go: &Barrier,
) -> anyhow::Result<Tally> {
    tighten_timer_slack();
    let c = &plan.config;
    let mine: Vec<usize> = (t..c.connections).step_by(c.threads.max(1)).collect();
    let mut streams = Vec::new();
    let mut setup_error = None;
    for &i in &mine {
        let Some(&(addr, shard)) = plan.targets.get(i) else { continue };
        match TcpStream::connect_addr(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                streams.push((i, shard, s));
            }
            Err(e) => {
                setup_error = Some(anyhow::anyhow!("connect lean connection {i} to {addr}: {e}"));
                break;
            }
        }
    }
    connected.wait();
    go.wait();
    if let Some(e) = setup_error {
        return Err(e);
    }
    let start = *t0.get().context("start time not set")?;
    let measure_from = start + c.warmup;
    let times = Times { start, measure_from, end: measure_from + c.seconds };
    let tally = Rc::new(RefCell::new(Tally::new(&c.mix)?));
    let fds: Vec<RawFd> = streams.iter().map(|(_, _, s)| s.as_raw_fd()).collect();
    let watchdog_fds = fds.clone();
    // Bounds every wait of this thread: past the end and the drain, the sockets are shut down,
    // which ends every read and write on them.
    let _watchdog = monoio::spawn(async move {
        monoio::time::sleep((times.end + DRAIN_MAX).saturating_duration_since(Instant::now())).await;
        for fd in watchdog_fds {
            shutdown(fd);
        }
    });
    // Version 2's flow control: the closed loop acknowledges every Data frame it receives (its
    // task writes as well as reads); an open loop carries no object long enough to need it.
    let grant_credit = c.frame_version >= 2 && c.rate.is_none();
    // One cache of verified reply bodies for the thread's connections.
    let replies = Rc::new(RefCell::new(VerifiedReplies::default()));
    let conns: Vec<Rc<RefCell<Conn>>> = streams
        .iter()
        .map(|&(i, shard, _)| Rc::new(RefCell::new(Conn::new(i, shard, c.depth, start, replies.clone(), grant_credit))))
        .collect();
    // Every socket stays open until this function returns (its executor then ends), so that no
    // descriptor number the watchdog holds is reused while it may still shut it down.
    let mut kept_streams = Vec::new();
    let mut kept_readers = Vec::new();
    let mut kept_writers = Vec::new();
    match c.rate {
        None => {
            let mut tasks = Vec::new();
            for ((_, _, stream), conn) in streams.into_iter().zip(&conns) {
                tasks.push(monoio::spawn(closed_loop(plan.clone(), conn.clone(), stream, times, tally.clone())));
            }
            for task in tasks {
                kept_streams.push(task.await);
            }
        }
        Some(rate) => {
            let freed = Rc::new(SlotFreed::default());
            let mut writers = Vec::new();
            let mut readers = Vec::new();
            for ((_, _, stream), conn) in streams.into_iter().zip(&conns) {
                let (rd, wr) = stream.into_split();
                writers.push(wr);
                readers.push(monoio::spawn(reader(
                    plan.clone(),
                    conn.clone(),
                    rd,
                    times,
                    tally.clone(),
                    freed.clone(),
                )));
            }
            let schedule = Schedule::new(rate, c.threads, t);
            let writers = sender(plan.clone(), schedule, conns.clone(), writers, fds.clone(), times, freed).await;
            for r in readers {
                kept_readers.push(r.await);
            }
            kept_writers.push(writers);
        }
    }
    let mut tally =
        Rc::try_unwrap(tally).map_err(|_| anyhow::anyhow!("a connection task outlived the run"))?.into_inner();
    for (conn, i) in conns.iter().zip(&mine) {
        if let Some(why) = &conn.borrow().health.stopped {
            tally.gave_up.push(format!("lean connection {i}: {why}"));
        }
    }
    drop((kept_streams, kept_readers, kept_writers));
    Ok(tally)
}
