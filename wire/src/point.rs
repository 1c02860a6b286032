//! A fast reader of the two requests a node serves most, `Get` and `Head` (point requests): it
//! checks a body the way the flatbuffers verifier does and reads the fields where they lie, in
//! one pass with no error values built on the way. The general verifier costs about 8 % of a
//! pipelined small get (its generic walk builds a `Result` with a trace for every field).
//!
//! Invariants:
//! - It accepts a body only if [`crate::frame::verify_request`] accepts it with the same cap,
//!   and then reads the same values the generated accessors would. Every check of the verifier
//!   on the path of these two tables is made here (alignment relative to the buffer start,
//!   bounds, signed vtable offsets, even vtable lengths, required fields, UTF-8 and the
//!   terminating zero of the Box name); where it would accept and this reader is unsure, it
//!   declines (`None`) and the caller runs the general verifier, which then decides. A test
//!   and the wire fuzz target hold it to this against the verifier on mutated bodies.
//! - The verifier's size limits (depth, table count, apparent size) are met by construction: two
//!   tables, and bodies of at most [`POINT_BODY_BYTES_MAX`] whose apparent size (at most
//!   `4 * len + 69` bytes: every range the verifier counts lies in the body) is below the cap.
//! - Safe code only: every read is a checked slice.

use crate::generated::candybox::wire as fb;

/// Bodies larger than this go to the general verifier (a point request is about 40 bytes plus
/// its Box name and key: at most ~1.1 KiB).
pub const POINT_BODY_BYTES_MAX: usize = 4096;

/// Bytes the verifier may count for a body of `len` bytes on this path, plus a margin.
const fn apparent_bytes_max(len: usize) -> usize {
    4 * len + 128
}

/// Which point request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    /// `Get`: the Candy's bytes (or a range of them) and its metadata.
    Get,
    /// `Head`: the metadata only.
    Head,
}

/// A `Get` or `Head` request read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointRequest<'a> {
    /// Get or Head.
    pub kind: PointKind,
    /// The Box named (checked UTF-8, as the verifier checks it).
    pub box_name: &'a str,
    /// The key.
    pub key: &'a [u8],
    /// A get's range kind (`Whole` for a head).
    pub range_kind: fb::RangeKind,
    /// A get's `first` (0 for a head).
    pub first: u64,
    /// A get's `last` (0 for a head).
    pub last: u64,
}

