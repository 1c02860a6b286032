//! Per-request flow control and cancellation on one connection (protocol version 2), and
//! version-1 clients still served.
//!
//! Story: one connection multiplexes many requests, but a get whose reader stopped reading
//! stalled the whole connection after a few frames, and the only way to abandon one streamed put
//! or get was to close the connection, failing every other request on it. A gateway serving many
//! HTTP clients over a few node connections cannot live with that.

mod harness;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use bytes::Bytes;
use candybox_wire::{
    client::{request, BodySource, ByteRange, ClientError, PutOptions},
    fb,
    frame::{self, FrameHeader, FrameKind, FLAG_END, FRAME_HEADER_BYTES, STREAM_WINDOW_BYTES},
};
use harness::{pattern, Node};

const MIB: usize = 1024 * 1024;
const BOX: &str = "flow";

/// A one-shard node (so every request of a client shares one connection) with a Box.
async fn node_with_box(dir: &std::path::Path) -> (Node, candybox_wire::client::TokioClient) {
    let node = Node::start(dir, &["--shards", "1"], &[]);
    let c = node.client(false).await;
    c.create_box(BOX, Some(2)).await.expect("create box");
    (node, c)
}

#[tokio::test(flavor = "current_thread")]
async fn a_stalled_reader_stalls_only_its_own_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, c) = node_with_box(dir.path()).await;
    let big = pattern(7, 24 * MIB);
    c.put(BOX, b"big", &PutOptions::default(), Bytes::from(big.clone())).await.expect("put big");
    for i in 0..10u8 {
        c.put(BOX, &[b's', i], &PutOptions::default(), Bytes::from(vec![i; 1000])).await.expect("put small");
    }
    let connections = node.metric_sum("candybox_connections_total");
    // A get of 24 MiB (six windows) whose reader takes one piece and stops.
    let mut stalled = c.get(BOX, b"big", ByteRange::Whole).await.expect("start the big get");
    let first = stalled.next_piece().await.expect("first piece").expect("bytes");
    // 100 other requests on the same connection complete meanwhile.
    let others = async {
        for round in 0..10u8 {
            for i in 0..10u8 {
                let got = c.get(BOX, &[b's', i], ByteRange::Whole).await?.to_vec().await?;
                assert_eq!(got, vec![i; 1000], "round {round}, key {i}");
            }
        }
        Ok::<_, ClientError>(())
    };
    tokio::time::timeout(Duration::from_secs(30), others)
        .await
        .expect("100 requests behind a stalled stream finished within 30 s")
        .expect("every request succeeded");
    // The stalled stream resumes where it stopped, every byte intact.
    let mut all = first.to_vec();
    while let Some(p) = stalled.next_piece().await.expect("next piece") {
        all.extend_from_slice(&p);
    }
    assert!(all == big, "the stalled stream's bytes differ after it resumed");
    assert_eq!(node.metric_sum("candybox_connections_total"), connections, "everything ran on the same connection");
}

/// A body source that yields `good` bytes, then fails (the caller's data source broke).
struct Failing {
    left: usize,
}

