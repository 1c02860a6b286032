//! Lifecycle: a bucket's rules (checked as S3 checks them) and the worker that applies them:
//! expiring current objects, noncurrent versions and lone delete markers, and aborting
//! incomplete multipart uploads.
//!
//! Invariants:
//! - The worker deletes only what a rule names, and a current object only with a condition on
//!   the version it judged (a key written again in between is left alone).
//! - A "day" is `day` long (S3's is 24 h; a setting, so tests can run rules in seconds). Ages
//!   count from the version's write (current objects), from when a version stopped being current
//!   (noncurrent ones), and from initiation (uploads).
//! - Each sweep is bounded: at most `SWEEP_ENTRIES_MAX` entries are looked at per rule, and the
//!   next sweep goes on where work is left.
//! - A rule filtering on tags matches current objects carrying every one of its tags (their
//!   effective tags: the overlay record, else the put's).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use candybox_wire::client::{
    ClientError, Condition, KeyRange, ListOptions, TokioClient, VersionListOptions, Versioning,
};
use s3s::dto;
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};

use crate::buckets::{Bucket, Buckets, RESERVED_BOX};
use crate::ids::unix_ms;

/// S3's most rules in one configuration.
pub const RULES_MAX: usize = 1000;
/// Most entries one rule looks at in one sweep.
pub const SWEEP_ENTRIES_MAX: usize = 10_000;

/// One lifecycle rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Rule {
    /// Its id.
    pub id: Option<String>,
    /// `Enabled` (else it is kept but not applied).
    pub enabled: bool,
    /// Objects whose key starts with this.
    pub prefix: String,
    /// And carry these tags.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// And are larger than this.
    #[serde(default)]
    pub size_greater_than: Option<i64>,
    /// And smaller than this.
    #[serde(default)]
    pub size_less_than: Option<i64>,
    /// Expire current objects this many days after their write.
    #[serde(default)]
    pub expiration_days: Option<i32>,
    /// Expire current objects from this date (Unix ms, midnight UTC).
    #[serde(default)]
    pub expiration_date_ms: Option<u64>,
    /// Remove delete markers that are all a key has left.
    #[serde(default)]
    pub expired_object_delete_marker: bool,
    /// Remove versions this many days after they stopped being current.
    #[serde(default)]
    pub noncurrent_days: Option<i32>,
    /// Keep this many newest noncurrent versions whatever their age.
    #[serde(default)]
    pub newer_noncurrent_versions: Option<i32>,
    /// Abort uploads this many days after initiation.
    #[serde(default)]
    pub abort_incomplete_days: Option<i32>,
}

fn positive(days: Option<i32>, what: &str) -> S3Result<()> {
    match days {
        Some(d) if d <= 0 => Err(s3_error!(InvalidArgument, "'{what}' for {what} action must be a positive integer")),
        _ => Ok(()),
    }
}

