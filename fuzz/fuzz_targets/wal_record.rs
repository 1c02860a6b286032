//! Fuzzes the WAL read path as recovery runs it: `wal::decode_header` on the first 32 bytes,
//! `record::scan_records` over the rest, `wal::decode_body` on every record body.
//!
//! The input is a whole WAL file. Random bytes almost never carry a valid record checksum, so the
//! input is also scanned after its header and record checksums are recomputed in place (walking
//! the length fields): that copy reaches the version check of the header and the body decoder on
//! every framed record.
//!
//! Checked, besides "returns a typed error, never panics":
//! - the records and the torn tail tile the scanned bytes exactly, in order;
//! - after the checksums are fixed, the scan ends clean or torn and returns every whole record,
//!   unless what follows the last whole record is a length beyond the cap, or a length running
//!   past the end with a valid record behind it (the two kinds of damage no tear explains);
//! - a body that decodes re-encodes to the same bytes (the body format has one encoding).
#![no_main]

use candybox_core::{
    codec::crc32,
    limits,
    record::{self, ScanEnd, RECORD_HEADER_BYTES},
    wal::{self, WAL_HEADER_BYTES},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wal::decode_header(data);
    let header = data.get(..WAL_HEADER_BYTES).unwrap_or_default();
    let body = data.get(WAL_HEADER_BYTES..).unwrap_or_default();
    let _ = wal::decode_header(header);
    scan(body, limits::WAL_RECORD_BYTES_MAX);
    // A small cap reaches the "length beyond the cap" branches with small inputs.
    scan(body, 64);

    let mut fixed = data.to_vec();
    let framed = fix_checksums(&mut fixed);
    if let Some(header) = fixed.get(..WAL_HEADER_BYTES) {
        let reserved_zero =
            header.get(10..16).is_some_and(|r| r.iter().all(|b| *b == 0)) && header.get(24..28) == Some(&[0u8; 4][..]);
        if header.get(..8) == Some(&wal::WAL_MAGIC[..])
            && header.get(8..10) == Some(&wal::WAL_VERSION.to_le_bytes()[..])
            && reserved_zero
        {
            assert!(wal::decode_header(header).is_ok(), "a header with a good magic, version and crc is refused");
        }
    }
    let body = fixed.get(WAL_HEADER_BYTES..).unwrap_or_default();
    match scan(body, limits::WAL_RECORD_BYTES_MAX) {
        Some((records, _)) => assert_eq!(records, framed, "a record with a fixed checksum was not returned"),
        None => {
            // With every checksum fixed, the only corruption left right after the last whole
            // record is a length beyond the cap (the writer never writes one; a tear never makes
            // one), or a length that runs past the end of the file while a valid record starts
            // behind it (a damaged length, not a tear).
            let after = framed.last().map_or(WAL_HEADER_BYTES, |(o, l)| *o as usize + RECORD_HEADER_BYTES + l);
            let len = fixed.get(after..after + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            let over_cap =
                len.is_some_and(|l| l > limits::WAL_RECORD_BYTES_MAX) && fixed.len() >= after + RECORD_HEADER_BYTES;
            assert!(over_cap || valid_record_behind(&fixed, after), "records with fixed checksums are corruption");
        }
    }
});

/// Scans `body` (the bytes after the header) and checks how records and tail tile it.
///
/// # Returns
/// The (offset, length) of every record, and how the scan ended; `None` on a decode error.
fn scan(body: &[u8], body_max: usize) -> Option<(Vec<(u64, usize)>, ScanEnd)> {
    let base = WAL_HEADER_BYTES as u64;
    let (records, end) = record::scan_records(body, base, body_max).ok()?;
    let mut next = base;
    let mut framed = Vec::with_capacity(records.len());
    for (offset, rec) in &records {
        assert_eq!(*offset, next, "records do not tile the log");
        assert!(rec.len() <= body_max, "a record is longer than the cap");
        next = offset + (RECORD_HEADER_BYTES + rec.len()) as u64;
        framed.push((*offset, rec.len()));
        if let Ok(ops) = wal::decode_body(rec) {
            assert_eq!(wal::encode_body(&ops), *rec, "a decoded body does not re-encode to its bytes");
        }
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
fn valid_record_behind(file: &[u8], at: usize) -> bool {
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
fn fix_checksums(file: &mut [u8]) -> Vec<(u64, usize)> {
    if file.len() >= WAL_HEADER_BYTES {
        let crc = crc32(&[&file[..WAL_HEADER_BYTES - 4]]);
        file[WAL_HEADER_BYTES - 4..WAL_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    }
    let mut framed = Vec::new();
    let mut at = WAL_HEADER_BYTES;
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
