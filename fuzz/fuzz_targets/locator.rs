//! Fuzzes the CandyLocator decoders (`CandyLocator::decode`, `CandyLocator::peek`) and the Syrup
//! header decoder (`syrup::SyrupHeader::decode`).
//!
//! A locator has no checksum of its own (the WAL record or table block holding it has one), so
//! the fuzzer reaches every check directly. The Syrup header's CRC-32 is recomputed in a copy so
//! the version check behind it is reached too.
//!
//! Checked, besides "returns a typed error, never panics":
//! - a locator that decodes satisfies `decode(encode(x)) == x`, and `peek` agrees with it on the
//!   kind and stamp; its Parts add up to its size;
//! - a Syrup header that decodes satisfies `decode(encode(h)) == h`.
#![no_main]

use candybox_core::{
    codec::crc32,
    locator::{CandyBody, CandyLocator},
    syrup::{SyrupHeader, SYRUP_HEADER_BYTES},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peeked = CandyLocator::peek(data);
    if let Ok(locator) = CandyLocator::decode(data) {
        assert_eq!(peeked, Ok((locator.kind, locator.hlc)), "peek disagrees with decode");
        let encoded = locator.encode();
        assert_eq!(CandyLocator::decode(&encoded).as_ref(), Ok(&locator), "a decoded locator does not round-trip");
        if let CandyBody::Parts(parts) = &locator.body {
            assert_eq!(parts.iter().map(|p| u128::from(p.length)).sum::<u128>(), u128::from(locator.size));
        }
    }

    syrup_header(data);
    let header_bytes = SYRUP_HEADER_BYTES as usize;
    let mut fixed = data.to_vec();
    if fixed.len() >= header_bytes {
        let crc = crc32(&[&fixed[..header_bytes - 4]]);
        fixed[header_bytes - 4..header_bytes].copy_from_slice(&crc.to_le_bytes());
        syrup_header(&fixed);
    }
});

fn syrup_header(data: &[u8]) {
    if let Ok(header) = SyrupHeader::decode(data) {
        assert_eq!(SyrupHeader::decode(&header.encode()), Ok(header), "a decoded syrup header does not round-trip");
    }
}
