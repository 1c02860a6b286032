//! The shard commit log's segments, read as recovery reads them (header, framed records, record
//! bodies), under the checks every log file gets (`common/log_file.rs`); the input is a whole
//! segment file. Its own checks: a header that decodes re-encodes to its bytes and keeps its
//! chain rules (`base <= first <= number`, `previous < number`); a body that decodes re-encodes
//! to the same bytes, has at least one section, and no batch sequence 0.
#![no_main]

#[path = "common/log_file.rs"]
mod log_file;

use candybox_core::log::format::{self, SEGMENT_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;
use log_file::{check_log_file, LogFile};

fuzz_target!(|data: &[u8]| {
    check_log_file(
        data,
        &LogFile {
            header_bytes: SEGMENT_HEADER_BYTES,
            decode_header: &|h| match format::decode_header(h) {
                Ok(header) => {
                    assert!(header.base <= header.first && header.first <= header.number, "{header:?}");
                    assert!(header.previous < header.number, "{header:?}");
                    if let Some(bytes) = h.get(..SEGMENT_HEADER_BYTES) {
                        assert_eq!(format::encode_header(&header), bytes, "a decoded header does not re-encode");
                    }
                    true
                }
                Err(_) => false,
            },
            header_should_decode: &|h| {
                let version = h.get(8..10).map(|b| u16::from_le_bytes(b.try_into().expect("two bytes")));
                let n = |at: usize| h.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("eight bytes")));
                let previous_end = h.get(48..52).map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")));
                let chain = match (n(16), n(24), n(32), n(40)) {
                    (Some(number), Some(base), Some(first), Some(previous)) => {
                        base <= first && first <= number && previous < number && (previous == 0 || previous >= first)
                    }
                    _ => false,
                };
                // v1: bytes 48..52 reserved (zero); v2: the previous segment's end, 0 exactly when
                // there is no previous segment, else past a header.
                let tail_ok = match (version, previous_end, n(40)) {
                    (Some(1), Some(end), _) => end == 0,
                    (Some(2), Some(end), Some(previous)) => {
                        (previous == 0) == (end == 0) && (end == 0 || end as usize >= format::SEGMENT_HEADER_BYTES)
                    }
                    _ => false,
                };
                h.get(..8) == Some(&format::LOG_MAGIC[..])
                    && h.get(12..16) == Some(&[0u8; 4][..])
                    && tail_ok
                    && chain
            },
            check_body: &|rec| {
                if let Ok(sections) = format::decode_body(rec) {
                    assert!(!sections.is_empty(), "a record without a section");
                    assert!(sections.iter().all(|s| s.seq > 0), "a batch sequence 0");
                    assert_eq!(format::encode_body(&sections), *rec, "a decoded body does not re-encode to its bytes");
                }
            },
        },
    );
});
