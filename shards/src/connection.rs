//! One client connection: read frames, run requests concurrently, write replies in any order.
//!
//! Invariants:
//! - A frame header is decoded and checked (magic, CRC, lengths against the frame cap) before any
//!   byte of its body is buffered; the body CRC is checked and the flatbuffer verified with
//!   explicit limits before a field is read. A malformed frame closes this connection only, with
//!   a logged reason.
//! - At most `requests_in_flight_max` requests run per connection: at the cap the reader stops
//!   reading new requests (backpressure by not reading). While some body is still streaming, its
//!   data frames may be queued behind the next request, so then a request over the cap is read
//!   and answered `Busy` instead of waited for (waiting could deadlock the connection).
//! - Put bodies flow through a bounded channel ([`crate::command::body_channel`]); when it is
//!   full the reader waits, so a connection pins at most a few frames per streaming request.
//! - Every frame body is reserved in the node-wide frame memory budget before it is read (waiting
//!   while the node is over it) and read into a buffer that grows as bytes arrive: a header that
//!   claims 16 MiB costs nothing until the bytes come.
//! - A connection with nothing in flight that completes no frame within `idle_timeout_ms`, or
//!   whose frame body stalls past `frame_timeout_ms`, is closed.
//! - Get payloads are written straight from the Syrup mappings (`Bytes` slices of the mmap are
//!   monoio `IoBuf`s): no intermediate copy. Data frames never exceed the frame cap.
//! - One writer task owns the socket's write half; replies reach it through a bounded queue, one
//!   whole frame per message, so frames never interleave inside each other.

use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, HashSet},
    rc::Rc,
    sync::atomic::Ordering::Relaxed,
    time::Instant,
};

use bytes::Bytes;
use candybox_wire::frame::{self, FrameError, FrameHeader, FrameKind, FLAG_END, FRAME_HEADER_BYTES};
use monoio::{
    buf::IoBufMut,
    io::{AsyncReadRentExt, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable},
    net::TcpStream,
};

use crate::{
    command::{self, BodyMsg, BodyTx},
    limits::{
        GET_FRAME_PAYLOAD_BYTES, OUTGOING_FRAMES_MAX, READ_BUFFER_BYTES, WRITE_GATHER_BYTES,
        WRITE_GATHER_PIECE_BYTES_MAX,
    },
    reply::{self, NodeError, Outcome},
    shard::Shard,
};

/// The pieces of one frame, written in order.
type Frame = Vec<Bytes>;

/// A connection's read half behind its read buffer (`READ_BUFFER_BYTES`).
type Reader = monoio::io::BufReader<OwnedReadHalf<TcpStream>>;

struct Conn {
    shard: Rc<Shard>,
    out: async_channel::Sender<Frame>,
    /// Bodies still receiving data frames; `None` once the request failed (its frames are
    /// dropped until END).
    streams: RefCell<HashMap<u64, Option<BodyTx>>>,
    /// Request ids whose reply has not ended.
    active: RefCell<HashSet<u64>>,
    /// A semaphore of in-flight request slots: send takes a slot, receive frees one.
    slots: (async_channel::Sender<()>, async_channel::Receiver<()>),
    cap: u32,
    broken: Cell<bool>,
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

/// Serves one connection until the peer closes it, it sends a malformed frame, or shutdown.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: std::net::SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (out_tx, out_rx) = async_channel::bounded::<Frame>(OUTGOING_FRAMES_MAX);
    let writer = monoio::spawn(write_loop(wr, out_rx));
    let in_flight_max = shard.shared.config.requests_in_flight_max as usize;
    let conn = Rc::new(Conn {
        shard: shard.clone(),
        out: out_tx,
        streams: RefCell::new(HashMap::new()),
        active: RefCell::new(HashSet::new()),
        slots: async_channel::bounded(in_flight_max),
        cap: shard.shared.config.frame_body_bytes_max,
        broken: Cell::new(false),
    });
    let stop = read_loop(&conn, monoio::io::BufReader::with_capacity(READ_BUFFER_BYTES, rd)).await;
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
    if matches!(stop, Stop::Malformed(_) | Stop::Io(_) | Stop::Stalled) {
        conn.broken.set(true);
        conn.out.close();
    } else {
        // Let in-flight requests finish and their replies go out, then close.
        while !conn.active.borrow().is_empty() && !conn.broken.get() {
            candybox_core::runtime::sleep(std::time::Duration::from_millis(2)).await;
        }
        conn.out.close();
    }
    drop(conn);
    writer.await;
}

