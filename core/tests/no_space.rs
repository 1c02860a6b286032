//! A full disk is a state, not a failure, at engine level (simulated storage): a write or create
//! that meets ENOSPC refuses that mutation with `NoSpace` and the partition goes on — reads,
//! deletes and later writes work, nothing acknowledged is lost, and the files stay clean for
//! recovery. A sync that meets ENOSPC still stops the partition (what reached the disk is then
//! unknown).

use std::{path::Path, rc::Rc};

use candybox_core::{
    engine::{Engine, PutOptions, SliceBody},
    error::Error,
    runtime::{block_on, ManualClock},
    testing::{
        open_engine,
        sim::{CrashMode, Fault, OpKind, SimStorage},
        small_config,
    },
};

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

async fn open(sim: &SimStorage) -> Engine<SimStorage> {
    let mut cfg = small_config(Path::new("/f"), 0);
    cfg.auto_maintenance = false;
    open_engine(sim.clone(), Rc::new(ManualClock::new(1_700_000_000_000)), cfg).await.expect("open").0
}

async fn read(e: &Engine<SimStorage>, key: &str) -> Vec<u8> {
    e.get(key.as_bytes(), None).await.expect("get").body.read_to_vec().expect("read")
}

/// Story: on a full file system the failing put answered `internal error ... No space left on
/// device`, and its partition stopped: gets of acknowledged objects were refused (`partition
/// stopped after an earlier I/O failure`), and deleting objects to make room stopped the others.
#[test]
fn a_full_disk_refuses_writes_and_the_partition_goes_on() {
    block_on(async {
        let sim = SimStorage::new();
        let e = open(&sim).await;
        e.put(b"small", PutOptions::default(), SliceBody::new(data(20, 1))).await.expect("put");
        e.put(b"big", PutOptions::default(), SliceBody::new(data(5000, 2))).await.expect("put");

        // Every write fails from now on, as on a full disk: a big put (Syrup write), a small put
        // and a delete (WAL write) are refused; the partition is not stopped.
        sim.inject(Fault { kind: Some(OpKind::Write), skip: 0, errno: libc::ENOSPC, sticky: true });
        let r = e.put(b"big-2", PutOptions::default(), SliceBody::new(data(5000, 3))).await;
        assert!(matches!(r, Err(Error::NoSpace)), "{r:?}");
        let r = e.put(b"small-2", PutOptions::default(), SliceBody::new(data(20, 4))).await;
        assert!(matches!(r, Err(Error::NoSpace)), "{r:?}");
        assert!(!e.is_failed());
        assert_eq!(read(&e, "small").await, data(20, 1));
        assert_eq!(read(&e, "big").await, data(5000, 2));
        assert!(matches!(e.delete(b"small").await, Err(Error::NoSpace)));
        // A flush and a compaction on a full disk are refused too, and leave nothing behind.
        assert!(matches!(e.flush().await, Err(Error::NoSpace)));
        assert!(!e.is_failed());

        // Space is freed: everything works again, with no reopen.
        sim.clear_faults();
        e.delete(b"small").await.expect("delete");
        e.put(b"big-2", PutOptions::default(), SliceBody::new(data(5000, 3))).await.expect("put after");
        e.flush().await.expect("flush after");
        assert_eq!(read(&e, "big-2").await, data(5000, 3));

        // Recovery sees clean files: every acknowledged write, nothing refused.
        drop(e);
        sim.crash(CrashMode::DropUnsynced);
        let e = open(&sim).await;
        assert_eq!(read(&e, "big").await, data(5000, 2));
        assert_eq!(read(&e, "big-2").await, data(5000, 3));
        assert!(matches!(e.head(b"small").await, Err(Error::NotFound)));
        assert!(matches!(e.head(b"small-2").await, Err(Error::NotFound)));
    });
}

/// A sync that fails (ENOSPC included: delayed allocation reports it there) leaves the durable
/// state unknown: the partition stops, as for any I/O error, and a reopen recovers it.
#[test]
fn a_full_disk_met_by_a_sync_stops_the_partition_until_reopened() {
    block_on(async {
        let sim = SimStorage::new();
        let e = open(&sim).await;
        e.put(b"k", PutOptions::default(), SliceBody::new(data(20, 1))).await.expect("put");
        sim.fail_next(OpKind::Sync, libc::ENOSPC);
        assert!(e.put(b"j", PutOptions::default(), SliceBody::new(data(20, 2))).await.is_err());
        assert!(e.is_failed());
        assert!(matches!(e.head(b"k").await, Err(Error::PreviousIo)));
        drop(e);
        let e = open(&sim).await;
        assert_eq!(read(&e, "k").await, data(20, 1));
    });
}
