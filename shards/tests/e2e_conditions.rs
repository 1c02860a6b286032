//! Conditional puts and deletes end to end (issue 14, item 2): through the client library over
//! real TCP against a `candyboxd` of 2 shards, for small bodies (admitted inline on the
//! connection's shard) and streamed ones larger than a frame (the task path), with the key's
//! owner on either shard.

mod harness;

use std::{cell::Cell, rc::Rc};

use bytes::Bytes;
use candybox_wire::client::{ClientError, Condition, CopyOptions, Hlc, PutOptions};
use harness::{key_in_partition, pattern, Node};

const CAP: u32 = 1024 * 1024;
const BOX: &str = "cond";

fn put_opts(condition: Option<Condition>) -> PutOptions {
    PutOptions { condition, ..PutOptions::default() }
}

fn refused(r: Result<impl std::fmt::Debug, ClientError>) -> Option<Hlc> {
    match r {
        Err(ClientError::PreconditionFailed { current, message }) => {
            assert!(message.contains("precondition failed"), "the message says what failed: {message}");
            current
        }
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn conditional_puts_and_deletes_hold_or_are_refused_naming_the_current_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &["--frame-body-bytes-max", &CAP.to_string()], &[]);
    let c = node.client_with(|c| c.frame_body_bytes_max = CAP).await;
    c.create_box(BOX, Some(4)).await.expect("create box");
    for (i, size) in [(0u8, 100usize), (1, 3 * CAP as usize + 77)].into_iter() {
        for k in 0..4u8 {
            let key = format!("k-{i}-{k}");
            let key = key.as_bytes();
            let first = c
                .put_bytes(BOX, key, &put_opts(Some(Condition::IfAbsent)), Bytes::from(pattern(u64::from(k), size)))
                .await
                .expect("absent: stored");
            let again =
                c.put_bytes(BOX, key, &put_opts(Some(Condition::IfAbsent)), Bytes::from(pattern(9, size))).await;
            assert_eq!(refused(again), Some(first.hlc), "the refusal names the stored version");
            let head = c.head(BOX, key).await.expect("head");
            assert_eq!(head.hlc, first.hlc, "head reports the version a condition names");

            let second = c
                .put_bytes(
                    BOX,
                    key,
                    &put_opts(Some(Condition::IfVersion(first.hlc))),
                    Bytes::from(pattern(u64::from(k) + 1, size)),
                )
                .await
                .expect("version matches");
            let stale = c
                .put_bytes(BOX, key, &put_opts(Some(Condition::IfVersion(first.hlc))), Bytes::from(pattern(8, size)))
                .await;
            assert_eq!(refused(stale), Some(second.hlc));
            let early = c
                .put_bytes(
                    BOX,
                    key,
                    &put_opts(Some(Condition::IfUnmodifiedSince(second.hlc.physical_ms - 1))),
                    Bytes::from(pattern(7, size)),
                )
                .await;
            assert_eq!(refused(early), Some(second.hlc));
            let (_, got) = c.get_to_vec(BOX, key, candybox_wire::client::ByteRange::Whole).await.expect("get");
            assert_eq!(got, pattern(u64::from(k) + 1, size), "refused puts wrote nothing");

            assert_eq!(refused(c.delete_if(BOX, key, Some(&Condition::IfVersion(first.hlc))).await), Some(second.hlc));
            assert!(c.head(BOX, key).await.is_ok(), "a refused delete deletes nothing");
            c.delete_if(BOX, key, Some(&Condition::IfVersion(second.hlc))).await.expect("delete");
            assert!(matches!(c.head(BOX, key).await, Err(ClientError::NotFound { .. })));
            assert_eq!(refused(c.delete_if(BOX, key, Some(&Condition::IfVersion(second.hlc))).await), None);
        }
    }
}

