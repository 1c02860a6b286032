//! The CandyLocator: the LSM value. It says where a Candy's bytes live (its Parts and their
//! SegmentRefs, or the bytes themselves when small), plus its HLC, kind and metadata.
//!
//! Invariants (checked by [`CandyLocator::decode`] on every read from disk):
//! - the sum of the Parts' lengths equals `size`; the sum of a Part's segment lengths equals the
//!   Part's length; an inline body's length equals `size`;
//! - every chunk size lies in `CHUNK_BYTES_MIN..=CHUNK_BYTES_MAX`;
//! - strings are UTF-8, the metadata fits `USER_META_BYTES_MAX`, and the encoding fits
//!   `LOCATOR_BYTES_MAX` with no trailing bytes.

use crate::{
    codec::{Put, Reader},
    error::DecodeError,
    hlc::Hlc,
    limits,
    types::SyrupId,
};

/// Locator format version 1: every locator without a version id (see [`LOCATOR_VERSION_IDS`]).
pub const LOCATOR_VERSION: u8 = 1;
/// Locator format version 2: a version id after the stamp (`version_id`), and the kind
/// `DeleteMarker` (versioned Boxes, docs/versioning.md). Written only for locators that need it,
/// so an unversioned Box's files stay version 1.
pub const LOCATOR_VERSION_IDS: u8 = 2;

/// A run of whole chunks inside one Syrup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRef {
    /// The Syrup holding the bytes.
    pub syrup: SyrupId,
    /// File offset of the segment's first chunk.
    pub offset: u64,
    /// Payload bytes in the segment (chunk checksums excluded).
    pub length: u64,
}

/// Bytes one chunk occupies on disk: its payload plus its CRC-32.
pub const CHUNK_TRAILER_BYTES: u64 = 4;

impl SegmentRef {
    /// Bytes the segment occupies in its Syrup, chunk checksums included.
    pub fn stored_len(&self, chunk_size: u32) -> u64 {
        stored_len(self.length, chunk_size)
    }
}

/// Bytes that `payload` bytes occupy on disk when cut into chunks of `chunk_size`.
pub fn stored_len(payload: u64, chunk_size: u32) -> u64 {
    let chunks = payload.div_ceil(u64::from(chunk_size));
    payload + chunks * CHUNK_TRAILER_BYTES
}

/// [`stored_len`], or `None` when it does not fit a `u64`: the form for lengths read from disk.
fn checked_stored_len(payload: u64, chunk_size: u32) -> Option<u64> {
    let chunks = payload.div_ceil(u64::from(chunk_size));
    chunks.checked_mul(CHUNK_TRAILER_BYTES)?.checked_add(payload)
}

/// A run of bytes of a Candy: its length, chunk size, checksum and SegmentRefs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Payload bytes of the Part.
    pub length: u64,
    /// Chunk payload size the Part was written with.
    pub chunk_size: u32,
    /// CRC-32 of the Part's payload, verified by whole-Candy reads.
    pub checksum: u32,
    /// Where the bytes are, in order.
    pub segments: Vec<SegmentRef>,
}

/// Whether a locator is a live Candy or a deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A live Candy.
    Put = 1,
    /// A point tombstone.
    Tombstone = 2,
    /// A versioned Box's delete marker, in its version space: a version that says "deleted".
    /// Unlike a tombstone it is a value compaction keeps (format version 2).
    DeleteMarker = 3,
}

/// Where a Candy's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandyBody {
    /// Small Candies live in the locator itself: one WAL write, no Syrup write.
    Inline(Vec<u8>),
    /// Larger Candies live in Syrups.
    Parts(Vec<Part>),
}

