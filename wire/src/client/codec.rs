//! Frames on the client's side of the socket, with no I/O: encoding a request (its flatbuffer
//! body and a payload split into Data frames at the frame cap) and incrementally decoding the
//! node's frames from whatever bytes have arrived.
//!
//! Invariants:
//! - Every encoded frame has `body len + payload len <= cap`; the Request frame comes first and
//!   exactly one frame of a message carries `END`, the last one.
//! - The decoder checks a header with [`FrameHeader::decode`] (magic, version, kind, flags, CRC,
//!   lengths against the cap) before it reserves room for, or waits for, a byte of the body; it
//!   checks the body CRC and runs `verify_reply` (explicit verifier limits) before handing out a
//!   Reply frame. A refused frame is a [`ClientError::Protocol`] and the connection must close.
//! - Bodies and payloads handed out are slices of the receive buffer (`Bytes`), never copies.

use bytes::{Buf, Bytes, BytesMut};

use super::error::ClientError;
use crate::frame::{verify_reply, FrameHeader, FrameKind, FLAG_END, FRAME_HEADER_BYTES};

/// One frame ready to be written: the header and flatbuffer body, then the payload.
#[derive(Debug, Clone)]
pub struct OutFrame {
    /// The 32-byte header followed by the flatbuffer body (empty body for Data frames).
    pub head: Bytes,
    /// Raw payload bytes (object data), sent as they are.
    pub payload: Bytes,
}

impl OutFrame {
    /// Header, body and payload in one buffer (tests, small writes).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.head.len() + self.payload.len());
        v.extend_from_slice(&self.head);
        v.extend_from_slice(&self.payload);
        v
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.len()
    }

    /// Never true: a frame has at least its header.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty() && self.payload.is_empty()
    }
}

/// Most payload bytes of one frame of a request's body (version 2 flow control: a quarter of a
/// stream's credit window, so four frames are in flight).
pub const DATA_FRAME_PAYLOAD_BYTES_MAX: usize = 1024 * 1024;

/// Splits one request message into frames: the Request frame first (body plus as much payload
/// as fits), then Data frames of at most [`DATA_FRAME_PAYLOAD_BYTES_MAX`] (and the cap) payload
/// bytes.
#[derive(Debug)]
pub struct RequestEncoder {
    request_id: u64,
    cap: u32,
    body: Option<Bytes>,
    ended: bool,
}

impl RequestEncoder {
    /// An encoder for the message `body` (a finished `Request` flatbuffer).
    ///
    /// # Errors
    /// [`ClientError::LimitExceeded`] when the body alone does not fit in a frame, or is empty.
    pub fn new(request_id: u64, body: Bytes, cap: u32) -> Result<RequestEncoder, ClientError> {
        if body.is_empty() || body.len() as u64 > u64::from(cap) {
            return Err(ClientError::local_limit(
                "frame_body_bytes_max",
                body.len() as u64,
                u64::from(cap),
                "the request's flatbuffer body does not fit in one frame",
            ));
        }
        Ok(RequestEncoder { request_id, cap, body: Some(body), ended: false })
    }

    /// The request id every frame carries.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// True once a frame with `END` was produced.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// True until the Request frame itself was produced.
    pub fn is_started(&self) -> bool {
        self.body.is_none()
    }

    /// Frames for the next payload `piece`; `end` marks the last piece of the message. An empty
    /// piece still produces a frame when it starts or ends the message.
    ///
    /// # Panics
    /// When called again after a piece with `end`: a message has one end.
    pub fn frames(&mut self, mut piece: Bytes, end: bool) -> Vec<OutFrame> {
        assert!(!self.ended, "request {} already ended", self.request_id);
        // Payload pieces stay well inside a stream's credit window.
        let cap = (self.cap as usize).min(DATA_FRAME_PAYLOAD_BYTES_MAX);
        let mut out = Vec::with_capacity(1 + piece.len() / cap.max(1));
        if let Some(body) = self.body.take() {
            let room = (self.cap as usize - body.len()).min(cap);
            let first = piece.split_to(room.min(piece.len()));
            let last = end && piece.is_empty();
            out.push(frame(FrameKind::Request, self.request_id, last, &body, first));
        }
        while !piece.is_empty() || (end && out.is_empty()) {
            let next = piece.split_to(cap.min(piece.len()));
            let last = end && piece.is_empty();
            out.push(frame(FrameKind::Data, self.request_id, last, &[], next));
        }
        if end {
            // The loop above ends the message on its last frame; a piece that was consumed
            // entirely by the Request frame ended it there.
            self.ended = true;
        }
        out
    }
}

