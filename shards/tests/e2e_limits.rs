//! Bounded resources against clients that hold them: memory is spent on frame bytes as they
//! arrive and within a node-wide budget, idle and stalled connections are closed, and a client
//! turned away by the connection limit is told so.
//!
//! Story: the node allocated the full body size a frame header claims before any body byte
//! arrived: 1,000 connections each sending a 32-byte header claiming 16 MiB took RSS from 454 MiB
//! to 2.2 GB, which stayed after they closed. There was no idle or header timeout; with
//! `--connections-max 50`, 50 idle sockets locked every client out, and the refused client saw
//! only `connection closed`.

mod harness;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use bytes::Bytes;
use candybox_wire::{
    client::{ByteRange, ClientError, PutOptions},
    frame::{FrameHeader, FrameKind, FLAG_END},
};
use harness::{head_box_body, Node};

const MIB: u64 = 1024 * 1024;

/// The 32-byte header of a request frame whose payload claims `payload` bytes.
fn claiming_header(id: u64, payload: u32) -> [u8; 32] {
    FrameHeader::for_body(FrameKind::Request, id, FLAG_END, &head_box_body("limits"), payload).encode()
}

/// True when the node closed `s` (read returns 0 or a reset) within `within`.
fn closed_by_node(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0))
        || matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[tokio::test(flavor = "current_thread")]
async fn claimed_bodies_cost_no_memory_until_their_bytes_arrive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &[], &[]);
    let c = node.client(true).await;
    c.create_box("limits", Some(2)).await.expect("create box");
    let before = node.rss_bytes();
    // 1,000 connections, each a header claiming a 16 MiB payload, then nothing.
    let claim = (16 * MIB - 64) as u32;
    let mut idle: Vec<TcpStream> = (0..1000u64)
        .map(|i| {
            let mut s = TcpStream::connect(&node.ports.listen).expect("connect");
            s.write_all(&claiming_header(i + 1, claim)).expect("send a header");
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = node.rss_bytes();
    assert!(
        during < before + 256 * MIB,
        "1,000 claimed 16 MiB bodies took RSS from {} MiB to {} MiB",
        before / MIB,
        during / MIB
    );
    assert!(node.metric_sum("candybox_frame_memory_bytes") <= 1024.0 * MIB as f64, "the node-wide budget holds");
    // Other clients are still served.
    c.put_bytes("limits", b"k", &PutOptions::default(), Bytes::from_static(b"served")).await.expect("put");
    assert_eq!(c.get_to_vec("limits", b"k", ByteRange::Whole).await.expect("get").1, b"served");
    idle.clear();
}

#[tokio::test(flavor = "current_thread")]
async fn idle_and_stalled_connections_are_closed_and_a_refused_client_is_told_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(
        dir.path(),
        &["--connections-max", "4", "--idle-timeout-ms", "800", "--frame-timeout-ms", "800"],
        &[],
    );
    // Four idle sockets take every connection slot.
    let mut idle: Vec<TcpStream> =
        (0..4).map(|_| TcpStream::connect(&node.ports.listen).expect("connect an idle socket")).collect();
    std::thread::sleep(Duration::from_millis(100));
    // A fifth client is turned away with a typed answer, not a bare close.
    let refused = node
        .client_with(|c| {
            c.routing = false;
            c.busy_retries = 0;
        })
        .await
        .head_box("limits")
        .await;
    match refused {
        Err(ClientError::Busy { message, .. }) => assert!(message.contains("too many connections"), "{message}"),
        other => panic!("a client over connections_max must be told Busy (too many connections), got {other:?}"),
    }
    assert!(node.metric_sum("candybox_connections_refused_total") >= 1.0);
    // The idle sockets are closed by the node after the idle timeout, which frees the slots.
    let started = Instant::now();
    for s in &mut idle {
        assert!(closed_by_node(s, Duration::from_secs(10)), "an idle connection was not closed");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let c = node.client(true).await;
    c.create_box("limits", Some(1)).await.expect("a client is served once the idle sockets are gone");

    // A frame whose body stalls is closed after the frame timeout.
    let mut stalled = TcpStream::connect(&node.ports.listen).expect("connect");
    stalled.write_all(&claiming_header(7, 1000)).expect("header");
    stalled.write_all(&[0u8; 10]).expect("ten bytes of a thousand");
    assert!(closed_by_node(&mut stalled, Duration::from_secs(10)), "a stalled frame's connection was not closed");
    assert!(node.metric_sum("candybox_connections_timed_out_total") >= 5.0);
}

/// A frame over the node-wide budget waits for memory instead of failing: here the budget is one
/// frame, held by a stalled connection until the frame timeout closes it; the put behind it then
/// goes through.
#[tokio::test(flavor = "current_thread")]
async fn a_frame_over_the_memory_budget_waits_for_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(
        dir.path(),
        &["--frame-body-bytes-max", "1048576", "--frame-memory-bytes-max", "1048576", "--frame-timeout-ms", "1500"],
        &[],
    );
    let c = node.client_with(|c| c.frame_body_bytes_max = MIB as u32).await;
    c.create_box("limits", Some(1)).await.expect("create box");
    let mut hog = TcpStream::connect(&node.ports.listen).expect("connect");
    hog.write_all(&claiming_header(1, (MIB - 1024) as u32)).expect("a header claiming the whole budget");
    hog.write_all(&[0u8; 100]).expect("a few bytes, then a stall");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    c.put_bytes("limits", b"waited", &PutOptions::default(), Bytes::from(vec![5u8; 300_000])).await.expect("put");
    assert!(started.elapsed() >= Duration::from_millis(500), "the put waited for the budget");
    assert!(closed_by_node(&mut hog, Duration::from_secs(10)));
    assert_eq!(c.get_to_vec("limits", b"waited", ByteRange::Whole).await.expect("get").1.len(), 300_000);
}
