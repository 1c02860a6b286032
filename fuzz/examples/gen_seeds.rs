//! Writes the seed corpora under `fuzz/corpus-seeds/<target>/` from real encodings, so every
//! fuzz run starts from inputs that get past the magic, version and checksums.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds`.
//! The output is a pure function of this file and the encoders: rerun it after a format change
//! and commit the result. Each seed is checked to decode before it is written.

use std::{fs, path::PathBuf};

use bytes::Bytes;
use candybox_wire::{fb, FrameHeader, FrameKind, FLAG_END};
use candybox_core::{
    hlc::Hlc,
    locator::{CandyBody, CandyLocator, Kind, Part, SegmentRef},
    manifest::{self, Change, RenameIntent, TableRecord, UploadPart},
    record,
    syrup::SyrupHeader,
    table::{self, Footer, Table, TableOptions, TableWriter, FOOTER_BYTES},
    types::{BoxUid, RangeTombstone, SyrupId},
    wal::{self, WalOp},
};

fn hlc(physical_ms: u64) -> Hlc {
    Hlc { physical_ms, logical: 3, node: 7 }
}

fn parts_locator() -> CandyLocator {
    CandyLocator {
        hlc: hlc(1_700_000_000_000),
        kind: Kind::Put,
        version_id: None,
        content_type: "text/plain".into(),
        user_meta: vec![("owner".into(), "ann".into())],
        created_ms: 1_700_000_000_000,
        size: 3000,
        checksum: 0xdead_beef,
        body: CandyBody::Parts(vec![
            Part {
                length: 2000,
                chunk_size: 1024,
                checksum: 1,
                segments: vec![
                    SegmentRef { syrup: SyrupId(5), offset: 64, length: 1024 },
                    SegmentRef { syrup: SyrupId(6), offset: 64, length: 976 },
                ],
            },
            Part {
                length: 1000,
                chunk_size: 512,
                checksum: 2,
                segments: vec![SegmentRef { syrup: SyrupId(5), offset: 2000, length: 1000 }],
            },
        ]),
    }
}

fn inline_locator() -> CandyLocator {
    CandyLocator {
        hlc: hlc(1_700_000_000_001),
        kind: Kind::Put,
        version_id: None,
        content_type: "application/octet-stream".into(),
        user_meta: Vec::new(),
        created_ms: 1_700_000_000_001,
        size: 5,
        checksum: 7,
        body: CandyBody::Inline(b"hello".to_vec()),
    }
}

fn locator_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let seeds = vec![
        ("parts", parts_locator().encode()),
        ("inline", inline_locator().encode()),
        ("tombstone", CandyLocator::tombstone(hlc(9)).encode()),
    ];
    for (name, bytes) in &seeds {
        CandyLocator::decode(bytes).unwrap_or_else(|e| panic!("seed {name}: {e}"));
    }
    let header =
        SyrupHeader { id: SyrupId(5), box_uid: BoxUid(11), created_ms: 1_700_000_000_000, partition: 3 }.encode();
    SyrupHeader::decode(&header).expect("syrup header seed");
    let mut seeds = seeds;
    seeds.push(("syrup-header", header));
    seeds
}

fn wal_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let file = |bodies: &[Vec<u8>]| {
        let mut out = wal::encode_header(4);
        for body in bodies {
            let offset = out.len() as u64;
            record::encode_record(offset, body, &mut out);
        }
        out
    };
    let puts = wal::encode_body(&[
        WalOp::Set { key: b"photos/cat.jpg".to_vec(), locator: inline_locator().encode() },
        WalOp::Set { key: b"photos/dog.jpg".to_vec(), locator: parts_locator().encode() },
    ]);
    let rename = wal::encode_body(&[
        WalOp::Set { key: b"b".to_vec(), locator: CandyLocator::tombstone(hlc(10)).encode() },
        WalOp::DeleteRange(RangeTombstone { start: b"a".to_vec(), end: b"c".to_vec(), hlc: hlc(10) }),
    ]);
    let whole = file(&[puts.clone(), rename.clone()]);
    let mut torn = whole.clone();
    torn.truncate(whole.len() - 3);
    let seeds = vec![
        ("header-only", file(&[])),
        ("two-records", whole),
        ("torn-tail", torn),
        ("empty-record", file(&[wal::encode_body(&[])])),
    ];
    for (name, bytes) in &seeds {
        wal::decode_header(&bytes[..wal::WAL_HEADER_BYTES]).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        let (records, _) = record::scan_records(&bytes[wal::WAL_HEADER_BYTES..], wal::WAL_HEADER_BYTES as u64, 1 << 20)
            .unwrap_or_else(|e| panic!("seed {name}: {e}"));
        for (_, body) in records {
            wal::decode_body(body).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        }
    }
    seeds
}

