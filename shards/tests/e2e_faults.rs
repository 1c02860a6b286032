//! Damaged files on a real node: the damaged partitions are quarantined, never the node.
//! - A flipped byte in one SSTable footer (after a clean stop flushed every partition): that
//!   partition only. In one record of a shard's commit log (after SIGKILL, nothing flushed): the
//!   partitions of that shard, which may all have had records in it; the other shard's serve.
//! - The node starts, serves every other partition byte for byte, answers the damaged ones'
//!   requests with a typed `Corrupt` error that names the file inside the data directory and the
//!   offset (no server path), lists them in `/readyz` (503, "degraded") and in
//!   `candybox_partition_quarantined`.

mod harness;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use candybox_wire::client::{ByteRange, ClientError, PutOptions, TokioClient};
use harness::{key_in_partition, pattern, Node};

const PARTITIONS: u16 = 4;

/// The directory of partition `p` of the only Box on the node.
fn partition_dir(data_dir: &Path, p: u16) -> PathBuf {
    let boxes = std::fs::read_dir(data_dir.join("boxes")).expect("boxes dir");
    let box_dir = boxes.map(|e| e.expect("entry").path()).next().expect("one box");
    box_dir.join(format!("p{p:02}"))
}

fn files_with(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)))
        .collect();
    out.sort();
    out
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x20;
    std::fs::write(path, bytes).expect("write");
}

/// One key per partition, each with its bytes.
async fn fill(c: &TokioClient) -> Vec<(Vec<u8>, Bytes)> {
    c.create_box("faults", Some(PARTITIONS)).await.expect("create box");
    let mut keys = Vec::new();
    for p in 0..PARTITIONS {
        for i in 0..3u64 {
            let (key, _) = key_in_partition(&format!("k{i}-"), PARTITIONS, |q| q == p);
            let body = Bytes::from(pattern(u64::from(p) * 10 + i, 3000 + i as usize));
            c.put_bytes("faults", &key, &PutOptions::default(), body.clone()).await.expect("put");
            keys.push((key, body));
        }
    }
    keys
}

/// After the damage to the partitions `damaged`: the node serves the others, and the damaged ones
/// are quarantined with evidence naming `file`.
async fn check_quarantined(node: &Node, keys: &[(Vec<u8>, Bytes)], damaged: &[u16], file: &str) {
    assert!(!damaged.is_empty() && damaged.len() < usize::from(PARTITIONS), "{damaged:?}");
    let c = node.client(true).await;
    for (key, body) in keys {
        let p = candybox_wire::client::placement::partition_of(key, PARTITIONS);
        let got = c.get_to_vec("faults", key, ByteRange::Whole).await;
        if damaged.contains(&p) {
            match got {
                Err(ClientError::Corrupt { message }) => {
                    assert!(message.contains(&format!("faults/{p}")), "{message}");
                    assert!(message.contains(file), "names the file: {message}");
                    assert!(message.contains("offset"), "names the offset: {message}");
                    assert!(!message.contains(&node.data_dir.display().to_string()), "no server path: {message}");
                }
                other => panic!("partition {p} must answer Corrupt, got {other:?}"),
            }
        } else {
            assert_eq!(got.expect("an undamaged partition serves").1, body.to_vec());
        }
    }
    // Writes to the other partitions go on too.
    let (fresh, _) = key_in_partition("fresh-", PARTITIONS, |q| !damaged.contains(&q));
    c.put_bytes("faults", &fresh, &PutOptions::default(), Bytes::from_static(b"new")).await.expect("put elsewhere");
    let (status, body) = node.http_get("/readyz");
    assert_eq!(status, 503, "{body}");
    for p in damaged {
        assert!(body.contains(&format!("partition faults/{p} quarantined")), "{body}");
    }
    assert_eq!(node.metric_sum("candybox_partitions_quarantined"), damaged.len() as f64);
    assert!(node.stderr().contains("partition quarantined"), "the node logs it");
}

/// Story: a flipped byte in one SSTable footer made start-up exit 1 (`corrupt sstable ...
/// checksum mismatch at offset 1260`), taking every Box of every partition offline.
#[tokio::test(flavor = "current_thread")]
async fn a_damaged_sstable_quarantines_its_partition_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = Node::start(dir.path(), &[], &[]);
    let keys = fill(&node.client(true).await).await;
    assert!(node.terminate().success(), "a clean stop flushes every partition");
    let damaged = 2;
    let tables = files_with(&partition_dir(&node.data_dir, damaged), "T-");
    let table = tables.first().expect("a flushed table");
    let len = std::fs::metadata(table).expect("stat").len();
    flip(table, len - 40);
    node.restart();
    let name = table.file_name().and_then(|n| n.to_str()).expect("name").to_string();
    check_quarantined(&node, &keys, &[damaged], &name).await;
}

/// Story: a flipped byte in a WAL record in the middle of a log made start-up exit 1. With one
/// commit log per shard, a damaged record may have held any of that shard's partitions' batches.
#[tokio::test(flavor = "current_thread")]
async fn a_damaged_log_record_quarantines_its_shards_partitions_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = Node::start(dir.path(), &[], &[]);
    let keys = fill(&node.client(true).await).await;
    node.kill();
    let shard = 1u16;
    let log_dir = node.data_dir.join("log").join(format!("shard-{shard:03}"));
    let segments = files_with(&log_dir, "LOG-");
    let segment =
        segments.iter().find(|s| std::fs::metadata(s).expect("stat").len() > 200).expect("a segment with records");
    // Byte 60 lies in the first record's body (header 48 B, record header 8 B); more follow.
    flip(segment, 60);
    node.restart();
    let damaged: Vec<u16> =
        (0..PARTITIONS).filter(|p| candybox_wire::client::placement::shard_of("faults", *p, 2) == shard).collect();
    let name = segment.file_name().and_then(|n| n.to_str()).expect("name").to_string();
    check_quarantined(&node, &keys, &damaged, &name).await;
}
