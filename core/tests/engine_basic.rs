//! The engine's operations on real files through io_uring, one behaviour per test.

use std::rc::Rc;

use bytes::Bytes;
use candybox_core::{
    engine::{ByteRange, ListOptions, PutOptions, SliceBody},
    error::Error,
    runtime::{block_on, ManualClock},
    storage::uring::UringStorage,
    testing::{open_engine, small_config},
};

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn put_get_head_delete_round_trip_on_real_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    block_on(async {
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let (e, report) =
            open_engine(UringStorage::new(), clock.clone(), small_config(dir.path(), 0)).await.expect("open");
        assert!(report.created);
        let big = data(5000, 1);
        let small = data(10, 2);
        let r = e
            .put(b"big", PutOptions { content_type: "a/b".into(), ..Default::default() }, SliceBody::new(big.clone()))
            .await
            .expect("put big");
        assert_eq!(r.size, 5000);
        e.put(b"small", PutOptions::default(), SliceBody::new(small.clone())).await.expect("put small");
        e.put(b"empty", PutOptions::default(), SliceBody::pieces([])).await.expect("put empty");
        let g = e.get(b"big", None).await.expect("get");
        assert_eq!(g.locator.content_type, "a/b");
        assert_eq!(g.body.read_to_vec().expect("read"), big);
        let g = e.get(b"big", Some(ByteRange::FromTo(510, 1030))).await.expect("range");
        assert_eq!(g.body.read_to_vec().expect("read"), big[510..=1030].to_vec());
        assert_eq!(e.get(b"small", None).await.expect("get").body.read_to_vec().expect("read"), small);
        assert_eq!(e.get(b"empty", None).await.expect("get").body.read_to_vec().expect("read"), Vec::<u8>::new());
        assert_eq!(e.head(b"big").await.expect("head").size, 5000);
        e.delete(b"big").await.expect("delete");
        assert!(matches!(e.get(b"big", None).await, Err(Error::NotFound)));
        e.delete(b"never-was").await.expect("deleting an absent key succeeds");
        let page = e.list(&ListOptions::default()).await.expect("list");
        let keys: Vec<_> = page.entries.iter().map(|x| x.key.clone()).collect();
        assert_eq!(keys, vec![b"empty".to_vec(), b"small".to_vec()]);
        e.close().await;
        drop(e);
        let (e, report) = open_engine(UringStorage::new(), clock, small_config(dir.path(), 0)).await.expect("reopen");
        assert!(!report.created);
        assert_eq!(report.wal_records, 5);
        assert_eq!(e.get(b"small", None).await.expect("get").body.read_to_vec().expect("read"), small);
        assert!(matches!(e.head(b"big").await, Err(Error::NotFound)));
    });
}

#[test]
fn many_puts_flush_compact_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    block_on(async {
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let (e, _) = open_engine(UringStorage::new(), clock.clone(), small_config(dir.path(), 0)).await.expect("open");
        for i in 0..600u32 {
            let key = format!("key-{i:05}");
            let body = data(100 + (i as usize % 7) * 300, i as u8);
            e.put(
                key.as_bytes(),
                PutOptions::default(),
                SliceBody::pieces(body.chunks(97).map(Bytes::copy_from_slice).collect::<Vec<_>>()),
            )
            .await
            .expect("put");
        }
        e.delete_range(b"key-00100", b"key-00200").await.expect("delete range");
        e.flush().await.expect("flush");
        e.compact().await.expect("compact");
        let counts = e.level_table_counts();
        assert!(counts.iter().sum::<usize>() > 1, "{counts:?}");
        let page = e.list(&ListOptions { limit: 1000, ..Default::default() }).await.expect("list");
        assert_eq!(page.entries.len(), 500);
        for i in [0u32, 99, 200, 599] {
            let key = format!("key-{i:05}");
            let body = data(100 + (i as usize % 7) * 300, i as u8);
            assert_eq!(e.get(key.as_bytes(), None).await.expect("get").body.read_to_vec().expect("read"), body);
        }
        e.close().await;
        drop(e);
        let (e, _) = open_engine(UringStorage::new(), clock, small_config(dir.path(), 0)).await.expect("reopen");
        let page = e.list(&ListOptions { limit: 1000, reverse: true, ..Default::default() }).await.expect("list");
        assert_eq!(page.entries.len(), 500);
        assert_eq!(page.entries.first().map(|x| x.key.clone()), Some(b"key-00599".to_vec()));
        assert!(matches!(e.head(b"key-00150").await, Err(Error::NotFound)));
    });
}

#[test]
fn gc_on_real_files_unlinks_obsolete_tables_and_unreferenced_syrups_while_reads_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    block_on(async {
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let mut cfg = small_config(dir.path(), 0);
        cfg.auto_maintenance = false;
        cfg.l0_compaction_trigger = 1;
        let (e, _) = open_engine(UringStorage::new(), clock.clone(), cfg).await.expect("open");
        // Enough bytes for several Syrups (64 KiB roll), then delete most of them.
        for i in 0..40u32 {
            e.put(format!("k{i:03}").as_bytes(), PutOptions::default(), SliceBody::new(data(20_000, i as u8)))
                .await
                .expect("put");
        }
        e.flush().await.expect("flush");
        let keep = e.get(b"k039", None).await.expect("get");
        e.delete_range(b"k000", b"k039").await.expect("delete range");
        e.put(b"fresh", PutOptions::default(), SliceBody::new(data(20_000, 9))).await.expect("put");
        e.flush().await.expect("flush");
        e.compact().await.expect("compact");
        let syrup_dir = dir.path().join("syrups");
        let count = || std::fs::read_dir(&syrup_dir).expect("syrups").count();
        let before = count();
        e.gc(&Default::default()).await.expect("gc within the grace period");
        assert_eq!(count(), before, "nothing is deleted before the grace period");
        clock.advance(std::time::Duration::from_secs(5));
        let report = e.gc(&Default::default()).await.expect("gc");
        assert!(!report.syrups_deleted.is_empty());
        assert!(report.files_deleted > 0, "obsolete tables and WALs go too");
        assert!(count() < before);
        // A reader holding slices of a deleted Syrup keeps its bytes: unlinking keeps the mapping.
        assert_eq!(keep.body.read_to_vec().expect("read after unlink"), data(20_000, 39));
        assert_eq!(e.get(b"k039", None).await.expect("get").body.read_to_vec().expect("read"), data(20_000, 39));
        assert_eq!(e.get(b"fresh", None).await.expect("get").body.read_to_vec().expect("read"), data(20_000, 9));
        assert!(matches!(e.head(b"k001").await, Err(Error::NotFound)));
    });
}
