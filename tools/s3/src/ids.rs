//! The S3 spellings of the node's values: version ids, ETags, times.
//!
//! Invariants:
//! - A version id is 24 lowercase hex digits (the HLC's milliseconds, counter and node, fixed
//!   width), so it sorts as the HLC does; the null version is S3's `null`. `parse_version_id`
//!   reads back exactly what `version_id` writes and refuses anything else.

use candybox_wire::client::Hlc;

/// S3's version id of `hlc` (`null` for the null version).
pub fn version_id(hlc: Hlc) -> String {
    if hlc == Hlc::ZERO {
        return "null".to_owned();
    }
    format!("{:012x}{:08x}{:04x}", hlc.physical_ms, hlc.logical, hlc.node)
}

/// The HLC of an S3 version id, `None` when it is not one this gateway wrote.
pub fn parse_version_id(s: &str) -> Option<Hlc> {
    if s == "null" {
        return Some(Hlc::ZERO);
    }
    if s.len() != 24 || !s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    let physical_ms = u64::from_str_radix(s.get(..12)?, 16).ok()?;
    let logical = u32::from_str_radix(s.get(12..20)?, 16).ok()?;
    let node = u16::from_str_radix(s.get(20..)?, 16).ok()?;
    Some(Hlc { physical_ms, logical, node })
}

/// A time in Unix milliseconds as s3s's timestamp.
pub fn timestamp(ms: u64) -> s3s::dto::Timestamp {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    s3s::dto::Timestamp::from(t)
}

/// Unix milliseconds of an s3s timestamp (0 before the epoch).
pub fn unix_ms(t: &s3s::dto::Timestamp) -> u64 {
    let t: time::OffsetDateTime = t.clone().into();
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_read_back_and_sort_as_stamps() {
        let a = Hlc { physical_ms: 1_700_000_000_000, logical: 3, node: 1 };
        let b = Hlc { physical_ms: 1_700_000_000_000, logical: 4, node: 0 };
        assert_eq!(parse_version_id(&version_id(a)), Some(a));
        assert_eq!(parse_version_id(&version_id(Hlc::ZERO)), Some(Hlc::ZERO));
        assert!(version_id(a) < version_id(b));
        assert_eq!(version_id(a).len(), 24);
        for bad in ["", "nul", "0000000000000000000000zz", "0000000000000000000000AA", "00000000000000000000000000"] {
            assert_eq!(parse_version_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_round_trip_to_the_millisecond() {
        let ms = 1_700_000_123_456;
        assert_eq!(unix_ms(&timestamp(ms)), ms);
    }
}
