//! The shard commit log on disk: segment files `LOG-<number>`, each a fixed header followed by
//! records framed by [`crate::record`], one record per group commit of the whole shard.
//!
//! ```text
//! segment header (56 bytes)
//!   0..8   magic "CANDYLOG"
//!   8..10  format version (u16 = 1)
//!  10..12  shard (u16): the shard whose log it is
//!  12..16  reserved (zero)
//!  16..24  segment number (u64): protects against a misnamed or misdirected file
//!  24..32  base (u64): the first segment number of the node start that created this log; every
//!          shard's log of that start shares it, and every later start's segments are above it
//!  32..40  first (u64): number of the first segment of this writer's run; the segments of one
//!          run share it, so recovery knows which segments follow which
//!  40..48  previous (u64): the segment this writer wrote just before this one in the run (0:
//!          none); a segment missing from the middle of a run is detected, never skipped
//!  48..52  v1: reserved (zero). v2: previous end (u32): the offset just past the last record of
//!          `previous` (0 when previous is 0). Segments may be written full of zeros ahead of
//!          their records (prepared), so a closed segment can end in zeros: its successor's
//!          header says where its records end, and records missing before that are damage
//!  52..56  CRC-32 of bytes 0..52
//! record body
//!   version u8 (= 1) | section count u16 | sections
//! section (the mutations of one partition in this group commit)
//!   Box uid u64 | partition u16 | batch sequence u64 | op count u32 | ops (the WAL v1 op
//!   encoding, `crate::wal`)
//!   The batch sequence counts the partition's group commits (1, 2, 3, ...; its manifest records
//!   the one it flushed up to): recovery requires a partition's replayed batches to follow each
//!   other without a gap, so a segment lost from the middle of its records is found, not skipped.
//! ```
//!
//! A log position ([`LogPosition`]) is a segment number and the offset just past a record: a
//! partition's manifest records the position it has flushed up to, and recovery replays the
//! records of that partition that end after it.
//!
//! Invariants:
//! - One record is one group commit of the shard: all its sections (every partition's ops)
//!   become visible together or not at all, so a copy or rename between two partitions of one
//!   shard is atomic in one record.
//! - Records are appended at a segment's end only; a segment is never appended to once its
//!   writer moved on (a new run always starts a new segment).

use crate::{
    codec::{crc32, Put, Reader},
    error::DecodeError,
    limits, record,
    types::BoxUid,
    wal::{self, WalOp, WalOpRef},
};

/// Magic bytes of a commit log segment.
pub const LOG_MAGIC: [u8; 8] = *b"CANDYLOG";
/// Current segment format version (the writer's; readers accept 1 and 2).
pub const LOG_VERSION: u16 = 2;
/// Version byte of a record body.
pub const LOG_RECORD_VERSION: u8 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 56;
const HEADER_CRC_OFFSET: usize = SEGMENT_HEADER_BYTES - 4;
const _: () = assert!(HEADER_CRC_OFFSET == 52);
/// Bytes before a record's first section: record header, version, section count.
const RECORD_PREFIX_BYTES: usize = record::RECORD_HEADER_BYTES + 1 + 2;
/// Bytes of a section header: Box uid, partition, batch sequence, op count.
pub const SECTION_HEADER_BYTES: usize = 8 + 2 + 8 + 4;

/// A place in a shard's log: the segment and the offset just past a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// Segment number.
    pub segment: u64,
    /// Offset in the segment just past a record (or the header, at a segment's start).
    pub offset: u64,
}

impl LogPosition {
    /// Before everything.
    pub const ZERO: LogPosition = LogPosition { segment: 0, offset: 0 };

    /// The start of segment `segment` (just past its header).
    pub fn start_of(segment: u64) -> LogPosition {
        LogPosition { segment, offset: SEGMENT_HEADER_BYTES as u64 }
    }
}

impl std::fmt::Display for LogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", file_name(self.segment), self.offset)
    }
}

/// A segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The shard that wrote it.
    pub shard: u16,
    /// Its number.
    pub number: u64,
    /// The first segment number of the node start that created the log.
    pub base: u64,
    /// The first segment of its writer's run.
    pub first: u64,
    /// The segment its writer wrote before it in the run (0: none).
    pub previous: u64,
    /// Where the records of `previous` end (format v2; `None`: a v1 header, which does not say).
    pub previous_end: Option<u32>,
}

