//! Object lock: a bucket's default retention, and each version's retention (mode and
//! retain-until date) and legal hold, kept in the version's user metadata.
//!
//! Invariants:
//! - A version under legal hold, or retained in COMPLIANCE mode until a future date, cannot be
//!   deleted by anyone; one retained in GOVERNANCE mode only with
//!   `x-amz-bypass-governance-retention: true` by a caller holding s3:BypassGovernanceRetention
//!   (the bucket owner does).
//! - Deleting a key without a version id writes a delete marker and is always allowed (the
//!   locked versions stay), as in S3.
//! - A COMPLIANCE retention can only be extended; a GOVERNANCE one shortened or removed only
//!   with the bypass.
//! - Retention periods count real days (86 400 s), not lifecycle days.
//! - A put's lock is committed with the version (its metadata, in the same log record). Later
//!   changes (PutObjectRetention, PutObjectLegalHold) are `lock` overlay records (see
//!   `overlay`), which win over the version's metadata: S3 does not make a new version for them,
//!   and the node would (its metadata rewrite of a versioned Box's key is a new version).

use candybox_wire::client::{Hlc, TokioClient};
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};

use crate::overlay;

/// User-metadata entry: the retention mode (`GOVERNANCE` or `COMPLIANCE`).
pub const MODE: &str = "lock-mode";
/// User-metadata entry: retain until (Unix ms).
pub const UNTIL: &str = "lock-until";
/// User-metadata entry: legal hold (`ON`).
pub const HOLD: &str = "legal-hold";

/// S3's retention modes.
pub const GOVERNANCE: &str = "GOVERNANCE";
/// See [`GOVERNANCE`].
pub const COMPLIANCE: &str = "COMPLIANCE";

const DAY_MS: u64 = 86_400_000;

/// A bucket's default retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub mode: String,
    /// Days, or
    pub days: Option<i32>,
    /// years.
    pub years: Option<i32>,
}

impl DefaultRetention {
    /// A checked default retention.
    ///
    /// # Errors
    /// `MalformedXML` unless exactly one of days and years is given, positive, with a known mode.
    pub fn new(mode: Option<&str>, days: Option<i32>, years: Option<i32>) -> S3Result<DefaultRetention> {
        let mode = match mode {
            Some(m @ (GOVERNANCE | COMPLIANCE)) => m.to_owned(),
            _ => return Err(s3_error!(MalformedXML, "A default retention's Mode is GOVERNANCE or COMPLIANCE")),
        };
        match (days, years) {
            (Some(d), None) if d > 0 => {}
            (None, Some(y)) if y > 0 => {}
            (Some(_), Some(_)) => {
                return Err(s3_error!(MalformedXML, "A default retention has Days or Years, not both"))
            }
            _ => return Err(s3_error!(InvalidArgument, "Default retention period must be a positive integer value")),
        }
        Ok(DefaultRetention { mode, days, years })
    }

    fn until_ms(&self, now_ms: u64) -> u64 {
        let days = match (self.days, self.years) {
            (Some(d), _) => u64::try_from(d).unwrap_or(0),
            (None, Some(y)) => u64::try_from(y).unwrap_or(0) * 365,
            _ => 0,
        };
        now_ms.saturating_add(days.saturating_mul(DAY_MS))
    }
}

/// A version's lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// Retention mode.
    pub mode: Option<String>,
    /// Retain until (Unix ms).
    pub until_ms: Option<u64>,
    /// Legal hold on.
    pub hold: bool,
}

impl Lock {
    /// The lock in a version's user metadata.
    pub fn of(entries: &[(String, String)]) -> Lock {
        let get = |k: &str| entries.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        Lock {
            mode: get(MODE).map(str::to_owned),
            until_ms: get(UNTIL).and_then(|v| v.parse().ok()),
            hold: get(HOLD) == Some("ON"),
        }
    }

    /// The user-metadata entries of this lock.
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let (Some(m), Some(u)) = (&self.mode, self.until_ms) {
            out.push((MODE.to_owned(), m.clone()));
            out.push((UNTIL.to_owned(), u.to_string()));
        }
        if self.hold {
            out.push((HOLD.to_owned(), "ON".to_owned()));
        }
        out
    }

    /// Whether this version may be deleted now (`bypass`: the request asks to bypass
    /// governance and may).
    ///
    /// # Errors
    /// `AccessDenied` when it is protected.
    pub fn check_delete(&self, now_ms: u64, bypass: bool) -> S3Result<()> {
        if self.hold {
            return Err(s3_error!(AccessDenied, "Access Denied because object protected by object lock (legal hold)"));
        }
        if self.until_ms.is_some_and(|u| u > now_ms) {
            match self.mode.as_deref() {
                Some(GOVERNANCE) if bypass => {}
                _ => return Err(s3_error!(AccessDenied, "Access Denied because object protected by object lock")),
            }
        }
        Ok(())
    }

    /// Whether `next` may replace this retention now.
    ///
    /// # Errors
    /// `AccessDenied` for a COMPLIANCE retention shortened or changed, or a GOVERNANCE one
    /// shortened without the bypass.
    pub fn check_retention_change(&self, next: &Lock, now_ms: u64, bypass: bool) -> S3Result<()> {
        let active = self.until_ms.is_some_and(|u| u > now_ms);
        if !active {
            return Ok(());
        }
        let shorter = next.until_ms.unwrap_or(0) < self.until_ms.unwrap_or(0);
        match self.mode.as_deref() {
            Some(COMPLIANCE) if shorter || next.mode.as_deref() != Some(COMPLIANCE) => {
                Err(s3_error!(AccessDenied, "Access Denied because object protected by object lock (COMPLIANCE)"))
            }
            Some(GOVERNANCE) if (shorter || next.mode.as_deref() != Some(GOVERNANCE)) && !bypass => {
                Err(s3_error!(AccessDenied, "Access Denied because object protected by object lock (GOVERNANCE)"))
            }
            _ => Ok(()),
        }
    }
}