fn log_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use candybox_core::log::format::{self, Section, SegmentHeader, SEGMENT_HEADER_BYTES};
    let file = |bodies: &[Vec<u8>]| {
        let mut out = format::encode_header(&SegmentHeader { shard: 1, number: 9, base: 4, first: 5, previous: 7, previous_end: None });
        for body in bodies {
            let offset = out.len() as u64;
            record::encode_record(offset, body, &mut out);
        }
        out
    };
    let two_partitions = format::encode_body(&[
        Section { box_uid: BoxUid(7), partition: 0, seq: 1, ops: vec![WalOp::Set { key: b"photos/cat.jpg".to_vec(), locator: inline_locator().encode() }] },
        Section { box_uid: BoxUid(7), partition: 5, seq: 3, ops: vec![WalOp::Set { key: b"photos/dog.jpg".to_vec(), locator: parts_locator().encode() }] },
    ]);
    let rename = format::encode_body(&[Section {
        box_uid: BoxUid(8),
        partition: 2,
        seq: 9,
        ops: vec![
            WalOp::Set { key: b"b".to_vec(), locator: CandyLocator::tombstone(hlc(10)).encode() },
            WalOp::DeleteRange(RangeTombstone { start: b"a".to_vec(), end: b"c".to_vec(), hlc: hlc(10) }),
        ],
    }]);
    let whole = file(&[two_partitions, rename]);
    let mut torn = whole.clone();
    torn.truncate(whole.len() - 3);
    let seeds = vec![("header-only", file(&[])), ("two-records", whole), ("torn-tail", torn)];
    for (name, bytes) in &seeds {
        format::decode_header(&bytes[..SEGMENT_HEADER_BYTES]).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        let (records, _) = record::scan_records(&bytes[SEGMENT_HEADER_BYTES..], SEGMENT_HEADER_BYTES as u64, 1 << 20)
            .unwrap_or_else(|e| panic!("seed {name}: {e}"));
        for (_, body) in records {
            format::decode_body(body).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        }
    }
    seeds
}

fn manifest_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let part = match parts_locator().body {
        CandyBody::Parts(mut parts) => parts.remove(0),
        CandyBody::Inline(_) => unreachable!("parts_locator has parts"),
    };
    let all = vec![
        Change::AddTable(TableRecord {
            number: 3,
            level: 1,
            size: 631,
            smallest: b"a".to_vec(),
            largest: b"z".to_vec(),
            max_hlc: hlc(5),
        }),
        Change::RemoveTable(2),
        Change::LogNumber(4),
        Change::NextFileNumber(5),
        Change::SyrupCreated(SyrupId(9)),
        Change::SyrupDropped(SyrupId(8)),
        Change::HlcFloor(hlc(6)),
        Change::UploadCreated {
            id: 1,
            key: b"big/video".to_vec(),
            content_type: "video/mp4".into(),
            user_meta: vec![("a".into(), "b".into())],
            created_ms: 7,
        },
        Change::UploadPart { id: 1, number: 1, part: UploadPart { part, created_ms: 8 } },
        Change::Intent(RenameIntent {
            token: 77,
            source_key: b"s".to_vec(),
            source_hlc: hlc(7),
            target_key: b"t".to_vec(),
            target_partition: 3,
            created_ms: 9,
        }),
    ];
    let ended = vec![Change::UploadEnded(1), Change::IntentCleared(77), Change::RemoveTable(3)];
    let seeds = vec![
        ("all-changes", manifest::encode_edit(&all)),
        ("endings", manifest::encode_edit(&ended)),
        (
            "flush",
            manifest::encode_edit(&[
                Change::AddTable(TableRecord {
                    number: 12,
                    level: 0,
                    size: 4096,
                    smallest: b"k1".to_vec(),
                    largest: b"k9".to_vec(),
                    max_hlc: hlc(12),
                }),
                Change::LogNumber(11),
            ]),
        ),
    ];
    for (name, bytes) in &seeds {
        manifest::decode_edit(bytes).unwrap_or_else(|e| panic!("seed {name}: {e}"));
    }
    let mut seeds = seeds;
    seeds.push(("header", manifest::encode_header(3)));
    seeds.push(("current", manifest::encode_current(3)));
    seeds
}

