//! The cross-partition primitives at engine level (SPEC §7): two engines of one Box share a Syrup
//! through a zero-copy put, Box-global GC keeps it while any published set holds it, forged
//! locators are refused, and the LWW-conditioned delete never removes a re-put source.

use std::{collections::BTreeSet, path::Path, rc::Rc, time::Duration};

use bytes::Bytes;
use candybox_core::{
    engine::{CopyOptions, Engine, PutOptions, SliceBody},
    error::{Error, ForgedLocator},
    locator::{CandyBody, CandyLocator, SegmentRef},
    runtime::{block_on, ManualClock},
    testing::{open_engine, sim::SimStorage, small_config},
    types::{BoxUid, SyrupId},
};

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

async fn two_partitions(sim: &SimStorage, clock: &Rc<ManualClock>) -> (Engine<SimStorage>, Engine<SimStorage>) {
    let mut a = small_config(Path::new("/n"), 0);
    let mut b = small_config(Path::new("/n"), 1);
    a.auto_maintenance = false;
    b.auto_maintenance = false;
    let (ea, _) = open_engine(sim.clone(), clock.clone(), a).await.expect("open a");
    let (eb, _) = open_engine(sim.clone(), clock.clone(), b).await.expect("open b");
    (ea, eb)
}

fn syrups_of(bytes: &[u8]) -> BTreeSet<SyrupId> {
    CandyLocator::decode(bytes).expect("locator").syrups().collect()
}

#[test]
fn zero_copy_put_shares_a_syrup_and_box_global_gc_keeps_it_until_no_partition_refers_to_it() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let (a, b) = two_partitions(&sim, &clock).await;
        let body = data(20_000);
        a.put(b"src", PutOptions::default(), SliceBody::new(body.clone())).await.expect("put");
        let (_, locator) = a.get_locator(b"src").await.expect("locator");
        let shared = syrups_of(&locator);
        assert_eq!(shared.len(), 1);
        let written_before = sim.stats().bytes_written;
        b.zero_copy_put(b"dst", &locator, &CopyOptions::default()).await.expect("zero-copy put");
        // Zero-copy: the destination wrote a WAL record, not the 20 KB body.
        assert!(
            sim.stats().bytes_written - written_before < 2_000,
            "{} bytes written",
            sim.stats().bytes_written - written_before
        );
        assert_eq!(b.get(b"dst", None).await.expect("get").body.read_to_vec().expect("read"), body);
        assert!(b.referenced_syrups().is_superset(&shared));

        // The creator stops referring to the Syrup; a fresh Syrup becomes active.
        a.delete(b"src").await.expect("delete");
        a.flush().await.expect("flush");
        a.put(b"filler", PutOptions::default(), SliceBody::new(data(70_000))).await.expect("roll");
        a.flush().await.expect("flush");
        a.compact().await.expect("compact");
        let id = *shared.iter().next().expect("one syrup");
        let path = Path::new("/n/syrups").join(id.file_name());
        assert!(!a.referenced_syrups().contains(&id), "creator still refers to the syrup");

        // B's published set holds it: GC of A keeps it, however long we wait.
        for _ in 0..3 {
            clock.advance(Duration::from_secs(10));
            let r = a.gc(&b.published_refs()).await.expect("gc");
            assert!(!r.syrups_deleted.contains(&id));
            assert!(sim.exists(&path));
        }
        assert_eq!(b.get(b"dst", None).await.expect("get").body.read_to_vec().expect("read"), body);

        // Once B drops its reference too, A deletes it after the grace period.
        b.delete(b"dst").await.expect("delete dst");
        b.flush().await.expect("flush");
        b.compact().await.expect("compact");
        let refs_b = b.published_refs();
        assert!(!refs_b.contains(&id));
        let first = a.gc(&refs_b).await.expect("gc");
        assert!(!first.syrups_deleted.contains(&id), "deleted before the grace period");
        clock.advance(Duration::from_secs(10));
        let second = a.gc(&refs_b).await.expect("gc");
        assert!(second.syrups_deleted.contains(&id));
        assert!(!sim.exists(&path));
    });
}

