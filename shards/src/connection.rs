//! One client connection: read frames, run requests, write replies in any order.
//!
//! Request path (run to completion): the read loop reads as many bytes as the socket has into
//! the connection's read buffer and handles every complete frame in it in place. A get or head
//! whose partition is open on this shard, and whose answer needs no waiting (the Candy stored in
//! its locator, or only its metadata asked for), runs right there: no task, no channel, no copy of
//! the request; its reply is built in the connection's reused flatbuffer builder and appended to
//! the connection's output, with the Candy's bytes copied once, from the memtable entry or table
//! block, into the output. Every other request (a Candy in Syrups, a streamed body, a cross-shard
//! hop, coordination, a group commit) gets its own task, with its frame copied out of the read
//! buffer. Once the batch of frames that one read brought is handled, the output is flushed: the
//! writer task sends everything queued in one send.
//!
//! Invariants:
//! - A frame header is decoded and checked (magic, CRC, lengths against the frame cap) before any
//!   byte of its body is used; the body CRC is checked and the flatbuffer verified with explicit
//!   limits before a field is read. A malformed frame closes this connection only, with a logged
//!   reason.
//! - At most `requests_in_flight_max` requests run in their own tasks per connection: at the cap
//!   the reader stops reading (backpressure by not reading). While some body is still streaming,
//!   its data frames may be queued behind the next request, so then a request over the cap is
//!   read and answered `Busy` instead of waited for (waiting could deadlock the connection).
//! - Output is bounded: the read loop reads no more while the output holds `OUTPUT_HIGH_BYTES`,
//!   and a streaming get waits for room before each frame.
//! - Put bodies flow through a bounded channel ([`crate::command::body_channel`]); when it is
//!   full the reader waits, so a connection pins at most a few frames per streaming request.
//! - Every frame that leaves the read buffer (a request run in a task, a data frame) is reserved
//!   in the node-wide frame memory budget first; frames larger than the read buffer are read
//!   into a buffer that grows as bytes arrive.
//! - A connection with nothing in flight that completes no frame within `idle_timeout_ms`, or
//!   whose frame stalls past `frame_timeout_ms`, is closed by the shard's watchdog
//!   ([`watchdog`]); shutdown closes the read side of every connection the same way, so the read
//!   loop waits on its socket alone (no timer or signal per read).
//! - Frames are appended to the output whole (no `.await` inside one), so they never interleave.
//!   Get payloads from Syrup mappings are sent from the mapping (`Bytes` slices), never copied.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    sync::atomic::Ordering::Relaxed,
    task::{Poll, Waker},
    time::Instant,
};

use bytes::Bytes;
use candybox_core::engine::Piece;
use candybox_wire::{
    fb,
    frame::{self, credit_cost, FrameError, FrameHeader, FrameKind, FLAG_END, FRAME_HEADER_BYTES, STREAM_WINDOW_BYTES},
    point::{read_point_request, PointKind, PointRequest},
};
use monoio::{
    buf::IoBufMut,
    io::{
        AsyncReadRent, AsyncReadRentExt, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
    },
    net::TcpStream,
};
use rustc_hash::FxHashMap;

use crate::{
    command::{self, BodyMsg, BodyTx, Grants},
    limits::{
        GET_FRAME_PAYLOAD_BYTES, GET_READ_AHEAD_BYTES, OUTPUT_HIGH_BYTES, READ_BUFFER_BYTES, WRITE_GATHER_BYTES,
        WRITE_GATHER_PIECE_BYTES_MAX,
    },
    reply::{self, NodeError, Outcome},
    shard::{PartitionEngine, Shard},
    splice::SplicePipe,
};

struct Conn {
    shard: Rc<Shard>,
    out: Output,
    /// The protocol version the peer speaks (0 until its first frame): replies are written in
    /// it, and version 2 brings flow control and cancellation.
    version: Cell<u8>,
    /// Bodies still receiving data frames.
    streams: RefCell<FxHashMap<u64, StreamIn>>,
    /// Requests running in their own tasks whose reply has not ended.
    active: RefCell<FxHashMap<u64, Rc<ReqCtl>>>,
    /// Mutations admitted in the read loop whose commit is awaited (their ids are in use).
    committing: RefCell<rustc_hash::FxHashSet<u64>>,
    /// Version 2: the queue of credit that flow-controlled bodies took (see [`grant_loop`]).
    grants: RefCell<Option<async_channel::Sender<(u64, u64)>>>,
    /// Requests the read loop ran in this batch (metric index, failed), recorded at its end.
    ran: RefCell<Vec<(usize, bool)>>,
    /// Requests holding an in-flight slot, and the read loop waiting for one.
    slots: Cell<usize>,
    slot_waiter: RefCell<Option<Waker>>,
    in_flight_max: usize,
    cap: u32,
    broken: Cell<bool>,
    watch: Rc<Watched>,
}

