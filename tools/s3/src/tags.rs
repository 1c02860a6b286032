//! Object tags: set by a put's `x-amz-tagging` header (committed with the version, in its
//! metadata entry `tags`), changed later by PutObjectTagging/DeleteObjectTagging as `tags` overlay
//! records (a change does not make a new version, as in S3).
//!
//! Invariants:
//! - At most 10 tags per object, keys of 1 to 128 characters, values of at most 256, no key
//!   twice, no `aws:` prefix (S3's limits; `InvalidTag` otherwise).

use candybox_wire::client::{Hlc, TokioClient};
use s3s::dto::Tag;
use s3s::{s3_error, S3Result};

use crate::overlay;

/// S3's most tags on one object.
pub const OBJECT_TAGS_MAX: usize = 10;
/// The metadata entry holding a put's tags (JSON pairs).
pub const ENTRY: &str = "tags";

/// Tags as key-value pairs.
pub type Tags = Vec<(String, String)>;

/// Checks `tags` against S3's limits, at most `max` of them.
///
/// # Errors
/// `InvalidTag` naming the broken rule.
pub fn check(tags: &[(String, String)], max: usize) -> S3Result<()> {
    if tags.len() > max {
        return Err(s3_error!(InvalidTag, "Object tags cannot be greater than {max}"));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(s3_error!(InvalidTag, "A tag's key has 1 to 128 characters and its value at most 256"));
        }
        if k.starts_with("aws:") {
            return Err(s3_error!(InvalidTag, "Your TagKey cannot be prefixed with aws:"));
        }
        if tags[..i].iter().any(|(x, _)| x == k) {
            return Err(s3_error!(InvalidTag, "Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(())
}

/// The tags of an `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded).
///
/// # Errors
/// `InvalidTag` as [`check`].
pub fn from_header(h: &str) -> S3Result<Tags> {
    let tags: Tags = h
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (crate::gateway::query_decode(k), crate::gateway::query_decode(v))
        })
        .collect();
    check(&tags, OBJECT_TAGS_MAX)?;
    Ok(tags)
}

/// The tags of an S3 tag set.
///
/// # Errors
/// `InvalidTag` as [`check`].
pub fn from_set(set: &[Tag], max: usize) -> S3Result<Tags> {
    let mut tags = Vec::with_capacity(set.len());
    for t in set {
        let (Some(k), Some(v)) = (&t.key, &t.value) else {
            return Err(s3_error!(InvalidTag, "A tag needs a key and a value"));
        };
        tags.push((k.clone(), v.clone()));
    }
    check(&tags, max)?;
    Ok(tags)
}

/// The S3 tag set of `tags`.
pub fn to_set(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag { key: Some(k.clone()), value: Some(v.clone()) }).collect()
}

/// The metadata entry of a put's tags (none when there are none).
pub fn entry(tags: &[(String, String)]) -> Option<(String, String)> {
    (!tags.is_empty()).then(|| (ENTRY.to_owned(), serde_json::to_string(tags).unwrap_or_default()))
}

fn of_entries(entries: &[(String, String)]) -> Tags {
    entries.iter().find(|(k, _)| k == ENTRY).and_then(|(_, v)| serde_json::from_str(v).ok()).unwrap_or_default()
}

/// The tags of a version (its overlay record, else its put's) and the record's version.
///
/// # Errors
/// The node's error reading the record.
pub async fn effective(
    client: &TokioClient,
    box_name: &str,
    key: &[u8],
    version: Hlc,
    entries: &[(String, String)],
) -> S3Result<(Tags, Option<Hlc>)> {
    let (entries, record) = overlay::effective(client, ENTRY, box_name, key, version, entries).await?;
    Ok((of_entries(&entries), record))
}

/// Writes `tags` as a version's overlay record, if the record is still `read`.
///
/// # Errors
/// As [`overlay::write`].
pub async fn write(
    client: &TokioClient,
    box_name: &str,
    key: &[u8],
    version: Hlc,
    read: Option<Hlc>,
    tags: &[(String, String)],
) -> S3Result<()> {
    overlay::write(client, ENTRY, box_name, key, version, read, entry(tags).into_iter().collect()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_limits() {
        let t = from_header("a=1&b%20c=d%2Fe&empty=").expect("tags");
        assert_eq!(t, vec![("a".into(), "1".into()), ("b c".into(), "d/e".into()), ("empty".into(), String::new())]);
        assert!(from_header("a=1&a=2").is_err());
        assert!(from_header(&(0..11).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join("&")).is_err());
        assert!(from_header("aws:x=1").is_err());
        let e = entry(&t).expect("entry");
        assert_eq!(of_entries(&[e]), t);
    }
}
