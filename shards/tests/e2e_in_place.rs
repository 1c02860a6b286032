//! Deletes and small puts admitted in the connection's read loop.
//!
//! Story: every mutation spawned a task before anything was checked, even a delete whose
//! partition is open on the connection's own shard. Now a delete, or a put whose whole body is in
//! its request frame and small enough to live in its locator, is checked, stamped and queued for
//! the group commit right in the read loop; only the wait for the commit is a task. What must
//! not change: an acknowledged write survives SIGKILL, a refusal is a clear typed answer, and
//! pipelined mutations of one connection are all answered.

mod harness;

use std::{future::Future, pin::Pin, task::Poll};

use bytes::Bytes;
use candybox_wire::client::{ByteRange, ClientError, PutOptions};
use harness::{pattern, Node};

const BOX: &str = "inplace";

#[tokio::test(flavor = "current_thread")]
async fn mutations_admitted_in_the_read_loop_are_durable_and_answered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = Node::start(dir.path(), &["--shards", "1"], &[]);
    let c = node.client(false).await;
    c.create_box(BOX, Some(2)).await.expect("create box");
    let value = |i: u32| Bytes::from(pattern(u64::from(i), 100 + (i as usize % 900)));
    // Pipelined in rounds of 50, under the connection's 64 in-flight slots (a request over them
    // waits for a slot in the task path).
    for round in 0..6u32 {
        let puts = (round * 50..round * 50 + 50).map(|i| {
            let c = &c;
            async move { c.put(BOX, format!("k{i:04}").as_bytes(), &PutOptions::default(), value(i)).await }
        });
        for r in join_all(puts).await {
            r.expect("put acknowledged");
        }
    }
    for round in 0..2u32 {
        let deletes = (round * 150..round * 150 + 150).filter(|i| i % 3 == 0).map(|i| {
            let c = &c;
            async move { c.delete(BOX, format!("k{i:04}").as_bytes()).await }
        });
        for r in join_all(deletes).await {
            r.expect("delete acknowledged");
        }
    }
    let in_place = node.metric_sum("candybox_mutations_admitted_in_place_total");
    // The first round finds no partition lease yet: those go through the task path, which takes
    // the leases; every later mutation is admitted in place.
    assert!(
        in_place >= 340.0,
        "only {in_place} of the 350 mutations after the first round were admitted in the read loop"
    );

    // A body over the inline limit goes down the task path and is stored all the same.
    let big = Bytes::from(pattern(9, 100_000));
    c.put(BOX, b"big", &PutOptions::default(), big.clone()).await.expect("put big");

    // A put whose declared size differs from its body is refused with a typed answer.
    let opts = PutOptions { size: Some(5), ..PutOptions::default() };
    let refused = c.put(BOX, b"liar", &opts, Bytes::from_static(b"four")).await;
    assert!(
        matches!(&refused, Err(ClientError::InvalidArgument { field, .. }) if field == "body"),
        "a size mismatch was not refused as an invalid body: {refused:?}"
    );

    node.kill();
    node.restart();
    let c = node.client(false).await;
    for i in 0..300u32 {
        let key = format!("k{i:04}");
        let got = c.get(BOX, key.as_bytes(), ByteRange::Whole).await;
        if i % 3 == 0 {
            assert!(
                matches!(got, Err(ClientError::NotFound { .. })),
                "{key} was deleted (acknowledged) but is not NotFound after SIGKILL"
            );
        } else {
            let body = got.expect("an acknowledged put after SIGKILL").to_vec().await.expect("body");
            assert!(body == value(i), "{key} came back with other bytes");
        }
    }
    let body = c.get(BOX, b"big", ByteRange::Whole).await.expect("get big").to_vec().await.expect("body");
    assert!(body == big, "the large put came back with other bytes");
    let liar = c.get(BOX, b"liar", ByteRange::Whole).await;
    assert!(matches!(liar, Err(ClientError::NotFound { .. })), "the refused put was stored");
}

/// Runs the futures together on this task (the client pipelines them on its one connection) and
/// returns their outputs in order.
async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut running: Vec<Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in running.iter_mut().zip(done.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}
