//! CopyObject and UploadPartCopy.
//!
//! Invariants:
//! - A copy within one bucket never moves bytes: the node writes a locator that reuses the
//!   source's parts (with the REPLACE directive, under new metadata that keeps the source's
//!   ETag and checksums, since the bytes are the same).
//! - A copy across buckets (different Boxes, whose locators the node refuses to share) streams
//!   the source's bytes through the gateway into a put, under the same flow control as any
//!   get and put; its ETag is the MD5 of the bytes.
//! - An encrypted source copied within its bucket into an encrypted target keeps its bytes and
//!   its data key, wrapped again under the target's key; a copy into or out of encryption
//!   streams the plaintext through (decrypted, then encrypted under a new data key).
//! - The copy-source conditions are checked against the source's current metadata; a copy by
//!   version id reads exactly that version.

use candybox_wire::client::{ByteRange, CandyMeta, CopyOptions, Hlc, MetaReplace, PutOptions, TokioClient, Versioning};
use s3s::dto::*;
use s3s::{s3_error, S3Result};

use crate::acl::Acl;
use crate::body::{Expected, Source, Upload};
use crate::buckets::Bucket;
use crate::conditions::ReadConditions;
use crate::errors::{s3_error, Missing};
use crate::ids::{parse_version_id, timestamp};
use crate::meta::{self, Stored};
use crate::plain::{Named, Want};
use crate::sse::{self, KeyRing, Sealed};

/// The source of a copy: bucket, key and version as the request names them.
pub struct SourceRef {
    /// The source bucket.
    pub bucket: String,
    /// The source key.
    pub key: String,
    /// The version asked for (`None`: the current one).
    pub version: Option<Hlc>,
}

/// The source a `x-amz-copy-source` header names.
///
/// # Errors
/// `InvalidArgument` for an access point ARN or a version id this gateway did not give out.
pub fn source_of(c: &CopySource) -> S3Result<SourceRef> {
    match c {
        CopySource::Bucket { bucket, key, version_id } => {
            let version = match version_id.as_deref() {
                None => None,
                Some(v) => Some(
                    parse_version_id(v).ok_or_else(|| s3_error!(InvalidArgument, "Invalid version id specified"))?,
                ),
            };
            Ok(SourceRef { bucket: bucket.to_string(), key: key.to_string(), version })
        }
        CopySource::AccessPoint { .. } | CopySource::Outpost { .. } => {
            Err(s3_error!(InvalidArgument, "access point and outpost copy sources are not supported"))
        }
    }
}

/// The metadata of a copy: the source's (COPY) or the request's headers (REPLACE), and in
/// both the new owner and ACL (a copy belongs to whoever made it, as in S3) and the source's ETag
/// and checksums (the bytes do not change).
fn target_meta(input: &CopyObjectInput, replace: bool, owner: &str, acl: &Acl, m: &CandyMeta) -> MetaReplace {
    if !replace {
        let mut user_meta: Vec<(String, String)> =
            m.user_meta.iter().filter(|(k, _)| k != meta::OWNER && k != meta::ACL).cloned().collect();
        user_meta.extend(meta::entries(None, &Stored::default(), Some(owner), Some(acl)));
        return MetaReplace { content_type: (!m.content_type.is_empty()).then(|| m.content_type.clone()), user_meta };
    }
    let source_meta = &m.user_meta;
    let stored = Stored {
        cache_control: input.cache_control.clone(),
        content_disposition: input.content_disposition.clone(),
        content_encoding: input.content_encoding.clone(),
        content_language: input.content_language.clone(),
        expires: input.expires.as_ref().and_then(crate::gateway::format_http_date),
    };
    let mut user_meta = meta::entries(input.metadata.as_ref(), &stored, Some(owner), Some(acl));
    user_meta.extend(
        source_meta.iter().filter(|(k, _)| k == meta::ETAG || k.starts_with("checksum-") || k == "digest-md5").cloned(),
    );
    MetaReplace { content_type: input.content_type.as_ref().map(ToString::to_string), user_meta }
}

