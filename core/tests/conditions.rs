//! Conditional mutations (issue 14, item 2): a put, delete, copy or rename that names a condition
//! on its key is checked when it joins the commit queue, against the committed state and every
//! mutation queued before it, so two writers racing on one key cannot both win; a failed
//! condition is `PreconditionFailed` naming the key's current version, and nothing is written.

use std::{cell::Cell, path::Path, rc::Rc, time::Duration};

use candybox_core::{
    engine::{CopyOptions, Engine, EngineConfig, PutOptions, PutReply, SliceBody, WriteCondition},
    error::{Error, Result},
    hlc::Hlc,
    runtime::{block_on, spawn, ManualClock},
    testing::{open_engine, sim::SimStorage, small_config},
};

const T0: u64 = 1_700_000_000_000;

fn cfg() -> EngineConfig {
    let mut c = small_config(Path::new("/c"), 0);
    c.auto_maintenance = false;
    c
}

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

async fn put_if(
    e: &Engine<SimStorage>,
    key: &str,
    data: Vec<u8>,
    condition: Option<WriteCondition>,
) -> Result<PutReply> {
    let opts = PutOptions { condition, ..PutOptions::default() };
    e.put(key.as_bytes(), opts, SliceBody::new(data)).await
}

async fn read(e: &Engine<SimStorage>, key: &str) -> Option<Vec<u8>> {
    match e.get(key.as_bytes(), None).await {
        Ok(g) => Some(g.body.read_to_vec().expect("read")),
        Err(Error::NotFound) => None,
        Err(err) => panic!("get {key}: {err}"),
    }
}

fn refused_naming(r: Result<impl std::fmt::Debug>, current: Option<Hlc>) {
    match r {
        Err(Error::PreconditionFailed { current: c, .. }) => {
            assert_eq!(c, current, "the error names the current version")
        }
        other => panic!("expected PreconditionFailed naming {current:?}, got {other:?}"),
    }
}

#[test]
fn each_condition_holds_or_refuses_with_the_current_version_and_writes_nothing() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(T0));
        let (e, _) = open_engine(sim.clone(), clock.clone(), cfg()).await.expect("open");
        // Bodies above the inline limit go through the Syrup path, small ones inline: both.
        for (key, size) in [("small", 40), ("large", 300_000)] {
            let first = put_if(&e, key, body(size, 1), Some(WriteCondition::IfAbsent)).await.expect("absent: stored");
            refused_naming(put_if(&e, key, body(size, 2), Some(WriteCondition::IfAbsent)).await, Some(first.hlc));
            assert_eq!(read(&e, key).await, Some(body(size, 1)), "{key}: the refused put wrote nothing");

            clock.advance(Duration::from_millis(5));
            let second = put_if(&e, key, body(size, 3), Some(WriteCondition::IfVersion(first.hlc)))
                .await
                .expect("version matches");
            assert!(second.hlc > first.hlc);
            refused_naming(
                put_if(&e, key, body(size, 4), Some(WriteCondition::IfVersion(first.hlc))).await,
                Some(second.hlc),
            );
            assert_eq!(read(&e, key).await, Some(body(size, 3)));

            let written = second.hlc.physical_ms;
            refused_naming(
                put_if(&e, key, body(size, 5), Some(WriteCondition::IfUnmodifiedSince(written - 1))).await,
                Some(second.hlc),
            );
            clock.advance(Duration::from_millis(5));
            let third = put_if(&e, key, body(size, 6), Some(WriteCondition::IfUnmodifiedSince(written)))
                .await
                .expect("unmodified since");
            assert_eq!(read(&e, key).await, Some(body(size, 6)));

            // Deletes: a stale version is refused and deletes nothing; the current one deletes.
            refused_naming(
                e.delete_if(key.as_bytes(), Some(WriteCondition::IfVersion(second.hlc))).await,
                Some(third.hlc),
            );
            assert_eq!(read(&e, key).await, Some(body(size, 6)));
            e.delete_if(key.as_bytes(), Some(WriteCondition::IfVersion(third.hlc))).await.expect("delete");
            assert_eq!(read(&e, key).await, None);
            // Absent: a version or time condition names no current version.
            refused_naming(put_if(&e, key, body(size, 7), Some(WriteCondition::IfVersion(third.hlc))).await, None);
            refused_naming(
                put_if(&e, key, body(size, 7), Some(WriteCondition::IfUnmodifiedSince(u64::MAX))).await,
                None,
            );
            assert_eq!(read(&e, key).await, None);
        }

        // The inline fast path (the node's admission of a whole small body) checks the same.
        let reply = e
            .admit_put_inline(
                b"inline",
                PutOptions { condition: Some(WriteCondition::IfAbsent), ..PutOptions::default() },
                b"one",
            )
            .expect("admit")
            .expect("inline")
            .durable()
            .await
            .expect("stored");
        let again = e.admit_put_inline(
            b"inline",
            PutOptions { condition: Some(WriteCondition::IfAbsent), ..PutOptions::default() },
            b"two",
        );
        refused_naming(again.map(|p| p.is_some()), Some(reply.hlc));
        assert_eq!(read(&e, "inline").await, Some(b"one".to_vec()));

        // Copy and rename check their target; a refused rename keeps its source.
        let src = put_if(&e, "src", body(500, 8), None).await.expect("put");
        let dst = put_if(&e, "dst", body(500, 9), None).await.expect("put");
        refused_naming(
            e.copy_or_rename_if(b"src", b"dst", true, &CopyOptions::when(Some(WriteCondition::IfAbsent))).await,
            Some(dst.hlc),
        );
        assert_eq!(read(&e, "src").await, Some(body(500, 8)), "the refused rename kept its source");
        assert_eq!(read(&e, "dst").await, Some(body(500, 9)));
        e.copy_or_rename_if(b"src", b"dst", true, &CopyOptions::when(Some(WriteCondition::IfVersion(dst.hlc))))
            .await
            .expect("rename");
        assert_eq!(read(&e, "src").await, None);
        assert_eq!(read(&e, "dst").await, Some(body(500, 8)));
        let _ = src;
        e.close().await;
    });
}