/// The LSM value of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandyLocator {
    /// Last writer wins by this stamp.
    pub hlc: Hlc,
    /// Put, tombstone or delete marker.
    pub kind: Kind,
    /// The id of the version this entry holds when it is not `hlc` (format version 2): a
    /// versioned Box's previous version made current again under a fresh stamp, or its null
    /// version (`Hlc::ZERO`). `None`: the version id is `hlc`.
    pub version_id: Option<Hlc>,
    /// MIME type given at put.
    pub content_type: String,
    /// User metadata, in the order given.
    pub user_meta: Vec<(String, String)>,
    /// Wall-clock milliseconds of the original put (kept by copy and rename).
    pub created_ms: u64,
    /// Payload bytes of the Candy.
    pub size: u64,
    /// CRC-32 of the whole Candy.
    pub checksum: u32,
    /// The bytes or where they are.
    pub body: CandyBody,
}

impl CandyLocator {
    /// A tombstone stamped `hlc`.
    pub fn tombstone(hlc: Hlc) -> Self {
        CandyLocator {
            hlc,
            kind: Kind::Tombstone,
            version_id: None,
            content_type: String::new(),
            user_meta: Vec::new(),
            created_ms: 0,
            size: 0,
            checksum: 0,
            body: CandyBody::Parts(Vec::new()),
        }
    }

    /// True for a live Candy.
    pub fn is_live(&self) -> bool {
        self.kind == Kind::Put
    }

    /// The id of the version this entry holds: what head, get and list report and conditions
    /// compare (`Hlc::ZERO`: a versioned Box's null version).
    pub fn version(&self) -> Hlc {
        self.version_id.unwrap_or(self.hlc)
    }

    /// When this version was last modified (ms since the Unix epoch): the time of its id, or of
    /// its stamp for a null version (whose id is zero).
    pub fn modified_ms(&self) -> u64 {
        match self.version() {
            Hlc::ZERO => self.hlc.physical_ms,
            v => v.physical_ms,
        }
    }

    /// A delete marker stamped `hlc` holding version `version_id`.
    pub fn delete_marker(hlc: Hlc, version_id: Option<Hlc>) -> Self {
        CandyLocator { kind: Kind::DeleteMarker, version_id, ..CandyLocator::tombstone(hlc) }
    }

    /// The Parts (empty for inline Candies and tombstones).
    pub fn parts(&self) -> &[Part] {
        match &self.body {
            CandyBody::Parts(p) => p,
            CandyBody::Inline(_) => &[],
        }
    }

    /// Every Syrup this locator references (may repeat).
    pub fn syrups(&self) -> impl Iterator<Item = SyrupId> + '_ {
        self.parts().iter().flat_map(|p| p.segments.iter().map(|s| s.syrup))
    }

    /// Encodes the locator.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let v2 = self.version_id.is_some() || self.kind == Kind::DeleteMarker;
        out.put_u8(if v2 { LOCATOR_VERSION_IDS } else { LOCATOR_VERSION });
        out.put_u8(self.kind as u8);
        self.hlc.encode(&mut out);
        if v2 {
            self.version_id.unwrap_or(self.hlc).encode(&mut out);
        }
        if self.kind != Kind::Put {
            return out;
        }
        out.put_u64(self.created_ms);
        out.put_u64(self.size);
        out.put_u32(self.checksum);
        out.put_bytes16(self.content_type.as_bytes());
        out.put_u16(self.user_meta.len() as u16);
        for (k, v) in &self.user_meta {
            out.put_bytes16(k.as_bytes());
            out.put_bytes16(v.as_bytes());
        }
        match &self.body {
            CandyBody::Inline(data) => {
                out.put_u8(1);
                out.put_bytes32(data);
            }
            CandyBody::Parts(parts) => {
                out.put_u8(0);
                encode_parts(parts, &mut out);
            }
        }
        out
    }

    /// Decodes and checks a locator.
    ///
    /// # Errors
    /// [`DecodeError`] naming the first field that is wrong.
    pub fn decode(buf: &[u8]) -> Result<CandyLocator, DecodeError> {
        let (head, mut r) = match Head::decode(buf)? {
            Decoded::NoBody(p) if p.kind == Kind::DeleteMarker => {
                return Ok(CandyLocator::delete_marker(p.hlc, p.version_id));
            }
            Decoded::NoBody(p) => {
                return Ok(CandyLocator { version_id: p.version_id, ..CandyLocator::tombstone(p.hlc) })
            }
            Decoded::Put(head, r) => (head, r),
        };
        let malformed = |what, r: &Reader<'_>| DecodeError::Malformed { what, offset: r.position() as u64 };
        let body = match r.u8()? {
            1 => {
                let data = r.bytes32()?.to_vec();
                if data.len() as u64 != head.size {
                    return Err(malformed("inline length", &r));
                }
                CandyBody::Inline(data)
            }
            0 => {
                let parts = decode_parts(&mut r)?;
                let total = parts.iter().try_fold(0u64, |acc, p| acc.checked_add(p.length));
                if total != Some(head.size) {
                    return Err(malformed("candy size", &r));
                }
                CandyBody::Parts(parts)
            }
            _ => return Err(malformed("body kind", &r)),
        };
        if r.remaining() != 0 {
            return Err(malformed("trailing bytes", &r));
        }
        let user_meta = head.user_meta().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Ok(CandyLocator {
            hlc: head.hlc,
            kind: Kind::Put,
            version_id: head.version_id,
            content_type: head.content_type.to_owned(),
            user_meta,
            created_ms: head.created_ms,
            size: head.size,
            checksum: head.checksum,
            body,
        })
    }

    /// Reads only the version, kind and HLC of an encoded locator: what merging and tombstone
    /// rules need, without decoding Parts.
    ///
    /// # Errors
    /// [`DecodeError`] when the header is short or unknown.
    pub fn peek(buf: &[u8]) -> Result<(Kind, Hlc), DecodeError> {
        decode_prefix(&mut Reader::new(buf)).map(|p| (p.kind, p.hlc))
    }
}

