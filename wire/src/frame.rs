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

use crate::generated::candybox::wire as fb;

/// Magic bytes at the start of every frame header.
pub const FRAME_MAGIC: [u8; 4] = *b"CBX1";
/// Version of the frame header and of the schema it carries.
pub const FRAME_VERSION: u8 = 1;
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
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<FrameKind> {
        match v {
            1 => Some(FrameKind::Request),
            2 => Some(FrameKind::Reply),
            3 => Some(FrameKind::Data),
            _ => None,
        }
    }
}

/// A decoded, checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
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
        put(&mut h, VERSION_OFFSET, &[FRAME_VERSION]);
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
        if version != FRAME_VERSION {
            return Err(FrameError::Version(version));
        }
        let kind_byte = get::<1>(h, KIND_OFFSET)[0];
        let kind = FrameKind::from_u8(kind_byte).ok_or(FrameError::Kind(kind_byte))?;
        let flags = u16::from_le_bytes(get::<2>(h, FLAGS_OFFSET));
        if flags & !FLAGS_KNOWN != 0 {
            return Err(FrameError::Flags(flags));
        }
        let header = FrameHeader {
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
            FrameKind::Data if header.body_len != 0 => return Err(FrameError::DataWithBody),
            FrameKind::Request | FrameKind::Reply if header.body_len == 0 => return Err(FrameError::EmptyBody),
            _ => {}
        }
        Ok(header)
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
    /// A data frame with a flatbuffer body.
    #[error("data frame carries a body")]
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
}