/// The file name of segment `number`.
pub fn file_name(number: u64) -> String {
    format!("LOG-{number:08}")
}

/// Parses a segment file name: only the one spelling [`file_name`] writes, so two names of one
/// number (`LOG-1`, `LOG-00000001`) never both count.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let n = name.strip_prefix("LOG-")?.parse().ok()?;
    (file_name(n) == name).then_some(n)
}

/// The directory name of shard `shard`'s log under the log root.
pub fn shard_dir_name(shard: u16) -> String {
    format!("shard-{shard:03}")
}

/// Parses a shard log directory name.
pub fn parse_shard_dir_name(name: &str) -> Option<u16> {
    name.strip_prefix("shard-")?.parse().ok()
}

/// Encodes a segment header: version 2 when it says where the previous segment's records end,
/// else version 1.
pub fn encode_header(h: &SegmentHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEGMENT_HEADER_BYTES);
    out.extend_from_slice(&LOG_MAGIC);
    out.put_u16(if h.previous_end.is_some() { 2 } else { 1 });
    out.put_u16(h.shard);
    out.put_u32(0);
    out.put_u64(h.number);
    out.put_u64(h.base);
    out.put_u64(h.first);
    out.put_u64(h.previous);
    out.put_u32(h.previous_end.unwrap_or(0));
    let crc = crc32(&[&out]);
    out.put_u32(crc);
    assert!(out.len() == SEGMENT_HEADER_BYTES);
    out
}

/// Checks a segment header.
///
/// # Errors
/// [`DecodeError`] for a bad magic, an unknown version (checked before the checksum, so a newer
/// file is refused by name), a bad checksum, non-zero reserved bytes, or a base, first or
/// previous segment that cannot precede this one.
pub fn decode_header(buf: &[u8]) -> Result<SegmentHeader, DecodeError> {
    let mut r = Reader::new(buf);
    let magic = r.array::<8>()?;
    if magic != LOG_MAGIC {
        return Err(DecodeError::BadMagic { found: magic.to_vec() });
    }
    let version = r.u16()?;
    if !(1..=LOG_VERSION).contains(&version) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let shard = r.u16()?;
    let reserved_a = r.u32()?;
    let number = r.u64()?;
    let base = r.u64()?;
    let first = r.u64()?;
    let previous = r.u64()?;
    let reserved_b = r.u32()?;
    let expected = r.u32()?;
    let found = crc32(&[buf.get(..HEADER_CRC_OFFSET).unwrap_or_default()]);
    if found != expected {
        return Err(DecodeError::ChecksumMismatch { offset: 0, expected, found });
    }
    if reserved_a != 0 || (version == 1 && reserved_b != 0) {
        return Err(DecodeError::Malformed { what: "reserved header bytes", offset: 12 });
    }
    if base > first || first > number || previous >= number || (previous != 0 && previous < first) {
        return Err(DecodeError::Malformed { what: "segment chain", offset: 24 });
    }
    let previous_end = (version >= 2).then_some(reserved_b);
    if let Some(end) = previous_end {
        if (previous == 0) != (end == 0) || (end != 0 && (end as usize) < SEGMENT_HEADER_BYTES) {
            return Err(DecodeError::Malformed { what: "previous segment's end", offset: 48 });
        }
    }
    Ok(SegmentHeader { shard, number, base, first, previous, previous_end })
}

/// Checks the header at the start of `file`, the segment file named `number`: its header must
/// decode and carry that number.
///
/// # Errors
/// As [`decode_header`]; `Malformed { what: "segment number" }` when the header names another.
pub fn decode_named_header(file: &[u8], number: u64) -> Result<SegmentHeader, DecodeError> {
    let h = decode_header(file.get(..SEGMENT_HEADER_BYTES).unwrap_or(file))?;
    if h.number != number {
        return Err(DecodeError::Malformed { what: "segment number", offset: 16 });
    }
    Ok(h)
}

/// A record being built in a reused buffer: sections are appended one partition at a time, and
/// [`RecordBuilder::finish`] frames it for its file offset.
#[derive(Debug, Default)]
pub struct RecordBuilder {
    buf: Vec<u8>,
    sections: u16,
    ops: usize,
}

