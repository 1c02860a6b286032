//! Zero-copy copy and rename end to end, and the relay's guarantees:
//! - copy and rename of a 256 MiB Candy (same partition and across partitions; through the
//!   client relay and through the node's single request) grow the Syrup directory by less than
//!   1 MiB, and every destination reads back the same bytes;
//! - the client relays the locator bytes unchanged: a recording proxy between client and node
//!   captures the `Locator` bytes of the get-locator reply and of the zero-copy-put request, and
//!   they are byte-for-byte equal;
//! - a forged locator (another Box's Syrup, a SegmentRef past the durable length, a garbled
//!   flatbuffer) is refused with `ForgedLocator`, and the node keeps serving.

mod harness;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use candybox_wire::{
    client::{ByteRange, ClientConfig, ClientError, Pieces, PutOptions, RenameOutcome, TokioClient},
    fb,
    frame::{verify_locator, verify_reply, verify_request, FrameHeader, FrameKind, FRAME_HEADER_BYTES},
};
use harness::{dir_bytes, key_in_partition, pattern, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

/// The node's node-global Syrup directory.
fn syrup_dir(node: &Node) -> std::path::PathBuf {
    node.data_dir.join("syrups")
}

async fn read_crc(c: &TokioClient, box_name: &str, key: &[u8]) -> (u64, u32) {
    let mut stream = c.get(box_name, key, ByteRange::Whole).await.expect("get");
    let mut hasher = crc32fast::Hasher::new();
    let mut n = 0u64;
    while let Some(piece) = stream.next_piece().await.expect("read piece") {
        n += piece.len() as u64;
        hasher.update(&piece);
    }
    (n, hasher.finalize())
}

#[tokio::test(flavor = "current_thread")]
async fn copy_and_rename_of_256_mib_move_no_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &[], &[]);
    let c = node.client(true).await;
    c.create_box("zero-copy", Some(8)).await.expect("create box");

    // 256 MiB streamed in 1 MiB pieces from a generator: the test never holds the object.
    let size = 256 * MIB;
    let mut hasher = crc32fast::Hasher::new();
    let pieces: Vec<Bytes> = (0..256u64)
        .map(|i| {
            let piece = pattern(i, MIB);
            hasher.update(&piece);
            Bytes::from(piece)
        })
        .collect();
    let crc = hasher.finalize();
    let (src, p) = key_in_partition("big-", 8, |_| true);
    let opts = PutOptions { size: Some(size as u64), ..Default::default() };
    let done = c.put("zero-copy", &src, &opts, Pieces(pieces.into_iter())).await.expect("put 256 MiB");
    assert_eq!((done.size, done.checksum), (size as u64, crc));

    let before = dir_bytes(&syrup_dir(&node));
    assert!(before >= size as u64, "the Syrup directory holds the object ({before} bytes)");

    let (copy_same, _) = key_in_partition("copy-same-", 8, |q| q == p);
    let (copy_cross, _) = key_in_partition("copy-cross-", 8, |q| q != p);
    let (relay_copy, _) = key_in_partition("relay-copy-", 8, |q| q != p);
    c.copy("zero-copy", &src, &copy_same).await.expect("copy, same partition");
    c.copy("zero-copy", &src, &copy_cross).await.expect("copy, across partitions");
    c.relay_copy("zero-copy", &src, &relay_copy).await.expect("relay copy");

    let (ren_same, _) = key_in_partition("ren-same-", 8, |q| q == p);
    let (ren_cross, _) = key_in_partition("ren-cross-", 8, |q| q != p);
    let (ren_relay, _) = key_in_partition("ren-relay-", 8, |q| q != p);
    c.rename("zero-copy", &copy_same, &ren_same).await.expect("rename, same partition");
    c.rename("zero-copy", &copy_cross, &ren_cross).await.expect("rename, across partitions");
    let outcome = c.relay_rename("zero-copy", &relay_copy, &ren_relay).await.expect("relay rename");
    assert_eq!(outcome, RenameOutcome::Finalized);

    let after = dir_bytes(&syrup_dir(&node));
    assert!(
        after < before + MIB as u64,
        "copies and renames grew the Syrup directory from {before} to {after} bytes (limit: 1 MiB)"
    );
    for key in [&src, &ren_same, &ren_cross, &ren_relay] {
        assert_eq!(read_crc(&c, "zero-copy", key).await, (size as u64, crc), "{}", String::from_utf8_lossy(key));
    }
    for gone in [&copy_same, &copy_cross, &relay_copy] {
        assert!(matches!(c.head("zero-copy", gone).await, Err(ClientError::NotFound { .. })));
    }
}

/// Bytes seen on one proxied connection, per direction.
#[derive(Default)]
struct Capture {
    to_node: Vec<u8>,
    to_client: Vec<u8>,
}

