//! Fuzzes the WAL (format v1) read path as recovery runs it: `wal::decode_header` on the first
//! 32 bytes, `record::scan_records` over the rest, `wal::decode_body` on every record body, with
//! the checks of `common/log_file.rs`. The input is a whole WAL file; a body that decodes must
//! re-encode to the same bytes (the body format has one encoding).
#![no_main]

#[path = "common/log_file.rs"]
mod log_file;

use candybox_core::wal::{self, WAL_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;
use log_file::{check_log_file, LogFile};

fuzz_target!(|data: &[u8]| {
    check_log_file(
        data,
        &LogFile {
            header_bytes: WAL_HEADER_BYTES,
            decode_header: &|h| wal::decode_header(h).is_ok(),
            header_should_decode: &|h| {
                let reserved_zero =
                    h.get(10..16).is_some_and(|r| r.iter().all(|b| *b == 0)) && h.get(24..28) == Some(&[0u8; 4][..]);
                h.get(..8) == Some(&wal::WAL_MAGIC[..]) && h.get(8..10) == Some(&wal::WAL_VERSION.to_le_bytes()[..]) && reserved_zero
            },
            check_body: &|rec| {
                if let Ok(ops) = wal::decode_body(rec) {
                    assert_eq!(wal::encode_body(&ops), *rec, "a decoded body does not re-encode to its bytes");
                }
            },
        },
    );
});