impl BodySource for Failing {
    async fn next_piece(&mut self) -> std::io::Result<Option<Bytes>> {
        if self.left == 0 {
            return Err(std::io::Error::other("the source broke"));
        }
        let n = self.left.min(MIB);
        self.left -= n;
        Ok(Some(Bytes::from(vec![b'x'; n])))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_put_cancelled_mid_body_commits_nothing_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, c) = node_with_box(dir.path()).await;
    c.put(BOX, b"before", &PutOptions::default(), Bytes::from_static(b"old")).await.expect("put");
    let connections = node.metric_sum("candybox_connections_total");
    // 6 MiB of body (more than a window), then the source fails: the client cancels the put.
    let err = c
        .put(BOX, b"doomed", &PutOptions::default(), Failing { left: 6 * MIB })
        .await
        .expect_err("a put whose source failed");
    assert!(matches!(err, ClientError::Io { .. }), "the source's error is reported: {err:?}");
    // Nothing was committed, and the same connection serves on.
    let missing = c.head(BOX, b"doomed").await.expect_err("the cancelled put stored nothing");
    assert!(matches!(missing, ClientError::NotFound { .. }), "{missing:?}");
    let got = c.get(BOX, b"before", ByteRange::Whole).await.expect("get").to_vec().await.expect("bytes");
    assert_eq!(got, b"old");
    c.put(BOX, b"after", &PutOptions::default(), Bytes::from(vec![1u8; 3 * MIB])).await.expect("put after");
    assert_eq!(node.metric_sum("candybox_connections_total"), connections, "the connection was not closed");
    harness::eventually(Duration::from_secs(10), "the cancelled put's request ended on the node", || async {
        node.metric_sum("candybox_requests_in_flight") == 0.0
    })
    .await;
    // Its space is unreferenced; the node did not store the truncated body under the key.
    assert!(c.head(BOX, b"doomed").await.is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn a_get_cancelled_mid_stream_frees_its_request_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, c) = node_with_box(dir.path()).await;
    let big = pattern(3, 20 * MIB);
    c.put(BOX, b"big", &PutOptions::default(), Bytes::from(big.clone())).await.expect("put big");
    let connections = node.metric_sum("candybox_connections_total");
    for _ in 0..3 {
        let mut s = c.get(BOX, b"big", ByteRange::Whole).await.expect("get");
        let _ = s.next_piece().await.expect("a piece");
        drop(s);
    }
    // The node ended the three gets (a stream that waited for credit forever would stay in flight).
    harness::eventually(Duration::from_secs(10), "cancelled gets left the node", || async {
        node.metric_sum("candybox_requests_in_flight") == 0.0
    })
    .await;
    let got = c.get(BOX, b"big", ByteRange::Whole).await.expect("get").to_vec().await.expect("bytes");
    assert!(got == big, "a whole get after cancelled ones returns every byte");
    assert_eq!(node.metric_sum("candybox_connections_total"), connections, "the connection was not closed");
}

/// Frames read from a raw socket (control frames included).
struct RawReader {
    s: TcpStream,
}

impl RawReader {
    fn next(&mut self) -> (FrameHeader, Vec<u8>, Vec<u8>) {
        let mut h = [0u8; FRAME_HEADER_BYTES];
        self.s.read_exact(&mut h).expect("a frame header");
        let header = FrameHeader::decode(&h, 16 << 20).expect("a well-formed header");
        let mut body = vec![0u8; header.body_len as usize];
        self.s.read_exact(&mut body).expect("body");
        let mut payload = vec![0u8; header.payload_len as usize];
        self.s.read_exact(&mut payload).expect("payload");
        (header, body, payload)
    }

    /// The next Reply frame for `id`, skipping credit grants.
    fn reply(&mut self, id: u64) -> (FrameHeader, Vec<u8>, Vec<u8>) {
        loop {
            let (h, body, payload) = self.next();
            if h.kind == FrameKind::Credit {
                continue;
            }
            assert_eq!((h.kind, h.request_id), (FrameKind::Reply, id), "the reply of request {id}");
            return (h, body, payload);
        }
    }
}

fn raw(node: &Node) -> (TcpStream, RawReader) {
    let s = TcpStream::connect(&node.ports.listen).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let r = s.try_clone().expect("clone");
    (s, RawReader { s: r })
}

fn request_frame(version: u8, id: u64, end: bool, body: &[u8], payload: &[u8]) -> Vec<u8> {
    let flags = if end { FLAG_END } else { 0 };
    let h = FrameHeader::for_body(FrameKind::Request, id, flags, body, payload.len() as u32).in_version(version);
    [&h.encode()[..], body, payload].concat()
}

fn data_frame(version: u8, id: u64, end: bool, payload: &[u8]) -> Vec<u8> {
    let flags = if end { FLAG_END } else { 0 };
    let h = FrameHeader::for_body(FrameKind::Data, id, flags, &[], payload.len() as u32).in_version(version);
    [&h.encode()[..], payload].concat()
}