#[test]
fn forged_locators_are_refused() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let (a, b) = two_partitions(&sim, &clock).await;
        // A partition of another Box on the same node.
        let mut other = small_config(Path::new("/n"), 5);
        other.box_uid = BoxUid(99);
        other.partition_dir = "/n/partitions/other/5".into();
        let (o, _) = open_engine(sim.clone(), clock.clone(), other).await.expect("open other");
        o.put(b"secret", PutOptions::default(), SliceBody::new(data(3000))).await.expect("put");
        let (_, foreign) = o.get_locator(b"secret").await.expect("locator");
        assert!(matches!(
            b.zero_copy_put(b"stolen", &foreign, &CopyOptions::default()).await,
            Err(Error::Forged(ForgedLocator::OtherBox { .. }))
        ));

        a.put(b"src", PutOptions::default(), SliceBody::new(data(3000))).await.expect("put");
        // More bytes after it, so a skewed reference stays inside the durable length.
        a.put(b"pad", PutOptions::default(), SliceBody::new(data(3000))).await.expect("put");
        let (l, _) = a.get_locator(b"src").await.expect("locator");
        let forge = |f: &dyn Fn(&mut SegmentRef)| {
            let mut l = l.clone();
            let CandyBody::Parts(parts) = &mut l.body else { panic!("3000 bytes are not inline") };
            f(parts[0].segments.first_mut().expect("segment"));
            l.encode()
        };
        let far = forge(&|s| s.offset += 1_000_000);
        assert!(matches!(
            b.zero_copy_put(b"far", &far, &CopyOptions::default()).await,
            Err(Error::Forged(ForgedLocator::BeyondDurable { .. }))
        ));
        let skew = forge(&|s| s.offset += 7);
        let r = b.zero_copy_put(b"skew", &skew, &CopyOptions::default()).await;
        assert!(matches!(r, Err(Error::Forged(ForgedLocator::NotAChunk { .. }))), "{r:?}");
        let none = forge(&|s| s.syrup = SyrupId(s.syrup.0 + 12345));
        assert!(matches!(
            b.zero_copy_put(b"none", &none, &CopyOptions::default()).await,
            Err(Error::Forged(ForgedLocator::UnknownSyrup { .. }))
        ));
        assert!(matches!(
            b.zero_copy_put(b"junk", b"\x01\x01garbage", &CopyOptions::default()).await,
            Err(Error::Forged(ForgedLocator::Undecodable(_)))
        ));
        let tomb = CandyLocator::tombstone(l.hlc).encode();
        assert!(matches!(
            b.zero_copy_put(b"tomb", &tomb, &CopyOptions::default()).await,
            Err(Error::Forged(ForgedLocator::NotLive))
        ));
        // Nothing was written, and the engine still serves.
        for k in [&b"stolen"[..], b"far", b"skew", b"none", b"junk", b"tomb"] {
            assert!(matches!(b.head(k).await, Err(Error::NotFound)));
        }
        let (_, good) = a.get_locator(b"src").await.expect("locator");
        b.zero_copy_put(b"ok", &good, &CopyOptions::default()).await.expect("a genuine locator passes");
        assert_eq!(b.get(b"ok", None).await.expect("get").body.read_to_vec().expect("read"), data(3000));
    });
}