impl<'a> PointRequest<'a> {
    /// The point request a verified `Request` holds, read through the generated accessors (the
    /// general path, and the reference [`read_point_request`] is held to); `None` for another
    /// request.
    pub fn of(req: fb::Request<'a>) -> Option<PointRequest<'a>> {
        if let Some(g) = req.body_as_get() {
            if g.version_id().is_some() {
                return None;
            }
            return Some(PointRequest {
                kind: PointKind::Get,
                box_name: g.box_name(),
                key: g.key().bytes(),
                range_kind: g.range_kind(),
                first: g.first(),
                last: g.last(),
            });
        }
        let h = req.body_as_head()?;
        if h.version_id().is_some() {
            return None;
        }
        Some(PointRequest {
            kind: PointKind::Head,
            box_name: h.box_name(),
            key: h.key().bytes(),
            range_kind: fb::RangeKind::Whole,
            first: 0,
            last: 0,
        })
    }
}

/// Reads `body` as a `Get` or `Head` request, checked as the verifier checks it; `None` when it
/// is another request, larger than [`POINT_BODY_BYTES_MAX`], or anything the verifier might
/// refuse (the caller then verifies it in full).
pub fn read_point_request(body: &[u8], body_bytes_max: u32) -> Option<PointRequest<'_>> {
    if body.len() > POINT_BODY_BYTES_MAX || apparent_bytes_max(body.len()) > body_bytes_max as usize {
        return None;
    }
    let b = Body(body);
    // The root: a forward offset at 0 to the `Request` table.
    let request = Table::at(b, b.u32(0)? as usize)?;
    // The union: the verifier looks up both fields; both present or neither (then it is no point
    // request); the type a u8, the value a forward offset to the table.
    let type_at = request.field(b, fb::Request::VT_BODY_TYPE)?;
    let value_at = request.field(b, fb::Request::VT_BODY)?;
    let (type_at, value_at) = (type_at?, value_at?);
    let kind = match fb::RequestBody(b.u8(type_at)?) {
        fb::RequestBody::Get => PointKind::Get,
        fb::RequestBody::Head => PointKind::Head,
        _ => return None,
    };
    let table = Table::at(b, value_at.saturating_add(b.u32(value_at)? as usize))?;
    let (name_field, key_field) = match kind {
        PointKind::Get => (fb::Get::VT_BOX_NAME, fb::Get::VT_KEY),
        PointKind::Head => (fb::Head::VT_BOX_NAME, fb::Head::VT_KEY),
    };
    // Required fields: when one is missing the verifier refuses; it says why.
    let box_name = b.string(table.field(b, name_field)??)?;
    let key = b.bytes(table.field(b, key_field)??)?;
    // A read of a version by id is no point request: the general path serves it.
    let version_field = match kind {
        PointKind::Get => fb::Get::VT_VERSION_ID,
        PointKind::Head => fb::Head::VT_VERSION_ID,
    };
    if table.field(b, version_field)?.is_some() {
        return None;
    }
    let mut q = PointRequest { kind, box_name, key, range_kind: fb::RangeKind::Whole, first: 0, last: 0 };
    if kind == PointKind::Get {
        if let Some(at) = table.field(b, fb::Get::VT_RANGE_KIND)? {
            q.range_kind = fb::RangeKind(b.u8(at)?);
        }
        if let Some(at) = table.field(b, fb::Get::VT_FIRST)? {
            q.first = b.u64(at)?;
        }
        if let Some(at) = table.field(b, fb::Get::VT_LAST)? {
            q.last = b.u64(at)?;
        }
    }
    Some(q)
}

/// The body, read with the verifier's checks: each scalar aligned to its size relative to the
/// start of the body, and wholly inside it.
#[derive(Clone, Copy)]
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn array<const N: usize>(self, at: usize) -> Option<[u8; N]> {
        if !at.is_multiple_of(N) {
            return None;
        }
        self.0.get(at..at.checked_add(N)?)?.try_into().ok()
    }

    fn u8(self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }

    fn u16(self, at: usize) -> Option<u16> {
        self.array::<2>(at).map(u16::from_le_bytes)
    }

    fn u32(self, at: usize) -> Option<u32> {
        self.array::<4>(at).map(u32::from_le_bytes)
    }

    fn u64(self, at: usize) -> Option<u64> {
        self.array::<8>(at).map(u64::from_le_bytes)
    }

    /// Where the bytes of the vector a forward offset at `at` points to lie.
    fn vector(self, at: usize) -> Option<std::ops::Range<usize>> {
        let vector = at.saturating_add(self.u32(at)? as usize);
        let len = self.u32(vector)? as usize;
        let start = vector.saturating_add(4);
        let end = start.checked_add(len)?;
        (end <= self.0.len()).then_some(start..end)
    }

    /// The vector of bytes a forward offset at `at` points to.
    fn bytes(self, at: usize) -> Option<&'a [u8]> {
        self.0.get(self.vector(at)?)
    }

    /// The string a forward offset at `at` points to: UTF-8, with its terminating zero (the
    /// verifier requires it).
    fn string(self, at: usize) -> Option<&'a str> {
        let range = self.vector(at)?;
        if self.u8(range.end)? != 0 {
            return None;
        }
        std::str::from_utf8(self.0.get(range)?).ok()
    }
}

/// A table whose vtable was checked.
struct Table {
    at: usize,
    vtable: usize,
    vtable_len: usize,
}

impl Table {
    /// The table at `at`: its signed offset to the vtable, the vtable's length (even, the vtable
    /// inside the body).
    fn at(b: Body<'_>, at: usize) -> Option<Table> {
        let soffset = i32::from_le_bytes(b.array::<4>(at)?);
        let vtable = if soffset > 0 {
            at.checked_sub(soffset.unsigned_abs() as usize)?
        } else {
            at.checked_add(soffset.unsigned_abs() as usize)?
        };
        let vtable_len = b.u16(vtable)? as usize;
        let end = vtable.checked_add(vtable_len)?;
        if !end.is_multiple_of(2) || end > b.0.len() {
            return None;
        }
        Some(Table { at, vtable, vtable_len })
    }

