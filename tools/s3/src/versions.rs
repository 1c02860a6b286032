//! Bucket versioning and ListObjectVersions, over the node's versioned Boxes.
//!
//! Invariants:
//! - A bucket's versioning state is its Box's: never enabled (S3 shows no status), enabled or
//!   suspended; once enabled it can be suspended but never turned off, as S3's.
//! - ListObjectVersions returns at most `max-keys` entries (versions, delete markers and common
//!   prefixes together), in key order and newest first within a key; its markers continue
//!   exactly after the last entry returned.

use candybox_wire::client::{Hlc, TokioClient, VersionEntry, VersionListOptions};
use s3s::dto::*;
use s3s::{s3_error, S3Result};

use crate::buckets::Bucket;
use crate::errors::{s3_error, Missing};
use crate::ids::{parse_version_id, timestamp, version_id};
use crate::meta;

/// What ListObjectVersions found.
struct Found {
    versions: Vec<VersionEntry>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last entry returned: its key and, for a version, its id.
    last: Option<(String, Option<Hlc>)>,
}

async fn collect(
    client: &TokioClient,
    box_name: &str,
    prefix: &str,
    delimiter: Option<&str>,
    mut key_marker: Option<Vec<u8>>,
    mut version_marker: Option<Hlc>,
    max: usize,
) -> S3Result<Found> {
    let mut found = Found { versions: Vec::new(), prefixes: Vec::new(), truncated: false, last: None };
    if max == 0 {
        return Ok(found);
    }
    loop {
        let options = VersionListOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.as_bytes().to_vec()),
            key_marker: key_marker.clone(),
            version_marker: key_marker.as_ref().and(version_marker),
            limit: u32::try_from(max + 1).unwrap_or(u32::MAX),
            with_meta: true,
        };
        let page = client.list_versions(box_name, &options).await.map_err(|e| s3_error(e, Missing::Bucket))?;
        let ended = page.next.is_none();
        let mut jumped = false;
        for entry in page.entries {
            let key = String::from_utf8_lossy(&entry.key).into_owned();
            let rolled = crate::gateway::common_prefix(&key, prefix, delimiter);
            if found.versions.len() + found.prefixes.len() == max {
                found.truncated = true;
                return Ok(found);
            }
            match rolled {
                Some(cp) => {
                    let mut next = cp.clone().into_bytes();
                    next.push(crate::gateway::PAST_PREFIX);
                    key_marker = Some(next);
                    version_marker = None;
                    found.last = Some((cp.clone(), None));
                    found.prefixes.push(cp);
                    jumped = true;
                    break;
                }
                None => {
                    key_marker = Some(entry.key.clone());
                    version_marker = Some(entry.version);
                    found.last = Some((key, Some(entry.version)));
                    found.versions.push(entry);
                }
            }
        }
        if !jumped && ended {
            return Ok(found);
        }
    }
}

/// ListObjectVersions.
pub async fn list(
    client: &TokioClient,
    bucket: &Bucket,
    owner: impl Fn(&str) -> Owner,
    input: ListObjectVersionsInput,
) -> S3Result<ListObjectVersionsOutput> {
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
    let max = match input.max_keys {
        Some(n) if n < 0 => return Err(s3_error!(InvalidArgument, "max-keys must be a non-negative number")),
        Some(n) => usize::try_from(n).unwrap_or(crate::gateway::LIST_KEYS_MAX).min(crate::gateway::LIST_KEYS_MAX),
        None => crate::gateway::LIST_KEYS_MAX,
    };
    let key_marker = input.key_marker.as_deref().filter(|k| !k.is_empty());
    let version_marker = match (key_marker, input.version_id_marker.as_deref().filter(|v| !v.is_empty())) {
        (None, Some(_)) => {
            return Err(s3_error!(InvalidArgument, "A version-id marker cannot be specified without a key marker."));
        }
        (Some(_), Some(v)) => {
            Some(parse_version_id(v).ok_or_else(|| s3_error!(InvalidArgument, "Invalid version id specified"))?)
        }
        _ => None,
    };
    let key_marker_bytes = key_marker.map(|k| {
        let mut c = k.as_bytes().to_vec();
        // A key marker that is a common prefix continues after everything under it.
        if version_marker.is_none() && delimiter.is_some_and(|d| k.ends_with(d)) {
            c.push(crate::gateway::PAST_PREFIX);
        }
        c
    });
    let found =
        collect(client, &bucket.record.box_name, &prefix, delimiter, key_marker_bytes, version_marker, max).await?;
    let url = input.encoding_type.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL);
    let enc = |s: String| if url { crate::gateway::url_encode(&s) } else { s };
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    for e in &found.versions {
        let key = enc(String::from_utf8_lossy(&e.key).into_owned());
        let view = meta::view(&e.user_meta, e.checksum, e.size, e.version);
        let writer = owner(view.owner.as_deref().unwrap_or(&bucket.record.owner));
        let modified = if e.modified_ms == 0 { e.created_ms } else { e.modified_ms };
        if e.delete_marker {
            markers.push(DeleteMarkerEntry {
                key: Some(key),
                version_id: Some(version_id(e.version)),
                is_latest: Some(e.is_latest),
                last_modified: Some(timestamp(modified)),
                owner: Some(writer),
            });
        } else {
            versions.push(ObjectVersion {
                key: Some(key),
                version_id: Some(version_id(e.version)),
                is_latest: Some(e.is_latest),
                last_modified: Some(timestamp(modified)),
                e_tag: Some(ETag::Strong(view.etag)),
                size: i64::try_from(view.size).ok(),
                owner: Some(writer),
                storage_class: Some(ObjectVersionStorageClass::from_static(ObjectVersionStorageClass::STANDARD)),
                ..Default::default()
            });
        }
    }
    let (next_key_marker, next_version_id_marker) = match (found.truncated, found.last) {
        (true, Some((k, v))) => (Some(enc(k)), v.map(version_id)),
        _ => (None, None),
    };
    Ok(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(enc(prefix)),
        delimiter: input.delimiter.map(enc),
        key_marker: Some(input.key_marker.map(enc).unwrap_or_default()),
        version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
        max_keys: i32::try_from(max).ok(),
        is_truncated: Some(found.truncated),
        next_key_marker,
        next_version_id_marker,
        versions: Some(versions),
        delete_markers: Some(markers),
        common_prefixes: Some(found.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(enc(p)) }).collect()),
        encoding_type: input.encoding_type,
        ..Default::default()
    })
}
