//! The embedded coordination store: the shared contract suite, plus what only a file-backed store
//! has to prove: durability across reopen, a torn tail tolerated, corruption refused with the file
//! named, compaction that keeps everything and bounds the log, and one open per directory.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use candybox_core::{
    coord::{
        embedded::{EmbeddedConfig, EmbeddedCoordination, OpenReport, LOG_FILE, LOG_TMP_FILE},
        CoordError, Coordination, CreateMode, Version,
    },
    limits,
    record::LOG_HEADER_BYTES,
    testing::coord_contract,
};
use rand::{rngs::SmallRng, Rng, SeedableRng};

fn open(dir: &Path) -> EmbeddedCoordination {
    EmbeddedCoordination::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

fn open_with(dir: &Path, config: EmbeddedConfig) -> EmbeddedCoordination {
    EmbeddedCoordination::open_with(dir, config).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Compacts whenever the log is twice a snapshot and over 4 KiB: every few mutations.
const EAGER: EmbeddedConfig = EmbeddedConfig { compact_bytes_min: 4 * 1024, compact_ratio: 2 };

fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

fn store_error(r: Result<EmbeddedCoordination, CoordError>) -> String {
    match r {
        Err(CoordError::Store(msg)) => msg,
        Err(e) => panic!("expected a Store error, got {e}"),
        Ok(s) => panic!("expected a Store error, the store opened: {s:?}"),
    }
}

#[test]
fn contract_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("coord");
    coord_contract::run_all(&mut || Box::new(open(&path)) as Box<dyn Coordination>);
    // Everything the suite left behind replays.
    let _reopened = open(&path);
}

#[test]
fn contract_suite_with_eager_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("coord");
    coord_contract::run_all(&mut || Box::new(open_with(&path, EAGER)) as Box<dyn Coordination>);
    let s = open_with(&path, EAGER);
    assert!(s.log_bytes() <= EAGER.compact_bytes_min.max(2 * s.snapshot_bytes()) + 2 * 1024 * 1024);
}

/// The model of the store: path → (data, version, mode).
type Model = BTreeMap<String, (Vec<u8>, Version, CreateMode)>;

fn model_children(model: &Model, path: &str) -> Vec<String> {
    let prefix = format!("{path}/");
    model.keys().filter_map(|k| k.strip_prefix(&prefix)).filter(|rest| !rest.contains('/')).map(str::to_owned).collect()
}

fn check_against_model(s: &mut EmbeddedCoordination, model: &Model, universe: &[String]) {
    for path in universe {
        let expected = model.get(path).map(|(d, v, _)| (d.clone(), *v));
        assert_eq!(s.get(path).expect("get"), expected, "{path}");
        if model.contains_key(path) {
            assert_eq!(s.children(path).expect("children"), model_children(model, path), "children of {path}");
        }
    }
}

