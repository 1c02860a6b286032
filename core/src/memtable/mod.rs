//! The memtable: the newest mutations of a partition, in memory, sorted by key.
//!
//! Invariants:
//! - One entry per key: the version with the greatest HLC (last writer wins); of two entries
//!   with the same HLC (a version and its relocation) the later inserted.
//! - `syrups` holds every Syrup referenced by any locator ever inserted, including overwritten
//!   ones; a superset is safe for GC (a leak at worst, never a dangling reference).
//! - `bytes` approximates the memory held; a flush is triggered past the configured size.
//! - `index` holds exactly the entries of `map` (point lookups hash instead of walking the tree:
//!   a walk of 14 levels of 12-byte keys was 16 % of a pipelined small get). It uses a randomly
//!   keyed hasher (aHash), so client-chosen keys cannot be made to collide.
//! - An index entry's key and its value are slices of one allocation, key first: a lookup's key
//!   comparison brings the locator's head into the cache with it (a pipelined small get missed
//!   the cache on the key and again on the locator).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::Bound,
};

use bytes::Bytes;

use crate::{hlc::Hlc, locator::CandyLocator, types::RangeTombstone, types::SyrupId};

/// One version in the memtable.
#[derive(Debug, Clone)]
pub struct MemEntry {
    /// The version's stamp.
    pub hlc: Hlc,
    /// The encoded locator.
    pub value: Bytes,
}

/// Fixed per-entry overhead counted towards the memtable size (the tree's node share and the
/// index's slot).
const ENTRY_OVERHEAD_BYTES: usize = 160;

/// Hints the cache line at `at` into the caches (x86-64; nothing elsewhere).
#[inline]
fn prefetch_line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults and reads nothing into the program: any
    // address is allowed, and `at` points into a live entry anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// `key` and `value` copied into one allocation, key first, as two slices of it.
fn together(key: &[u8], value: &[u8]) -> (Bytes, Bytes) {
    let mut both = Vec::with_capacity(key.len() + value.len());
    both.extend_from_slice(key);
    both.extend_from_slice(value);
    let mut both = Bytes::from(both);
    let value = both.split_off(key.len());
    (both, value)
}

/// The index's hasher: aHash with random keys drawn for each memtable.
#[derive(Debug, Clone)]
struct KeyedHash(ahash::RandomState);

impl Default for KeyedHash {
    fn default() -> Self {
        KeyedHash(ahash::RandomState::with_seeds(rand::random(), rand::random(), rand::random(), rand::random()))
    }
}

impl std::hash::BuildHasher for KeyedHash {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

/// Sorted in-memory mutations.
#[derive(Debug, Default)]
pub struct Memtable {
    map: BTreeMap<Bytes, MemEntry>,
    index: HashMap<Bytes, MemEntry, KeyedHash>,
    range_tombstones: Vec<RangeTombstone>,
    bytes: usize,
    syrups: BTreeSet<SyrupId>,
    max_hlc: Hlc,
}

impl Memtable {
    /// An empty memtable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `locator` (already encoded as `value`) under `key` unless a newer version is there.
    pub fn set(&mut self, key: Bytes, value: Bytes, locator: &CandyLocator) {
        self.syrups.extend(locator.syrups());
        self.max_hlc = self.max_hlc.max(locator.hlc);
        let add = key.len() + value.len() + ENTRY_OVERHEAD_BYTES;
        match self.map.get_mut(&key) {
            // An equal stamp is the same version moved to new Syrup bytes by space reclamation
            // (it keeps the stamp): the later one replaces it.
            Some(old) if old.hlc > locator.hlc => {}
            Some(old) => {
                self.bytes = self.bytes + value.len() - old.value.len().min(self.bytes);
                let (index_key, value) = together(&key, &value);
                let entry = MemEntry { hlc: locator.hlc, value };
                *old = entry.clone();
                // Removed first: an insert over a present key keeps the old key (and with it the
                // old version's allocation).
                self.index.remove(&key[..]);
                self.index.insert(index_key, entry);
            }
            None => {
                self.bytes += add;
                let (index_key, value) = together(&key, &value);
                let entry = MemEntry { hlc: locator.hlc, value };
                self.index.insert(index_key, entry.clone());
                self.map.insert(key, entry);
            }
        }
    }

