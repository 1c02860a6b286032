//! Golden files: one file per shipped format version under `core/testdata/`. Each test checks that
//! today's writer still produces the shipped bytes and today's reader still reads them. A change
//! to a format must add a new version (and a new golden file), never silently alter an old one.
//! Regenerate only when adding a version: `CANDYBOX_BLESS=1 cargo test -p candybox-core --test golden`.

use std::path::PathBuf;

use candybox_core::{
    hlc::Hlc,
    locator::{CandyBody, CandyLocator, Kind, Part, SegmentRef},
    manifest::{self, Change, RenameIntent, TableRecord, UploadPart},
    record,
    syrup::{ChunkEncoder, SyrupHeader, SYRUP_HEADER_BYTES},
    types::{BoxUid, RangeTombstone, SyrupId},
    wal::{self, WalOp},
};

fn golden(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name);
    if std::env::var("CANDYBOX_BLESS").is_ok() {
        std::fs::write(&path, bytes).expect("write golden file");
    }
    let shipped = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(
        bytes,
        shipped.as_slice(),
        "{name}: the writer no longer produces the shipped format; add a new version instead"
    );
    shipped
}

/// A shipped file of a format version today's writer no longer produces.
fn read_golden(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

const HLC: Hlc = Hlc { physical_ms: 1_700_000_000_123, logical: 4, node: 2 };

fn sample_part() -> Part {
    Part {
        length: 1500,
        chunk_size: 1024,
        checksum: 0xdead_beef,
        segments: vec![SegmentRef { syrup: SyrupId(0x0002_0000_0000_1234), offset: 64, length: 1500 }],
    }
}

#[test]
fn locator_v1() {
    let put = CandyLocator {
        hlc: HLC,
        kind: Kind::Put,
        version_id: None,
        content_type: "image/png".into(),
        user_meta: vec![("owner".into(), "ada".into())],
        created_ms: 1_700_000_000_000,
        size: 1500,
        checksum: 0x0102_0304,
        body: CandyBody::Parts(vec![sample_part()]),
    };
    let inline = CandyLocator { body: CandyBody::Inline(b"tiny".to_vec()), size: 4, ..put.clone() };
    let tomb = CandyLocator::tombstone(HLC);
    for (name, l) in
        [("locator-v1-parts.bin", put), ("locator-v1-inline.bin", inline), ("locator-v1-tombstone.bin", tomb)]
    {
        let shipped = golden(name, &l.encode());
        assert_eq!(CandyLocator::decode(&shipped).expect("decode shipped"), l);
    }
}

#[test]
fn syrup_v1() {
    let header = SyrupHeader {
        id: SyrupId(0x0002_0000_0000_1234),
        box_uid: BoxUid(77),
        created_ms: 1_700_000_000_000,
        partition: 3,
    };
    let mut file = header.encode();
    let mut enc = ChunkEncoder::new(SYRUP_HEADER_BYTES, 1024);
    let payload: Vec<u8> = (0..1500u32).map(|i| (i % 253) as u8).collect();
    enc.push(&payload, u64::MAX, &mut file);
    enc.finish(&mut file);
    let shipped = golden("syrup-v1.syrup", &file);
    assert_eq!(SyrupHeader::decode(&shipped[..SYRUP_HEADER_BYTES as usize]).expect("header"), header);
    let map = bytes::Bytes::from(shipped);
    let first = candybox_core::syrup::verify_chunk(&map, 64, 1024).expect("chunk 0");
    let second = candybox_core::syrup::verify_chunk(&map, 64 + 1028, 476).expect("chunk 1");
    assert_eq!([first.as_ref(), second.as_ref()].concat(), payload);
}

#[test]
fn wal_v1() {
    let ops = vec![
        WalOp::Set { key: b"photos/cat.png".to_vec(), locator: CandyLocator::tombstone(HLC).encode() },
        WalOp::DeleteRange(RangeTombstone { start: b"a".to_vec(), end: b"b".to_vec(), hlc: HLC }),
    ];
    let mut file = wal::encode_header(9);
    let at = file.len() as u64;
    record::encode_record(at, &wal::encode_body(&ops), &mut file);
    let shipped = golden("wal-v1.log", &file);
    assert_eq!(wal::decode_header(&shipped[..wal::WAL_HEADER_BYTES]).expect("header"), 9);
    let (records, end) = record::scan_records(&shipped[wal::WAL_HEADER_BYTES..], at, 1 << 20).expect("records");
    assert_eq!(end, record::ScanEnd::Clean);
    assert_eq!(wal::decode_body(records[0].1).expect("body"), ops);
}

#[test]
fn log_v1() {
    use candybox_core::log::format::{self, Section, SegmentHeader, SEGMENT_HEADER_BYTES};
    let header = SegmentHeader { shard: 1, number: 9, base: 4, first: 5, previous: 7, previous_end: None };
    let sections = vec![
        Section {
            box_uid: BoxUid(0x1122_3344_5566_7788),
            partition: 3,
            seq: 12,
            ops: vec![WalOp::Set { key: b"photos/cat.png".to_vec(), locator: CandyLocator::tombstone(HLC).encode() }],
        },
        Section {
            box_uid: BoxUid(0x1122_3344_5566_7788),
            partition: 6,
            seq: 1,
            ops: vec![WalOp::DeleteRange(RangeTombstone { start: b"a".to_vec(), end: b"b".to_vec(), hlc: HLC })],
        },
    ];
    let mut file = format::encode_header(&header);
    let at = file.len() as u64;
    record::encode_record(at, &format::encode_body(&sections), &mut file);
    let shipped = golden("log-v1.log", &file);
    assert_eq!(format::decode_header(&shipped[..SEGMENT_HEADER_BYTES]).expect("header"), header);
    let (records, end) = record::scan_records(&shipped[SEGMENT_HEADER_BYTES..], at, 1 << 20).expect("records");
    assert_eq!(end, record::ScanEnd::Clean);
    assert_eq!(format::decode_body(records[0].1).expect("body"), sections);
}

/// A segment header of version 2: it says where the previous segment's records end (a segment
/// may be prepared full of zeros ahead of its records).
#[test]
fn log_v2_header() {
    use candybox_core::log::format::{self, SegmentHeader, SEGMENT_HEADER_BYTES};
    let header = SegmentHeader { shard: 1, number: 9, base: 4, first: 5, previous: 7, previous_end: Some(4096) };
    let file = format::encode_header(&header);
    let shipped = golden("log-v2-header.bin", &file);
    assert_eq!(shipped.len(), SEGMENT_HEADER_BYTES);
    assert_eq!(format::decode_header(&shipped).expect("header"), header);
}

/// The manifest edit a flush writes since the shard commit log (tag 14).
#[test]
fn manifest_v1_log_flushed() {
    use candybox_core::log::{LogPosition, LogWriter};
    let changes = vec![
        Change::LogNumber(4),
        Change::LogFlushed {
            position: LogPosition { segment: 9, offset: 4096 },
            seq: 77,
            writer: LogWriter { base: 4, shard: 1 },
        },
        Change::NextFileNumber(12),
    ];
    let mut file = manifest::encode_header(5);
    let at = file.len() as u64;
    record::encode_record(at, &manifest::encode_edit(&changes), &mut file);
    let shipped = golden("manifest-v1-log-flushed.log", &file);
    let (records, _) = record::scan_records(&shipped[manifest::MANIFEST_HEADER_BYTES..], at, 1 << 20).expect("records");
    assert_eq!(manifest::decode_edit(records[0].1).expect("edit"), changes);
}

#[test]
fn manifest_v1() {
    let changes = vec![
        Change::LogNumber(4),
        Change::NextFileNumber(12),
        Change::HlcFloor(HLC),
        Change::AddTable(TableRecord {
            number: 7,
            level: 1,
            size: 4096,
            smallest: b"a".to_vec(),
            largest: b"z".to_vec(),
            max_hlc: HLC,
        }),
        Change::RemoveTable(5),
        Change::SyrupCreated(SyrupId(0x0002_0000_0000_1234)),
        Change::SyrupDropped(SyrupId(0x0002_0000_0000_1200)),
        Change::UploadCreated {
            id: 99,
            key: b"big.iso".to_vec(),
            content_type: "application/x-iso".into(),
            user_meta: vec![],
            created_ms: 5,
        },
        Change::UploadPart { id: 99, number: 1, part: UploadPart { part: sample_part(), created_ms: 6 } },
        Change::UploadEnded(98),
        Change::Intent(RenameIntent {
            token: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            source_key: b"old".to_vec(),
            source_hlc: HLC,
            target_key: b"new".to_vec(),
            target_partition: 5,
            created_ms: 8,
        }),
        Change::IntentCleared(0x42),
    ];
    let mut file = manifest::encode_header(3);
    let at = file.len() as u64;
    record::encode_record(at, &manifest::encode_edit(&changes), &mut file);
    let shipped = golden("manifest-v1.log", &file);
    assert_eq!(manifest::decode_header(&shipped[..manifest::MANIFEST_HEADER_BYTES]).expect("header"), 3);
    let (records, _) = record::scan_records(&shipped[manifest::MANIFEST_HEADER_BYTES..], at, 1 << 20).expect("records");
    assert_eq!(manifest::decode_edit(records[0].1).expect("edit"), changes);
    let current = golden("current-v1.bin", &manifest::encode_current(3));
    assert_eq!(manifest::decode_current(&current).expect("current"), 3);
}

#[test]
fn coord_v1() {
    use std::collections::BTreeSet;

    use candybox_core::coord::{
        decode_refs,
        embedded::{EmbeddedCoordination, LOG_FILE},
        encode_refs, paths, BoxMeta, Coordination, CreateMode, RenameMarker,
    };

    // Version 1 of the Box descriptor had no node; it is read as "not placed" (node 0).
    let meta = BoxMeta {
        partitions: 8,
        created_ms: 1_700_000_000_000,
        box_uid: BoxUid(0x0102_0304_0506_0708),
        node: 0,
        versioning: Default::default(),
    };
    let marker = RenameMarker {
        source_partition: 3,
        target_partition: 5,
        target_key: b"photos/new.png".to_vec(),
        created_ms: 1_700_000_000_001,
    };
    let refs: BTreeSet<SyrupId> =
        [SyrupId(0x0002_0000_0000_1234), SyrupId(0x0002_0000_0000_1300), SyrupId(0x0003_0000_0000_0001)].into();
    let shipped_meta = read_golden("coord-box-meta-v1.bin");
    assert_eq!(BoxMeta::decode(&shipped_meta).expect("box meta v1"), meta);
    let placed = BoxMeta { node: 2, ..meta };
    let shipped_v2 = golden("coord-box-meta-v2.bin", &placed.encode());
    assert_eq!(BoxMeta::decode(&shipped_v2).expect("box meta v2"), placed);
    let shipped_marker = golden("coord-rename-marker-v1.bin", &marker.encode());
    assert_eq!(RenameMarker::decode(&shipped_marker).expect("rename marker"), marker);
    let shipped_refs = golden("coord-refs-v1.bin", &encode_refs(&refs));
    assert_eq!(decode_refs(&shipped_refs).expect("refs"), refs);

    // The log the store writes for a fixed sequence of calls (compaction never runs at this size).
    let token = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut s = EmbeddedCoordination::open(dir.path()).expect("open");
        s.create(&paths::box_meta("photos"), &shipped_meta, CreateMode::Persistent).expect("create meta");
        s.create(&paths::member(2), b"ephemeral: never in the log", CreateMode::Ephemeral).expect("member");
        s.put(&paths::partition_refs("photos", 3), &encode_refs(&BTreeSet::new())).expect("put refs");
        s.put(&paths::partition_refs("photos", 3), &encode_refs(&refs)).expect("put refs again");
        s.create(&paths::rename_marker("photos", token), &marker.encode(), CreateMode::Persistent).expect("marker");
        s.delete(&paths::rename_marker("photos", token), Some(0)).expect("delete marker");
    }
    let written = std::fs::read(dir.path().join(LOG_FILE)).expect("read log");
    let shipped = golden("coord-v1.log", &written);
    assert!(!shipped.windows(9).any(|w| w == b"ephemeral"), "an ephemeral entry reached the log");
    // Today's reader opens the shipped log.
    let copy = tempfile::tempdir().expect("tempdir");
    std::fs::write(copy.path().join(LOG_FILE), &shipped).expect("copy log");
    let mut s = EmbeddedCoordination::open(copy.path()).expect("open shipped log");
    // meta (with its parents), `members` (the ephemeral's parent), refs created, refs set,
    // marker created, marker deleted.
    assert_eq!(s.open_report().records, 6);
    assert_eq!(s.get(&paths::box_meta("photos")).expect("get"), Some((shipped_meta.clone(), 0)));
    assert_eq!(s.get(&paths::partition_refs("photos", 3)).expect("get"), Some((encode_refs(&refs), 1)));
    assert_eq!(s.get(&paths::member(2)).expect("get"), None);
    assert_eq!(s.get("members").expect("get"), Some((Vec::new(), 0)));
    assert_eq!(s.children(&paths::renames("photos")).expect("children"), Vec::<String>::new());
    assert_eq!(s.children(&paths::box_root("photos")).expect("children"), ["meta", "partitions", "renames"]);
}
