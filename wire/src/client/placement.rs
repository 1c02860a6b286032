//! Where a key lives: the placement function of docs/format.md "Placement", as a shard-aware
//! client computes it.
//!
//! Invariants:
//! - `partition = crc32(key) mod partitions` (CRC-32/IEEE) and
//!   `shard = (crc32(box_name) + partition) mod shard_count` with a 64-bit sum, exactly as the
//!   node computes them; the client routes only when the node names [`PLACEMENT_V1`].
//! - Placement is a routing hint: every shard answers every request, so a wrong guess costs a
//!   cross-core hop, never a wrong answer.

/// The name of the placement function this client implements.
pub const PLACEMENT_V1: &str = "crc32-box-plus-partition-v1";

/// The partition of `key` in a Box of `partitions` partitions (0 partitions counts as 1).
pub fn partition_of(key: &[u8], partitions: u16) -> u16 {
    let p = crc32fast::hash(key) % u32::from(partitions.max(1));
    u16::try_from(p).unwrap_or(0)
}

/// The shard owning `partition` of `box_name` on a node of `shard_count` shards (0 counts as 1).
pub fn shard_of(box_name: &str, partition: u16, shard_count: u16) -> u16 {
    let sum = u64::from(crc32fast::hash(box_name.as_bytes())) + u64::from(partition);
    u16::try_from(sum % u64::from(shard_count.max(1))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_matches_the_documented_function() {
        // crc32("hello") = 0x3610a686 (IEEE check value of the word).
        assert_eq!(crc32fast::hash(b"hello"), 0x3610_a686);
        assert_eq!(partition_of(b"hello", 8), (0x3610_a686_u32 % 8) as u16);
        assert_eq!(partition_of(b"hello", 1), 0);
        assert_eq!(partition_of(b"hello", 0), 0);
        let box_crc = u64::from(crc32fast::hash(b"photos"));
        for partition in 0..8u16 {
            assert_eq!(shard_of("photos", partition, 3), ((box_crc + u64::from(partition)) % 3) as u16);
        }
        // The sum is 64-bit: a CRC near u32::MAX plus a partition does not wrap.
        assert_eq!(shard_of("photos", 7, 1), 0);
    }

    #[test]
    fn every_partition_of_a_box_spreads_over_the_shards() {
        let shards: std::collections::BTreeSet<u16> = (0..8).map(|p| shard_of("spread", p, 4)).collect();
        assert_eq!(shards.len(), 4);
    }
}
