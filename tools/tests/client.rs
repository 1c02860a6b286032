//! End-to-end tests of the client library (`candybox_wire::client`, tokio driver) against a real
//! `candyboxd` child: pipelining many requests over the shard connections, and the four relay
//! steps one by one, including the crash window between them and a forged locator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests fail loudly")]

mod common;

use std::rc::Rc;

use bytes::Bytes;
use candybox_wire::client::{
    ByteRange, ClientConfig, ClientError, ListOptions, PutOptions, RenameOutcome, TokioClient,
};

async fn client(node: &common::Node) -> TokioClient {
    TokioClient::connect(ClientConfig::new(node.listen.clone())).await.unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn many_pipelined_requests_over_routed_connections() {
    let node = common::Node::start(&[]);
    runtime().block_on(async {
        let c = client(&node).await;
        assert!(c.is_routing(), "{:?}", c.routing_off_reason());
        c.create_box("pipes", Some(8)).await.unwrap();
        let local = tokio::task::LocalSet::new();
        let c = Rc::new(c);
        local
            .run_until(async {
                let tasks: Vec<_> = (0..200u32)
                    .map(|i| {
                        let c = Rc::clone(&c);
                        tokio::task::spawn_local(async move {
                            let key = format!("key-{i:04}");
                            let body = Bytes::from(common::pattern(1000 + i as usize * 37, i as u8));
                            let done = c
                                .put_bytes("pipes", key.as_bytes(), &PutOptions::default(), body.clone())
                                .await
                                .unwrap();
                            assert_eq!(done.size, body.len() as u64);
                            let (meta, got) = c.get_to_vec("pipes", key.as_bytes(), ByteRange::Whole).await.unwrap();
                            assert_eq!(meta.size, body.len() as u64);
                            assert_eq!(got, body);
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            })
            .await;
        let all = c.list_all("pipes", &ListOptions { limit: 33, ..ListOptions::default() }).await.unwrap();
        let keys: Vec<String> = all.iter().map(|e| e.key_lossy().into_owned()).collect();
        let expected: Vec<String> = (0..200).map(|i| format!("key-{i:04}")).collect();
        assert_eq!(keys, expected);
    });
}

/// Regression test, found by `many_pipelined_requests_over_routed_connections` (about one run in
/// six): pipelined first writes to the partitions of a new Box, spread over both shards, failed
/// with `Internal: mkdir …/boxes/<box>-<uid>/pNN: File exists` (two shards opening sibling
/// partitions raced on the Box directory; fixed in the node by a race-tolerant create_dir_all).
/// Ten fresh Boxes made it show reliably.
#[test]
fn concurrent_first_writes_to_a_fresh_box() {
    let node = common::Node::start(&[]);
    runtime().block_on(async {
        let c = Rc::new(client(&node).await);
        for round in 0..10 {
            let box_name = format!("race-{round}");
            c.create_box(&box_name, Some(8)).await.unwrap();
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async {
                    let tasks: Vec<_> = (0..200u32)
                        .map(|i| {
                            let (c, box_name) = (Rc::clone(&c), box_name.clone());
                            tokio::task::spawn_local(async move {
                                let key = format!("k{i}");
                                let body = Bytes::from_static(b"x");
                                c.put_bytes(&box_name, key.as_bytes(), &PutOptions::default(), body).await
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap().unwrap();
                    }
                })
                .await;
        }
    });
}

#[test]
fn relay_steps_one_by_one() {
    let node = common::Node::start(&[]);
    runtime().block_on(async {
        let c = client(&node).await;
        c.create_box("relay", Some(8)).await.unwrap();
        let data = Bytes::from(common::pattern(200_000, 4));
        c.put_bytes("relay", b"src", &PutOptions::default(), data.clone()).await.unwrap();

        // Copy: the locator as received goes to the destination unchanged.
        let located = c.get_locator("relay", b"src").await.unwrap();
        assert!(!located.locator.is_empty());
        c.zero_copy_put("relay", b"copy", &located.locator, None).await.unwrap();
        assert_eq!(c.get_to_vec("relay", b"copy", ByteRange::Whole).await.unwrap().1, data);

        // A forged locator is refused.
        let mut forged = located.locator.to_vec();
        let n = forged.len();
        forged[n - 9] ^= 0x5a;
        let err = c.zero_copy_put("relay", b"forged", &Bytes::from(forged), None).await.unwrap_err();
        assert!(matches!(err, ClientError::ForgedLocator { .. } | ClientError::InvalidArgument { .. }), "{err}");

        // Rename, step by step.
        let prepared = c.prepare_rename("relay", b"copy", b"moved").await.unwrap();
        assert_eq!(prepared.token.len(), 16);
        c.zero_copy_put("relay", b"moved", &prepared.locator, Some(&prepared)).await.unwrap();
        // The crash window: both keys live until complete-rename.
        assert_eq!(c.head("relay", b"copy").await.unwrap().size, data.len() as u64);
        assert_eq!(c.head("relay", b"moved").await.unwrap().size, data.len() as u64);
        let outcome = c.complete_rename("relay", b"copy", &prepared.token).await.unwrap();
        assert_eq!(outcome, RenameOutcome::Finalized);
        assert!(c.head("relay", b"copy").await.unwrap_err().is_not_found());

        // A rename whose destination never happened: complete-rename finds no marker.
        let prepared = c.prepare_rename("relay", b"src", b"never").await.unwrap();
        let outcome = c.complete_rename("relay", b"src", &prepared.token).await;
        assert!(matches!(outcome, Ok(RenameOutcome::Pending) | Err(ClientError::NotFound { .. })), "{outcome:?}");
        assert_eq!(c.get_to_vec("relay", b"src", ByteRange::Whole).await.unwrap().1, data);
        assert!(c.head("relay", b"never").await.unwrap_err().is_not_found());

        // The relay helpers.
        c.relay_copy("relay", b"src", b"helper-copy").await.unwrap();
        assert_eq!(c.relay_rename("relay", b"helper-copy", b"helper-moved").await.unwrap(), RenameOutcome::Finalized);
        assert_eq!(c.get_to_vec("relay", b"helper-moved", ByteRange::Whole).await.unwrap().1, data);
    });
}
