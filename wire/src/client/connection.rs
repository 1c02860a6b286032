//! One TCP connection to one port of the node: a writer loop draining a bounded queue of frames,
//! a reader loop decoding frames and handing each to its request's bounded inbox, and
//! [`Exchange`], one request's view of both.
//!
//! Invariants:
//! - Memory per connection is bounded: at most `requests_in_flight_max` live requests, each with
//!   an inbox of [`INBOX_PIECES_MAX`] frames; a write queue of [`WRITE_QUEUE_FRAMES_MAX`] frames
//!   (plus one per request that holds a sender); a receive buffer of one frame (≤ the cap) plus
//!   read-ahead.
//! - Flow control (protocol version 2): a streamed get's reply arrives within the stream's credit
//!   ([`STREAM_WINDOW_BYTES`], granted back as the caller takes pieces), which the inbox always
//!   holds, so a slow consumer of one get stalls only that get; a put's body is sent within the
//!   credit the node grants back as its engine takes pieces.
//! - Dropping a request in the middle (a `GetStream`, a put whose body source failed or whose
//!   future was dropped) sends a `Cancel` frame: the node stops that request only (a put is not
//!   committed) and the connection goes on.
//! - Once closed (node EOF, I/O error, protocol violation, a request abandoned in the middle of
//!   its body), a connection stays closed: every waiting request receives the reason, new ones
//!   fail with it, and the client opens a new connection.
//! - A request abandoned by its caller frees its in-flight slot at once; its late frames are
//!   dropped. Too many abandoned requests awaiting their replies close the connection.

use std::future::poll_fn;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::chan::{queue, QueueReceiver, QueueSender};
use super::codec::{FrameDecoder, OutFrame, RequestEncoder};
use super::demux::{Demux, Inbound, Routed};
use super::driver::{timeout, Driver};
use super::error::ClientError;
use crate::frame::{credit_cost, FrameHeader, STREAM_WINDOW_BYTES};

/// Frames one request's inbox holds before the reader waits for its consumer: a get's reply
/// frame and the data frames its credit allows (each at least 1 MiB but the last), with room.
pub const INBOX_PIECES_MAX: usize = 8;
/// Frames waiting to be written on one connection.
pub const WRITE_QUEUE_FRAMES_MAX: usize = 64;
/// Abandoned requests whose replies are still awaited before the connection is closed.
pub const ABANDONED_REQUESTS_MAX: usize = 1024;
/// Payloads up to this size are copied into the write batch; larger ones are written as they are.
const WRITE_COPY_BYTES_MAX: usize = 16 * 1024;
/// The writer stops gathering queued frames into one write past this size.
const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

/// What every connection of a client is configured with.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Cap on a frame's body plus payload, both directions.
    pub frame_body_bytes_max: u32,
    /// Requests in flight (waiting for their reply to end) at once.
    pub requests_in_flight_max: usize,
    /// How long to wait for the TCP connection.
    pub connect_timeout: Duration,
    /// How long to wait for each reply frame (and each piece of a streamed reply).
    pub request_timeout: Duration,
}

type InboxSender = QueueSender<Result<Inbound, ClientError>>;
type InboxReceiver = QueueReceiver<Result<Inbound, ClientError>>;

struct State {
    demux: Demux<InboxSender>,
    closed: Option<ClientError>,
    slot_waiters: Vec<Waker>,
    /// Send credit of each live request's body, and the sender waiting for more.
    credits: std::collections::HashMap<u64, (u64, Option<Waker>)>,
}

/// The state a connection's handle, its requests and its two loops share.
pub struct Shared {
    state: Mutex<State>,
    requests_in_flight_max: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the connection for `why` (the first reason wins) and fails every waiting request.
    fn close(&self, why: ClientError) {
        let mut s = self.lock();
        if s.closed.is_some() {
            return;
        }
        s.closed = Some(why.clone());
        for inbox in s.demux.drain() {
            inbox.push_final(Err(why.clone()));
        }
        for (_, (_, waker)) in s.credits.drain() {
            if let Some(w) = waker {
                w.wake();
            }
        }
        for w in s.slot_waiters.drain(..) {
            w.wake();
        }
    }

    fn closed(&self) -> Option<ClientError> {
        self.lock().closed.clone()
    }

    fn release(s: &mut State) {
        for w in s.slot_waiters.drain(..) {
            w.wake();
        }
    }

    /// A request's reply ended (or it was given up): its body needs no more credit, and a
    /// sender waiting for some goes on (the node drops what it still sends).
    fn end_credit(s: &mut State, id: u64) {
        if let Some((_, Some(w))) = s.credits.remove(&id) {
            w.wake();
        }
    }
}

