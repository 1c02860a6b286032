//! Domain identifiers and validation: Box names, CandyKeys, Syrup ids, partitions.

use crate::{error::Error, limits};

/// A Syrup id, unique across the cluster: the node id in the high 16 bits, then a 48-bit
/// sequence (milliseconds since 2020-01-01 shifted left by 7, plus a counter; it lasts until
/// 2089), so ids from one node sort by creation time. Uniqueness within a node is enforced by
/// creating the file exclusively; a clash bumps the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyrupId(pub u64);

impl SyrupId {
    /// The node that created the Syrup.
    pub fn node(self) -> u16 {
        (self.0 >> 48) as u16
    }

    /// The smallest id `node` may create at `wall_ms`.
    pub fn first_at(node: u16, wall_ms: u64) -> SyrupId {
        let seq = (wall_ms.saturating_sub(SYRUP_ID_EPOCH_MS) << 7) & ((1u64 << 48) - 1);
        SyrupId((u64::from(node) << 48) | seq)
    }

    /// The file name of this Syrup in the node's Syrup directory.
    pub fn file_name(self) -> String {
        format!("{:016x}.syrup", self.0)
    }

    /// Parses a Syrup file name back to its id.
    pub fn from_file_name(name: &str) -> Option<SyrupId> {
        let hex = name.strip_suffix(".syrup")?;
        if hex.len() != 16 {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(SyrupId)
    }
}

impl std::fmt::Display for SyrupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The epoch of Syrup id sequences: 2020-01-01T00:00:00Z in Unix milliseconds.
pub const SYRUP_ID_EPOCH_MS: u64 = 1_577_836_800_000;

/// A Box's unique incarnation id, assigned when the Box is created. Syrup headers carry it so a
/// zero-copy put can prove a SegmentRef lies in a Syrup of the same Box, even if a Box of the same
/// name existed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoxUid(pub u64);

/// Checks a Box name: 3–63 characters of `[a-z0-9-]`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the field `box`.
pub fn validate_box_name(name: &str) -> Result<(), Error> {
    if name.len() < limits::BOX_NAME_BYTES_MIN || name.len() > limits::BOX_NAME_BYTES_MAX {
        return Err(Error::invalid("box", format!("length {} is outside 3..=63", name.len())));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(Error::invalid("box", format!("character {c:?} is not in [a-z0-9-]")));
    }
    Ok(())
}

/// Checks a CandyKey: non-empty UTF-8 of at most 1 KiB.
///
/// # Errors
/// [`Error::InvalidArgument`] or [`Error::LimitExceeded`] naming the key.
pub fn validate_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::invalid("key", "empty"));
    }
    if key.len() > limits::KEY_BYTES_MAX {
        return Err(Error::LimitExceeded {
            limit: "key length",
            value: key.len() as u64,
            max: limits::KEY_BYTES_MAX as u64,
        });
    }
    if std::str::from_utf8(key).is_err() {
        return Err(Error::invalid("key", "not UTF-8"));
    }
    Ok(())
}

/// The partition of a key: CRC-32 of its bytes modulo the Box's partition count.
pub fn partition_for_key(key: &[u8], partition_count: u16) -> u16 {
    assert!(partition_count > 0, "a box has at least one partition");
    (crate::codec::crc32(&[key]) % u32::from(partition_count)) as u16
}

/// The smallest key greater than every key that starts with `prefix`, or `None` if there is none
/// (the prefix is all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syrup_file_names_round_trip() {
        let id = SyrupId::first_at(3, 1_700_000_000_000);
        assert_eq!(id.node(), 3);
        assert_eq!(SyrupId::from_file_name(&id.file_name()), Some(id));
        assert_eq!(SyrupId::from_file_name("x.syrup"), None);
    }

    #[test]
    fn box_names_and_keys() {
        assert!(validate_box_name("photos-2").is_ok());
        assert!(validate_box_name("ab").is_err());
        assert!(validate_box_name("Photos").is_err());
        assert!(validate_key(b"").is_err());
        assert!(validate_key(&[b'a'; 1025]).is_err());
        assert!(validate_key(&[0xff]).is_err());
        assert!(validate_key("ключ".as_bytes()).is_ok());
    }

    #[test]
    fn prefix_end_is_the_successor() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn partitions_are_in_range() {
        for k in 0..100u32 {
            assert!(partition_for_key(&k.to_le_bytes(), 8) < 8);
        }
    }
}

/// A range tombstone: deletes every key in `[start, end)` whose version is older than `hlc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeTombstone {
    /// First key deleted.
    pub start: Vec<u8>,
    /// First key not deleted; empty means "to the end of the key space".
    pub end: Vec<u8>,
    /// Versions stamped before this are deleted.
    pub hlc: crate::hlc::Hlc,
}

impl RangeTombstone {
    /// True when the tombstone covers `key`.
    pub fn covers_key(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }

    /// True when the tombstone deletes the version of `key` stamped `hlc`.
    pub fn deletes(&self, key: &[u8], hlc: crate::hlc::Hlc) -> bool {
        hlc < self.hlc && self.covers_key(key)
    }
}
