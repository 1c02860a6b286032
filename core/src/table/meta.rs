//! The meta block: facts about the whole table that the engine needs without reading data blocks.
//!
//! ```text
//! | entry_count: u64 | range_tombstone_count: u64 | min_hlc: 14 | max_hlc: 14 |
//! | smallest_key_len: u16 | smallest_key | largest_key_len: u16 | largest_key |
//! | syrup_count: u32 | syrup id: u64 × syrup_count |
//! ```
//!
//! Invariants (built by the writer, checked by [`TableMeta::decode`]; the reader checks the
//! cross-block ones, such as the entry count against the index):
//! - `entry_count == 0` exactly when both keys are empty; otherwise `smallest_key <= largest_key`.
//! - `min_hlc <= max_hlc`; both are [`Hlc::ZERO`] for a table with no entry and no tombstone.
//! - Syrup ids are strictly increasing (sorted, unique), and there are none without entries.
//! - The block ends exactly after the last Syrup id.

use crate::{
    codec::{Put, Reader},
    error::DecodeError,
    hlc::Hlc,
    limits::STORED_KEY_BYTES_MAX,
    types::SyrupId,
};

use super::malformed;

/// Bytes of the meta block other than its keys and Syrup ids.
pub(crate) const META_FIXED_BYTES: usize =
    2 * size_of::<u64>() + 2 * Hlc::ENCODED_BYTES + 2 * size_of::<u16>() + size_of::<u32>();
const _: () = assert!(META_FIXED_BYTES == 52);

/// What a table holds, summarised: returned by the writer and decoded by the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// Point entries in the table: lets compaction estimate work and check it lost nothing.
    pub entry_count: u64,
    /// Smallest key of the point entries (empty without entries): with `largest_key`, lets the
    /// engine pick tables overlapping a key range without opening their blocks.
    pub smallest_key: Vec<u8>,
    /// Largest key of the point entries (empty without entries).
    pub largest_key: Vec<u8>,
    /// Greatest stamp over the entries and the range tombstones: recovery observes it so the
    /// clock never issues a stamp older than a durable one.
    pub max_hlc: Hlc,
    /// Smallest stamp over the entries and the range tombstones: lets compaction know whether a
    /// newer table's range tombstone can delete anything here.
    pub min_hlc: Hlc,
    /// Every Syrup referenced by the table's values, sorted and unique: Syrup garbage collection
    /// knows which Syrups are still referenced without decoding every locator.
    pub syrups: Vec<SyrupId>,
    /// Range tombstones in the table, so a table holding only tombstones is still worth compacting.
    pub range_tombstone_count: u64,
}