impl RequestEncoder {
    /// Frames for the last payload `piece` and the message's end: a `Data` frame whose body is
    /// `trailer`, a `PutTrailer` flatbuffer (frame version 3).
    ///
    /// # Panics
    /// When the message already ended.
    pub fn frames_with_trailer(&mut self, piece: Bytes, trailer: &[u8]) -> Vec<OutFrame> {
        let mut out = self.frames(piece, false);
        out.push(frame(FrameKind::Data, self.request_id, true, trailer, Bytes::new()));
        self.ended = true;
        out
    }
}

fn frame(kind: FrameKind, request_id: u64, end: bool, body: &[u8], payload: Bytes) -> OutFrame {
    let flags = if end { FLAG_END } else { 0 };
    #[expect(clippy::cast_possible_truncation, reason = "payloads are split at the frame cap, a u32")]
    let header = FrameHeader::for_body(kind, request_id, flags, body, payload.len() as u32);
    let mut head = BytesMut::with_capacity(FRAME_HEADER_BYTES + body.len());
    head.extend_from_slice(&header.encode());
    head.extend_from_slice(body);
    OutFrame { head: head.freeze(), payload }
}

/// A checked frame from the node.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The decoded header.
    pub header: FrameHeader,
    /// The flatbuffer body (a verified `Reply` for Reply frames; empty for Data frames).
    pub body: Bytes,
    /// The raw payload.
    pub payload: Bytes,
}

/// Incremental decoder over the bytes received on one connection.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    header: Option<FrameHeader>,
    cap: u32,
}

/// Spare room kept in the receive buffer between frames, so that small frames arrive in few
/// reads without growing the buffer per frame.
pub const RECEIVE_BUFFER_BYTES_MIN: usize = 64 * 1024;

impl FrameDecoder {
    /// A decoder refusing frames over `cap` body-plus-payload bytes.
    pub fn new(cap: u32) -> FrameDecoder {
        FrameDecoder { buf: BytesMut::with_capacity(RECEIVE_BUFFER_BYTES_MIN), header: None, cap }
    }

    /// Appends received bytes (tests, and drivers that read into their own buffers).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Hands out the receive buffer with room for the next read: all of the current frame when
    /// its header is known (checked against the cap first), else at least a header's worth.
    /// Give it back with [`FrameDecoder::restore`] after reading into its spare capacity.
    pub fn take_buffer(&mut self) -> BytesMut {
        let needed = match &self.header {
            Some(h) => (FRAME_HEADER_BYTES + h.frame_len()).saturating_sub(self.buf.len()),
            None => FRAME_HEADER_BYTES.saturating_sub(self.buf.len()),
        };
        let spare = self.buf.capacity() - self.buf.len();
        if spare < needed.max(4096) {
            self.buf.reserve(needed.max(RECEIVE_BUFFER_BYTES_MIN));
        }
        std::mem::take(&mut self.buf)
    }

    /// Takes back the buffer lent by [`FrameDecoder::take_buffer`].
    pub fn restore(&mut self, buf: BytesMut) {
        self.buf = buf;
    }

    /// Bytes received but not yet handed out as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, or `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] for a bad header, a body CRC mismatch, a Request frame from the
    /// node, or a Reply body the verifier refuses; the connection must then close.
    pub fn decode(&mut self) -> Result<Option<Frame>, ClientError> {
        let header = match self.header {
            Some(h) => h,
            None => {
                let Some(raw) = self.buf.get(..FRAME_HEADER_BYTES) else { return Ok(None) };
                let mut h = [0u8; FRAME_HEADER_BYTES];
                h.copy_from_slice(raw);
                let header = FrameHeader::decode(&h, self.cap)?;
                if header.kind == FrameKind::Request {
                    return Err(ClientError::protocol(format!(
                        "the node sent a Request frame (request id {})",
                        header.request_id
                    )));
                }
                self.header = Some(header);
                header
            }
        };
        if self.buf.len() < FRAME_HEADER_BYTES + header.frame_len() {
            return Ok(None);
        }
        self.header = None;
        self.buf.advance(FRAME_HEADER_BYTES);
        let body = self.buf.split_to(header.body_len as usize).freeze();
        let payload = self.buf.split_to(header.payload_len as usize).freeze();
        header.check_body(&body)?;
        if header.kind == FrameKind::Reply {
            verify_reply(&body, self.cap)?;
        }
        Ok(Some(Frame { header, body, payload }))
    }
}
