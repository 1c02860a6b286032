//! The requests in flight on one lean connection: a fixed table of slots, one per request the
//! connection may carry at once (`--depth`), and the state machine that matches the node's
//! frames to them. No I/O and no allocation after [`Pipeline::new`].
//!
//! Invariants:
//! - A request id is `sequence << SLOT_BITS | slot`: the slot is found from the id in O(1), and
//!   the sequence makes every id of a connection unique, so a stale or foreign id is caught.
//! - A request completes exactly once: on its Reply frame when that carries END, else on the
//!   Data frame with END; the payload bytes of all its frames add up to the length its reply
//!   announced, which is the object's size.
//! - Every frame in a buffer is handled before the caller reads again ([`Pipeline::on_bytes`]):
//!   a frame whose header and body are whole is handled at once and its payload counted as it
//!   arrives (the part in this buffer now, the rest from later reads, never gathered); a frame
//!   whose header or body is incomplete stays in the buffer untouched.

use std::{cell::RefCell, rc::Rc, time::Instant};

use candybox_wire::{fb, frame::FrameKind};

use super::{
    frames::{next_frame, FrameRef, ReplyError, Scan, Verdict, VerifiedReplies},
    OpKind,
};

/// Low bits of a request id that name its slot.
pub const SLOT_BITS: u32 = 16;
/// Most requests in flight on one connection (the node's own default cap is 64).
pub const DEPTH_MAX: usize = 4096;
const _: () = assert!(DEPTH_MAX <= 1 << SLOT_BITS);

/// One request slot.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The request id in flight, 0 when the slot is free (sequences start at 1).
    id: u64,
    op: OpKind,
    /// When the request was meant to go out (open loop: its schedule; closed loop: `sent`).
    intended: Instant,
    /// When its write was issued.
    sent: Instant,
    /// The object's size: what the reply must report.
    size: u64,
    /// Payload bytes the reply announced (a get's object bytes).
    payload_expected: u64,
    /// Payload bytes received so far.
    received: u64,
    /// True once the Reply frame came and Data frames follow.
    streaming: bool,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered as asked; `bytes` of object data moved (a get's payload, a put's body).
    Ok {
        /// Object bytes.
        bytes: u64,
    },
    /// The node answered with this error.
    Failed(fb::ErrorCode),
    /// The node abandoned the request (a `Cancel` frame, protocol version 2).
    Cancelled,
}

/// A finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Its operation.
    pub op: OpKind,
    /// When it was meant to go out.
    pub intended: Instant,
    /// When it went out.
    pub sent: Instant,
    /// How it ended.
    pub outcome: Outcome,
}

/// The rest of a frame's payload, still to arrive.
#[derive(Debug, Clone, Copy)]
struct PayloadDue {
    /// The slot of the request it belongs to.
    index: usize,
    /// Bytes still to come.
    missing: u64,
    /// Whether the frame carries END (the request completes after its last byte).
    end: bool,
}

/// The slots of one connection.
#[derive(Debug)]
pub struct Pipeline {
    slots: Vec<Slot>,
    /// Indexes of the free slots (a stack).
    free: Vec<u16>,
    /// The sequence of the next request id.
    sequence: u64,
    /// A frame whose payload is partly received: the next bytes on the connection are its.
    due: Option<PayloadDue>,
    /// The reply bodies verified before, shared by the connections of one thread.
    replies: Rc<RefCell<VerifiedReplies>>,
    /// Protocol version 2: each Data frame received is acknowledged with a `Credit` frame
    /// granting its cost back, so a reply stream longer than the initial window keeps flowing.
    grant_credit: bool,
    /// Grants (request id, bytes) not yet sent; at most one per Data frame handled since the
    /// caller last took them.
    grants: Vec<(u64, u64)>,
}

impl Pipeline {
    /// A connection carrying up to `depth` requests at once; `now` fills the free slots' times.
    ///
    /// # Panics
    /// When `depth` is 0 or above [`DEPTH_MAX`] (the caller checks `--depth` first).
    pub fn new(depth: usize, now: Instant) -> Pipeline {
        Pipeline::sharing(depth, now, Rc::default())
    }

