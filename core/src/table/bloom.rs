//! The bloom filter block: lets a point lookup of an absent key skip reading a data block.
//!
//! ```text
//! empty block                                     no filter: every key "may be present"
//! | hash_count: u32 | bits: n >= 1 bytes |        a filter of m = 8n bits
//! ```
//!
//! Bit `j` of the filter is bit `j % 8` of byte `j / 8`. A key is represented by the bits
//! `g_i = (h + i * d) mod m` for `i` in `0..hash_count`, where `h = key_hash(key)`,
//! `d = h.rotate_right(33) | 1`, and the sum is wrapping `u64` arithmetic (double hashing after
//! Kirsch and Mitzenmacher: two hashes give `hash_count` nearly independent probes).
//!
//! Invariants:
//! - [`key_hash`] is part of the format: changing it needs a new format version, since old
//!   filters would then answer "absent" for present keys.
//! - `1 <= hash_count <= HASH_COUNT_MAX`; a filter has at least one byte.
//! - A filter never says "absent" for a key that was added (no false negatives).

use bytes::Bytes;

use super::{malformed, sub_bytes};
use crate::{
    codec::{Put, Reader},
    error::DecodeError,
};

/// Most probes per key. More only costs time: the optimum for 64 bits per key is 44 probes, but
/// the false positive rate past 30 is already far below any useful target.
pub(crate) const HASH_COUNT_MAX: u32 = 30;
/// Fewest filter bits, so a table of one key still gets a useful filter.
const FILTER_BITS_MIN: u64 = 64;
/// Bytes of the hash count at the start of a non-empty bloom block.
const HASH_COUNT_BYTES: usize = size_of::<u32>();

/// Multiplier of [`key_hash`]: 2^64 divided by the golden ratio, an odd constant whose bits are
/// well spread.
const HASH_MUL: u64 = 0x9E37_79B9_7F4A_7C15;
/// Starting state of [`key_hash`] (the first digits of pi), so the empty key does not hash to 0.
const HASH_SEED: u64 = 0x243F_6A88_85A3_08D3;

/// The 64-bit hash a bloom filter stores keys by. Part of the on-disk format.
///
/// Each little-endian 8-byte word (the last one zero-padded) is mixed in as
/// `h = rotl31((h ^ word) * HASH_MUL)`, starting from `HASH_SEED ^ (len * HASH_MUL)`, and the
/// result goes through the MurmurHash3 64-bit finalizer.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    let mix = |h: u64, word: [u8; 8]| (h ^ u64::from_le_bytes(word)).wrapping_mul(HASH_MUL).rotate_left(31);
    let mut h = HASH_SEED ^ (key.len() as u64).wrapping_mul(HASH_MUL);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = mix(h, word);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        for (d, s) in word.iter_mut().zip(rest) {
            *d = *s;
        }
        h = mix(h, word);
    }
    fmix64(h)
}

/// The MurmurHash3 64-bit finalizer: every input bit affects every output bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Probes per key for `bits_per_key`: `bits_per_key * ln 2` rounded, which minimises false
/// positives, within `1..=HASH_COUNT_MAX`.
fn hash_count_for(bits_per_key: u32) -> u32 {
    (bits_per_key.saturating_mul(69).saturating_add(50) / 100).clamp(1, HASH_COUNT_MAX)
}

/// Calls `f` with each bit index of the key hashed to `h` in a filter of `m` bits.
fn for_each_probe(h: u64, hash_count: u32, m: u64, mut f: impl FnMut(u64) -> bool) -> bool {
    let delta = h.rotate_right(33) | 1;
    let mut x = h;
    for _ in 0..hash_count {
        if !f(x % m) {
            return false;
        }
        x = x.wrapping_add(delta);
    }
    true
}

/// Builds the bloom block for the keys hashed to `hashes`.
///
/// # Returns
/// An empty block (no filter) when there are no keys or `bits_per_key` is 0.
pub(crate) fn build(hashes: &[u64], bits_per_key: u32) -> Vec<u8> {
    if hashes.is_empty() || bits_per_key == 0 {
        return Vec::new();
    }
    let hash_count = hash_count_for(bits_per_key);
    let bits = (hashes.len() as u64).saturating_mul(u64::from(bits_per_key)).max(FILTER_BITS_MIN);
    let filter_bytes = usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX);
    assert!(filter_bytes < u32::MAX as usize - HASH_COUNT_BYTES, "bloom filter larger than a block handle can hold");
    let m = filter_bytes as u64 * 8;
    let mut filter = vec![0u8; filter_bytes];
    for &h in hashes {
        for_each_probe(h, hash_count, m, |bit| {
            if let Some(byte) = filter.get_mut((bit / 8) as usize) {
                *byte |= 1 << (bit % 8);
            }
            true
        });
    }
    let mut out = Vec::with_capacity(HASH_COUNT_BYTES + filter_bytes);
    out.put_u32(hash_count);
    out.extend_from_slice(&filter);
    out
}

