//! Syrup data files: append-only, node-global, holding Candy bytes in checksummed chunks.
//!
//! ```text
//! header (64 B)  0..8 magic "CANDYSYR" | 8..10 version u16 (=1) | 10..12 reserved
//!                12..16 reserved | 16..24 Syrup id u64 | 24..32 Box uid u64
//!                32..40 created-at ms u64 | 40..42 creating partition u16 | 42..60 reserved
//!                60..64 CRC-32 of 0..60
//! chunk          payload (chunk_size B, or fewer for the last chunk of a segment)
//!                CRC-32 of (file offset of the chunk, u64 LE) ++ payload
//! ```
//!
//! Invariants:
//! - A segment is a run of whole chunks starting at the SegmentRef's offset; chunk `i` of a
//!   segment starts at `offset + i * (chunk_size + 4)`.
//! - The chunk checksum is seeded with the chunk's file offset, so a chunk read from the wrong
//!   place (a forged or stale SegmentRef) fails verification.
//! - The header carries the Box uid: a zero-copy put proves a SegmentRef lies in a Syrup of its
//!   own Box by reading it.
//! - Syrups are never truncated or rewritten; the bytes of a failed put stay as unreferenced
//!   garbage until the Syrup is deleted.

use bytes::Bytes;

use crate::{
    codec::{crc32, Put, Reader},
    error::DecodeError,
    locator::CHUNK_TRAILER_BYTES,
    types::{BoxUid, SyrupId},
};

/// Magic bytes of a Syrup.
pub const SYRUP_MAGIC: [u8; 8] = *b"CANDYSYR";
/// Current Syrup format version.
pub const SYRUP_VERSION: u16 = 1;
/// Bytes of the Syrup header; the first chunk starts here.
pub const SYRUP_HEADER_BYTES: u64 = 64;
const HEADER_CRC_OFFSET: usize = SYRUP_HEADER_BYTES as usize - 4;

/// The decoded header of a Syrup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyrupHeader {
    /// The Syrup's id (also its file name): protects against a misnamed file.
    pub id: SyrupId,
    /// The Box whose Candies it holds: gates zero-copy puts to the same Box.
    pub box_uid: BoxUid,
    /// Creation time, for operators.
    pub created_ms: u64,
    /// The partition that created it and is responsible for deleting it.
    pub partition: u16,
}

impl SyrupHeader {
    /// Encodes the 64-byte header.
    pub fn encode(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(SYRUP_HEADER_BYTES as usize);
        h.extend_from_slice(&SYRUP_MAGIC);
        h.put_u16(SYRUP_VERSION);
        h.extend_from_slice(&[0; 6]);
        h.put_u64(self.id.0);
        h.put_u64(self.box_uid.0);
        h.put_u64(self.created_ms);
        h.put_u16(self.partition);
        h.extend_from_slice(&[0; 18]);
        let crc = crc32(&[&h]);
        h.put_u32(crc);
        assert!(h.len() as u64 == SYRUP_HEADER_BYTES);
        h
    }

    /// Decodes and checks a header.
    ///
    /// # Errors
    /// [`DecodeError`] for a bad magic, version or checksum.
    pub fn decode(buf: &[u8]) -> Result<SyrupHeader, DecodeError> {
        let mut r = Reader::new(buf);
        let magic = r.array::<8>()?;
        if magic != SYRUP_MAGIC {
            return Err(DecodeError::BadMagic { found: magic.to_vec() });
        }
        let version = r.u16()?;
        // A newer file is refused by name, before its checksum (whose scope it may have changed).
        if version != SYRUP_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let reserved_a = r.bytes(6)?;
        let id = SyrupId(r.u64()?);
        let box_uid = BoxUid(r.u64()?);
        let created_ms = r.u64()?;
        let partition = r.u16()?;
        let reserved_b = r.bytes(18)?;
        let expected = r.u32()?;
        let found = crc32(&[buf.get(..HEADER_CRC_OFFSET).unwrap_or_default()]);
        if found != expected {
            return Err(DecodeError::ChecksumMismatch { offset: 0, expected, found });
        }
        if reserved_a.iter().chain(reserved_b).any(|b| *b != 0) {
            return Err(DecodeError::Malformed { what: "reserved header bytes", offset: 10 });
        }
        Ok(SyrupHeader { id, box_uid, created_ms, partition })
    }
}

