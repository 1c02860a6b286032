//! Shard-aware routing: with the client's routing on, a mixed workload (including the client relay
//! of a copy and a rename across partitions) causes no cross-shard forward at the node but the
//! relayed rename's check of its intent; with it off, the same workload still succeeds (through the main port,
//! forwarded by whichever shard accepted the connection).

mod harness;

use bytes::Bytes;
use candybox_wire::client::{ByteRange, KeyRange, ListOptions, PutOptions, TokioClient};
use harness::{key_in_partition, pattern, Node};

const FORWARDS: &str = "candybox_cross_shard_forwards_total";

async fn mixed_workload(c: &TokioClient, box_name: &str) {
    for i in 0..40u64 {
        let key = format!("mixed/{i:03}").into_bytes();
        let body = Bytes::from(pattern(i, (i as usize * 997) % 20_000));
        c.put_bytes(box_name, &key, &PutOptions::default(), body.clone()).await.expect("put");
        assert!(c.get_to_vec(box_name, &key, ByteRange::Whole).await.expect("get").1 == body);
        assert_eq!(c.head(box_name, &key).await.expect("head").size, body.len() as u64);
        if i % 5 == 0 {
            c.delete(box_name, &key).await.expect("delete");
        }
    }
    let src = b"mixed/001".to_vec();
    let p = candybox_wire::client::placement::partition_of(&src, 8);
    let (same, _) = key_in_partition("copy/", 8, |q| q == p);
    c.copy(box_name, &src, &same).await.expect("same-partition copy");
    // The client relay across partitions: each step goes to its own partition's shard.
    let (relayed, _) = key_in_partition("relayed/", 8, |q| q != p);
    c.relay_copy(box_name, &src, &relayed).await.expect("relay copy");
    let (moved, _) = key_in_partition("moved/", 8, |q| q != p);
    c.relay_rename(box_name, &relayed, &moved).await.expect("relay rename");
    let moved_len = c.get_to_vec(box_name, &moved, ByteRange::Whole).await.expect("get moved").1.len();
    assert_eq!(moved_len, 997, "the moved Candy is mixed/001 (997 bytes)");
    let listed = c.list_all(box_name, &ListOptions { prefix: Some(b"mixed/".to_vec()), ..Default::default() }).await;
    assert_eq!(listed.expect("list").len(), 32);
    c.delete_range(box_name, &KeyRange::Prefix(b"mixed/01".to_vec())).await.expect("delete-range");
    let listed = c.list_all(box_name, &ListOptions { prefix: Some(b"mixed/".to_vec()), ..Default::default() }).await;
    assert_eq!(listed.expect("list").len(), 24);
}

#[tokio::test(flavor = "current_thread")]
async fn routed_clients_cause_no_cross_shard_forwards() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &[], &[]);
    let routed = node.client(true).await;
    assert!(routed.is_routing(), "routing is on: {:?}", routed.routing_off_reason());
    routed.create_box("routed", Some(8)).await.expect("create box");
    mixed_workload(&routed, "routed").await;
    // The one exception: a relayed rename's destination asks the source partition's shard
    // whether the rename's intent still holds the source (else a rename abandoned meanwhile
    // would leave a second copy), one hop when the two partitions live on different shards.
    assert!(node.metric_sum(FORWARDS) <= 1.0, "a routed workload was forwarded between shards");

    let unrouted = node.client(false).await;
    unrouted.create_box("unrouted", Some(8)).await.expect("create box");
    mixed_workload(&unrouted, "unrouted").await;
    assert!(node.metric_sum(FORWARDS) > 0.0, "with routing off, some requests landed on the wrong shard");
}
