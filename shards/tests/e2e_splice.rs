//! Large gets spliced from Syrup files to the socket (`splice_gets`, on by default).
//!
//! Story: a 64 MiB get copied every byte from the Syrup mapping into the socket's buffers on the
//! node's core; splicing hands the kernel the page-cache pages instead. What must not change:
//! every byte on the wire is the byte that was verified (a damaged chunk is never sent), ranges
//! that start and end inside chunks come back exact, frame headers interleave with spliced bytes
//! in order, and switching splicing off sends the same bytes by copying.

mod harness;

use std::{
    io::{Seek, SeekFrom, Write},
    path::Path,
};

use bytes::Bytes;
use candybox_wire::client::{ByteRange, PutOptions, TokioClient};
use harness::{pattern, Node};

const MIB: usize = 1024 * 1024;
const BOX: &str = "splice";
/// Not a multiple of the 64 KiB chunk nor of the 1 MiB frame payload.
const LEN: usize = 5 * MIB + 12_345;

async fn node_with_object(dir: &Path, envs: &[(&str, &str)]) -> (Node, TokioClient, Vec<u8>) {
    let node = Node::start(dir, &["--shards", "1"], envs);
    let c = node.client(false).await;
    c.create_box(BOX, Some(1)).await.expect("create box");
    let data = pattern(11, LEN);
    c.put(BOX, b"big", &PutOptions::default(), Bytes::from(data.clone())).await.expect("put");
    (node, c, data)
}

/// Whole, a range from inside one chunk to inside another, and a suffix; with small gets of
/// another key interleaved on the same connection (their frames go between spliced payloads).
async fn read_back(c: &TokioClient, data: &[u8]) -> u64 {
    c.put(BOX, b"small", &PutOptions::default(), Bytes::from_static(b"small body")).await.expect("put small");
    let ranges = [
        (ByteRange::Whole, 0..LEN),
        (ByteRange::FromTo { first: 70_001, last: 3 * MIB as u64 + 99 }, 70_001..3 * MIB + 100),
        (ByteRange::Suffix { length: 1_000_003 }, LEN - 1_000_003..LEN),
    ];
    let mut sent = 0u64;
    for (range, want) in ranges {
        let (big, smalls) = tokio::join!(c.get(BOX, b"big", range).await.expect("get").to_vec(), async {
            let mut n = 0;
            for _ in 0..20 {
                let got = c.get(BOX, b"small", ByteRange::Whole).await.expect("get small").to_vec().await;
                assert_eq!(got.expect("small body"), b"small body");
                n += 1;
            }
            n
        });
        let big = big.expect("big body");
        assert_eq!(big.len(), want.len(), "{range:?}: length");
        assert!(big == data[want.clone()], "{range:?}: the bytes differ from those put");
        assert_eq!(smalls, 20);
        sent += want.len() as u64;
    }
    sent
}

#[tokio::test(flavor = "current_thread")]
async fn large_gets_are_spliced_and_come_back_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    // On is the default.
    let (node, c, data) = node_with_object(dir.path(), &[]).await;
    let sent = read_back(&c, &data).await;
    let spliced = node.metric_sum("candybox_get_spliced_bytes_total");
    // Every payload piece larger than the write gather's limit is spliced; the first frame's
    // pieces and the pieces cut at frame ends may be small enough to be copied.
    assert!(spliced >= sent as f64 * 0.9, "spliced {spliced} of {sent} payload bytes");
}

#[tokio::test(flavor = "current_thread")]
async fn with_splicing_off_the_same_bytes_are_copied() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, c, data) = node_with_object(dir.path(), &[("CANDYBOX_SPLICE_GETS", "false")]).await;
    read_back(&c, &data).await;
    assert_eq!(node.metric_sum("candybox_get_spliced_bytes_total"), 0.0, "nothing is spliced when it is off");
}

#[tokio::test(flavor = "current_thread")]
async fn a_damaged_chunk_is_never_spliced_to_the_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, c, data) = node_with_object(dir.path(), &[("CANDYBOX_SPLICE_GETS", "true")]).await;
    // Damage one payload byte 3 MiB into the object (a frame after the first): find it in the
    // Syrup by the bytes around it (the pattern does not repeat).
    let at = 3 * MIB + 777;
    let needle = &data[at..at + 64];
    let syrups: Vec<_> =
        std::fs::read_dir(node.data_dir.join("syrups")).expect("syrup dir").map(|e| e.expect("entry").path()).collect();
    let (path, offset) = syrups
        .iter()
        .find_map(|p| {
            let bytes = std::fs::read(p).ok()?;
            bytes.windows(needle.len()).position(|w| w == needle).map(|o| (p.clone(), o))
        })
        .expect("the object's bytes in a Syrup");
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).expect("open the Syrup");
    f.seek(SeekFrom::Start(offset as u64)).expect("seek");
    f.write_all(&[data[at] ^ 0x40]).expect("damage one byte");
    drop(f);

    let mut stream = c.get(BOX, b"big", ByteRange::Whole).await.expect("the get starts: its first frames are sound");
    let mut got = Vec::new();
    let end = loop {
        match stream.next_piece().await {
            Ok(Some(piece)) => got.extend_from_slice(&piece),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(end.is_err(), "the get of a damaged object ended without an error after {} bytes", got.len());
    assert!(got.len() <= at, "{} bytes arrived, past the damaged byte at {at}", got.len());
    assert!(got == data[..got.len()], "the bytes that arrived are not the object's first bytes");
    // The node still serves, on a new connection.
    let c2 = node.client(false).await;
    c2.put(BOX, b"after", &PutOptions::default(), Bytes::from_static(b"ok")).await.expect("put after");
    let back = c2.get(BOX, b"after", ByteRange::Whole).await.expect("get after").to_vec().await.expect("body");
    assert_eq!(back, b"ok");
}