/// Writes queued frames in order. Small pieces (headers, flatbuffer bodies, small payloads) are
/// gathered into one reused buffer together with every frame already queued behind them, so a
/// burst of replies leaves in one send instead of three sends (and three TCP segments) per reply.
/// Large pieces (a get payload, slices of a Syrup mapping) are never copied: the gathered bytes
/// and the large pieces that follow them leave in one vectored send (`writev`), so a 1 MiB data
/// frame of 64 KiB chunks costs one send, not sixteen.
async fn write_loop(mut wr: OwnedWriteHalf<TcpStream>, rx: async_channel::Receiver<Frame>) {
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_GATHER_BYTES);
    let mut large: Vec<Bytes> = Vec::new();
    while let Ok(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            for piece in frame {
                // A small piece that does not fit behind what is pending waits for the flush.
                let after_flush = if piece.len() <= WRITE_GATHER_PIECE_BYTES_MAX {
                    if large.is_empty() && buf.len() + piece.len() <= WRITE_GATHER_BYTES {
                        buf.extend_from_slice(&piece);
                        continue;
                    }
                    Some(piece)
                } else {
                    large.push(piece);
                    if large.len() < GATHER_IOVECS_MAX {
                        continue;
                    }
                    None
                };
                // Order: what is gathered and the large pieces behind it go first.
                let Some(emptied) = send(&mut wr, buf, &mut large).await else {
                    rx.close();
                    return;
                };
                buf = emptied;
                if let Some(p) = after_flush {
                    buf.extend_from_slice(&p);
                }
            }
            // Replies that are ready leave together: take what is already queued, without waiting.
            if buf.len() < WRITE_GATHER_BYTES / 2 {
                next = rx.try_recv().ok();
            }
        }
        let Some(emptied) = send(&mut wr, buf, &mut large).await else {
            rx.close();
            return;
        };
        buf = emptied;
    }
    let _ = wr.shutdown().await;
}

/// Most iovecs of one vectored send (well below the kernel's `IOV_MAX` of 1024).
const GATHER_IOVECS_MAX: usize = 64;

/// The gathered small bytes followed by large pieces, as one iovec array for `writev`.
struct Gather {
    head: Vec<u8>,
    pieces: Vec<Bytes>,
    iovecs: Vec<libc::iovec>,
    /// The first iovec not yet sent whole (`iovecs[first]` is advanced past what was sent).
    first: usize,
}

impl Gather {
    fn new(head: Vec<u8>, pieces: Vec<Bytes>) -> Gather {
        let mut iovecs = Vec::with_capacity(pieces.len() + 1);
        if !head.is_empty() {
            iovecs.push(libc::iovec { iov_base: head.as_ptr() as *mut libc::c_void, iov_len: head.len() });
        }
        for p in &pieces {
            iovecs.push(libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() });
        }
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
        self.iovecs.len().saturating_sub(self.first)
    }
}

/// Sends the gathered bytes and then the large pieces (vectored sends, or one `write` when there
/// are no large pieces); returns the emptied buffer, or `None` when the socket failed.
async fn send(wr: &mut OwnedWriteHalf<TcpStream>, mut buf: Vec<u8>, large: &mut Vec<Bytes>) -> Option<Vec<u8>> {
    if large.is_empty() {
        if buf.is_empty() {
            return Some(buf);
        }
        let (res, mut buf) = wr.write_all(buf).await;
        res.ok()?;
        buf.clear();
        return Some(buf);
    }
    let mut gather = Gather::new(std::mem::take(&mut buf), std::mem::take(large));
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
    let Gather { mut head, mut pieces, .. } = gather;
    head.clear();
    pieces.clear();
    *large = pieces;
    Some(head)
}

