//! The lean load path's wire pieces, with no I/O: requests encoded once per key and sent with
//! only their request id and header CRC rewritten, and replies checked in place in the receive
//! buffer without building an owned value.
//!
//! Invariants:
//! - A pre-encoded request is byte for byte what the library client sends for the same call:
//!   the body comes from `candybox_wire::client::request`, the header from
//!   [`FrameHeader::for_body`]; per send only the request id and the header CRC change (the
//!   header is re-encoded from its fields, the body copied as it is).
//! - A reply's body is read only after [`FrameHeader::decode`] accepted its header, its body CRC
//!   matched and [`verify_reply`] accepted the flatbuffer (explicit verifier limits); payload
//!   bytes are counted, never copied.
//! - A frame not yet complete in the buffer is [`Scan::Partial`], an expected condition, never an
//!   error; every other oddity is a [`ReplyError`] and the connection must close.

use std::fmt;

use candybox_wire::{
    fb,
    frame::{verify_reply, FrameError, FrameHeader, FrameKind, FLAG_END, FRAME_HEADER_BYTES},
};

use super::OpKind;

/// Request frames of one operation for every key, encoded once: each key's header (checked and
/// CRC'd once, re-encoded with a new request id per send) and its flatbuffer body.
///
/// When every body has the same length and they differ only in a few bytes (the key, for keys of
/// one length, as the load's `k/0000000000` names are), one body is kept with each key's few bytes
/// and body CRC beside it: a send copies the shared body (hot in the cache) and writes the key's
/// bytes in, instead of copying a body from a table too large for the cache (the copy of a
/// key's own body was ~18 % of the generator's CPU at depth 16).
#[derive(Debug, Clone, Default)]
pub struct RequestTable {
    /// Each key's frame header, request id 0 (the shared layout: each key's body CRC only).
    headers: Vec<FrameHeader>,
    /// The bodies back to back (the shared layout: the one shared body).
    bodies: Vec<u8>,
    /// `ends[k]`: where key `k`'s body ends in `bodies` (it starts where `k - 1`'s ends); in the
    /// shared layout only its length (the number of keys) counts.
    ends: Vec<usize>,
    /// The shared layout, when the bodies allow it.
    shared: Option<Shared>,
}

/// One body for every key, but for the bytes in `window`.
#[derive(Debug, Clone)]
struct Shared {
    /// The header of key 0, request id 0: the others differ in the body CRC only.
    header: FrameHeader,
    window: std::ops::Range<usize>,
    /// Each key's bytes of the window, back to back.
    windows: Vec<u8>,
    /// Each key's body CRC.
    crcs: Vec<u32>,
}

/// Most bytes in which the bodies may differ for the shared layout.
const SHARED_WINDOW_BYTES_MAX: usize = 64;

impl RequestTable {
    /// Encodes `keys` frames in frame `version`: `body(k)` is key `k`'s finished `Request`
    /// flatbuffer, and `payload_len` bytes of object data will follow each frame (0 without a
    /// payload). Every frame is a whole message (END set), as the library sends a request that
    /// fits one frame.
    ///
    /// # Panics
    /// When a body is empty (the library never builds one).
    pub fn build(version: u8, keys: u64, payload_len: u32, mut body: impl FnMut(u64) -> bytes::Bytes) -> RequestTable {
        let mut t = RequestTable::default();
        for k in 0..keys {
            let b = body(k);
            assert!(!b.is_empty(), "request body of key {k} is empty");
            // The id is set at every send; 0 is a placeholder.
            t.headers.push(FrameHeader::for_body(FrameKind::Request, 0, FLAG_END, &b, payload_len).in_version(version));
            t.bodies.extend_from_slice(&b);
            t.ends.push(t.bodies.len());
        }
        t.share();
        t
    }

    /// Key `k`'s body in the layout of every body kept.
    fn body_of(&self, k: usize) -> Option<&[u8]> {
        let end = *self.ends.get(k)?;
        let start = if k == 0 { 0 } else { *self.ends.get(k - 1)? };
        self.bodies.get(start..end)
    }