#[test]
fn rename_flow_finalizes_only_the_prepared_version() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let (a, b) = two_partitions(&sim, &clock).await;
        a.put(b"old", PutOptions::default(), SliceBody::new(data(2000))).await.expect("put");
        let (intent, locator) = a.prepare_rename(b"old", b"new", 1).await.expect("prepare");
        assert_eq!(a.rename_intents(), vec![intent.clone()]);
        b.zero_copy_put(b"new", &locator, &CopyOptions::default()).await.expect("zero-copy");
        // The source is re-put before finalize: it must survive.
        let reput =
            a.put(b"old", PutOptions::default(), SliceBody::new(Bytes::from_static(b"fresh"))).await.expect("re-put");
        assert!(reput.hlc > intent.source_hlc);
        assert!(!a.delete_if_hlc_equals(b"old", intent.source_hlc).await.expect("conditional"));
        assert_eq!(a.get(b"old", None).await.expect("get").body.read_to_vec().expect("read"), b"fresh".to_vec());
        // With the exact version it deletes.
        assert!(a.delete_if_hlc_equals(b"old", reput.hlc).await.expect("conditional"));
        assert!(matches!(a.head(b"old").await, Err(Error::NotFound)));
        assert!(!a.delete_if_hlc_equals(b"old", reput.hlc).await.expect("absent"));
        // Intents survive a reopen until cleared.
        drop(a);
        let mut cfg = small_config(Path::new("/n"), 0);
        cfg.auto_maintenance = false;
        let (a, _) = open_engine(sim.clone(), clock.clone(), cfg).await.expect("reopen");
        assert_eq!(a.rename_intents(), vec![intent.clone()]);
        a.clear_rename_intent(intent.token).await.expect("clear");
        assert!(a.rename_intents().is_empty());
        assert_eq!(b.get(b"new", None).await.expect("get").body.read_to_vec().expect("read"), data(2000));
    });
}

/// Story: two concurrent renames of one source both succeeded (37 of 40 trials on an
/// 8-partition Box): each prepare-rename recorded its own intent with the same source version,
/// both destinations were written, and the second finalize merely found the source gone. A
/// rename's intent now claims its source: every other rename of it is refused with `Conflict`
/// until the intent is settled, whether it comes through prepare-rename or a same-partition
/// rename, and however the two interleave.
#[test]
fn concurrent_renames_of_one_source_let_exactly_one_through() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let (a, b) = two_partitions(&sim, &clock).await;
        for round in 0..20u32 {
            let src = format!("src-{round}");
            a.put(src.as_bytes(), PutOptions::default(), SliceBody::new(data(3000))).await.expect("put");
            // Several prepares and same-partition renames started together, each its own task.
            let mut tasks = Vec::new();
            for i in 0..4u32 {
                let (e, key) = (a.clone(), src.clone());
                let same_partition = (i + round) % 2 == 0;
                tasks.push(candybox_core::runtime::spawn(async move {
                    let target = format!("dst-{i}");
                    if same_partition {
                        e.rename(key.as_bytes(), target.as_bytes()).await.map(|_| None)
                    } else {
                        e.prepare_rename(key.as_bytes(), target.as_bytes(), 1)
                            .await
                            .map(|(intent, l)| Some((intent, l)))
                    }
                }));
            }
            let mut winners = Vec::new();
            for t in tasks {
                match t.await {
                    Ok(w) => winners.push(w),
                    Err(Error::Conflict(_) | Error::NotFound) => {}
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: exactly one rename may claim the source");
            // While a prepared intent is pending, every other rename of the source is refused.
            if let Some(Some((intent, locator))) = winners.pop() {
                assert!(matches!(a.rename(src.as_bytes(), b"late").await, Err(Error::Conflict(_))));
                assert!(matches!(a.prepare_rename(src.as_bytes(), b"late", 1).await, Err(Error::Conflict(_))));
                b.zero_copy_put(&intent.target_key, &locator, &CopyOptions::default()).await.expect("destination");
                assert!(a.delete_if_hlc_equals(src.as_bytes(), intent.source_hlc).await.expect("finalize"));
                a.clear_rename_intent(intent.token).await.expect("clear");
            }
            assert!(matches!(a.head(src.as_bytes()).await, Err(Error::NotFound)));
            // A new version under the same key can be renamed again once the claim is gone.
            a.put(src.as_bytes(), PutOptions::default(), SliceBody::new(data(10))).await.expect("re-put");
            let (intent, _) = a.prepare_rename(src.as_bytes(), b"again", 1).await.expect("prepare after settle");
            a.clear_rename_intent(intent.token).await.expect("clear");
            a.delete(src.as_bytes()).await.expect("delete");
        }
    });
}