/// 20 writers on 20 connections race a conditional put on one key per round (absent, then the
/// last winner's version): exactly one wins each round, the others are refused naming the
/// winner, and the key holds the winner's bytes.
#[tokio::test(flavor = "current_thread")]
async fn twenty_writers_racing_on_one_key_have_exactly_one_winner_per_round() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &["--frame-body-bytes-max", &CAP.to_string()], &[]);
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(Rc::new(node.client_with(|c| c.frame_body_bytes_max = CAP).await));
    }
    clients[0].create_box(BOX, Some(4)).await.expect("create box");
    let local = tokio::task::LocalSet::new();
    let mut condition = Condition::IfAbsent;
    for round in 0..10u8 {
        let size = if round % 2 == 0 { 200 } else { CAP as usize + 1000 };
        let winners = Rc::new(Cell::new(0));
        let mut racers = Vec::new();
        for (w, c) in clients.iter().enumerate() {
            let data = pattern(u64::from(round) * 20 + w as u64, size);
            let (winners, c, condition) = (winners.clone(), c.clone(), condition.clone());
            racers.push(local.spawn_local(async move {
                let r = c.put_bytes(BOX, b"contended", &put_opts(Some(condition)), Bytes::from(data.clone())).await;
                if r.is_ok() {
                    winners.set(winners.get() + 1);
                }
                (r, data)
            }));
        }
        let outcomes = local
            .run_until(async {
                let mut all = Vec::new();
                for r in racers {
                    all.push(r.await.expect("a racer finished"));
                }
                all
            })
            .await;
        assert_eq!(winners.get(), 1, "round {round}: exactly one winner");
        let (won, data) = outcomes.iter().find_map(|(r, d)| r.as_ref().ok().map(|p| (p.hlc, d))).expect("a winner");
        for (r, _) in &outcomes {
            if let Err(e) = r {
                match e {
                    ClientError::PreconditionFailed { current: Some(_), .. } => {}
                    other => panic!("round {round}: a loser got {other:?}"),
                }
            }
        }
        let (_, got) =
            clients[0].get_to_vec(BOX, b"contended", candybox_wire::client::ByteRange::Whole).await.expect("get");
        assert_eq!(&got, data, "round {round}: the winner's bytes");
        condition = Condition::IfVersion(won);
    }
}

/// A copy or rename with a condition on its target, on each of the node's paths: within one
/// partition, between two partitions of one shard (one joint log record), and across shards
/// (intent + marker). A refused one changes neither key, and a refused rename releases its
/// source at once: the next rename of it succeeds (a claim left behind would answer `Conflict`
/// until rename_intent_abandon_ms).
#[tokio::test(flavor = "current_thread")]
async fn copy_and_rename_check_their_target_on_every_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &[], &[]);
    let c = node.client_with(|c| c.frame_body_bytes_max = CAP).await;
    c.create_box(BOX, Some(4)).await.expect("create box");
    let topology = c.topology().await.expect("topology");
    assert_eq!(topology.shard_count, 2);
    // Shard of partition p: (crc32(box) + p) mod 2, so p and p + 2 share a shard.
    for (case, target_partition) in [("same partition", 0u16), ("same shard", 2), ("across shards", 1)] {
        for rename in [false, true] {
            let tag = format!("{case}-{rename}");
            let (src, _) = key_in_partition(&format!("src-{tag}-"), 4, |p| p == 0);
            let (dst, _) = key_in_partition(&format!("dst-{tag}-"), 4, |p| p == target_partition);
            let a = Bytes::from(pattern(1, 5000));
            let b = Bytes::from(pattern(2, 7000));
            c.put_bytes(BOX, &src, &PutOptions::default(), a.clone()).await.expect("put source");
            let existing = c.put_bytes(BOX, &dst, &PutOptions::default(), b.clone()).await.expect("put target");
            let refused_op = c
                .copy_or_rename_if(
                    BOX,
                    &src,
                    &dst,
                    rename,
                    &CopyOptions { condition: Some(Condition::IfAbsent), replace: None, source_version: None },
                )
                .await;
            assert_eq!(refused(refused_op), Some(existing.hlc), "{tag}: names the target's version");
            let get = |k: Vec<u8>| {
                let c = &c;
                async move {
                    match c.get_to_vec(BOX, &k, candybox_wire::client::ByteRange::Whole).await {
                        Ok((_, v)) => Some(v),
                        Err(ClientError::NotFound { .. }) => None,
                        Err(e) => panic!("get: {e}"),
                    }
                }
            };
            assert_eq!(get(src.clone()).await.as_deref(), Some(&a[..]), "{tag}: the source is unchanged");
            assert_eq!(get(dst.clone()).await.as_deref(), Some(&b[..]), "{tag}: the target is unchanged");
            let done = c
                .copy_or_rename_if(
                    BOX,
                    &src,
                    &dst,
                    rename,
                    &CopyOptions {
                        condition: Some(Condition::IfVersion(existing.hlc)),
                        replace: None,
                        source_version: None,
                    },
                )
                .await;
            done.unwrap_or_else(|e| panic!("{tag}: the condition holds, and the source is not claimed: {e}"));
            assert_eq!(get(dst.clone()).await.as_deref(), Some(&a[..]), "{tag}: the target holds the source's bytes");
            assert_eq!(get(src.clone()).await.is_some(), !rename, "{tag}: a rename removed its source");
        }
    }
}