    /// Switches to the shared layout when the bodies allow it.
    fn share(&mut self) {
        let (Some(first), Some(header)) = (self.body_of(0), self.headers.first()) else { return };
        let len = first.len();
        let (mut lo, mut hi) = (len, 0);
        for k in 1..self.ends.len() {
            let Some(b) = self.body_of(k) else { return };
            if b.len() != len {
                return;
            }
            if let Some(i) = b.iter().zip(first).position(|(x, y)| x != y) {
                lo = lo.min(i);
                let last = b.iter().zip(first).rposition(|(x, y)| x != y).unwrap_or(i);
                hi = hi.max(last + 1);
            }
        }
        if lo >= hi {
            // One key, or all bodies equal: an empty window at the end.
            (lo, hi) = (len, len);
        }
        if hi - lo > SHARED_WINDOW_BYTES_MAX {
            return;
        }
        let mut windows = Vec::with_capacity(self.ends.len() * (hi - lo));
        for k in 0..self.ends.len() {
            let Some(w) = self.body_of(k).and_then(|b| b.get(lo..hi)) else { return };
            windows.extend_from_slice(w);
        }
        let shared = Shared {
            header: *header,
            window: lo..hi,
            windows,
            crcs: self.headers.iter().map(|h| h.body_crc).collect(),
        };
        let body = first.to_vec();
        self.ends = vec![len; self.ends.len()];
        self.bodies = body;
        self.headers = vec![*header];
        self.shared = Some(shared);
    }

    /// Appends key `k`'s frame (header and body, without the payload) with `request_id` to
    /// `out`; false (and nothing appended) for a key outside the table. Only the header's
    /// request id and CRC differ from one send to the next.
    pub fn append(&self, k: usize, request_id: u64, out: &mut Vec<u8>) -> bool {
        if let Some(s) = &self.shared {
            let width = s.window.len();
            let (Some(&body_crc), Some(window)) = (s.crcs.get(k), s.windows.get(k * width..(k + 1) * width)) else {
                return false;
            };
            let mut header = s.header;
            header.request_id = request_id;
            header.body_crc = body_crc;
            out.extend_from_slice(&header.encode());
            let at = out.len();
            out.extend_from_slice(&self.bodies);
            if let Some(place) = out.get_mut(at + s.window.start..at + s.window.end) {
                place.copy_from_slice(window);
            }
            return true;
        }
        let (Some(header), Some(body)) = (self.headers.get(k), self.body_of(k)) else { return false };
        let mut header = *header;
        header.request_id = request_id;
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(body);
        true
    }

    /// Bytes of the largest frame (header and body) of the table, for sizing send buffers.
    pub fn frame_bytes_max(&self) -> usize {
        self.headers.iter().map(|h| FRAME_HEADER_BYTES + h.body_len as usize).max().unwrap_or(0)
    }

    /// Keys in the table.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// A frame from the node whose header and body are in the buffer and checked, as slices of
/// the receive buffer; its payload may be only partly there.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// The decoded header.
    pub header: FrameHeader,
    /// The flatbuffer body, its CRC checked (empty for Data frames).
    pub body: &'a [u8],
    /// The part of the payload in the buffer: all of it when its length is the header's
    /// `payload_len`, else a prefix (the rest arrives in later reads).
    pub payload: &'a [u8],
}

impl FrameRef<'_> {
    /// Payload bytes still to come after those in the buffer.
    pub fn payload_missing(&self) -> u64 {
        u64::from(self.header.payload_len).saturating_sub(self.payload.len() as u64)
    }
}

/// What the start of a buffer holds.
#[derive(Debug, Clone, Copy)]
pub enum Scan<'a> {
    /// A frame whose header and body are complete, with as much of its payload as the buffer
    /// holds; `len` bytes of the buffer are its.
    Frame {
        /// The frame.
        frame: FrameRef<'a>,
        /// Bytes it takes in the buffer (header, body, the payload present).
        len: usize,
    },
    /// Not a whole header and body yet: `needed` bytes in all make them whole (a header's worth
    /// when even the header is incomplete).
    Partial {
        /// Bytes the buffer must hold, from its start, for the header and body to be complete.
        needed: usize,
    },
}

