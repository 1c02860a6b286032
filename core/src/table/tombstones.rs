//! The range-tombstone block: the table's deletions of key ranges.
//!
//! ```text
//! | count: u32 | tombstone 0 | ... | tombstone count-1 |
//! tombstone = | start_len: u16 | start | end_len: u16 | end | hlc: 14 bytes |
//! ```
//!
//! Invariants (asserted by the writer, checked by [`decode`]):
//! - `start` and `end` are at most `KEY_BYTES_MAX` bytes; an empty `end` means "to the end of the
//!   key space"; otherwise `start < end` (an empty range deletes nothing and is a caller bug).
//! - Tombstones are sorted by (start, end, hlc) in unsigned byte order: readers can merge them
//!   by start, and equal inputs give byte-identical files.

use std::cmp::Ordering;

use crate::{
    codec::{Put, Reader},
    error::DecodeError,
    hlc::Hlc,
    limits::KEY_BYTES_MAX,
    types::RangeTombstone,
};

use super::malformed;

/// Fewest bytes a tombstone takes (empty start and end); bounds the count before allocating.
const TOMBSTONE_BYTES_MIN: usize = 2 * size_of::<u16>() + Hlc::ENCODED_BYTES;
/// Bytes of the tombstone count at the start of the block.
pub(crate) const TOMBSTONE_COUNT_BYTES: usize = size_of::<u32>();

// Starts and ends are written with u16 lengths.
const _: () = assert!(KEY_BYTES_MAX <= u16::MAX as usize);

/// The order tombstones are stored in.
pub(crate) fn canonical_order(a: &RangeTombstone, b: &RangeTombstone) -> Ordering {
    (&a.start, &a.end, a.hlc).cmp(&(&b.start, &b.end, b.hlc))
}

/// Checks one tombstone's invariants.
pub(crate) fn is_valid(rt: &RangeTombstone) -> bool {
    rt.start.len() <= KEY_BYTES_MAX && rt.end.len() <= KEY_BYTES_MAX && (rt.end.is_empty() || rt.start < rt.end)
}

/// Bytes one tombstone takes in the block.
pub(crate) fn encoded_bytes(rt: &RangeTombstone) -> usize {
    TOMBSTONE_BYTES_MIN + rt.start.len() + rt.end.len()
}

/// Encodes tombstones already in [`canonical_order`].
pub(crate) fn encode(tombstones: &[RangeTombstone]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TOMBSTONE_COUNT_BYTES + tombstones.iter().map(encoded_bytes).sum::<usize>());
    assert!(u32::try_from(tombstones.len()).is_ok(), "more range tombstones than a u32 counts");
    out.put_u32(tombstones.len() as u32);
    for rt in tombstones {
        assert!(is_valid(rt), "invalid range tombstone");
        out.put_bytes16(&rt.start);
        out.put_bytes16(&rt.end);
        rt.hlc.encode(&mut out);
    }
    debug_assert!(tombstones.is_sorted_by(|a, b| canonical_order(a, b).is_le()), "tombstones not sorted");
    out
}

/// Decodes a range-tombstone block whose CRC-32 the caller has verified. Offsets in errors are
/// relative to the block.
pub(crate) fn decode(block: &[u8]) -> Result<Vec<RangeTombstone>, DecodeError> {
    let mut r = Reader::new(block);
    let count = r.u32()? as usize;
    if count > r.remaining() / TOMBSTONE_BYTES_MIN {
        return Err(malformed("range tombstone count", 0));
    }
    let mut out: Vec<RangeTombstone> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.position();
        let start = r.bytes16()?.to_vec();
        let end = r.bytes16()?.to_vec();
        let hlc = Hlc::decode(&mut r)?;
        let rt = RangeTombstone { start, end, hlc };
        if !is_valid(&rt) {
            return Err(malformed("range tombstone bounds", at));
        }
        if out.last().is_some_and(|previous| canonical_order(previous, &rt).is_gt()) {
            return Err(malformed("range tombstone order", at));
        }
        out.push(rt);
    }
    if r.remaining() != 0 {
        return Err(malformed("range tombstone trailing bytes", r.position()));
    }
    Ok(out)
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests index buffers they just built; a panic fails the test")]
mod tests {
    use rand::{rngs::SmallRng, SeedableRng};

    use super::*;

    fn rt(start: &[u8], end: &[u8], physical_ms: u64) -> RangeTombstone {
        RangeTombstone { start: start.to_vec(), end: end.to_vec(), hlc: Hlc { physical_ms, logical: 1, node: 2 } }
    }

    #[test]
    fn round_trips_and_checks() {
        let rts = vec![rt(b"", b"", 1), rt(b"a", b"c", 5), rt(b"a", b"c", 6), rt(b"b", b"", 2)];
        assert_eq!(decode(&encode(&rts)), Ok(rts.clone()));
        let out_of_order = encode(&[rts[1].clone()]);
        let mut two = Vec::new();
        two.put_u32(2);
        two.extend_from_slice(out_of_order.get(4..).unwrap_or_default());
        two.extend_from_slice(encode(&[rts[0].clone()]).get(4..).unwrap_or_default());
        assert!(matches!(decode(&two), Err(DecodeError::Malformed { what: "range tombstone order", .. })));
        let mut empty_range = Vec::new();
        empty_range.put_u32(1);
        empty_range.put_bytes16(b"b");
        empty_range.put_bytes16(b"a");
        Hlc::ZERO.encode(&mut empty_range);
        assert!(matches!(decode(&empty_range), Err(DecodeError::Malformed { what: "range tombstone bounds", .. })));
    }

    #[test]
    fn mutated_bytes_never_panic() {
        let mut rng = SmallRng::seed_from_u64(0x7077);
        let good = encode(&[rt(b"a", b"c", 5), rt(b"b", b"", 2)]);
        for _ in 0..10_000 {
            let b = crate::testing::mutate(&mut rng, &good, 4);
            let _ = decode(&b);
        }
    }
}
