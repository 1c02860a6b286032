//! Log-record framing shared by the WAL and the manifest.
//!
//! A log file is a fixed header followed by records:
//!
//! ```text
//! +----------------+----------------+---------------------+
//! | body_len: u32  | crc32: u32     | body (body_len B)   |
//! +----------------+----------------+---------------------+
//! ```
//!
//! `crc32` covers the file offset of the record (8 bytes LE), `body_len` and the body: a record
//! copied to the wrong place fails its check.
//!
//! Invariants:
//! - A record that runs past the end of the file, or whose checksum fails while nothing follows
//!   it, is a torn tail: it was being written when the process stopped, so it was never
//!   acknowledged; it and everything after it are discarded.
//! - A record whose checksum fails while more bytes follow it is corruption, not a tear: the scan
//!   stops with an error rather than silently dropping acknowledged records behind it.

use crate::{
    codec::{crc32, Put, Reader},
    error::DecodeError,
};

/// Bytes of the record header.
pub const RECORD_HEADER_BYTES: usize = 8;

/// Bytes of the fixed header that starts every log file (WAL and manifest):
///
/// ```text
///  0..8  magic | 8..10 version u16 | 10..16 reserved (zero) | 16..24 file number u64
/// 24..28 reserved (zero) | 28..32 CRC-32 of 0..28
/// ```
///
/// The file number protects against a misnamed or misdirected file.
pub const LOG_HEADER_BYTES: usize = 32;
const LOG_HEADER_CRC_OFFSET: usize = LOG_HEADER_BYTES - 4;
const _: () = assert!(LOG_HEADER_CRC_OFFSET == 28);

/// The header of log file `number` with `magic` and `version`.
pub fn encode_log_header(magic: &[u8; 8], version: u16, number: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(LOG_HEADER_BYTES);
    h.extend_from_slice(magic);
    h.put_u16(version);
    h.extend_from_slice(&[0; 6]);
    h.put_u64(number);
    h.put_u32(0);
    let crc = crc32(&[&h]);
    h.put_u32(crc);
    assert!(h.len() == LOG_HEADER_BYTES);
    h
}

/// Checks a log file header and returns its number.
///
/// # Errors
/// [`DecodeError`] for a bad magic, an unknown version (checked before the checksum, so a newer
/// file is refused by name), a bad checksum, or non-zero reserved bytes.
pub fn decode_log_header(buf: &[u8], magic: &[u8; 8], version: u16) -> Result<u64, DecodeError> {
    let mut r = Reader::new(buf);
    let found_magic = r.array::<8>()?;
    if &found_magic != magic {
        return Err(DecodeError::BadMagic { found: found_magic.to_vec() });
    }
    let found_version = r.u16()?;
    if found_version != version {
        return Err(DecodeError::UnsupportedVersion(found_version));
    }
    let reserved_a = r.bytes(6)?;
    let number = r.u64()?;
    let reserved_b = r.u32()?;
    let expected = r.u32()?;
    let found = crc32(&[buf.get(..LOG_HEADER_CRC_OFFSET).unwrap_or_default()]);
    if found != expected {
        return Err(DecodeError::ChecksumMismatch { offset: 0, expected, found });
    }
    if reserved_a.iter().any(|b| *b != 0) || reserved_b != 0 {
        return Err(DecodeError::Malformed { what: "reserved header bytes", offset: 10 });
    }
    Ok(number)
}

/// Appends one framed record for file offset `offset` to `out`.
pub fn encode_record(offset: u64, body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    assert!(len as usize == body.len(), "record body longer than u32");
    out.put_u32(len);
    out.put_u32(crc32(&[&offset.to_le_bytes(), &len.to_le_bytes(), body]));
    out.extend_from_slice(body);
}

/// Appends one framed record for file offset `offset` to `out`, with the body written in place by
/// `body` (no intermediate buffer).
pub fn encode_record_with(offset: u64, out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    body(out);
    let body_bytes = out.get(start + RECORD_HEADER_BYTES..).unwrap_or_default();
    let len = u32::try_from(body_bytes.len()).unwrap_or(u32::MAX);
    assert!(len as usize == body_bytes.len(), "record body longer than u32");
    let crc = crc32(&[&offset.to_le_bytes(), &len.to_le_bytes(), body_bytes]);
    let mut header = [0u8; RECORD_HEADER_BYTES];
    let (l, c) = header.split_at_mut(4);
    l.copy_from_slice(&len.to_le_bytes());
    c.copy_from_slice(&crc.to_le_bytes());
    if let Some(h) = out.get_mut(start..start + RECORD_HEADER_BYTES) {
        h.copy_from_slice(&header);
    }
}