/// Looks at the frame at the start of `buf`: its header is checked as soon as 32 bytes are
/// there (so a bad or oversized header fails before its body arrives), its body CRC once the
/// body is complete. The payload need not be: object bytes are counted as they arrive, never
/// gathered, so the receive buffer only ever holds a header and a body whole.
///
/// # Errors
/// [`ReplyError::Frame`] for a refused header or body CRC, [`ReplyError::RequestFromNode`] for
/// a Request frame.
pub fn next_frame(buf: &[u8], cap: u32) -> Result<Scan<'_>, ReplyError> {
    let Some(raw) = buf.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Ok(Scan::Partial { needed: FRAME_HEADER_BYTES });
    };
    let header = FrameHeader::decode(raw, cap)?;
    if header.kind == FrameKind::Request {
        return Err(ReplyError::RequestFromNode(header.request_id));
    }
    let body_end = FRAME_HEADER_BYTES + header.body_len as usize;
    let Some(body) = buf.get(FRAME_HEADER_BYTES..body_end) else {
        return Ok(Scan::Partial { needed: body_end });
    };
    header.check_body(body)?;
    let len = (body_end + header.payload_len as usize).min(buf.len());
    let payload = buf.get(body_end..len).unwrap_or_default();
    Ok(Scan::Frame { frame: FrameRef { header, body, payload }, len })
}

/// What a verified reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The request succeeded; `payload_len` bytes of object data follow (a get's), in this frame
    /// and in Data frames.
    Done {
        /// Payload bytes the message carries in all.
        payload_len: u64,
    },
    /// The node answered with an error.
    Failed(fb::ErrorCode),
}

/// Checks the reply `body` of an `op` request for an object of `size` bytes, in place: the
/// error code when the node failed it, else the reply kind and the size it reports.
///
/// # Errors
/// [`ReplyError::Frame`] when the verifier refuses the body, [`ReplyError::WrongBody`] for a
/// reply of another kind, [`ReplyError::WrongLength`] for a size other than `size`.
pub fn check_reply(op: OpKind, body: &[u8], cap: u32, size: u64, request_id: u64) -> Result<Verdict, ReplyError> {
    let reply = verify_reply(body, cap)?;
    if let Some(e) = reply.error() {
        return Ok(Verdict::Failed(e.code()));
    }
    let wrong_body = |expected: &'static str| ReplyError::WrongBody {
        request_id,
        expected,
        got: reply.body_type().variant_name().unwrap_or("unknown"),
    };
    let check = |got: u64| {
        if got == size {
            Ok(())
        } else {
            Err(ReplyError::WrongLength { request_id, expected: size, got })
        }
    };
    match op {
        OpKind::Get => {
            let g = reply.body_as_get_done().ok_or_else(|| wrong_body("GetDone"))?;
            if g.first() != 0 {
                return Err(ReplyError::WrongLength { request_id, expected: 0, got: g.first() });
            }
            check(g.length())?;
            Ok(Verdict::Done { payload_len: g.length() })
        }
        OpKind::Head => {
            let m = reply.body_as_candy_meta().ok_or_else(|| wrong_body("CandyMeta"))?;
            check(m.size())?;
            Ok(Verdict::Done { payload_len: 0 })
        }
        OpKind::Put => {
            // The library accepts the same three kinds (`reply::put_done`).
            if let Some(p) = reply.body_as_put_done() {
                check(p.size())?;
            } else if let Some(m) = reply.body_as_candy_meta() {
                check(m.size())?;
            } else if reply.body_as_done().is_none() {
                return Err(wrong_body("PutDone"));
            }
            Ok(Verdict::Done { payload_len: 0 })
        }
        other => Err(ReplyError::NotLean(other.name())),
    }
}