/// Reads exactly `n` bytes into a fresh buffer (headers: a few bytes).
async fn read_n(rd: &mut Reader, n: usize) -> Result<Vec<u8>, std::io::Error> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let buf = Vec::with_capacity(n).slice_mut(0..n);
    let (res, buf) = rd.read_exact(buf).await;
    res?;
    let v = buf.into_inner();
    if v.len() != n {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short read"));
    }
    Ok(v)
}

/// Reads a frame body of `n` bytes under `reservation`: the buffer grows as bytes arrive (at most
/// doubling, never past `n`), so a header that claims 16 MiB costs nothing until the bytes come.
async fn read_body(
    rd: &mut Reader,
    n: usize,
    reservation: crate::frame_memory::Reservation,
) -> Result<Bytes, std::io::Error> {
    let mut v: Vec<u8> = Vec::new();
    while v.len() < n {
        let len = v.len();
        let want = (n - len).min(FRAME_READ_CHUNK_BYTES);
        let target = len.saturating_mul(2).max(len + want).min(n);
        v.reserve_exact(target - len);
        let (res, slice) = rd.read_exact(v.slice_mut(len..len + want)).await;
        res?;
        v = slice.into_inner();
        if v.len() != len + want {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short read"));
        }
    }
    Ok(crate::frame_memory::into_bytes(v, reservation))
}

/// Bytes read into a growing frame body at a time.
const FRAME_READ_CHUNK_BYTES: usize = 64 * 1024;

/// Resolves once the connection has had nothing in flight for `idle`: checked a few times per
/// period, so a connection idle since its last request closes between one and 1.25 periods later.
async fn idle_for(conn: &Conn, idle: std::time::Duration) {
    let step = (idle / 4).max(std::time::Duration::from_millis(10));
    let mut since: Option<Instant> = None;
    loop {
        candybox_core::runtime::sleep(step).await;
        if !conn.active.borrow().is_empty() || !conn.streams.borrow().is_empty() {
            since = None;
            continue;
        }
        let start = *since.get_or_insert_with(Instant::now);
        if start.elapsed() + step >= idle {
            return;
        }
    }
}

/// Reserves the frame's memory (waiting while the node is over its budget), then reads its body
/// within the frame timeout. Every frame is reserved, small ones too: small data frames queue
/// behind streaming puts like large ones, and only the budget bounds them node-wide.
async fn frame_body(conn: &Conn, rd: &mut Reader, n: usize) -> Result<Bytes, Stop> {
    let shutdown = conn.shard.shutdown_signal();
    let timeout = std::time::Duration::from_millis(conn.shard.shared.config.frame_timeout_ms);
    let reservation = monoio::select! {
        biased;
        r = crate::frame_memory::reserve(&conn.shard.shared.metrics.frame_memory, n as u64) => r,
        _ = shutdown.recv() => return Err(Stop::Shutdown),
    };
    monoio::select! {
        biased;
        b = read_body(rd, n, reservation) => b.map_err(Stop::Io),
        _ = candybox_core::runtime::sleep(timeout) => Err(Stop::Stalled),
        _ = shutdown.recv() => Err(Stop::Shutdown),
    }
}

