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
//! - Only damage that a crash of the writer explains is a torn tail (see [`scan_records`]): a
//!   record cut short with nothing valid behind it, or whose unwritten last sectors read as
//!   zeros. It was being written when the process stopped, so it was never acknowledged; it and
//!   everything after it are discarded.
//! - Any other bad record is corruption, not a tear: a flipped bit in the last record, or a bad
//!   record with more records behind it. The scan stops with an error rather than silently
//!   dropping acknowledged records.

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

/// The granularity at which a crash can leave a record half-written: a sector of the file that
/// never reached the disk reads back as zeros, one that did holds the whole of its new bytes.
pub const TEAR_SECTOR_BYTES: u64 = 512;

/// Most bytes of checksumming spent looking for a valid record behind a record that runs past
/// the end of the file (a tear has none behind it; a damaged length field does): past this
/// budget the damage is called corruption, since a tear is never proven.
pub const TEAR_PROBE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Moves a body decoder's error offset (from the body's start) to the file offset, for the
/// record at `record_offset` (its body follows the record header).
pub(crate) fn body_error_at(e: DecodeError, record_offset: u64) -> DecodeError {
    let base = record_offset + RECORD_HEADER_BYTES as u64;
    match e {
        DecodeError::Malformed { what, offset } => DecodeError::Malformed { what, offset: base + offset },
        other => other,
    }
}

/// Splits `buf` (the bytes of a log file from `base` on) into record bodies.
///
/// Only a record that the crash of its writer can explain is a torn tail, because the records
/// before it were acknowledged and nothing was written after it:
/// - every byte from the record to the end of the file is zero (space allocated, never written);
/// - the file ends inside the record's header, or inside its body while no valid record starts
///   anywhere behind it (a damaged length field that makes a record run past the end would
///   otherwise drop the records behind it);
/// - the record is complete but fails its checksum, and every byte from some sector boundary
///   inside its body to the end of the file is zero (its last sectors never reached the disk).
///
/// A complete record that fails its checksum with non-zero bytes to its end (a flipped bit in
/// the last, acknowledged record) is corruption, as is any bad record with data behind it.
///
/// # Returns
/// The bodies with their file offsets, and how the scan ended.
///
/// # Errors
/// [`DecodeError::ChecksumMismatch`] for a bad record that is not a tear, or
/// [`DecodeError::Malformed`] for a length beyond `body_max` or one that a valid record behind it
/// shows to be damaged.
pub fn scan_records(buf: &[u8], base: u64, body_max: usize) -> Result<(Records<'_>, ScanEnd), DecodeError> {
    let mut out = Vec::new();
    let mut r = Reader::new(buf);
    while r.remaining() > 0 {
        let at = r.position();
        let offset = base + at as u64;
        let rest = buf.get(at..).unwrap_or_default();
        let torn = ScanEnd::Torn { offset, discarded: rest.len() as u64 };
        if rest.iter().all(|b| *b == 0) {
            return Ok((out, torn));
        }
        let (Ok(len), Ok(crc)) = (r.u32(), r.u32()) else {
            return Ok((out, torn));
        };
        if len as usize > body_max {
            // The writer never writes such a length, and a tear only cuts bytes off: this is
            // damage, not a torn tail.
            return Err(DecodeError::Malformed { what: "record length", offset });
        }
        let Ok(body) = r.bytes(len as usize) else {
            if valid_record_behind(buf, base, at, body_max) {
                return Err(DecodeError::Malformed { what: "record length", offset });
            }
            return Ok((out, torn));
        };
        let found = crc32(&[&offset.to_le_bytes(), &len.to_le_bytes(), body]);
        if found != crc {
            // Zeros from a sector inside its body to the end of the file: to the record's end, and
            // after it (a file written full of zeros ahead of its records, a prepared log segment).
            let end = r.position();
            let only_zeros_after = buf.get(end..).unwrap_or_default().iter().all(|b| *b == 0);
            if only_zeros_after
                && zero_from_a_sector_inside(buf.get(..end).unwrap_or_default(), base, at + RECORD_HEADER_BYTES)
            {
                return Ok((out, torn));
            }
            return Err(DecodeError::ChecksumMismatch { offset, expected: crc, found });
        }
        out.push((offset, body));
    }
    Ok((out, ScanEnd::Clean))
}

/// True when every byte of `buf` from some sector boundary (of the file, `base` being the file
/// offset of `buf[0]`) at or after `body_at` to the end is zero, and that boundary lies before
/// the end.
fn zero_from_a_sector_inside(buf: &[u8], base: u64, body_at: usize) -> bool {
    let last_nonzero = buf.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let from = last_nonzero.max(body_at) as u64 + base;
    let boundary = from.div_ceil(TEAR_SECTOR_BYTES) * TEAR_SECTOR_BYTES;
    boundary < base + buf.len() as u64
}

