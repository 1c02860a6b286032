//! Reading Candy bytes out of Syrups: a [`CandyReader`] walks a locator's segments over
//! read-only mappings of the Syrups and verifies every chunk it returns (and, for a whole Candy,
//! every Part's checksum) as it goes.
//!
//! Invariants:
//! - Bytes are served only from mappings of durable Syrup ranges (the caller maps at least the
//!   range the locator names, which its commit made durable).
//! - No byte reaches the caller before the checksum of its chunk matched; a mismatch ends the
//!   reader with [`Error::ChecksumMismatch`] naming the Syrup and offset.

use std::collections::HashMap;

use bytes::Bytes;

use super::{payload_crc, verify_chunk_crc};
use crate::{
    error::{Error, Result},
    locator::{CandyBody, Part, CHUNK_TRAILER_BYTES},
    storage::SpliceFd,
    types::SyrupId,
};

/// Reads the selected bytes of a Candy, verifying every chunk it touches (and, for a whole
/// Candy, every Part's checksum). Each item is a slice of a Syrup mapping: no copy.
#[derive(Debug)]
pub struct CandyReader {
    body: CandyBody,
    maps: HashMap<SyrupId, SyrupMap>,
    /// Candy offset of the next byte to return.
    pos: u64,
    /// Bytes still to return.
    left: u64,
    verify_parts: bool,
    part: usize,
    segment: usize,
    /// Candy offset where the current segment starts.
    segment_at: u64,
    /// Candy offset where the current part starts.
    part_at: u64,
    part_hasher: crc32fast::Hasher,
    done_inline: bool,
}

/// A Syrup's read-only mapping (from its first byte) and, where the storage has one, a
/// descriptor of the same file to splice its bytes from.
#[derive(Clone, Debug)]
pub(crate) struct SyrupMap {
    pub(crate) bytes: Bytes,
    pub(crate) fd: Option<SpliceFd>,
}

/// One verified piece of a Candy's bytes: a slice of a Syrup mapping (or of an inline body) and,
/// for a Syrup, where the same bytes lie in its file, so a sender may splice them from the file
/// (the page-cache pages the verification just read) instead of copying them.
#[derive(Clone, Debug)]
pub struct Piece {
    /// The verified bytes.
    pub bytes: Bytes,
    /// The Syrup file's descriptor and the offset of `bytes` in it.
    pub file: Option<(SpliceFd, u64)>,
}

impl Piece {
    /// Splits the piece at `at`: `self` keeps `[0, at)`, the returned piece is the rest.
    pub fn split_off(&mut self, at: usize) -> Piece {
        let bytes = self.bytes.split_off(at);
        let file = self.file.as_ref().map(|(fd, offset)| (fd.clone(), offset + at as u64));
        Piece { bytes, file }
    }
}

impl CandyReader {
    pub(crate) fn new(body: CandyBody, maps: HashMap<SyrupId, SyrupMap>, first: u64, len: u64, whole: bool) -> Self {
        CandyReader {
            body,
            maps,
            pos: first,
            left: len,
            verify_parts: whole,
            part: 0,
            segment: 0,
            segment_at: 0,
            part_at: 0,
            part_hasher: crc32fast::Hasher::new(),
            done_inline: false,
        }
    }

    /// Bytes not yet returned.
    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// Reads everything left into one buffer (for tests and small Candies).
    ///
    /// # Errors
    /// The first checksum error met.
    pub fn read_to_vec(self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.left).unwrap_or(0).min(1 << 30));
        for piece in self {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    /// The next verified piece with its place in its Syrup file; `None` at the end. An error
    /// (a checksum mismatch) ends the reader.
    pub fn next_piece(&mut self) -> Option<Result<Piece>> {
        match &self.body {
            CandyBody::Inline(data) => {
                if self.done_inline || self.left == 0 {
                    return None;
                }
                self.done_inline = true;
                let (s, e) = (self.pos as usize, (self.pos + self.left) as usize);
                self.left = 0;
                let bytes = Bytes::copy_from_slice(data.get(s..e).unwrap_or_default());
                Some(Ok(Piece { bytes, file: None }))
            }
            CandyBody::Parts(_) => self.next_from_parts(),
        }
    }

    fn next_from_parts(&mut self) -> Option<Result<Piece>> {
        let CandyBody::Parts(parts) = &self.body else { return None };
        loop {
            if self.left == 0 {
                return None;
            }
            let part: &Part = parts.get(self.part)?;
            let Some(seg) = part.segments.get(self.segment) else {
                // End of a part: check its checksum if the whole Candy was read.
                if self.verify_parts {
                    let h = std::mem::replace(&mut self.part_hasher, crc32fast::Hasher::new());
                    let found = h.finalize();
                    if found != part.checksum {
                        self.left = 0;
                        let (syrup, offset) = part.segments.first().map_or((0, 0), |s| (s.syrup.0, s.offset));
                        return Some(Err(Error::ChecksumMismatch { syrup, offset, expected: part.checksum, found }));
                    }
                }
                self.part_at += part.length;
                self.part += 1;
                self.segment = 0;
                continue;
            };
            if self.pos >= self.segment_at + seg.length {
                self.segment_at += seg.length;
                self.segment += 1;
                continue;
            }
            let cs = u64::from(part.chunk_size);
            let within = self.pos - self.segment_at;
            let chunk_index = within / cs;
            let chunk_payload_at = chunk_index * cs;
            let chunk_len = cs.min(seg.length - chunk_payload_at);
            let chunk_file = seg.offset + chunk_index * (cs + CHUNK_TRAILER_BYTES);
            let Some(map) = self.maps.get(&seg.syrup) else {
                self.left = 0;
                return Some(Err(Error::invalid("segment", format!("syrup {} was not mapped", seg.syrup))));
            };
            let payload = match verify_chunk_crc(&map.bytes, chunk_file, chunk_len as usize) {
                Ok((p, crc)) => {
                    if self.verify_parts {
                        // The Part's checksum from the chunk's, not from a second pass.
                        let chunk =
                            crc32fast::Hasher::new_with_initial_len(payload_crc(chunk_file, crc, chunk_len), chunk_len);
                        self.part_hasher.combine(&chunk);
                    }
                    p
                }
                Err((expected, found)) => {
                    self.left = 0;
                    return Some(Err(Error::ChecksumMismatch {
                        syrup: seg.syrup.0,
                        offset: chunk_file,
                        expected,
                        found,
                    }));
                }
            };
            let skip = (within - chunk_payload_at) as usize;
            let take = (chunk_len - skip as u64).min(self.left) as usize;
            self.pos += take as u64;
            self.left -= take as u64;
            let out = Piece {
                bytes: payload.slice(skip..skip + take),
                file: map.fd.as_ref().map(|fd| (fd.clone(), chunk_file + skip as u64)),
            };
            if self.left == 0 && self.verify_parts {
                // The last chunk: finish the part check now.
                let h = std::mem::replace(&mut self.part_hasher, crc32fast::Hasher::new());
                let found = h.finalize();
                if found != part.checksum {
                    let (syrup, offset) = part.segments.first().map_or((0, 0), |s| (s.syrup.0, s.offset));
                    return Some(Err(Error::ChecksumMismatch { syrup, offset, expected: part.checksum, found }));
                }
            }
            return Some(Ok(out));
        }
    }
}

impl Iterator for CandyReader {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Result<Bytes>> {
        self.next_piece().map(|p| p.map(|p| p.bytes))
    }
}