async fn read_loop(conn: &Rc<Conn>, mut rd: Reader) -> Stop {
    let shutdown = conn.shard.shutdown_signal();
    let idle = std::time::Duration::from_millis(conn.shard.shared.config.idle_timeout_ms);
    loop {
        let header = monoio::select! {
            // The read first: while requests arrive back to back their headers are buffered, and
            // the idle timer is never registered.
            biased;
            h = read_n(&mut rd, FRAME_HEADER_BYTES) => h,
            _ = shutdown.recv() => return Stop::Shutdown,
            _ = idle_for(conn, idle) => return Stop::Idle,
        };
        let header = match header {
            Ok(h) => h,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Stop::Eof,
            Err(e) => return Stop::Io(e),
        };
        let mut h = [0u8; FRAME_HEADER_BYTES];
        h.copy_from_slice(&header);
        let header = match FrameHeader::decode(&h, conn.cap) {
            Ok(h) => h,
            Err(e) => return Stop::Malformed(e),
        };
        match header.kind {
            FrameKind::Reply => return Stop::Malformed(FrameError::Kind(FrameKind::Reply as u8)),
            FrameKind::Data => {
                let payload = match frame_body(conn, &mut rd, header.frame_len()).await {
                    Ok(p) => p,
                    Err(stop) => return stop,
                };
                if let Err(e) = data_frame(conn, &header, payload).await {
                    return Stop::Malformed(e);
                }
            }
            FrameKind::Request => {
                if conn.active.borrow().contains(&header.request_id) {
                    return Stop::Malformed(FrameError::OutOfSequence(header.request_id));
                }
                // Backpressure: wait for a slot before buffering the body. But while bodies are
                // still streaming, their data frames may sit behind this request: waiting could
                // deadlock, so a request over the cap is then answered Busy instead.
                let slot = if conn.streams.borrow().is_empty() {
                    if conn.slots.0.send(()).await.is_err() {
                        return Stop::Shutdown;
                    }
                    true
                } else {
                    conn.slots.0.try_send(()).is_ok()
                };
                let frame = match frame_body(conn, &mut rd, header.frame_len()).await {
                    Ok(p) => p,
                    Err(stop) => return stop,
                };
                let handled =
                    if slot { request_frame(conn, &header, frame) } else { refuse_over_cap(conn, &header, frame) };
                if let Err(e) = handled {
                    return Stop::Malformed(e);
                }
            }
        }
    }
}

async fn data_frame(conn: &Rc<Conn>, header: &FrameHeader, payload: Bytes) -> Result<(), FrameError> {
    let tx = match conn.streams.borrow().get(&header.request_id) {
        None => return Err(FrameError::OutOfSequence(header.request_id)),
        Some(tx) => tx.clone(),
    };
    conn.shard.metrics().bytes_in.fetch_add(payload.len() as u64, Relaxed);
    if let Some(tx) = tx {
        let mut ok = true;
        if !payload.is_empty() {
            ok = tx.send(BodyMsg::Piece(payload)).await.is_ok();
        }
        if ok && header.is_end() {
            ok = tx.send(BodyMsg::End).await.is_ok();
        }
        if !ok {
            // The request failed early; drop the rest of its frames.
            if let Some(slot) = conn.streams.borrow_mut().get_mut(&header.request_id) {
                *slot = None;
            }
        }
    }
    if header.is_end() {
        conn.streams.borrow_mut().remove(&header.request_id);
    }
    Ok(())
}