    /// Where field `field` lies, `Some(None)` when absent; `None` when its vtable entry cannot be
    /// read.
    fn field(&self, b: Body<'_>, field: flatbuffers::VOffsetT) -> Option<Option<usize>> {
        let field = usize::from(field);
        if field >= self.vtable_len {
            return Some(None);
        }
        let offset = b.u16(self.vtable.checked_add(field)?)?;
        Some((offset > 0).then(|| self.at.saturating_add(usize::from(offset))))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::{
        client::{request, ByteRange},
        frame::verify_request,
    };

    const CAP: u32 = 1 << 20;

    /// What the generated accessors read from a verified body, as a point request.
    fn accessors(body: &[u8], cap: u32) -> Option<PointRequest<'_>> {
        PointRequest::of(verify_request(body, cap).ok()?)
    }

    fn samples() -> Vec<Vec<u8>> {
        let long_key: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        vec![
            request::get("photos", b"k/0000000001", ByteRange::Whole).to_vec(),
            request::get("b-1", &[0, 255, 1], ByteRange::FromTo { first: 3, last: 1 << 40 }).to_vec(),
            request::get("abc", b"x", ByteRange::From { first: 9 }).to_vec(),
            request::get("abc", b"", ByteRange::Suffix { length: 5 }).to_vec(),
            request::get(&"n".repeat(63), &long_key, ByteRange::Whole).to_vec(),
            request::head("photos", b"k/0000000001").to_vec(),
            request::head("h", &long_key).to_vec(),
            request::delete("photos", b"k", None).to_vec(),
        ]
    }

    #[test]
    fn point_requests_read_as_the_accessors_read_them() {
        for (i, body) in samples().iter().enumerate() {
            let full = accessors(body, CAP);
            let fast = read_point_request(body, CAP);
            if i == 7 {
                // A delete is no point request.
                assert!(full.is_none() && fast.is_none());
                continue;
            }
            assert!(fast.is_some(), "sample {i} declined");
            assert_eq!(fast, full, "sample {i}");
        }
    }

    #[test]
    fn declines_what_it_does_not_serve() {
        let body = request::get("photos", b"k", ByteRange::Whole);
        // A cap the verifier's apparent size could reach.
        assert!(read_point_request(&body, 64).is_none());
        // Too large a body.
        let key = vec![1u8; POINT_BODY_BYTES_MAX];
        assert!(read_point_request(&request::get("photos", &key, ByteRange::Whole), CAP).is_none());
        assert!(read_point_request(&[], CAP).is_none());
    }

    /// Mutated bodies (bytes flipped, set to edge values, cut, extended): whatever the reader
    /// accepts, the verifier accepts and the accessors read alike.
    #[test]
    fn accepts_nothing_the_verifier_refuses() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let samples = samples();
        let (mut accepted, mut refused) = (0u32, 0u32);
        for round in 0..60_000u32 {
            let mut body = samples[round as usize % samples.len()].clone();
            for _ in 0..=(next() % 3) {
                let at = (next() as usize) % body.len().max(1);
                match next() % 6 {
                    0 => body[at] ^= 1 << (next() % 8),
                    1 => body[at] = 0,
                    2 => body[at] = 0xFF,
                    3 => body[at] = body[at].wrapping_add(4),
                    4 => body.truncate(at),
                    _ => body.extend_from_slice(&[0; 8]),
                }
                if body.is_empty() {
                    break;
                }
            }
            match read_point_request(&body, CAP) {
                Some(fast) => {
                    accepted += 1;
                    assert_eq!(Some(fast), accessors(&body, CAP), "round {round}: {body:?}");
                }
                None => refused += 1,
            }
        }
        // Both outcomes were exercised.
        assert!(accepted > 1000 && refused > 1000, "accepted {accepted}, refused {refused}");
    }
}