/// Story: zero-copy verification used a cached handle of a foreign Syrup; after the creator
/// deleted that Syrup, an old locator still verified through the open handle and the new locator
/// dangled.
#[test]
fn a_locator_into_a_deleted_syrup_is_refused_even_after_an_earlier_relay() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let (a, b) = two_partitions(&sim, &clock).await;
        a.put(b"src", PutOptions::default(), SliceBody::new(data(20_000))).await.expect("put");
        let (_, locator) = a.get_locator(b"src").await.expect("locator");
        b.zero_copy_put(b"first", &locator, &CopyOptions::default()).await.expect("relay while the syrup lives");
        b.delete(b"first").await.expect("delete");
        b.flush().await.expect("flush");
        a.delete(b"src").await.expect("delete");
        a.put(b"roll", PutOptions::default(), SliceBody::new(data(70_000))).await.expect("roll");
        a.flush().await.expect("flush");
        let id = *syrups_of(&locator).iter().next().expect("syrup");
        a.gc(&b.published_refs()).await.expect("gc");
        clock.advance(Duration::from_secs(10));
        assert!(a.gc(&b.published_refs()).await.expect("gc").syrups_deleted.contains(&id));
        let r = b.zero_copy_put(b"late", &locator, &CopyOptions::default()).await;
        assert!(matches!(r, Err(Error::Forged(ForgedLocator::UnknownSyrup { .. }))), "{r:?}");
    });
}

#[test]
fn genuine_chunks_spliced_into_another_candys_locator_fail_its_part_checksum_on_read() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let (a, b) = two_partitions(&sim, &clock).await;
        let other: Vec<u8> = data(3000).into_iter().rev().collect();
        a.put(b"src", PutOptions::default(), SliceBody::new(data(3000))).await.expect("put");
        a.put(b"other", PutOptions::default(), SliceBody::new(other.clone())).await.expect("put");
        let (src, _) = a.get_locator(b"src").await.expect("locator");
        let (oth, _) = a.get_locator(b"other").await.expect("locator");
        let (CandyBody::Parts(src_parts), CandyBody::Parts(other_parts)) = (&src.body, &oth.body) else {
            panic!("3000 bytes are not inline")
        };
        // src's Part (with src's checksum) over other's chunks: every chunk is genuine and on its
        // boundary, so the zero-copy put accepts it; only the Part checksum can tell.
        let mut spliced = src.clone();
        if let CandyBody::Parts(parts) = &mut spliced.body {
            parts[0].segments = other_parts[0].segments.clone();
        }
        assert_eq!(src_parts[0].segments.len(), other_parts[0].segments.len());
        b.zero_copy_put(b"spliced", &spliced.encode(), &CopyOptions::default())
            .await
            .expect("chunks verify at their boundaries");
        let read = b.get(b"spliced", None).await.expect("get").body.read_to_vec();
        assert!(matches!(read, Err(Error::ChecksumMismatch { .. })), "{read:?}");
        // A range inside one chunk checks that chunk only, and serves the bytes it holds.
        let ranged = b.get(b"spliced", Some(candybox_core::engine::ByteRange::FromTo(0, 9))).await.expect("get");
        assert_eq!(ranged.body.read_to_vec().expect("a range skips the Part check"), other[..10].to_vec());
        // The genuine locators still read whole.
        assert_eq!(a.get(b"other", None).await.expect("get").body.read_to_vec().expect("read"), other);
    });
}

