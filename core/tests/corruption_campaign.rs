//! The corruption campaign: a flipped byte in every kind of file a partition uses (CURRENT, the
//! manifest, a WAL, an SSTable, a Syrup), at several offsets each (header, early, middle, late,
//! last byte), after a realistic history (flushed tables, records only in the WAL, big and inline
//! Candies). Whatever the damage, the outcome is one of the documented ones and never a silent
//! loss:
//! - the open refuses with `Corrupt` naming the damaged file (the node quarantines the partition),
//!   or
//! - the open succeeds and every acknowledged Candy reads back its exact bytes, or fails with a
//!   typed checksum or corruption error — never wrong bytes, and never `NotFound` for a Candy that
//!   was acknowledged and not deleted.

use std::{collections::BTreeMap, path::Path, rc::Rc};

use candybox_core::{
    engine::{Engine, PutOptions, SliceBody},
    error::{Error, FileKind},
    runtime::{block_on, ManualClock},
    storage::Storage,
    testing::{open_engine, sim::SimStorage, small_config},
};

const ROOT: &str = "/cc";
const PART: &str = "/cc/partitions/test/0";
/// The commit log of a partition opened on its own.
const LOG: &str = "/cc/partitions/test/0/log/shard-000";

fn data(n: usize, seed: u64) -> Vec<u8> {
    (0..n).map(|i| (i as u64).wrapping_mul(2654435761).wrapping_add(seed) as u8).collect()
}

async fn open(sim: &SimStorage) -> Result<Engine<SimStorage>, Error> {
    let mut cfg = small_config(Path::new(ROOT), 0);
    cfg.auto_maintenance = false;
    open_engine(sim.clone(), Rc::new(ManualClock::new(1_700_000_000_000)), cfg).await.map(|(e, _)| e)
}

/// A partition with history: tables, WAL-only records, a deleted key; returns what is live.
async fn history(sim: &SimStorage) -> BTreeMap<String, Vec<u8>> {
    let e = open(sim).await.expect("open");
    let mut live = BTreeMap::new();
    for i in 0..40u64 {
        let len = if i % 3 == 0 { 30 } else { 700 + (i as usize * 37) % 2000 };
        let body = data(len, i);
        e.put(format!("k{i:02}").as_bytes(), PutOptions::default(), SliceBody::new(body.clone())).await.expect("put");
        live.insert(format!("k{i:02}"), body);
        if i == 25 {
            e.flush().await.expect("flush");
        }
    }
    e.delete(b"k05").await.expect("delete");
    live.remove("k05");
    drop(e);
    live
}

async fn files_of(sim: &SimStorage, dir: &str, kind: &str) -> Vec<String> {
    let mut names: Vec<String> = sim
        .list(Path::new(dir))
        .await
        .expect("list")
        .into_iter()
        .filter(|n| match kind {
            "current" => n == "CURRENT",
            "manifest" => n.starts_with("MANIFEST-"),
            "wal" => n.starts_with("LOG-"),
            "table" => n.starts_with("T-"),
            _ => true,
        })
        .collect();
    names.sort();
    names
}

#[test]
fn a_flipped_byte_anywhere_is_refused_or_reported_never_silently_lost() {
    let mut outcomes: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for kind in ["current", "manifest", "wal", "table", "syrup"] {
        for pick in 0..6u64 {
            block_on(async {
                let sim = SimStorage::new();
                let live = history(&sim).await;
                let (dir, names) = match kind {
                    "syrup" => ("/cc/syrups", files_of(&sim, "/cc/syrups", kind).await),
                    "wal" => (LOG, files_of(&sim, LOG, kind).await),
                    _ => (PART, files_of(&sim, PART, kind).await),
                };
                // The WAL recovery replays (the newest: the older one was flushed); otherwise the
                // largest file of the kind.
                let mut best = None;
                for n in &names {
                    let len = sim.read_durable(&Path::new(dir).join(n)).map_or(0, |b| b.len() as u64);
                    if kind == "wal" || best.as_ref().is_none_or(|(_, l)| len > *l) {
                        best = Some((n.clone(), len));
                    }
                }
                let (name, len) = best.unwrap_or_else(|| panic!("no {kind} file"));
                let path = Path::new(dir).join(&name);
                let offset = match pick {
                    0 => 0,
                    1 => 9.min(len - 1),
                    2 => 40.min(len - 1),
                    3 => len / 2,
                    4 => len.saturating_sub(20),
                    _ => len - 1,
                };
                sim.flip_byte(&path, offset);
                let what = format!("{kind} {name} offset {offset} of {len}");
                match open(&sim).await {
                    Err(Error::Corrupt(c)) => {
                        assert_eq!(c.path, path, "{what}: the error names the damaged file: {c}");
                        let expected_kind = match kind {
                            "current" => FileKind::Pointer,
                            "manifest" => FileKind::Manifest,
                            "wal" => FileKind::Wal,
                            "table" => FileKind::Table,
                            _ => FileKind::Syrup,
                        };
                        assert_eq!(c.kind, expected_kind, "{what}");
                        outcomes.entry(kind).or_default().0 += 1;
                    }
                    Err(e) => panic!("{what}: the open failed with an untyped error: {e}"),
                    Ok(e) => {
                        for (key, want) in &live {
                            match e.get(key.as_bytes(), None).await {
                                Ok(g) => match g.body.read_to_vec() {
                                    Ok(got) => assert!(&got == want, "{what}: {key} reads wrong bytes"),
                                    Err(Error::ChecksumMismatch { .. } | Error::Corrupt(_)) => {}
                                    Err(other) => panic!("{what}: {key}: {other}"),
                                },
                                Err(Error::ChecksumMismatch { .. } | Error::Corrupt(_)) => {}
                                Err(Error::NotFound) => panic!("{what}: acknowledged {key} was silently dropped"),
                                Err(other) => panic!("{what}: {key}: {other}"),
                            }
                        }
                        outcomes.entry(kind).or_default().1 += 1;
                    }
                }
            });
        }
    }
    println!("corruption campaign (refused at open, opened with typed read errors at worst): {outcomes:?}");
    // The pointer, the manifest and the live WAL refuse every flip (each byte is under a
    // checksum that recovery reads); a table refuses damage to what open checks (footer, index,
    // filters) and reports a damaged data block on reads; Syrup damage shows on reads only.
    for kind in ["current", "manifest", "wal"] {
        assert_eq!(outcomes.get(kind).map(|o| o.0), Some(6), "{kind}: {outcomes:?}");
    }
    assert!(outcomes.get("table").is_some_and(|o| o.0 >= 1 && o.0 + o.1 == 6), "{outcomes:?}");
    assert_eq!(outcomes.get("syrup").map(|o| o.1), Some(6), "{outcomes:?}");
}
