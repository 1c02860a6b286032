//! The frame of the wire protocol (SPEC §9): a fixed 32-byte little-endian header, then a
//! flatbuffers body, then raw payload bytes.
//!
//! ```text
//!  0      4   5    6       8             16         20            24            28          32
//!  | magic | ver | kind | flags | request id | body len | payload len | body crc | header crc |
//! ```
//!
//! Invariants:
//! - The header is checked (magic, version, kind, flags, header CRC, lengths against the
//!   connection's cap) before a single byte of the body is buffered or allocated: a peer cannot
//!   make the reader allocate more than the cap.
//! - The body CRC is checked before the body is handed to the flatbuffers verifier; the verifier
//!   always runs with [`verifier_options`]; nothing here ever takes an unverified flatbuffer.
//! - A streamed message is one `Request`/`Reply` frame without [`FLAG_END`], then `Data` frames
//!   with the same request id, the last of which carries [`FLAG_END`]. A message in one frame
//!   carries [`FLAG_END`] on its `Request`/`Reply` frame.
//! - Version 2 (this one) adds per-stream flow control and cancellation: `Credit` frames (an
//!   8-byte grant as the body) and `Cancel` frames (no body), see [`FrameKind`]. A peer speaking
//!   version 1 never sees them: the node answers each connection in the version it speaks, and
//!   refuses `Credit`/`Cancel` in a version-1 frame.
//! - Version 3 lets the `Data` frame that ends a streamed put carry a body: a `PutTrailer`
//!   flatbuffer of metadata committed with the object (a digest computed while streaming). Any
//!   other `Data` frame, and any `Data` frame of versions 1 and 2, has no body.

use crate::generated::candybox::wire as fb;

/// Magic bytes at the start of every frame header.
pub const FRAME_MAGIC: [u8; 4] = *b"CBX1";
/// Version of the frame header and of the schema it carries (what this crate sends).
pub const FRAME_VERSION: u8 = 3;
/// The first version whose ending `Data` frame may carry a `PutTrailer` body.
pub const FRAME_VERSION_TRAILER: u8 = 3;
/// The oldest version still accepted: version 1 has no flow control and no cancellation.
pub const FRAME_VERSION_MIN: u8 = 1;
/// Payload credit each streamed message starts with, in each direction (version 2): the sender
/// may have this many bytes of a stream's Data frames (counted by [`credit_cost`]) unacknowledged
/// by `Credit` frames.
pub const STREAM_WINDOW_BYTES: u64 = 4 * 1024 * 1024;
/// A frame's payload counts at least this much against a stream's credit, so a window holds a
/// bounded number of frames however small they are.
pub const CREDIT_FRAME_COST_MIN: u64 = 64 * 1024;
/// Bytes of a `Credit` frame's body: the grant, a little-endian `u64`.
pub const CREDIT_BODY_BYTES: usize = 8;
/// Bytes of the fixed header.
pub const FRAME_HEADER_BYTES: usize = 32;
/// Default cap on a frame's body plus payload (SPEC §10; configurable per connection).
pub const FRAME_BODY_BYTES_MAX_DEFAULT: u32 = 16 * 1024 * 1024;
/// Smallest cap a connection may be configured with: the largest locator and its metadata fit.
pub const FRAME_BODY_BYTES_MAX_MIN: u32 = 1024 * 1024;
/// Set on the last frame of a message (a single-frame message, or the last data frame).
pub const FLAG_END: u16 = 1;
/// Every flag this version knows; frames with others set are refused.
pub const FLAGS_KNOWN: u16 = FLAG_END;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 4;
const KIND_OFFSET: usize = VERSION_OFFSET + 1;
const FLAGS_OFFSET: usize = KIND_OFFSET + 1;
const REQUEST_ID_OFFSET: usize = FLAGS_OFFSET + 2;
const BODY_LEN_OFFSET: usize = REQUEST_ID_OFFSET + 8;
const PAYLOAD_LEN_OFFSET: usize = BODY_LEN_OFFSET + 4;
const BODY_CRC_OFFSET: usize = PAYLOAD_LEN_OFFSET + 4;
const HEADER_CRC_OFFSET: usize = BODY_CRC_OFFSET + 4;
const _: () = assert!(HEADER_CRC_OFFSET + 4 == FRAME_HEADER_BYTES);
const _: () = assert!(FRAME_BODY_BYTES_MAX_MIN <= FRAME_BODY_BYTES_MAX_DEFAULT);

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A `Request` flatbuffer (client → node).
    Request = 1,
    /// A `Reply` flatbuffer (node → client).
    Reply = 2,
    /// A continuation of a streamed message: payload only, no flatbuffer body.
    Data = 3,
    /// Version 2: the receiver of a stream grants its sender more credit (body: the grant in
    /// bytes, a little-endian `u64`; no payload). Client → node for a get's reply stream, node →
    /// client for a put's body.
    Credit = 4,
    /// Version 2: client → node, abandon this request (a put is not committed, a get stops);
    /// node → client, the request ended abandoned: no more frames carry its id. No body, no
    /// payload.
    Cancel = 5,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<FrameKind> {
        match v {
            1 => Some(FrameKind::Request),
            2 => Some(FrameKind::Reply),
            3 => Some(FrameKind::Data),
            4 => Some(FrameKind::Credit),
            5 => Some(FrameKind::Cancel),
            _ => None,
        }
    }
}

