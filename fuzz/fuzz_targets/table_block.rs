//! Fuzzes `table::decode_block`, the decoder of one SSTable data block (its CRC-32 lives in the
//! index entry that points to it, so the block decoder sees the bytes directly).
//!
//! Checked, besides "returns a typed error, never panics": a block that decodes has at least one
//! entry, non-empty keys of at most `KEY_BYTES_MAX` bytes in strictly increasing order, values of
//! at most `LOCATOR_BYTES_MAX` bytes, and re-encodes to exactly its bytes (canonical varints and
//! entries that tile the block leave one encoding per set of entries).
#![no_main]

use candybox_core::{
    limits::{KEY_BYTES_MAX, LOCATOR_BYTES_MAX},
    table,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = table::decode_block(data) else {
        return;
    };
    assert!(!entries.is_empty(), "a block with no entry decoded");
    for (key, value) in &entries {
        assert!(!key.is_empty() && key.len() <= KEY_BYTES_MAX, "key length {}", key.len());
        assert!(value.len() <= LOCATOR_BYTES_MAX, "value length {}", value.len());
    }
    assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "keys are not strictly increasing");
    assert_eq!(
        table::encode_block(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))),
        data,
        "a decoded block does not re-encode to its bytes"
    );
});
