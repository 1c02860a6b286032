//! `candybox-inspect` against a data directory written by the real engine: a clean directory is
//! reported with the right counts and exit 0; damage to a Syrup chunk, a table or a commit log
//! segment is named with exit 1, a torn commit log tail only where recovery accepts one; a
//! missing directory or a bad argument exits 2; and the tool never changes a file.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any surprise")]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    rc::Rc,
};

mod common;

use candybox_core::{
    engine::{Engine, PutOptions, SliceBody},
    hlc::Hlc,
    limits,
    log::format::{self as log_format, RecordBuilder, SegmentHeader, SEGMENT_HEADER_BYTES},
    record,
    runtime::{block_on, SystemClock},
    storage::uring::UringStorage,
    testing::small_config,
    types::{BoxUid, RangeTombstone},
    wal::WalOp,
};

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn sized(n: usize) -> PutOptions {
    PutOptions { size: Some(n as u64), ..Default::default() }
}

/// Writes partition `test/0` under `root`: small (inline) and large Candies and a range delete
/// flushed into one table (ten group commits, batches 1..10 of its private commit log); then
/// three more mutations left only in the log (batches 11..13); one multipart upload with one
/// part; one rename intent. Closes the engine.
fn build_data_dir(root: &Path) {
    let mut config = small_config(root, 0);
    // The node's layout: boxes/<box>-<uid as 16 hex>/p<NN>.
    config.partition_dir = partition_dir(root);
    // Deterministic files: no background flush or compaction.
    config.auto_maintenance = false;
    block_on(async move {
        let (e, _) = Engine::open(UringStorage::new(), Rc::new(SystemClock), config).await.unwrap();
        for i in 0..6u8 {
            let small = data(20, i);
            e.put(format!("small-{i}").as_bytes(), sized(small.len()), SliceBody::new(small)).await.unwrap();
        }
        for i in 0..3u8 {
            let big = data(5000, i);
            e.put(format!("big-{i}").as_bytes(), sized(big.len()), SliceBody::new(big)).await.unwrap();
        }
        e.delete_range(b"small-2", b"small-4").await.unwrap();
        e.flush().await.unwrap();
        // Only in the commit log: three group commits.
        e.put(b"wal-small", sized(10), SliceBody::new(data(10, 7))).await.unwrap();
        e.put(b"wal-big", sized(3000), SliceBody::new(data(3000, 8))).await.unwrap();
        e.delete(b"small-0").await.unwrap();
        let upload = e.create_upload(b"multi", PutOptions::default()).await.unwrap();
        e.upload_part(upload, 1, Some(2000), SliceBody::new(data(2000, 9))).await.unwrap();
        e.prepare_rename(b"big-1", b"renamed", 3).await.unwrap();
        e.close().await;
    });
}

fn inspect(args: &[&str]) -> (i32, String) {
    let Output { status, stdout, stderr } =
        Command::new(env!("CARGO_BIN_EXE_candybox-inspect")).args(args).output().unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    (status.code().unwrap_or(-1), out)
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every file under `dir` with its bytes and modification time, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut paths = Vec::new();
    files_under(dir, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p.clone(), std::fs::read(&p).unwrap(), modified)
        })
        .collect()
}

fn partition_dir(root: &Path) -> PathBuf {
    root.join("boxes/test-0000000000000001/p00")
}

/// The private commit log of the partition `build_data_dir` writes (it was opened on its own).
fn log_dir(root: &Path) -> PathBuf {
    partition_dir(root).join("log/shard-000")
}

/// The file offsets of the whole records of a commit log segment.
fn record_offsets(segment: &[u8]) -> Vec<u64> {
    let body = &segment[SEGMENT_HEADER_BYTES..];
    let (records, end) = record::scan_records(body, SEGMENT_HEADER_BYTES as u64, limits::WAL_RECORD_BYTES_MAX).unwrap();
    // A prepared segment (written full of zeros ahead) ends in zeros after its records.
    if let record::ScanEnd::Torn { offset, .. } = end {
        assert!(segment[offset as usize..].iter().all(|b| *b == 0), "only zeros after the records");
    }
    records.into_iter().map(|(offset, _)| offset).collect()
}