/// True when a record that passes its checksum starts anywhere in `buf` after `at`.
fn valid_record_behind(buf: &[u8], base: u64, at: usize, body_max: usize) -> bool {
    let mut spent = 0u64;
    for p in at + 1..buf.len() {
        let mut r = Reader::new(buf.get(p..).unwrap_or_default());
        let (Ok(len), Ok(crc)) = (r.u32(), r.u32()) else { return false };
        if len as usize > body_max {
            continue;
        }
        let Ok(body) = r.bytes(len as usize) else { continue };
        spent += u64::from(len) + RECORD_HEADER_BYTES as u64;
        if spent > TEAR_PROBE_BYTES_MAX {
            // Not proven a tear: call it damage.
            return true;
        }
        let offset = base + p as u64;
        if crc32(&[&offset.to_le_bytes(), &len.to_le_bytes(), body]) == crc {
            return true;
        }
    }
    false
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
        // A torn write cuts the last record short: only that record is discarded.
        let (recs, end) = scan_records(&full[..full.len() - 1], 0, 1024).expect("tail");
        assert_eq!(recs.len(), 1);
        assert_eq!(end, ScanEnd::Torn { offset: 11, discarded: 10 });
    }

    /// Story: a flipped byte inside the last WAL record was taken for a torn tail, and the
    /// acknowledged writes in it were dropped with only a warning. A complete last record that
    /// fails its checksum is a tear only when its unwritten sectors read as zeros.
    #[test]
    fn a_flipped_bit_in_the_last_complete_record_is_corruption() {
        let body = vec![7u8; 2000];
        let full = log(&[b"one", &body], 0);
        let n = full.len();
        let mut flipped = full.clone();
        flipped[n - 1] ^= 1;
        assert!(matches!(scan_records(&flipped, 0, 1 << 20), Err(DecodeError::ChecksumMismatch { offset: 11, .. })));
        let mut flipped_early = full.clone();
        flipped_early[30] ^= 0x40;
        assert!(scan_records(&flipped_early, 0, 1 << 20).is_err());
        // Its last sectors never reached the disk: zeros from a sector boundary on.
        let mut unwritten = full.clone();
        for b in &mut unwritten[1024..] {
            *b = 0;
        }
        let (recs, end) = scan_records(&unwritten, 0, 1 << 20).expect("a tear");
        assert_eq!(recs.len(), 1);
        assert_eq!(end, ScanEnd::Torn { offset: 11, discarded: (n - 11) as u64 });
        // Zeros that start inside the last sector only do not prove a tear.
        let mut short_zeros = full.clone();
        for b in &mut short_zeros[n - 10..] {
            *b = 0;
        }
        assert_eq!(n, 2019, "the zeros below start at 2009, and the next sector boundary (2048) is past the end");
        assert!(scan_records(&short_zeros, 0, 1 << 20).is_err());
        // In a file written full of zeros ahead of its records (a prepared log segment), zeros
        // follow the record: the same rules hold.
        let padded = |mut v: Vec<u8>| {
            v.extend_from_slice(&[0; 3000]);
            v
        };
        let unwritten_padded = padded(unwritten);
        let (recs, end) = scan_records(&unwritten_padded, 0, 1 << 20).expect("a tear, zeros after it");
        assert_eq!((recs.len(), end), (1, ScanEnd::Torn { offset: 11, discarded: (n + 3000 - 11) as u64 }));
        assert!(matches!(
            scan_records(&padded(flipped), 0, 1 << 20),
            Err(DecodeError::ChecksumMismatch { offset: 11, .. })
        ));
        assert!(scan_records(&padded(short_zeros), 0, 1 << 20).is_err());
        // Space allocated and never written after the last good record is a tear.
        let mut zero_tail = log(&[b"one"], 0);
        zero_tail.extend_from_slice(&[0; 100]);
        let (recs, end) = scan_records(&zero_tail, 0, 1024).expect("zeros");
        assert_eq!((recs.len(), end), (1, ScanEnd::Torn { offset: 11, discarded: 100 }));
    }

    /// A damaged length that makes a record run past the end of the file must not hide the
    /// valid records behind it.
    #[test]
    fn a_length_that_runs_past_the_end_with_records_behind_it_is_corruption() {
        let full = log(&[b"one", b"two-two", b"three"], 0);
        let mut damaged = full.clone();
        damaged[11] = 200; // the second record's length, now past the end
        assert!(matches!(
            scan_records(&damaged, 0, 1024),
            Err(DecodeError::Malformed { what: "record length", offset: 11 })
        ));
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