/// A decoded, checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The protocol version the frame is written in.
    pub version: u8,
    /// What the frame carries.
    pub kind: FrameKind,
    /// [`FLAG_END`] and friends.
    pub flags: u16,
    /// Chosen by the client; the reply and every data frame of a message carry the same id.
    pub request_id: u64,
    /// Bytes of the flatbuffer body (0 for data frames).
    pub body_len: u32,
    /// Raw payload bytes after the body.
    pub payload_len: u32,
    /// CRC-32 of the flatbuffer body.
    pub body_crc: u32,
}

impl FrameHeader {
    /// True when no data frames follow.
    pub fn is_end(&self) -> bool {
        self.flags & FLAG_END != 0
    }

    /// Body plus payload bytes that follow the header.
    pub fn frame_len(&self) -> usize {
        self.body_len as usize + self.payload_len as usize
    }

    /// Encodes the header (computing its CRC).
    pub fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut h = [0u8; FRAME_HEADER_BYTES];
        put(&mut h, MAGIC_OFFSET, &FRAME_MAGIC);
        put(&mut h, VERSION_OFFSET, &[self.version]);
        put(&mut h, KIND_OFFSET, &[self.kind as u8]);
        put(&mut h, FLAGS_OFFSET, &self.flags.to_le_bytes());
        put(&mut h, REQUEST_ID_OFFSET, &self.request_id.to_le_bytes());
        put(&mut h, BODY_LEN_OFFSET, &self.body_len.to_le_bytes());
        put(&mut h, PAYLOAD_LEN_OFFSET, &self.payload_len.to_le_bytes());
        put(&mut h, BODY_CRC_OFFSET, &self.body_crc.to_le_bytes());
        let crc = crc32fast::hash(h.get(..HEADER_CRC_OFFSET).unwrap_or_default());
        put(&mut h, HEADER_CRC_OFFSET, &crc.to_le_bytes());
        h
    }

    /// Builds the header of a frame with this body (its CRC computed here).
    pub fn for_body(kind: FrameKind, request_id: u64, flags: u16, body: &[u8], payload_len: u32) -> FrameHeader {
        FrameHeader {
            version: FRAME_VERSION,
            kind,
            flags,
            request_id,
            body_len: u32::try_from(body.len()).unwrap_or(u32::MAX),
            payload_len,
            body_crc: crc32fast::hash(body),
        }
    }

    /// Checks and decodes a header; `body_bytes_max` caps body plus payload.
    ///
    /// # Errors
    /// A [`FrameError`] naming what is wrong; the connection must then be closed.
    pub fn decode(h: &[u8; FRAME_HEADER_BYTES], body_bytes_max: u32) -> Result<FrameHeader, FrameError> {
        if get::<4>(h, MAGIC_OFFSET) != FRAME_MAGIC {
            return Err(FrameError::BadMagic(get::<4>(h, MAGIC_OFFSET)));
        }
        let stored = u32::from_le_bytes(get::<4>(h, HEADER_CRC_OFFSET));
        let found = crc32fast::hash(h.get(..HEADER_CRC_OFFSET).unwrap_or_default());
        if stored != found {
            return Err(FrameError::HeaderChecksum { expected: stored, found });
        }
        let version = get::<1>(h, VERSION_OFFSET)[0];
        if !(FRAME_VERSION_MIN..=FRAME_VERSION).contains(&version) {
            return Err(FrameError::Version(version));
        }
        let kind_byte = get::<1>(h, KIND_OFFSET)[0];
        let kind = FrameKind::from_u8(kind_byte).ok_or(FrameError::Kind(kind_byte))?;
        if version < 2 && matches!(kind, FrameKind::Credit | FrameKind::Cancel) {
            return Err(FrameError::Kind(kind_byte));
        }
        let flags = u16::from_le_bytes(get::<2>(h, FLAGS_OFFSET));
        if flags & !FLAGS_KNOWN != 0 {
            return Err(FrameError::Flags(flags));
        }
        let header = FrameHeader {
            version,
            kind,
            flags,
            request_id: u64::from_le_bytes(get::<8>(h, REQUEST_ID_OFFSET)),
            body_len: u32::from_le_bytes(get::<4>(h, BODY_LEN_OFFSET)),
            payload_len: u32::from_le_bytes(get::<4>(h, PAYLOAD_LEN_OFFSET)),
            body_crc: u32::from_le_bytes(get::<4>(h, BODY_CRC_OFFSET)),
        };
        let total = u64::from(header.body_len) + u64::from(header.payload_len);
        if total > u64::from(body_bytes_max) {
            return Err(FrameError::TooLarge { len: total, max: body_bytes_max });
        }
        match kind {
            FrameKind::Data if header.body_len != 0 && (version < FRAME_VERSION_TRAILER || flags & FLAG_END == 0) => {
                return Err(FrameError::DataWithBody)
            }
            FrameKind::Request | FrameKind::Reply if header.body_len == 0 => return Err(FrameError::EmptyBody),
            FrameKind::Credit if header.body_len as usize != CREDIT_BODY_BYTES || header.payload_len != 0 => {
                return Err(FrameError::ControlShape(kind_byte))
            }
            FrameKind::Cancel if header.body_len != 0 || header.payload_len != 0 => {
                return Err(FrameError::ControlShape(kind_byte))
            }
            _ => {}
        }
        Ok(header)
    }

    /// The same header written in `version` (a node answers each peer in the version it speaks).
    pub fn in_version(mut self, version: u8) -> FrameHeader {
        self.version = version;
        self
    }

    /// A `Credit` frame granting `grant` more bytes to stream `request_id`: header and body.
    pub fn credit(request_id: u64, grant: u64) -> ([u8; FRAME_HEADER_BYTES], [u8; CREDIT_BODY_BYTES]) {
        let body = grant.to_le_bytes();
        (FrameHeader::for_body(FrameKind::Credit, request_id, 0, &body, 0).encode(), body)
    }

    /// A `Cancel` frame for `request_id`.
    pub fn cancel(request_id: u64) -> [u8; FRAME_HEADER_BYTES] {
        FrameHeader::for_body(FrameKind::Cancel, request_id, 0, &[], 0).encode()
    }

    /// Checks the body against the header's CRC.
    ///
    /// # Errors
    /// [`FrameError::BodyChecksum`].
    pub fn check_body(&self, body: &[u8]) -> Result<(), FrameError> {
        let found = crc32fast::hash(body);
        if found == self.body_crc {
            Ok(())
        } else {
            Err(FrameError::BodyChecksum { expected: self.body_crc, found })
        }
    }
}