/// Two partitions of one Box committing through one shard's log, as the node places partitions of
/// one shard (Syrups rolled at 64 KiB, no background maintenance).
async fn two_partitions_on_one_log(
    sim: &SimStorage,
    clock: &Rc<ManualClock>,
) -> (candybox_core::log::CommitLog<SimStorage>, Vec<Engine<SimStorage>>) {
    let log = candybox_core::log::CommitLog::create(
        sim.clone(),
        "/n/log/shard-000",
        0,
        1,
        1,
        1,
        candybox_core::log::LogConfig::default(),
    )
    .await
    .expect("log");
    let mut engines = Vec::new();
    for p in 0..2 {
        let mut c = small_config(Path::new("/n"), p);
        c.auto_maintenance = false;
        c.syrup_roll_bytes = 64 * 1024;
        let (e, _) = Engine::open_in(sim.clone(), clock.clone(), c, &log, &Default::default()).await.expect("open");
        engines.push(e);
    }
    (log, engines)
}

/// A copy the node runs itself (the locator comes from a partition of the same Box on this node,
/// committed, so its Syrups are durable) costs one record of the shard's log: no Syrup is opened,
/// read or synced, however many Syrups the Candy spans. A relayed locator is checked and each of
/// its Syrups synced.
#[test]
fn a_committed_copy_costs_one_log_record_and_a_relayed_one_syncs_each_syrup() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        let (log, engines) = two_partitions_on_one_log(&sim, &clock).await;
        let (a, b) = (&engines[0], &engines[1]);
        // Three parts of 70 KB: each reservation rolls to a new Syrup.
        let upload = a.create_upload(b"src", PutOptions::default()).await.expect("upload");
        let mut body = Vec::new();
        for n in 1..=3u32 {
            let part = data(70_000 + n as usize);
            a.upload_part(upload, n, Some(part.len() as u64), SliceBody::new(part.clone())).await.expect("part");
            body.extend(part);
        }
        a.complete_upload(upload, &[1, 2, 3]).await.expect("complete");
        let (locator, bytes) = a.get_locator(b"src").await.expect("locator");
        let syrups = syrups_of(&bytes).len() as u64;
        assert!(syrups >= 3, "{syrups} Syrups");

        let before = sim.stats();
        b.zero_copy_put(b"relayed", &bytes, &CopyOptions::default()).await.expect("relayed copy");
        let relayed = sim.stats();
        assert_eq!(relayed.sync_data_calls - before.sync_data_calls, syrups + 1, "each Syrup, then the log");

        b.put_committed_copy(b"committed", locator, &CopyOptions::default()).await.expect("committed copy");
        let committed = sim.stats();
        assert_eq!(committed.sync_data_calls - relayed.sync_data_calls, 1, "the log record only");
        assert_eq!(committed.write_calls - relayed.write_calls, 1, "one record written, nothing else");
        for key in [&b"relayed"[..], b"committed"] {
            assert_eq!(b.get(key, None).await.expect("get").body.read_to_vec().expect("read"), body);
        }
        assert_eq!(log.stats().records, 3, "complete, relayed copy, committed copy: one record each");

        // A rename across the two partitions of the shard: the target's locator and the source's
        // tombstone in one record, one fdatasync, nothing else written.
        let reply =
            b.rename_to(b"committed", a, b"renamed", &CopyOptions::default()).await.expect("rename across partitions");
        let renamed = sim.stats();
        assert_eq!(renamed.sync_data_calls - committed.sync_data_calls, 1, "one fdatasync");
        assert_eq!(renamed.write_calls - committed.write_calls, 1, "one record");
        assert_eq!(log.stats().records, 4);
        assert_eq!(log.stats().sections, 5, "the rename's record holds both partitions");
        assert_eq!(reply.size, body.len() as u64);
        assert!(matches!(b.head(b"committed").await, Err(Error::NotFound)));
        assert_eq!(a.get(b"renamed", None).await.expect("get").body.read_to_vec().expect("read"), body);
        // A claim on the source (a rename intent) refuses it, as within a partition.
        a.prepare_rename(b"renamed", b"elsewhere", 1).await.expect("intent");
        assert!(matches!(a.rename_to(b"renamed", b, b"other", &CopyOptions::default()).await, Err(Error::Conflict(_))));
    });
}