/// The two loops of a new connection, for [`Driver::spawn_connection`].
pub struct ConnectionIo<D: Driver> {
    reader: D::Reader,
    writer: D::Writer,
    outbound: QueueReceiver<OutFrame>,
    shared: Arc<Shared>,
    cap: u32,
    addr: String,
}

impl<D: Driver> ConnectionIo<D> {
    /// Splits into the reader loop and the writer loop; spawn both.
    pub fn into_loops(self) -> (ReaderLoop<D>, WriterLoop<D>) {
        (
            ReaderLoop { reader: self.reader, shared: Arc::clone(&self.shared), cap: self.cap, addr: self.addr },
            WriterLoop { writer: self.writer, outbound: self.outbound, shared: self.shared },
        )
    }
}

/// Reads frames and hands each to its request.
pub struct ReaderLoop<D: Driver> {
    reader: D::Reader,
    shared: Arc<Shared>,
    cap: u32,
    addr: String,
}

impl<D: Driver> ReaderLoop<D> {
    /// Runs until the connection closes.
    pub async fn run(mut self) {
        let mut decoder = FrameDecoder::new(self.cap);
        loop {
            loop {
                match decoder.decode() {
                    Ok(Some(frame)) if frame.header.kind == crate::frame::FrameKind::Credit => {
                        let mut s = self.shared.lock();
                        // Credit for a body that already ended is no error.
                        if let Some((credit, waker)) = s.credits.get_mut(&frame.header.request_id) {
                            *credit = credit.saturating_add(crate::frame::credit_grant(&frame.body));
                            if let Some(w) = waker.take() {
                                w.wake();
                            }
                        }
                    }
                    Ok(Some(frame)) => {
                        let routed = {
                            let mut s = self.shared.lock();
                            let routed = s.demux.route(frame);
                            if let Ok(
                                Routed::Deliver { finished: true, request_id, .. }
                                | Routed::Cancelled { request_id, .. },
                            ) = &routed
                            {
                                Shared::end_credit(&mut s, *request_id);
                                Shared::release(&mut s);
                            }
                            routed
                        };
                        match routed {
                            Ok(Routed::Deliver { to, inbound, .. }) => {
                                // A receiver that went away was abandoned; its frames are dropped.
                                let _ = to.send(Ok(inbound)).await;
                            }
                            Ok(Routed::Cancelled { request_id, to }) => {
                                to.push_final(Err(ClientError::Closed {
                                    reason: format!("the node cancelled request {request_id}"),
                                }));
                            }
                            Ok(Routed::Dropped { .. }) => {}
                            Err(e) => {
                                self.shared.close(e);
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.shared.close(e);
                        return;
                    }
                }
            }
            if self.shared.closed().is_some() {
                return;
            }
            let buf = decoder.take_buffer();
            let (result, buf) = D::read(&mut self.reader, buf).await;
            decoder.restore(buf);
            match result {
                Ok(0) => {
                    let reason = if decoder.buffered() == 0 {
                        format!("{} closed the connection", self.addr)
                    } else {
                        format!("{} closed the connection in the middle of a frame", self.addr)
                    };
                    self.shared.close(ClientError::Closed { reason });
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    self.shared.close(ClientError::io(format!("read from {}", self.addr), e));
                    return;
                }
            }
        }
    }
}

/// Writes queued frames, gathering small ones into one write.
pub struct WriterLoop<D: Driver> {
    writer: D::Writer,
    outbound: QueueReceiver<OutFrame>,
    shared: Arc<Shared>,
}

impl<D: Driver> WriterLoop<D> {
    /// Runs until every handle of the connection is gone or the connection closes.
    pub async fn run(mut self) {
        let mut batch = BytesMut::new();
        while let Some(frame) = self.outbound.recv().await {
            if self.shared.closed().is_some() {
                break;
            }
            if let Err(e) = self.write_batch(frame, &mut batch).await {
                self.shared.close(ClientError::io("write to the node", e));
                break;
            }
        }
        let _ = D::shutdown(&mut self.writer).await;
    }

    async fn write_batch(&mut self, first: OutFrame, batch: &mut BytesMut) -> std::io::Result<()> {
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            batch.extend_from_slice(&frame.head);
            if frame.payload.len() <= WRITE_COPY_BYTES_MAX {
                batch.extend_from_slice(&frame.payload);
            } else {
                D::write_all(&mut self.writer, batch.split().freeze()).await?;
                D::write_all(&mut self.writer, frame.payload).await?;
            }
            if batch.len() < WRITE_BATCH_BYTES_MAX {
                next = self.outbound.try_recv();
            }
        }
        if !batch.is_empty() {
            D::write_all(&mut self.writer, batch.split().freeze()).await?;
        }
        Ok(())
    }
}

/// A handle to one open connection; requests on it are pipelined.
pub struct Connection<D: Driver> {
    shared: Arc<Shared>,
    outbound: QueueSender<OutFrame>,
    config: ConnectionConfig,
    addr: String,
    _driver: PhantomData<fn() -> D>,
}

impl<D: Driver> Connection<D> {
    /// Connects to `addr` and spawns the connection's loops.
    ///
    /// # Errors
    /// [`ClientError::Io`] when the connection fails, [`ClientError::Timeout`] when it takes
    /// longer than the connect timeout.
    pub async fn open(addr: &str, config: &ConnectionConfig) -> Result<Connection<D>, ClientError> {
        let what = format!("a connection to {addr}");
        let (reader, writer) = timeout::<D, _>(config.connect_timeout, &what, D::connect(addr))
            .await?
            .map_err(|e| ClientError::io(format!("connect to {addr}"), e))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                demux: Demux::new(),
                closed: None,
                slot_waiters: Vec::new(),
                credits: std::collections::HashMap::new(),
            }),
            requests_in_flight_max: config.requests_in_flight_max.max(1),
        });
        let (outbound, outbound_rx) = queue(WRITE_QUEUE_FRAMES_MAX);
        D::spawn_connection(ConnectionIo {
            reader,
            writer,
            outbound: outbound_rx,
            shared: Arc::clone(&shared),
            cap: config.frame_body_bytes_max,
            addr: addr.to_owned(),
        });
        Ok(Connection { shared, outbound, config: config.clone(), addr: addr.to_owned(), _driver: PhantomData })
    }

    /// The address this connection went to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// True once the connection closed; open a new one.
    pub fn is_closed(&self) -> bool {
        self.shared.closed().is_some()
    }

    /// Starts a request with the flatbuffer `body`, waiting for an in-flight slot. Nothing is
    /// sent until [`Exchange::send`].
    ///
    /// # Errors
    /// The reason the connection closed; [`ClientError::LimitExceeded`] when the body does not
    /// fit in a frame.
    pub async fn start(&self, body: Bytes) -> Result<Exchange<D>, ClientError> {
        let cap = self.config.frame_body_bytes_max;
        let (inbox_tx, inbox) = queue(INBOX_PIECES_MAX);
        let mut inbox_tx = Some(inbox_tx);
        let id = poll_fn(|cx| {
            let mut s = self.shared.lock();
            if let Some(why) = &s.closed {
                return Poll::Ready(Err(why.clone()));
            }
            if s.demux.live() < self.shared.requests_in_flight_max {
                let Some(tx) = inbox_tx.take() else { unreachable!("registered once") };
                let id = s.demux.register(tx);
                s.credits.insert(id, (STREAM_WINDOW_BYTES, None));
                return Poll::Ready(Ok(id));
            }
            s.slot_waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        let mut exchange = Exchange {
            id,
            encoder: None,
            inbox,
            shared: Arc::clone(&self.shared),
            outbound: self.outbound.clone(),
            request_timeout: self.config.request_timeout,
            reply_ended: false,
            ungranted: 0,
            _driver: PhantomData,
        };
        exchange.encoder = Some(RequestEncoder::new(id, body, cap)?);
        Ok(exchange)
    }
}

/// One request in flight: send its message, receive its reply.
pub struct Exchange<D: Driver> {
    id: u64,
    encoder: Option<RequestEncoder>,
    inbox: InboxReceiver,
    shared: Arc<Shared>,
    outbound: QueueSender<OutFrame>,
    request_timeout: Duration,
    reply_ended: bool,
    /// Credit of reply pieces already handed to the caller, granted back at the next receive.
    ungranted: u64,
    _driver: PhantomData<fn() -> D>,
}

impl<D: Driver> Exchange<D> {
    /// The request id.
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// Sends the next payload piece (the first call also sends the Request frame); `end` ends
    /// the message.
    ///
    /// # Errors
    /// The reason the connection closed.
    pub async fn send(&mut self, piece: Bytes, end: bool) -> Result<(), ClientError> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Err(ClientError::protocol("request body unavailable"));
        };
        if encoder.is_ended() {
            return Ok(());
        }
        for frame in encoder.frames(piece, end) {
            self.credit_for(credit_cost(frame.payload.len())).await?;
            if self.outbound.send(frame).await.is_err() {
                return Err(self.closed_reason());
            }
        }
        Ok(())
    }

    /// Sends the last `piece` of the body and ends it with `trailer`, a `PutTrailer` flatbuffer
    /// (metadata the node commits with the object).
    ///
    /// # Errors
    /// The connection's failure.
    pub async fn send_with_trailer(&mut self, piece: Bytes, trailer: &[u8]) -> Result<(), ClientError> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Err(ClientError::protocol("request body unavailable"));
        };
        if encoder.is_ended() {
            return Ok(());
        }
        for frame in encoder.frames_with_trailer(piece, trailer) {
            self.credit_for(credit_cost(frame.payload.len())).await?;
            if self.outbound.send(frame).await.is_err() {
                return Err(self.closed_reason());
            }
        }
        Ok(())
    }

    /// Waits until the body has `cost` bytes of credit and takes them. A request whose reply
    /// already ended needs none (the node drops the rest of its body).
    async fn credit_for(&self, cost: u64) -> Result<(), ClientError> {
        if cost == 0 {
            return Ok(());
        }
        poll_fn(|cx| {
            let mut s = self.shared.lock();
            if let Some(why) = &s.closed {
                return Poll::Ready(Err(why.clone()));
            }
            match s.credits.get_mut(&self.id) {
                None => Poll::Ready(Ok(())),
                Some((credit, _)) if *credit >= cost => {
                    *credit -= cost;
                    Poll::Ready(Ok(()))
                }
                Some((_, waker)) => {
                    *waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    fn closed_reason(&self) -> ClientError {
        self.shared.closed().unwrap_or_else(|| ClientError::Closed { reason: "the writer stopped".to_owned() })
    }

    /// True once the whole request message was handed to the writer.
    pub fn is_sent(&self) -> bool {
        self.encoder.as_ref().is_some_and(RequestEncoder::is_ended)
    }

    /// The next reply frame or data piece, waiting at most the request timeout.
    ///
    /// # Errors
    /// The node's frames never carry errors here (see [`super::reply`]); errors are the
    /// connection's: closed, I/O, protocol, or [`ClientError::Timeout`].
    pub async fn recv(&mut self) -> Result<Inbound, ClientError> {
        if self.reply_ended {
            return Err(ClientError::protocol("read past the end of a reply"));
        }
        if self.ungranted > 0 {
            // The caller took the pieces received so far: the node may send as much again.
            let (head, body) = FrameHeader::credit(self.id, std::mem::take(&mut self.ungranted));
            let frame = OutFrame { head: Bytes::from([&head[..], &body[..]].concat()), payload: Bytes::new() };
            if self.outbound.send(frame).await.is_err() {
                return Err(self.closed_reason());
            }
        }
        let item = timeout::<D, _>(self.request_timeout, "the node's reply", self.inbox.recv()).await?;
        self.accept(item)
    }

    /// The next reply frame or data piece if one has arrived.
    pub fn try_recv(&mut self) -> Option<Result<Inbound, ClientError>> {
        if self.reply_ended {
            return None;
        }
        let item = self.inbox.try_recv()?;
        Some(self.accept(Some(item)))
    }

    fn accept(&mut self, item: Option<Result<Inbound, ClientError>>) -> Result<Inbound, ClientError> {
        match item {
            Some(Ok(inbound)) => {
                match &inbound {
                    Inbound::Reply { end: true, .. } | Inbound::Data { end: true, .. } => self.reply_ended = true,
                    Inbound::Reply { payload, .. } | Inbound::Data { payload, .. } => {
                        self.ungranted += credit_cost(payload.len());
                    }
                }
                Ok(inbound)
            }
            Some(Err(e)) => {
                self.reply_ended = true;
                Err(e)
            }
            None => {
                self.reply_ended = true;
                Err(self.closed_reason())
            }
        }
    }
}

impl<D: Driver> Drop for Exchange<D> {
    fn drop(&mut self) {
        let started = self.encoder.as_ref().is_some_and(RequestEncoder::is_started);
        if self.reply_ended {
            return;
        }
        if started {
            // Ending the message here would store a truncated body, and a reply stream the
            // caller no longer reads would hold the node's request: cancel the request alone.
            let cancel =
                OutFrame { head: Bytes::copy_from_slice(&FrameHeader::cancel(self.id)), payload: Bytes::new() };
            if self.outbound.try_send(cancel).is_err() {
                // No room to say so: only closing the connection tells the node.
                self.shared.close(ClientError::Closed {
                    reason: format!("request {} was abandoned and its cancel could not be queued", self.id),
                });
                return;
            }
        }
        let too_many = {
            let mut s = self.shared.lock();
            if s.closed.is_some() {
                return;
            }
            if !started {
                // Never sent: no reply will come.
                s.demux.forget(self.id);
            } else {
                s.demux.abandon(self.id);
            }
            Shared::end_credit(&mut s, self.id);
            Shared::release(&mut s);
            s.demux.abandoned() > ABANDONED_REQUESTS_MAX
        };
        if too_many {
            self.shared.close(ClientError::Closed {
                reason: format!("more than {ABANDONED_REQUESTS_MAX} abandoned requests await replies"),
            });
        }
    }
}