    /// As [`Pipeline::new`], checking replies against `replies` (the thread's connections share
    /// one: a key's reply body is verified once for all of them).
    ///
    /// # Panics
    /// As [`Pipeline::new`].
    pub fn sharing(depth: usize, now: Instant, replies: Rc<RefCell<VerifiedReplies>>) -> Pipeline {
        assert!((1..=DEPTH_MAX).contains(&depth), "depth {depth} outside 1..={DEPTH_MAX}");
        let free_slot = Slot {
            id: 0,
            op: OpKind::Get,
            intended: now,
            sent: now,
            size: 0,
            payload_expected: 0,
            received: 0,
            streaming: false,
        };
        // Popped from the end: slot 0 first.
        let free = (0..depth).rev().map(|s| u16::try_from(s).unwrap_or(u16::MAX)).collect();
        Pipeline {
            slots: vec![free_slot; depth],
            free,
            sequence: 1,
            due: None,
            replies,
            grant_credit: false,
            grants: Vec::with_capacity(depth),
        }
    }

    /// Acknowledges every Data frame with a credit grant (protocol version 2 and later).
    pub fn granting_credit(mut self) -> Pipeline {
        self.grant_credit = true;
        self
    }

    /// Hands each credit grant owed since the last call to `grant` (request id, bytes).
    pub fn take_grants(&mut self, mut grant: impl FnMut(u64, u64)) {
        for (id, bytes) in self.grants.drain(..) {
            grant(id, bytes);
        }
    }

    /// Bytes of the payload due (the frame being received) still to arrive: the next bytes on
    /// the connection are its.
    pub fn payload_due(&self) -> u64 {
        self.due.map_or(0, |d| d.missing)
    }

    /// Counts `n` bytes of the payload due that were received and dropped without being read
    /// (discarded by the kernel); the request they finished, if any.
    ///
    /// # Errors
    /// As [`Pipeline::on_frame`] (a payload longer than its reply announced).
    pub fn on_discarded(&mut self, n: u64) -> Result<Option<Completion>, ReplyError> {
        self.on_due_payload(n)
    }

    /// True when another request can start.
    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Takes a free slot for an `op` request on an object of `size` bytes; its request id, or
    /// `None` when every slot is taken.
    pub fn start(&mut self, op: OpKind, size: u64, intended: Instant, sent: Instant) -> Option<u64> {
        let s = self.free.pop()?;
        let id = (self.sequence << SLOT_BITS) | u64::from(s);
        self.sequence += 1;
        let slot = self.slots.get_mut(usize::from(s))?;
        *slot = Slot { id, op, intended, sent, size, payload_expected: 0, received: 0, streaming: false };
        Some(id)
    }

    /// Handles one frame (its header, body and the payload present; when part of the payload is
    /// still missing, the next bytes of the connection are counted as its); the request it
    /// finished, if any.
    ///
    /// # Errors
    /// A [`ReplyError`] when the frame does not fit a request in flight; the connection must
    /// close.
    pub fn on_frame(&mut self, frame: &FrameRef<'_>, cap: u32) -> Result<Option<Completion>, ReplyError> {
        match frame.header.kind {
            // A grant of credit for sending a body's Data frames: this path sends every request
            // whole in its first frame, so it never waits for credit (and may get a late grant
            // for a request already answered).
            FrameKind::Credit => return Ok(None),
            // The node ended the request abandoned: no more frames carry its id.
            FrameKind::Cancel => {
                let id = frame.header.request_id;
                let index = usize::try_from(id & ((1 << SLOT_BITS) - 1)).unwrap_or(usize::MAX);
                return match self.slots.get(index) {
                    Some(s) if s.id == id && id != 0 => Ok(Some(self.finish(index, Outcome::Cancelled))),
                    _ => Err(ReplyError::UnknownRequestId(id)),
                };
            }
            FrameKind::Request | FrameKind::Reply | FrameKind::Data => {}
        }
        if self.grant_credit && frame.header.kind == FrameKind::Data && frame.header.payload_len > 0 {
            // Granted as the frame's header arrives: its payload is counted as it comes and
            // never held, so the credit it used is free again.
            let cost = candybox_wire::frame::credit_cost(frame.header.payload_len as usize);
            self.grants.push((frame.header.request_id, cost));
        }
        let missing = frame.payload_missing();
        if missing == 0 {
            return self.on_whole_frame(frame, cap);
        }
        // Handled as a frame without END whose payload is what arrived; the rest is due.
        let mut head = *frame;
        head.header.flags &= !candybox_wire::FLAG_END;
        let index = usize::try_from(frame.header.request_id & ((1 << SLOT_BITS) - 1)).unwrap_or(usize::MAX);
        let done = self.on_whole_frame(&head, cap)?;
        if let Some(c) = done {
            // Only an error reply completes without END, and it carries no payload.
            return Ok(Some(c));
        }
        self.due = Some(PayloadDue { index, missing, end: frame.header.is_end() });
        Ok(None)
    }