/// Random operations against the store and a `BTreeMap` model, with reopens (which end the
/// session: the model drops its ephemeral entries) and eager compaction.
#[test]
fn random_operations_match_a_model_across_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data/coord");
    let mut rng = SmallRng::seed_from_u64(0xc00d);
    let segments = ["a", "b", "c"];
    let mut universe = Vec::new();
    for x in segments {
        universe.push(x.to_owned());
        for y in segments {
            universe.push(format!("{x}/{y}"));
            for z in segments {
                universe.push(format!("{x}/{y}/{z}"));
            }
        }
    }
    let mut model = Model::new();
    let mut s = open_with(&path, EAGER);
    for step in 0..3000u32 {
        let p = universe[rng.gen_range(0..universe.len())].clone();
        let data: Vec<u8> = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect();
        match rng.gen_range(0..10) {
            0..=2 => {
                let mode = if rng.gen_bool(0.2) { CreateMode::Ephemeral } else { CreateMode::Persistent };
                let r = s.create(&p, &data, mode);
                let ancestors: Vec<&str> = p.match_indices('/').map(|(i, _)| &p[..i]).collect();
                if model.contains_key(&p) {
                    assert!(matches!(r, Err(CoordError::NodeExists(_))), "step {step}: create {p}: {r:?}");
                } else if ancestors.iter().any(|a| model.get(*a).is_some_and(|e| e.2 == CreateMode::Ephemeral)) {
                    assert!(matches!(r, Err(CoordError::BadPath(_))), "step {step}: create {p}: {r:?}");
                } else {
                    assert_eq!(r.expect("create"), 0);
                    for a in ancestors {
                        model.entry(a.to_owned()).or_insert((Vec::new(), 0, CreateMode::Persistent));
                    }
                    model.insert(p.clone(), (data, 0, mode));
                }
            }
            3..=5 => {
                let found = model.get(&p).map(|e| e.1);
                let expected = if rng.gen_bool(0.5) { None } else { Some(found.unwrap_or(0) + rng.gen_range(0..2)) };
                let r = s.set(&p, &data, expected);
                match (found, expected) {
                    (None, _) => assert!(matches!(r, Err(CoordError::NoNode(_))), "step {step}: set {p}: {r:?}"),
                    (Some(v), Some(e)) if e != v => {
                        assert!(matches!(r, Err(CoordError::BadVersion { .. })), "step {step}: set {p}: {r:?}")
                    }
                    (Some(v), _) => {
                        assert_eq!(r.expect("set"), v + 1);
                        let e = model.get_mut(&p).expect("in model");
                        e.0 = data;
                        e.1 = v + 1;
                    }
                }
            }
            6..=7 => {
                let found = model.get(&p).map(|e| e.1);
                let expected = if rng.gen_bool(0.5) { None } else { Some(found.unwrap_or(0) + rng.gen_range(0..2)) };
                let r = s.delete(&p, expected);
                match (found, expected) {
                    (None, _) => assert!(matches!(r, Err(CoordError::NoNode(_))), "step {step}: delete {p}: {r:?}"),
                    (Some(v), Some(e)) if e != v => {
                        assert!(matches!(r, Err(CoordError::BadVersion { .. })), "step {step}: delete {p}: {r:?}")
                    }
                    (Some(_), _) if !model_children(&model, &p).is_empty() => {
                        assert!(matches!(r, Err(CoordError::NotEmpty(_))), "step {step}: delete {p}: {r:?}")
                    }
                    (Some(_), _) => {
                        r.expect("delete");
                        model.remove(&p);
                    }
                }
            }
            8 => {
                s.delete_tree(&p).expect("delete_tree");
                let prefix = format!("{p}/");
                model.retain(|k, _| *k != p && !k.starts_with(&prefix));
            }
            _ => {
                // A reopen ends the session.
                drop(s);
                model.retain(|_, e| e.2 == CreateMode::Persistent);
                s = open_with(&path, EAGER);
                assert_eq!(s.open_report().torn, None);
                check_against_model(&mut s, &model, &universe);
            }
        }
        if step % 100 == 0 {
            check_against_model(&mut s, &model, &universe);
        }
    }
    drop(s);
    model.retain(|_, e| e.2 == CreateMode::Persistent);
    let mut s = open(&path);
    check_against_model(&mut s, &model, &universe);
}

/// Writes `a/1`, `a/2`, `a/3`, one record each, and returns the file offset where each record ends.
fn three_records(dir: &Path) -> [u64; 3] {
    let mut s = open(dir);
    let mut ends = [0; 3];
    for (i, end) in ends.iter_mut().enumerate() {
        s.create(&format!("a/{}", i + 1), format!("value {}", i + 1).as_bytes(), CreateMode::Persistent)
            .expect("create");
        *end = s.log_bytes();
    }
    assert_eq!(std::fs::metadata(log_path(dir)).expect("stat").len(), ends[2]);
    ends
}

fn value(s: &mut EmbeddedCoordination, path: &str) -> Option<Vec<u8>> {
    s.get(path).expect("get").map(|(d, _)| d)
}