/// Reply bodies this thread has verified, each with what it said: a body byte for byte equal to
/// one of them needs no second pass of the flatbuffers verifier (equal bytes verify equally).
/// A closed loop of gets on a fixed key space receives the same reply body for a key every time,
/// so after each key's first reply the check is a hash lookup and a comparison of the bytes.
///
/// Invariants:
/// - An entry is only made from a body [`check_reply`] accepted, for the op and size it was
///   checked against; a hit needs the same op, the same size and the same bytes.
/// - At most [`VERIFIED_REPLIES_MAX`] entries; once full, further bodies are verified every time.
#[derive(Debug, Default)]
pub struct VerifiedReplies {
    /// By the body's CRC (already computed and checked for the frame): the body and its verdict.
    by_crc: std::collections::HashMap<u32, VerifiedReply>,
}

#[derive(Debug)]
struct VerifiedReply {
    body: Box<[u8]>,
    op: OpKind,
    size: u64,
    verdict: Verdict,
}

/// Most reply bodies a [`VerifiedReplies`] keeps (a key space of this many keys is served from
/// it; with ~150-byte bodies about 10 MiB).
pub const VERIFIED_REPLIES_MAX: usize = 1 << 16;

impl VerifiedReplies {
    /// [`check_reply`] of a body whose CRC (`body_crc`, checked against the frame header) is
    /// known, answered from the bodies verified before when this one equals one of them.
    ///
    /// # Errors
    /// As [`check_reply`].
    pub fn check(
        &mut self,
        op: OpKind,
        body: &[u8],
        body_crc: u32,
        cap: u32,
        size: u64,
        request_id: u64,
    ) -> Result<Verdict, ReplyError> {
        if let Some(v) = self.by_crc.get(&body_crc) {
            if v.op == op && v.size == size && *v.body == *body {
                return Ok(v.verdict);
            }
        }
        let verdict = check_reply(op, body, cap, size, request_id)?;
        if self.by_crc.len() < VERIFIED_REPLIES_MAX || self.by_crc.contains_key(&body_crc) {
            self.by_crc.insert(body_crc, VerifiedReply { body: body.into(), op, size, verdict });
        }
        Ok(verdict)
    }

    /// Bodies kept.
    pub fn len(&self) -> usize {
        self.by_crc.len()
    }

    /// True when no body is kept.
    pub fn is_empty(&self) -> bool {
        self.by_crc.is_empty()
    }
}

/// The name an error code is counted under: the code's name, which is also the name of the
/// library's `ClientError` variant for it (so both load paths count alike).
pub fn error_code_name(code: fb::ErrorCode) -> &'static str {
    code.variant_name().unwrap_or("Internal")
}

/// Why a connection of the lean path stopped: something the node sent that the protocol does not
/// allow, or the connection closing under requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A refused header or body CRC, or a flatbuffer the verifier refused.
    Frame(FrameError),
    /// The node sent a Request frame.
    RequestFromNode(u64),
    /// A frame for a request id that is not in flight on this connection.
    UnknownRequestId(u64),
    /// A Data frame before its Reply, a second Reply for one request, or a frame of a kind this
    /// path does not take (it sends no flow-control credit and no cancel, so it expects none).
    OutOfSequence {
        /// The frame's request id.
        request_id: u64,
        /// The frame's kind.
        kind: FrameKind,
    },
    /// A reply of another kind than the request's.
    WrongBody {
        /// The request.
        request_id: u64,
        /// The kind the request calls for.
        expected: &'static str,
        /// The kind received.
        got: &'static str,
    },
    /// A size or payload length other than the object's.
    WrongLength {
        /// The request.
        request_id: u64,
        /// The object's size (or 0 for a get's first byte).
        expected: u64,
        /// What the reply said or carried.
        got: u64,
    },
    /// An error reply that is not a whole message (no END, or payload after it).
    ErrorNotFinal(u64),
    /// An operation the lean path does not run.
    NotLean(&'static str),
}

