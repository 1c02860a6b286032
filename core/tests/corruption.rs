//! Damaged files give their documented outcome: a typed error naming the file (and offset), or a
//! torn tail discarded at open; never a panic, never wrong bytes.

use std::{path::Path, rc::Rc};

use candybox_core::{
    engine::{Engine, PutOptions, SliceBody},
    error::{Error, FileKind},
    runtime::{block_on, ManualClock},
    storage::Storage,
    testing::{open_engine, sim::SimStorage, small_config},
};

const ROOT: &str = "/c";

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 256) as u8).collect()
}

async fn open(sim: &SimStorage) -> Result<Engine<SimStorage>, Error> {
    let mut cfg = small_config(Path::new(ROOT), 0);
    cfg.auto_maintenance = false;
    open_engine(sim.clone(), Rc::new(ManualClock::new(1_700_000_000_000)), cfg).await.map(|(e, _)| e)
}

async fn files(sim: &SimStorage, dir: &str, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> =
        sim.list(Path::new(dir)).await.expect("list").into_iter().filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    names
}

const PART: &str = "/c/partitions/test/0";
/// The commit log of a partition opened on its own.
const LOG: &str = "/c/partitions/test/0/log/shard-000";

/// Three puts (`k0`..`k2`), all in one segment of the partition's commit log: its path and length.
async fn three_puts_in_a_segment(sim: &SimStorage) -> (std::path::PathBuf, u64) {
    let e = open(sim).await.expect("open");
    for i in 0..3 {
        e.put(format!("k{i}").as_bytes(), PutOptions::default(), SliceBody::new(data(10 + i))).await.expect("put");
    }
    drop(e);
    let segment = files(sim, LOG, "LOG-").await.pop().expect("a segment");
    let path = Path::new(LOG).join(&segment);
    let len = sim.read_durable(&path).expect("segment").len() as u64;
    (path, len)
}

#[test]
fn a_flipped_byte_in_a_syrup_chunk_fails_that_read_with_evidence() {
    block_on(async {
        let sim = SimStorage::new();
        let e = open(&sim).await.expect("open");
        e.put(b"k", PutOptions::default(), SliceBody::new(data(3000))).await.expect("put");
        e.put(b"other", PutOptions::default(), SliceBody::new(data(100))).await.expect("put");
        let syrup = files(&sim, "/c/syrups", "").await.pop().expect("a syrup");
        // Byte 64 + 600 lies in the second chunk (chunks are 512 B + 4 B checksum).
        sim.flip_byte(&Path::new("/c/syrups").join(&syrup), 64 + 600);
        let g = e.get(b"k", None).await.expect("the locator is fine");
        match g.body.read_to_vec() {
            Err(Error::ChecksumMismatch { offset, .. }) => assert_eq!(offset, 64 + 516, "names the damaged chunk"),
            other => panic!("expected a checksum error, got {other:?}"),
        }
        // A range inside an intact chunk still reads; the damaged chunk fails on its own.
        let first = e.get(b"k", Some(candybox_core::engine::ByteRange::FromTo(0, 100))).await.expect("get");
        assert_eq!(first.body.read_to_vec().expect("intact chunk"), data(3000)[..=100].to_vec());
        let second = e.get(b"k", Some(candybox_core::engine::ByteRange::FromTo(520, 530))).await.expect("get");
        assert!(matches!(second.body.read_to_vec(), Err(Error::ChecksumMismatch { .. })));
        // The engine stays up for everything else.
        assert_eq!(e.get(b"other", None).await.expect("get").body.read_to_vec().expect("read"), data(100));
    });
}