    /// Counts `n` payload bytes of the frame due; the request it finished, if any.
    fn on_due_payload(&mut self, n: u64) -> Result<Option<Completion>, ReplyError> {
        let Some(mut due) = self.due.take() else { return Ok(None) };
        let n = n.min(due.missing);
        due.missing -= n;
        if let Some(slot) = self.slots.get_mut(due.index) {
            slot.received += n;
        }
        let end = due.missing == 0 && due.end;
        if due.missing > 0 {
            self.due = Some(due);
        }
        self.advance(due.index, end)
    }

    /// Handles a frame whose payload is all in `frame` (or treated so: END cleared).
    fn on_whole_frame(&mut self, frame: &FrameRef<'_>, cap: u32) -> Result<Option<Completion>, ReplyError> {
        let h = frame.header;
        let id = h.request_id;
        let index = usize::try_from(id & ((1 << SLOT_BITS) - 1)).unwrap_or(usize::MAX);
        let slot = match self.slots.get_mut(index) {
            Some(s) if s.id == id && id != 0 => s,
            _ => return Err(ReplyError::UnknownRequestId(id)),
        };
        let payload = frame.payload.len() as u64;
        match h.kind {
            FrameKind::Reply if !slot.streaming => {
                let verdict = self.replies.borrow_mut().check(slot.op, frame.body, h.body_crc, cap, slot.size, id);
                match verdict? {
                    Verdict::Failed(code) => {
                        if !h.is_end() || payload != 0 {
                            return Err(ReplyError::ErrorNotFinal(id));
                        }
                        Ok(Some(self.finish(index, Outcome::Failed(code))))
                    }
                    Verdict::Done { payload_len } => {
                        slot.payload_expected = payload_len;
                        slot.received = payload;
                        slot.streaming = true;
                        self.advance(index, h.is_end())
                    }
                }
            }
            FrameKind::Data if slot.streaming => {
                slot.received += payload;
                self.advance(index, h.is_end())
            }
            kind => Err(ReplyError::OutOfSequence { request_id: id, kind }),
        }
    }

    /// After payload arrived for the request in `index`: checks the count, finishes it on END.
    fn advance(&mut self, index: usize, end: bool) -> Result<Option<Completion>, ReplyError> {
        let Some(slot) = self.slots.get(index) else { return Ok(None) };
        let wrong =
            ReplyError::WrongLength { request_id: slot.id, expected: slot.payload_expected, got: slot.received };
        if slot.received > slot.payload_expected || (end && slot.received != slot.payload_expected) {
            return Err(wrong);
        }
        if !end {
            return Ok(None);
        }
        let bytes = match slot.op {
            OpKind::Get => slot.received,
            OpKind::Put => slot.size,
            _ => 0,
        };
        Ok(Some(self.finish(index, Outcome::Ok { bytes })))
    }

    fn finish(&mut self, index: usize, outcome: Outcome) -> Completion {
        let done = match self.slots.get_mut(index) {
            Some(slot) => {
                slot.id = 0;
                slot.streaming = false;
                Completion { op: slot.op, intended: slot.intended, sent: slot.sent, outcome }
            }
            // Unreachable: `index` came from a slot found above.
            None => return Completion { op: OpKind::Get, intended: Instant::now(), sent: Instant::now(), outcome },
        };
        self.free.push(u16::try_from(index).unwrap_or(u16::MAX));
        done
    }