impl From<FrameError> for ReplyError {
    fn from(e: FrameError) -> ReplyError {
        ReplyError::Frame(e)
    }
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Frame(e) => write!(f, "refused frame: {e}"),
            ReplyError::RequestFromNode(id) => write!(f, "the node sent a Request frame (request id {id})"),
            ReplyError::UnknownRequestId(id) => write!(f, "a frame for request id {id}, which is not in flight"),
            ReplyError::OutOfSequence { request_id, kind } => {
                write!(f, "a {kind:?} frame out of sequence for request id {request_id}")
            }
            ReplyError::WrongBody { request_id, expected, got } => {
                write!(f, "request id {request_id}: expected a {expected} reply, got {got}")
            }
            ReplyError::WrongLength { request_id, expected, got } => {
                write!(f, "request id {request_id}: expected {expected} bytes, the reply says or carries {got}")
            }
            ReplyError::ErrorNotFinal(id) => write!(f, "request id {id}: an error reply that is not a whole message"),
            ReplyError::NotLean(op) => write!(f, "the lean path does not run {op}"),
        }
    }
}

impl std::error::Error for ReplyError {}

#[cfg(test)]
pub(crate) mod tests {
    use candybox_wire::client::{request, ByteRange, PutOptions};
    use flatbuffers::FlatBufferBuilder;

    use super::*;

    pub(crate) const CAP: u32 = 16 << 20;

    /// A `Reply` frame (header, body, payload) as the node builds one.
    pub(crate) fn reply_frame(id: u64, end: bool, body: &[u8], payload: &[u8]) -> Vec<u8> {
        let flags = if end { FLAG_END } else { 0 };
        let h = FrameHeader::for_body(FrameKind::Reply, id, flags, body, payload.len() as u32);
        let mut v = h.encode().to_vec();
        v.extend_from_slice(body);
        v.extend_from_slice(payload);
        v
    }

    /// A `Data` frame.
    pub(crate) fn data_frame(id: u64, end: bool, payload: &[u8]) -> Vec<u8> {
        let flags = if end { FLAG_END } else { 0 };
        let h = FrameHeader::for_body(FrameKind::Data, id, flags, &[], payload.len() as u32);
        let mut v = h.encode().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn finish(
        mut fbb: FlatBufferBuilder<'_>,
        kind: fb::ReplyBody,
        body: flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>,
    ) -> Vec<u8> {
        let r = fb::Reply::create(&mut fbb, &fb::ReplyArgs { error: None, body_type: kind, body: Some(body) });
        fbb.finish_minimal(r);
        fbb.finished_data().to_vec()
    }

    pub(crate) fn get_done(size: u64) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let meta = fb::CandyMeta::create(&mut fbb, &fb::CandyMetaArgs { size, ..Default::default() });
        let g = fb::GetDone::create(&mut fbb, &fb::GetDoneArgs { meta: Some(meta), first: 0, length: size });
        finish(fbb, fb::ReplyBody::GetDone, g.as_union_value())
    }