/// A table with `n` entries and `tombstones`, cut into blocks of about `block_bytes_target`.
fn table_file(n: u32, tombstones: &[RangeTombstone], block_bytes_target: usize) -> Vec<u8> {
    let mut w = TableWriter::new(TableOptions { block_bytes_target, bloom_bits_per_key: 10 });
    for i in 0..n {
        let key = format!("candy/{i:02}");
        w.add(key.as_bytes(), format!("locator-{i}").as_bytes(), hlc(u64::from(i) + 100), [SyrupId(u64::from(i % 3))]);
    }
    for rt in tombstones {
        w.add_range_tombstone(rt.clone());
    }
    w.finish().0
}

fn table_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let rt = |start: &[u8], end: &[u8], ms| RangeTombstone { start: start.to_vec(), end: end.to_vec(), hlc: hlc(ms) };
    let seeds = vec![
        // The golden file of format v1: ten entries in blocks of 64 bytes, one range tombstone.
        ("golden-v1", include_bytes!("../../core/testdata/table-v1.sst").to_vec()),
        ("one-block", table_file(3, &[], 4096)),
        ("empty", table_file(0, &[], 4096)),
        ("tombstones-only", table_file(0, &[rt(b"a", b"b", 1), rt(b"c", b"", 2)], 4096)),
    ];
    for (name, bytes) in &seeds {
        Table::open(Bytes::copy_from_slice(bytes)).unwrap_or_else(|e| panic!("seed {name}: {e}"));
    }
    let mut seeds = seeds;
    let footer = seeds[0].1[seeds[0].1.len() - FOOTER_BYTES..].to_vec();
    Footer::decode(&footer).expect("footer seed");
    seeds.push(("footer", footer));
    seeds
}

fn block_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let block = |entries: &[(&[u8], &[u8])]| table::encode_block(entries.iter().copied());
    let long_value = vec![0x5a; 200];
    let seeds = vec![
        ("one-entry", block(&[(b"k", b"v")])),
        ("three-entries", block(&[(b"candy/00", b"locator-0"), (b"candy/01", b""), (b"candy/02", b"locator-2")])),
        ("two-byte-varint", block(&[(b"a", &long_value), (b"b", b"x")])),
    ];
    for (name, bytes) in &seeds {
        table::decode_block(bytes).unwrap_or_else(|e| panic!("seed {name}: {e}"));
    }
    seeds
}

fn frame(kind: FrameKind, request_id: u64, flags: u16, body: &[u8], payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader::for_body(kind, request_id, flags, body, payload.len() as u32);
    let mut out = header.encode().to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(payload);
    out
}

fn request(fbb: &mut flatbuffers::FlatBufferBuilder<'_>, kind: fb::RequestBody, body: flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>) -> Vec<u8> {
    let root = fb::Request::create(fbb, &fb::RequestArgs { body_type: kind, body: Some(body) });
    fbb.finish(root, None);
    let bytes = fbb.finished_data().to_vec();
    fbb.reset();
    bytes
}

fn wire_locator() -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let segments = fbb.create_vector(&[fb::SegmentRef::new(0x0001_0000_0000_0001, 64, 3000)]);
    let part = fb::Part::create(&mut fbb, &fb::PartArgs { length: 3000, chunk_size: 1024, checksum: 7, segments: Some(segments) });
    let parts = fbb.create_vector(&[part]);
    let content_type = fbb.create_string("text/plain");
    let (k, v) = (fbb.create_string("owner"), fbb.create_string("ann"));
    let kv = fb::KeyValue::create(&mut fbb, &fb::KeyValueArgs { key: Some(k), value: Some(v) });
    let meta = fbb.create_vector(&[kv]);
    let hlc = fb::Hlc::new(1_700_000_000_000, 3, 7);
    let locator = fb::Locator::create(
        &mut fbb,
        &fb::LocatorArgs {
            version: 1,
            hlc: Some(&hlc),
            kind: fb::LocatorKind::Put,
            content_type: Some(content_type),
            user_meta: Some(meta),
            created_ms: 1_700_000_000_000,
            size: 3000,
            checksum: 9,
            inline_body: None,
            parts: Some(parts),
            box_uid: 42,
        },
    );
    fbb.finish(locator, None);
    fbb.finished_data().to_vec()
}