/// The fields of a live locator before its body, borrowed from the encoded bytes and checked as
/// [`CandyLocator::decode`] checks them.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Last writer wins by this stamp.
    pub hlc: Hlc,
    /// As [`CandyLocator::version_id`].
    pub version_id: Option<Hlc>,
    /// Wall-clock milliseconds of the original put.
    pub created_ms: u64,
    /// Payload bytes of the Candy.
    pub size: u64,
    /// CRC-32 of the whole Candy.
    pub checksum: u32,
    /// MIME type given at put.
    pub content_type: &'a str,
    meta_count: u16,
    /// The encoded metadata pairs (checked UTF-8 and within the limits).
    meta: &'a [u8],
}

/// What every encoded locator starts with: its kind, stamp and (format version 2) version id.
struct Prefix {
    kind: Kind,
    hlc: Hlc,
    version_id: Option<Hlc>,
}

fn decode_prefix(r: &mut Reader<'_>) -> Result<Prefix, DecodeError> {
    let version = r.u8()?;
    if version != LOCATOR_VERSION && version != LOCATOR_VERSION_IDS {
        return Err(DecodeError::UnsupportedVersion(u16::from(version)));
    }
    let kind = match r.u8()? {
        1 => Kind::Put,
        2 => Kind::Tombstone,
        3 if version == LOCATOR_VERSION_IDS => Kind::DeleteMarker,
        _ => return Err(DecodeError::Malformed { what: "locator kind", offset: 1 }),
    };
    let hlc = Hlc::decode(r)?;
    let version_id = if version == LOCATOR_VERSION_IDS { Some(Hlc::decode(r)?) } else { None };
    Ok(Prefix { kind, hlc, version_id })
}

enum Decoded<'a> {
    /// A tombstone or a delete marker.
    NoBody(Prefix),
    Put(Head<'a>, Reader<'a>),
}

