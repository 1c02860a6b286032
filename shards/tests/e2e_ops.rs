//! End to end over real TCP: every operation of SPEC §6 through the client library against a
//! `candyboxd` started by the test (2 shards, 4 partitions per Box, a 1 MiB frame cap so that
//! bodies larger than a frame are streamed, 4 KiB chunks so that range reads cross chunk
//! boundaries, and a 1 MiB multipart minimum so that a 3-part upload stays small).

mod harness;

use bytes::Bytes;
use candybox_wire::client::{
    placement::partition_of, ByteRange, ClientError, KeyRange, ListOptions, PutOptions, RenameOutcome,
};
use harness::{key_in_partition, pattern, Node};

const CHUNK: u64 = 4096;
const CAP: u32 = 1024 * 1024;

fn node(root: &std::path::Path) -> Node {
    Node::start(
        root,
        &["--chunk-bytes", "4096", "--frame-body-bytes-max", "1048576", "--multipart-part-bytes-min", "1048576"],
        &[],
    )
}

#[tokio::test(flavor = "current_thread")]
async fn every_operation_end_to_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = node(dir.path());
    let c = node.client_with(|c| c.frame_body_bytes_max = CAP).await;

    // Boxes.
    let info = c.create_box("e2e-ops", Some(4)).await.expect("create box");
    assert_eq!(info.partitions, 4);
    assert!(matches!(c.create_box("e2e-ops", Some(4)).await, Err(ClientError::BoxExists { .. })));
    assert_eq!(c.head_box("e2e-ops").await.expect("head box").box_uid, info.box_uid);
    assert!(c.list_boxes().await.expect("list boxes").iter().any(|b| b.name == "e2e-ops"));
    assert!(matches!(c.head_box("no-such-box").await, Err(ClientError::BoxNotFound { .. })));
    let topology = c.topology().await.expect("topology");
    assert_eq!(topology.shard_count, 2);
    assert_eq!(topology.ports, node.ports.shard_ports);

    // Empty object.
    let empty = c.put_bytes("e2e-ops", b"empty", &PutOptions::default(), Bytes::new()).await.expect("put empty");
    assert_eq!(empty.size, 0);
    let (meta, bytes) = c.get_to_vec("e2e-ops", b"empty", ByteRange::Whole).await.expect("get empty");
    assert_eq!((meta.size, bytes.len()), (0, 0));

    // Larger than the frame cap: streamed both ways.
    let big = pattern(1, 5 * CAP as usize + 12_345);
    let opts = PutOptions {
        content_type: Some("application/octet-stream".into()),
        user_meta: vec![("owner".into(), "e2e".into())],
        size: None,
        condition: None,
        digests: vec![],
    };
    let done = c.put_bytes("e2e-ops", b"big", &opts, Bytes::from(big.clone())).await.expect("put big");
    assert_eq!(done.size, big.len() as u64);
    assert_eq!(done.checksum, crc32fast::hash(&big));
    let (meta, got) = c.get_to_vec("e2e-ops", b"big", ByteRange::Whole).await.expect("get big");
    assert!(got == big, "big object reads back identical");
    assert_eq!(meta.content_type, "application/octet-stream");
    assert_eq!(meta.user_meta, vec![("owner".to_string(), "e2e".to_string())]);
    let head = c.head("e2e-ops", b"big").await.expect("head big");
    assert_eq!((head.size, head.checksum), (big.len() as u64, crc32fast::hash(&big)));

    // Range reads at chunk boundaries (HTTP semantics, `last` clamped).
    let n = big.len() as u64;
    let ranges = [
        (ByteRange::FromTo { first: 0, last: CHUNK - 1 }, 0, CHUNK),
        (ByteRange::FromTo { first: CHUNK - 1, last: CHUNK }, CHUNK - 1, 2),
        (ByteRange::FromTo { first: CHUNK, last: 2 * CHUNK - 1 }, CHUNK, CHUNK),
        (ByteRange::FromTo { first: 3 * CHUNK - 1, last: 5 * CHUNK }, 3 * CHUNK - 1, 2 * CHUNK + 2),
        (ByteRange::FromTo { first: n - 10, last: n + 1000 }, n - 10, 10),
        (ByteRange::From { first: n - CHUNK - 1 }, n - CHUNK - 1, CHUNK + 1),
        (ByteRange::Suffix { length: CHUNK + 1 }, n - CHUNK - 1, CHUNK + 1),
        (ByteRange::Suffix { length: n + 5 }, 0, n),
    ];
    for (range, first, len) in ranges {
        let (_, got) = c.get_to_vec("e2e-ops", b"big", range).await.expect("range read");
        assert!(got == big[first as usize..(first + len) as usize], "range {range:?}");
    }
    let unsatisfiable = c.get_to_vec("e2e-ops", b"big", ByteRange::From { first: n }).await;
    assert!(matches!(unsatisfiable, Err(ClientError::InvalidArgument { .. })), "{unsatisfiable:?}");

    // Delete (of a present and of an absent key).
    c.delete("e2e-ops", b"big").await.expect("delete");
    assert!(matches!(c.head("e2e-ops", b"big").await, Err(ClientError::NotFound { .. })));
    c.delete("e2e-ops", b"never-there").await.expect("deleting an absent key succeeds");

    // Listing across partitions, both directions, with cursors.
    let keys: Vec<Vec<u8>> = (0..60).map(|i| format!("k/{i:03}").into_bytes()).collect();
    let partitions: std::collections::BTreeSet<u16> = keys.iter().map(|k| partition_of(k, 4)).collect();
    assert_eq!(partitions.len(), 4, "the keys spread over every partition");
    for (i, key) in keys.iter().enumerate() {
        c.put_bytes("e2e-ops", key, &PutOptions::default(), Bytes::from(pattern(i as u64, 100 + i)))
            .await
            .expect("put listed key");
    }
    c.put_bytes("e2e-ops", b"other/x", &PutOptions::default(), Bytes::from_static(b"x")).await.expect("put");
    for reverse in [false, true] {
        let mut seen = Vec::new();
        let mut options = ListOptions { prefix: Some(b"k/".to_vec()), reverse, limit: 7, ..Default::default() };
        for _ in 0..100 {
            let page = c.list("e2e-ops", &options).await.expect("list page");
            assert!(page.entries.len() <= 7);
            seen.extend(page.entries.into_iter().map(|e| e.key));
            match page.next_start_after {
                Some(cursor) => options.start_after = Some(cursor),
                None => break,
            }
        }
        let mut want = keys.clone();
        if reverse {
            want.reverse();
        }
        assert_eq!(seen, want, "paged listing (reverse: {reverse})");
    }
    let window = c
        .list_all(
            "e2e-ops",
            &ListOptions { start: Some(b"k/010".to_vec()), end: Some(b"k/020".to_vec()), ..Default::default() },
        )
        .await
        .expect("window");
    assert_eq!(window.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), keys[10..20].to_vec());
    let after = c
        .list_all("e2e-ops", &ListOptions { start_after: Some(b"k/057".to_vec()), ..Default::default() })
        .await
        .expect("start-after");
    assert_eq!(after.iter().map(|e| e.key.as_slice()).collect::<Vec<_>>(), vec![&b"k/058"[..], b"k/059", b"other/x"]);

    // Delete-range across partitions: by prefix and by window.
    c.delete_range("e2e-ops", &KeyRange::Prefix(b"k/01".to_vec())).await.expect("delete prefix");
    c.delete_range("e2e-ops", &KeyRange::Between { start: b"k/020".to_vec(), end: b"k/030".to_vec() })
        .await
        .expect("delete window");
    let left = c.list_all("e2e-ops", &ListOptions { prefix: Some(b"k/".to_vec()), ..Default::default() }).await;
    let left: Vec<Vec<u8>> = left.expect("list after delete-range").into_iter().map(|e| e.key).collect();
    let want: Vec<Vec<u8>> =
        keys.iter().filter(|k| !(k.starts_with(b"k/01") || k.starts_with(b"k/02"))).cloned().collect();
    assert_eq!(left, want);

    // Copy and rename as single requests, same partition and across partitions.
    let (src, p) = key_in_partition("copy-src-", 4, |_| true);
    let (same, _) = key_in_partition("copy-same-", 4, |q| q == p);
    let (cross, _) = key_in_partition("copy-cross-", 4, |q| q != p);
    let body = pattern(9, 3 * CHUNK as usize + 7);
    c.put_bytes("e2e-ops", &src, &PutOptions::default(), Bytes::from(body.clone())).await.expect("put source");
    for (target, rename) in [(&same, false), (&cross, false)] {
        let _ = rename;
        c.copy("e2e-ops", &src, target).await.expect("copy");
        assert!(c.get_to_vec("e2e-ops", target, ByteRange::Whole).await.expect("get copy").1 == body);
    }
    let (renamed_same, _) = key_in_partition("ren-same-", 4, |q| q == p);
    c.rename("e2e-ops", &same, &renamed_same).await.expect("rename same partition");
    assert!(matches!(c.head("e2e-ops", &same).await, Err(ClientError::NotFound { .. })));
    let (renamed_cross, _) = key_in_partition("ren-cross-", 4, |q| q != p);
    c.rename("e2e-ops", &cross, &renamed_cross).await.expect("rename across partitions");
    assert!(matches!(c.head("e2e-ops", &cross).await, Err(ClientError::NotFound { .. })));
    for key in [&src, &renamed_same, &renamed_cross] {
        assert!(c.get_to_vec("e2e-ops", key, ByteRange::Whole).await.expect("get").1 == body);
    }

    // The client relay: copy and rename through get-locator / prepare-rename, zero-copy-put,
    // complete-rename.
    let (relayed, _) = key_in_partition("relay-copy-", 4, |q| q != p);
    c.relay_copy("e2e-ops", &src, &relayed).await.expect("relay copy");
    let (relay_renamed, _) = key_in_partition("relay-ren-", 4, |q| q != p);
    assert_eq!(
        c.relay_rename("e2e-ops", &relayed, &relay_renamed).await.expect("relay rename"),
        RenameOutcome::Finalized
    );
    assert!(matches!(c.head("e2e-ops", &relayed).await, Err(ClientError::NotFound { .. })));
    assert!(c.get_to_vec("e2e-ops", &relay_renamed, ByteRange::Whole).await.expect("get").1 == body);

    // Multipart with 3 parts (two at the 1 MiB minimum, a short last one).
    let mp = pattern(33, 2 * CAP as usize + 777);
    let upload = c.create_upload("e2e-ops", b"multi", &PutOptions::default()).await.expect("create upload");
    let uploads = c.list_uploads("e2e-ops").await.expect("list uploads");
    assert!(uploads.iter().any(|u| u.upload_id == upload && u.key == b"multi"));
    for (i, piece) in mp.chunks(CAP as usize).enumerate() {
        let part = c
            .upload_part(
                "e2e-ops",
                b"multi",
                upload,
                i as u32 + 1,
                Some(piece.len() as u64),
                Bytes::copy_from_slice(piece),
            )
            .await
            .expect("upload part");
        assert_eq!(part.size, piece.len() as u64);
    }
    let parts = c.list_parts("e2e-ops", b"multi", upload).await.expect("list parts");
    assert_eq!(parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), vec![1, 2, 3]);
    c.complete_upload("e2e-ops", b"multi", upload, &[1, 2, 3]).await.expect("complete upload");
    assert!(c.get_to_vec("e2e-ops", b"multi", ByteRange::Whole).await.expect("get multipart").1 == mp);
    let aborted = c.create_upload("e2e-ops", b"multi-2", &PutOptions::default()).await.expect("create upload");
    c.abort_upload("e2e-ops", b"multi-2", aborted).await.expect("abort upload");
    assert!(!c.list_uploads("e2e-ops").await.expect("list uploads").iter().any(|u| u.upload_id == aborted));

    // Typed errors for bad requests; the connection stays usable.
    assert!(matches!(c.head_box("X").await, Err(ClientError::InvalidArgument { .. })));
    let long_key = vec![b'a'; 1025];
    let r = c.put_bytes("e2e-ops", &long_key, &PutOptions::default(), Bytes::from_static(b"x")).await;
    assert!(matches!(r, Err(ClientError::LimitExceeded { .. })), "{r:?}");
    assert!(c.head("e2e-ops", &src).await.is_ok());

    // Stats, then delete-box: refused while non-empty, done with force.
    assert_eq!(c.stats().await.expect("stats").len(), 2);
    assert!(matches!(c.delete_box("e2e-ops", false).await, Err(ClientError::BoxNotEmpty { .. })));
    c.delete_box("e2e-ops", true).await.expect("force delete");
    assert!(matches!(c.head_box("e2e-ops").await, Err(ClientError::BoxNotFound { .. })));
    c.create_box("e2e-empty", None).await.expect("create empty box");
    c.delete_box("e2e-empty", false).await.expect("delete empty box");
}