#[test]
fn a_truncated_sstable_is_refused_at_open_naming_the_file() {
    block_on(async {
        let sim = SimStorage::new();
        let e = open(&sim).await.expect("open");
        for i in 0..50 {
            e.put(format!("key{i:03}").as_bytes(), PutOptions::default(), SliceBody::new(data(40))).await.expect("put");
        }
        e.flush().await.expect("flush");
        drop(e);
        let table = files(&sim, PART, "T-").await.pop().expect("a table");
        let path = Path::new(PART).join(&table);
        let len = sim.read_durable(&path).expect("table").len() as u64;
        sim.set_len(&path, len - 10);
        match open(&sim).await {
            Err(Error::Corrupt(c)) => {
                assert_eq!(c.kind, FileKind::Table);
                assert_eq!(c.path, path);
            }
            other => panic!("expected a corrupt-table error, got {other:?}"),
        }
    });
}

#[test]
fn a_torn_log_tail_is_discarded_and_everything_before_it_recovers() {
    block_on(async {
        let sim = SimStorage::new();
        let (path, len) = three_puts_in_a_segment(&sim).await;
        // Cut the last record in half, as a crash during its write would.
        sim.set_len(&path, len - 5);
        let mut cfg = small_config(Path::new(ROOT), 0);
        cfg.auto_maintenance = false;
        let (e, report) = open_engine(sim.clone(), Rc::new(ManualClock::new(1_700_000_000_000)), cfg)
            .await
            .expect("a torn tail is not an error");
        assert_eq!(report.torn_tails.len(), 1);
        assert_eq!(report.wal_records, 2);
        assert_eq!(e.get(b"k0", None).await.expect("k0").body.read_to_vec().expect("read"), data(10));
        assert_eq!(e.get(b"k1", None).await.expect("k1").body.read_to_vec().expect("read"), data(11));
        assert!(matches!(e.head(b"k2").await, Err(Error::NotFound)));
        // New writes land in a new segment, never behind the torn tail, and survive another reopen.
        e.put(b"k3", PutOptions::default(), SliceBody::new(data(13))).await.expect("put");
        drop(e);
        let e = open(&sim).await.expect("reopen");
        assert_eq!(e.get(b"k3", None).await.expect("k3").body.read_to_vec().expect("read"), data(13));
        assert_eq!(e.get(b"k1", None).await.expect("k1").body.read_to_vec().expect("read"), data(11));
    });
}

/// Story: a flipped byte inside the last WAL record was taken for a torn tail, and the
/// acknowledged put in it vanished at the next start with only a warning. A complete record that
/// fails its checksum is damage, not a tear: the open refuses, naming the file and offset.
#[test]
fn a_flipped_byte_in_the_last_log_record_is_corruption_not_a_tear() {
    block_on(async {
        let sim = SimStorage::new();
        let (path, len) = three_puts_in_a_segment(&sim).await;
        sim.flip_byte(&path, len - 3);
        match open(&sim).await {
            Err(Error::Corrupt(c)) => {
                assert_eq!(c.kind, FileKind::Wal);
                assert_eq!(c.path, path);
                assert!(c.to_string().contains("checksum mismatch at offset"), "{c}");
            }
            Err(e) => panic!("expected corruption, got {e}"),
            Ok(_) => panic!("an acknowledged record was dropped as a torn tail"),
        }
    });
}

/// Story: a truncated older WAL whose records were not yet flushed lost them silently: every
/// WAL was allowed a torn tail. Only the newest segment of a log's run can end in a tear; an
/// older one must be whole, and one missing from the middle of a run is found by the chain.
#[test]
fn a_truncated_or_missing_older_segment_is_corruption() {
    for damage in ["truncate", "remove"] {
        block_on(async {
            let sim = SimStorage::new();
            let mut cfg = small_config(Path::new(ROOT), 0);
            cfg.auto_maintenance = false;
            // Segments of about two records: the puts below fill several.
            cfg.log_segment_bytes = 200;
            let clock = Rc::new(ManualClock::new(1_700_000_000_000));
            let (e, _) = open_engine(sim.clone(), clock.clone(), cfg.clone()).await.expect("open");
            for i in 0..8 {
                e.put(format!("k{i}").as_bytes(), PutOptions::default(), SliceBody::new(data(10 + i)))
                    .await
                    .expect("put");
            }
            drop(e);
            let segments = files(&sim, LOG, "LOG-").await;
            assert!(segments.len() >= 3, "{segments:?}");
            let older = Path::new(LOG).join(&segments[0]);
            let next = Path::new(LOG).join(&segments[1]);
            let len = sim.read_durable(&older).expect("segment").len() as u64;
            let expected = if damage == "truncate" {
                sim.set_len(&older, len - 5);
                older
            } else {
                sim.remove(&older).await.expect("remove");
                sim.sync_dir(Path::new(LOG)).await.expect("sync");
                // Its successor names it as the segment before it.
                next
            };
            match open_engine(sim.clone(), clock.clone(), cfg.clone()).await {
                Err(Error::Corrupt(c)) => {
                    assert_eq!((c.kind, &c.path), (FileKind::Wal, &expected), "{damage}: {c}");
                }
                Err(e) => panic!("{damage}: expected corruption, got {e}"),
                Ok(_) => panic!("{damage}: acknowledged records of an older segment were dropped"),
            }
        });
    }
}