impl RecordBuilder {
    /// Starts an empty record in `buf` (cleared; its capacity is reused).
    pub fn new(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&[0; RECORD_PREFIX_BYTES]);
        RecordBuilder { buf, sections: 0, ops: 0 }
    }

    /// Sections so far.
    pub fn sections(&self) -> u16 {
        self.sections
    }

    /// Ops so far, over every section.
    pub fn ops(&self) -> usize {
        self.ops
    }

    /// Bytes so far.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// True when another section of `ops` ops and about `bytes` bytes fits the record's limits.
    pub fn fits(&self, ops: usize, bytes: usize) -> bool {
        usize::from(self.sections) < limits::LOG_RECORD_SECTIONS_MAX
            && self.ops + ops <= limits::LOG_RECORD_OPS_MAX
            && self.buf.len() + SECTION_HEADER_BYTES + bytes <= limits::WAL_RECORD_BYTES_MAX / 2
    }

    /// Appends one partition's section.
    pub fn section<'a>(
        &mut self,
        box_uid: BoxUid,
        partition: u16,
        seq: u64,
        ops: impl ExactSizeIterator<Item = WalOpRef<'a>>,
    ) {
        assert!(usize::from(self.sections) < limits::LOG_RECORD_SECTIONS_MAX, "too many sections in one record");
        assert!(seq > 0, "batch sequences start at 1");
        let count = ops.len();
        self.buf.put_u64(box_uid.0);
        self.buf.put_u16(partition);
        self.buf.put_u64(seq);
        self.buf.put_u32(u32::try_from(count).unwrap_or(u32::MAX));
        for op in ops {
            wal::encode_op_into(op, &mut self.buf);
        }
        self.sections += 1;
        self.ops += count;
    }

    /// The buffer back, for the next record (nothing was added).
    pub fn finish_empty(self) -> Vec<u8> {
        self.buf
    }

    /// Frames the record for file offset `offset` and returns its bytes (header included).
    pub fn finish(mut self, offset: u64) -> Vec<u8> {
        assert!(self.sections > 0, "an empty record is never written");
        let body_len = self.buf.len() - record::RECORD_HEADER_BYTES;
        let mut prefix = [0u8; 3];
        prefix[0] = LOG_RECORD_VERSION;
        let [lo, hi] = self.sections.to_le_bytes();
        (prefix[1], prefix[2]) = (lo, hi);
        if let Some(p) = self.buf.get_mut(record::RECORD_HEADER_BYTES..RECORD_PREFIX_BYTES) {
            p.copy_from_slice(&prefix);
        }
        let len = u32::try_from(body_len).unwrap_or(u32::MAX);
        assert!(len as usize == body_len, "record body longer than u32");
        let body = self.buf.get(record::RECORD_HEADER_BYTES..).unwrap_or_default();
        let crc = crc32(&[&offset.to_le_bytes(), &len.to_le_bytes(), body]);
        let mut header = [0u8; record::RECORD_HEADER_BYTES];
        let (l, c) = header.split_at_mut(4);
        l.copy_from_slice(&len.to_le_bytes());
        c.copy_from_slice(&crc.to_le_bytes());
        if let Some(h) = self.buf.get_mut(..record::RECORD_HEADER_BYTES) {
            h.copy_from_slice(&header);
        }
        self.buf
    }
}

/// One partition's ops in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The Box incarnation.
    pub box_uid: BoxUid,
    /// The partition.
    pub partition: u16,
    /// The partition's batch sequence.
    pub seq: u64,
    /// Its ops, in commit order.
    pub ops: Vec<WalOp>,
}

/// Encodes a record body (tests and tools; the writer builds records with [`RecordBuilder`]).
pub fn encode_body(sections: &[Section]) -> Vec<u8> {
    let mut b = RecordBuilder::new(Vec::new());
    for s in sections {
        b.section(s.box_uid, s.partition, s.seq, s.ops.iter().map(WalOp::as_ref));
    }
    let mut framed = b.finish(0);
    framed.drain(..record::RECORD_HEADER_BYTES);
    framed
}

