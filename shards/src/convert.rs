//! The one conversion between the wire's `Locator` table and core's `CandyLocator` (SPEC §7:
//! clients relay these bytes between partitions without decoding them).
//!
//! Invariants:
//! - Relayed bytes are verified with `wire::frame::verify_locator` (explicit verifier limits)
//!   before any field is read; every count is checked before allocation.
//! - The conversion is lossless for every locator core can encode: core → wire → core gives the
//!   same locator (a test checks it). The engine then decodes and verifies the result again
//!   (`CandyLocator::decode`, then every SegmentRef against the Syrups).

use bytes::Bytes;
use candybox_core::{
    hlc::Hlc,
    limits,
    locator::{CandyBody, CandyLocator, Kind, Part, SegmentRef},
    types::{BoxUid, SyrupId},
};
use candybox_wire::fb;
use flatbuffers::FlatBufferBuilder;

use crate::reply::NodeError;

/// Encodes a core locator as a `Locator` flatbuffer of Box incarnation `box_uid`.
pub fn locator_to_wire(l: &CandyLocator, box_uid: BoxUid) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(512);
    let content_type = Some(fbb.create_string(&l.content_type));
    let user_meta = if l.user_meta.is_empty() {
        None
    } else {
        let kvs: Vec<_> = l
            .user_meta
            .iter()
            .map(|(k, v)| {
                let key = Some(fbb.create_string(k));
                let value = Some(fbb.create_string(v));
                fb::KeyValue::create(&mut fbb, &fb::KeyValueArgs { key, value })
            })
            .collect();
        Some(fbb.create_vector(&kvs))
    };
    let (inline_body, parts) = match &l.body {
        CandyBody::Inline(data) => (Some(fbb.create_vector(data)), None),
        CandyBody::Parts(parts) => {
            let ps: Vec<_> = parts
                .iter()
                .map(|p| {
                    let segs: Vec<fb::SegmentRef> =
                        p.segments.iter().map(|s| fb::SegmentRef::new(s.syrup.0, s.offset, s.length)).collect();
                    let segments = Some(fbb.create_vector(&segs));
                    fb::Part::create(
                        &mut fbb,
                        &fb::PartArgs { length: p.length, chunk_size: p.chunk_size, checksum: p.checksum, segments },
                    )
                })
                .collect();
            (None, Some(fbb.create_vector(&ps)))
        }
    };
    let h = crate::reply::hlc(l.hlc);
    let root = fb::Locator::create(
        &mut fbb,
        &fb::LocatorArgs {
            version: 1,
            hlc: Some(&h),
            kind: if l.kind == Kind::Put { fb::LocatorKind::Put } else { fb::LocatorKind::Tombstone },
            content_type,
            user_meta,
            created_ms: l.created_ms,
            size: l.size,
            checksum: l.checksum,
            inline_body,
            parts,
            box_uid: box_uid.0,
        },
    );
    fbb.finish_minimal(root);
    let (vec, head) = fbb.collapse();
    Bytes::from(vec).slice(head..)
}

fn forged(why: impl Into<String>) -> NodeError {
    NodeError::Forged(why.into())
}

/// Verifies relayed `Locator` bytes and converts them to a core locator; refuses one of another
/// Box incarnation than `box_uid`.
///
/// # Errors
/// [`NodeError::Forged`] when the verifier refuses the bytes, a field is out of range, or the Box
/// differs.
pub fn locator_from_wire(bytes: &[u8], box_uid: BoxUid, frame_cap: u32) -> Result<CandyLocator, NodeError> {
    if bytes.len() > limits::LOCATOR_BYTES_MAX * 4 {
        return Err(forged(format!("{} bytes is too large for a locator", bytes.len())));
    }
    let l = candybox_wire::frame::verify_locator(bytes, frame_cap).map_err(|e| forged(e.to_string()))?;
    if l.version() != 1 {
        return Err(forged(format!("locator version {}", l.version())));
    }
    if l.box_uid() != box_uid.0 {
        return Err(forged("locator belongs to another box"));
    }
    let kind = match l.kind() {
        fb::LocatorKind::Put => Kind::Put,
        fb::LocatorKind::Tombstone => Kind::Tombstone,
        other => return Err(forged(format!("locator kind {}", other.0))),
    };
    let hlc = l.hlc().map_or(Hlc::ZERO, |h| Hlc { physical_ms: h.physical_ms(), logical: h.logical(), node: h.node() });
    let mut user_meta = Vec::new();
    if let Some(kvs) = l.user_meta() {
        for kv in kvs {
            user_meta.push((kv.key().to_string(), kv.value().to_string()));
        }
    }
    let body = match (l.inline_body(), l.parts()) {
        (Some(data), None) => CandyBody::Inline(data.bytes().to_vec()),
        (None, parts) => {
            let parts = parts.map(|ps| ps.iter().collect::<Vec<_>>()).unwrap_or_default();
            if parts.len() > limits::MULTIPART_PARTS_MAX as usize {
                return Err(forged("too many parts"));
            }
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                let segments: Vec<SegmentRef> = p
                    .segments()
                    .map(|ss| {
                        ss.iter()
                            .map(|s| SegmentRef { syrup: SyrupId(s.syrup()), offset: s.offset(), length: s.length() })
                            .collect()
                    })
                    .unwrap_or_default();
                if segments.len() > limits::PART_SEGMENTS_MAX {
                    return Err(forged("too many segments in a part"));
                }
                out.push(Part { length: p.length(), chunk_size: p.chunk_size(), checksum: p.checksum(), segments });
            }
            CandyBody::Parts(out)
        }
        (Some(_), Some(_)) => return Err(forged("locator has both inline bytes and parts")),
    };
    Ok(CandyLocator {
        hlc,
        kind,
        version_id: None,
        content_type: l.content_type().unwrap_or_default().to_string(),
        user_meta,
        created_ms: l.created_ms(),
        size: l.size(),
        checksum: l.checksum(),
        body,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn core_wire_core_is_lossless() {
        let l = CandyLocator {
            hlc: Hlc { physical_ms: 5, logical: 2, node: 1 },
            kind: Kind::Put,
            version_id: None,
            content_type: "text/plain".into(),
            user_meta: vec![("a".into(), "b".into())],
            created_ms: 9,
            size: 30,
            checksum: 77,
            body: CandyBody::Parts(vec![Part {
                length: 30,
                chunk_size: 512,
                checksum: 77,
                segments: vec![
                    SegmentRef { syrup: SyrupId(1 << 48), offset: 64, length: 10 },
                    SegmentRef { syrup: SyrupId(2), offset: 128, length: 20 },
                ],
            }]),
        };
        let wire = locator_to_wire(&l, BoxUid(3));
        assert_eq!(locator_from_wire(&wire, BoxUid(3), 1 << 20).unwrap(), l);
        assert!(matches!(locator_from_wire(&wire, BoxUid(4), 1 << 20), Err(NodeError::Forged(_))));
        assert!(matches!(locator_from_wire(&wire[..wire.len() / 2], BoxUid(3), 1 << 20), Err(NodeError::Forged(_))));
        let inline = CandyLocator { body: CandyBody::Inline(b"hi".to_vec()), size: 2, ..l };
        assert_eq!(locator_from_wire(&locator_to_wire(&inline, BoxUid(3)), BoxUid(3), 1 << 20).unwrap(), inline);
    }
}
