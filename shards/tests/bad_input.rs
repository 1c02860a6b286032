//! Bad input over real sockets: each malformed frame closes only its own connection (the node
//! answers nothing on it and closes it), and a client on another connection keeps working.
//! Well-framed requests with bad contents get typed errors on an open connection (see also
//! `node.rs`).

mod harness;

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
    time::Duration,
};

use bytes::Bytes;
use candybox_wire::{
    client::{ByteRange, ClientError, PutOptions},
    fb,
    frame::{FrameHeader, FrameKind, FLAG_END, FRAME_HEADER_BYTES},
};
use harness::{head_box_body, Node};

const CAP: u32 = 1024 * 1024;

/// Sends `bytes` (then, with `half_close`, ends the write side) and checks the node closes the
/// connection without answering.
fn closed_without_reply(node: &Node, bytes: &[u8], half_close: bool, what: &str) {
    let mut s = TcpStream::connect(&node.ports.listen).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(bytes).expect("send");
    if half_close {
        s.shutdown(Shutdown::Write).expect("half close");
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected the node to close the connection, got {other:?}"),
    }
}

fn frame(kind_byte: Option<u8>, request_id: u64, flags: u16, body: &[u8], payload_len: u32) -> Vec<u8> {
    let kind = if body.is_empty() { FrameKind::Data } else { FrameKind::Request };
    let mut header = FrameHeader::for_body(kind, request_id, flags, body, payload_len).encode();
    if let Some(k) = kind_byte {
        header[5] = k;
        let crc = crc32fast::hash(&header[..28]);
        header[28..32].copy_from_slice(&crc.to_le_bytes());
    }
    let mut out = header.to_vec();
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "current_thread")]
async fn malformed_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &["--frame-body-bytes-max", "1048576"], &[]);
    let c = node.client_with(|c| c.frame_body_bytes_max = CAP).await;
    c.create_box("bad-input", Some(4)).await.expect("create box");
    c.put_bytes("bad-input", b"keep", &PutOptions::default(), Bytes::from_static(b"still here")).await.expect("put");

    let body = head_box_body("bad-input");
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        // A frame whose body plus payload exceed the cap: refused from the header alone.
        ("oversized frame", frame(None, 1, FLAG_END, &body, CAP), false),
        // A header that promises more bytes than ever arrive.
        (
            "lengths past the end",
            {
                let mut f = frame(None, 2, FLAG_END, &body, 0);
                f.truncate(FRAME_HEADER_BYTES + 5);
                f
            },
            true,
        ),
        // A body whose CRC matches but whose flatbuffer offsets point past its end.
        ("flatbuffer offsets past the end", frame(None, 3, FLAG_END, &body[..body.len() / 2], 0), false),
        // An unknown frame kind with a valid header checksum.
        ("unknown frame kind", frame(Some(9), 4, FLAG_END, &body, 0), false),
        // A data frame for a request that was never started.
        ("data frame out of sequence", frame(None, 5, FLAG_END, &[], 4).into_iter().chain(*b"abcd").collect(), false),
        // Garbage.
        ("garbage", vec![0x5A; 100], false),
    ];
    for (what, bytes, half_close) in cases {
        closed_without_reply(&node, &bytes, half_close, what);
        // The client's connection is unaffected.
        let (_, got) = c.get_to_vec("bad-input", b"keep", ByteRange::Whole).await.expect(what);
        assert_eq!(got, b"still here", "{what}");
    }

    // A well-framed request with an unknown request kind gets a typed error, connection open.
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let list = fb::ListBoxes::create(&mut fbb, &fb::ListBoxesArgs {});
    let root = fb::Request::create(
        &mut fbb,
        &fb::RequestArgs { body_type: fb::RequestBody(250), body: Some(list.as_union_value()) },
    );
    fbb.finish(root, None);
    let mut s = TcpStream::connect(&node.ports.listen).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    for id in [7u64, 8] {
        s.write_all(&frame(None, id, FLAG_END, fbb.finished_data(), 0)).expect("send");
        let mut head = [0u8; FRAME_HEADER_BYTES];
        s.read_exact(&mut head).expect("a reply header");
        let h = FrameHeader::decode(&head, CAP).expect("valid reply header");
        assert_eq!((h.kind, h.request_id), (FrameKind::Reply, id));
        let mut reply = vec![0u8; h.frame_len()];
        s.read_exact(&mut reply).expect("reply body");
        let reply = candybox_wire::frame::verify_reply(&reply[..h.body_len as usize], CAP).expect("valid reply");
        assert_eq!(reply.error().map(|e| e.code()), Some(fb::ErrorCode::UnknownRequest));
    }

    // Invalid Box names and over-long keys: typed errors through the library.
    for name in ["ab", "Has-Upper", "under_score", &"x".repeat(64)] {
        let r = c.create_box(name, None).await;
        assert!(matches!(&r, Err(ClientError::InvalidArgument { field, .. }) if field == "box_name"), "{name}: {r:?}");
    }
    let r = c.head("bad-input", &[b'k'; 1025]).await;
    assert!(matches!(r, Err(ClientError::LimitExceeded { .. })), "{r:?}");
    assert!(node.metric_sum("candybox_frames_malformed_total") >= 5.0, "malformed frames are counted");
}
