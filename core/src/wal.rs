//! The write-ahead log of one partition: `WAL-<number>` files, one record per group commit.
//!
//! File layout: a 32-byte header, then records framed by [`crate::record`].
//!
//! ```text
//! header  0..8   magic "CANDYWAL"
//!         8..10  format version (u16 = 1)
//!        10..16  reserved (zero)
//!        16..24  WAL number (u64): protects against a misnamed or misdirected file
//!        24..28  reserved (zero)
//!        28..32  CRC-32 of bytes 0..28
//! record body: version u8 (=1) | op count u32 | ops
//! op:    1 = Set          | key: u16 len + bytes | locator: u32 len + bytes
//!        2 = DeleteRange  | start: u16 len + bytes | end: u16 len + bytes | HLC (14 B)
//! ```
//!
//! Invariants:
//! - One record is one group commit: all its ops become visible together or not at all, which is
//!   what makes a same-partition rename (a Set and a tombstone) atomic.
//! - Records are appended at the file's end only; a WAL that was replayed is never appended to
//!   again (recovery starts a new one), so nothing is ever written after a torn tail.

use crate::{
    codec::{Put, Reader},
    error::DecodeError,
    hlc::Hlc,
    limits,
    types::RangeTombstone,
};

/// Magic bytes of a WAL file.
pub const WAL_MAGIC: [u8; 8] = *b"CANDYWAL";
/// Current WAL format version.
pub const WAL_VERSION: u16 = 1;
/// Version byte of a record body.
pub const WAL_RECORD_VERSION: u8 = 1;
/// Bytes of the WAL file header.
pub const WAL_HEADER_BYTES: usize = crate::record::LOG_HEADER_BYTES;

/// One mutation in a WAL record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalOp {
    /// Sets a key to an encoded locator (a put or a point tombstone).
    Set {
        /// The CandyKey.
        key: Vec<u8>,
        /// The encoded CandyLocator.
        locator: Vec<u8>,
    },
    /// A range tombstone.
    DeleteRange(RangeTombstone),
}

/// The file name of WAL `number`.
pub fn file_name(number: u64) -> String {
    format!("WAL-{number:06}")
}

/// Parses a WAL file name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("WAL-")?.parse().ok()
}

/// The header of WAL `number` (the shared log header of [`crate::record`]).
pub fn encode_header(number: u64) -> Vec<u8> {
    crate::record::encode_log_header(&WAL_MAGIC, WAL_VERSION, number)
}

/// Checks a WAL header and returns its number.
///
/// # Errors
/// [`DecodeError`] for a bad magic, version, checksum or reserved bytes.
pub fn decode_header(buf: &[u8]) -> Result<u64, DecodeError> {
    crate::record::decode_log_header(buf, &WAL_MAGIC, WAL_VERSION)
}

/// A borrowed view of one mutation, so a group commit encodes its batch straight into the
/// record buffer without copying keys and locators first.
#[derive(Debug, Clone, Copy)]
pub enum WalOpRef<'a> {
    /// Sets a key to an encoded locator.
    Set {
        /// The CandyKey.
        key: &'a [u8],
        /// The encoded CandyLocator.
        locator: &'a [u8],
    },
    /// A range tombstone.
    DeleteRange(&'a RangeTombstone),
}

impl WalOp {
    /// The borrowed view of this op.
    pub fn as_ref(&self) -> WalOpRef<'_> {
        match self {
            WalOp::Set { key, locator } => WalOpRef::Set { key, locator },
            WalOp::DeleteRange(rt) => WalOpRef::DeleteRange(rt),
        }
    }
}

/// Appends the body of one record holding `ops` to `out`.
pub fn encode_body_into<'a>(ops: impl ExactSizeIterator<Item = WalOpRef<'a>>, out: &mut Vec<u8>) {
    out.put_u8(WAL_RECORD_VERSION);
    out.put_u32(ops.len() as u32);
    for op in ops {
        encode_op_into(op, out);
    }
}