impl TableMeta {
    /// Appends the meta block.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        assert_eq!(self.entry_count == 0, self.smallest_key.is_empty(), "smallest key iff entries");
        assert_eq!(self.entry_count == 0, self.largest_key.is_empty(), "largest key iff entries");
        assert!(self.smallest_key <= self.largest_key, "smallest key above largest");
        assert!(self.min_hlc <= self.max_hlc, "min hlc above max hlc");
        assert!(self.syrups.is_sorted_by(|a, b| a < b), "syrups not sorted and unique");
        assert!(u32::try_from(self.syrups.len()).is_ok(), "more syrups than a u32 counts");
        let start = out.len();
        out.put_u64(self.entry_count);
        out.put_u64(self.range_tombstone_count);
        self.min_hlc.encode(out);
        self.max_hlc.encode(out);
        out.put_bytes16(&self.smallest_key);
        out.put_bytes16(&self.largest_key);
        out.put_u32(self.syrups.len() as u32);
        for syrup in &self.syrups {
            out.put_u64(syrup.0);
        }
        assert_eq!(out.len() - start, self.encoded_bytes());
    }

    /// Bytes [`TableMeta::encode`] appends.
    pub(crate) fn encoded_bytes(&self) -> usize {
        META_FIXED_BYTES + self.smallest_key.len() + self.largest_key.len() + self.syrups.len() * size_of::<u64>()
    }

    /// Decodes a meta block whose CRC-32 the caller has verified. Offsets in errors are relative
    /// to the block.
    pub(crate) fn decode(block: &[u8]) -> Result<TableMeta, DecodeError> {
        let mut r = Reader::new(block);
        let entry_count = r.u64()?;
        let range_tombstone_count = r.u64()?;
        let min_hlc = Hlc::decode(&mut r)?;
        let max_hlc = Hlc::decode(&mut r)?;
        if min_hlc > max_hlc {
            return Err(malformed("meta hlc range", r.position()));
        }
        if entry_count == 0 && range_tombstone_count == 0 && max_hlc != Hlc::ZERO {
            return Err(malformed("meta hlc range", r.position()));
        }
        let at = r.position();
        let smallest_key = r.bytes16()?.to_vec();
        let largest_key = r.bytes16()?.to_vec();
        if smallest_key.len() > STORED_KEY_BYTES_MAX || largest_key.len() > STORED_KEY_BYTES_MAX {
            return Err(malformed("meta key length", at));
        }
        if (entry_count == 0) != smallest_key.is_empty() || (entry_count == 0) != largest_key.is_empty() {
            return Err(malformed("meta key range", at));
        }
        if smallest_key > largest_key {
            return Err(malformed("meta key range", at));
        }
        let at = r.position();
        let syrup_count = r.u32()? as usize;
        if syrup_count.checked_mul(size_of::<u64>()) != Some(r.remaining()) {
            return Err(malformed("meta syrup count", at));
        }
        if entry_count == 0 && syrup_count != 0 {
            return Err(malformed("meta syrup count", at));
        }
        let mut syrups: Vec<SyrupId> = Vec::with_capacity(syrup_count);
        for _ in 0..syrup_count {
            let at = r.position();
            let syrup = SyrupId(r.u64()?);
            if syrups.last().is_some_and(|&previous| previous >= syrup) {
                return Err(malformed("meta syrup order", at));
            }
            syrups.push(syrup);
        }
        Ok(TableMeta { entry_count, smallest_key, largest_key, max_hlc, min_hlc, syrups, range_tombstone_count })
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::SmallRng, SeedableRng};

    use super::*;

    fn sample() -> TableMeta {
        TableMeta {
            entry_count: 3,
            smallest_key: b"a".to_vec(),
            largest_key: b"c".to_vec(),
            max_hlc: Hlc { physical_ms: 9, logical: 0, node: 1 },
            min_hlc: Hlc { physical_ms: 2, logical: 5, node: 1 },
            syrups: vec![SyrupId(4), SyrupId(7)],
            range_tombstone_count: 1,
        }
    }

    #[test]
    fn round_trips() {
        let meta = sample();
        let mut b = Vec::new();
        meta.encode(&mut b);
        assert_eq!(b.len(), meta.encoded_bytes());
        assert_eq!(TableMeta::decode(&b), Ok(meta));
    }

    #[test]
    fn broken_invariants_are_malformed() {
        let what = |meta: &TableMeta, syrups: &[u64]| {
            // Encode by hand to bypass the encoder's assertions.
            let mut b = Vec::new();
            b.put_u64(meta.entry_count);
            b.put_u64(meta.range_tombstone_count);
            meta.min_hlc.encode(&mut b);
            meta.max_hlc.encode(&mut b);
            b.put_bytes16(&meta.smallest_key);
            b.put_bytes16(&meta.largest_key);
            b.put_u32(syrups.len() as u32);
            for s in syrups {
                b.put_u64(*s);
            }
            match TableMeta::decode(&b) {
                Err(DecodeError::Malformed { what, .. }) => what,
                other => panic!("expected Malformed, got {other:?}"),
            }
        };
        assert_eq!(what(&sample(), &[7, 4]), "meta syrup order");
        assert_eq!(what(&sample(), &[4, 4]), "meta syrup order");
        assert_eq!(what(&TableMeta { smallest_key: b"d".to_vec(), ..sample() }, &[]), "meta key range");
        assert_eq!(what(&TableMeta { entry_count: 0, ..sample() }, &[]), "meta key range");
        let (min_hlc, max_hlc) = (sample().max_hlc, sample().min_hlc);
        assert_eq!(what(&TableMeta { min_hlc, max_hlc, ..sample() }, &[]), "meta hlc range");
    }

    #[test]
    fn mutated_bytes_never_panic() {
        let mut rng = SmallRng::seed_from_u64(0x3E7A);
        let mut good = Vec::new();
        sample().encode(&mut good);
        for _ in 0..10_000 {
            let b = crate::testing::mutate(&mut rng, &good, 8);
            let _ = TableMeta::decode(&b);
        }
    }
}
