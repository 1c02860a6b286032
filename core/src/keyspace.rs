//! The two key spaces of a versioned Box's partition (docs/versioning.md): user keys as given
//! (the current state of each key), and the version space, every version of every key under
//! `0xFF ‖ shift(key) ‖ 0x00 ‖ inverted version id`.
//!
//! Invariants:
//! - No user key is in the version space: keys are UTF-8, which never holds the byte 0xFF, and
//!   every version key starts with it; so every user key sorts before [`USER_SPACE_END`].
//! - Version keys sort by user key, then newest version first: `shift` adds 1 to every byte
//!   (UTF-8 bytes are at most 0xF4), so the 0x00 terminator sorts before any longer key's next
//!   byte, and the id is stored inverted, big-endian.
//! - A version key is [`VERSION_KEY_OVERHEAD_BYTES`] longer than its user key.

use crate::{hlc::Hlc, limits::VERSION_KEY_OVERHEAD_BYTES};

/// The first byte of every version key: no user key reaches it.
pub const VERSION_SPACE: u8 = 0xFF;
/// The exclusive end of the user space: listings, delete-range and prefix scans of user keys stop
/// here.
pub const USER_SPACE_END: &[u8] = &[VERSION_SPACE];

/// A Box's versioning state, defined once with the client's (`candybox-types`).
pub use candybox_types::Versioning;

/// True for a key of the version space.
pub fn is_version_key(key: &[u8]) -> bool {
    key.first() == Some(&VERSION_SPACE)
}

/// The start of `user_key`'s versions: every version key of it starts with these bytes.
pub fn versions_prefix(user_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(user_key.len() + VERSION_KEY_OVERHEAD_BYTES);
    k.push(VERSION_SPACE);
    // UTF-8 bytes are at most 0xF4: the shifted byte of a key never wraps, and is never 0x00.
    // A marker may hold any byte (a client continuing past every key with some prefix sends
    // `prefix ‖ 0xFF`): saturating keeps its order, where wrapping made 0xFF the smallest byte
    // and listed from the prefix's start again.
    k.extend(user_key.iter().map(|b| b.saturating_add(1)));
    k.push(0x00);
    k
}

/// The version key of version `id` of `user_key`.
#[expect(clippy::big_endian_bytes, reason = "big-endian, so that byte order is numeric order")]
pub fn version_key(user_key: &[u8], id: Hlc) -> Vec<u8> {
    let mut k = versions_prefix(user_key);
    k.extend_from_slice(&(!id.physical_ms).to_be_bytes());
    k.extend_from_slice(&(!id.logical).to_be_bytes());
    k.extend_from_slice(&(!id.node).to_be_bytes());
    k
}

/// The user key and version id of a version key; `None` for any other key.
#[expect(clippy::big_endian_bytes, reason = "written big-endian by version_key")]
pub fn decode_version_key(key: &[u8]) -> Option<(Vec<u8>, Hlc)> {
    let rest = key.strip_prefix(&[VERSION_SPACE])?;
    let split = rest.len().checked_sub(VERSION_KEY_OVERHEAD_BYTES - 1)?;
    let (shifted, tail) = rest.split_at(split);
    let (terminator, id) = tail.split_first()?;
    if *terminator != 0 || shifted.contains(&0) {
        return None;
    }
    let physical_ms = u64::from_be_bytes(id.get(..8)?.try_into().ok()?);
    let logical = u32::from_be_bytes(id.get(8..12)?.try_into().ok()?);
    let node = u16::from_be_bytes(id.get(12..14)?.try_into().ok()?);
    let user = shifted.iter().map(|b| b.wrapping_sub(1)).collect();
    Some((user, Hlc { physical_ms: !physical_ms, logical: !logical, node: !node }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn h(ms: u64, l: u32) -> Hlc {
        Hlc { physical_ms: ms, logical: l, node: 1 }
    }

    #[test]
    fn a_marker_past_a_prefix_sorts_after_every_version_under_it() {
        // A marker `d/ ‖ 0xFF` wrapped to `d/ ‖ 0x00`, before every key under `d/`: a
        // list-versions continued from it started over (found through the S3 gateway's
        // delimiter listing, which looped on the same common prefix).
        let marker = versions_prefix(b"d/\xff");
        for key in [&b"d/"[..], b"d/a", "d/\u{10ffff}".as_bytes()] {
            assert!(version_key(key, h(5, 0)) < marker, "{key:?}");
        }
        assert!(marker < version_key(b"e", h(5, 0)));
    }

    #[test]
    fn version_keys_sort_by_key_then_newest_first_and_decode_back() {
        let keys: [&[u8]; 5] = [b"a", b"a\x00b", b"a/", b"ab", "\u{10ffff}".as_bytes()];
        let mut all = Vec::new();
        for k in keys {
            for v in [h(5, 0), h(5, 1), h(9, 0), Hlc::ZERO] {
                all.push((version_key(k, v), k.to_vec(), v));
            }
        }
        let mut sorted = all.clone();
        sorted.sort_by(|x, y| x.0.cmp(&y.0));
        let mut want = all.clone();
        want.sort_by(|x, y| x.1.cmp(&y.1).then(y.2.cmp(&x.2)));
        assert_eq!(
            sorted.iter().map(|x| (&x.1, x.2)).collect::<Vec<_>>(),
            want.iter().map(|x| (&x.1, x.2)).collect::<Vec<_>>()
        );
        for (vk, k, v) in &all {
            assert!(is_version_key(vk) && vk.as_slice() > USER_SPACE_END && vk.starts_with(&versions_prefix(k)));
            assert_eq!(vk.len(), k.len() + VERSION_KEY_OVERHEAD_BYTES);
            assert_eq!(decode_version_key(vk), Some((k.clone(), *v)));
        }
        assert_eq!(decode_version_key(b"user-key"), None);
        assert_eq!(decode_version_key(&[VERSION_SPACE, 1, 2]), None);
    }

    #[test]
    fn every_utf8_key_sorts_before_the_version_space() {
        for k in ["a", "zzz", "\u{7ff}", "\u{ffff}", "\u{10ffff}\u{10ffff}"] {
            assert!(k.as_bytes() < USER_SPACE_END, "{k:?}");
            assert!(!is_version_key(k.as_bytes()));
        }
    }
}