/// Decodes a record body.
///
/// # Errors
/// [`DecodeError`] for an unknown version or op, a short body, too many sections or ops, or
/// trailing bytes.
pub fn decode_body(buf: &[u8]) -> Result<Vec<Section>, DecodeError> {
    let mut r = Reader::new(buf);
    let version = r.u8()?;
    if version != LOG_RECORD_VERSION {
        return Err(DecodeError::UnsupportedVersion(u16::from(version)));
    }
    let count = usize::from(r.u16()?);
    if count == 0 || count > limits::LOG_RECORD_SECTIONS_MAX {
        return Err(DecodeError::Malformed { what: "section count", offset: 1 });
    }
    let mut sections = Vec::with_capacity(count);
    let mut total = 0usize;
    for _ in 0..count {
        let at = r.position() as u64;
        let box_uid = BoxUid(r.u64()?);
        let partition = r.u16()?;
        let seq = r.u64()?;
        if seq == 0 {
            return Err(DecodeError::Malformed { what: "batch sequence", offset: at + 10 });
        }
        let ops = r.u32()? as usize;
        total += ops;
        if total > limits::LOG_RECORD_OPS_MAX {
            return Err(DecodeError::Malformed { what: "op count", offset: at });
        }
        let ops = wal::decode_ops(&mut r, ops)?;
        sections.push(Section { box_uid, partition, seq, ops });
    }
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed { what: "trailing bytes", offset: r.position() as u64 });
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{hlc::Hlc, types::RangeTombstone};

    #[test]
    fn header_round_trips_and_checks_its_chain() {
        let h = SegmentHeader { shard: 3, number: 12, base: 4, first: 7, previous: 10, previous_end: Some(4096) };
        let bytes = encode_header(&h);
        assert_eq!(bytes.get(8..10), Some(&[2u8, 0][..]), "a header with the previous end is version 2");
        assert_eq!(decode_header(&bytes), Ok(h));
        let v1 = SegmentHeader { previous_end: None, ..h };
        assert_eq!(decode_header(&encode_header(&v1)), Ok(v1), "version 1 is still read");
        for (previous, end) in [(10, 0), (0, 4096), (10, 55)] {
            let odd = encode_header(&SegmentHeader { previous, previous_end: Some(end), ..h });
            assert!(
                matches!(decode_header(&odd), Err(DecodeError::Malformed { what: "previous segment's end", .. })),
                "previous {previous}, end {end}"
            );
        }
        let mut bad = bytes.clone();
        bad[17] ^= 1;
        assert!(matches!(decode_header(&bad), Err(DecodeError::ChecksumMismatch { .. })));
        let backwards =
            encode_header(&SegmentHeader { shard: 0, number: 5, base: 1, first: 1, previous: 5, previous_end: None });
        assert!(matches!(decode_header(&backwards), Err(DecodeError::Malformed { what: "segment chain", .. })));
        let before_first =
            encode_header(&SegmentHeader { shard: 0, number: 9, base: 7, first: 7, previous: 3, previous_end: None });
        assert!(matches!(decode_header(&before_first), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn records_round_trip_and_every_cut_is_refused() {
        let sections = vec![
            Section {
                box_uid: BoxUid(9),
                partition: 2,
                seq: 1,
                ops: vec![WalOp::Set { key: b"k".to_vec(), locator: vec![1, 2, 3] }],
            },
            Section {
                box_uid: BoxUid(9),
                partition: 5,
                seq: 7,
                ops: vec![
                    WalOp::DeleteRange(RangeTombstone { start: b"a".to_vec(), end: Vec::new(), hlc: Hlc::ZERO }),
                    WalOp::Set { key: b"z".to_vec(), locator: vec![4] },
                ],
            },
        ];
        let body = encode_body(&sections);
        assert_eq!(decode_body(&body), Ok(sections));
        for n in 0..body.len() {
            assert!(decode_body(&body[..n]).is_err(), "a body cut at {n} was accepted");
        }
    }

    #[test]
    fn a_framed_record_scans_as_one_record() {
        let mut b = RecordBuilder::new(vec![7; 100]);
        b.section(BoxUid(1), 0, 1, [WalOpRef::Set { key: b"key", locator: b"loc" }].into_iter());
        let framed = b.finish(SEGMENT_HEADER_BYTES as u64);
        let (records, end) =
            record::scan_records(&framed, SEGMENT_HEADER_BYTES as u64, limits::WAL_RECORD_BYTES_MAX).expect("scan");
        assert_eq!(end, record::ScanEnd::Clean);
        assert_eq!(records.len(), 1);
        let sections = decode_body(records[0].1).expect("decode");
        assert_eq!(sections[0].ops, vec![WalOp::Set { key: b"key".to_vec(), locator: b"loc".to_vec() }]);
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_file_name(&file_name(70)), Some(70));
        assert_eq!(parse_shard_dir_name(&shard_dir_name(4)), Some(4));
        assert_eq!(parse_file_name("WAL-000001"), None);
        assert_eq!(parse_file_name("LOG-1"), None, "one spelling per number");
    }
}