/// Two partitions on one log whose operations interleave as yield seed `seed` says, `a` holding
/// `src` (10 bytes), ready for a joint rename to `b` raced by other mutations.
async fn joint_rename_race(seed: u64) -> (SimStorage, Engine<SimStorage>, Engine<SimStorage>) {
    let sim = SimStorage::new();
    sim.set_yield_seed(seed);
    let clock = Rc::new(ManualClock::new(1_700_000_000_000));
    let (_log, engines) = two_partitions_on_one_log(&sim, &clock).await;
    let (a, b) = (engines[0].clone(), engines[1].clone());
    a.put(b"src", PutOptions::default(), SliceBody::new(data(10))).await.expect("put");
    (sim, a, b)
}

/// Story (found by the shared-log model test, which hung): a joint rename withdrawn because one of
/// its partitions closed left the other partition's later mutations waiting behind its part
/// forever: that partition had left the log's queue when it met the part at its front, and the
/// withdrawal did not put it back.
#[test]
fn a_withdrawn_joint_rename_lets_the_mutations_behind_it_commit() {
    for seed in 0..64u64 {
        block_on(async {
            let (_sim, a, b) = joint_rename_race(seed).await;
            // A batch of `a` ahead of the rename's part, the rename, and a put of `b` behind the
            // rename's part in `b`'s queue; then `a` closes while they are written.
            let (a1, a2, b2, b3) = (a.clone(), a.clone(), b.clone(), b.clone());
            let ahead = candybox_core::runtime::spawn(async move {
                a1.put(b"ahead", PutOptions::default(), SliceBody::new(data(5))).await
            });
            let rename = candybox_core::runtime::spawn(async move {
                a2.rename_to(b"src", &b2, b"dst", &CopyOptions::default()).await
            });
            let behind = candybox_core::runtime::spawn(async move {
                b3.put(b"behind", PutOptions::default(), SliceBody::new(data(7))).await
            });
            candybox_core::runtime::yield_now().await;
            a.close().await;
            let done = Rc::new(std::cell::Cell::new(false));
            let d = done.clone();
            let waiting = candybox_core::runtime::spawn(async move {
                let r = behind.await;
                d.set(true);
                r
            });
            for _ in 0..10_000 {
                if done.get() {
                    break;
                }
                candybox_core::runtime::yield_now().await;
            }
            assert!(done.get(), "seed {seed}: the put behind the withdrawn rename never committed");
            waiting.await.expect("the put behind commits");
            let _ = (ahead.await, rename.await);
            assert_eq!(b.get(b"behind", None).await.expect("get").body.read_to_vec().expect("read"), data(7));
        });
    }
}

/// Story (found by the shared-log model test, which hung in `close` after its random sequence
/// shifted): the same withdrawal seen from the closing partition. Its own mutation waited behind
/// its part of a joint rename, out of the log's queue; the rename was withdrawn because the
/// partition had closed, and the withdrawal re-queued the partition only if it was still open. So
/// nothing answered that mutation, and `close` waited for the partition's queue forever.
#[test]
fn closing_a_partition_answers_its_mutations_behind_a_withdrawn_joint_rename() {
    for seed in 0..64u64 {
        block_on(async {
            let (_sim, a, b) = joint_rename_race(seed).await;
            // `b` has a batch ahead of the rename's part (so the rename waits a round), `a` a put
            // behind its part; then `a` closes while they are written.
            let (a2, a3, b1, b2) = (a.clone(), a.clone(), b.clone(), b.clone());
            let ahead = candybox_core::runtime::spawn(async move {
                b1.put(b"ahead", PutOptions::default(), SliceBody::new(data(5))).await
            });
            let rename = candybox_core::runtime::spawn(async move {
                a2.rename_to(b"src", &b2, b"dst", &CopyOptions::default()).await
            });
            let behind = candybox_core::runtime::spawn(async move {
                a3.put(b"behind", PutOptions::default(), SliceBody::new(data(7))).await
            });
            candybox_core::runtime::yield_now().await;
            let closed = Rc::new(std::cell::Cell::new(false));
            let c = closed.clone();
            let closing = candybox_core::runtime::spawn(async move {
                a.close().await;
                c.set(true);
            });
            let started = std::time::Instant::now();
            while !closed.get() && started.elapsed() < std::time::Duration::from_secs(5) {
                candybox_core::runtime::sleep(std::time::Duration::from_millis(1)).await;
            }
            assert!(closed.get(), "seed {seed}: close waited for a mutation behind the withdrawn rename");
            closing.await;
            // Answered either way: written before the close, or refused by it.
            let _ = (ahead.await, rename.await, behind.await);
        });
    }
}