#[test]
fn torn_tail_is_discarded_and_appending_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [_, end2, end3] = three_records(dir.path());
    let full = std::fs::read(log_path(dir.path())).expect("read log");
    // Damage to the last byte of a complete record is no tear (a crash cuts a write short or
    // leaves its unwritten sectors zero): the record was acknowledged, so the open refuses.
    let mut damaged = full.clone();
    *damaged.last_mut().expect("bytes") ^= 0x40;
    std::fs::write(log_path(dir.path()), &damaged).expect("write damaged log");
    let err = match EmbeddedCoordination::open(dir.path()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a flipped last byte is corruption, not a tear"),
    };
    assert!(err.contains(&log_path(dir.path()).display().to_string()), "{err}");
    // Every cut inside the last record is a tear.
    let tears = (end2 + 1..end3).map(|cut| full[..cut as usize].to_vec());
    for torn in tears {
        let len = torn.len() as u64;
        std::fs::write(log_path(dir.path()), &torn).expect("write torn log");
        let mut s = open(dir.path());
        assert_eq!(s.open_report(), OpenReport { records: 2, torn: Some((end2, len - end2)), compacted: false });
        assert_eq!(value(&mut s, "a/1").as_deref(), Some(&b"value 1"[..]));
        assert_eq!(value(&mut s, "a/2").as_deref(), Some(&b"value 2"[..]));
        assert_eq!(value(&mut s, "a/3"), None, "a torn record was applied");
        assert_eq!(std::fs::metadata(log_path(dir.path())).expect("stat").len(), end2, "the tear was cut off");
        s.create("a/4", b"after the tear", CreateMode::Persistent).expect("append after a tear");
        drop(s);
        let mut s = open(dir.path());
        assert_eq!(s.open_report().torn, None, "appending after a tear left a clean log");
        assert_eq!(s.open_report().records, 3);
        assert_eq!(value(&mut s, "a/4").as_deref(), Some(&b"after the tear"[..]));
        assert_eq!(s.children("a").expect("children"), ["1", "2", "4"]);
    }
    // A cut exactly at a record boundary is a clean log.
    std::fs::write(log_path(dir.path()), &full[..end2 as usize]).expect("write");
    assert_eq!(open(dir.path()).open_report(), OpenReport { records: 2, torn: None, compacted: false });
    // A log of just its header is an empty store.
    std::fs::write(log_path(dir.path()), &full[..LOG_HEADER_BYTES]).expect("write");
    let mut s = open(dir.path());
    assert_eq!(s.get("a").expect("get"), None);
}

#[test]
fn corrupt_middle_record_is_a_store_error_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [end1, end2, _] = three_records(dir.path());
    let full = std::fs::read(log_path(dir.path())).expect("read log");
    let log = log_path(dir.path()).display().to_string();
    for (record_offset, flip) in [(LOG_HEADER_BYTES as u64, LOG_HEADER_BYTES + 12), (end1, end1 as usize + 9)] {
        let mut bad = full.clone();
        bad[flip] ^= 0x01;
        std::fs::write(log_path(dir.path()), &bad).expect("write");
        let msg = store_error(EmbeddedCoordination::open(dir.path()));
        assert!(msg.contains(&log), "{msg:?} does not name {log}");
        assert!(msg.contains(&format!("checksum mismatch at offset {record_offset}")), "{msg:?}");
    }
    // A length field over the record cap is damage, not a tear.
    let mut bad = full.clone();
    bad[end1 as usize..end1 as usize + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(log_path(dir.path()), &bad).expect("write");
    let msg = store_error(EmbeddedCoordination::open(dir.path()));
    assert!(msg.contains(&log) && msg.contains(&format!("malformed record length at offset {end1}")), "{msg:?}");
    // The damaged log was not modified by the failed opens.
    assert_eq!(std::fs::read(log_path(dir.path())).expect("read").len() as u64, full.len() as u64);
    // Restored, it opens with everything.
    std::fs::write(log_path(dir.path()), &full).expect("write");
    let mut s = open(dir.path());
    assert_eq!(s.children("a").expect("children"), ["1", "2", "3"]);
    assert!(end2 > end1);
}

#[test]
fn bad_header_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    three_records(dir.path());
    let full = std::fs::read(log_path(dir.path())).expect("read log");
    let log = log_path(dir.path()).display().to_string();
    let mut magic = full.clone();
    magic[0] = b'X';
    let mut version = full.clone();
    version[8] = 2;
    let mut crc = full.clone();
    crc[20] ^= 1;
    for (bytes, evidence) in [
        (magic, "bad magic"),
        (version, "unsupported format version 2"),
        (crc, "checksum mismatch at offset 0"),
        (full[..10].to_vec(), "truncated"),
    ] {
        std::fs::write(log_path(dir.path()), &bytes).expect("write");
        let msg = store_error(EmbeddedCoordination::open(dir.path()));
        assert!(msg.contains(&log) && msg.contains(evidence), "{msg:?} lacks {evidence:?}");
    }
}

