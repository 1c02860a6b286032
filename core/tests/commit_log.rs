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
        let config = LogConfig { segment_bytes: 4096, bytes_max: 32 * 1024, ..LogConfig::default() };
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

/// Prepared segments (written full of zeros in the background, renamed in at the roll): after a
/// crash every acknowledged mutation is replayed, the zeros behind a closed segment's records
/// are neither damage nor a torn tail (the next segment's header says where its records end),
/// and a closed segment that lost its last record, whole or in part, is damage.
#[test]
fn prepared_segments_replay_everything_and_a_closed_segment_missing_records_is_damage() {
    use candybox_core::{
        log::{format, recover},
        testing::sim::CrashMode,
    };
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let config = LogConfig { segment_bytes: 4096, bytes_max: 1 << 30, prepare: true, ..LogConfig::default() };
        let log = CommitLog::create(sim.clone(), "/p/log/shard-000", 0, 1, 1, 1, config).await.expect("log");
        let mut c = small_config(Path::new("/p"), 0);
        // Nothing flushed: every record stays in the log, every segment stays.
        c.auto_maintenance = false;
        c.memtable_bytes = 1 << 20;
        let (e, _) =
            Engine::open_in(sim.clone(), clock.clone(), c.clone(), &log, &Default::default()).await.expect("open");
        for i in 0..300u32 {
            let key = format!("key-{i:04}");
            e.put(key.as_bytes(), PutOptions::default(), SliceBody::new(vec![i as u8; 60])).await.expect("put");
            // The preparation runs between the puts.
            for _ in 0..4 {
                yield_now().await;
            }
        }
        let stats = log.stats();
        assert!(stats.segments_created >= 5, "{stats:?}");
        assert!(stats.segments_prepared >= 3, "most rolls took a prepared segment: {stats:?}");
        sim.crash(CrashMode::DropUnsynced);

        let dirs = recover::log_dirs(&sim, Path::new("/p/log")).await.expect("dirs");
        let found = recover::recover(&sim, &dirs).await.expect("recover");
        assert!(found.damage.is_empty(), "{:?}", found.damage);
        assert!(found.torn_tails.is_empty(), "zeros behind the records are not a tear: {:?}", found.torn_tails);
        let mut found = found;
        let replay = found.take(c.box_uid, 0);
        let log2 = CommitLog::create(sim.clone(), "/p/log/shard-001", 1, 100, 100, 1, LogConfig::default())
            .await
            .expect("new log");
        let (e, _) = Engine::open_in(sim.clone(), clock.clone(), c.clone(), &log2, &replay).await.expect("reopen");
        for i in 0..300u32 {
            let key = format!("key-{i:04}");
            let got = e.get(key.as_bytes(), None).await.expect("every acknowledged put is there");
            assert_eq!(got.body.read_to_vec().expect("read"), vec![i as u8; 60], "{key}");
        }

        // A closed segment and where its successor says its records end.
        let mut segments: Vec<(u64, std::path::PathBuf)> = found
            .segments
            .iter()
            .filter(|p| p.starts_with("/p/log/shard-000"))
            .filter_map(|p| Some((format::parse_file_name(p.file_name()?.to_str()?)?, p.clone())))
            .collect();
        segments.sort();
        let (closed, next) = (&segments[1].1, &segments[2].1);
        let next_bytes = sim.read_durable(next).expect("next segment");
        let header = format::decode_header(&next_bytes[..format::SEGMENT_HEADER_BYTES]).expect("header");
        let end = u64::from(header.previous_end.expect("a version 2 header"));
        assert!(end > format::SEGMENT_HEADER_BYTES as u64, "the closed segment holds records");
        let closed_bytes = sim.read_durable(closed).expect("closed segment");
        assert!(closed_bytes.len() as u64 > end, "prepared: zeros follow its records");
        assert!(closed_bytes[end as usize..].iter().all(|b| *b == 0));
        // Another closed segment loses its last record whole: it now ends, clean, at the record
        // before, short of where its successor says.
        let (closed2, next2) = (&segments[2].1, &segments[3].1);
        let next2_bytes = sim.read_durable(next2).expect("next segment");
        let end2 = format::decode_header(&next2_bytes[..format::SEGMENT_HEADER_BYTES]).expect("header").previous_end;
        let closed2_bytes = sim.read_durable(closed2).expect("closed segment");
        let body_end = usize::try_from(end2.expect("version 2")).expect("fits");
        let (records, _) = candybox_core::record::scan_records(
            &closed2_bytes[format::SEGMENT_HEADER_BYTES..body_end],
            format::SEGMENT_HEADER_BYTES as u64,
            1 << 20,
        )
        .expect("records");
        let (last_at, _) = *records.last().expect("a record");
        sim.set_len(closed2, last_at);
        let found = recover::recover(&sim, &dirs).await.expect("recover");
        assert!(
            found.damage.iter().any(|d| d.path == *closed2),
            "a whole record lost from a closed segment is damage: {:?}",
            found.damage
        );
        // And a closed segment whose last record is cut in the middle.
        sim.set_len(closed, end - 5);
        let found = recover::recover(&sim, &dirs).await.expect("recover");
        assert!(
            found.damage.iter().any(|d| d.path == *closed),
            "records lost from a closed segment are damage: {:?}",
            found.damage
        );
    });
}

