//! Deletes and small puts admitted in the connection's read loop.
//!
//! Story: every mutation spawned a task before anything was checked, even a delete whose
//! partition is open on the connection's own shard. Now a delete, or a put whose whole body is in
//! its request frame and small enough to live in its locator, is checked, stamped and queued for
//! the group commit right in the read loop; only the wait for the commit is a task. What must
//! not change: an acknowledged write survives SIGKILL, a refusal is a clear typed answer, and
//! pipelined mutations of one connection are all answered.

mod harness;

use std::{
    future::Future,
    io::{Read, Write},
    pin::Pin,
    task::Poll,
};

use bytes::Bytes;
use candybox_wire::{
    client::{request, ByteRange, ClientError, PutOptions},
    frame::{FrameHeader, FrameKind, FLAG_END, FRAME_HEADER_BYTES},
};
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

/// Story: a mutation admitted in the read loop was not counted among the connection's requests
/// in flight, so a client that sent a second request with the id of one still committing got two
/// replies with one id instead of the out-of-sequence refusal every other request in flight gets.
#[tokio::test(flavor = "current_thread")]
async fn an_id_still_committing_cannot_be_used_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &["--shards", "1"], &[]);
    let c = node.client(false).await;
    c.create_box(BOX, Some(1)).await.expect("create box");
    // Takes the partition's lease, so the deletes below are admitted in place.
    c.put(BOX, b"x", &PutOptions::default(), Bytes::from_static(b"x")).await.expect("put");
    let mut s = std::net::TcpStream::connect(&node.ports.listen).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
    // Two deletes with one id in one write: the second arrives while the first commits.
    let body = request::delete(BOX, b"x", None);
    let h = FrameHeader::for_body(FrameKind::Request, 7, FLAG_END, &body, 0).encode();
    let one = [&h[..], &body[..]].concat();
    s.write_all(&[one.clone(), one].concat()).expect("send both");
    let mut replies = 0;
    let closed = loop {
        let mut head = [0u8; FRAME_HEADER_BYTES];
        match s.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break true,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break false,
            Err(_) => break true,
        }
        let header = FrameHeader::decode(&head, 16 << 20).expect("a well-formed header");
        let mut rest = vec![0u8; header.frame_len()];
        s.read_exact(&mut rest).expect("the frame's body");
        if header.kind == FrameKind::Reply && header.request_id == 7 {
            replies += 1;
        }
    };
    assert!(replies <= 1, "two replies came for one request id");
    assert!(closed, "a request reusing the id of one still committing did not close the connection");
    assert!(node.metric_sum("candybox_frames_malformed_total") >= 1.0, "the reuse is counted as malformed");
    // The node goes on serving.
    let c2 = node.client(false).await;
    c2.put(BOX, b"after", &PutOptions::default(), Bytes::from_static(b"ok")).await.expect("put after");
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