/// A TCP proxy on loopback that records everything it forwards.
async fn recording_proxy(upstream: String) -> (String, Arc<Mutex<Capture>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr").to_string();
    let capture = Arc::new(Mutex::new(Capture::default()));
    let cap = capture.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let node = tokio::net::TcpStream::connect(&upstream).await.expect("proxy connects to node");
            let (mut cr, mut cw) = client.into_split();
            let (mut nr, mut nw) = node.into_split();
            let up = cap.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || nw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    up.lock().expect("capture").to_node.extend_from_slice(&buf[..n]);
                }
            });
            let down = cap.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = nr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    down.lock().expect("capture").to_client.extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (addr, capture)
}

/// Every (kind, body) of the frames in a captured byte stream.
fn frames(mut stream: &[u8]) -> Vec<(FrameKind, Vec<u8>)> {
    let mut out = Vec::new();
    while stream.len() >= FRAME_HEADER_BYTES {
        let head: &[u8; FRAME_HEADER_BYTES] = stream[..FRAME_HEADER_BYTES].try_into().expect("header");
        let h = FrameHeader::decode(head, 64 * MIB as u32).expect("captured frames are valid");
        let body = &stream[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + h.body_len as usize];
        out.push((h.kind, body.to_vec()));
        stream = &stream[FRAME_HEADER_BYTES + h.frame_len()..];
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn relay_carries_locator_bytes_unchanged_and_refuses_forgeries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &[], &[]);
    let direct = node.client(true).await;
    let a = direct.create_box("relay-a", Some(4)).await.expect("create box a");
    direct.create_box("relay-b", Some(4)).await.expect("create box b");
    let body = Bytes::from(pattern(5, 300 * 1024));
    direct.put_bytes("relay-a", b"source", &PutOptions::default(), body.clone()).await.expect("put a");
    direct.put_bytes("relay-b", b"foreign", &PutOptions::default(), body.clone()).await.expect("put b");

    // Through the recording proxy (routing off: every request on the proxied main port).
    let (proxy, capture) = recording_proxy(node.ports.listen.clone()).await;
    let mut config = ClientConfig::new(proxy);
    config.routing = false;
    let c = TokioClient::connect(config).await.expect("connect through proxy");
    c.relay_copy("relay-a", b"source", b"relayed").await.expect("relay copy");
    assert!(c.get_to_vec("relay-a", b"relayed", ByteRange::Whole).await.expect("get").1 == body);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let (to_client, to_node) = {
        let cap = capture.lock().expect("capture");
        (cap.to_client.clone(), cap.to_node.clone())
    };
    let mut received = Vec::new();
    for (kind, b) in frames(&to_client) {
        assert_eq!(kind, FrameKind::Reply);
        let reply = verify_reply(&b, 64 * MIB as u32).expect("reply verifies");
        if let Some(l) = reply.body_as_locator_reply() {
            received.push(l.locator().expect("locator bytes").bytes().to_vec());
        }
    }
    let mut sent = Vec::new();
    for (kind, b) in frames(&to_node) {
        if kind != FrameKind::Request {
            continue;
        }
        let request = verify_request(&b, 64 * MIB as u32).expect("request verifies");
        if let Some(z) = request.body_as_zero_copy_put() {
            sent.push(z.locator().bytes().to_vec());
        }
    }
    assert_eq!(received.len(), 1, "one get-locator reply went through the proxy");
    assert_eq!(sent.len(), 1, "one zero-copy-put request went through the proxy");
    assert!(sent[0] == received[0], "the relayed locator bytes differ from the received ones");
    verify_locator(&sent[0], 16 * MIB as u32).expect("the relayed bytes are a Locator");

    // Forgeries.
    let foreign = direct.get_locator("relay-b", b"foreign").await.expect("locator of box b").locator;
    let own = direct.get_locator("relay-a", b"source").await.expect("locator of box a").locator;
    let forged_other_box = direct.zero_copy_put("relay-a", b"forged-1", &foreign, None).await;
    assert!(matches!(forged_other_box, Err(ClientError::ForgedLocator { .. })), "{forged_other_box:?}");
    let claimed = rebuild(&foreign, Some(a.box_uid), 0);
    let forged_claimed = direct.zero_copy_put("relay-a", b"forged-2", &claimed, None).await;
    assert!(matches!(forged_claimed, Err(ClientError::ForgedLocator { .. })), "{forged_claimed:?}");
    let beyond = rebuild(&own, None, 64 * MIB as u64);
    let forged_beyond = direct.zero_copy_put("relay-a", b"forged-3", &beyond, None).await;
    assert!(matches!(forged_beyond, Err(ClientError::ForgedLocator { .. })), "{forged_beyond:?}");
    let mut garbled = own.to_vec();
    let mid = garbled.len() / 2;
    for b in &mut garbled[mid..mid + 8] {
        *b ^= 0xA5;
    }
    for bad in [Bytes::from(garbled), own.slice(..own.len() / 3), Bytes::from_static(&[0xFF; 40])] {
        let r = direct.zero_copy_put("relay-a", b"forged-4", &bad, None).await;
        assert!(matches!(r, Err(ClientError::ForgedLocator { .. } | ClientError::InvalidArgument { .. })), "{r:?}");
    }
    for key in [&b"forged-1"[..], b"forged-2", b"forged-3", b"forged-4"] {
        assert!(matches!(direct.head("relay-a", key).await, Err(ClientError::NotFound { .. })));
    }
    // The node stays up, on the same and on new connections.
    assert!(direct.get_to_vec("relay-a", b"source", ByteRange::Whole).await.expect("get").1 == body);
    let fresh = node.client(false).await;
    assert!(fresh.get_to_vec("relay-a", b"relayed", ByteRange::Whole).await.expect("get").1 == body);
}