/// A segment's preparation is paced by the current segment's filling: one write of zeros at the
/// roll, the rest spread until the current segment is two-thirds full (a 64 MiB write of zeros
/// at once stalled the log's fdatasyncs for ~200 ms on a 330 MB/s disk). An idle log prepares no
/// further than that first write; a dropped log ends its preparation.
#[test]
fn a_preparation_is_paced_by_the_current_segments_filling() {
    use candybox_core::storage::{Storage, StorageFile};
    const MIB: u64 = 1024 * 1024;
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        // Prepared segments of 2 MiB: two writes of 1 MiB; the second is allowed once the
        // current segment holds 1 MiB / 1.5 (~683 KiB) of records.
        let config = LogConfig { segment_bytes: 2 * MIB, bytes_max: 1 << 30, prepare: true, ..LogConfig::default() };
        let log = CommitLog::create(sim.clone(), "/q/log/shard-000", 0, 1, 1, 1, config).await.expect("log");
        let prep = Path::new("/q/log/shard-000/LOG-00000002.prep");
        let prep_len = || {
            let sim = sim.clone();
            async move { sim.open(prep).await.expect("the preparation's file").len().await.expect("len") }
        };
        for _ in 0..64 {
            yield_now().await;
        }
        assert_eq!(prep_len().await, MIB, "an idle log prepares one write ahead, no more");

        let mut c = small_config(Path::new("/q"), 0);
        c.auto_maintenance = false;
        c.memtable_bytes = 64 << 20;
        let (e, _) = Engine::open_in(sim.clone(), clock, c, &log, &Default::default()).await.expect("open");
        let next = std::cell::Cell::new(0u32);
        let put_until = |bytes: u64| {
            let (e, log, next) = (&e, &log, &next);
            async move {
                while log.live_bytes() < bytes {
                    let key = format!("key-{:08}-{}", next.get(), "k".repeat(200));
                    e.put(key.as_bytes(), PutOptions::default(), SliceBody::new(vec![1; 8])).await.expect("put");
                    next.set(next.get() + 1);
                }
                for _ in 0..64 {
                    yield_now().await;
                }
            }
        };
        put_until(600 * 1024).await;
        assert_eq!(prep_len().await, MIB, "at 600 KiB of 2 MiB the second write is not due yet");
        put_until(700 * 1024).await;
        assert_eq!(prep_len().await, 2 * MIB, "at 700 KiB it is: the preparation is whole");
        put_until(2 * MIB + 4096).await;
        let stats = log.stats();
        assert_eq!(stats.segments_prepared, 1, "the roll took the prepared segment: {stats:?}");
        e.close().await;
    });
}