/// 20 writers race on one key per round, each with the condition the last round's winner left
/// (absent, then the winner's version): exactly one wins each round, every other one is refused
/// naming the winner, and the key holds the winner's bytes. Small and Syrup-sized bodies, so
/// the race also spans writers whose bodies are still streaming when another commits.
#[test]
fn twenty_writers_racing_on_one_key_have_exactly_one_winner_per_round() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(T0));
        let (e, _) = open_engine(sim.clone(), clock.clone(), cfg()).await.expect("open");
        let mut condition = WriteCondition::IfAbsent;
        for round in 0..12u8 {
            let size = if round % 2 == 0 { 64 } else { 200_000 };
            let winners = Rc::new(Cell::new(0u32));
            let mut tasks = Vec::new();
            for w in 0..20u8 {
                let (e, winners, condition) = (e.clone(), winners.clone(), condition.clone());
                let data = body(size, round.wrapping_mul(31).wrapping_add(w));
                tasks.push(spawn(async move {
                    let r = put_if(&e, "contended", data.clone(), Some(condition)).await;
                    if r.is_ok() {
                        winners.set(winners.get() + 1);
                    }
                    (r, data)
                }));
            }
            let mut outcomes = Vec::new();
            for t in tasks {
                outcomes.push(t.await);
            }
            assert_eq!(winners.get(), 1, "round {round}: exactly one winner");
            let (won, data) =
                outcomes.iter().find(|(r, _)| r.is_ok()).map(|(r, d)| (r.as_ref().ok().copied(), d)).expect("a winner");
            let won = won.expect("the winner's reply");
            for (r, _) in &outcomes {
                if r.is_err() {
                    match r {
                        Err(Error::PreconditionFailed { current, .. }) => {
                            assert!(current.is_some(), "round {round}: a loser names a current version");
                        }
                        other => panic!("round {round}: a loser got {other:?}"),
                    }
                }
            }
            assert_eq!(read(&e, "contended").await.as_ref(), Some(data), "round {round}: the winner's bytes");
            condition = WriteCondition::IfVersion(won.hlc);
            clock.advance(Duration::from_millis(1));
        }
        e.close().await;
    });
}