#[test]
fn compaction_keeps_everything_and_bounds_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path());
    let value = |key: usize, round: usize| vec![(key * 31 + round) as u8; 16 * 1024];
    for key in 0..10 {
        s.create(&format!("boxes/b/partitions/{key}/refs"), &value(key, 0), CreateMode::Persistent).expect("create");
    }
    s.create("members/1", &[0xee; 64], CreateMode::Ephemeral).expect("ephemeral");
    let record_max = 17 * 1024;
    let mut compactions = 0;
    for round in 1..=30 {
        for key in 0..10 {
            let before = s.log_bytes();
            let path = format!("boxes/b/partitions/{key}/refs");
            assert_eq!(s.set(&path, &value(key, round), Some(round as u64 - 1)).expect("set"), round as u64);
            if s.log_bytes() < before {
                compactions += 1;
            }
            let bound = limits::COORD_LOG_COMPACT_BYTES_MIN.max(limits::COORD_LOG_COMPACT_RATIO * s.snapshot_bytes());
            assert!(s.log_bytes() <= bound + record_max, "log of {} bytes over {bound}", s.log_bytes());
            assert_eq!(std::fs::metadata(log_path(dir.path())).expect("stat").len(), s.log_bytes());
        }
    }
    // 300 sets of 16 KiB (4.8 MiB written) over 1 MiB thresholds.
    assert!(compactions >= 3, "{compactions} compactions");
    assert!(!dir.path().join(LOG_TMP_FILE).exists());
    assert_eq!(s.get("members/1").expect("get"), Some((vec![0xee; 64], 0)), "compaction kept the ephemeral");
    drop(s);
    let header = std::fs::read(log_path(dir.path())).expect("read");
    let generation = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    assert_eq!(generation, 1 + compactions);
    let mut s = open(dir.path());
    assert!(s.open_report().records <= 10 + 10 + 4 + 64, "replay is bounded: {:?}", s.open_report());
    for key in 0..10 {
        let path = format!("boxes/b/partitions/{key}/refs");
        assert_eq!(s.get(&path).expect("get"), Some((value(key, 30), 30)), "{path}");
    }
    assert_eq!(s.get("members/1").expect("get"), None);
    assert_eq!(s.children("members").expect("children"), Vec::<String>::new());
    assert_eq!(s.get("boxes/b/partitions").expect("get"), Some((Vec::new(), 0)));
}

#[test]
fn a_large_log_is_compacted_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Grow the log past the default threshold without compacting (a huge minimum), then open with
    // the defaults.
    let mut s = open_with(dir.path(), EmbeddedConfig { compact_bytes_min: u64::MAX, ..EmbeddedConfig::default() });
    s.create("k", b"", CreateMode::Persistent).expect("create");
    for _ in 0..40 {
        s.set("k", &[1; 64 * 1024], None).expect("set");
    }
    let grown = s.log_bytes();
    drop(s);
    let mut s = open(dir.path());
    assert!(s.open_report().compacted);
    assert!(s.log_bytes() < grown / 10, "{} of {grown}", s.log_bytes());
    assert_eq!(s.log_bytes(), s.snapshot_bytes());
    assert_eq!(s.get("k").expect("get"), Some((vec![1; 64 * 1024], 40)));
}

#[test]
fn an_unfinished_compaction_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    three_records(dir.path());
    // A crash while LOG.tmp was being written: it is garbage and LOG is the truth.
    std::fs::write(dir.path().join(LOG_TMP_FILE), b"half a snapshot").expect("write tmp");
    let mut s = open(dir.path());
    assert_eq!(s.children("a").expect("children"), ["1", "2", "3"]);
    assert!(!dir.path().join(LOG_TMP_FILE).exists());
}

#[test]
fn second_open_is_refused_while_the_first_lives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = open(dir.path());
    first.create("a", b"1", CreateMode::Persistent).expect("create");
    let msg = store_error(EmbeddedCoordination::open(dir.path()));
    assert!(msg.contains("already open") && msg.contains("LOCK"), "{msg:?}");
    // The refused open changed nothing.
    assert_eq!(first.set("a", b"2", Some(0)).expect("set"), 1);
    drop(first);
    let mut second = open(dir.path());
    assert_eq!(second.get("a").expect("get"), Some((b"2".to_vec(), 1)));
}