/// Bytes [`build`] will return for `key_count` keys.
pub(crate) fn estimated_bytes(key_count: usize, bits_per_key: u32) -> usize {
    if key_count == 0 || bits_per_key == 0 {
        return 0;
    }
    HASH_COUNT_BYTES + key_count.saturating_mul(bits_per_key as usize).max(FILTER_BITS_MIN as usize).div_ceil(8)
}

/// A decoded bloom filter, sharing the bytes of the mapped file.
#[derive(Debug, Clone)]
pub(crate) struct Bloom {
    /// Probes per key; 0 when there is no filter.
    hash_count: u32,
    /// The filter bits; empty when there is no filter.
    bits: Bytes,
}

impl Bloom {
    /// Decodes a bloom block whose CRC-32 the caller has verified.
    pub(crate) fn decode(block: Bytes) -> Result<Bloom, DecodeError> {
        if block.is_empty() {
            return Ok(Bloom { hash_count: 0, bits: Bytes::new() });
        }
        let hash_count = Reader::new(&block).u32()?;
        if hash_count == 0 || hash_count > HASH_COUNT_MAX {
            return Err(malformed("bloom hash count", 0));
        }
        let bits = sub_bytes(&block, HASH_COUNT_BYTES..block.len()).ok_or_else(|| malformed("bloom length", 0))?;
        if bits.is_empty() {
            return Err(malformed("bloom length", HASH_COUNT_BYTES));
        }
        Ok(Bloom { hash_count, bits })
    }

    /// # Returns
    /// False only when the key hashed to `h` was certainly not added.
    pub(crate) fn may_contain(&self, h: u64) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        let m = self.bits.len() as u64 * 8;
        for_each_probe(h, self.hash_count, m, |bit| {
            self.bits.get((bit / 8) as usize).is_none_or(|byte| byte & (1 << (bit % 8)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let keys: Vec<Vec<u8>> = (0..10_000u32).map(|i| format!("present/{i}").into_bytes()).collect();
        let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
        let block = build(&hashes, 10);
        assert_eq!(block.len(), estimated_bytes(keys.len(), 10));
        let bloom = Bloom::decode(Bytes::from(block)).expect("valid bloom");
        assert!(keys.iter().all(|k| bloom.may_contain(key_hash(k))));
        let absent = 100_000;
        let false_positives =
            (0..absent).filter(|i| bloom.may_contain(key_hash(format!("absent/{i}").as_bytes()))).count();
        // 10 bits per key and 7 probes give about 0.8 %.
        assert!(false_positives * 100 < absent * 2, "{false_positives} false positives of {absent}");
    }

    #[test]
    fn hash_is_stable() {
        // The hash is part of the format: these values must never change within format v1.
        assert_eq!(key_hash(b""), fmix64(HASH_SEED));
        let a = key_hash(b"candy");
        assert_eq!(a, key_hash(b"candy"));
        assert_ne!(a, key_hash(b"candz"));
        assert_ne!(key_hash(b"12345678"), key_hash(b"12345678\0"));
    }

    #[test]
    fn no_filter_admits_everything() {
        assert!(build(&[], 10).is_empty());
        assert!(build(&[1, 2], 0).is_empty());
        let bloom = Bloom::decode(Bytes::new()).expect("empty is valid");
        assert!(bloom.may_contain(key_hash(b"x")));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = SmallRng::seed_from_u64(0xB100);
        for _ in 0..5_000 {
            // A plausible hash count most of the time, so decoding reaches the filter bits.
            let mut b: Vec<u8> = rng.gen_range(0..40u32).to_le_bytes().to_vec();
            let len = rng.gen_range(0..24);
            b.extend((0..len).map(|_| rng.gen::<u8>()));
            b.truncate(rng.gen_range(0..b.len() + 1));
            if let Ok(bloom) = Bloom::decode(Bytes::from(b)) {
                let _ = bloom.may_contain(rng.gen());
            }
        }
        assert!(matches!(Bloom::decode(Bytes::from_static(&[7, 0, 0, 0])), Err(DecodeError::Malformed { .. })));
        assert!(matches!(Bloom::decode(Bytes::from_static(&[0, 0, 0, 0, 1])), Err(DecodeError::Malformed { .. })));
        assert!(matches!(Bloom::decode(Bytes::from_static(&[7, 0])), Err(DecodeError::Truncated(_))));
    }
}
