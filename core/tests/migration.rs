//! A partition written before the shard commit log (data format v1: a WAL per partition, a
//! manifest with no flushed log position) opens with every acknowledged mutation; its WALs stay
//! until the first flush has written what they held, and a crash before that flush (with new
//! mutations already in the commit log) loses nothing and keeps the order of the two.

use std::{path::Path, rc::Rc};

use candybox_core::{
    engine::{Engine, EngineConfig, PutOptions, SliceBody},
    error::Error,
    log::{recover::Replay, CommitLog, LogConfig},
    runtime::{block_on, ManualClock},
    storage::{Storage, StorageFile},
    testing::{open_engine, sim::SimStorage, small_config, v1_partition_files},
};

const ROOT: &str = "/m";
const PART: &str = "/m/partitions/test/0";
const NOW_MS: u64 = 1_700_000_000_000;

async fn write_file(sim: &SimStorage, path: &Path, bytes: Vec<u8>) {
    let f = sim.create(path).await.expect("create");
    f.write_at(bytes, 0).await.expect("write");
    f.sync_data().await.expect("sync");
}

/// What a v1 node left (`testing::v1_partition_files`): `a` = "three", `b` = "two" in its WAL;
/// with the configuration and clock the tests open it with.
async fn v1_partition() -> (SimStorage, EngineConfig, Rc<ManualClock>) {
    let sim = SimStorage::new();
    let dir = Path::new(PART);
    sim.create_dir_all(dir).await.expect("mkdir");
    for (name, bytes) in v1_partition_files() {
        write_file(&sim, &dir.join(name), bytes).await;
    }
    sim.sync_dir(dir).await.expect("sync dir");
    let mut cfg = small_config(Path::new(ROOT), 0);
    cfg.auto_maintenance = false;
    (sim, cfg, Rc::new(ManualClock::new(NOW_MS)))
}

async fn read(e: &candybox_core::engine::Engine<SimStorage>, key: &[u8]) -> Option<Vec<u8>> {
    match e.get(key, None).await {
        Ok(g) => Some(g.body.read_to_vec().expect("read")),
        Err(Error::NotFound) => None,
        Err(other) => panic!("get {key:?}: {other}"),
    }
}

async fn wals(sim: &SimStorage) -> Vec<String> {
    let mut names: Vec<String> =
        sim.list(Path::new(PART)).await.expect("list").into_iter().filter(|n| n.starts_with("WAL-")).collect();
    names.sort();
    names
}

#[test]
fn a_v1_partition_opens_whole_and_its_first_flush_retires_its_wals() {
    block_on(async {
        let (sim, cfg, clock) = v1_partition().await;
        let (e, report) = open_engine(sim.clone(), clock.clone(), cfg.clone()).await.expect("open a v1 partition");
        assert_eq!(report.wal_records, 2, "both WAL records replayed");
        assert_eq!(read(&e, b"a").await.as_deref(), Some(&b"three"[..]));
        assert_eq!(read(&e, b"b").await.as_deref(), Some(&b"two"[..]));
        // The open flushed what it replayed (a partition opened on its own retires its logs), so
        // the WAL is obsolete: deleted by GC after the grace period.
        e.put(b"c", PutOptions::default(), SliceBody::new(b"four".to_vec())).await.expect("put");
        clock.advance(std::time::Duration::from_millis(cfg.gc_grace_ms + 1));
        e.gc(&Default::default()).await.expect("gc");
        assert!(wals(&sim).await.is_empty(), "the v1 WAL outlived the flush that holds its records");
        drop(e);
        let (e, _) = open_engine(sim.clone(), clock.clone(), cfg.clone()).await.expect("reopen");
        assert_eq!(read(&e, b"a").await.as_deref(), Some(&b"three"[..]));
        assert_eq!(read(&e, b"b").await.as_deref(), Some(&b"two"[..]));
        assert_eq!(read(&e, b"c").await.as_deref(), Some(&b"four"[..]));
    });
}

/// A crash after new mutations reached the commit log but before the first flush: the next open
/// replays the v1 WAL first, then the commit log, so the newer put of `a` still wins.
#[test]
fn a_crash_before_the_first_flush_replays_the_wal_then_the_commit_log() {
    block_on(async {
        let (sim, cfg, clock) = v1_partition().await;
        // Opened into a shard's log the way the node does (no flush at open): the WAL stays
        // needed until the partition's first flush.
        let log = CommitLog::create(sim.clone(), format!("{PART}/log/shard-000"), 0, 1, 1, 1, LogConfig::default())
            .await
            .expect("log");
        let (e, report) = Engine::open_in(sim.clone(), clock.clone(), cfg.clone(), &log, &Replay::default())
            .await
            .expect("open into a shard log");
        assert_eq!(report.wal_records, 2);
        assert_eq!(wals(&sim).await.len(), 1, "the WAL is kept while its records are not flushed");
        e.put(b"a", PutOptions::default(), SliceBody::new(b"five".to_vec())).await.expect("put");
        sim.crash(candybox_core::testing::sim::CrashMode::DropUnsynced);
        drop((e, log));
        let (e, _) = open_engine(sim.clone(), clock.clone(), cfg.clone()).await.expect("recover");
        assert_eq!(read(&e, b"a").await.as_deref(), Some(&b"five"[..]), "the commit log's put is newer");
        assert_eq!(read(&e, b"b").await.as_deref(), Some(&b"two"[..]));
    });
}