/// A Syrup id is never created twice in one process: partition b read a copy of a's Candy
/// (caching a's Syrup by id), then a's Syrup was deleted; b's next Syrup took the freed id (with
/// the clock standing still every partition proposes the same first id), and b's reads of its
/// own new Candy were served from the cached mapping of the deleted Syrup: a checksum mismatch on
/// an acknowledged put (found by the shared-log model test, seed 165).
#[test]
fn a_deleted_syrups_id_is_not_reused_while_a_partition_may_have_it_cached() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(1_700_000_000_000));
        // The clock stands still (ids are proposed from it) and unreferenced Syrups go at once.
        let config = |p: u16| {
            let mut c = small_config(Path::new("/n"), p);
            c.auto_maintenance = false;
            c.gc_grace_ms = 0;
            c
        };
        let (a, _) = open_engine(sim.clone(), clock.clone(), config(0)).await.expect("open a");
        let (b, _) = open_engine(sim.clone(), clock.clone(), config(1)).await.expect("open b");
        let old = data(20_000);
        a.put(b"src", PutOptions::default(), SliceBody::new(old.clone())).await.expect("put");
        let (_, locator) = a.get_locator(b"src").await.expect("locator");
        let first = syrups_of(&locator);
        b.zero_copy_put(b"copy", &locator, &CopyOptions::default()).await.expect("copy");
        // b reads the copy: a's Syrup is mapped in b's cache.
        assert_eq!(b.get(b"copy", None).await.expect("get").body.read_to_vec().expect("read"), old);
        b.delete(b"copy").await.expect("delete copy");
        a.delete(b"src").await.expect("delete");
        for e in [&a, &b] {
            e.flush().await.expect("flush");
        }
        // a rolls on (its first Syrup retires), then the GC of a deletes the first Syrup.
        a.put(b"filler", PutOptions::default(), SliceBody::new(data(70_000))).await.expect("roll");
        let mut deleted = BTreeSet::new();
        for _ in 0..3 {
            let report = a.gc(&b.referenced_syrups()).await.expect("gc");
            deleted.extend(report.syrups_deleted);
        }
        assert!(first.is_subset(&deleted), "the first Syrup was deleted: {first:?} / {deleted:?}");
        // b writes its own Candy into a Syrup of its own, and reads it back (within the range it
        // once mapped of the deleted Syrup).
        let new = (0..1_000).map(|i| (i % 239) as u8 ^ 0x5a).collect::<Vec<u8>>();
        b.put(b"mine", PutOptions::default(), SliceBody::new(new.clone())).await.expect("put");
        let (_, mine) = b.get_locator(b"mine").await.expect("locator");
        let read = b.get(b"mine", None).await.expect("get").body.read_to_vec();
        assert!(
            read.as_ref().is_ok_and(|r| *r == new),
            "b reads its acknowledged put back: {:?}",
            read.map(|r| r.len())
        );
        assert!(syrups_of(&mine).is_disjoint(&first), "a deleted Syrup's id was used again");
    });
}
