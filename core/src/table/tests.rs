//! Whole-table tests: round trips against a `BTreeMap` model, every bound combination of range
//! scans, metadata, corruption (every byte flip, every truncation, structural mutations with
//! checksums recomputed) and the golden file of format v1.

use std::{collections::BTreeMap, ops::Bound};

use bytes::Bytes;
use rand::{rngs::SmallRng, Rng, SeedableRng};

use super::*;
use crate::{
    codec::{crc32, Reader},
    error::DecodeError,
    hlc::Hlc,
    limits::{LOCATOR_BYTES_MAX, STORED_KEY_BYTES_MAX},
    types::{RangeTombstone, SyrupId},
};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn hlc(physical_ms: u64) -> Hlc {
    Hlc { physical_ms, logical: 0, node: 1 }
}

/// The one fixture constructor: writes `model` (with a stamp and Syrup derived from each key's
/// position) and `tombstones` with `options`.
fn build(model: &Model, tombstones: &[RangeTombstone], options: TableOptions) -> (Vec<u8>, TableMeta) {
    let mut w = TableWriter::new(options);
    for (i, (k, v)) in model.iter().enumerate() {
        let i = i as u64;
        w.add(k, v, hlc(1000 + (i * 7919) % 500), [SyrupId(i % 5), SyrupId(100 + i % 3)]);
    }
    for rt in tombstones {
        w.add_range_tombstone(rt.clone());
    }
    assert_eq!(w.entry_count(), model.len() as u64);
    w.finish()
}

fn open(bytes: &[u8]) -> Table {
    Table::open(Bytes::copy_from_slice(bytes)).expect("table opens")
}

/// Random keys over a small alphabet, so that absent keys fall between present ones.
fn random_key(rng: &mut SmallRng) -> Vec<u8> {
    let len = rng.gen_range(1..8);
    (0..len).map(|_| b"abcd\xff"[rng.gen_range(0..5)]).collect()
}

fn random_model(rng: &mut SmallRng, n: usize, value_max: usize) -> Model {
    let mut model = Model::new();
    while model.len() < n {
        let len = rng.gen_range(0..=value_max);
        model.insert(random_key(rng), (0..len).map(|_| rng.gen()).collect());
    }
    model
}

fn collect(iter: TableIter) -> Vec<(Vec<u8>, Vec<u8>)> {
    iter.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("entry decodes")).collect()
}

fn in_range(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>, k: &[u8]) -> bool {
    let above_lo = match lo {
        Bound::Unbounded => true,
        Bound::Included(lo) => k >= lo.as_slice(),
        Bound::Excluded(lo) => k > lo.as_slice(),
    };
    let below_hi = match hi {
        Bound::Unbounded => true,
        Bound::Included(hi) => k <= hi.as_slice(),
        Bound::Excluded(hi) => k < hi.as_slice(),
    };
    above_lo && below_hi
}

fn small_blocks() -> TableOptions {
    TableOptions { block_bytes_target: 256, ..TableOptions::default() }
}

#[test]
fn random_entries_round_trip() {
    let mut rng = SmallRng::seed_from_u64(1);
    let model = random_model(&mut rng, 3000, 120);
    let (bytes, meta) = build(&model, &[], TableOptions { block_bytes_target: 1024, ..TableOptions::default() });
    let table = open(&bytes);
    assert!(table.block_count() > 50, "{} blocks", table.block_count());
    assert_eq!(table.meta(), &meta);
    assert_eq!(table.len_bytes(), bytes.len() as u64);
    assert_eq!(meta.entry_count, 3000);
    assert_eq!(Some(&meta.smallest_key), model.keys().next());
    assert_eq!(Some(&meta.largest_key), model.keys().next_back());
    for (k, v) in &model {
        assert_eq!(table.get(k).expect("get").as_deref(), Some(v.as_slice()), "key {k:?}");
    }
    let mut absent = 0;
    while absent < 3000 {
        let k = random_key(&mut rng);
        if !model.contains_key(&k) {
            assert_eq!(table.get(&k), Ok(None), "absent key {k:?}");
            absent += 1;
        }
    }
    assert_eq!(table.get(b""), Ok(None));
    assert_eq!(table.get(&[0xff; 9]), Ok(None));
    let all = collect(table.range(Bound::Unbounded, Bound::Unbounded, false));
    assert_eq!(all, model.clone().into_iter().collect::<Vec<_>>());
}

