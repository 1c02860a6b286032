//! `candybox-inspect` against a data directory written by the real engine: a clean directory is
//! reported with the right counts and exit 0; damage to a Syrup chunk or a table is named with
//! exit 1; a missing directory or a bad argument exits 2; and the tool never changes a file.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any surprise")]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    rc::Rc,
};

mod common;

use candybox_core::{
    engine::{Engine, PutOptions, SliceBody},
    runtime::{block_on, SystemClock},
    storage::uring::UringStorage,
    testing::small_config,
};

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn sized(n: usize) -> PutOptions {
    PutOptions { size: Some(n as u64), ..Default::default() }
}

/// Writes partition `test/0` under `root`: small (inline) and large Candies and a range delete
/// flushed into one table; then three more puts left only in the WAL; one multipart upload with
/// one part; one rename intent. Closes the engine.
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
        // Only in the WAL: three group commits.
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
    assert!(out.contains("wals       1 live WALs, 3 records, 3 ops"), "{out}");
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
    assert_eq!(p["wals"].as_array().unwrap().len(), 1);
    assert_eq!(p["wals"][0]["records"], 3);
    assert_eq!(p["uploads"][0]["parts"], 1);
    assert_eq!(p["rename_intents"][0]["source_key"], "big-1");
    assert!(!p["own_syrups"].as_array().unwrap().is_empty());
    assert!(v["syrups"]["count"].as_u64().unwrap() >= 1);
    let checked = &v["verification"];
    // Three big puts in the table, one in the WAL, one upload part.
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
fn a_torn_wal_tail_is_reported_but_is_not_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    build_data_dir(dir.path());
    let root = dir.path().to_str().unwrap();
    let wal = find(&partition_dir(dir.path()), |n| n.starts_with("WAL-")).pop().unwrap();
    let len = std::fs::metadata(&wal).unwrap().len();
    // Half of a record header: what a crash in the middle of an append leaves.
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[9, 0, 0, 0, 1]);
    std::fs::write(&wal, &bytes).unwrap();

    let (code, out) = inspect(&["--verify", root]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("3 records, 3 ops, torn tail at offset {len} (5 bytes)")), "{out}");
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
    // Most mutations hit checked bytes (a few land in a leftover WAL or a torn-tail position).
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
    let (code, out) = inspect(&["--partition", "photos/1", root]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("partition photos/1") && !out.contains("partition photos/0"), "{out}");

    // Damage one chunk in the middle of a Syrup holding a Candy.
    let syrups = find(&data.join("syrups"), |n| n.ends_with(".syrup"));
    let syrup = syrups.iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = std::fs::read(syrup).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(syrup, &bytes).unwrap();
    let (code, out) = inspect(&["--verify", root]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checksum mismatch"), "{out}");
    assert!(out.contains("cat-"), "names the Candy that references the bad bytes: {out}");
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