    pub(crate) fn candy_meta(size: u64) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let meta = fb::CandyMeta::create(&mut fbb, &fb::CandyMetaArgs { size, ..Default::default() });
        finish(fbb, fb::ReplyBody::CandyMeta, meta.as_union_value())
    }

    pub(crate) fn put_done(size: u64) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let p = fb::PutDone::create(&mut fbb, &fb::PutDoneArgs { size, ..Default::default() });
        finish(fbb, fb::ReplyBody::PutDone, p.as_union_value())
    }

    pub(crate) fn error(code: fb::ErrorCode) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let message = fbb.create_string("no such key");
        let e = fb::Error::create(&mut fbb, &fb::ErrorArgs { code, message: Some(message), ..Default::default() });
        let r =
            fb::Reply::create(&mut fbb, &fb::ReplyArgs { error: Some(e), body_type: fb::ReplyBody::NONE, body: None });
        fbb.finish_minimal(r);
        fbb.finished_data().to_vec()
    }

    #[test]
    fn an_appended_frame_is_what_the_library_sends() {
        let table = RequestTable::build(candybox_wire::frame::FRAME_VERSION, 3, 0, |k| {
            request::get("b", format!("k/{k}").as_bytes(), ByteRange::Whole)
        });
        assert_eq!(table.len(), 3);
        let mut frame = vec![9u8];
        assert!(table.append(1, 0xDEAD_BEEF_0042, &mut frame));
        assert_eq!(frame.remove(0), 9, "appended after what was there");
        let body = request::get("b", b"k/1", ByteRange::Whole);
        let mut expected =
            FrameHeader::for_body(FrameKind::Request, 0xDEAD_BEEF_0042, FLAG_END, &body, 0).encode().to_vec();
        expected.extend_from_slice(&body);
        assert_eq!(frame, expected);
        assert!(!table.append(3, 1, &mut frame), "no key 3");
        assert_eq!(table.frame_bytes_max(), frame.len());
        // A put's header announces the payload that follows it.
        let puts = RequestTable::build(1, 1, 1024, |_| {
            request::put("b", b"k", &PutOptions { size: Some(1024), ..PutOptions::default() })
        });
        let mut out = Vec::new();
        assert!(puts.append(0, 1, &mut out));
        let mut raw = [0u8; FRAME_HEADER_BYTES];
        raw.copy_from_slice(&out[..FRAME_HEADER_BYTES]);
        let h = FrameHeader::decode(&raw, CAP).unwrap();
        assert_eq!((h.payload_len, h.is_end(), h.version), (1024, true, 1), "a version-1 table writes version 1");
    }

    #[test]
    fn both_layouts_append_what_the_library_sends() {
        // Keys of one length share a body; keys differing in many bytes, or whose bodies differ
        // in length, keep one body each (keys of lengths 3 and 4 may pad to bodies of one length:
        // either layout).
        for (names, shared) in [
            ((0..300u64).map(|k| format!("k/{k:010}")).collect::<Vec<_>>(), Some(true)),
            (vec!["only".to_string()], Some(true)),
            ((0..40u64).map(|k| format!("k/{k}")).collect(), None),
            (vec!["a".repeat(100), "b".repeat(100)], Some(false)),
            (vec!["a".repeat(10), "b".repeat(30)], Some(false)),
        ] {
            let table = RequestTable::build(candybox_wire::frame::FRAME_VERSION, names.len() as u64, 0, |k| {
                request::get("photos", names[k as usize].as_bytes(), ByteRange::Whole)
            });
            if let Some(shared) = shared {
                assert_eq!(table.shared.is_some(), shared, "{names:?}");
            }
            for (k, name) in names.iter().enumerate() {
                let mut frame = Vec::new();
                assert!(table.append(k, 77 + k as u64, &mut frame));
                let body = request::get("photos", name.as_bytes(), ByteRange::Whole);
                let mut expected =
                    FrameHeader::for_body(FrameKind::Request, 77 + k as u64, FLAG_END, &body, 0).encode().to_vec();
                expected.extend_from_slice(&body);
                assert_eq!(frame, expected, "key {name}");
            }
            assert!(!table.append(names.len(), 1, &mut Vec::new()));
        }
    }

    #[test]
    fn frames_are_found_whole_or_reported_partial() {
        let mut buf = reply_frame(7, true, &get_done(4), b"abcd");
        let whole = buf.len();
        buf.extend_from_slice(&reply_frame(8, true, &candy_meta(4), &[]));
        let Scan::Frame { frame, len } = next_frame(&buf, CAP).unwrap() else { panic!("partial") };
        assert_eq!((frame.header.request_id, len, frame.payload), (7, whole, &b"abcd"[..]));
        let Scan::Frame { frame, .. } = next_frame(&buf[len..], CAP).unwrap() else { panic!("partial") };
        assert_eq!(frame.header.request_id, 8);
        // A prefix without the whole header and body is partial and says how much makes them
        // whole; with them, the frame is handed out with the payload present so far.
        let head = whole - 4;
        for cut in 0..whole {
            match next_frame(&buf[..cut], CAP).unwrap() {
                Scan::Partial { needed } => {
                    assert!(cut < head, "partial at {cut} of {whole}");
                    assert_eq!(needed, if cut < 32 { 32 } else { head });
                }
                Scan::Frame { frame, len } => {
                    assert!(cut >= head, "a frame from {cut} bytes");
                    assert_eq!(
                        (len, frame.payload.len() as u64, frame.payload_missing()),
                        (cut, (cut - head) as u64, (whole - cut) as u64)
                    );
                }
            }
        }
        // A damaged body is refused once it is complete, a damaged header at once.
        let mut bad = buf.clone();
        bad[40] ^= 1;
        assert!(matches!(next_frame(&bad, CAP), Err(ReplyError::Frame(FrameError::BodyChecksum { .. }))));
        let mut bad = buf.clone();
        bad[9] ^= 1;
        assert!(matches!(next_frame(&bad[..32], CAP), Err(ReplyError::Frame(FrameError::HeaderChecksum { .. }))));
        // A header announcing more than the cap is refused before its body arrives.
        let big = FrameHeader::for_body(FrameKind::Data, 1, FLAG_END, &[], CAP + 1).encode();
        assert!(matches!(next_frame(&big, CAP), Err(ReplyError::Frame(FrameError::TooLarge { .. }))));
    }

    #[test]
    fn replies_are_checked_in_place() {
        assert_eq!(check_reply(OpKind::Get, &get_done(1024), CAP, 1024, 1), Ok(Verdict::Done { payload_len: 1024 }));
        assert_eq!(check_reply(OpKind::Head, &candy_meta(1024), CAP, 1024, 1), Ok(Verdict::Done { payload_len: 0 }));
        assert_eq!(check_reply(OpKind::Put, &put_done(1024), CAP, 1024, 1), Ok(Verdict::Done { payload_len: 0 }));
        assert_eq!(
            check_reply(OpKind::Get, &error(fb::ErrorCode::NotFound), CAP, 1024, 1),
            Ok(Verdict::Failed(fb::ErrorCode::NotFound))
        );
        assert_eq!(error_code_name(fb::ErrorCode::NotFound), "NotFound");
        assert_eq!(error_code_name(fb::ErrorCode(999)), "Internal");
        assert!(matches!(
            check_reply(OpKind::Get, &get_done(10), CAP, 1024, 5),
            Err(ReplyError::WrongLength { request_id: 5, expected: 1024, got: 10 })
        ));
        assert!(matches!(
            check_reply(OpKind::Get, &candy_meta(1024), CAP, 1024, 5),
            Err(ReplyError::WrongBody { expected: "GetDone", got: "CandyMeta", .. })
        ));
        assert!(matches!(check_reply(OpKind::Get, b"not a flatbuffer", CAP, 1, 1), Err(ReplyError::Frame(_))));
        assert!(matches!(check_reply(OpKind::List, &candy_meta(1), CAP, 1, 1), Err(ReplyError::NotLean("list"))));
    }

    #[test]
    fn a_body_verified_before_is_answered_from_the_cache_only_when_equal() {
        let mut v = VerifiedReplies::default();
        let ok = get_done(1024);
        // The CRC the frame header carried (the cache keys by it; the value is immaterial here).
        let crc = 0x5EED_C0DE;
        assert_eq!(v.check(OpKind::Get, &ok, crc, CAP, 1024, 1), Ok(Verdict::Done { payload_len: 1024 }));
        assert_eq!(v.len(), 1);
        // The same bytes again: the same verdict, nothing added.
        assert_eq!(v.check(OpKind::Get, &ok, crc, CAP, 1024, 2), Ok(Verdict::Done { payload_len: 1024 }));
        assert_eq!(v.len(), 1);
        // Other bytes under the same CRC (a collision, or a damaged body): verified, refused.
        assert!(matches!(v.check(OpKind::Get, b"not a flatbuffer", crc, CAP, 1024, 3), Err(ReplyError::Frame(_))));
        // The same bytes checked for another size or op: checked again, and refused.
        assert!(matches!(
            v.check(OpKind::Get, &ok, crc, CAP, 10, 4),
            Err(ReplyError::WrongLength { request_id: 4, expected: 10, got: 1024 })
        ));
        assert!(matches!(
            v.check(OpKind::Head, &ok, crc, CAP, 1024, 5),
            Err(ReplyError::WrongBody { expected: "CandyMeta", got: "GetDone", .. })
        ));
        // The entry still holds the good verdict.
        assert_eq!(v.check(OpKind::Get, &ok, crc, CAP, 1024, 6), Ok(Verdict::Done { payload_len: 1024 }));
    }
}