    /// Handles every frame in `buf` (after the rest of a payload due from the last call),
    /// handing each finished request to `done`. Returns the bytes consumed and, when a frame
    /// whose header or body is incomplete follows them, how many bytes it needs in all (0 when
    /// everything was consumed).
    ///
    /// # Errors
    /// As [`next_frame`] and [`Pipeline::on_frame`].
    pub fn on_bytes(
        &mut self,
        buf: &[u8],
        cap: u32,
        mut done: impl FnMut(Completion),
    ) -> Result<(usize, usize), ReplyError> {
        let mut at = 0;
        loop {
            let rest = buf.get(at..).unwrap_or_default();
            if let Some(due) = self.due {
                let n = usize::try_from(due.missing).unwrap_or(usize::MAX).min(rest.len());
                if let Some(c) = self.on_due_payload(n as u64)? {
                    done(c);
                }
                at += n;
                if self.due.is_some() {
                    // The buffer is used up and the payload still runs on.
                    return Ok((at, 0));
                }
                continue;
            }
            if rest.is_empty() {
                return Ok((at, 0));
            }
            match next_frame(rest, cap)? {
                Scan::Frame { frame, len } => {
                    if let Some(c) = self.on_frame(&frame, cap)? {
                        done(c);
                    }
                    at += len;
                }
                Scan::Partial { needed } => return Ok((at, needed)),
            }
        }
    }