/// A copy of a relayed locator with `box_uid` replaced and `extra` bytes added to the last
/// SegmentRef of the last Part: what a malicious client could send.
fn rebuild(bytes: &[u8], box_uid: Option<u64>, extra: u64) -> Bytes {
    let l = verify_locator(bytes, 16 * MIB as u32).expect("a valid locator to start from");
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let parts: Vec<_> = l.parts().expect("a locator with parts").iter().collect();
    let last_part = parts.len() - 1;
    let mut built = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let mut segments: Vec<fb::SegmentRef> = part.segments().expect("segments").iter().copied().collect();
        if i == last_part {
            let s = segments.last_mut().expect("a segment");
            *s = fb::SegmentRef::new(s.syrup(), s.offset(), s.length() + extra);
        }
        let segments = fbb.create_vector(&segments);
        built.push(fb::Part::create(
            &mut fbb,
            &fb::PartArgs {
                length: part.length() + if i == last_part { extra } else { 0 },
                chunk_size: part.chunk_size(),
                checksum: part.checksum(),
                segments: Some(segments),
            },
        ));
    }
    let parts = fbb.create_vector(&built);
    let content_type = l.content_type().map(|s| fbb.create_string(s));
    let hlc = l.hlc().copied();
    let root = fb::Locator::create(
        &mut fbb,
        &fb::LocatorArgs {
            version: l.version(),
            hlc: hlc.as_ref(),
            kind: l.kind(),
            content_type,
            user_meta: None,
            created_ms: l.created_ms(),
            size: l.size() + extra,
            checksum: l.checksum(),
            inline_body: None,
            parts: Some(parts),
            box_uid: box_uid.unwrap_or(l.box_uid()),
        },
    );
    fbb.finish(root, None);
    Bytes::copy_from_slice(fbb.finished_data())
}

/// A rename the node runs between two partitions of one shard is one record of that shard's
/// commit log: no rename intent, no marker (the intent + marker protocol is for partitions on
/// different shards, whose logs cannot share a record). Across shards the intent is made and
/// finalized as before. Either way the target reads the source's bytes and the source is gone.
#[tokio::test(flavor = "current_thread")]
async fn a_rename_within_a_shard_is_one_record_and_across_shards_keeps_its_intent() {
    const PARTITIONS: u16 = 4;
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &["--shards", "2"], &[]);
    let c = node.client(true).await;
    c.create_box("ren", Some(PARTITIONS)).await.expect("create box");
    let shard_of = |p: u16| candybox_wire::client::placement::shard_of("ren", p, 2);
    let (source, sp) = key_in_partition("src-", PARTITIONS, |_| true);
    let (same, _) = key_in_partition("same-", PARTITIONS, |q| q != sp && shard_of(q) == shard_of(sp));
    let (other, _) = key_in_partition("other-", PARTITIONS, |q| shard_of(q) != shard_of(sp));
    let body = Bytes::from(pattern(7, 300_000));

    c.put_bytes("ren", &source, &PutOptions::default(), body.clone()).await.expect("put");
    c.rename("ren", &source, &same).await.expect("rename within the shard");
    assert_eq!(node.metric_sum("candybox_rename_intents_finalized_total"), 0.0, "no intent within a shard");
    assert!(matches!(c.get_to_vec("ren", &source, ByteRange::Whole).await, Err(ClientError::NotFound { .. })));
    assert_eq!(c.get_to_vec("ren", &same, ByteRange::Whole).await.expect("get").1, body.to_vec());

    c.rename("ren", &same, &other).await.expect("rename across shards");
    assert_eq!(node.metric_sum("candybox_rename_intents_finalized_total"), 1.0, "an intent across shards");
    assert!(matches!(c.get_to_vec("ren", &same, ByteRange::Whole).await, Err(ClientError::NotFound { .. })));
    assert_eq!(c.get_to_vec("ren", &other, ByteRange::Whole).await.expect("get").1, body.to_vec());
}