impl Conn {
    fn release_slot(&self) {
        self.slots.set(self.slots.get().saturating_sub(1));
        if let Some(w) = self.slot_waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits for a free in-flight slot and takes it.
    async fn take_slot(&self) {
        std::future::poll_fn(|cx| {
            if self.slots.get() < self.in_flight_max {
                self.slots.set(self.slots.get() + 1);
                return Poll::Ready(());
            }
            *self.slot_waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    fn flow_controlled(&self) -> bool {
        self.version.get() >= 2
    }

    fn try_take_slot(&self) -> bool {
        if self.slots.get() < self.in_flight_max {
            self.slots.set(self.slots.get() + 1);
            true
        } else {
            false
        }
    }

    /// Closes the connection without waiting for the requests in flight.
    fn break_off(&self) {
        self.broken.set(true);
        self.out.close();
    }
}

/// A request body still receiving data frames.
struct StreamIn {
    /// `None` once the request failed or was cancelled: its frames are dropped until END.
    tx: Option<BodyTx>,
    /// Version 2: payload credit the client has left on this stream.
    credit: u64,
}

/// What the connection knows of a request running in its own task.
struct ReqCtl {
    /// A get: its reply stream can be cancelled at any frame.
    get: bool,
    /// Version 2: the client cancelled the request; it ends with a `Cancel` frame.
    cancelled: Cell<bool>,
    /// Version 2: payload credit the client granted for the reply stream (unbounded in v1).
    credit: Cell<u64>,
    /// The reply stream waiting for credit.
    waker: RefCell<Option<Waker>>,
}

impl ReqCtl {
    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// Why the reader stopped.
enum Stop {
    Eof,
    Shutdown,
    Io(std::io::Error),
    Malformed(FrameError),
    /// Nothing in flight and no frame for `idle_timeout_ms`.
    Idle,
    /// A frame's body did not arrive within `frame_timeout_ms`.
    Stalled,
}

// ------------------------------------------------------------------ watchdog

/// What the shard's watchdog knows of one connection.
#[derive(Debug)]
pub struct Watched {
    fd: std::os::fd::RawFd,
    /// When the read loop last completed a frame (or started).
    last_frame: Cell<Instant>,
    /// Since when a frame has been partly read, if one is.
    frame_since: Cell<Option<Instant>>,
    /// Requests running in tasks or bodies streaming: the connection is not idle.
    busy: Cell<bool>,
    /// Why the watchdog closed the read side, when it did.
    closed_for: Cell<Option<WatchReason>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchReason {
    Idle,
    Stalled,
    Shutdown,
}

impl Watched {
    /// Ends the read loop: its pending read returns end-of-file.
    fn close_read(&self, why: WatchReason) {
        if self.closed_for.get().is_some() {
            return;
        }
        self.closed_for.set(Some(why));
        // SAFETY: `fd` is the connection's socket, open while its `Watched` is registered (the
        // connection deregisters before its socket halves are dropped); shutdown(2) only changes
        // the socket's state.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RD);
        }
    }
}

/// The connections of one shard, for its watchdog.
#[derive(Debug, Default)]
pub struct Registry {
    next: Cell<u64>,
    open: RefCell<FxHashMap<u64, Rc<Watched>>>,
}

impl Registry {
    fn add(&self, w: Rc<Watched>) -> u64 {
        let id = self.next.get();
        self.next.set(id + 1);
        self.open.borrow_mut().insert(id, w);
        id
    }

    fn remove(&self, id: u64) {
        self.open.borrow_mut().remove(&id);
    }

    /// Closes the read side of every connection (shutdown): each finishes what is in flight and
    /// closes.
    pub fn close_reads(&self) {
        for w in self.open.borrow().values() {
            w.close_read(WatchReason::Shutdown);
        }
    }
}

/// The shard's watchdog: closes connections idle past `idle_timeout_ms` and those whose frame
/// stalls past `frame_timeout_ms`, looking a few times per period. Ends at shutdown.
pub async fn watchdog(shard: Rc<Shard>) {
    let idle = std::time::Duration::from_millis(shard.shared.config.idle_timeout_ms);
    let stall = std::time::Duration::from_millis(shard.shared.config.frame_timeout_ms);
    let tick = (idle.min(stall) / 4).clamp(std::time::Duration::from_millis(10), std::time::Duration::from_secs(1));
    while !shard.stopping.get() {
        candybox_core::runtime::sleep(tick).await;
        let now = Instant::now();
        for w in shard.connections.open.borrow().values() {
            if w.frame_since.get().is_some_and(|t| now.duration_since(t) >= stall) {
                w.close_read(WatchReason::Stalled);
            } else if !w.busy.get() && w.frame_since.get().is_none() && now.duration_since(w.last_frame.get()) >= idle {
                w.close_read(WatchReason::Idle);
            }
        }
    }
}

// ------------------------------------------------------------------ output

/// The connection's output: small bytes gathered in one buffer, large pieces (get payloads from
/// Syrup mappings) kept as `Bytes` with the position in the buffer they follow.
#[derive(Default)]
struct Output {
    /// The version frames are written in (the peer's).
    version: Cell<u8>,
    buf: RefCell<Vec<u8>>,
    large: RefCell<Vec<(usize, Piece)>>,
    /// Bytes queued and not yet handed to the socket, and those in the send under way.
    queued: Cell<usize>,
    sending: Cell<usize>,
    writer: RefCell<Option<Waker>>,
    room: RefCell<Vec<Waker>>,
    closed: Cell<bool>,
}

/// A frame's payload as it is appended.
enum Payload<'a> {
    None,
    /// Copied into the output (small).
    Slice(&'a [u8]),
    /// Kept by reference unless small (and spliced from their file where they have one).
    Pieces(Vec<Piece>),
}

impl Output {
    /// Appends one whole frame.
    fn frame(&self, kind: FrameKind, id: u64, end: bool, body: &[u8], payload: Payload<'_>) {
        if self.closed.get() {
            return;
        }
        let payload_len = match &payload {
            Payload::None => 0,
            Payload::Slice(s) => s.len(),
            Payload::Pieces(p) => p.iter().map(|p| p.bytes.len()).sum(),
        };
        let flags = if end { FLAG_END } else { 0 };
        let h =
            FrameHeader::for_body(kind, id, flags, body, payload_len as u32).in_version(self.version.get()).encode();
        let mut buf = self.buf.borrow_mut();
        buf.extend_from_slice(&h);
        buf.extend_from_slice(body);
        match payload {
            Payload::None => {}
            Payload::Slice(s) => buf.extend_from_slice(s),
            Payload::Pieces(pieces) => {
                let mut large = self.large.borrow_mut();
                for p in pieces {
                    if p.bytes.len() <= WRITE_GATHER_PIECE_BYTES_MAX {
                        buf.extend_from_slice(&p.bytes);
                    } else {
                        large.push((buf.len(), p));
                    }
                }
            }
        }
        self.queued.set(self.queued.get() + FRAME_HEADER_BYTES + body.len() + payload_len);
    }

    /// Appends a control frame (version 2: `Credit`, `Cancel`), written whole.
    fn control(&self, header: &[u8; FRAME_HEADER_BYTES], body: &[u8]) {
        if self.closed.get() {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        buf.extend_from_slice(header);
        buf.extend_from_slice(body);
        self.queued.set(self.queued.get() + FRAME_HEADER_BYTES + body.len());
    }

    /// Hands what is queued to the writer.
    fn flush(&self) {
        if self.queued.get() > 0 {
            if let Some(w) = self.writer.borrow_mut().take() {
                w.wake();
            }
        }
    }

    fn close(&self) {
        self.closed.set(true);
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
        self.wake_room();
    }

    fn wake_room(&self) {
        for w in self.room.borrow_mut().drain(..) {
            w.wake();
        }
    }

    fn full(&self) -> bool {
        self.queued.get() + self.sending.get() >= OUTPUT_HIGH_BYTES
    }

    /// Waits until the output has room (or is closed).
    async fn room(&self) {
        self.at_most(OUTPUT_HIGH_BYTES - 1).await;
    }

    /// Waits until at most `limit` bytes are queued or being sent (or the output is closed).
    async fn at_most(&self, limit: usize) {
        std::future::poll_fn(|cx| {
            if self.closed.get() || self.queued.get() + self.sending.get() <= limit {
                return Poll::Ready(());
            }
            self.room.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
}

/// Sends what the output queues, in order, until it is closed and empty or the socket fails.
/// Everything queued when the writer wakes leaves in one send: one `write` of the gathered
/// bytes, or one vectored `writev` when large pieces are among them, or, when they come from
/// Syrup files (and `splice_gets` is on), through the connection's pipe ([`SplicePipe`]).
async fn write_loop(mut wr: OwnedWriteHalf<TcpStream>, conn: Rc<Conn>) {
    let out = &conn.out;
    let mut spare: Vec<u8> = Vec::with_capacity(WRITE_GATHER_BYTES);
    let mut spare_large: Vec<(usize, Piece)> = Vec::new();
    let mut iovecs: Vec<libc::iovec> = Vec::new();
    let mut pipe = Splicing::new(conn.shard.shared.config.splice_gets);
    loop {
        let more = std::future::poll_fn(|cx| {
            if out.queued.get() > 0 {
                return Poll::Ready(true);
            }
            if out.closed.get() {
                return Poll::Ready(false);
            }
            *out.writer.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if !more {
            break;
        }
        let buf = std::mem::replace(&mut *out.buf.borrow_mut(), std::mem::take(&mut spare));
        let large = std::mem::replace(&mut *out.large.borrow_mut(), std::mem::take(&mut spare_large));
        out.sending.set(out.queued.replace(0));
        let sent = if let Some(p) = pipe.for_batch(&large) {
            let sent = p.send(&mut wr, &buf, &large).await;
            sent.ok().map(|spliced| {
                crate::metrics::own_add(&conn.shard.metrics().get_spliced_bytes, spliced);
                (emptied(buf), emptied(large), std::mem::take(&mut iovecs))
            })
        } else {
            send(&mut wr, buf, large, std::mem::take(&mut iovecs)).await
        };
        out.sending.set(0);
        out.wake_room();
        let Some((buf, large, iov)) = sent else {
            out.closed.set(true);
            conn.broken.set(true);
            out.wake_room();
            return;
        };
        spare = buf;
        spare_large = large;
        iovecs = iov;
    }
    let _ = wr.shutdown().await;
}

fn emptied<T>(mut v: Vec<T>) -> Vec<T> {
    v.clear();
    v
}

/// The writer's splicing state: off by configuration, not yet needed, a pipe, or given up (no
/// pipe could be made: out of descriptors).
enum Splicing {
    Off,
    Idle,
    Pipe(SplicePipe),
}

impl Splicing {
    fn new(on: bool) -> Splicing {
        if on {
            Splicing::Idle
        } else {
            Splicing::Off
        }
    }

    /// The pipe to send this batch through: when splicing is on and a piece comes from a file.
    fn for_batch(&mut self, large: &[(usize, Piece)]) -> Option<&mut SplicePipe> {
        if matches!(self, Splicing::Off) || !large.iter().any(|(_, p)| p.file.is_some()) {
            return None;
        }
        if matches!(self, Splicing::Idle) {
            match SplicePipe::new() {
                Ok(p) => *self = Splicing::Pipe(p),
                Err(e) => {
                    tracing::warn!(error = %e, "no pipe for splicing gets; this connection copies them");
                    *self = Splicing::Off;
                    return None;
                }
            }
        }
        match self {
            Splicing::Pipe(p) => Some(p),
            _ => None,
        }
    }
}

/// Most iovecs handed to one `writev` (the kernel's `IOV_MAX` is 1024).
const IOVECS_PER_SEND_MAX: usize = 512;

/// The gathered small bytes interleaved with the large pieces, as an iovec array for `writev`.
struct Gather {
    head: Vec<u8>,
    pieces: Vec<(usize, Piece)>,
    iovecs: Vec<libc::iovec>,
    /// The first iovec not yet sent whole (`iovecs[first]` is advanced past what was sent).
    first: usize,
}

impl Gather {
    fn new(head: Vec<u8>, pieces: Vec<(usize, Piece)>, mut iovecs: Vec<libc::iovec>) -> Gather {
        iovecs.clear();
        let mut at = 0usize;
        let mut small = |iovecs: &mut Vec<libc::iovec>, to: usize| {
            if to > at {
                if let Some(s) = head.get(at..to) {
                    iovecs.push(libc::iovec { iov_base: s.as_ptr() as *mut libc::c_void, iov_len: s.len() });
                }
                at = to;
            }
        };
        for (pos, p) in &pieces {
            small(&mut iovecs, *pos);
            iovecs.push(libc::iovec { iov_base: p.bytes.as_ptr() as *mut libc::c_void, iov_len: p.bytes.len() });
        }
        small(&mut iovecs, head.len());
        Gather { head, pieces, iovecs, first: 0 }
    }

    /// Marks `n` more bytes as sent; true when everything is.
    ///
    /// Done here rather than with monoio 0.2.4's `write_vectored_all`: its `IoVecMeta::consume`
    /// shortens a partly sent iovec without advancing its base, so after a short write it sends
    /// that iovec's first bytes again (a corrupt stream; found by a 70 MB get through this path).
    fn consume(&mut self, mut n: usize) -> bool {
        while let Some(v) = self.iovecs.get_mut(self.first) {
            if n < v.iov_len {
                // SAFETY: `n < iov_len`, so the advanced base stays inside the same buffer.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n) }.cast();
                v.iov_len -= n;
                return false;
            }
            n -= v.iov_len;
            self.first += 1;
        }
        true
    }
}

// SAFETY: every iovec points into `head`'s heap buffer or into a `Bytes` of `pieces`, all owned by
// the `Gather` and never changed while it lives (moving the struct moves neither heap buffers nor
// the bytes a `Bytes` refers to; `consume` only advances within a buffer). `iovecs` is complete
// before a pointer is handed out and is not resized after, so the pointer and the `len` entries
// behind it stay valid while the runtime owns the value.
unsafe impl monoio::buf::IoVecBuf for Gather {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.get(self.first..).unwrap_or_default().as_ptr()
    }
    fn read_iovec_len(&self) -> usize {
        self.iovecs.len().saturating_sub(self.first).min(IOVECS_PER_SEND_MAX)
    }
}

type Sent = (Vec<u8>, Vec<(usize, Piece)>, Vec<libc::iovec>);

/// Sends the gathered bytes with the large pieces in their places; returns the emptied buffers,
/// or `None` when the socket failed.
async fn send(
    wr: &mut OwnedWriteHalf<TcpStream>,
    buf: Vec<u8>,
    large: Vec<(usize, Piece)>,
    iovecs: Vec<libc::iovec>,
) -> Option<Sent> {
    if large.is_empty() {
        let (res, mut buf) = wr.write_all(buf).await;
        res.ok()?;
        buf.clear();
        return Some((buf, large, iovecs));
    }
    let mut gather = Gather::new(buf, large, iovecs);
    loop {
        let (res, g) = wr.writev(gather).await;
        gather = g;
        match res {
            Ok(0) => return None,
            Ok(n) => {
                if gather.consume(n) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let Gather { mut head, mut pieces, mut iovecs, .. } = gather;
    head.clear();
    pieces.clear();
    iovecs.clear();
    Some((head, pieces, iovecs))
}

// ------------------------------------------------------------------ serving

/// Serves one connection until the peer closes it, it sends a malformed frame, or shutdown.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: std::net::SocketAddr) {
    let _ = stream.set_nodelay(true);
    let watch = Rc::new(Watched {
        fd: std::os::fd::AsRawFd::as_raw_fd(&stream),
        last_frame: Cell::new(Instant::now()),
        frame_since: Cell::new(None),
        busy: Cell::new(false),
        closed_for: Cell::new(None),
    });
    if shard.stopping.get() {
        return;
    }
    let registered = shard.connections.add(watch.clone());
    let (rd, wr) = stream.into_split();
    let conn = Rc::new(Conn {
        shard: shard.clone(),
        out: Output::default(),
        version: Cell::new(0),
        streams: RefCell::new(FxHashMap::default()),
        active: RefCell::new(FxHashMap::default()),
        committing: RefCell::new(rustc_hash::FxHashSet::default()),
        grants: RefCell::new(None),
        ran: RefCell::new(Vec::with_capacity(64)),
        slots: Cell::new(0),
        slot_waiter: RefCell::new(None),
        in_flight_max: shard.shared.config.requests_in_flight_max as usize,
        cap: shard.shared.config.frame_body_bytes_max,
        broken: Cell::new(false),
        watch,
    });
    let writer = monoio::spawn(write_loop(wr, conn.clone()));
    let stop = read_loop(&conn, rd).await;
    match &stop {
        Stop::Eof | Stop::Shutdown => {}
        Stop::Io(e) => tracing::debug!(%peer, error = %e, "connection read failed"),
        Stop::Malformed(e) => {
            shard.metrics().frames_malformed.fetch_add(1, Relaxed);
            tracing::warn!(%peer, reason = %e, "closing connection after a malformed frame");
        }
        Stop::Idle => {
            shard.metrics().connections_timed_out.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "closing an idle connection");
        }
        Stop::Stalled => {
            shard.metrics().connections_timed_out.fetch_add(1, Relaxed);
            tracing::info!(%peer, frame_timeout_ms = shard.shared.config.frame_timeout_ms, "closing a connection whose frame stalled");
        }
    }
    // Bodies still streaming will never end: fail their puts instead of letting them wait.
    conn.streams.borrow_mut().clear();
    // The grant loop ends once the bodies holding its queue are gone.
    conn.grants.borrow_mut().take();
    conn.out.flush();
    if matches!(stop, Stop::Malformed(_) | Stop::Io(_) | Stop::Stalled) {
        conn.break_off();
    } else {
        // Let in-flight requests finish and their replies go out, then close.
        while !conn.active.borrow().is_empty() && !conn.broken.get() {
            candybox_core::runtime::sleep(std::time::Duration::from_millis(2)).await;
        }
        conn.out.close();
    }
    writer.await;
    shard.connections.remove(registered);
}

/// What the frame at the front of the read buffer needs.
enum Next {
    /// Fewer bytes than its header and body are buffered.
    More,
    /// A whole frame of `n` bytes after its header.
    Frame(FrameHeader),
}

async fn read_loop(conn: &Rc<Conn>, mut rd: OwnedReadHalf<TcpStream>) -> Stop {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUFFER_BYTES);
    let mut scratch = reply::ReplyScratch::default();
    let mut hints = Vec::with_capacity(PREFETCH_FRAMES_MAX);
    let stopped = |conn: &Conn| match conn.watch.closed_for.get() {
        Some(WatchReason::Idle) => Stop::Idle,
        Some(WatchReason::Stalled) => Stop::Stalled,
        Some(WatchReason::Shutdown) => Stop::Shutdown,
        None => Stop::Eof,
    };
    // When the bytes being handled arrived: the start of their requests' latency.
    let mut arrived = Instant::now();
    loop {
        // Handle every whole frame buffered, after hinting their gets' entries into the cache.
        prefetch_gets(conn, &buf, &mut hints);
        let mut at = 0usize;
        let mut handled = false;
        loop {
            let next = match next_frame(buf.get(at..).unwrap_or_default(), conn.cap) {
                Ok(n) => n,
                Err(e) => return Stop::Malformed(e),
            };
            let header = match next {
                Next::More => break,
                Next::Frame(h) => h,
            };
            let end = at + FRAME_HEADER_BYTES + header.frame_len();
            let frame = buf.get(at + FRAME_HEADER_BYTES..end).unwrap_or_default();
            if let Err(stop) = on_frame(conn, &header, frame, &mut scratch).await {
                return stop;
            }
            at = end;
            handled = true;
        }
        if handled {
            record_ran(conn, arrived);
            conn.out.flush();
            conn.watch.last_frame.set(arrived);
            conn.watch.frame_since.set(None);
        }
        buf.drain(..at);
        // A frame too large for the read buffer is read on its own.
        if let Some(h) = buf.first_chunk::<FRAME_HEADER_BYTES>() {
            let header = match FrameHeader::decode(h, conn.cap) {
                Ok(h) => h,
                Err(e) => return Stop::Malformed(e),
            };
            if FRAME_HEADER_BYTES + header.frame_len() > READ_BUFFER_BYTES {
                let have = buf.get(FRAME_HEADER_BYTES..).unwrap_or_default();
                let frame = match large_frame(conn, &mut rd, &header, have).await {
                    Ok(f) => f,
                    Err(stop) => return stop,
                };
                buf.clear();
                conn.watch.frame_since.set(None);
                arrived = Instant::now();
                if let Err(stop) = on_frame(conn, &header, &frame, &mut scratch).await {
                    return stop;
                }
                record_ran(conn, arrived);
                conn.out.flush();
                conn.watch.last_frame.set(arrived);
                continue;
            }
        }
        // Backpressure: while the peer does not take its replies, take no more requests.
        if conn.out.full() {
            conn.out.room().await;
            if conn.out.closed.get() {
                return Stop::Eof;
            }
        }
        // A frame partly read since the last one completed: it has frame_timeout_ms to finish.
        if buf.is_empty() {
            conn.watch.frame_since.set(None);
        } else if conn.watch.frame_since.get().is_none() {
            conn.watch.frame_since.set(Some(arrived));
        }
        conn.watch.busy.set(
            !conn.active.borrow().is_empty()
                || !conn.streams.borrow().is_empty()
                || !conn.committing.borrow().is_empty(),
        );
        let len = buf.len();
        let (res, b) = rd.read(buf.slice_mut(len..READ_BUFFER_BYTES)).await;
        buf = b.into_inner();
        match res {
            Ok(0) => {
                if !buf.is_empty() && conn.watch.closed_for.get().is_none() {
                    // The peer closed in the middle of a frame.
                    return Stop::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed inside a frame"));
                }
                return stopped(conn);
            }
            Ok(_) => {
                arrived = Instant::now();
                conn.shard.note_request(arrived);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Stop::Io(e),
        }
    }
}

/// Looks at the front of `buf`: a whole frame, or more bytes needed (a frame larger than the
/// read buffer also answers `More`: the read loop reads it on its own).
fn next_frame(buf: &[u8], cap: u32) -> Result<Next, FrameError> {
    let Some(h) = buf.first_chunk::<FRAME_HEADER_BYTES>() else { return Ok(Next::More) };
    let header = FrameHeader::decode(h, cap)?;
    if buf.len() < FRAME_HEADER_BYTES + header.frame_len() {
        return Ok(Next::More);
    }
    Ok(Next::Frame(header))
}

/// Reads a frame larger than the read buffer: reserves it in the frame memory budget (waiting
/// while the node is over it), starts with the `have` bytes already buffered, and reads the rest
/// into a buffer that grows as bytes arrive.
async fn large_frame(
    conn: &Conn,
    rd: &mut OwnedReadHalf<TcpStream>,
    header: &FrameHeader,
    have: &[u8],
) -> Result<Bytes, Stop> {
    let n = header.frame_len();
    let reservation = reserve(conn, n).await?;
    // The frame's bytes have frame_timeout_ms from now (waiting for the budget is not stalling).
    conn.watch.frame_since.set(Some(Instant::now()));
    let mut v: Vec<u8> = Vec::with_capacity(have.len().max(FRAME_READ_CHUNK_BYTES).min(n));
    v.extend_from_slice(have.get(..n.min(have.len())).unwrap_or_default());
    while v.len() < n {
        let len = v.len();
        let want = (n - len).min(FRAME_READ_CHUNK_BYTES);
        let target = len.saturating_mul(2).max(len + want).min(n);
        v.reserve_exact(target - len);
        let (res, slice) = rd.read_exact(v.slice_mut(len..len + want)).await;
        v = slice.into_inner();
        match res {
            Ok(_) if v.len() == len + want => {}
            Ok(_) => return Err(Stop::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short read"))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(match conn.watch.closed_for.get() {
                    Some(WatchReason::Stalled) => Stop::Stalled,
                    Some(WatchReason::Shutdown) => Stop::Shutdown,
                    _ => Stop::Io(e),
                })
            }
            Err(e) => return Err(Stop::Io(e)),
        }
    }
    Ok(crate::frame_memory::into_bytes(v, reservation))
}

/// Bytes read into a growing large frame at a time.
const FRAME_READ_CHUNK_BYTES: usize = 64 * 1024;

/// Reserves `n` bytes of the frame memory budget, waiting while the node is over it.
async fn reserve(conn: &Conn, n: usize) -> Result<crate::frame_memory::Reservation, Stop> {
    let memory = &conn.shard.shared.metrics.frame_memory;
    if let Some(r) = crate::frame_memory::try_reserve(memory, n as u64) {
        return Ok(r);
    }
    // Waiting for the node's budget is neither idling nor stalling: the watchdog leaves the
    // connection alone meanwhile, and a frame partly read gets its timeout again afterwards.
    let since = conn.watch.frame_since.take();
    let busy = conn.watch.busy.replace(true);
    let shutdown = conn.shard.shutdown_signal();
    let reserved = monoio::select! {
        biased;
        r = crate::frame_memory::reserve(memory, n as u64) => Ok(r),
        _ = shutdown.recv() => Err(Stop::Shutdown),
    };
    conn.watch.busy.set(busy);
    conn.watch.frame_since.set(since.map(|_| Instant::now()));
    reserved
}

/// A frame's bytes out of the read buffer, reserved in the budget (a task keeps them).
async fn owned(conn: &Conn, frame: &[u8]) -> Result<Bytes, Stop> {
    let reservation = reserve(conn, frame.len()).await?;
    Ok(crate::frame_memory::into_bytes(frame.to_vec(), reservation))
}

/// Handles one whole frame (header checked; `frame` is its body and payload).
async fn on_frame(
    conn: &Rc<Conn>,
    header: &FrameHeader,
    frame: &[u8],
    scratch: &mut reply::ReplyScratch,
) -> Result<(), Stop> {
    // The first frame says which version the peer speaks; it may not change.
    match conn.version.get() {
        0 => {
            conn.version.set(header.version);
            conn.out.version.set(header.version);
        }
        v if v != header.version => return Err(Stop::Malformed(FrameError::Version(header.version))),
        _ => {}
    }
    match header.kind {
        FrameKind::Reply => Err(Stop::Malformed(FrameError::Kind(FrameKind::Reply as u8))),
        FrameKind::Credit => {
            header.check_body(frame).map_err(Stop::Malformed)?;
            // A grant for a reply that already ended is no error: the client could not know.
            if let Some(ctl) = conn.active.borrow().get(&header.request_id) {
                ctl.credit.set(ctl.credit.get().saturating_add(frame::credit_grant(frame)));
                ctl.wake();
            }
            Ok(())
        }
        FrameKind::Cancel => {
            cancel(conn, header.request_id);
            Ok(())
        }
        FrameKind::Data => {
            let body_len = header.body_len as usize;
            // Version 3: the stream's last data frame may carry a trailer (metadata committed
            // with the object); the header check allowed a body only there.
            let trailer = match frame.get(..body_len) {
                Some(body) if !body.is_empty() => {
                    header.check_body(body).map_err(Stop::Malformed)?;
                    let t = frame::verify_trailer(body, conn.cap).map_err(Stop::Malformed)?;
                    command::key_values("trailer.user_meta", t.user_meta())
                        .map_err(|e| Stop::Malformed(FrameError::Flatbuffer(format!("put trailer: {e}"))))?
                }
                _ => Vec::new(),
            };
            let rest = frame.get(body_len..).unwrap_or_default();
            let payload = if rest.is_empty() { Bytes::new() } else { owned(conn, rest).await? };
            data_frame(conn, header, payload, trailer).await.map_err(Stop::Malformed)
        }
        FrameKind::Request => {
            let id = header.request_id;
            if conn.active.borrow().contains_key(&id)
                || conn.streams.borrow().contains_key(&id)
                || conn.committing.borrow().contains(&id)
            {
                return Err(Stop::Malformed(FrameError::OutOfSequence(id)));
            }
            let body_len = header.body_len as usize;
            let body = frame.get(..body_len).unwrap_or_default();
            header.check_body(body).map_err(Stop::Malformed)?;
            // A get or head (the most frequent requests) is read in one checked pass; anything
            // else, or anything that reader declines, goes through the general verifier.
            let point = if header.is_end() { read_point_request(body, conn.cap) } else { None };
            if let Some(point) = &point {
                if run_point(conn, id, point, scratch) {
                    return Ok(());
                }
            }
            let req = frame::verify_request(body, conn.cap).map_err(Stop::Malformed)?;
            let kind = req.body_type();
            if !command::is_streamed(kind) && !header.is_end() {
                return Err(Stop::Malformed(FrameError::OutOfSequence(id)));
            }
            if header.is_end()
                && ((point.is_none() && run_now(conn, id, req, scratch))
                    || mutate_now(conn, id, req, frame.get(body_len..).unwrap_or_default()))
            {
                return Ok(());
            }
            // Backpressure: wait for a slot before taking the frame. But while bodies are still
            // streaming, their data frames may sit behind this request: waiting could deadlock,
            // so a request over the cap is then answered Busy instead.
            let slot = if conn.streams.borrow().is_empty() {
                conn.take_slot().await;
                true
            } else {
                conn.try_take_slot()
            };
            let frame = owned(conn, frame).await?;
            if slot {
                spawn_request(conn, header, frame).map_err(Stop::Malformed)
            } else {
                refuse_over_cap(conn, header, kind);
                Ok(())
            }
        }
    }
}

/// Hints the memtable entries of the gets and heads in `buf`'s whole frames into the CPU's cache,
/// so that their cache misses overlap before the frames are handled one by one: first every
/// frame is read for its Box, partition and key, then the entries are looked up back to back
/// (independent lookups the CPU can run side by side). Only a hint: the frames are read again,
/// checked in full, when they are handled. `hints` is the connection's reused list.
fn prefetch_gets(conn: &Conn, buf: &[u8], hints: &mut Vec<(PartitionEngine, usize, usize)>) {
    hints.clear();
    // One frame (an unpipelined client) has no misses to overlap: its lookup is its own.
    let single = buf.first_chunk::<FRAME_HEADER_BYTES>().and_then(|h| FrameHeader::decode(h, conn.cap).ok());
    if single.is_none_or(|h| FRAME_HEADER_BYTES + h.frame_len() >= buf.len()) {
        return;
    }
    let mut at = 0usize;
    while hints.len() < PREFETCH_FRAMES_MAX {
        let Some(h) = buf.get(at..).and_then(|b| b.first_chunk::<FRAME_HEADER_BYTES>()) else { break };
        let Ok(header) = FrameHeader::decode(h, conn.cap) else { break };
        let body_at = at + FRAME_HEADER_BYTES;
        let end = body_at + header.frame_len();
        let Some(frame) = buf.get(body_at..end) else { break };
        at = end;
        if header.kind != FrameKind::Request || !header.is_end() {
            continue;
        }
        let body = frame.get(..header.body_len as usize).unwrap_or_default();
        let Some(q) = read_point_request(body, conn.cap) else { continue };
        if let Some(engine) = conn.shard.engine_now(q.box_name, q.key) {
            let key_at = q.key.as_ptr() as usize - buf.as_ptr() as usize;
            hints.push((engine, key_at, key_at + q.key.len()));
        }
    }
    for (engine, from, to) in hints.iter() {
        if let Some(key) = buf.get(*from..*to) {
            engine.prefetch(key, PREFETCH_ENTRY_BYTES_MAX);
        }
    }
    // No engine is held past the hints (an idle connection must not keep a closed one alive).
    hints.clear();
}

/// Frames of one read batch whose entries are hinted into the cache.
const PREFETCH_FRAMES_MAX: usize = 64;
/// Bytes of an entry hinted: the locator and an inline Candy of up to a few KiB.
const PREFETCH_ENTRY_BYTES_MAX: usize = 2048;

/// Version 2: the client abandons request `id`. A body still streaming is aborted (the put fails
/// and stores nothing) and the request ends with a `Cancel` frame; a get's reply stream stops at
/// its next frame with one. A request whose body is complete is past cancelling (it may be
/// committing): its reply comes as usual. An unknown id is ignored (its reply may have ended).
fn cancel(conn: &Conn, id: u64) {
    let aborted = match conn.streams.borrow_mut().get_mut(&id) {
        Some(stream) => {
            if let Some(tx) = stream.tx.take() {
                // Room is certain: credit bounds the pieces queued below FLOW_BODY_PIECES_MAX.
                let _ = tx.try_send(BodyMsg::Abort("cancelled by the client".into()));
            }
            true
        }
        None => false,
    };
    if let Some(ctl) = conn.active.borrow().get(&id) {
        if aborted || ctl.get {
            ctl.cancelled.set(true);
            ctl.wake();
        }
    }
}

/// Runs a get, head or list page right here when it needs no waiting, its reply appended to the
/// output. False when it must run as a task (the partition not open here, a Candy in Syrups, ...).
fn run_now(conn: &Conn, id: u64, req: fb::Request<'_>, scratch: &mut reply::ReplyScratch) -> bool {
    if req.body_type() == fb::RequestBody::List {
        return list_now(conn, id, req);
    }
    let Some(point) = PointRequest::of(req) else { return false };
    run_point(conn, id, &point, scratch)
}

/// Runs a get or head right here when it needs no waiting (as [`run_now`]).
fn run_point(conn: &Conn, id: u64, q: &PointRequest<'_>, scratch: &mut reply::ReplyScratch) -> bool {
    let (box_name, key) = (q.box_name, q.key);
    let (kind, range) = match q.kind {
        PointKind::Get => {
            let Ok(range) = command::range_of(q.range_kind, q.first, q.last) else { return false };
            (fb::RequestBody::Get, range)
        }
        PointKind::Head => (fb::RequestBody::Head, None),
    };
    if candybox_core::types::validate_key(key).is_err() {
        return false;
    }
    let Some(engine) = conn.shard.engine_now(box_name, key) else { return false };
    // The locator is viewed where it lies (a memtable entry or a table block) and the reply
    // written while it is borrowed.
    let answered = engine.with_encoded(key, |value| {
        if kind == fb::RequestBody::Head {
            let Ok(Some(head)) = candybox_core::locator::Head::view(value) else { return Ran::NotHere };
            conn.out.frame(FrameKind::Reply, id, true, reply::head_in(&mut scratch.fbb, &head), Payload::None);
            return Ran::Done;
        }
        let Ok(Some(view)) = candybox_core::locator::InlineView::decode(value) else { return Ran::NotHere };
        let (first, len) = match range.map(|r| r.resolve(view.head.size)) {
            None => (0, view.head.size),
            Some(Ok(fl)) => fl,
            Some(Err(e)) => return Ran::Failed(e),
        };
        let data = view.data.get(first as usize..(first + len) as usize).unwrap_or_default();
        let body = scratch.get_done(&view.head, first, len);
        conn.out.frame(FrameKind::Reply, id, true, body, Payload::Slice(data));
        crate::metrics::own_add(&conn.shard.metrics().bytes_out, len);
        Ran::Done
    });
    let failed = match answered {
        Ok(Some(Ran::Done)) => false,
        Ok(Some(Ran::NotHere)) => return false,
        Ok(Some(Ran::Failed(e))) | Err(e) => {
            answer_error(conn, id, &NodeError::Engine(e));
            true
        }
        // A versioned Box's miss may be a delete marker, which the task path names.
        Ok(None) if engine.versioning() != candybox_core::engine::Versioning::Off => return false,
        Ok(None) => {
            answer_error(conn, id, &NodeError::Engine(candybox_core::error::Error::NotFound));
            true
        }
    };
    conn.ran.borrow_mut().push((command::op_index(kind), failed));
    true
}

/// A delete, or a put whose whole body came in its request frame and fits in a locator, of a
/// partition open on this shard whose lease it holds: admitted to the group commit right here
/// (checked, stamped and queued, or refused with its answer); only the wait for the commit runs
/// as a task, which then writes the reply. False when it must run as a task from the start.
fn mutate_now(conn: &Rc<Conn>, id: u64, req: fb::Request<'_>, payload: &[u8]) -> bool {
    let kind = req.body_type();
    let (box_name, key, put, delete_condition) = match kind {
        fb::RequestBody::Delete => {
            let Some(d) = req.body_as_delete() else { return false };
            // A delete of a version by id takes the task path.
            if d.version_id().is_some() {
                return false;
            }
            let Ok(condition) = command::condition(d.condition()) else { return false };
            (d.box_name(), d.key().bytes(), None, condition)
        }
        fb::RequestBody::Put => {
            // A body too large for a locator goes to the task path before anything is parsed.
            if payload.len() > conn.shard.shared.config.inline_bytes_max {
                return false;
            }
            let Some(p) = req.body_as_put() else { return false };
            let Ok(opts) = command::put_options(p.content_type(), p.user_meta(), p.size(), p.condition()) else {
                return false;
            };
            (p.box_name(), p.key().bytes(), Some(opts), None)
        }
        _ => return false,
    };
    if candybox_core::types::validate_key(key).is_err() {
        return false;
    }
    let Some(engine) = conn.shard.mutable_now(box_name, key, put.is_some()) else { return false };
    if !conn.try_take_slot() {
        return false;
    }
    let in_flight = conn.shard.enter();
    let admitted = match put {
        None => {
            let marker = engine.versioning() != candybox_core::engine::Versioning::Off;
            engine.admit_delete_if(key, delete_condition).map(|p| Some(p.map(|v| reply::delete_done(v, marker))))
        }
        Some(opts) => engine.admit_put_inline(key, opts, payload).map(|p| p.map(|p| p.map(|r| reply::put_done(&r)))),
    };
    let op = command::op_index(kind);
    match admitted {
        Ok(None) => {
            conn.release_slot();
            false
        }
        Err(e) => {
            conn.release_slot();
            answer_error(conn, id, &NodeError::Engine(e));
            conn.ran.borrow_mut().push((op, true));
            true
        }
        Ok(Some(pending)) => {
            crate::metrics::own_add(&conn.shard.metrics().bytes_in, payload.len() as u64);
            crate::metrics::own_add(&conn.shard.metrics().mutations_admitted_in_place, 1);
            conn.watch.busy.set(true);
            conn.committing.borrow_mut().insert(id);
            let conn = conn.clone();
            let started = Instant::now();
            drop(monoio::spawn(async move {
                // Held until the commit: shutdown drains it and a delete-box waits for it.
                let (_in_flight, _engine) = (in_flight, engine);
                let failed = match pending.durable().await {
                    Ok(reply) => {
                        conn.out.frame(FrameKind::Reply, id, true, &reply, Payload::None);
                        false
                    }
                    Err(e) => {
                        answer_error(&conn, id, &NodeError::Engine(e));
                        true
                    }
                };
                conn.out.flush();
                conn.committing.borrow_mut().remove(&id);
                conn.shard.metrics().record(op, started.elapsed().as_micros() as u64, failed);
                conn.release_slot();
            }));
            true
        }
    }
}

/// A list page of a partition open on this shard, run right here (a listing waits for
/// nothing). False when it must run as a task; a bad window is left to the task's answer.
fn list_now(conn: &Conn, id: u64, req: fb::Request<'_>) -> bool {
    let Some(l) = req.body_as_list() else { return false };
    let Ok(opts) = command::list_options(&l) else { return false };
    let Some(engine) = conn.shard.engine_now_at(l.box_name(), l.partition()) else { return false };
    let failed = match engine.list_now(&opts) {
        Ok(page) => {
            conn.out.frame(FrameKind::Reply, id, true, &reply::list_page(&page), Payload::None);
            false
        }
        Err(e) => {
            answer_error(conn, id, &NodeError::Engine(e));
            true
        }
    };
    conn.ran.borrow_mut().push((command::op_index(fb::RequestBody::List), failed));
    true
}

/// How a request run in the read loop went.
enum Ran {
    /// Answered.
    Done,
    /// It must run as a task after all (a Candy in Syrups).
    NotHere,
    /// Answered with this error.
    Failed(candybox_core::error::Error),
}

fn answer_error(conn: &Conn, id: u64, e: &NodeError) {
    if let Outcome::Failed { reply, busy, no_space } = Outcome::error(e) {
        answer_failed(conn, id, &reply, busy, no_space);
    }
}

/// Appends an error reply, counting Busy answers and refusals for want of space.
fn answer_failed(conn: &Conn, id: u64, reply: &[u8], busy: bool, no_space: bool) {
    if busy {
        conn.shard.metrics().busy_replies.fetch_add(1, Relaxed);
    }
    if no_space {
        conn.shard.shared.metrics.disk.refusals.fetch_add(1, Relaxed);
    }
    conn.out.frame(FrameKind::Reply, id, true, reply, Payload::None);
}

/// Records the requests the read loop ran since the last call, each with the time since their
/// bytes arrived (one clock read per batch, not per request).
fn record_ran(conn: &Conn, arrived: Instant) {
    let mut ran = conn.ran.borrow_mut();
    if ran.is_empty() {
        return;
    }
    let latency_us = arrived.elapsed().as_micros() as u64;
    for (op, failed) in ran.drain(..) {
        conn.shard.metrics().record(op, latency_us, failed);
    }
}

async fn data_frame(
    conn: &Rc<Conn>,
    header: &FrameHeader,
    payload: Bytes,
    trailer: Vec<(String, String)>,
) -> Result<(), FrameError> {
    let id = header.request_id;
    let flow = conn.flow_controlled();
    let tx = match conn.streams.borrow_mut().get_mut(&id) {
        None => return Err(FrameError::OutOfSequence(id)),
        Some(stream) => {
            let cost = credit_cost(payload.len());
            if flow && stream.tx.is_some() && cost > stream.credit {
                // The client ignores its credit: its put is refused, the connection goes on.
                if let Some(tx) = stream.tx.take() {
                    let _ = tx.try_send(BodyMsg::Abort(format!(
                        "the client sent a frame of {} bytes with {} bytes of flow-control credit left \
                         (protocol version 2: wait for Credit frames)",
                        payload.len(),
                        stream.credit
                    )));
                }
            }
            stream.credit = stream.credit.saturating_sub(cost);
            stream.tx.clone()
        }
    };
    crate::metrics::own_add(&conn.shard.metrics().bytes_in, payload.len() as u64);
    if let Some(tx) = tx {
        let mut ok = true;
        if flow {
            // Credit keeps the channel from filling: never wait here (one stalled body must not
            // stall the connection).
            if !payload.is_empty() {
                ok = tx.try_send(BodyMsg::Piece(payload)).is_ok();
            }
            if ok && header.is_end() {
                ok = tx.try_send(BodyMsg::End(trailer)).is_ok();
            }
        } else {
            if !payload.is_empty() {
                ok = tx.send(BodyMsg::Piece(payload)).await.is_ok();
            }
            if ok && header.is_end() {
                ok = tx.send(BodyMsg::End(trailer)).await.is_ok();
            }
        }
        if !ok {
            // The request failed early; drop the rest of its frames.
            if let Some(stream) = conn.streams.borrow_mut().get_mut(&id) {
                stream.tx = None;
            }
        }
    }
    if header.is_end() {
        conn.streams.borrow_mut().remove(&id);
    }
    Ok(())
}

/// The grant queue of a flow-controlled connection (made with its loop on first use).
fn grants(conn: &Rc<Conn>, request_id: u64) -> Grants {
    let mut g = conn.grants.borrow_mut();
    let tx = g.get_or_insert_with(|| {
        let (tx, rx) = async_channel::bounded(GRANTS_QUEUED_MAX);
        drop(monoio::spawn(grant_loop(conn.clone(), rx)));
        tx
    });
    Grants { tx: tx.clone(), request_id }
}

/// Grants queued between the bodies' consumers and a connection's grant loop.
const GRANTS_QUEUED_MAX: usize = 256;

/// Turns the credit that flow-controlled bodies took into `Credit` frames: each piece an engine
/// took is granted back to the client, and the stream's credit grows by as much.
async fn grant_loop(conn: Rc<Conn>, rx: async_channel::Receiver<(u64, u64)>) {
    while let Ok(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some((id, n)) = next.take() {
            if let Some(stream) = conn.streams.borrow_mut().get_mut(&id) {
                if stream.tx.is_some() {
                    stream.credit = stream.credit.saturating_add(n);
                    let (h, body) = FrameHeader::credit(id, n);
                    conn.out.control(&h, &body);
                }
            }
            next = rx.try_recv().ok();
        }
        conn.out.flush();
    }
}

/// Runs a request in its own task (it holds an in-flight slot).
fn spawn_request(conn: &Rc<Conn>, header: &FrameHeader, frame: Bytes) -> Result<(), FrameError> {
    let body_len = header.body_len as usize;
    let body = frame.slice(..body_len);
    let payload = frame.slice(body_len..);
    let req = frame::verify_request(&body, conn.cap)?;
    let kind = req.body_type();
    let streamed = command::is_streamed(kind);
    let id = header.request_id;
    let started = Instant::now();
    let flow = conn.flow_controlled();
    let body_rx = if streamed {
        let (tx, rx) = if flow { command::flow_body_channel(grants(conn, id)) } else { command::body_channel() };
        crate::metrics::own_add(&conn.shard.metrics().bytes_in, payload.len() as u64);
        // A fresh channel holds at least 2 messages: the first piece and END fit (the first
        // piece's cost is within the initial window: a frame is at most the cap, 16 MiB, so a
        // larger one is refused below).
        let first_cost = credit_cost(payload.len());
        if flow && first_cost > STREAM_WINDOW_BYTES {
            let _ = tx.try_send(BodyMsg::Abort(format!(
                "the request frame carries {} bytes of body, more than the {STREAM_WINDOW_BYTES} bytes of initial \
                 flow-control credit",
                payload.len()
            )));
        } else if !payload.is_empty() {
            let _ = tx.try_send(BodyMsg::Piece(payload));
        }
        if header.is_end() {
            let _ = tx.try_send(BodyMsg::End(Vec::new()));
        } else {
            let credit = STREAM_WINDOW_BYTES.saturating_sub(first_cost);
            conn.streams.borrow_mut().insert(id, StreamIn { tx: Some(tx), credit });
        }
        Some(rx)
    } else {
        None
    };
    let parsed = command::parse(req, body_rx, &body);
    let ctl = Rc::new(ReqCtl {
        get: kind == fb::RequestBody::Get,
        cancelled: Cell::new(false),
        credit: Cell::new(if flow { STREAM_WINDOW_BYTES } else { u64::MAX }),
        waker: RefCell::new(None),
    });
    conn.active.borrow_mut().insert(id, ctl.clone());
    conn.watch.busy.set(true);
    let conn = conn.clone();
    drop(monoio::spawn(async move {
        let _guard = conn.shard.enter();
        let outcome = match parsed {
            Ok(cmd) => conn.shard.handle(cmd).await,
            Err(e) => Outcome::error(&e),
        };
        let failed = send_outcome(&conn, id, outcome, &ctl).await;
        let latency_us = started.elapsed().as_micros() as u64;
        conn.shard.metrics().record(command::op_index(kind), latency_us, failed);
        conn.active.borrow_mut().remove(&id);
        conn.release_slot();
    }));
    Ok(())
}

/// Answers a well-formed request over the in-flight cap with Busy (its data frames are dropped).
fn refuse_over_cap(conn: &Rc<Conn>, header: &FrameHeader, kind: fb::RequestBody) {
    let id = header.request_id;
    if command::is_streamed(kind) && !header.is_end() {
        conn.streams.borrow_mut().insert(id, StreamIn { tx: None, credit: 0 });
    }
    let busy = NodeError::Busy {
        reason: "requests in flight on this connection",
        retry_after_ms: crate::limits::QUEUE_FULL_RETRY_AFTER_MS,
    };
    conn.shard.metrics().busy_replies.fetch_add(1, Relaxed);
    conn.out.frame(FrameKind::Reply, id, true, &reply::error_reply(&busy), Payload::None);
    conn.shard.metrics().record(command::op_index(kind), 0, true);
}

/// Turns away a connection over `connections_max`: its first request is answered `Busy` (so the
/// client learns why, not just "connection closed"), then it is closed. Waits at most
/// `REFUSAL_WAIT` for that request.
pub async fn refuse(stream: TcpStream, connections_max: u32) {
    let (mut rd, mut wr) = stream.into_split();
    let header = monoio::select! {
        h = rd.read_exact(vec![0u8; FRAME_HEADER_BYTES]) => h,
        _ = candybox_core::runtime::sleep(crate::limits::REFUSAL_WAIT) => return,
    };
    let (Ok(_), h) = header else { return };
    let Ok(h) = <[u8; FRAME_HEADER_BYTES]>::try_from(h.as_slice()) else { return };
    let Ok(header) = FrameHeader::decode(&h, candybox_wire::FRAME_BODY_BYTES_MAX_DEFAULT) else { return };
    let busy = NodeError::Busy {
        reason: "too many connections: the node is at connections_max; retry later",
        retry_after_ms: crate::limits::REFUSED_RETRY_AFTER_MS,
    };
    let body = reply::error_reply(&busy);
    let mut frame = FrameHeader::for_body(FrameKind::Reply, header.request_id, FLAG_END, &body, 0).encode().to_vec();
    frame.extend_from_slice(&body);
    let _ = wr.write_all(frame).await;
    let _ = wr.shutdown().await;
    tracing::debug!(connections_max, "refused a connection over the limit with Busy");
}

/// Writes a request's reply (and a get's payload), or, for a request the client cancelled, the
/// `Cancel` frame that ends it. Returns true when the reply was an error.
async fn send_outcome(conn: &Rc<Conn>, id: u64, outcome: Outcome, ctl: &ReqCtl) -> bool {
    if ctl.cancelled.get() {
        conn.out.control(&FrameHeader::cancel(id), &[]);
        conn.out.flush();
        return true;
    }
    match outcome {
        Outcome::Reply(body) => {
            conn.out.frame(FrameKind::Reply, id, true, &body, Payload::None);
            conn.out.flush();
            false
        }
        Outcome::Failed { reply, busy, no_space } => {
            answer_failed(conn, id, &reply, busy, no_space);
            conn.out.flush();
            true
        }
        Outcome::Get { reply, len, body } => {
            send_get(conn, id, reply, len, body, ctl).await;
            false
        }
    }
}

/// Streams a get: the reply frame with the first payload piece, then data frames, each at most
/// the frame cap, built from slices of the Syrup mappings. Waits for room in the output before
/// each frame, so a get whose reader is slow holds at most about `OUTPUT_HIGH_BYTES` queued; in
/// version 2 also for the stream's credit, so a reader that stops reading stalls only its own
/// stream. A cancelled stream ends with a `Cancel` frame at its next frame.
async fn send_get(
    conn: &Rc<Conn>,
    id: u64,
    reply: Bytes,
    len: u64,
    mut body: candybox_core::engine::CandyReader,
    ctl: &ReqCtl,
) {
    let frame_max = (conn.cap as usize).min(GET_FRAME_PAYLOAD_BYTES);
    let mut left = len;
    let mut pending: Option<Piece> = None;
    let mut first = true;
    loop {
        let budget = if first { frame_max.saturating_sub(reply.len()) } else { frame_max };
        let cost = credit_cost((budget as u64).min(left) as usize);
        std::future::poll_fn(|cx| {
            if ctl.cancelled.get() || conn.out.closed.get() || ctl.credit.get() >= cost {
                return Poll::Ready(());
            }
            *ctl.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        // Each chunk is verified as it is gathered: gathering only once the socket has taken
        // all but GET_READ_AHEAD_BYTES keeps the verified bytes just ahead of the socket (and a
        // damaged chunk is found before the bytes ahead of it are long gone).
        conn.out.at_most(GET_READ_AHEAD_BYTES).await;
        if ctl.cancelled.get() {
            conn.out.control(&FrameHeader::cancel(id), &[]);
            conn.out.flush();
            return;
        }
        if conn.out.closed.get() {
            return;
        }
        ctl.credit.set(ctl.credit.get().saturating_sub(cost));
        let mut pieces: Vec<Piece> = Vec::new();
        let mut gathered = 0usize;
        while gathered < budget && left > 0 {
            let mut piece = match pending.take() {
                Some(p) => p,
                None => match body.next_piece() {
                    Some(Ok(p)) => p,
                    Some(Err(e)) => {
                        tracing::warn!(request_id = id, error = %e, "get failed while streaming");
                        if first {
                            let err = reply::error_reply(&NodeError::Engine(e));
                            conn.out.frame(FrameKind::Reply, id, true, &err, Payload::None);
                            conn.out.flush();
                        } else {
                            // The reply promised bytes it cannot deliver: the stream cannot be
                            // resynchronised, so the connection closes.
                            conn.break_off();
                        }
                        return;
                    }
                    None => break,
                },
            };
            if piece.bytes.len() > budget - gathered {
                pending = Some(piece.split_off(budget - gathered));
            }
            gathered += piece.bytes.len();
            left = left.saturating_sub(piece.bytes.len() as u64);
            pieces.push(piece);
        }
        let end = left == 0;
        if first {
            conn.out.frame(FrameKind::Reply, id, end, &reply, Payload::Pieces(pieces));
        } else {
            conn.out.frame(FrameKind::Data, id, end, &[], Payload::Pieces(pieces));
        }
        conn.out.flush();
        crate::metrics::own_add(&conn.shard.metrics().bytes_out, gathered as u64);
        first = false;
        if end {
            return;
        }
        if gathered == 0 {
            // The reader ended before `len` bytes: a bug in the engine's accounting.
            tracing::error!(request_id = id, left, "get body ended early; closing the connection");
            conn.break_off();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use monoio::buf::IoVecBuf as _;

    use super::*;

    /// The bytes the iovecs still describe, in order.
    fn remaining(g: &Gather) -> Vec<u8> {
        let (ptr, len) = (g.read_iovec_ptr(), g.iovecs.len() - g.first);
        let mut out = Vec::new();
        for i in 0..len {
            // SAFETY: `Gather` holds `len` valid iovecs from `first` into buffers it owns, alive here.
            let v = unsafe { *ptr.add(i) };
            // SAFETY: each iovec describes `iov_len` initialised bytes of a live buffer.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len) });
        }
        out
    }

    #[test]
    fn a_gather_interleaves_large_pieces_in_place_and_short_writes_advance_it_exactly() {
        // Small bytes "HEAD" then piece a, "MID" then pieces b and c, then "TAIL".
        let head = b"HEADMIDTAIL".to_vec();
        let pieces: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![b'a' + i; 100 + usize::from(i)])).collect();
        let piece = |b: &Bytes| Piece { bytes: b.clone(), file: None };
        let placed = vec![(4usize, piece(&pieces[0])), (7, piece(&pieces[1])), (7, piece(&pieces[2]))];
        let mut all = b"HEAD".to_vec();
        all.extend_from_slice(&pieces[0]);
        all.extend_from_slice(b"MID");
        all.extend_from_slice(&pieces[1]);
        all.extend_from_slice(&pieces[2]);
        all.extend_from_slice(b"TAIL");
        // Short writes that end inside the head, inside a piece, exactly at a boundary, and
        // across several iovecs at once.
        for steps in [vec![3, 50, 53, 101, 203, 1000], vec![4, 100, 0, 1, 400], vec![all.len()]] {
            let mut g = Gather::new(head.clone(), placed.clone(), Vec::new());
            let mut sent = 0;
            for n in steps {
                let n = n.min(all.len() - sent);
                let done = g.consume(n);
                sent += n;
                assert_eq!(remaining(&g), all[sent..], "after {sent} bytes sent");
                assert_eq!(done, sent == all.len());
                if done {
                    break;
                }
            }
        }
        // No small bytes: the iovecs are the pieces alone.
        let g = Gather::new(Vec::new(), vec![(0, piece(&pieces[0]))], Vec::new());
        assert_eq!(remaining(&g), pieces[0][..]);
    }

    #[test]
    fn the_front_of_a_buffer_is_a_whole_frame_or_asks_for_more() {
        let body = b"0123456789";
        let h = FrameHeader::for_body(FrameKind::Data, 7, FLAG_END, &[], body.len() as u32).encode();
        let mut buf = h.to_vec();
        buf.extend_from_slice(body);
        for cut in 0..buf.len() {
            assert!(matches!(next_frame(&buf[..cut], 1 << 20), Ok(Next::More)), "cut at {cut}");
        }
        match next_frame(&buf, 1 << 20) {
            Ok(Next::Frame(f)) => assert_eq!((f.request_id, f.frame_len()), (7, body.len())),
            _ => panic!("a whole frame was not seen"),
        }
        buf[0] ^= 1;
        assert!(next_frame(&buf, 1 << 20).is_err(), "a bad header is refused before its body is waited for");
    }
}
