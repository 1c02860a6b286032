//! The shard commit log's bound: a partition that wrote once and went idle holds the log's oldest
//! segment; once the live segments pass `bytes_max`, the log asks it to flush, and the segments
//! no partition needs are deleted, so the log (and the replay after a crash) stays bounded.

use std::{path::Path, rc::Rc};

use candybox_core::{
    engine::{Engine, PutOptions, SliceBody},
    log::{CommitLog, LogConfig},
    runtime::{block_on, yield_now, ManualClock},
    testing::{sim::SimStorage, small_config},
};

#[test]
fn an_idle_partition_is_asked_to_flush_so_the_log_stays_bounded() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let config = LogConfig { segment_bytes: 4096, bytes_max: 32 * 1024 };
        let log = CommitLog::create(sim.clone(), "/b/log/shard-000", 0, 1, 1, 1, config.clone()).await.expect("log");
        let mut engines = Vec::new();
        for p in 0..2 {
            let c = small_config(Path::new("/b"), p);
            let (e, _) = Engine::open_in(sim.clone(), clock.clone(), c, &log, &Default::default()).await.expect("open");
            engines.push(e);
        }
        let (idle, busy) = (&engines[0], &engines[1]);
        idle.put(b"once", PutOptions::default(), SliceBody::new(vec![1; 40])).await.expect("put");
        let mut live_max = 0;
        for i in 0..3000u32 {
            let key = format!("key-{:05}", i % 500);
            busy.put(key.as_bytes(), PutOptions::default(), SliceBody::new(vec![i as u8; 50])).await.expect("put");
            if i % 50 == 0 {
                // Background flushes run between the puts.
                for _ in 0..8 {
                    yield_now().await;
                }
            }
            live_max = live_max.max(log.live_bytes());
        }
        for _ in 0..64 {
            yield_now().await;
        }
        let stats = log.stats();
        assert!(stats.records >= 3000, "{stats:?}");
        assert!(stats.flushes_wanted >= 1, "the idle partition was asked to flush: {stats:?}");
        assert!(idle.stats().flushes >= 1, "and it flushed");
        assert!(stats.segments_deleted > 0, "{stats:?}");
        // Over its bound by at most what one memtable flush takes to catch up: never the whole
        // history (3000 records of ~100 bytes, ~300 KiB).
        let bound = config.bytes_max + 8 * config.segment_bytes;
        assert!(live_max <= bound, "the log reached {live_max} bytes, bound {bound}: {stats:?}");
        assert!(log.live_bytes() <= bound);
    });
}

/// After an fdatasync of the shard's log fails, nothing more is acknowledged on that shard: the
/// record's partitions get the error, the others `PreviousIo`. Restarting the log (a new segment
/// that starts a new run, as the node does when it reopens a stopped partition) and reopening
/// the partitions from the live segments brings back everything acknowledged, and writes go on.
#[test]
fn a_failed_log_sync_stops_the_shards_writes_until_the_log_restarts() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let log =
            CommitLog::create(sim.clone(), "/f/log/shard-000", 0, 1, 1, 1, LogConfig::default()).await.expect("log");
        let open = |p: u16, replay: candybox_core::log::recover::Replay| {
            let (sim, clock, log) = (sim.clone(), clock.clone(), log.clone());
            async move {
                let mut c = small_config(Path::new("/f"), p);
                c.auto_maintenance = false;
                Engine::open_in(sim, clock, c, &log, &replay).await
            }
        };
        let (a, _) = open(0, Default::default()).await.expect("open a");
        let (b, _) = open(1, Default::default()).await.expect("open b");
        a.put(b"kept-a", PutOptions::default(), SliceBody::new(vec![1; 30])).await.expect("put");
        b.put(b"kept-b", PutOptions::default(), SliceBody::new(vec![2; 30])).await.expect("put");

        sim.fail_next(candybox_core::testing::sim::OpKind::Sync, libc::EIO);
        let failed = a.put(b"lost", PutOptions::default(), SliceBody::new(vec![3; 30])).await;
        assert!(matches!(failed, Err(candybox_core::error::Error::Io(_))), "{failed:?}");
        assert!(log.is_failed());
        let refused = b.put(b"refused", PutOptions::default(), SliceBody::new(vec![4; 30])).await;
        assert!(matches!(refused, Err(candybox_core::error::Error::PreviousIo)), "{refused:?}");

        a.close().await;
        b.close().await;
        log.restart().await.expect("restart the log");
        assert!(!log.is_failed());
        let (a, _) = open(0, log.replay_live(a.config().box_uid, 0).await.expect("replay a")).await.expect("reopen a");
        let (b, _) = open(1, log.replay_live(b.config().box_uid, 1).await.expect("replay b")).await.expect("reopen b");
        assert_eq!(a.get(b"kept-a", None).await.expect("get").body.read_to_vec().expect("read"), vec![1; 30]);
        assert_eq!(b.get(b"kept-b", None).await.expect("get").body.read_to_vec().expect("read"), vec![2; 30]);
        a.put(b"after", PutOptions::default(), SliceBody::new(vec![5; 30])).await.expect("writes go on");
        b.put(b"after", PutOptions::default(), SliceBody::new(vec![6; 30])).await.expect("writes go on");
        assert_eq!(a.get(b"after", None).await.expect("get").body.read_to_vec().expect("read"), vec![5; 30]);
    });
}
