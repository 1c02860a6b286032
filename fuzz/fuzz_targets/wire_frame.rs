//! Fuzzes what a node and a client do with bytes from the network: the frame header decoder
//! (`FrameHeader::decode`), the body checksum, and the flatbuffers verifier with the protocol's
//! explicit limits (`verify_request`, `verify_reply`, `verify_locator`), then a walk of every field
//! of whatever verified (the generated `Debug` visits each field and union member).
//!
//! The input is a byte stream of frames. It is read as the node reads it: a header, then (only if
//! the header is accepted) its body and payload. It is also read once more with the header and
//! body CRCs recomputed, so the fuzzer gets past the checksums into the verifier.
//!
//! Checked, besides "returns a typed error, never panics":
//! - an accepted header re-encodes to exactly its 32 bytes;
//! - an accepted header's body plus payload never exceed the cap it was decoded with;
//! - a data frame has a body only when it ends a version-3 stream (a `PutTrailer`, verified on
//!   its own); a request or reply frame always has one;
//! - a body the node's point-request reader (`read_point_request`) accepts, the verifier accepts,
//!   and both read the same Box name, key and range;
//! - a `Credit` frame (version 2) has exactly an 8-byte body and no payload, a `Cancel` frame
//!   neither, and neither exists in a version-1 frame.
#![no_main]

use candybox_wire::{
    frame::{
        credit_grant, verify_locator, verify_reply, verify_request, verify_trailer, FrameHeader, FrameKind,
        CREDIT_BODY_BYTES, FRAME_HEADER_BYTES, FRAME_VERSION_TRAILER,
    },
    point::{read_point_request, PointRequest},
    FRAME_MAGIC,
};
use libfuzzer_sys::fuzz_target;

/// A small cap, so that the fuzzer reaches the size checks with short inputs.
const CAP: u32 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    read_stream(data);
    read_stream(&fix_checksums(data));
});

fn read_stream(mut data: &[u8]) {
    // Bounded: every accepted frame consumes at least its header.
    while data.len() >= FRAME_HEADER_BYTES {
        let (head, rest) = data.split_at(FRAME_HEADER_BYTES);
        let head: &[u8; FRAME_HEADER_BYTES] = head.try_into().expect("split at the header size");
        let Ok(header) = FrameHeader::decode(head, CAP) else { return };
        assert_eq!(&header.encode(), head, "an accepted header does not re-encode to its bytes");
        assert!(header.frame_len() as u64 <= u64::from(CAP), "a header past the cap was accepted");
        match header.kind {
            FrameKind::Data => assert!(
                header.body_len == 0 || (header.version >= FRAME_VERSION_TRAILER && header.is_end()),
                "a data frame with a body was accepted outside a version-3 stream's end"
            ),
            FrameKind::Request | FrameKind::Reply => assert!(header.body_len > 0, "an empty body was accepted"),
            FrameKind::Credit => {
                assert!(header.version >= 2, "a credit frame in version 1 was accepted");
                assert_eq!(
                    (header.body_len as usize, header.payload_len),
                    (CREDIT_BODY_BYTES, 0),
                    "a misshapen credit"
                );
            }
            FrameKind::Cancel => {
                assert!(header.version >= 2, "a cancel frame in version 1 was accepted");
                assert_eq!((header.body_len, header.payload_len), (0, 0), "a cancel frame with bytes was accepted");
            }
        }
        if rest.len() < header.frame_len() {
            return; // A partial frame: the reader waits for more bytes.
        }
        let (body, rest) = rest.split_at(header.body_len as usize);
        let rest = &rest[header.payload_len as usize..];
        if header.check_body(body).is_ok() {
            walk_body(header.kind, body);
        }
        data = rest;
    }
}

fn walk_body(kind: FrameKind, body: &[u8]) {
    match kind {
        FrameKind::Request => {
            // The node's fast reader of gets and heads accepts nothing the verifier refuses, and
            // reads what the accessors read.
            if let Some(point) = read_point_request(body, CAP) {
                let request = verify_request(body, CAP).expect("a point request the verifier refuses was read");
                assert_eq!(PointRequest::of(request), Some(point), "the point reader read other values");
            }
            if let Ok(request) = verify_request(body, CAP) {
                std::hint::black_box(format!("{request:?}"));
                // The relayed locator of a zero-copy put is verified on its own, as the node does.
                if let Some(put) = request.body_as_zero_copy_put() {
                    if let Ok(locator) = verify_locator(put.locator().bytes(), CAP) {
                        std::hint::black_box(format!("{locator:?}"));
                    }
                }
            }
        }
        FrameKind::Reply => {
            if let Ok(reply) = verify_reply(body, CAP) {
                std::hint::black_box(format!("{reply:?}"));
            }
        }
        FrameKind::Credit => {
            std::hint::black_box(credit_grant(body));
        }
        FrameKind::Data => {
            if let Ok(trailer) = verify_trailer(body, CAP) {
                std::hint::black_box(format!("{trailer:?}"));
            }
        }
        FrameKind::Cancel => {}
    }
    // Whatever the frame said, the body bytes are also tried as a bare relayed locator.
    if let Ok(locator) = verify_locator(body, CAP) {
        std::hint::black_box(format!("{locator:?}"));
    }
}

/// The same stream with each frame's header and body CRC recomputed (lengths kept as given).
fn fix_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut at = 0usize;
    while out.len() >= at + FRAME_HEADER_BYTES {
        if out[at..at + 4] != FRAME_MAGIC {
            break;
        }
        let body_len = u32::from_le_bytes(out[at + 16..at + 20].try_into().expect("4 bytes")) as usize;
        let payload_len = u32::from_le_bytes(out[at + 20..at + 24].try_into().expect("4 bytes")) as usize;
        let body_at = at + FRAME_HEADER_BYTES;
        let end = body_at.saturating_add(body_len).saturating_add(payload_len);
        let body_end = body_at.saturating_add(body_len).min(out.len());
        let body_crc = crc32fast_hash(&out[body_at..body_end]);
        out[at + 24..at + 28].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32fast_hash(&out[at..at + 28]);
        out[at + 28..at + 32].copy_from_slice(&header_crc.to_le_bytes());
        if end > out.len() {
            break;
        }
        at = end;
    }
    out
}

fn crc32fast_hash(bytes: &[u8]) -> u32 {
    candybox_core::codec::crc32(&[bytes])
}