#[test]
fn a_garbled_manifest_edit_is_refused_at_open_naming_the_file() {
    block_on(async {
        let sim = SimStorage::new();
        let e = open(&sim).await.expect("open");
        for _ in 0..3 {
            e.create_upload(b"u", PutOptions::default()).await.expect("an upload is a manifest edit");
        }
        drop(e);
        let manifest = files(&sim, PART, "MANIFEST-").await.pop().expect("a manifest");
        let path = Path::new(PART).join(&manifest);
        // Byte 45 lies inside the first edit (header 32 B + record header 8 B), with edits after it.
        sim.flip_byte(&path, 45);
        match open(&sim).await {
            Err(Error::Corrupt(c)) => {
                assert_eq!(c.kind, FileKind::Manifest);
                assert_eq!(c.path, path);
            }
            other => panic!("expected a corrupt-manifest error, got {other:?}"),
        }
    });
}

#[test]
fn a_damaged_current_pointer_is_refused_at_open() {
    block_on(async {
        let sim = SimStorage::new();
        drop(open(&sim).await.expect("open"));
        let path = Path::new(PART).join("CURRENT");
        sim.flip_byte(&path, 12);
        assert!(matches!(open(&sim).await, Err(Error::Corrupt(c)) if c.kind == FileKind::Pointer && c.path == path));
    });
}

/// Story: a copy of a corrupt object succeeded silently, multiplying the damage under a new key.
/// A copy (and get-locator, the first step of a relayed copy) of a Candy up to
/// `copy_verify_bytes_max` reads and checks its bytes first, and refuses damaged ones.
#[test]
fn a_copy_of_a_damaged_candy_is_refused() {
    block_on(async {
        let sim = SimStorage::new();
        let e = open(&sim).await.expect("open");
        e.put(b"k", PutOptions::default(), SliceBody::new(data(3000))).await.expect("put");
        e.put(b"intact", PutOptions::default(), SliceBody::new(data(2000))).await.expect("put");
        let syrup = files(&sim, "/c/syrups", "").await.pop().expect("a syrup");
        // Byte 64 + 600 lies in the second chunk of `k` (chunks are 512 B + 4 B checksum).
        sim.flip_byte(&Path::new("/c/syrups").join(&syrup), 64 + 600);
        e.copy(b"intact", b"intact-copy").await.expect("an intact Candy copies");
        assert!(matches!(e.copy(b"k", b"k-copy").await, Err(Error::ChecksumMismatch { .. })));
        assert!(matches!(e.head(b"k-copy").await, Err(Error::NotFound)), "nothing was copied");
        assert!(matches!(e.get_locator(b"k").await, Err(Error::ChecksumMismatch { .. })));
        // Renaming moves the same bytes (no new copy): allowed; the damage stays visible on reads.
        e.rename(b"k", b"k-moved").await.expect("rename");
        let g = e.get(b"k-moved", None).await.expect("get");
        assert!(matches!(g.body.read_to_vec(), Err(Error::ChecksumMismatch { .. })));
    });
}