impl<'a> Head<'a> {
    fn decode(buf: &'a [u8]) -> Result<Decoded<'a>, DecodeError> {
        let malformed = |what, r: &Reader<'_>| DecodeError::Malformed { what, offset: r.position() as u64 };
        if buf.len() > limits::LOCATOR_BYTES_MAX {
            return Err(DecodeError::Malformed { what: "locator length", offset: 0 });
        }
        let mut r = Reader::new(buf);
        let prefix = decode_prefix(&mut r)?;
        if prefix.kind != Kind::Put {
            if r.remaining() != 0 {
                return Err(malformed("trailing bytes", &r));
            }
            return Ok(Decoded::NoBody(prefix));
        }
        let (hlc, version_id) = (prefix.hlc, prefix.version_id);
        let created_ms = r.u64()?;
        let size = r.u64()?;
        let checksum = r.u32()?;
        let content_type = std::str::from_utf8(r.bytes16()?).map_err(|_| malformed("content type", &r))?;
        if content_type.len() > limits::CONTENT_TYPE_BYTES_MAX {
            return Err(malformed("content type length", &r));
        }
        let meta_count = r.u16()?;
        let meta_start = r.position();
        let mut meta_bytes = 0usize;
        for _ in 0..meta_count {
            let k = r.bytes16()?;
            std::str::from_utf8(k).map_err(|_| malformed("metadata key", &r))?;
            let v = r.bytes16()?;
            std::str::from_utf8(v).map_err(|_| malformed("metadata value", &r))?;
            meta_bytes += k.len() + v.len();
        }
        if meta_bytes > limits::USER_META_BYTES_MAX {
            return Err(malformed("user metadata size", &r));
        }
        let meta = buf.get(meta_start..r.position()).unwrap_or_default();
        Ok(Decoded::Put(Head { hlc, version_id, created_ms, size, checksum, content_type, meta_count, meta }, r))
    }

    /// Views the head of an encoded locator in place: `Ok(None)` for a tombstone. The body is not
    /// read (a Candy in Syrups costs no Part decoding).
    ///
    /// # Errors
    /// [`DecodeError`] when the head is malformed.
    pub fn view(buf: &'a [u8]) -> Result<Option<Head<'a>>, DecodeError> {
        Ok(match Head::decode(buf)? {
            Decoded::NoBody(_) => None,
            Decoded::Put(head, _) => Some(head),
        })
    }

    /// The user metadata pairs, in the order given at put.
    pub fn user_meta(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut r = Reader::new(self.meta);
        // Checked when the head was decoded: every pair is there and is UTF-8.
        (0..self.meta_count).map_while(move |_| {
            let k = std::str::from_utf8(r.bytes16().ok()?).ok()?;
            let v = std::str::from_utf8(r.bytes16().ok()?).ok()?;
            Some((k, v))
        })
    }

    /// As [`CandyLocator::version`].
    pub fn version(&self) -> Hlc {
        self.version_id.unwrap_or(self.hlc)
    }

    /// True when there is user metadata.
    pub fn has_user_meta(&self) -> bool {
        self.meta_count > 0
    }
}

/// A live Candy stored in its locator, viewed in place: the metadata and the bytes borrowed
/// from the encoded value (a memtable entry or a table block), nothing copied.
#[derive(Debug, Clone, Copy)]
pub struct InlineView<'a> {
    /// Everything before the body.
    pub head: Head<'a>,
    /// The Candy's bytes.
    pub data: &'a [u8],
}

impl<'a> InlineView<'a> {
    /// Views an encoded locator: `Ok(None)` for a tombstone or a Candy in Syrups.
    ///
    /// # Errors
    /// [`DecodeError`] for what [`CandyLocator::decode`] would refuse in the same bytes.
    pub fn decode(buf: &'a [u8]) -> Result<Option<InlineView<'a>>, DecodeError> {
        let (head, mut r) = match Head::decode(buf)? {
            Decoded::NoBody(_) => return Ok(None),
            Decoded::Put(head, r) => (head, r),
        };
        let malformed = |what, r: &Reader<'_>| DecodeError::Malformed { what, offset: r.position() as u64 };
        match r.u8()? {
            1 => {
                let data = r.bytes32()?;
                if data.len() as u64 != head.size {
                    return Err(malformed("inline length", &r));
                }
                if r.remaining() != 0 {
                    return Err(malformed("trailing bytes", &r));
                }
                Ok(Some(InlineView { head, data }))
            }
            0 => Ok(None),
            _ => Err(malformed("body kind", &r)),
        }
    }
}

/// Encodes Parts compactly (varints; each segment's Syrup id as a zig-zag delta from the previous
/// one, so runs in one Syrup cost one byte): 10,000 parts fit the locator cap.
pub fn encode_parts(parts: &[Part], out: &mut Vec<u8>) {
    out.put_varint(parts.len() as u64);
    let mut prev = 0u64;
    for p in parts {
        out.put_varint(p.length);
        out.put_varint(u64::from(p.chunk_size));
        out.put_u32(p.checksum);
        out.put_varint(p.segments.len() as u64);
        for s in &p.segments {
            let delta = s.syrup.0.wrapping_sub(prev) as i64;
            out.put_varint(((delta << 1) ^ (delta >> 63)) as u64);
            prev = s.syrup.0;
            out.put_varint(s.offset);
            out.put_varint(s.length);
        }
    }
}

/// Decodes and checks Parts written by [`encode_parts`].
///
/// # Errors
/// [`DecodeError`] on a short input or an inconsistent Part.
pub fn decode_parts(r: &mut Reader<'_>) -> Result<Vec<Part>, DecodeError> {
    let malformed = |what, r: &Reader<'_>| DecodeError::Malformed { what, offset: r.position() as u64 };
    let count = r.varint()?;
    if count > u64::from(limits::MULTIPART_PARTS_MAX) {
        return Err(malformed("part count", r));
    }
    let mut parts = Vec::with_capacity((count as usize).min(1024));
    let mut prev = 0u64;
    for _ in 0..count {
        let length = r.varint()?;
        let chunk_size = u32::try_from(r.varint()?).map_err(|_| malformed("chunk size", r))?;
        if !(limits::CHUNK_BYTES_MIN..=limits::CHUNK_BYTES_MAX).contains(&chunk_size) {
            return Err(malformed("chunk size", r));
        }
        let checksum = r.u32()?;
        let seg_count = r.varint()?;
        if seg_count > limits::PART_SEGMENTS_MAX as u64 {
            return Err(malformed("segment count", r));
        }
        let mut segments = Vec::with_capacity((seg_count as usize).min(64));
        let mut seg_total = 0u64;
        for _ in 0..seg_count {
            let zz = r.varint()?;
            let delta = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
            let syrup = prev.wrapping_add(delta as u64);
            prev = syrup;
            let s = SegmentRef { syrup: SyrupId(syrup), offset: r.varint()?, length: r.varint()? };
            // Checked before `stored_len` is ever called on it: a length near `u64::MAX` overflows
            // the trailer arithmetic itself.
            let stored_end = checked_stored_len(s.length, chunk_size).and_then(|n| s.offset.checked_add(n));
            if s.length == 0 || stored_end.is_none() {
                return Err(malformed("segment range", r));
            }
            seg_total = seg_total.checked_add(s.length).ok_or_else(|| malformed("segment length", r))?;
            segments.push(s);
        }
        if seg_total != length {
            return Err(malformed("part length", r));
        }
        parts.push(Part { length, chunk_size, checksum, segments });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CandyLocator {
        CandyLocator {
            hlc: Hlc { physical_ms: 5, logical: 2, node: 1 },
            kind: Kind::Put,
            version_id: None,
            content_type: "text/plain".into(),
            user_meta: vec![("a".into(), "b".into())],
            created_ms: 9,
            size: 3000,
            checksum: 77,
            body: CandyBody::Parts(vec![Part {
                length: 3000,
                chunk_size: 1024,
                checksum: 1,
                segments: vec![
                    SegmentRef { syrup: SyrupId(1), offset: 64, length: 2048 },
                    SegmentRef { syrup: SyrupId(2), offset: 64, length: 952 },
                ],
            }]),
        }
    }

    #[test]
    fn round_trips() {
        let l = sample();
        assert_eq!(CandyLocator::decode(&l.encode()), Ok(l.clone()));
        let t = CandyLocator::tombstone(l.hlc);
        assert_eq!(CandyLocator::decode(&t.encode()), Ok(t));
        let mut i = l;
        i.size = 2;
        i.body = CandyBody::Inline(vec![1, 2]);
        assert_eq!(CandyLocator::decode(&i.encode()), Ok(i.clone()));
        assert_eq!(CandyLocator::peek(&i.encode()), Ok((Kind::Put, i.hlc)));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = sample().encode();
        for n in 0..b.len() {
            assert!(CandyLocator::decode(&b[..n]).is_err(), "prefix {n} decoded");
        }
    }

    #[test]
    fn inconsistent_sizes_are_refused() {
        let mut l = sample();
        l.size = 2999;
        assert!(matches!(CandyLocator::decode(&l.encode()), Err(DecodeError::Malformed { what: "candy size", .. })));
    }

    #[test]
    fn ten_thousand_parts_fit_the_locator_cap() {
        let part = |i: u64| Part {
            length: 5 * 1024 * 1024,
            chunk_size: 64 * 1024,
            checksum: i as u32,
            segments: vec![SegmentRef {
                syrup: SyrupId((7 << 48) | 12345),
                offset: i * 5_300_000,
                length: 5 * 1024 * 1024,
            }],
        };
        let parts: Vec<Part> = (0..10_000).map(part).collect();
        let mut l = sample();
        l.size = parts.iter().map(|p| p.length).sum();
        l.body = CandyBody::Parts(parts);
        let enc = l.encode();
        assert!(enc.len() <= limits::LOCATOR_BYTES_MAX, "{} bytes", enc.len());
        assert_eq!(CandyLocator::decode(&enc), Ok(l));
    }

    #[test]
    fn a_segment_length_near_u64_max_is_malformed() {
        // Found by fuzzing (fuzz target `locator`, and `manifest_edit` through an upload part):
        // `stored_len` overflowed on a segment length near `u64::MAX`, a panic with overflow
        // checks and, without them, a wrapped length that let the segment range check pass.
        for length in [u64::MAX, u64::MAX - 3, u64::MAX / 512 * 512] {
            let mut l = sample();
            l.size = length;
            l.body = CandyBody::Parts(vec![Part {
                length,
                chunk_size: limits::CHUNK_BYTES_MIN,
                checksum: 0,
                segments: vec![SegmentRef { syrup: SyrupId(1), offset: 0, length }],
            }]);
            let decoded = CandyLocator::decode(&l.encode());
            assert!(matches!(decoded, Err(DecodeError::Malformed { what: "segment range", .. })));
        }
    }

    #[test]
    fn stored_len_counts_trailers() {
        assert_eq!(stored_len(0, 1024), 0);
        assert_eq!(stored_len(1, 1024), 5);
        assert_eq!(stored_len(1024, 1024), 1028);
        assert_eq!(stored_len(1025, 1024), 1033);
    }

    #[test]
    fn an_inline_view_shows_what_decode_shows_and_only_for_live_inline_candies() {
        let mut l = sample();
        l.user_meta = vec![("a".into(), "b".into()), ("colour".into(), "blau".into())];
        l.size = 5;
        l.body = CandyBody::Inline(b"hello".to_vec());
        let enc = l.encode();
        let v = InlineView::decode(&enc).expect("decodes").expect("an inline candy has a view");
        assert_eq!(v.data, b"hello");
        assert_eq!((v.head.hlc, v.head.created_ms, v.head.size, v.head.checksum), (l.hlc, 9, 5, 77));
        assert_eq!(v.head.content_type, "text/plain");
        let meta: Vec<(String, String)> = v.head.user_meta().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!(meta, l.user_meta);
        assert!(
            InlineView::decode(&sample().encode()).expect("decodes").is_none(),
            "a candy in Syrups has no inline view"
        );
        let t = CandyLocator::tombstone(l.hlc).encode();
        assert!(InlineView::decode(&t).expect("decodes").is_none());
        // What decode refuses, the view refuses: every truncation of the encoding.
        for n in 0..enc.len() {
            assert!(InlineView::decode(&enc[..n]).is_err(), "a locator cut at {n} bytes was accepted");
            assert!(CandyLocator::decode(&enc[..n]).is_err());
        }
    }
}