#[test]
fn range_matches_model_for_every_bound_combination() {
    let mut rng = SmallRng::seed_from_u64(2);
    let model = random_model(&mut rng, 400, 20);
    let (bytes, _) = build(&model, &[], small_blocks());
    let table = open(&bytes);
    assert!(table.block_count() > 10);
    let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    let mut candidates: Vec<Vec<u8>> = vec![Vec::new(), vec![0xff; 9], b"a".to_vec()];
    for _ in 0..20 {
        candidates.push(keys[rng.gen_range(0..keys.len())].clone());
        candidates.push(random_key(&mut rng));
    }
    candidates.extend(keys.first().cloned());
    candidates.extend(keys.last().cloned());
    let bounds = |k: &Vec<u8>| [Bound::Unbounded, Bound::Included(k.clone()), Bound::Excluded(k.clone())];
    let mut checked = 0;
    for lo_key in &candidates {
        for hi_key in &candidates {
            for lo in bounds(lo_key) {
                for hi in bounds(hi_key) {
                    let expected: Vec<(Vec<u8>, Vec<u8>)> = model
                        .iter()
                        .filter(|(k, _)| in_range(&lo, &hi, k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let forward = collect(table.range(lo.clone(), hi.clone(), false));
                    assert_eq!(forward, expected, "forward {lo:?}..{hi:?}");
                    let mut reverse = collect(table.range(lo.clone(), hi.clone(), true));
                    reverse.reverse();
                    assert_eq!(reverse, expected, "reverse {lo:?}..{hi:?}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 10_000);
}

#[test]
fn range_stops_early_and_is_fused() {
    let model: Model = (0..100u32).map(|i| (format!("k{i:03}").into_bytes(), vec![1])).collect();
    let (bytes, _) = build(&model, &[], TableOptions { block_bytes_target: 64, ..TableOptions::default() });
    let table = open(&bytes);
    let mut it = table.range(Bound::Included(b"k050".to_vec()), Bound::Unbounded, false);
    assert_eq!(it.next().map(|r| r.map(|(k, _)| k)), Some(Ok(Bytes::from_static(b"k050"))));
    let mut it = table.range(Bound::Excluded(b"k099".to_vec()), Bound::Unbounded, false);
    assert!(it.next().is_none());
    assert!(it.next().is_none());
    let mut it = table.range(Bound::Unbounded, Bound::Excluded(b"k000".to_vec()), true);
    assert!(it.next().is_none());
    let last = table.range(Bound::Unbounded, Bound::Unbounded, true).next();
    assert_eq!(last.map(|r| r.map(|(k, _)| k)), Some(Ok(Bytes::from_static(b"k099"))));
}

#[test]
fn keys_and_values_are_slices_of_the_mapping() {
    let model: Model = (0..50u32).map(|i| (format!("k{i:03}").into_bytes(), vec![i as u8; 30])).collect();
    let (bytes, _) = build(&model, &[], small_blocks());
    let data = Bytes::from(bytes);
    let table = Table::open(data.clone()).expect("opens");
    let range = data.as_ptr_range();
    let value = table.get(b"k007").expect("get").expect("present");
    assert!(range.contains(&value.as_ptr()));
    for entry in table.range(Bound::Unbounded, Bound::Unbounded, true) {
        let (k, v) = entry.expect("entry");
        assert!(range.contains(&k.as_ptr()) && range.contains(&v.as_ptr()));
    }
}

#[test]
fn range_tombstones_and_meta_round_trip() {
    let mut model = Model::new();
    let mut w = TableWriter::new(TableOptions::default());
    let syrups_of = [vec![SyrupId(9), SyrupId(3)], vec![], vec![SyrupId(3), SyrupId(3), SyrupId(12)]];
    for (i, syrups) in syrups_of.iter().enumerate() {
        let key = format!("key-{i}").into_bytes();
        let value = format!("value-{i}").into_bytes();
        w.add(&key, &value, hlc(50 + i as u64), syrups.iter().copied());
        model.insert(key, value);
    }
    let rts = [
        RangeTombstone { start: b"m".to_vec(), end: Vec::new(), hlc: hlc(70) },
        RangeTombstone { start: b"a".to_vec(), end: b"c".to_vec(), hlc: hlc(10) },
        RangeTombstone { start: b"a".to_vec(), end: b"b".to_vec(), hlc: hlc(60) },
    ];
    for rt in &rts {
        w.add_range_tombstone(rt.clone());
    }
    let (bytes, meta) = w.finish();
    assert_eq!(meta.syrups, vec![SyrupId(3), SyrupId(9), SyrupId(12)]);
    assert_eq!(meta.min_hlc, hlc(10));
    assert_eq!(meta.max_hlc, hlc(70));
    assert_eq!(meta.range_tombstone_count, 3);
    assert_eq!(meta.entry_count, 3);
    assert_eq!(meta.smallest_key, b"key-0");
    assert_eq!(meta.largest_key, b"key-2");
    let table = open(&bytes);
    assert_eq!(table.meta(), &meta);
    let mut sorted = rts.to_vec();
    sorted.sort_by(|a, b| (&a.start, &a.end, a.hlc).cmp(&(&b.start, &b.end, b.hlc)));
    assert_eq!(table.range_tombstones(), sorted.as_slice());
    assert_eq!(collect(table.range(Bound::Unbounded, Bound::Unbounded, false)), model.into_iter().collect::<Vec<_>>());
}

#[test]
fn table_of_only_range_tombstones() {
    let mut w = TableWriter::new(TableOptions::default());
    w.add_range_tombstone(RangeTombstone { start: b"x".to_vec(), end: b"y".to_vec(), hlc: hlc(5) });
    w.add_range_tombstone(RangeTombstone { start: Vec::new(), end: Vec::new(), hlc: hlc(3) });
    let (bytes, meta) = w.finish();
    assert_eq!(meta.entry_count, 0);
    assert!(meta.smallest_key.is_empty() && meta.largest_key.is_empty() && meta.syrups.is_empty());
    assert_eq!((meta.min_hlc, meta.max_hlc), (hlc(3), hlc(5)));
    let table = open(&bytes);
    assert_eq!(table.meta(), &meta);
    assert_eq!(table.block_count(), 0);
    assert_eq!(table.range_tombstones().len(), 2);
    assert_eq!(table.get(b"x"), Ok(None));
    assert!(table.range(Bound::Unbounded, Bound::Unbounded, false).next().is_none());
    assert!(table.range(Bound::Unbounded, Bound::Unbounded, true).next().is_none());
}

#[test]
fn empty_table_opens() {
    let (bytes, meta) = TableWriter::new(TableOptions::default()).finish();
    assert_eq!((meta.min_hlc, meta.max_hlc), (Hlc::ZERO, Hlc::ZERO));
    let table = open(&bytes);
    assert_eq!(table.meta(), &meta);
    assert_eq!(table.get(b"a"), Ok(None));
    assert!(table.range(Bound::Unbounded, Bound::Unbounded, true).next().is_none());
}

#[test]
fn largest_entries_get_their_own_blocks() {
    let mut model = Model::new();
    model.insert(vec![b'a'; STORED_KEY_BYTES_MAX], vec![1; LOCATOR_BYTES_MAX]);
    model.insert(vec![b'b'; 3], vec![2; 10]);
    model.insert(vec![b'c'; STORED_KEY_BYTES_MAX], vec![3; LOCATOR_BYTES_MAX]);
    let (bytes, _) = build(&model, &[], TableOptions::default());
    let table = open(&bytes);
    assert_eq!(table.block_count(), 3);
    for (k, v) in &model {
        assert_eq!(table.get(k).expect("get").as_deref(), Some(v.as_slice()));
    }
}

#[test]
fn no_bloom_filter_still_finds_everything() {
    let mut rng = SmallRng::seed_from_u64(3);
    let model = random_model(&mut rng, 200, 10);
    let (bytes, _) = build(&model, &[], TableOptions { bloom_bits_per_key: 0, ..small_blocks() });
    let table = open(&bytes);
    for (k, v) in &model {
        assert_eq!(table.get(k).expect("get").as_deref(), Some(v.as_slice()));
    }
    assert_eq!(table.get(b"zzz"), Ok(None));
}

#[test]
fn estimated_bytes_tracks_the_file_size() {
    let mut rng = SmallRng::seed_from_u64(4);
    let model = random_model(&mut rng, 2000, 100);
    let mut w = TableWriter::new(TableOptions::default());
    for (k, v) in &model {
        w.add(k, v, hlc(1), [SyrupId(1)]);
    }
    w.add_range_tombstone(RangeTombstone { start: b"a".to_vec(), end: b"b".to_vec(), hlc: hlc(2) });
    let estimate = w.estimated_bytes();
    let (bytes, _) = w.finish();
    assert!(estimate.abs_diff(bytes.len()) <= bytes.len() / 100, "estimate {estimate}, actual {}", bytes.len());
}

#[test]
#[should_panic(expected = "strictly increasing")]
fn writer_refuses_keys_out_of_order() {
    let mut w = TableWriter::new(TableOptions::default());
    w.add(b"b", b"", hlc(1), []);
    w.add(b"a", b"", hlc(1), []);
}

#[test]
#[should_panic(expected = "strictly increasing")]
fn writer_refuses_duplicate_keys() {
    let mut w = TableWriter::new(TableOptions::default());
    w.add(b"a", b"", hlc(1), []);
    w.add(b"a", b"", hlc(1), []);
}

#[test]
#[should_panic(expected = "range tombstone is empty")]
fn writer_refuses_empty_range_tombstones() {
    let mut w = TableWriter::new(TableOptions::default());
    w.add_range_tombstone(RangeTombstone { start: b"b".to_vec(), end: b"a".to_vec(), hlc: hlc(1) });
}

/// A small table with every kind of block: several data blocks, tombstones, Syrups.
fn small_table() -> (Model, Vec<u8>) {
    let model: Model = (0..24u32).map(|i| (format!("key{i:02}").into_bytes(), format!("v{i}").into_bytes())).collect();
    let rts = [
        RangeTombstone { start: b"key05".to_vec(), end: b"key07".to_vec(), hlc: hlc(2000) },
        RangeTombstone { start: b"x".to_vec(), end: Vec::new(), hlc: hlc(900) },
    ];
    let (bytes, _) = build(&model, &rts, TableOptions { block_bytes_target: 96, ..TableOptions::default() });
    (model, bytes)
}

/// Everything a reader can learn from a table; an error anywhere is the result.
#[derive(Debug, PartialEq)]
struct Observation {
    meta: TableMeta,
    range_tombstones: Vec<RangeTombstone>,
    forward: Vec<(Bytes, Bytes)>,
    reverse: Vec<(Bytes, Bytes)>,
    gets: Vec<Option<Bytes>>,
}

fn observe(bytes: Vec<u8>, probes: &[Vec<u8>]) -> Result<Observation, DecodeError> {
    let table = Table::open(Bytes::from(bytes))?;
    let forward = table.range(Bound::Unbounded, Bound::Unbounded, false).collect::<Result<Vec<_>, _>>()?;
    let reverse = table.range(Bound::Unbounded, Bound::Unbounded, true).collect::<Result<Vec<_>, _>>()?;
    let gets = probes.iter().map(|k| table.get(k)).collect::<Result<Vec<_>, _>>()?;
    Ok(Observation {
        meta: table.meta().clone(),
        range_tombstones: table.range_tombstones().to_vec(),
        forward,
        reverse,
        gets,
    })
}

#[test]
fn every_byte_flip_is_an_error_never_wrong_data() {
    let (model, bytes) = small_table();
    let mut probes: Vec<Vec<u8>> = model.keys().cloned().collect();
    probes.extend([b"key".to_vec(), b"key050".to_vec(), b"zz".to_vec()]);
    let good = observe(bytes.clone(), &probes).expect("intact table reads");
    assert!(open(&bytes).block_count() >= 4);
    let mut undetected = Vec::new();
    let mut checksum_errors = 0;
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut flipped = bytes.clone();
            flipped[at] ^= mask;
            match observe(flipped, &probes) {
                Err(DecodeError::ChecksumMismatch { .. }) => checksum_errors += 1,
                Err(_) => {}
                Ok(seen) => {
                    // Only a flip in padding could leave the results intact, and never change them.
                    assert_eq!(seen, good, "flip {mask:#x} at {at} changed the data");
                    undetected.push(at);
                }
            }
        }
    }
    // The blocks tile the file and every byte is under a CRC-32: there is no padding.
    assert_eq!(undetected, Vec::<usize>::new());
    assert!(checksum_errors > bytes.len() * 2);
}

#[test]
fn a_corrupt_data_block_names_its_offset_and_stays_contained() {
    let (model, bytes) = small_table();
    let footer = Footer::decode(&bytes[bytes.len() - FOOTER_BYTES..]).expect("footer");
    let expected = |k: &[u8]| model.get(k).map(|v| Bytes::copy_from_slice(v));
    // Data blocks are verified when read, so the table opens and other blocks still read.
    let mut flipped = bytes.clone();
    flipped[0] ^= 1;
    let table = open(&flipped);
    assert!(matches!(table.get(b"key00"), Err(DecodeError::ChecksumMismatch { offset: 0, .. })));
    assert_eq!(table.get(b"key23"), Ok(expected(b"key23")));
    // The last byte of the last data block: the error names that block's (non-zero) offset.
    let mut flipped = bytes.clone();
    let last_data_byte = footer.bloom.offset as usize - 1;
    flipped[last_data_byte] ^= 1;
    let table = open(&flipped);
    match table.get(b"key23") {
        Err(DecodeError::ChecksumMismatch { offset, .. }) => assert!(offset > 0 && offset < last_data_byte as u64),
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert_eq!(table.get(b"key00"), Ok(expected(b"key00")));
    let mut it = table.range(Bound::Unbounded, Bound::Unbounded, true);
    assert!(matches!(it.next(), Some(Err(DecodeError::ChecksumMismatch { .. }))));
    assert!(it.next().is_none(), "the iterator stops after an error");
}

#[test]
fn every_truncation_fails_open() {
    let (_, bytes) = small_table();
    for n in 0..bytes.len() {
        let err = Table::open(Bytes::copy_from_slice(&bytes[..n])).expect_err("truncated table opened");
        assert!(matches!(err, DecodeError::Truncated(_) | DecodeError::BadMagic { .. }), "truncation to {n}: {err:?}");
    }
    // Trailing garbage (a torn rewrite, a wrong length) fails the same way.
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 3]);
    assert!(matches!(Table::open(Bytes::from(longer)), Err(DecodeError::BadMagic { .. })));
}

/// Rewrites every CRC-32 of a table whose structure is intact enough to find them, so that
/// mutations reach the structural checks behind the checksums.
fn reseal(bytes: &mut [u8]) {
    let footer_at = bytes.len() - FOOTER_BYTES;
    let handle_at = |i: usize| footer_at + i * BLOCK_HANDLE_BYTES;
    let read_handle = |bytes: &[u8], at: usize| BlockHandle::decode(&mut Reader::new(&bytes[at..])).ok();
    let block_crc = |bytes: &[u8], h: BlockHandle| {
        let start = usize::try_from(h.offset).ok()?;
        Some(crc32(&[bytes.get(start..start.checked_add(h.length as usize)?)?]))
    };
    let put_crc = |bytes: &mut [u8], at: usize, crc: u32| bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    // Data block checksums live in the index entries.
    if let Some(index) = read_handle(bytes, handle_at(0)) {
        if let Ok(start) = usize::try_from(index.offset) {
            if start < footer_at {
                let count = Reader::new(&bytes[start..]).u32().unwrap_or(0) as usize;
                let mut at = start + 4;
                for _ in 0..count.min(1000) {
                    let Some(h) = read_handle(bytes, at) else { break };
                    if let Some(crc) = block_crc(bytes, h) {
                        put_crc(bytes, at + 12, crc);
                    }
                    let Ok(key_len) = Reader::new(&bytes[at + 20..]).u16() else { break };
                    at += 22 + usize::from(key_len);
                    if at >= footer_at {
                        break;
                    }
                }
            }
        }
    }
    for i in 0..4 {
        if let Some(h) = read_handle(bytes, handle_at(i)) {
            if let Some(crc) = block_crc(bytes, h) {
                put_crc(bytes, handle_at(i) + 12, crc);
            }
        }
    }
    let crc_at = footer_at + 4 * BLOCK_HANDLE_BYTES;
    let crc = crc32(&[&bytes[footer_at..crc_at], &bytes[crc_at + 4..]]);
    put_crc(bytes, crc_at, crc);
}

/// The structural fuzzer: random mutations with every checksum recomputed never panic, and a
/// table that still opens and reads is internally consistent.
#[test]
fn mutations_behind_valid_checksums_never_panic() {
    let (_, bytes) = small_table();
    let mut resealed = bytes.clone();
    reseal(&mut resealed);
    assert_eq!(resealed, bytes, "resealing an intact table changes nothing");
    let mut rng = SmallRng::seed_from_u64(5);
    let mut opened = 0;
    for _ in 0..5_000 {
        let mut b = bytes.clone();
        for _ in 0..rng.gen_range(1..3) {
            let at = rng.gen_range(0..b.len() - FOOTER_BYTES + 64);
            b[at] = if rng.gen() { rng.gen() } else { b[at].wrapping_add(1) };
        }
        reseal(&mut b);
        let Ok(table) = Table::open(Bytes::from(b)) else { continue };
        opened += 1;
        let Ok(entries) = table.range(Bound::Unbounded, Bound::Unbounded, false).collect::<Result<Vec<_>, _>>() else {
            continue;
        };
        assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "keys out of order");
        assert_eq!(entries.len() as u64, table.meta().entry_count);
        for (k, v) in &entries {
            if let Ok(found) = table.get(k) {
                // The bloom filter may have been mutated into a false negative, never a wrong value.
                assert!(found.is_none() || found.as_ref() == Some(v));
            }
        }
        if let Ok(mut reverse) = table.range(Bound::Unbounded, Bound::Unbounded, true).collect::<Result<Vec<_>, _>>() {
            reverse.reverse();
            assert_eq!(reverse, entries);
        }
    }
    assert!(opened > 100, "only {opened} mutated tables opened");
}

/// Builds the golden table of format v1: if this fixture changes, the format changed.
fn golden_table() -> Vec<u8> {
    let mut w = TableWriter::new(TableOptions { block_bytes_target: 64, bloom_bits_per_key: 10 });
    for i in 0..10u32 {
        let key = format!("candy/{i:02}");
        w.add(key.as_bytes(), format!("locator-{i}").as_bytes(), hlc(u64::from(i) + 100), [SyrupId(u64::from(i % 3))]);
    }
    w.add_range_tombstone(RangeTombstone { start: b"candy/03".to_vec(), end: b"candy/05".to_vec(), hlc: hlc(150) });
    w.finish().0
}

#[test]
fn golden_v1_file_opens_and_writer_reproduces_it() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/table-v1.sst");
    if std::env::var_os("CANDYBOX_BLESS").is_some() {
        std::fs::write(path, golden_table()).expect("write golden file");
    }
    let golden = std::fs::read(path)
        .expect("golden file exists (regenerate with CANDYBOX_BLESS=1 only on a new format version)");
    let table = open(&golden);
    assert_eq!(table.meta().entry_count, 10);
    assert_eq!(table.meta().syrups, vec![SyrupId(0), SyrupId(1), SyrupId(2)]);
    assert_eq!(table.get(b"candy/07").expect("get").as_deref(), Some(b"locator-7".as_slice()));
    assert_eq!(table.range_tombstones().len(), 1);
    assert_eq!(golden, golden_table(), "the writer's output changed: that is a new format version");
}

#[test]
fn random_bytes_never_panic_open() {
    let mut rng = SmallRng::seed_from_u64(6);
    let (_, good) = small_table();
    for _ in 0..5_000 {
        let len = rng.gen_range(0..300);
        let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // Often end in a valid-looking footer tail so decoding gets past the magic.
        if rng.gen() {
            b.extend_from_slice(&good[good.len() - FOOTER_BYTES..]);
        }
        if let Ok(table) = Table::open(Bytes::from(b)) {
            let _ = table.get(b"key01");
            let _ = table.range(Bound::Unbounded, Bound::Unbounded, rng.gen()).count();
        }
    }
}