/// The checksum of a chunk at file offset `offset`.
pub fn chunk_crc(offset: u64, payload: &[u8]) -> u32 {
    crc32(&[&offset.to_le_bytes(), payload])
}

/// Verifies the chunk at `offset` whose payload is `len` bytes, in `map` (a mapping of the
/// Syrup from file offset 0).
///
/// # Returns
/// The payload as a slice of the mapping.
///
/// # Errors
/// `(expected, found)` checksums on a mismatch; `(0, 0)` when the chunk lies outside `map`.
pub fn verify_chunk(map: &Bytes, offset: u64, len: usize) -> Result<Bytes, (u32, u32)> {
    verify_chunk_crc(map, offset, len).map(|(payload, _)| payload)
}

/// [`verify_chunk`], also returning the chunk's checksum (for [`payload_crc`]).
///
/// # Errors
/// As [`verify_chunk`].
pub fn verify_chunk_crc(map: &Bytes, offset: u64, len: usize) -> Result<(Bytes, u32), (u32, u32)> {
    let start = usize::try_from(offset).map_err(|_| (0, 0))?;
    let end = start.checked_add(len).ok_or((0, 0))?;
    let trailer_end = end.checked_add(CHUNK_TRAILER_BYTES as usize).ok_or((0, 0))?;
    if trailer_end > map.len() {
        return Err((0, 0));
    }
    let payload = map.slice(start..end);
    let mut r = Reader::new(map.get(end..trailer_end).unwrap_or_default());
    let expected = r.u32().map_err(|_| (0, 0))?;
    let found = chunk_crc(offset, &payload);
    if found != expected {
        return Err((expected, found));
    }
    Ok((payload, found))
}

/// The CRC-32 of a chunk's payload alone, from the chunk's checksum (which covers the offset,
/// then the payload), without a second pass over the bytes: CRC-32 is linear,
/// `crc(A ‖ B) = crc(A)·x^(8|B|) ⊕ crc(B)`, so `crc(B)` is the chunk checksum minus the offset's
/// term shifted past `len` payload bytes.
pub fn payload_crc(offset: u64, chunk_crc: u32, len: u64) -> u32 {
    let mut offset_term = crc32fast::Hasher::new_with_initial_len(crc32(&[&offset.to_le_bytes()]), 8);
    offset_term.combine(&crc32fast::Hasher::new_with_initial_len(0, len));
    chunk_crc ^ offset_term.finalize()
}

/// Cuts a stream of payload bytes into chunks laid out from a segment's start offset, appending
/// each chunk's payload and trailer to an output buffer. Copies each byte once, from the input
/// into the write buffer.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    /// File offset where the next byte lands.
    file_offset: u64,
    /// File offset of the current (unfinished) chunk.
    chunk_start: u64,
    /// Payload bytes in the current chunk.
    chunk_fill: u32,
    chunk_hasher: crc32fast::Hasher,
    /// Payload bytes encoded so far.
    pub payload_bytes: u64,
}

impl ChunkEncoder {
    /// Starts a segment at `offset` with `chunk_size`.
    pub fn new(offset: u64, chunk_size: u32) -> Self {
        assert!(chunk_size > 0, "chunk size is positive");
        let mut chunk_hasher = crc32fast::Hasher::new();
        chunk_hasher.update(&offset.to_le_bytes());
        Self { chunk_size, file_offset: offset, chunk_start: offset, chunk_fill: 0, chunk_hasher, payload_bytes: 0 }
    }

    /// The file offset of the next byte.
    pub fn file_offset(&self) -> u64 {
        self.file_offset
    }