#[test]
fn ephemeral_entries_never_reach_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = b"EPHEMERAL-ONLY-BYTES";
    let mut s = open_with(dir.path(), EAGER);
    s.create("members/7", marker, CreateMode::Ephemeral).expect("create");
    s.set("members/7", marker, Some(0)).expect("set");
    s.create("members/8", marker, CreateMode::Ephemeral).expect("create");
    s.delete("members/8", None).expect("delete");
    // Enough persistent churn to compact while the ephemerals live.
    for i in 0..200 {
        s.put("churn", format!("{i:0>100}").as_bytes()).expect("put");
    }
    let log = std::fs::read(log_path(dir.path())).expect("read");
    assert!(!log.windows(marker.len()).any(|w| w == marker), "ephemeral data in the log");
    assert!(!log.windows(9).any(|w| w == b"members/7"), "ephemeral path in the log");
    drop(s);
    let mut s = open(dir.path());
    assert_eq!(s.get("members/7").expect("get"), None);
    assert_eq!(s.get("members").expect("get"), Some((Vec::new(), 0)), "the persistent parent stays");
}

/// A compaction that fails before its rename (here: `LOG.tmp` cannot be replaced) leaves the old
/// log in use: mutations keep succeeding, and the next compaction that can run does.
#[test]
fn a_compaction_that_fails_before_its_rename_leaves_the_store_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open_with(dir.path(), EAGER);
    let blocker = dir.path().join(LOG_TMP_FILE);
    std::fs::create_dir(&blocker).expect("mkdir LOG.tmp");
    for i in 0..100u64 {
        assert_eq!(s.put("k", &[i as u8; 512]).expect("put while compaction fails"), i);
    }
    let grown = s.log_bytes();
    assert!(grown > 100 * 512, "every record is still in the log: {grown} bytes");
    assert!(grown > 10 * s.snapshot_bytes());
    std::fs::remove_dir(&blocker).expect("rmdir LOG.tmp");
    assert_eq!(s.set("k", b"last", Some(99)).expect("set"), 100);
    assert_eq!(s.log_bytes(), s.snapshot_bytes(), "the next mutation compacted");
    drop(s);
    let mut s = open(dir.path());
    assert_eq!(s.get("k").expect("get"), Some((b"last".to_vec(), 100)));
}

/// A compaction whose rename fails may have left `LOG` naming either file, so the store stops
/// taking mutations (reads go on) until it is reopened.
#[test]
fn a_compaction_that_fails_at_its_rename_stops_mutations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open_with(dir.path(), EAGER);
    s.create("kept", b"before", CreateMode::Persistent).expect("create");
    // Swap LOG for a non-empty directory: the store's open file still works, but no file can be
    // renamed over it.
    let saved = std::fs::read(log_path(dir.path())).expect("read");
    std::fs::remove_file(log_path(dir.path())).expect("rm LOG");
    std::fs::create_dir(log_path(dir.path())).expect("mkdir LOG");
    std::fs::write(log_path(dir.path()).join("x"), b"x").expect("fill LOG/");
    let mut stopped = None;
    for i in 0..100u64 {
        match s.put("k", &[i as u8; 512]) {
            Ok(_) => {}
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
    }
    let msg = match stopped {
        Some(CoordError::Store(msg)) => msg,
        other => panic!("expected the store to stop, got {other:?}"),
    };
    assert!(msg.contains("stopped after an earlier I/O failure"), "{msg:?}");
    assert!(matches!(s.create("other", b"", CreateMode::Ephemeral), Err(CoordError::Store(_))));
    assert!(matches!(s.delete("kept", None), Err(CoordError::Store(_))));
    assert_eq!(s.get("kept").expect("reads go on"), Some((b"before".to_vec(), 0)));
    drop(s);
    std::fs::remove_dir_all(log_path(dir.path())).expect("rm LOG/");
    std::fs::write(log_path(dir.path()), &saved).expect("restore LOG");
    let mut s = open(dir.path());
    assert_eq!(s.get("kept").expect("get"), Some((b"before".to_vec(), 0)));
}