/// Appends one op (tag and fields) to `out`: the op encoding shared by the WAL and the shard
/// commit log ([`crate::log`]).
pub fn encode_op_into(op: WalOpRef<'_>, out: &mut Vec<u8>) {
    match op {
        WalOpRef::Set { key, locator } => {
            out.put_u8(1);
            out.put_bytes16(key);
            out.put_bytes32(locator);
        }
        WalOpRef::DeleteRange(rt) => {
            out.put_u8(2);
            out.put_bytes16(&rt.start);
            out.put_bytes16(&rt.end);
            rt.hlc.encode(out);
        }
    }
}

/// Encodes the body of one record.
pub fn encode_body(ops: &[WalOp]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_body_into(ops.iter().map(WalOp::as_ref), &mut out);
    out
}

/// Decodes the body of one record.
///
/// # Errors
/// [`DecodeError`] for an unknown version or op, a short body, or an over-long key or locator.
pub fn decode_body(buf: &[u8]) -> Result<Vec<WalOp>, DecodeError> {
    let mut r = Reader::new(buf);
    let version = r.u8()?;
    if version != WAL_RECORD_VERSION {
        return Err(DecodeError::UnsupportedVersion(u16::from(version)));
    }
    let count = r.u32()? as usize;
    if count > limits::COMMIT_BATCH_OPS_MAX {
        return Err(DecodeError::Malformed { what: "op count", offset: 1 });
    }
    let ops = decode_ops(&mut r, count)?;
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed { what: "trailing bytes", offset: r.position() as u64 });
    }
    Ok(ops)
}

/// Reads `count` ops (as [`encode_op_into`] writes them) from `r`.
///
/// # Errors
/// [`DecodeError`] for an unknown op, a short buffer, or an over-long key or locator.
pub fn decode_ops(r: &mut Reader<'_>, count: usize) -> Result<Vec<WalOp>, DecodeError> {
    let mut ops = Vec::with_capacity(count.min(limits::COMMIT_BATCH_OPS_MAX));
    for _ in 0..count {
        let at = r.position() as u64;
        let op = match r.u8()? {
            1 => {
                let key = r.bytes16()?.to_vec();
                let locator = r.bytes32()?.to_vec();
                if key.is_empty()
                    || key.len() > limits::STORED_KEY_BYTES_MAX
                    || locator.len() > limits::LOCATOR_BYTES_MAX
                {
                    return Err(DecodeError::Malformed { what: "set op size", offset: at });
                }
                WalOp::Set { key, locator }
            }
            2 => {
                let start = r.bytes16()?.to_vec();
                let end = r.bytes16()?.to_vec();
                let hlc = Hlc::decode(r)?;
                let bounded = start.len() <= limits::KEY_BYTES_MAX && end.len() <= limits::KEY_BYTES_MAX;
                if !bounded || !(end.is_empty() || start < end) {
                    return Err(DecodeError::Malformed { what: "range tombstone bounds", offset: at });
                }
                WalOp::DeleteRange(RangeTombstone { start, end, hlc })
            }
            _ => return Err(DecodeError::Malformed { what: "op tag", offset: at }),
        };
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_body_round_trip() {
        let h = encode_header(42);
        assert_eq!(decode_header(&h), Ok(42));
        let mut bad = h.clone();
        bad[17] ^= 1;
        assert!(matches!(decode_header(&bad), Err(DecodeError::ChecksumMismatch { .. })));
        let ops = vec![
            WalOp::Set { key: b"k".to_vec(), locator: vec![1, 2, 3] },
            WalOp::DeleteRange(RangeTombstone { start: b"a".to_vec(), end: Vec::new(), hlc: Hlc::ZERO }),
        ];
        let body = encode_body(&ops);
        assert_eq!(decode_body(&body), Ok(ops));
        for n in 0..body.len() {
            assert!(decode_body(&body[..n]).is_err());
        }
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_file_name(&file_name(7)), Some(7));
        assert_eq!(parse_file_name("MANIFEST-1"), None);
    }
}
