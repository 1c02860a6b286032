//! Fuzzes the manifest decoders: `manifest::decode_edit`, `manifest::decode_header` and
//! `manifest::decode_current`, and replays every edit that decodes into a `ManifestState`.
//!
//! The input is one edit record body (edits carry no checksum of their own: the record framing
//! does, and `wal_record` fuzzes that). The header and CURRENT decoders get the same bytes, and a
//! copy with their checksum recomputed so the fuzzer reaches the checks behind it.
//!
//! Checked, besides "returns a typed error, never panics":
//! - an edit that decodes re-encodes to bytes that decode to the same changes (the encoding of
//!   varints is not unique, so bytes may differ);
//! - applying its changes never panics; a state rebuilt from `snapshot()` equals the state, and
//!   the snapshot edit round-trips too.
#![no_main]

use candybox_core::{
    codec::crc32,
    limits,
    manifest::{self, ManifestState, CURRENT_BYTES, MANIFEST_HEADER_BYTES},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = manifest::decode_header(data);
    let _ = manifest::decode_current(data);
    let _ = manifest::decode_header(&with_crc(data, MANIFEST_HEADER_BYTES));
    let _ = manifest::decode_current(&with_crc(data, CURRENT_BYTES));

    let Ok(changes) = manifest::decode_edit(data) else {
        return;
    };
    let encoded = manifest::encode_edit(&changes);
    assert_eq!(manifest::decode_edit(&encoded).as_ref(), Ok(&changes), "a decoded edit does not round-trip");

    let mut state = ManifestState::default();
    for change in &changes {
        // A change that contradicts the state is an error, never a panic; replay stops at it.
        if state.apply(change).is_err() {
            return;
        }
    }
    let snapshot = state.snapshot();
    let mut rebuilt = ManifestState::default();
    for change in &snapshot {
        rebuilt.apply(change).expect("a snapshot applies to an empty state");
    }
    assert_eq!(rebuilt, state, "the snapshot does not rebuild the state");
    let encoded = manifest::encode_edit(&snapshot);
    if encoded.len() <= limits::MANIFEST_EDIT_BYTES_MAX {
        assert_eq!(manifest::decode_edit(&encoded), Ok(snapshot), "the snapshot edit does not round-trip");
    }
});

/// The first `len` bytes of `data` (zero-padded) with the CRC-32 of all but their last 4 bytes
/// written into those last 4 bytes, then the rest of `data`: the layout of both the manifest
/// header and CURRENT.
fn with_crc(data: &[u8], len: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    if out.len() < len {
        out.resize(len, 0);
    }
    let crc = crc32(&[&out[..len - 4]]);
    out[len - 4..len].copy_from_slice(&crc.to_le_bytes());
    out
}