    /// Frees every slot still in flight (the connection is gone); their operations, for the
    /// caller to count as lost.
    pub fn abandon(&mut self, mut lost: impl FnMut(OpKind, Instant)) {
        self.due = None;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.id != 0 {
                slot.id = 0;
                slot.streaming = false;
                lost(slot.op, slot.intended);
                self.free.push(u16::try_from(i).unwrap_or(u16::MAX));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candybox_wire::frame::{FrameHeader, FRAME_HEADER_BYTES};

    use super::*;
    use crate::load::frames::tests::{candy_meta, data_frame, error, get_done, reply_frame, CAP};

    fn run(p: &mut Pipeline, buf: &[u8]) -> Result<(usize, usize, Vec<Completion>), ReplyError> {
        let mut out = Vec::new();
        let (used, needed) = p.on_bytes(buf, CAP, |c| out.push(c))?;
        Ok((used, needed, out))
    }

    #[test]
    fn several_frames_in_one_buffer_complete_in_any_order() {
        let t = Instant::now();
        let mut p = Pipeline::new(4, t);
        let a = p.start(OpKind::Get, 4, t, t).unwrap();
        let b = p.start(OpKind::Head, 4, t, t).unwrap();
        let c = p.start(OpKind::Get, 4, t, t).unwrap();
        assert_eq!(p.in_flight(), 3);
        assert_ne!(a >> SLOT_BITS, b >> SLOT_BITS, "ids are unique");
        let mut buf = reply_frame(c, true, &get_done(4), b"wxyz");
        buf.extend(reply_frame(a, true, &error(fb::ErrorCode::NotFound), &[]));
        buf.extend(reply_frame(b, true, &candy_meta(4), &[]));
        let (used, needed, done) = run(&mut p, &buf).unwrap();
        assert_eq!((used, needed), (buf.len(), 0));
        let outcomes: Vec<Outcome> = done.iter().map(|c| c.outcome).collect();
        assert_eq!(
            outcomes,
            vec![Outcome::Ok { bytes: 4 }, Outcome::Failed(fb::ErrorCode::NotFound), Outcome::Ok { bytes: 0 }]
        );
        assert_eq!(done[2].op, OpKind::Head);
        assert_eq!(p.in_flight(), 0);
        // A finished id is not in flight any more.
        assert_eq!(
            run(&mut p, &reply_frame(c, true, &get_done(4), b"wxyz")).unwrap_err(),
            ReplyError::UnknownRequestId(c)
        );
    }

    #[test]
    fn a_partial_frame_waits_for_its_bytes() {
        let t = Instant::now();
        let mut p = Pipeline::new(2, t);
        let a = p.start(OpKind::Get, 1024, t, t).unwrap();
        let b = p.start(OpKind::Get, 1024, t, t).unwrap();
        let mut buf = reply_frame(a, true, &get_done(1024), &[7u8; 1024]);
        let first = buf.len();
        buf.extend(reply_frame(b, true, &get_done(1024), &[8u8; 1024]));
        // Fed in pieces, as reads deliver them: whatever was consumed is dropped, the rest kept.
        let mut pending: Vec<u8> = Vec::new();
        let mut done = Vec::new();
        for piece in buf.chunks(300) {
            pending.extend_from_slice(piece);
            let (used, needed, mut d) = run(&mut p, &pending).unwrap();
            assert!(needed == 0 || needed > pending.len() - used);
            pending.drain(..used);
            done.append(&mut d);
            if done.len() == 1 {
                assert!(pending.len() < buf.len() - first + 1);
            }
        }
        assert!(pending.is_empty());
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(|c| c.outcome == Outcome::Ok { bytes: 1024 }));
    }

    #[test]
    fn a_streamed_get_completes_on_its_last_data_frame() {
        let t = Instant::now();
        let mut p = Pipeline::new(2, t);
        let a = p.start(OpKind::Get, 10, t, t).unwrap();
        let b = p.start(OpKind::Head, 10, t, t).unwrap();
        let mut buf = reply_frame(a, false, &get_done(10), b"0123");
        // Another reply may come between a get's frames.
        buf.extend(reply_frame(b, true, &candy_meta(10), &[]));
        buf.extend(data_frame(a, false, b"456"));
        buf.extend(data_frame(a, true, b"789"));
        let (_, _, done) = run(&mut p, &buf).unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!((done[0].op, done[1].op), (OpKind::Head, OpKind::Get));
        assert_eq!(done[1].outcome, Outcome::Ok { bytes: 10 });
    }

    #[test]
    fn payloads_stream_through_small_reads() {
        // A 3 MiB get in three frames (Reply with 1 MiB, two Data frames), read 4 KiB at a time
        // into a buffer that keeps only what was not consumed: it never holds more than a header
        // and body plus one read.
        let t = Instant::now();
        let mut p = Pipeline::new(2, t);
        let size = 3u64 << 20;
        let a = p.start(OpKind::Get, size, t, t).unwrap();
        let b = p.start(OpKind::Head, size, t, t).unwrap();
        let piece = vec![5u8; 1 << 20];
        let mut wire = reply_frame(a, false, &get_done(size), &piece);
        wire.extend(data_frame(a, false, &piece));
        wire.extend(reply_frame(b, true, &candy_meta(size), &[]));
        wire.extend(data_frame(a, true, &piece));
        let mut pending: Vec<u8> = Vec::new();
        let mut done = Vec::new();
        let mut held_max = 0;
        for chunk in wire.chunks(4096) {
            pending.extend_from_slice(chunk);
            held_max = held_max.max(pending.len());
            let (used, _, mut d) = run(&mut p, &pending).unwrap();
            pending.drain(..used);
            done.append(&mut d);
        }
        assert!(pending.is_empty());
        assert!(held_max < 8192, "the buffer held {held_max} bytes");
        assert_eq!(done.len(), 2);
        assert_eq!((done[0].op, done[1].op), (OpKind::Head, OpKind::Get));
        assert_eq!(done[1].outcome, Outcome::Ok { bytes: size });
        // A streamed payload that runs past what its reply announced is caught mid-stream.
        let mut p = Pipeline::new(1, t);
        let a = p.start(OpKind::Get, 8, t, t).unwrap();
        let mut wire = reply_frame(a, false, &get_done(8), b"");
        wire.extend(data_frame(a, true, &[1u8; 12]));
        let (used, _, d) = run(&mut p, &wire[..wire.len() - 6]).unwrap();
        assert!(d.is_empty());
        assert!(matches!(run(&mut p, &wire[used..]), Err(ReplyError::WrongLength { expected: 8, .. })));
    }

    #[test]
    fn data_frames_are_granted_back_and_discarded_payload_counts() {
        let t = Instant::now();
        // Without credit granting (version 1, open loop) nothing is owed.
        let mut quiet = Pipeline::new(1, t);
        let q = quiet.start(OpKind::Get, 8, t, t).unwrap();
        let mut wire = reply_frame(q, false, &get_done(8), b"0123");
        wire.extend(data_frame(q, true, b"4567"));
        run(&mut quiet, &wire).unwrap();
        quiet.take_grants(|_, _| panic!("a grant without credit granting"));

        let mut p = Pipeline::new(1, t).granting_credit();
        let size = 3u64 << 20;
        let a = p.start(OpKind::Get, size, t, t).unwrap();
        let piece = vec![5u8; 1 << 20];
        // The reply frame with a first MiB (no credit: only Data frames count against it).
        let wire = reply_frame(a, false, &get_done(size), &piece);
        let head = wire.len() - piece.len();
        let (used, _, done) = run(&mut p, &wire[..head + 100]).unwrap();
        assert!(done.is_empty());
        assert_eq!(used, head + 100);
        assert_eq!(p.payload_due(), (1 << 20) - 100);
        // The rest of that payload is dropped unread and counted.
        assert_eq!(p.on_discarded(p.payload_due()).unwrap(), None);
        assert_eq!(p.payload_due(), 0);
        let mut grants = Vec::new();
        p.take_grants(|id, bytes| grants.push((id, bytes)));
        assert!(grants.is_empty(), "the reply frame is owed no credit");
        // Two Data frames: each is granted its cost as its header arrives.
        let first = data_frame(a, false, &piece);
        let (_, _, done) = run(&mut p, &first[..FRAME_HEADER_BYTES + 10]).unwrap();
        assert!(done.is_empty());
        assert_eq!(p.on_discarded(p.payload_due()).unwrap(), None);
        let last = data_frame(a, true, &piece);
        run(&mut p, &last[..FRAME_HEADER_BYTES]).unwrap();
        p.take_grants(|id, bytes| grants.push((id, bytes)));
        assert_eq!(grants, vec![(a, 1 << 20), (a, 1 << 20)]);
        // The last byte discarded completes the get with every byte counted.
        let due = p.payload_due();
        assert_eq!(due, 1 << 20);
        assert_eq!(p.on_discarded(due - 1).unwrap(), None);
        let c = p.on_discarded(1).unwrap().expect("completed");
        assert_eq!(c.outcome, Outcome::Ok { bytes: size });
        // With nothing due, a discard counts nothing.
        assert_eq!(p.on_discarded(5).unwrap(), None);
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn credit_is_ignored_and_cancel_ends_its_request() {
        let t = Instant::now();
        let mut p = Pipeline::new(2, t);
        let a = p.start(OpKind::Put, 4, t, t).unwrap();
        let b = p.start(OpKind::Get, 4, t, t).unwrap();
        let (h, grant) = FrameHeader::credit(a, 1 << 20);
        let mut buf = h.to_vec();
        buf.extend_from_slice(&grant);
        let cancel = FrameHeader::for_body(FrameKind::Cancel, b, candybox_wire::FLAG_END, &[], 0);
        buf.extend_from_slice(&cancel.encode());
        buf.extend(reply_frame(a, true, &crate::load::frames::tests::put_done(4), &[]));
        let (used, needed, done) = run(&mut p, &buf).unwrap();
        assert_eq!((used, needed), (buf.len(), 0));
        let outcomes: Vec<Outcome> = done.iter().map(|c| c.outcome).collect();
        assert_eq!(outcomes, vec![Outcome::Cancelled, Outcome::Ok { bytes: 4 }]);
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn protocol_breaches_are_errors() {
        let t = Instant::now();
        let mut p = Pipeline::new(1, t);
        let a = p.start(OpKind::Get, 4, t, t).unwrap();
        assert!(p.start(OpKind::Get, 4, t, t).is_none(), "one slot only");
        // Data before the Reply.
        assert!(matches!(run(&mut p, &data_frame(a, true, b"abcd")), Err(ReplyError::OutOfSequence { .. })));
        // Fewer payload bytes than announced, at END.
        assert!(matches!(
            run(&mut p, &reply_frame(a, true, &get_done(4), b"abc")),
            Err(ReplyError::WrongLength { expected: 4, got: 3, .. })
        ));
        let mut p = Pipeline::new(1, t);
        let a = p.start(OpKind::Get, 4, t, t).unwrap();
        // More payload than announced.
        let mut buf = reply_frame(a, false, &get_done(4), b"abc");
        buf.extend(data_frame(a, true, b"de"));
        assert!(matches!(run(&mut p, &buf), Err(ReplyError::WrongLength { expected: 4, got: 5, .. })));
        // An id never sent.
        let mut p = Pipeline::new(1, t);
        assert_eq!(
            run(&mut p, &reply_frame(1 << SLOT_BITS, true, &candy_meta(4), &[])).unwrap_err(),
            ReplyError::UnknownRequestId(1 << SLOT_BITS)
        );
        // Lost requests are handed back when the connection goes.
        let _ = p.start(OpKind::Put, 4, t, t).unwrap();
        let mut lost = Vec::new();
        p.abandon(|op, _| lost.push(op));
        assert_eq!((lost, p.in_flight()), (vec![OpKind::Put], 0));
    }
}