/// The rules of an S3 configuration, checked.
///
/// # Errors
/// `MalformedXML` or `InvalidArgument`/`InvalidRequest` as S3 answers each mistake.
pub fn from_s3(c: &dto::BucketLifecycleConfiguration) -> S3Result<Vec<Rule>> {
    if c.rules.is_empty() || c.rules.len() > RULES_MAX {
        return Err(s3_error!(MalformedXML, "A lifecycle configuration holds 1 to 1000 rules"));
    }
    let mut out: Vec<Rule> = Vec::with_capacity(c.rules.len());
    for r in &c.rules {
        if let Some(id) = &r.id {
            if id.chars().count() > 255 {
                return Err(s3_error!(InvalidArgument, "ID length should not exceed allowed limit of 255"));
            }
            if out.iter().any(|o| o.id.as_ref() == Some(id)) {
                return Err(s3_error!(InvalidArgument, "Rule ID must be unique. Found same ID for more than one rule"));
            }
        }
        let enabled = match r.status.as_str() {
            dto::ExpirationStatus::ENABLED => true,
            dto::ExpirationStatus::DISABLED => false,
            _ => return Err(s3_error!(MalformedXML, "A rule's Status is Enabled or Disabled")),
        };
        let mut rule = Rule { id: r.id.clone(), enabled, ..Rule::default() };
        match (&r.prefix, &r.filter) {
            (Some(_), Some(_)) => return Err(s3_error!(MalformedXML, "A rule has a Prefix or a Filter, not both")),
            (Some(p), None) => rule.prefix = p.clone(),
            (None, Some(f)) => {
                let set = [
                    f.prefix.is_some(),
                    f.tag.is_some(),
                    f.and.is_some(),
                    f.object_size_greater_than.is_some(),
                    f.object_size_less_than.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if set > 1 {
                    return Err(s3_error!(MalformedXML, "A Filter holds one of Prefix, Tag, ObjectSize* or And"));
                }
                rule.prefix = f.prefix.clone().unwrap_or_default();
                if let Some(t) = &f.tag {
                    rule.tags.push((t.key.clone().unwrap_or_default(), t.value.clone().unwrap_or_default()));
                }
                rule.size_greater_than = f.object_size_greater_than;
                rule.size_less_than = f.object_size_less_than;
                if let Some(a) = &f.and {
                    rule.prefix = a.prefix.clone().unwrap_or_default();
                    for t in a.tags.iter().flatten() {
                        rule.tags.push((t.key.clone().unwrap_or_default(), t.value.clone().unwrap_or_default()));
                    }
                    rule.size_greater_than = a.object_size_greater_than;
                    rule.size_less_than = a.object_size_less_than;
                }
            }
            (None, None) => {}
        }
        if let Some(e) = &r.expiration {
            positive(e.days, "Days")?;
            if e.expired_object_delete_marker.is_some() && (e.days.is_some() || e.date.is_some()) {
                return Err(s3_error!(
                    MalformedXML,
                    "ExpiredObjectDeleteMarker cannot be specified with Days or Date in a Lifecycle Expiration Policy"
                ));
            }
            if e.days.is_some() && e.date.is_some() {
                return Err(s3_error!(MalformedXML, "An Expiration has Days or Date, not both"));
            }
            if let Some(d) = &e.date {
                let ms = unix_ms(d);
                if !ms.is_multiple_of(86_400_000) {
                    return Err(s3_error!(InvalidArgument, "'Date' must be at midnight GMT"));
                }
                rule.expiration_date_ms = Some(ms);
            }
            rule.expiration_days = e.days;
            rule.expired_object_delete_marker = e.expired_object_delete_marker.unwrap_or(false);
            if !rule.tags.is_empty() && rule.expired_object_delete_marker {
                return Err(s3_error!(
                    InvalidRequest,
                    "ExpiredObjectDeleteMarker cannot be specified with a tag filter"
                ));
            }
        }
        if let Some(n) = &r.noncurrent_version_expiration {
            positive(n.noncurrent_days, "NoncurrentDays")?;
            if n.noncurrent_days.is_none() {
                return Err(s3_error!(MalformedXML, "NoncurrentVersionExpiration needs NoncurrentDays"));
            }
            rule.noncurrent_days = n.noncurrent_days;
            rule.newer_noncurrent_versions = n.newer_noncurrent_versions;
        }
        if let Some(a) = &r.abort_incomplete_multipart_upload {
            positive(a.days_after_initiation, "DaysAfterInitiation")?;
            if !rule.tags.is_empty() {
                return Err(s3_error!(
                    InvalidRequest,
                    "Tag-based filter cannot be used with AbortIncompleteMultipartUpload action"
                ));
            }
            rule.abort_incomplete_days = a.days_after_initiation;
        }
        if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
            || r.noncurrent_version_transitions.as_ref().is_some_and(|t| !t.is_empty())
        {
            return Err(s3_error!(InvalidRequest, "Transitions are not supported: this store has one storage class"));
        }
        let acts = rule.expiration_days.is_some()
            || rule.expiration_date_ms.is_some()
            || rule.expired_object_delete_marker
            || rule.noncurrent_days.is_some()
            || rule.abort_incomplete_days.is_some();
        if !acts {
            return Err(s3_error!(InvalidRequest, "At least one action needs to be specified in a rule"));
        }
        out.push(rule);
    }
    Ok(out)
}

/// The S3 form of the rules.
pub fn to_s3(rules: &[Rule]) -> Vec<dto::LifecycleRule> {
    rules
        .iter()
        .map(|r| {
            let tag = |(k, v): &(String, String)| dto::Tag { key: Some(k.clone()), value: Some(v.clone()) };
            let simple = r.tags.is_empty() && r.size_greater_than.is_none() && r.size_less_than.is_none();
            let filter = if simple {
                dto::LifecycleRuleFilter { prefix: Some(r.prefix.clone()), ..Default::default() }
            } else {
                dto::LifecycleRuleFilter {
                    and: Some(dto::LifecycleRuleAndOperator {
                        prefix: Some(r.prefix.clone()),
                        tags: (!r.tags.is_empty()).then(|| r.tags.iter().map(tag).collect()),
                        object_size_greater_than: r.size_greater_than,
                        object_size_less_than: r.size_less_than,
                    }),
                    ..Default::default()
                }
            };
            let expiration = (r.expiration_days.is_some()
                || r.expiration_date_ms.is_some()
                || r.expired_object_delete_marker)
                .then(|| dto::LifecycleExpiration {
                    days: r.expiration_days,
                    date: r.expiration_date_ms.map(crate::ids::timestamp),
                    expired_object_delete_marker: r.expired_object_delete_marker.then_some(true),
                });
            dto::LifecycleRule {
                id: r.id.clone(),
                status: dto::ExpirationStatus::from_static(if r.enabled {
                    dto::ExpirationStatus::ENABLED
                } else {
                    dto::ExpirationStatus::DISABLED
                }),
                filter: Some(filter),
                expiration,
                noncurrent_version_expiration: r.noncurrent_days.map(|d| dto::NoncurrentVersionExpiration {
                    noncurrent_days: Some(d),
                    newer_noncurrent_versions: r.newer_noncurrent_versions,
                }),
                abort_incomplete_multipart_upload: r
                    .abort_incomplete_days
                    .map(|d| dto::AbortIncompleteMultipartUpload { days_after_initiation: Some(d) }),
                prefix: None,
                transitions: None,
                noncurrent_version_transitions: None,
            }
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether an object of `size` stored bytes and metadata `entries` passes the rule's size filters,
/// by the size S3 shows (an encrypted object's plaintext size).
fn size_ok(rule: &Rule, size: u64, entries: &[(String, String)]) -> bool {
    let size = crate::sse::Layout::of_entries(entries).map_or(size, |l| l.size());
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    rule.size_greater_than.is_none_or(|g| size > g) && rule.size_less_than.is_none_or(|l| size < l)
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Swept {
    /// Current objects expired.
    pub expired: u64,
    /// Noncurrent versions removed.
    pub noncurrent: u64,
    /// Lone delete markers removed.
    pub markers: u64,
    /// Uploads aborted.
    pub uploads: u64,
}

/// Applies `bucket`'s rules once.
async fn sweep_bucket(client: &TokioClient, bucket: &Bucket, day_ms: u64, out: &mut Swept) -> Result<(), ClientError> {
    let now = now_ms();
    let box_name = &bucket.record.box_name;
    for rule in bucket.record.lifecycle.iter().filter(|r| r.enabled) {
        let age = |days: i32| u64::try_from(days).unwrap_or(0).saturating_mul(day_ms);
        if rule.expiration_days.is_some() || rule.expiration_date_ms.is_some() {
            let options = ListOptions {
                prefix: (!rule.prefix.is_empty()).then(|| rule.prefix.as_bytes().to_vec()),
                limit: u32::try_from(SWEEP_ENTRIES_MAX).unwrap_or(u32::MAX),
                // Tags and encrypted sizes are in the metadata.
                with_meta: !rule.tags.is_empty() || rule.size_greater_than.is_some() || rule.size_less_than.is_some(),
                ..ListOptions::default()
            };
            let page = client.list(box_name, &options).await?;
            for e in page.entries.iter().filter(|e| size_ok(rule, e.size, &e.user_meta)) {
                if !rule.tags.is_empty() {
                    let Ok((tags, _)) = crate::tags::effective(client, box_name, &e.key, e.hlc, &e.user_meta).await
                    else {
                        continue;
                    };
                    if !rule.tags.iter().all(|t| tags.contains(t)) {
                        continue;
                    }
                }
                let written = if e.hlc.physical_ms == 0 { e.created_ms } else { e.hlc.physical_ms };
                let due = rule.expiration_days.is_some_and(|d| now.saturating_sub(written) >= age(d))
                    || rule.expiration_date_ms.is_some_and(|d| now >= d);
                if due {
                    match client.delete_marked(box_name, &e.key, Some(&Condition::IfVersion(e.hlc))).await {
                        Ok(_) => out.expired += 1,
                        Err(ClientError::PreconditionFailed { .. } | ClientError::NotFound { .. }) => {}
                        Err(err) => return Err(err),
                    }
                }
            }
        }
        // Versions and uploads are not filtered by tag: a tag-filtered rule acts on current
        // objects only (S3 refuses ExpiredObjectDeleteMarker and uploads with tag filters).
        if rule.tags.is_empty()
            && bucket.versioning != Versioning::Off
            && (rule.noncurrent_days.is_some() || rule.expired_object_delete_marker)
        {
            let options = VersionListOptions {
                prefix: (!rule.prefix.is_empty()).then(|| rule.prefix.as_bytes().to_vec()),
                limit: u32::try_from(SWEEP_ENTRIES_MAX).unwrap_or(u32::MAX),
                // Locked versions are skipped: their metadata holds the lock.
                with_meta: true,
                ..VersionListOptions::default()
            };
            let page = client.list_versions(box_name, &options).await?;
            let mut i = 0;
            while i < page.entries.len() {
                let key = &page.entries[i].key;
                let end = page.entries[i..].iter().position(|e| &e.key != key).map_or(page.entries.len(), |n| i + n);
                let versions = &page.entries[i..end];
                if let Some(days) = rule.noncurrent_days {
                    let keep = usize::try_from(rule.newer_noncurrent_versions.unwrap_or(0).max(0)).unwrap_or(0);
                    for (n, pair) in versions.windows(2).enumerate() {
                        let (newer, v) = (&pair[0], &pair[1]);
                        if v.is_latest || n < keep || !size_ok(rule, v.size, &v.user_meta) {
                            continue;
                        }
                        if crate::objlock::Lock::of(&v.user_meta).check_delete(now, false).is_err() {
                            continue;
                        }
                        if now.saturating_sub(newer.modified_ms) >= age(days) {
                            match client.delete_version(box_name, &v.key, v.version).await {
                                Ok(_) => out.noncurrent += 1,
                                Err(ClientError::NotFound { .. }) => {}
                                Err(err) => return Err(err),
                            }
                        }
                    }
                }
                if rule.expired_object_delete_marker {
                    if let [only] = versions {
                        if only.delete_marker && only.is_latest {
                            match client.delete_version(box_name, &only.key, only.version).await {
                                Ok(_) => out.markers += 1,
                                Err(ClientError::NotFound { .. }) => {}
                                Err(err) => return Err(err),
                            }
                        }
                    }
                }
                i = end;
            }
        }
        if let Some(days) = rule.abort_incomplete_days.filter(|_| rule.tags.is_empty()) {
            for u in client.list_uploads(box_name).await? {
                if !u.key.starts_with(rule.prefix.as_bytes()) || now.saturating_sub(u.created_ms) < age(days) {
                    continue;
                }
                match client.abort_upload(box_name, &u.key, u.upload_id).await {
                    Ok(()) => out.uploads += 1,
                    Err(ClientError::NotFound { .. }) => {}
                    Err(err) => return Err(err),
                }
                let key = String::from_utf8_lossy(&u.key);
                let prefix = crate::multipart::records_prefix(box_name, u.upload_id, &key);
                let _ = client.delete_range(RESERVED_BOX, &KeyRange::Prefix(prefix.into_bytes())).await;
            }
        }
    }
    Ok(())
}

/// Applies every bucket's rules once.
pub async fn sweep(client: &TokioClient, buckets: &Buckets, day: Duration) -> Swept {
    let mut out = Swept::default();
    let day_ms = u64::try_from(day.as_millis()).unwrap_or(u64::MAX).max(1);
    let Ok(list) = buckets.list().await else { return out };
    for (name, _, _) in list {
        let Ok(bucket) = buckets.resolve(&name).await else { continue };
        if bucket.record.lifecycle.is_empty() {
            continue;
        }
        if let Err(e) = sweep_bucket(client, &bucket, day_ms, &mut out).await {
            tracing::warn!(bucket = %name, error = %e, "lifecycle sweep stopped early; the next one goes on");
        }
    }
    out
}

/// Runs [`sweep`] every `interval` for as long as the process lives.
pub async fn worker(client: TokioClient, buckets: Arc<Buckets>, day: Duration, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let s = sweep(&client, &buckets, day).await;
        if s.expired + s.noncurrent + s.markers + s.uploads > 0 {
            tracing::info!(
                expired = s.expired,
                noncurrent = s.noncurrent,
                markers = s.markers,
                uploads = s.uploads,
                "lifecycle sweep"
            );
        }
    }
}