fn request_frame(conn: &Rc<Conn>, header: &FrameHeader, frame: Bytes) -> Result<(), FrameError> {
    let body_len = header.body_len as usize;
    let body = frame.slice(..body_len);
    let payload = frame.slice(body_len..);
    header.check_body(&body)?;
    let req = frame::verify_request(&body, conn.cap)?;
    let kind = req.body_type();
    let streamed = command::is_streamed(kind);
    if !streamed && !header.is_end() {
        return Err(FrameError::OutOfSequence(header.request_id));
    }
    let id = header.request_id;
    let started = Instant::now();
    conn.shard.note_request(started);
    let body_rx = if streamed {
        let (tx, rx) = command::body_channel();
        conn.shard.metrics().bytes_in.fetch_add(payload.len() as u64, Relaxed);
        // A fresh channel holds BODY_PIECES_MAX ≥ 2 messages: the first piece and END fit.
        if !payload.is_empty() {
            let _ = tx.try_send(BodyMsg::Piece(payload));
        }
        if header.is_end() {
            let _ = tx.try_send(BodyMsg::End);
        } else {
            conn.streams.borrow_mut().insert(id, Some(tx));
        }
        Some(rx)
    } else {
        None
    };
    let parsed = command::parse(req, body_rx, &body);
    conn.active.borrow_mut().insert(id);
    let conn = conn.clone();
    drop(monoio::spawn(async move {
        let _guard = conn.shard.enter();
        let outcome = match parsed {
            Ok(cmd) => conn.shard.handle(cmd).await,
            Err(e) => Outcome::error(&e),
        };
        let failed = send_outcome(&conn, id, outcome).await;
        let latency_us = started.elapsed().as_micros() as u64;
        conn.shard.metrics().record(command::op_index(kind), latency_us, failed);
        conn.active.borrow_mut().remove(&id);
        let _ = conn.slots.1.try_recv();
    }));
    Ok(())
}

/// Answers a well-formed request over the in-flight cap with Busy (its data frames are dropped).
fn refuse_over_cap(conn: &Rc<Conn>, header: &FrameHeader, frame: Bytes) -> Result<(), FrameError> {
    let body = frame.slice(..header.body_len as usize);
    header.check_body(&body)?;
    let req = frame::verify_request(&body, conn.cap)?;
    let kind = req.body_type();
    let id = header.request_id;
    if command::is_streamed(kind) && !header.is_end() {
        conn.streams.borrow_mut().insert(id, None);
    }
    conn.active.borrow_mut().insert(id);
    let conn = conn.clone();
    drop(monoio::spawn(async move {
        let busy = NodeError::Busy {
            reason: "requests in flight on this connection",
            retry_after_ms: crate::limits::QUEUE_FULL_RETRY_AFTER_MS,
        };
        send_outcome(&conn, id, Outcome::error(&busy)).await;
        conn.shard.metrics().record(command::op_index(kind), 0, true);
        conn.active.borrow_mut().remove(&id);
    }));
    Ok(())
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
    let mut frame = frame_header(FrameKind::Reply, header.request_id, true, &body, 0).to_vec();
    frame.extend_from_slice(&body);
    let _ = wr.write_all(frame).await;
    let _ = wr.shutdown().await;
    tracing::debug!(connections_max, "refused a connection over the limit with Busy");
}

fn frame_header(kind: FrameKind, id: u64, end: bool, body: &[u8], payload_len: usize) -> Bytes {
    let flags = if end { FLAG_END } else { 0 };
    let h = FrameHeader::for_body(kind, id, flags, body, payload_len as u32);
    Bytes::copy_from_slice(&h.encode())
}

/// Writes a request's reply (and a get's payload). Returns true when the reply was an error.
async fn send_outcome(conn: &Rc<Conn>, id: u64, outcome: Outcome) -> bool {
    match outcome {
        Outcome::Reply(body) => {
            send_plain(conn, id, body).await;
            false
        }
        Outcome::Failed { reply, busy, no_space } => {
            if busy {
                conn.shard.metrics().busy_replies.fetch_add(1, Relaxed);
            }
            if no_space {
                conn.shard.shared.metrics.disk.refusals.fetch_add(1, Relaxed);
            }
            send_plain(conn, id, reply).await;
            true
        }
        Outcome::Get { reply, len, body } => {
            send_get(conn, id, reply, len, body).await;
            false
        }
    }
}