    /// Adds a range tombstone.
    pub fn delete_range(&mut self, rt: RangeTombstone) {
        self.max_hlc = self.max_hlc.max(rt.hlc);
        self.bytes += rt.start.len() + rt.end.len() + ENTRY_OVERHEAD_BYTES;
        self.range_tombstones.push(rt);
    }

    /// The entry of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&MemEntry> {
        self.index.get(key)
    }

    /// Asks the CPU to bring the first `bytes_max` bytes of `key`'s entry into its cache (a hint:
    /// nothing is read, nothing changes). A batch of requests hints each of its keys first, so
    /// their entries' cache misses overlap instead of coming one after another.
    pub fn prefetch(&self, key: &[u8], bytes_max: usize) {
        let Some(e) = self.index.get(key) else { return };
        let len = e.value.len().min(bytes_max);
        let base = e.value.as_ptr();
        for offset in (0..len).step_by(64) {
            prefetch_line(base.wrapping_add(offset));
        }
    }

    /// Entries with keys in `(lo, hi)`, ascending or descending.
    pub fn range<'a>(
        &'a self,
        lo: Bound<&'a [u8]>,
        hi: Bound<&'a [u8]>,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = (Bytes, Bytes)> + 'a> {
        if let (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) = (lo, hi) {
            if l > h {
                return Box::new(std::iter::empty());
            }
        }
        let it = self.map.range::<[u8], _>((lo, hi)).map(|(k, e)| (k.clone(), e.value.clone()));
        if reverse {
            Box::new(it.rev())
        } else {
            Box::new(it)
        }
    }

    /// The range tombstones.
    pub fn range_tombstones(&self) -> &[RangeTombstone] {
        &self.range_tombstones
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.range_tombstones.is_empty()
    }

    /// Number of point entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every Syrup referenced by anything inserted.
    pub fn syrups(&self) -> &BTreeSet<SyrupId> {
        &self.syrups
    }

    /// The greatest stamp inserted.
    pub fn max_hlc(&self) -> Hlc {
        self.max_hlc
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &MemEntry)> {
        self.map.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(ms: u64) -> CandyLocator {
        CandyLocator::tombstone(Hlc { physical_ms: ms, logical: 0, node: 0 })
    }

    #[test]
    fn last_writer_wins_regardless_of_arrival() {
        let mut m = Memtable::new();
        let (a, b) = (loc(5), loc(3));
        m.set(Bytes::from_static(b"k"), Bytes::from(a.encode()), &a);
        m.set(Bytes::from_static(b"k"), Bytes::from(b.encode()), &b);
        assert_eq!(m.get(b"k").map(|e| e.hlc.physical_ms), Some(5));
        let keys: Vec<_> = m.range(Bound::Unbounded, Bound::Unbounded, true).map(|(k, _)| k).collect();
        assert_eq!(keys, vec![Bytes::from_static(b"k")]);
    }

    #[test]
    fn point_lookups_see_exactly_what_the_sorted_map_holds() {
        let mut m = Memtable::new();
        // Inserts, newer and older overwrites, and equal stamps (a relocation replaces).
        for round in 0..3u64 {
            for k in 0..200u64 {
                let stamp = (k * 7 + round * 13) % 11;
                let l = loc(stamp);
                m.set(Bytes::from(format!("k/{k:06}")), Bytes::from(l.encode()), &l);
            }
        }
        assert_eq!(m.len(), 200);
        for (k, e) in m.iter() {
            let got = m.get(k).expect("every key of the map is in the index");
            assert_eq!((got.hlc, &got.value), (e.hlc, &e.value), "key {k:?}");
            // The index's key and value lie together, the key of the current version included.
            let (ik, iv) = m.index.get_key_value(&k[..]).expect("indexed");
            assert_eq!(ik.as_ptr().wrapping_add(ik.len()), iv.value.as_ptr(), "key {k:?}");
        }
        assert!(m.get(b"k/999999").is_none());
        // Hints change nothing: for present and absent keys, any length asked.
        let before: Vec<_> = m.iter().map(|(k, e)| (k.clone(), e.hlc, e.value.clone())).collect();
        for (k, _, _) in &before {
            m.prefetch(k, 0);
            m.prefetch(k, 7);
            m.prefetch(k, usize::MAX);
        }
        m.prefetch(b"k/999999", 4096);
        let after: Vec<_> = m.iter().map(|(k, e)| (k.clone(), e.hlc, e.value.clone())).collect();
        assert_eq!(after, before);
    }
}

mod slots;
pub(crate) use slots::{Memtables, ToFlush};