/// The lock of a version: its record when there is one (and the record's version, for a
/// conditional rewrite), else what its metadata `entries` say.
///
/// # Errors
/// The node's error reading the record.
pub async fn effective(
    client: &TokioClient,
    box_name: &str,
    key: &[u8],
    version: Hlc,
    entries: &[(String, String)],
) -> S3Result<(Lock, Option<Hlc>)> {
    let (entries, record) = overlay::effective(client, "lock", box_name, key, version, entries).await?;
    Ok((Lock::of(&entries), record))
}

/// Writes `lock` as version `version`'s record, if the record is still `read` (`None`: absent).
///
/// # Errors
/// `OperationAborted` when another request changed the lock in between; the node's error.
pub async fn write(
    client: &TokioClient,
    box_name: &str,
    key: &[u8],
    version: Hlc,
    read: Option<Hlc>,
    lock: &Lock,
) -> S3Result<()> {
    overlay::write(client, "lock", box_name, key, version, read, lock.entries()).await
}

/// The lock a put sets: from its headers, else the bucket's default retention.
///
/// # Errors
/// `InvalidRequest` for lock headers on a bucket without object lock; `InvalidArgument` for a
/// mode without a date (or the reverse), an unknown mode, or a date in the past.
pub fn for_put(
    lock_enabled: bool,
    default: Option<&DefaultRetention>,
    mode: Option<&str>,
    until_ms: Option<u64>,
    hold: Option<&str>,
    now_ms: u64,
) -> S3Result<Lock> {
    let asked = mode.is_some() || until_ms.is_some() || hold.is_some();
    if asked && !lock_enabled {
        return Err(s3_error!(InvalidRequest, "Bucket is missing Object Lock Configuration"));
    }
    let hold = match hold {
        None | Some("OFF") => false,
        Some("ON") => true,
        Some(other) => return Err(s3_error!(InvalidArgument, "Unknown legal hold status `{other}`")),
    };
    let (mode, until_ms) = match (mode, until_ms) {
        (Some(m @ (GOVERNANCE | COMPLIANCE)), Some(u)) => {
            if u <= now_ms {
                return Err(s3_error!(InvalidArgument, "The retain until date must be in the future!"));
            }
            (Some(m.to_owned()), Some(u))
        }
        (Some(_), Some(_)) => return Err(s3_error!(InvalidArgument, "Unknown wormMode directive.")),
        (Some(_), None) | (None, Some(_)) => {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
            ))
        }
        (None, None) => match default {
            Some(d) if lock_enabled => (Some(d.mode.clone()), Some(d.until_ms(now_ms))),
            _ => (None, None),
        },
    };
    Ok(Lock { mode, until_ms, hold })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn locked_versions_cannot_be_deleted() {
        let compliance = Lock { mode: Some(COMPLIANCE.into()), until_ms: Some(NOW + 1000), hold: false };
        assert!(compliance.check_delete(NOW, true).is_err());
        assert!(compliance.check_delete(NOW + 2000, false).is_ok());
        let governance = Lock { mode: Some(GOVERNANCE.into()), until_ms: Some(NOW + 1000), hold: false };
        assert!(governance.check_delete(NOW, false).is_err());
        assert!(governance.check_delete(NOW, true).is_ok());
        let hold = Lock { hold: true, ..Lock::default() };
        assert!(hold.check_delete(NOW, true).is_err());
        assert_eq!(Lock::of(&compliance.entries()), compliance);
    }

    #[test]
    fn compliance_only_extends() {
        let c = Lock { mode: Some(COMPLIANCE.into()), until_ms: Some(NOW + 1000), hold: false };
        let longer = Lock { until_ms: Some(NOW + 5000), ..c.clone() };
        let shorter = Lock { until_ms: Some(NOW + 10), ..c.clone() };
        assert!(c.check_retention_change(&longer, NOW, false).is_ok());
        assert!(c.check_retention_change(&shorter, NOW, true).is_err());
        let g = Lock { mode: Some(GOVERNANCE.into()), ..c.clone() };
        let g_shorter = Lock { mode: Some(GOVERNANCE.into()), ..shorter };
        assert!(g.check_retention_change(&g_shorter, NOW, false).is_err());
        assert!(g.check_retention_change(&g_shorter, NOW, true).is_ok());
    }

    #[test]
    fn puts_take_headers_or_the_default() {
        let d = DefaultRetention::new(Some(GOVERNANCE), Some(2), None).expect("default");
        let l = for_put(true, Some(&d), None, None, None, NOW).expect("lock");
        assert_eq!(l.until_ms, Some(NOW + 2 * DAY_MS));
        assert!(for_put(false, None, Some(GOVERNANCE), Some(NOW + 1), None, NOW).is_err());
        assert!(for_put(true, None, Some(GOVERNANCE), None, None, NOW).is_err());
        assert!(for_put(true, None, Some(COMPLIANCE), Some(NOW - 1), None, NOW).is_err());
        assert!(DefaultRetention::new(Some("FOREVER"), Some(1), None).is_err());
        assert!(DefaultRetention::new(Some(GOVERNANCE), Some(1), Some(1)).is_err());
        assert!(DefaultRetention::new(Some(GOVERNANCE), Some(0), None).is_err());
    }
}