fn put(h: &mut [u8; FRAME_HEADER_BYTES], at: usize, bytes: &[u8]) {
    if let Some(dst) = h.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn get<const N: usize>(h: &[u8; FRAME_HEADER_BYTES], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = h.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// Why a frame was refused. Any of these closes the connection (with a logged reason): after
/// a bad header the stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first four bytes are not [`FRAME_MAGIC`].
    #[error("bad frame magic {0:02x?}")]
    BadMagic([u8; 4]),
    /// The header CRC does not match.
    #[error("frame header checksum mismatch: expected {expected:#010x}, found {found:#010x}")]
    HeaderChecksum {
        /// Stored CRC.
        expected: u32,
        /// Computed CRC.
        found: u32,
    },
    /// An unknown frame version.
    #[error("unsupported frame version {0}")]
    Version(u8),
    /// An unknown frame kind.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// Unknown flag bits.
    #[error("unknown frame flags {0:#06x}")]
    Flags(u16),
    /// Body plus payload exceed the connection's cap.
    #[error("frame of {len} bytes exceeds the cap of {max} bytes")]
    TooLarge {
        /// Body plus payload.
        len: u64,
        /// The cap.
        max: u32,
    },
    /// A data frame with a flatbuffer body (before version 3, or not the stream's last).
    #[error("data frame carries a body (only the last data frame of a version-3 stream may: its trailer)")]
    DataWithBody,
    /// A request or reply frame without a body.
    #[error("request or reply frame without a body")]
    EmptyBody,
    /// The body CRC does not match.
    #[error("frame body checksum mismatch: expected {expected:#010x}, found {found:#010x}")]
    BodyChecksum {
        /// Stored CRC.
        expected: u32,
        /// Computed CRC.
        found: u32,
    },
    /// The body is not a valid flatbuffer of the expected table.
    #[error("invalid flatbuffer body: {0}")]
    Flatbuffer(String),
    /// A data frame for a request id with no streamed message open, or a request id reused.
    #[error("frame for request id {0} out of sequence")]
    OutOfSequence(u64),
    /// A `Credit` frame whose body is not 8 bytes, or a `Cancel` frame with a body or payload.
    #[error("control frame of kind {0} with the wrong shape")]
    ControlShape(u8),
}

/// The grant a checked `Credit` frame body carries.
pub fn credit_grant(body: &[u8]) -> u64 {
    body.first_chunk::<CREDIT_BODY_BYTES>().map_or(0, |b| u64::from_le_bytes(*b))
}

/// What a frame carrying `payload_len` bytes of a stream costs against the stream's credit: its
/// length, but at least [`CREDIT_FRAME_COST_MIN`]; nothing when it carries none (a bare END).
pub fn credit_cost(payload_len: usize) -> u64 {
    if payload_len == 0 {
        return 0;
    }
    (payload_len as u64).max(CREDIT_FRAME_COST_MIN)
}

/// The verifier limits used for every flatbuffer read from the network.
pub fn verifier_options(body_bytes_max: u32) -> flatbuffers::VerifierOptions {
    flatbuffers::VerifierOptions {
        max_depth: 16,
        // A locator of 10,000 parts of a few segments each is the largest legitimate message.
        max_tables: 200_000,
        max_apparent_size: body_bytes_max as usize,
        ignore_missing_null_terminator: false,
    }
}

/// Verifies and returns a `Request` body.
///
/// # Errors
/// [`FrameError::Flatbuffer`] when the verifier refuses it.
pub fn verify_request(body: &[u8], body_bytes_max: u32) -> Result<fb::Request<'_>, FrameError> {
    flatbuffers::root_with_opts::<fb::Request>(&verifier_options(body_bytes_max), body)
        .map_err(|e| FrameError::Flatbuffer(e.to_string()))
}