fn wire_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut seeds = Vec::new();

    let (name, key) = (fbb.create_string("photos"), fbb.create_vector(b"cat.jpg"));
    let content_type = fbb.create_string("image/jpeg");
    let put = fb::Put::create(&mut fbb, &fb::PutArgs { box_name: Some(name), key: Some(key), content_type: Some(content_type), user_meta: None, size: 10, condition: None });
    let body = request(&mut fbb, fb::RequestBody::Put, put.as_union_value());
    // A put streamed over two frames: the request with 4 bytes, then a data frame with 6.
    let mut stream = frame(FrameKind::Request, 1, 0, &body, b"0123");
    stream.extend(frame(FrameKind::Data, 1, FLAG_END, &[], b"456789"));
    seeds.push(("put-streamed", stream));

    let (name, key) = (fbb.create_string("photos"), fbb.create_vector(b"cat.jpg"));
    let get = fb::Get::create(&mut fbb, &fb::GetArgs { box_name: Some(name), key: Some(key), range_kind: fb::RangeKind::FromTo, first: 2, last: 9, version_id: None });
    let body = request(&mut fbb, fb::RequestBody::Get, get.as_union_value());
    seeds.push(("get-range", frame(FrameKind::Request, 2, FLAG_END, &body, &[])));

    let locator = wire_locator();
    let (name, key, loc) = (fbb.create_string("photos"), fbb.create_vector(b"dog.jpg"), fbb.create_vector(&locator));
    let token = fbb.create_vector(&[5u8; 16]);
    let zcp = fb::ZeroCopyPut::create(&mut fbb, &fb::ZeroCopyPutArgs { box_name: Some(name), key: Some(key), locator: Some(loc), rename_token: Some(token), source_partition: 1, condition: None, replace: None });
    let body = request(&mut fbb, fb::RequestBody::ZeroCopyPut, zcp.as_union_value());
    seeds.push(("zero-copy-put", frame(FrameKind::Request, 3, FLAG_END, &body, &[])));
    seeds.push(("locator-bare", locator));

    let (name, prefix, after) = (fbb.create_string("photos"), fbb.create_vector(b"c"), fbb.create_vector(b"cat"));
    let list = fb::List::create(&mut fbb, &fb::ListArgs { box_name: Some(name), partition: 3, start: None, end: None, prefix: Some(prefix), start_after: Some(after), reverse: true, limit: 100, with_meta: true });
    let body = request(&mut fbb, fb::RequestBody::List, list.as_union_value());
    seeds.push(("list", frame(FrameKind::Request, 4, FLAG_END, &body, &[])));

    let hlc = fb::Hlc::new(1_700_000_000_000, 1, 1);
    let content_type = fbb.create_string("image/jpeg");
    let meta = fb::CandyMeta::create(&mut fbb, &fb::CandyMetaArgs { size: 10, checksum: 1, hlc: Some(&hlc), content_type: Some(content_type), user_meta: None, created_ms: 5 });
    let done = fb::GetDone::create(&mut fbb, &fb::GetDoneArgs { meta: Some(meta), first: 0, length: 10 });
    let reply = fb::Reply::create(&mut fbb, &fb::ReplyArgs { error: None, body_type: fb::ReplyBody::GetDone, body: Some(done.as_union_value()) });
    fbb.finish(reply, None);
    let body = fbb.finished_data().to_vec();
    fbb.reset();
    seeds.push(("get-reply", frame(FrameKind::Reply, 2, FLAG_END, &body, b"0123456789")));

    let (message, field) = (fbb.create_string("invalid box_name: too short"), fbb.create_string("box_name"));
    let error = fb::Error::create(&mut fbb, &fb::ErrorArgs { code: fb::ErrorCode::InvalidArgument, message: Some(message), field: Some(field), ..Default::default() });
    let reply = fb::Reply::create(&mut fbb, &fb::ReplyArgs { error: Some(error), body_type: fb::ReplyBody::NONE, body: None });
    fbb.finish(reply, None);
    let body = fbb.finished_data().to_vec();
    seeds.push(("error-reply", frame(FrameKind::Reply, 9, FLAG_END, &body, &[])));

    // Version 2 flow control: a get, a grant of 1 MiB for its reply, then a cancel of it.
    let (credit, grant) = FrameHeader::credit(2, 1 << 20);
    let mut control = seeds[1].1.clone();
    control.extend_from_slice(&credit);
    control.extend_from_slice(&grant);
    control.extend_from_slice(&FrameHeader::cancel(2));
    seeds.push(("credit-cancel", control));

    // Version 3 (issue 14): a put whose last data frame carries a trailer of digests; a
    // set-meta; a delete-many of two keys, one conditional.
    fbb.reset();
    let (name, key) = (fbb.create_string("photos"), fbb.create_vector(b"cat.jpg"));
    let put = fb::Put::create(&mut fbb, &fb::PutArgs { box_name: Some(name), key: Some(key), content_type: None, user_meta: None, size: -1, condition: None });
    let body = request(&mut fbb, fb::RequestBody::Put, put.as_union_value());
    let (k, v) = (fbb.create_string("digest-md5"), fbb.create_string("9e107d9d372bb6826bd81d3542a419d6"));
    let kv = fb::KeyValue::create(&mut fbb, &fb::KeyValueArgs { key: Some(k), value: Some(v) });
    let meta = fbb.create_vector(&[kv]);
    let trailer = fb::PutTrailer::create(&mut fbb, &fb::PutTrailerArgs { user_meta: Some(meta) });
    fbb.finish(trailer, None);
    let trailer = fbb.finished_data().to_vec();
    fbb.reset();
    let mut stream = frame(FrameKind::Request, 5, 0, &body, b"01");
    stream.extend(frame(FrameKind::Data, 5, FLAG_END, &trailer, b"23"));
    seeds.push(("put-trailer", stream));

    let (name, key, ct) = (fbb.create_string("photos"), fbb.create_vector(b"cat.jpg"), fbb.create_string("image/png"));
    let replace = fb::MetaReplace::create(&mut fbb, &fb::MetaReplaceArgs { content_type: Some(ct), user_meta: None });
    let (mk, mv) = (fbb.create_string("digest-md5"), fbb.create_string("00"));
    let condition = fb::Condition::create(&mut fbb, &fb::ConditionArgs { kind: fb::ConditionKind::IfMeta, meta_key: Some(mk), meta_value: Some(mv), ..Default::default() });
    let set = fb::SetMeta::create(&mut fbb, &fb::SetMetaArgs { box_name: Some(name), key: Some(key), replace: Some(replace), condition: Some(condition) });
    let body = request(&mut fbb, fb::RequestBody::SetMeta, set.as_union_value());
    seeds.push(("set-meta", frame(FrameKind::Request, 6, FLAG_END, &body, &[])));

    let name = fbb.create_string("photos");
    let (k1, k2) = (fbb.create_vector(b"a"), fbb.create_vector(b"b"));
    let absent = fb::Condition::create(&mut fbb, &fb::ConditionArgs { kind: fb::ConditionKind::IfAbsent, ..Default::default() });
    let d1 = fb::DeleteKey::create(&mut fbb, &fb::DeleteKeyArgs { key: Some(k1), condition: None, version_id: None });
    let d2 = fb::DeleteKey::create(&mut fbb, &fb::DeleteKeyArgs { key: Some(k2), condition: Some(absent), version_id: None });
    let keys = fbb.create_vector(&[d1, d2]);
    let many = fb::DeleteMany::create(&mut fbb, &fb::DeleteManyArgs { box_name: Some(name), keys: Some(keys) });
    let body = request(&mut fbb, fb::RequestBody::DeleteMany, many.as_union_value());
    seeds.push(("delete-many", frame(FrameKind::Request, 7, FLAG_END, &body, &[])));

    for (name, bytes) in &seeds {
        assert!(!bytes.is_empty(), "empty seed {name}");
    }
    seeds
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus-seeds");
    let targets = [
        ("wal_record", wal_seeds()),
        ("log_segment", log_seeds()),
        ("manifest_edit", manifest_seeds()),
        ("table_block", block_seeds()),
        ("table_footer", table_seeds()),
        ("locator", locator_seeds()),
        ("wire_frame", wire_seeds()),
    ];
    let mut total = 0;
    for (target, seeds) in targets {
        let dir = root.join(target);
        if dir.exists() {
            fs::remove_dir_all(&dir).expect("remove old seeds");
        }
        fs::create_dir_all(&dir).expect("create seed directory");
        for (name, bytes) in seeds {
            total += bytes.len();
            fs::write(dir.join(name), bytes).expect("write seed");
        }
    }
    println!("wrote {total} bytes of seeds under {}", root.display());
}