/// Writes segment `header.number` into `dir`: its header, then one record per section list, each
/// one range delete per section (no locator to resolve).
fn write_segment(dir: &Path, header: SegmentHeader, records: &[&[(u16, u64)]]) -> PathBuf {
    let mut bytes = log_format::encode_header(&header);
    for sections in records {
        let mut b = RecordBuilder::new(Vec::new());
        for &(partition, seq) in *sections {
            let rt = WalOp::DeleteRange(RangeTombstone { start: b"x".to_vec(), end: b"y".to_vec(), hlc: Hlc::ZERO });
            b.section(BoxUid(1), partition, seq, std::iter::once(rt.as_ref()));
        }
        let framed = b.finish(bytes.len() as u64);
        bytes.extend_from_slice(&framed);
    }
    let path = dir.join(log_format::file_name(header.number));
    std::fs::write(&path, &bytes).unwrap();
    path
}

fn find(dir: &Path, pred: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| pred(p.file_name().unwrap().to_str().unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn a_clean_directory_is_summarised_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    build_data_dir(dir.path());
    let root = dir.path().to_str().unwrap();
    let before = snapshot(dir.path());

    let (code, out) = inspect(&[root]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("partition test/0"), "{out}");
    assert!(out.contains("tables     1 tables"), "{out}");
    assert!(out.contains("L0  1 tables"), "{out}");
    assert!(out.contains("1 range tombstones"), "{out}");
    assert!(out.contains("log        flushed to LOG-00000001:"), "{out}");
    assert!(out.contains("batch seq 10 (writer base 1 shard 0)"), "{out}");
    assert!(out.contains("replay     3 records, 3 ops past the flushed position (batches 11..13)"), "{out}");
    assert!(out.contains("1 segments, 13 records, 13 sections, 13 ops, 0 with problems"), "{out}");
    assert!(out.contains("shard-000/LOG-00000001  shard 0, base 1, first 1, previous 0: "), "{out}");
    // A partition of format v2 has no WAL, and is not missing one.
    assert!(!out.contains("  wals  "), "{out}");
    assert!(out.contains("uploads    1 in flight"), "{out}");
    assert!(out.contains("key \"multi\", 1 parts, 2000 bytes"), "{out}");
    assert!(out.contains("intents    1 rename intents"), "{out}");
    assert!(out.contains("\"big-1\" -> \"renamed\" (partition 3)"), "{out}");
    assert!(out.contains("OK: no problems found"), "{out}");

    let (code, out) = inspect(&["--verify", root]);
    assert_eq!(code, 0, "{out}");
    // 6 small + 3 big were flushed; the range delete and the tombstone are not entries or live.
    assert!(out.contains("1 tables read, 9 entries"), "{out}");

    let (code, json) = inspect(&["--json", "--verify", "--partition", "test/0", root]);
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["problem_count"], 0);
    let p = &v["partitions"][0];
    assert_eq!(p["name"], "test/0");
    assert_eq!(p["levels"][0]["table_count"], 1);
    assert_eq!(p["levels"][0]["entries"], 9);
    assert!(p["wals"].as_array().unwrap().is_empty());
    assert_eq!(p["log"]["flushed"]["seq"], 10);
    assert_eq!(p["log"]["replay_records"], 3);
    assert_eq!(p["log"]["replay_ops"], 3);
    assert_eq!(p["private_log"]["segments"].as_array().unwrap().len(), 1);
    assert_eq!(p["private_log"]["segments"][0]["records"], 13);
    assert!(p["private_log"]["segments"][0]["torn_tail"].is_null());
    assert_eq!(p["uploads"][0]["parts"], 1);
    assert_eq!(p["rename_intents"][0]["source_key"], "big-1");
    assert!(!p["own_syrups"].as_array().unwrap().is_empty());
    assert!(v["syrups"]["count"].as_u64().unwrap() >= 1);
    let checked = &v["verification"];
    // Three big puts in the table, one in the commit log, one upload part.
    assert_eq!(checked["segments"], 5, "{json}");
    assert_eq!(checked["bytes"], 3 * 5000 + 3000 + 2000, "{json}");

    assert!(before == snapshot(dir.path()), "candybox-inspect changed the data directory");
}

#[test]
fn a_flipped_syrup_byte_is_found_by_verify_and_named() {
    let dir = tempfile::tempdir().unwrap();
    build_data_dir(dir.path());
    let root = dir.path().to_str().unwrap();
    // The first segment of the first Syrup starts right after its 64-byte header.
    let syrup = find(&dir.path().join("syrups"), |n| n.ends_with(".syrup")).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&syrup).unwrap();
    bytes[64 + 100] ^= 0x20;
    std::fs::write(&syrup, &bytes).unwrap();
    let name = syrup.file_name().unwrap().to_str().unwrap();

    // Without --verify only headers are read: the chunk is not looked at.
    let (code, out) = inspect(&[root]);
    assert_eq!(code, 0, "{out}");

    let (code, out) = inspect(&["--verify", root]);
    assert_eq!(code, 1, "{out}");
    let line = out.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name} not named: {out}"));
    assert!(line.contains("corrupt syrup"), "{line}");
    assert!(line.contains("checksum mismatch at offset 64"), "{line}");
    assert!(out.contains("problems found: 1"), "{out}");
}

