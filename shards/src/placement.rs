//! Placement: which shard owns a (Box, partition). A pure function, computed once at the edge.
//!
//! `shard_for(box, p, n) = (crc32(box) + p) mod n`, with the sum in 64 bits and CRC-32/IEEE of the
//! Box name's bytes (`crc32fast`). Its name on the wire is [`PLACEMENT_NAME`]; a shard-aware
//! client computes the same function (docs/format.md, "Placement").
//!
//! Invariants:
//! - The result depends on nothing but its arguments, so every shard (and every client) agrees.
//! - Consecutive partitions of one Box land on consecutive shards (spread evenly), and Boxes
//!   start at different shards (by the CRC).
//! - Any shard can open any partition's files, so a changed shard count between restarts only
//!   moves ownership.

/// Name of the placement function in the topology reply.
pub const PLACEMENT_NAME: &str = "crc32-box-plus-partition-v1";

/// The shard that owns `partition` of `box_name` among `shard_count` shards.
///
/// # Panics
/// When `shard_count` is 0 (a node has at least one shard).
pub fn shard_for(box_name: &str, partition: u16, shard_count: u16) -> u16 {
    assert!(shard_count > 0, "a node has at least one shard");
    let sum = u64::from(crc32fast::hash(box_name.as_bytes())) + u64::from(partition);
    (sum % u64::from(shard_count)) as u16
}

/// The node that serves a new Box among the live members `nodes` (any order), chosen when the
/// Box is created and then kept in its descriptor: the node at `crc32(box) mod n` of the ids in
/// increasing order. `None` when there is no live member.
pub fn node_for(box_name: &str, nodes: &[u16]) -> Option<u16> {
    let mut sorted = nodes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.is_empty() {
        return None;
    }
    let i = u64::from(crc32fast::hash(box_name.as_bytes())) % sorted.len() as u64;
    sorted.get(i as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_spread_over_the_live_nodes() {
        assert_eq!(node_for("photos", &[]), None);
        assert_eq!(node_for("photos", &[7]), Some(7));
        let crc = u64::from(crc32fast::hash(b"photos"));
        assert_eq!(node_for("photos", &[9, 2, 5, 2]), Some([2, 5, 9][(crc % 3) as usize]));
        let on_two: Vec<u16> = (0..40).filter_map(|i| node_for(&format!("box-{i}"), &[1, 2])).collect();
        assert!(on_two.contains(&1) && on_two.contains(&2), "forty boxes land on both of two nodes");
    }

    #[test]
    fn placement_is_the_documented_function() {
        let crc = u64::from(crc32fast::hash(b"photos"));
        assert_eq!(u64::from(shard_for("photos", 3, 5)), (crc + 3) % 5);
        assert_eq!(shard_for("photos", 0, 1), 0);
        let shards: Vec<u16> = (0..4).map(|p| shard_for("photos", p, 4)).collect();
        let mut sorted = shards.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3], "four partitions spread over four shards");
    }
}