/// CopyObject from `source_bucket` to `target`.
pub async fn copy_object(
    client: &TokioClient,
    keys: &KeyRing,
    source_bucket: &Bucket,
    target: &Bucket,
    (owner, acl): (&str, &Acl),
    may_read: &crate::acl::MayRead<'_>,
    input: CopyObjectInput,
) -> S3Result<(CopyObjectOutput, Hlc)> {
    let source = source_of(&input.copy_source)?;
    let source_box = &source_bucket.record.box_name;
    let m = match source.version {
        Some(v) => client.head_version(source_box, source.key.as_bytes(), v).await,
        None => client.head(source_box, source.key.as_bytes()).await,
    }
    .map_err(|e| s3_error(e, if source.version.is_some() { Missing::Version } else { Missing::Key }))?;
    if !may_read(&m.user_meta) {
        return Err(s3_error!(AccessDenied, "Access Denied"));
    }
    let view = meta::view_of(&m);
    let modified = if m.hlc == Hlc::ZERO { m.created_ms } else { m.hlc.physical_ms };
    ReadConditions {
        if_match: input.copy_source_if_match.clone(),
        if_none_match: input.copy_source_if_none_match.clone(),
        if_modified_since: input.copy_source_if_modified_since.clone(),
        if_unmodified_since: input.copy_source_if_unmodified_since.clone(),
    }
    .check(&view.etag, modified, true)?;
    let source_customer = sse::customer_key!(copy_source input)?;
    let source_key = match &view.sealed {
        Some(sealed) => Some(sealed.open(keys, source_customer.as_ref())?),
        None if source_customer.is_some() => {
            return Err(s3_error!(InvalidRequest, "The encryption parameters are not applicable to this object."));
        }
        None => None,
    };
    let customer = sse::customer_key!(input)?;
    let explicit_encryption = customer.is_some() || input.server_side_encryption.is_some();
    let target_request = sse::requested!(input, customer, target.record.encryption.as_ref())?;
    let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    let same_object = source_bucket.record.box_name == target.record.box_name && source.key == input.key;
    if same_object && !replace && source.version.is_none() && !explicit_encryption {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let mut replacement = target_meta(&input, replace, owner, acl, &m);
    replacement.user_meta.retain(|(k, _)| !Sealed::is_entry(k));
    let source_version_id = source.version;
    let whole_version = source.version.or((source_bucket.versioning != Versioning::Off).then_some(m.hlc));
    let zero_copy =
        source_bucket.record.box_name == target.record.box_name && source_key.is_some() == target_request.is_some();
    if zero_copy {
        // The node relays the locator; the bytes stay where they are. An encrypted source
        // keeps its data key, wrapped again as the copy asks.
        let mut sealed = None;
        if let (Some(data_key), Some(req)) = (&source_key, &target_request) {
            let s = sse::wrap(keys, req, data_key)?;
            replacement.user_meta.extend(s.entries());
            replacement
                .user_meta
                .extend(m.user_meta.iter().filter(|(k, _)| k == sse::SIZE || k == sse::PARTS).cloned());
            sealed = Some(s);
        }
        let options = CopyOptions { condition: None, replace: Some(replacement), source_version: whole_version };
        let done = client
            .copy_or_rename_if(source_box, source.key.as_bytes(), input.key.as_bytes(), false, &options)
            .await
            .map_err(|e| s3_error(e, Missing::Key))?
            .unwrap_or_default();
        let output = output_of(view.etag, done.hlc, source_version_id, sealed.as_ref());
        return Ok((output, done.hlc));
    }
    // Across buckets, or into or out of encryption: stream the plaintext through.
    let get = client
        .get_version(source_box, source.key.as_bytes(), ByteRange::Whole, whole_version)
        .await
        .map_err(|e| s3_error(e, Missing::Key))?;
    let plain = crate::plain::finish(
        client,
        keys,
        get,
        Named { box_name: source_box, key: source.key.as_bytes(), version: whole_version },
        &Want::Whole,
        source_customer.as_ref(),
    )
    .await?;
    let sealing = target_request.map(|r| sse::seal(keys, &r)).transpose()?;
    // The put computes the ETag and checksums of what it streams.
    let content_type = replacement.content_type;
    let mut user_meta: Vec<(String, String)> =
        replacement.user_meta.into_iter().filter(|(k, _)| k != meta::ETAG && !k.starts_with("checksum-")).collect();
    if let Some((s, _)) = &sealing {
        user_meta.extend(s.entries());
    }
    let length = plain.length;
    let expected = Expected { length: Some(length), ..Expected::default() };
    let mut upload = Upload::new(Some(plain.body.into_blob()), expected, None);
    let size = if sealing.is_some() { sse::stored_len(length) } else { length };
    let options = PutOptions { content_type, user_meta, size: Some(size), ..PutOptions::default() };
    let put_source = Source::put(&mut upload)
        .sealed(sealing.as_ref().map(|(_, k)| k), sealing.as_ref().is_none_or(|(s, _)| s.md5_etag()));
    let done = match client.put(&target.record.box_name, input.key.as_bytes(), &options, put_source).await {
        Ok(d) => d,
        Err(e) => return Err(upload.failure.take().unwrap_or_else(|| s3_error(e, Missing::Key))),
    };
    let md5 = upload.computed.map(|c| c.md5_hex).unwrap_or_default();
    let etag = sse::shown_etag(sealing.as_ref(), md5);
    let output = output_of(etag, done.hlc, source_version_id, sealing.as_ref().map(|(s, _)| s));
    Ok((output, done.hlc))
}

fn output_of(etag: String, hlc: Hlc, source_version: Option<Hlc>, sealed: Option<&Sealed>) -> CopyObjectOutput {
    let mut output = CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp(hlc.physical_ms)),
            ..Default::default()
        }),
        copy_source_version_id: source_version.map(crate::ids::version_id),
        ..Default::default()
    };
    sse::set_echo!(output, sealed.map(Sealed::echo).unwrap_or_default(), context);
    output
}

/// The byte range of `x-amz-copy-source-range` (`bytes=FIRST-LAST`, both required).
///
/// # Errors
/// `InvalidArgument` when it is not that form.
pub fn copy_range(r: &str) -> S3Result<ByteRange> {
    let bad = || {
        s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
    };
    let spec = r.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.parse().map_err(|_| bad())?;
    let last: u64 = b.parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok(ByteRange::FromTo { first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_need_both_ends() {
        assert_eq!(copy_range("bytes=0-9").ok(), Some(ByteRange::FromTo { first: 0, last: 9 }));
        for bad in ["bytes=5-", "bytes=-5", "0-9", "bytes=9-0", "bytes=a-b"] {
            assert!(copy_range(bad).is_err(), "{bad}");
        }
    }
}