/// How a scan of a log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belonged to a whole record.
    Clean,
    /// A torn record started at `offset`; `discarded` bytes from there to the end were dropped.
    Torn {
        /// File offset of the torn record.
        offset: u64,
        /// Bytes discarded.
        discarded: u64,
    },
}

/// Record bodies with their file offsets, borrowed from the scanned buffer.
pub type Records<'a> = Vec<(u64, &'a [u8])>;

/// Splits `buf` (the bytes of a log file from `base` on) into record bodies.
///
/// # Returns
/// The bodies with their file offsets, and how the scan ended.
///
/// # Errors
/// [`DecodeError::ChecksumMismatch`] for a bad record in the middle of the log, or
/// [`DecodeError::Malformed`] for a length beyond `body_max` that is followed by more data.
pub fn scan_records(buf: &[u8], base: u64, body_max: usize) -> Result<(Records<'_>, ScanEnd), DecodeError> {
    let mut out = Vec::new();
    let mut r = Reader::new(buf);
    while r.remaining() > 0 {
        let at = r.position();
        let offset = base + at as u64;
        let torn = ScanEnd::Torn { offset, discarded: (buf.len() - at) as u64 };
        let (Ok(len), Ok(crc)) = (r.u32(), r.u32()) else {
            return Ok((out, torn));
        };
        if len as usize > body_max {
            // The writer never writes such a length, and a tear only cuts bytes off: this is
            // damage, not a torn tail.
            return Err(DecodeError::Malformed { what: "record length", offset });
        }
        let Ok(body) = r.bytes(len as usize) else {
            return Ok((out, torn));
        };
        let found = crc32(&[&offset.to_le_bytes(), &len.to_le_bytes(), body]);
        if found != crc {
            if r.remaining() == 0 {
                return Ok((out, torn));
            }
            return Err(DecodeError::ChecksumMismatch { offset, expected: crc, found });
        }
        out.push((offset, body));
    }
    Ok((out, ScanEnd::Clean))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(bodies: &[&[u8]], base: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            let off = base + out.len() as u64;
            encode_record(off, b, &mut out);
        }
        out
    }

    #[test]
    fn every_tear_keeps_a_prefix_of_whole_records() {
        let bodies: [&[u8]; 3] = [b"one", b"two-two", b"three"];
        let full = log(&bodies, 32);
        for cut in 0..=full.len() {
            let (recs, end) = scan_records(&full[..cut], 32, 1024).expect("tear is not corruption");
            let n = recs.len();
            assert_eq!(recs.iter().map(|r| r.1).collect::<Vec<_>>(), bodies[..n].to_vec());
            assert_eq!(end == ScanEnd::Clean, cut == full.len() || [0, 11, 26].contains(&cut));
        }
    }

    #[test]
    fn a_flip_in_the_middle_is_corruption_and_at_the_end_a_tear() {
        let full = log(&[b"one", b"two"], 0);
        let mut mid = full.clone();
        mid[9] ^= 1;
        assert!(matches!(scan_records(&mid, 0, 1024), Err(DecodeError::ChecksumMismatch { offset: 0, .. })));
        let mut last = full.clone();
        let n = last.len();
        last[n - 1] ^= 1;
        let (recs, end) = scan_records(&last, 0, 1024).expect("tail");
        assert_eq!(recs.len(), 1);
        assert_eq!(end, ScanEnd::Torn { offset: 11, discarded: 11 });
    }

    #[test]
    fn a_record_at_another_offset_fails_its_check() {
        let rec = log(&[b"x"], 100);
        let mut moved = log(&[b"y"], 0);
        moved.extend_from_slice(&rec);
        moved.extend_from_slice(&rec);
        assert!(scan_records(&moved, 0, 1024).is_err());
    }
}
