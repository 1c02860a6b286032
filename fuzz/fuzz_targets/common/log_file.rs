//! The checks shared by the fuzz targets of log files (a fixed header whose last 4 bytes are its
//! CRC-32, then records framed by `record`): the WAL of format v1 and the shard commit log.
//!
//! [`check_log_file`] runs the read path as recovery does, on the input as it is and on a copy
//! whose header and record checksums are recomputed in place (walking the length fields), so the
//! body decoder sees every framed record. Checked, besides "returns a typed error, never panics":
//! - the records and the torn tail tile the scanned bytes exactly, in order;
//! - after the checksums are fixed, the scan ends clean or torn and returns every whole record,
//!   unless what follows the last whole record is a length beyond the cap, or a length running
//!   past the end with a valid record behind it (the two kinds of damage no tear explains);
//! - a header that should decode (the caller says when) does, once its CRC is fixed;
//! - whatever `check_body` asserts of every record body (the targets: a decoded body re-encodes
//!   to the same bytes).

use candybox_core::{
    codec::crc32,
    limits,
    record::{self, ScanEnd, RECORD_HEADER_BYTES},
};

/// One log file format as the checks see it.
pub struct LogFile<'a> {
    /// Bytes of the fixed header (its last 4 bytes are the CRC-32 of the rest).
    pub header_bytes: usize,
    /// Decodes a header (the result is only required not to panic).
    pub decode_header: &'a dyn Fn(&[u8]) -> bool,
    /// True when a header with a recomputed CRC must decode (good magic, version, reserved bytes).
    pub header_should_decode: &'a dyn Fn(&[u8]) -> bool,
    /// Decodes a record body and asserts its properties.
    pub check_body: &'a dyn Fn(&[u8]),
}

/// Runs every check on the whole file `data`.
pub fn check_log_file(data: &[u8], f: &LogFile<'_>) {
    let _ = (f.decode_header)(data);
    let header = data.get(..f.header_bytes).unwrap_or_default();
    let body = data.get(f.header_bytes..).unwrap_or_default();
    let _ = (f.decode_header)(header);
    scan(body, f.header_bytes, limits::WAL_RECORD_BYTES_MAX, f.check_body);
    // A small cap reaches the "length beyond the cap" branches with small inputs.
    scan(body, f.header_bytes, 64, f.check_body);

    let mut fixed = data.to_vec();
    let framed = fix_checksums(&mut fixed, f.header_bytes);
    if let Some(header) = fixed.get(..f.header_bytes) {
        if (f.header_should_decode)(header) {
            assert!((f.decode_header)(header), "a header with a good magic, version and crc is refused");
        }
    }
    let body = fixed.get(f.header_bytes..).unwrap_or_default();
    match scan(body, f.header_bytes, limits::WAL_RECORD_BYTES_MAX, f.check_body) {
        Some((records, _)) => assert_eq!(records, framed, "a record with a fixed checksum was not returned"),
        None => {
            // With every checksum fixed, the only corruption left right after the last whole
            // record is a length beyond the cap (the writer never writes one; a tear never makes
            // one), or a length that runs past the end of the file while a valid record starts
            // behind it (a damaged length, not a tear).
            let after = framed.last().map_or(f.header_bytes, |(o, l)| *o as usize + RECORD_HEADER_BYTES + l);
            let len = fixed.get(after..after + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            let over_cap =
                len.is_some_and(|l| l > limits::WAL_RECORD_BYTES_MAX) && fixed.len() >= after + RECORD_HEADER_BYTES;
            assert!(over_cap || valid_record_behind(&fixed, after), "records with fixed checksums are corruption");
        }
    }
}

/// Scans `body` (the bytes after the header) and checks how records and tail tile it.
///
/// # Returns
/// The (offset, length) of every record, and how the scan ended; `None` on a decode error.
pub fn scan(body: &[u8], header_bytes: usize, body_max: usize, check_body: &dyn Fn(&[u8])) -> Option<(Vec<(u64, usize)>, ScanEnd)> {
    let base = header_bytes as u64;
    let (records, end) = record::scan_records(body, base, body_max).ok()?;
    let mut next = base;
    let mut framed = Vec::with_capacity(records.len());
    for (offset, rec) in &records {
        assert_eq!(*offset, next, "records do not tile the log");
        assert!(rec.len() <= body_max, "a record is longer than the cap");
        next = offset + (RECORD_HEADER_BYTES + rec.len()) as u64;
        framed.push((*offset, rec.len()));
        check_body(rec);
    }
    let file_end = base + body.len() as u64;
    match end {
        ScanEnd::Clean => assert_eq!(next, file_end, "a clean scan left bytes over"),
        ScanEnd::Torn { offset, discarded } => {
            assert_eq!(offset, next, "the tear is not where the records end");
            assert_eq!(offset + discarded, file_end, "the tear does not run to the end");
            assert!(discarded > 0, "an empty tear");
        }
    }
    Some((framed, end))
}

/// True when a record that passes its checksum (seeded with its own offset) starts anywhere in
/// `file` after `at`.
pub fn valid_record_behind(file: &[u8], at: usize) -> bool {
    (at + 1..file.len()).any(|p| {
        let Some(len) = file.get(p..p + 4) else { return false };
        let len_bytes: [u8; 4] = len.try_into().expect("four bytes");
        let len = u32::from_le_bytes(len_bytes) as usize;
        let (Some(crc), Some(body)) = (file.get(p + 4..p + 8), file.get(p + RECORD_HEADER_BYTES..p + RECORD_HEADER_BYTES + len))
        else {
            return false;
        };
        len <= limits::WAL_RECORD_BYTES_MAX
            && crc32(&[&(p as u64).to_le_bytes(), &len_bytes, body]).to_le_bytes() == crc[..]
    })
}

/// Recomputes the header checksum and, walking the length fields, the checksum of every whole
/// record after the header.
///
/// # Returns
/// The (offset, length) of every whole record.
pub fn fix_checksums(file: &mut [u8], header_bytes: usize) -> Vec<(u64, usize)> {
    if file.len() >= header_bytes {
        let crc = crc32(&[&file[..header_bytes - 4]]);
        file[header_bytes - 4..header_bytes].copy_from_slice(&crc.to_le_bytes());
    }
    let mut framed = Vec::new();
    let mut at = header_bytes;
    while let Some(len) = file.get(at..at + 4) {
        let len_bytes: [u8; 4] = len.try_into().expect("four bytes");
        let len = u32::from_le_bytes(len_bytes) as usize;
        let Some(end) = (at + RECORD_HEADER_BYTES).checked_add(len).filter(|&end| end <= file.len()) else {
            break;
        };
        let offset = at as u64;
        let crc = crc32(&[&offset.to_le_bytes(), &len_bytes, &file[at + RECORD_HEADER_BYTES..end]]);
        file[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        framed.push((offset, len));
        at = end;
    }
    framed
}