fn error_code(body: &[u8]) -> Option<(fb::ErrorCode, String)> {
    let reply = frame::verify_reply(body, 16 << 20).expect("a reply flatbuffer");
    reply.error().map(|e| (e.code(), e.message().unwrap_or_default().to_owned()))
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_that_ignores_credit_is_refused_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, c) = node_with_box(dir.path()).await;
    c.put(BOX, b"kept", &PutOptions::default(), Bytes::from_static(b"kept")).await.expect("put");
    let (mut s, mut r) = raw(&node);
    let put = request::put(BOX, b"flood", &PutOptions::default());
    s.write_all(&request_frame(frame::FRAME_VERSION, 1, false, &put, &[])).expect("send the put");
    // One frame larger than the whole initial window, before any grant could exist (nothing
    // was taken yet), then more.
    let piece = vec![b'f'; STREAM_WINDOW_BYTES as usize + MIB];
    s.write_all(&data_frame(frame::FRAME_VERSION, 1, false, &piece)).expect("flood");
    s.write_all(&data_frame(frame::FRAME_VERSION, 1, true, &piece[..MIB])).expect("flood");
    let (_, body, _) = r.reply(1);
    let (code, message) = error_code(&body).expect("the flooding put is refused with an error");
    assert_eq!(code, fb::ErrorCode::InvalidArgument, "{message}");
    assert!(message.contains("credit"), "the error names the broken flow control: {message}");
    // The connection still serves: a get on the same socket.
    let get = request::get(BOX, b"kept", ByteRange::Whole);
    s.write_all(&request_frame(frame::FRAME_VERSION, 2, true, &get, &[])).expect("send a get");
    let (h, body, payload) = r.reply(2);
    assert!(error_code(&body).is_none() && h.is_end(), "the get after the refusal succeeds");
    assert_eq!(payload, b"kept");
    assert!(c.head(BOX, b"flood").await.is_err(), "the refused put stored nothing");
}

#[tokio::test(flavor = "current_thread")]
async fn a_version_one_client_is_answered_in_version_one_and_may_not_send_control_frames() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, c) = node_with_box(dir.path()).await;
    let value = pattern(1, 3 * MIB);
    c.put(BOX, b"v1", &PutOptions::default(), Bytes::from(value.clone())).await.expect("put");
    let (mut s, mut r) = raw(&node);
    // A version-1 get of 3 MiB: no credit is ever granted, and every byte comes (in version 1).
    let get = request::get(BOX, b"v1", ByteRange::Whole);
    s.write_all(&request_frame(1, 1, true, &get, &[])).expect("send");
    let (h, body, mut got) = r.reply(1);
    assert_eq!(h.version, 1, "the reply is written in the client's version");
    assert!(error_code(&body).is_none());
    let mut end = h.is_end();
    while !end {
        let (d, _, payload) = r.next();
        assert_eq!((d.kind, d.version), (FrameKind::Data, 1));
        got.extend_from_slice(&payload);
        end = d.is_end();
    }
    assert!(got == value, "a version-1 get returns every byte");
    // A version-1 put streamed in several frames works as before.
    let put = request::put(BOX, b"v1put", &PutOptions::default());
    s.write_all(&request_frame(1, 2, false, &put, b"abc")).expect("put");
    s.write_all(&data_frame(1, 2, true, b"def")).expect("data");
    let (_, body, _) = r.reply(2);
    assert!(error_code(&body).is_none(), "a version-1 streamed put succeeds");
    let got = c.get(BOX, b"v1put", ByteRange::Whole).await.expect("get").to_vec().await.expect("bytes");
    assert_eq!(got, b"abcdef");
    // A Credit frame in version 1 does not exist: the connection is closed as malformed.
    let (credit, grant) = FrameHeader::credit(3, 1);
    let old = FrameHeader::decode(&credit, 1 << 20).expect("decodes").in_version(1).encode();
    s.write_all(&old).and_then(|()| s.write_all(&grant)).expect("send");
    let mut buf = [0u8; 16];
    let closed = matches!(r.s.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "a control frame in version 1 closes the connection");
    assert!(node.metric_sum("candybox_frames_malformed_total") >= 1.0);
}

#[tokio::test(flavor = "current_thread")]
async fn idle_spin_is_reported_apart_from_the_requests_cpu() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, c) = node_with_box(dir.path()).await;
    for i in 0..200u32 {
        let key = format!("k{i}");
        c.put(BOX, key.as_bytes(), &PutOptions::default(), Bytes::from(vec![1u8; 100])).await.expect("put");
        let _ = c.head(BOX, key.as_bytes()).await.expect("head");
    }
    let cpu = node.metric_sum("candybox_shard_cpu_seconds_total");
    let spin = node.metric_sum("candybox_shard_spin_seconds_total");
    let (_, text) = node.http_get("/metrics");
    assert!(text.contains("# TYPE candybox_shard_spin_seconds_total counter"), "the spin metric is exposed");
    assert!(cpu > 0.0, "the shard's CPU is reported");
    assert!((0.0..=cpu).contains(&spin), "idle spin ({spin} s) is part of the shard's CPU ({cpu} s)");
}