/// Verifies and returns the `PutTrailer` body of a stream's last `Data` frame (version 3).
///
/// # Errors
/// [`FrameError::Flatbuffer`] when the verifier refuses it.
pub fn verify_trailer(body: &[u8], body_bytes_max: u32) -> Result<fb::PutTrailer<'_>, FrameError> {
    flatbuffers::root_with_opts::<fb::PutTrailer>(&verifier_options(body_bytes_max), body)
        .map_err(|e| FrameError::Flatbuffer(e.to_string()))
}

/// Verifies and returns a `Reply` body.
///
/// # Errors
/// [`FrameError::Flatbuffer`] when the verifier refuses it.
pub fn verify_reply(body: &[u8], body_bytes_max: u32) -> Result<fb::Reply<'_>, FrameError> {
    flatbuffers::root_with_opts::<fb::Reply>(&verifier_options(body_bytes_max), body)
        .map_err(|e| FrameError::Flatbuffer(e.to_string()))
}

/// Verifies and returns a relayed `Locator` (the bytes of get-locator / zero-copy-put).
///
/// # Errors
/// [`FrameError::Flatbuffer`] when the verifier refuses it.
pub fn verify_locator(bytes: &[u8], body_bytes_max: u32) -> Result<fb::Locator<'_>, FrameError> {
    flatbuffers::root_with_opts::<fb::Locator>(&verifier_options(body_bytes_max), bytes)
        .map_err(|e| FrameError::Flatbuffer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_checks() {
        let h = FrameHeader::for_body(FrameKind::Request, 7, FLAG_END, b"abc", 10);
        let enc = h.encode();
        assert_eq!(FrameHeader::decode(&enc, 1 << 20), Ok(h));
        let mut bad = enc;
        bad[9] ^= 1;
        assert!(matches!(FrameHeader::decode(&bad, 1 << 20), Err(FrameError::HeaderChecksum { .. })));
        assert!(matches!(FrameHeader::decode(&enc, 12), Err(FrameError::TooLarge { len: 13, max: 12 })));
        assert_eq!(h.check_body(b"abc"), Ok(()));
        assert!(matches!(h.check_body(b"abd"), Err(FrameError::BodyChecksum { .. })));
    }

    #[test]
    fn version_one_frames_are_read_and_control_frames_need_version_two() {
        let h = FrameHeader::for_body(FrameKind::Request, 7, FLAG_END, b"abc", 0).in_version(1);
        assert_eq!(FrameHeader::decode(&h.encode(), 1 << 20).map(|d| d.version), Ok(1));
        let (credit, body) = FrameHeader::credit(9, 1 << 20);
        let decoded = FrameHeader::decode(&credit, 1 << 20).expect("a credit frame");
        assert_eq!((decoded.kind, decoded.request_id, decoded.version), (FrameKind::Credit, 9, FRAME_VERSION));
        assert_eq!(decoded.check_body(&body), Ok(()));
        assert_eq!(credit_grant(&body), 1 << 20);
        let old = FrameHeader::decode(&credit, 1 << 20).expect("decodes").in_version(1).encode();
        assert_eq!(FrameHeader::decode(&old, 1 << 20), Err(FrameError::Kind(4)));
        let cancel = FrameHeader::cancel(3);
        assert_eq!(FrameHeader::decode(&cancel, 1 << 20).map(|d| d.kind), Ok(FrameKind::Cancel));
        let bad_cancel = FrameHeader::for_body(FrameKind::Cancel, 3, 0, b"x", 0).encode();
        assert_eq!(FrameHeader::decode(&bad_cancel, 1 << 20), Err(FrameError::ControlShape(5)));
        let bad_credit = FrameHeader::for_body(FrameKind::Credit, 3, 0, b"1234", 0).encode();
        assert_eq!(FrameHeader::decode(&bad_credit, 1 << 20), Err(FrameError::ControlShape(4)));
        let future = FrameHeader::for_body(FrameKind::Request, 7, FLAG_END, b"abc", 0).in_version(4).encode();
        assert_eq!(FrameHeader::decode(&future, 1 << 20), Err(FrameError::Version(4)));
        assert_eq!((credit_cost(0), credit_cost(10), credit_cost(1 << 20)), (0, CREDIT_FRAME_COST_MIN, 1 << 20));
    }

    #[test]
    fn only_a_version_three_stream_end_carries_a_trailer() {
        let trailer = FrameHeader::for_body(FrameKind::Data, 5, FLAG_END, b"meta", 3);
        assert_eq!(FrameHeader::decode(&trailer.encode(), 1 << 20).map(|d| d.body_len), Ok(4));
        let v2 = trailer.in_version(2).encode();
        assert_eq!(FrameHeader::decode(&v2, 1 << 20), Err(FrameError::DataWithBody));
        let not_last = FrameHeader::for_body(FrameKind::Data, 5, 0, b"meta", 3).encode();
        assert_eq!(FrameHeader::decode(&not_last, 1 << 20), Err(FrameError::DataWithBody));
    }
}