/// Streams a get: the reply frame with the first payload piece, then data frames, each at most
/// the frame cap, built from slices of the Syrup mappings.
async fn send_get(conn: &Rc<Conn>, id: u64, reply: Bytes, len: u64, mut body: candybox_core::engine::CandyReader) {
    let frame_max = (conn.cap as usize).min(GET_FRAME_PAYLOAD_BYTES);
    let mut left = len;
    let mut pending: Option<Bytes> = None;
    let mut first = true;
    loop {
        let budget = if first { frame_max.saturating_sub(reply.len()) } else { frame_max };
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut gathered = 0usize;
        while gathered < budget && left > 0 {
            let mut piece = match pending.take() {
                Some(p) => p,
                None => match body.next() {
                    Some(Ok(p)) => p,
                    Some(Err(e)) => {
                        tracing::warn!(request_id = id, error = %e, "get failed while streaming");
                        if first {
                            let err = reply::error_reply(&NodeError::Engine(e));
                            let _ = send_plain(conn, id, err).await;
                        } else {
                            // The reply promised bytes it cannot deliver: the stream cannot be
                            // resynchronised, so the connection closes.
                            conn.broken.set(true);
                            conn.out.close();
                        }
                        return;
                    }
                    None => break,
                },
            };
            if piece.len() > budget - gathered {
                pending = Some(piece.split_off(budget - gathered));
            }
            gathered += piece.len();
            left = left.saturating_sub(piece.len() as u64);
            pieces.push(piece);
        }
        let end = left == 0;
        let mut frame = Vec::with_capacity(pieces.len() + 2);
        if first {
            frame.push(frame_header(FrameKind::Reply, id, end, &reply, gathered));
            frame.push(reply.clone());
        } else {
            frame.push(frame_header(FrameKind::Data, id, end, &[], gathered));
        }
        frame.extend(pieces);
        conn.shard.metrics().bytes_out.fetch_add(gathered as u64, Relaxed);
        if conn.out.send(frame).await.is_err() {
            return;
        }
        first = false;
        if end {
            return;
        }
        if gathered == 0 {
            // The reader ended before `len` bytes: a bug in the engine's accounting.
            tracing::error!(request_id = id, left, "get body ended early; closing the connection");
            conn.broken.set(true);
            conn.out.close();
            return;
        }
    }
}

/// Sends a reply without payload as one buffer (one write for header and body).
async fn send_plain(conn: &Rc<Conn>, id: u64, body: Bytes) -> bool {
    let mut one = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    one.extend_from_slice(&frame_header(FrameKind::Reply, id, true, &body, 0));
    one.extend_from_slice(&body);
    conn.out.send(vec![Bytes::from(one)]).await.is_ok()
}

#[cfg(test)]
mod tests {
    use monoio::buf::IoVecBuf as _;

    use super::*;

    /// The bytes the iovecs still describe, in order.
    fn remaining(g: &Gather) -> Vec<u8> {
        let (ptr, len) = (g.read_iovec_ptr(), g.read_iovec_len());
        let mut out = Vec::new();
        for i in 0..len {
            // SAFETY: `Gather` hands out `len` valid iovecs into buffers it owns, alive here.
            let v = unsafe { *ptr.add(i) };
            // SAFETY: each iovec describes `iov_len` initialised bytes of a live buffer.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len) });
        }
        out
    }

    #[test]
    fn a_gather_advanced_by_short_writes_describes_exactly_the_unsent_bytes() {
        let head = b"HEADER".to_vec();
        let pieces: Vec<Bytes> = (0..4u8).map(|i| Bytes::from(vec![b'a' + i; 100 + usize::from(i)])).collect();
        let mut all = head.clone();
        for p in &pieces {
            all.extend_from_slice(p);
        }
        // Short writes that end inside the head, inside a piece, exactly at a boundary, and
        // across several iovecs at once.
        for steps in [vec![3, 50, 53, 101, 203, 1000], vec![6, 100, 0, 1, 400], vec![all.len()]] {
            let mut g = Gather::new(head.clone(), pieces.clone());
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
        // No head: the iovecs start at the first piece.
        let g = Gather::new(Vec::new(), pieces.clone());
        assert_eq!(remaining(&g), all[head.len()..]);
    }
}