    /// Appends as much of `input` as fits before `limit` payload bytes, returning how much it took.
    pub fn push(&mut self, input: &[u8], limit: u64, out: &mut Vec<u8>) -> usize {
        let mut taken = 0usize;
        let room = limit.saturating_sub(self.payload_bytes);
        let mut rest = input.get(..input.len().min(usize::try_from(room).unwrap_or(usize::MAX))).unwrap_or_default();
        while !rest.is_empty() {
            let space = (self.chunk_size - self.chunk_fill) as usize;
            let n = space.min(rest.len());
            let (now, later) = rest.split_at(n);
            self.chunk_hasher.update(now);
            out.extend_from_slice(now);
            self.chunk_fill += n as u32;
            self.file_offset += n as u64;
            self.payload_bytes += n as u64;
            taken += n;
            rest = later;
            if self.chunk_fill == self.chunk_size {
                self.seal_chunk(out);
            }
        }
        taken
    }

    /// Ends the current chunk early (the end of a segment).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.chunk_fill > 0 {
            self.seal_chunk(out);
        }
    }

    fn seal_chunk(&mut self, out: &mut Vec<u8>) {
        let hasher = std::mem::replace(&mut self.chunk_hasher, crc32fast::Hasher::new());
        out.put_u32(hasher.finalize());
        self.file_offset += CHUNK_TRAILER_BYTES;
        self.chunk_start = self.file_offset;
        self.chunk_fill = 0;
        self.chunk_hasher.update(&self.chunk_start.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locator::stored_len;

    #[test]
    fn header_round_trips() {
        let h = SyrupHeader { id: SyrupId(5), box_uid: BoxUid(6), created_ms: 7, partition: 8 };
        let e = h.encode();
        assert_eq!(SyrupHeader::decode(&e), Ok(h));
        let mut bad = e.clone();
        bad[24] ^= 1;
        assert!(SyrupHeader::decode(&bad).is_err());
    }

    #[test]
    fn encoder_chunks_verify_at_their_offsets() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let base = 64u64;
        let mut enc = ChunkEncoder::new(base, 1024);
        let mut out = Vec::new();
        for piece in data.chunks(333) {
            assert_eq!(enc.push(piece, u64::MAX, &mut out), piece.len());
        }
        enc.finish(&mut out);
        assert_eq!(out.len() as u64, stored_len(5000, 1024));
        let mut file = vec![0u8; base as usize];
        file.extend_from_slice(&out);
        let map = Bytes::from(file);
        let mut got = Vec::new();
        let mut off = base;
        let mut left = 5000usize;
        while left > 0 {
            let n = left.min(1024);
            got.extend_from_slice(&verify_chunk(&map, off, n).expect("chunk verifies"));
            off += n as u64 + 4;
            left -= n;
        }
        assert_eq!(got, data);
        assert!(verify_chunk(&map, base + 1, 1024).is_err());
    }

    #[test]
    fn push_respects_the_limit() {
        let mut enc = ChunkEncoder::new(0, 512);
        let mut out = Vec::new();
        assert_eq!(enc.push(&[1; 700], 600, &mut out), 600);
        assert_eq!(enc.push(&[1; 10], 600, &mut out), 0);
        enc.finish(&mut out);
        assert_eq!(out.len() as u64, stored_len(600, 512));
    }

    #[test]
    fn payload_crc_from_the_chunk_checksum_equals_a_second_pass() {
        for (offset, len) in [(64u64, 0usize), (4096, 1), (1 << 33, 1000), (12_345, 65_536), (7, 300_001)] {
            let payload: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2]).collect();
            let chunk = chunk_crc(offset, &payload);
            assert_eq!(
                payload_crc(offset, chunk, len as u64),
                crc32fast::hash(&payload),
                "offset {offset}, {len} bytes"
            );
        }
    }
}

mod files;
mod reader;
pub(crate) use files::Syrups;
pub(crate) use reader::SyrupMap;
pub use reader::{CandyReader, Piece};