#[test]
fn a_truncated_table_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build_data_dir(dir.path());
    let root = dir.path().to_str().unwrap();
    let tables = find(&partition_dir(dir.path()), |n| n.starts_with("T-") && n.ends_with(".sst"));
    assert_eq!(tables.len(), 1);
    let table = &tables[0];
    let len = std::fs::metadata(table).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(table).unwrap().set_len(len - 10).unwrap();
    let name = table.file_name().unwrap().to_str().unwrap();

    let (code, out) = inspect(&[root]);
    assert_eq!(code, 1, "{out}");
    let line = out.lines().find(|l| l.contains(name) && l.contains("corrupt")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("table size differs from manifest"), "{line}");
}

#[test]
fn a_missing_directory_or_a_bad_argument_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let (code, out) = inspect(&[missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nope"), "{out}");
    let (code, out) = inspect(&["--partition", "no-slash", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = inspect(&["--partition", "test/9", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = inspect(&[]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn a_torn_commit_log_tail_is_reported_but_is_not_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    build_data_dir(dir.path());
    let root = dir.path().to_str().unwrap();
    let segment = find(&log_dir(dir.path()), |n| n.starts_with("LOG-")).pop().unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    let last = *record_offsets(&bytes).last().unwrap();
    // The last record cut short: what a crash in the middle of an append leaves.
    let cut = bytes.len() as u64 - 3;
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(cut).unwrap();

    let (code, out) = inspect(&["--verify", root]);
    assert_eq!(code, 0, "{out}");
    let torn = format!("12 records, 12 sections, 12 ops, torn tail at offset {last} ({} bytes)", cut - last);
    assert!(out.contains(&torn), "{out}");
    // The torn record is never replayed: its mutation (the delete of small-0) was never acknowledged.
    assert!(out.contains("replay     2 records, 2 ops past the flushed position (batches 11..12)"), "{out}");
    assert!(out.contains("OK: no problems found"), "{out}");

    // The same tear before another segment of the same writer run is damage: the writer moved on
    // only after this segment's records were durable.
    let next = SegmentHeader { shard: 0, number: 2, base: 1, first: 1, previous: 1, previous_end: None };
    write_segment(&log_dir(dir.path()), next, &[]);
    let (code, out) = inspect(&[root]);
    assert_eq!(code, 1, "{out}");
    let name = segment.file_name().unwrap().to_str().unwrap();
    let line = out.lines().find(|l| l.contains(name) && l.contains("corrupt wal")).unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&format!("damaged record in a segment that is not its log's newest at offset {last}")),
        "{line}"
    );
}

/// A flipped bit in a record with records behind it: recovery reads nothing of the segment, and
/// the partition, flushed to a position inside it, may need what is lost.
#[test]
fn a_damaged_commit_log_record_is_named_with_its_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    build_data_dir(dir.path());
    let root = dir.path().to_str().unwrap();
    let segment = find(&log_dir(dir.path()), |n| n.starts_with("LOG-")).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let first = record_offsets(&bytes)[0];
    bytes[first as usize + 12] ^= 0x04;
    std::fs::write(&segment, &bytes).unwrap();
    let name = segment.file_name().unwrap().to_str().unwrap();

    let (code, out) = inspect(&[root]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("DAMAGED at offset {first}")), "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(name) && l.contains("corrupt wal")).collect();
    assert_eq!(lines.len(), 2, "the damage, and the partition that needs it: {out}");
    assert!(lines.iter().all(|l| l.contains(&format!("checksum mismatch at offset {first}"))), "{out}");
    assert!(lines.iter().any(|l| l.contains("this partition may need records from there")), "{out}");
    assert!(out.contains("problems found: 2"), "{out}");
}

/// Records of the partition whose batch sequence does not follow its flushed one (a segment that
/// held the batches between is gone), and a segment missing from the middle of a writer run.
#[test]
fn a_lost_segment_is_found_by_batch_sequence_and_by_chain() {
    let dir = tempfile::tempdir().unwrap();
    build_data_dir(dir.path());
    let root = dir.path().to_str().unwrap();
    let logs = log_dir(dir.path());
    // A later node start's run whose first record is batch 20 of the partition: 14..19 are lost.
    let later = SegmentHeader { shard: 0, number: 2, base: 2, first: 2, previous: 0, previous_end: None };
    let later_path = write_segment(&logs, later, &[&[(0, 20)], &[(0, 21), (5, 1)]]);
    let (code, out) = inspect(&[root]);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains(later_path.to_str().unwrap()) && l.contains("corrupt wal"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("a commit log segment holding records of this partition is missing"), "{line}");
    assert!(line.contains("is batch 20 of this partition, expected batch 14"), "{line}");
    assert!(out.contains("replay     3 records, 3 ops past the flushed position (batches 11..13)"), "{out}");
    assert!(out.contains("shard-000/LOG-00000002  shard 0, base 2, first 2, previous 0: "), "{out}");
    assert!(out.contains("2 records, 3 sections, 3 ops, clean"), "{out}");
    assert!(out.contains("problems found: 1"), "{out}");
    std::fs::remove_file(&later_path).unwrap();

    // Segment 3 names segment 2 before it in the run that segment 1 started, and 2 is gone.
    let after_gap = SegmentHeader { shard: 0, number: 3, base: 1, first: 1, previous: 2, previous_end: None };
    let gap_path = write_segment(&logs, after_gap, &[]);
    let (code, out) = inspect(&[root]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> =
        out.lines().filter(|l| l.contains(gap_path.to_str().unwrap()) && l.contains("corrupt wal")).collect();
    assert_eq!(lines.len(), 2, "the gap, and the partition that needs what it held: {out}");
    assert!(lines.iter().all(|l| l.contains("a segment is missing before this one at offset 40")), "{out}");
}

/// A partition written before the shard commit log (format v1): its manifest has no flushed log
/// position, so the next open replays its WALs, which are read and judged as before.
#[test]
fn a_format_v1_partitions_wals_are_read_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let part = partition_dir(dir.path());
    std::fs::create_dir_all(&part).unwrap();
    // Manifest 1 (log number 2), CURRENT, and WAL 2: two records, three puts.
    let files = candybox_core::testing::v1_partition_files();
    for (name, bytes) in &files {
        std::fs::write(part.join(name), bytes).unwrap();
    }
    let (wal_name, mut w) = files.last().cloned().unwrap();
    let wal_path = part.join(wal_name);

    let (code, out) = inspect(&[root]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("log        nothing flushed into a commit log yet"), "{out}");
    assert!(out.contains("wals       1 live WALs, 2 records, 3 ops"), "{out}");
    assert!(out.contains("OK: no problems found"), "{out}");

    // Half of a record header: what a crash in the middle of an append leaves.
    let len = w.len();
    w.extend_from_slice(&[9, 0, 0, 0, 1]);
    std::fs::write(&wal_path, &w).unwrap();
    let (code, out) = inspect(&[root]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("2 records, 3 ops, torn tail at offset {len} (5 bytes)")), "{out}");

    // The WAL the manifest's log number names is needed.
    std::fs::remove_file(&wal_path).unwrap();
    let (code, out) = inspect(&[root]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("WAL-000002: malformed missing log that the manifest needs"), "{out}");
}

#[test]
fn a_directory_without_partitions_or_syrups_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = inspect(&[dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not a data directory"), "{out}");
}

/// The tool's promise not to panic on any bytes read from disk, checked end to end: random byte
/// flips and truncations in every kind of file, each answered with exit 0 or 1.
#[test]
fn mutated_files_never_make_it_panic() {
    let dir = tempfile::tempdir().unwrap();
    build_data_dir(dir.path());
    let root = dir.path().to_str().unwrap();
    let mut files = Vec::new();
    files_under(dir.path(), &mut files);
    files.sort();
    let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    // xorshift64: deterministic without another dependency.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound.max(1) as u64) as usize
    };
    let mut found = 0;
    for round in 0..48 {
        let which = round % files.len();
        let mut bytes = originals[which].clone();
        for _ in 0..1 + next(3) {
            let at = next(bytes.len());
            if let Some(b) = bytes.get_mut(at) {
                *b ^= 1 << next(8);
            }
        }
        if next(4) == 0 {
            bytes.truncate(next(bytes.len() + 1));
        }
        std::fs::write(&files[which], &bytes).unwrap();
        let (code, out) = inspect(&["--verify", "--json", root]);
        assert!(code == 0 || code == 1, "round {round}, {}: exit {code}\n{out}", files[which].display());
        assert!(!out.contains("panicked"), "round {round}: {out}");
        found += usize::from(code == 1);
        std::fs::write(&files[which], &originals[which]).unwrap();
    }
    // Most mutations hit checked bytes (a few only cut a log or the manifest into a torn tail).
    assert!(found >= 24, "only {found} of 48 mutations were reported");
}

/// Story: on a node's data directory with a corrupt Syrup, `candybox-inspect --verify` said
/// `OK: no problems found` (exit 0) and called every Syrup an unreferenced leftover: it read
/// `partitions/<box>/<p>`, a layout the node never writes (`boxes/<box>-<uid>/pNN`).
#[test]
fn a_nodes_data_directory_is_read_and_its_damage_found() {
    let mut node = common::Node::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    node.run(&["create-box", "photos", "--partitions", "3"], b"");
    for i in 0..4u8 {
        let file = common::write_file(tmp.path(), &format!("f{i}"), &common::pattern(200_000, i));
        let out = node.run(&["put", "photos", &format!("cat-{i}.jpg"), &file], b"");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    node.kill();
    let data = node.data_dir().to_path_buf();
    let root = data.to_str().unwrap();
    let (code, out) = inspect(&["--verify", root]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("partition photos/0"), "{out}");
    assert!(out.contains("OK: no problems found"), "{out}");
    assert!(!out.contains("not created by any partition"), "every Syrup has its creator: {out}");
    // Nothing was flushed before the kill: the shards' logs hold the four puts, one record each,
    // and each partition replays its own.
    assert!(out.contains(&format!("\nlog {}\n", data.join("log").display())), "{out}");
    assert!(out.contains("segments, 4 records, 4 sections, 4 ops, 0 with problems"), "{out}");
    assert!(out.contains("shard-000/LOG-"), "{out}");
    let replayed: u64 =
        out.lines().filter_map(|l| l.strip_prefix("  replay     ")?.split(' ').next()?.parse::<u64>().ok()).sum();
    assert_eq!(replayed, 4, "{out}");
    let (code, out) = inspect(&["--partition", "photos/1", root]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("partition photos/1") && !out.contains("partition photos/0"), "{out}");

    // Damage one chunk in the middle of a Syrup holding a Candy.
    let syrups = find(&data.join("syrups"), |n| n.ends_with(".syrup"));
    let syrup = syrups.iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let original = std::fs::read(syrup).unwrap();
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(syrup, &bytes).unwrap();
    let (code, out) = inspect(&["--verify", root]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checksum mismatch"), "{out}");
    assert!(out.contains("cat-"), "names the Candy that references the bad bytes: {out}");
    std::fs::write(syrup, &original).unwrap();

    // Damage the first record of a shard's log: the partitions of that shard have records there.
    let mut segments = Vec::new();
    files_under(&data.join("log"), &mut segments);
    // The segment holding the most records (a prepared segment is mostly zeros; a `.prep` file
    // holds none).
    let segment = segments
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with(".prep"))
        .max_by_key(|p| record_offsets(&std::fs::read(p).unwrap()).len())
        .unwrap();
    let mut bytes = std::fs::read(segment).unwrap();
    let first = record_offsets(&bytes)[0];
    bytes[first as usize + 12] ^= 0x01;
    std::fs::write(segment, &bytes).unwrap();
    let (code, out) = inspect(&[root]);
    assert_eq!(code, 1, "{out}");
    let name = segment.file_name().unwrap().to_str().unwrap();
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(name) && l.contains("corrupt wal")).collect();
    assert!(lines.iter().any(|l| l.contains(&format!("checksum mismatch at offset {first}"))), "{out}");
    assert!(lines.iter().any(|l| l.contains("this partition may need records from there")), "{out}");
}

/// After space reclamation moved live Candies and GC deleted their old Syrups, the tables still
/// hold the overwritten versions that named those Syrups. Only the newest live version of a key
/// must find its Syrup: such a directory is consistent.
#[test]
fn syrups_deleted_by_space_reclamation_are_not_missing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut config = small_config(root, 0);
    config.partition_dir = partition_dir(root);
    config.auto_maintenance = false;
    config.gc_grace_ms = 0;
    block_on(async move {
        let (e, _) = Engine::open(UringStorage::new(), Rc::new(SystemClock), config).await.unwrap();
        for round in 0..6u8 {
            for k in 0..10u8 {
                e.put(format!("k{k}").as_bytes(), sized(4000), SliceBody::new(data(4000, round * 16 + k)))
                    .await
                    .unwrap();
            }
            e.flush().await.unwrap();
        }
        e.delete_range(b"k5", b"k9").await.unwrap();
        let none = std::collections::BTreeSet::new();
        for _ in 0..3 {
            e.reclaim(&none, true).await.unwrap();
            e.gc(&none).await.unwrap();
        }
        assert!(e.stats().syrups_deleted > 0, "reclamation deleted Syrups the tables still name");
        e.close().await;
    });
    let (code, out) = inspect(&["--verify", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: no problems found"), "{out}");
}
