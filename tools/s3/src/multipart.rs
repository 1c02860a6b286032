//! Multipart uploads: the node keeps the parts and commits the object at completion; the
//! gateway keeps what S3 needs and the node does not, each part's MD5 (its ETag), in the
//! reserved Box.
//!
//! Invariants:
//! - A part is uploaded to the node first, then its record `part/BOX/UPLOAD/KEYHASH/NNNNN`
//!   (MD5, size and the node's CRC-32 of the part) is written; completion checks every listed
//!   part's record against the node's own list of parts (size and CRC-32), so a part uploaded
//!   twice at once, whose record may name the other upload's bytes, fails as `InvalidPart`
//!   instead of completing with a wrong ETag.
//! - The object's ETag is S3's: the MD5 of the concatenated binary MD5s of the listed parts,
//!   `-N`; it is committed with the object in the completion's metadata.
//! - Completion and abort delete the upload's records (one range delete); records of uploads
//!   the node expired are left behind until a later sweep (see the lifecycle step).
//! - An upload id is the node's 64-bit id as 16 hex digits; anything else is `NoSuchUpload`.

use bytes::Bytes;
use candybox_wire::client::{ByteRange, ClientError, Condition, Hlc, KeyRange, ListOptions, PutOptions, TokioClient};
use md5::Digest as _;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Result};

use crate::body::{Expected, Source, Upload};
use crate::buckets::{Bucket, RESERVED_BOX};
use crate::errors::{s3_error, Missing};
use crate::ids::timestamp;
use crate::meta;
use crate::plain::{Named, Want};
use crate::sse::{self, DataKey, KeyRing, Sealed};

/// S3's most parts in one upload, and so the largest part number.
pub const PARTS_MAX: i32 = 10_000;
/// The overlay kind of a completed multipart object's part sizes (a JSON list, the record's
/// body).
pub const PARTS_KIND: &str = "parts";

/// The sizes of the parts of a completed multipart object's version, `None` when none are
/// recorded.
pub async fn part_sizes(client: &TokioClient, box_name: &str, key: &[u8], version: Hlc) -> Option<Vec<u64>> {
    let record = crate::overlay::record_key(PARTS_KIND, box_name, key, version);
    let (_, body) = client.get_to_vec(RESERVED_BOX, &record, ByteRange::Whole).await.ok()?;
    serde_json::from_slice(&body).ok()
}

/// The byte range of part `n` (from 1) of an object of `size` bytes: the whole object is its
/// only part unless `sizes` lists its parts.
///
/// # Errors
/// `InvalidPartNumber` for a part it does not have.
pub fn part_range(n: i32, size: u64, sizes: Option<&[u64]>) -> S3Result<(u64, u64, usize)> {
    let bad = || {
        let mut e = s3s::S3Error::with_message(
            s3s::S3ErrorCode::Custom("InvalidPartNumber".into()),
            "The requested partnumber is not satisfiable",
        );
        e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
        e
    };
    let n = usize::try_from(n).ok().filter(|&n| n >= 1).ok_or_else(bad)?;
    match sizes {
        None if n == 1 => Ok((0, size, 1)),
        None => Err(bad()),
        Some(sizes) => {
            let len = *sizes.get(n - 1).ok_or_else(bad)?;
            let first: u64 = sizes.iter().take(n - 1).sum();
            Ok((first, len, sizes.len()))
        }
    }
}

/// S3's most parts a ListParts page returns.
pub const LIST_PARTS_MAX: usize = 1000;

/// The S3 upload id of a node upload.
pub fn upload_id_text(id: u64) -> String {
    format!("{id:016x}")
}

/// The node upload of an S3 upload id.
///
/// # Errors
/// `NoSuchUpload` when it is not one this gateway gave out.
pub fn parse_upload_id(s: &str) -> S3Result<u64> {
    if s.len() != 16 {
        return Err(no_such_upload());
    }
    u64::from_str_radix(s, 16).map_err(|_| no_such_upload())
}

fn no_such_upload() -> S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )
}

fn upload_error(e: ClientError) -> S3Error {
    s3_error(e, Missing::Upload)
}

/// The record prefix of one upload.
pub fn records_prefix(box_name: &str, upload_id: u64, key: &str) -> String {
    let key_hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    format!("part/{box_name}/{upload_id:016x}/{}/", &key_hash[..16])
}

fn part_number(n: i32) -> S3Result<u32> {
    if !(1..=PARTS_MAX).contains(&n) {
        return Err(s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive"));
    }
    u32::try_from(n).map_err(|_| s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000"))
}

/// What the gateway recorded of one part.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartRecord {
    number: u32,
    md5_hex: String,
    size: u64,
    crc32: u32,
    modified_ms: u64,
    checksums: Vec<(String, String)>,
    /// The plaintext size of an encrypted part.
    plain: Option<u64>,
}

/// The name of an encrypted upload's record under its records prefix: the upload's sealed data
/// key (its entries as metadata), which every part is encrypted with.
const SSE_RECORD: &str = "sse";

/// The part records under `prefix`, by part number, and the upload's encryption if it has one.
async fn read_records(client: &TokioClient, prefix: &str) -> S3Result<(Vec<PartRecord>, Option<Sealed>)> {
    let options = ListOptions { prefix: Some(prefix.as_bytes().to_vec()), with_meta: true, ..ListOptions::default() };
    let entries = client.list_all(RESERVED_BOX, &options).await.map_err(|e| s3_error(e, Missing::Bucket))?;
    let mut out = Vec::with_capacity(entries.len());
    let mut sealed = None;
    for e in entries {
        if e.key.get(prefix.len()..) == Some(SSE_RECORD.as_bytes()) {
            sealed = Sealed::of_entries(&e.user_meta);
            continue;
        }
        let Some(number) = e.key.get(prefix.len()..).and_then(|n| std::str::from_utf8(n).ok()?.parse::<u32>().ok())
        else {
            continue;
        };
        let get = |name: &str| e.user_meta.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        out.push(PartRecord {
            number,
            md5_hex: get("md5").unwrap_or_default(),
            size: get("size").and_then(|v| v.parse().ok()).unwrap_or(u64::MAX),
            crc32: get("crc32").and_then(|v| v.parse().ok()).unwrap_or(0),
            modified_ms: e.hlc.physical_ms,
            checksums: e.user_meta.iter().filter(|(k, _)| k.starts_with("checksum-")).cloned().collect(),
            plain: get("plain").and_then(|v| v.parse().ok()),
        });
    }
    out.sort_by_key(|r| r.number);
    Ok((out, sealed))
}

/// The encryption of upload `id` of `key` and its data key, opened with the part request's
/// SSE-C key `customer`; `None`: the upload is not encrypted.
///
/// # Errors
/// SSE-C headers that are missing, not the upload's, or given for an upload without SSE-C.
pub async fn upload_sealing(
    client: &TokioClient,
    keys: &KeyRing,
    bucket: &Bucket,
    key: &str,
    id: u64,
    customer: Option<&sse::Customer>,
) -> S3Result<Option<(Sealed, DataKey)>> {
    let record = format!("{}{SSE_RECORD}", records_prefix(&bucket.record.box_name, id, key));
    let entries = match client.head(RESERVED_BOX, record.as_bytes()).await {
        Ok(m) => m.user_meta,
        Err(ClientError::NotFound { .. }) => {
            if customer.is_some() {
                return Err(s3_error!(
                    InvalidRequest,
                    "The encryption parameters are not applicable to this upload: it was not created with SSE-C."
                ));
            }
            return Ok(None);
        }
        Err(e) => return Err(s3_error(e, Missing::Bucket)),
    };
    let sealed = Sealed::of_entries(&entries)
        .ok_or_else(|| s3_error!(InternalError, "the upload's encryption record is damaged"))?;
    let data_key = sealed.open(keys, customer).map_err(|e| {
        if *e.code() == s3s::S3ErrorCode::AccessDenied {
            s3_error!(InvalidArgument, "The SSE-C key given does not match the key the upload was created with.")
        } else {
            e
        }
    })?;
    Ok(Some((sealed, data_key)))
}

/// CreateMultipartUpload.
pub async fn create(
    client: &TokioClient,
    bucket: &Bucket,
    owner: &str,
    acl: &crate::acl::Acl,
    extra: Vec<(String, String)>,
    sealed: Option<Sealed>,
    input: CreateMultipartUploadInput,
) -> S3Result<CreateMultipartUploadOutput> {
    let stored = meta::Stored {
        cache_control: input.cache_control,
        content_disposition: input.content_disposition,
        content_encoding: input.content_encoding,
        content_language: input.content_language,
        expires: input.expires.as_ref().and_then(crate::gateway::format_http_date),
    };
    let options = PutOptions {
        content_type: input.content_type.as_ref().map(ToString::to_string),
        user_meta: meta::entries(input.metadata.as_ref(), &stored, Some(owner), Some(acl))
            .into_iter()
            .chain(extra)
            .chain(sealed.iter().flat_map(Sealed::entries))
            .collect(),
        ..PutOptions::default()
    };
    let box_name = &bucket.record.box_name;
    let id =
        client.create_upload(box_name, input.key.as_bytes(), &options).await.map_err(|e| s3_error(e, Missing::Key))?;
    if let Some(sealed) = &sealed {
        let record = format!("{}{SSE_RECORD}", records_prefix(box_name, id, &input.key));
        let options = PutOptions { user_meta: sealed.entries(), ..PutOptions::default() };
        if let Err(e) = client.put_bytes(RESERVED_BOX, record.as_bytes(), &options, Bytes::new()).await {
            let _ = client.abort_upload(box_name, input.key.as_bytes(), id).await;
            return Err(s3_error(e, Missing::Bucket));
        }
    }
    let mut output = CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id_text(id)),
        ..Default::default()
    };
    sse::set_echo!(output, sealed.as_ref().map(Sealed::echo).unwrap_or_default(), context);
    Ok(output)
}

/// UploadPart.
pub async fn upload_part(
    client: &TokioClient,
    keys: &KeyRing,
    bucket: &Bucket,
    headers: &http::HeaderMap,
    trailers: Option<s3s::TrailingHeaders>,
    input: UploadPartInput,
) -> S3Result<UploadPartOutput> {
    let id = parse_upload_id(&input.upload_id)?;
    let number = part_number(input.part_number)?;
    let customer = sse::customer_key!(input)?;
    let sealing = upload_sealing(client, keys, bucket, &input.key, id, customer.as_ref()).await?;
    let checksums = Checksum {
        checksum_crc32: input.checksum_crc32,
        checksum_crc32c: input.checksum_crc32c,
        checksum_sha1: input.checksum_sha1,
        checksum_sha256: input.checksum_sha256,
        checksum_crc64nvme: input.checksum_crc64nvme,
        ..Checksum::default()
    };
    let expected = Expected::of_request(
        headers,
        input.content_md5.as_deref(),
        checksums,
        input.checksum_algorithm.as_ref(),
        input.content_length,
    )?;
    let size = expected.length;
    let mut upload = Upload::new(input.body, expected, trailers);
    let computed = store_part(client, bucket, &input.key, (id, number), size, &mut upload, sealing.as_ref()).await?;
    let c = computed.checksums;
    let mut output = UploadPartOutput {
        e_tag: Some(ETag::Strong(sse::shown_etag(sealing.as_ref(), computed.md5_hex))),
        checksum_crc32: c.checksum_crc32,
        checksum_crc32c: c.checksum_crc32c,
        checksum_sha1: c.checksum_sha1,
        checksum_sha256: c.checksum_sha256,
        checksum_crc64nvme: c.checksum_crc64nvme,
        ..Default::default()
    };
    sse::set_echo!(output, sealing.as_ref().map(|(s, _)| s.echo()).unwrap_or_default());
    Ok(output)
}

/// Streams `upload` into part `number` of upload `id` and records its digests.
async fn store_part(
    client: &TokioClient,
    bucket: &Bucket,
    key: &str,
    (id, number): (u64, u32),
    size: Option<u64>,
    upload: &mut Upload,
    sealing: Option<&(Sealed, DataKey)>,
) -> S3Result<crate::body::Computed> {
    let box_name = &bucket.record.box_name;
    let size = size.map(|n| if sealing.is_some() { sse::stored_len(n) } else { n });
    let source = Source::part(upload).sealed(sealing.map(|(_, k)| k), sealing.is_none_or(|(s, _)| s.md5_etag()));
    let result = client.upload_part(box_name, key.as_bytes(), id, number, size, source).await;
    let part = match result {
        Ok(p) => p,
        Err(e) => return Err(upload.failure.take().unwrap_or_else(|| upload_error(e))),
    };
    let Some(computed) = upload.computed.clone() else {
        return Err(s3_error!(InternalError, "the part ended without its digests"));
    };
    let mut record_meta = vec![
        ("md5".to_owned(), sse::shown_etag(sealing, computed.md5_hex.clone())),
        ("size".to_owned(), part.size.to_string()),
        ("crc32".to_owned(), part.checksum.to_string()),
    ];
    if sealing.is_some() {
        record_meta.push(("plain".to_owned(), computed.length.to_string()));
    }
    record_meta.extend(meta::digest_entries(&computed).into_iter().filter(|(k, _)| k.starts_with("checksum-")));
    let record = format!("{}{number:05}", records_prefix(box_name, id, key));
    let options = PutOptions { user_meta: record_meta, ..PutOptions::default() };
    client
        .put_bytes(RESERVED_BOX, record.as_bytes(), &options, Bytes::new())
        .await
        .map_err(|e| s3_error(e, Missing::Key))?;
    Ok(computed)
}

/// UploadPartCopy: part `number` from a range of another object (streamed through).
pub async fn upload_part_copy(
    client: &TokioClient,
    keys: &KeyRing,
    source_bucket: &Bucket,
    target: &Bucket,
    may_read: &crate::acl::MayRead<'_>,
    input: UploadPartCopyInput,
) -> S3Result<UploadPartCopyOutput> {
    let id = parse_upload_id(&input.upload_id)?;
    let number = part_number(input.part_number)?;
    let source = crate::copy::source_of(&input.copy_source)?;
    let want = match input.copy_source_range.as_deref() {
        Some(r) => match crate::copy::copy_range(r)? {
            ByteRange::FromTo { first, last } => Want::Span { first, len: last - first + 1 },
            _ => Want::Whole,
        },
        None => Want::Whole,
    };
    let source_customer = sse::customer_key!(copy_source input)?;
    let customer = sse::customer_key!(input)?;
    let sealing = upload_sealing(client, keys, target, &input.key, id, customer.as_ref()).await?;
    let source_box = &source_bucket.record.box_name;
    let missing = if source.version.is_some() { Missing::Version } else { Missing::Key };
    let get = client
        .get_version(source_box, source.key.as_bytes(), want.node_range(), source.version)
        .await
        .map_err(|e| s3_error(e, missing))?;
    if !may_read(&get.meta().user_meta) {
        return Err(s3_error!(AccessDenied, "Access Denied"));
    }
    let plain = crate::plain::finish(
        client,
        keys,
        get,
        Named { box_name: source_box, key: source.key.as_bytes(), version: source.version },
        &want,
        source_customer.as_ref(),
    )
    .await?;
    let m = &plain.meta;
    let modified = if m.hlc == Hlc::ZERO { m.created_ms } else { m.hlc.physical_ms };
    crate::conditions::ReadConditions {
        if_match: input.copy_source_if_match.clone(),
        if_none_match: input.copy_source_if_none_match.clone(),
        if_modified_since: input.copy_source_if_modified_since.clone(),
        if_unmodified_since: input.copy_source_if_unmodified_since.clone(),
    }
    .check(&plain.view.etag, modified, true)?;
    let length = plain.length;
    let expected = Expected { length: Some(length), ..Expected::default() };
    let mut upload = Upload::new(Some(plain.body.into_blob()), expected, None);
    let computed =
        store_part(client, target, &input.key, (id, number), Some(length), &mut upload, sealing.as_ref()).await?;
    let mut output = UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(sse::shown_etag(sealing.as_ref(), computed.md5_hex))),
            last_modified: Some(timestamp(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0)),
            )),
            ..Default::default()
        }),
        copy_source_version_id: source.version.map(crate::ids::version_id),
        ..Default::default()
    };
    sse::set_echo!(output, sealing.as_ref().map(|(s, _)| s.echo()).unwrap_or_default());
    Ok(output)
}

/// The multipart ETag of parts whose MD5s are `md5s` (hex): MD5 of their binary digests, `-N`.
pub fn multipart_etag(md5s: &[&str]) -> String {
    let mut h = md5::Md5::new();
    for m in md5s {
        h.update(hex::decode(m).unwrap_or_default());
    }
    format!("{}-{}", hex::encode(h.finalize()), md5s.len())
}

fn invalid_part(n: u32) -> S3Error {
    s3_error!(
        InvalidPart,
        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag (part {n})."
    )
}

/// CompleteMultipartUpload.
pub async fn complete(
    client: &TokioClient,
    bucket: &Bucket,
    input: CompleteMultipartUploadInput,
) -> S3Result<(CompleteMultipartUploadOutput, candybox_wire::client::PutDone)> {
    let id = parse_upload_id(&input.upload_id)?;
    let listed = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
    if listed.is_empty() {
        return Err(s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema: it lists no parts."));
    }
    let mut numbers = Vec::with_capacity(listed.len());
    for p in &listed {
        let n = part_number(p.part_number.unwrap_or(0))?;
        if numbers.last().is_some_and(|&last| n <= last) {
            return Err(s3_error!(InvalidPartOrder, "The list of parts was not in ascending order. The parts list must be specified in order by part number."));
        }
        numbers.push(n);
    }
    let box_name = &bucket.record.box_name;
    let key = input.key.as_bytes();
    let prefix = records_prefix(box_name, id, &input.key);
    let (records, sealed) = read_records(client, &prefix).await?;
    let on_node = client.list_parts(box_name, key, id).await.map_err(upload_error)?;
    let mut md5s = Vec::with_capacity(listed.len());
    let mut plain_sizes = Vec::with_capacity(listed.len());
    for (p, &n) in listed.iter().zip(&numbers) {
        let record = records.iter().find(|r| r.number == n).ok_or_else(|| invalid_part(n))?;
        let node = on_node.iter().find(|x| x.part_number == n).ok_or_else(|| invalid_part(n))?;
        if (node.size, node.checksum) != (record.size, record.crc32) {
            return Err(invalid_part(n));
        }
        if let Some(etag) = &p.e_tag {
            if etag.value() != record.md5_hex {
                return Err(invalid_part(n));
            }
        }
        md5s.push(record.md5_hex.as_str());
        if sealed.is_some() {
            plain_sizes.push(record.plain.ok_or_else(|| invalid_part(n))?);
        }
    }
    let etag = multipart_etag(&md5s);
    let condition = match (&input.if_none_match, &input.if_match) {
        (Some(ETagCondition::Any), _) => Some(Condition::IfAbsent),
        (None, Some(ETagCondition::ETag(e))) => {
            Some(Condition::IfMeta { key: meta::ETAG.to_owned(), value: e.value().to_owned() })
        }
        _ => None,
    };
    let mut user_meta = vec![(meta::ETAG.to_owned(), etag.clone())];
    if sealed.is_some() {
        user_meta.push((sse::SIZE.to_owned(), plain_sizes.iter().sum::<u64>().to_string()));
        user_meta.push((sse::PARTS.to_owned(), sse::encode_parts(&plain_sizes)));
    }
    let done = client
        .complete_upload_with(box_name, key, id, &numbers, &user_meta, condition.as_ref())
        .await
        .map_err(|e| match e {
            ClientError::InvalidArgument { ref message, .. } if message.contains("needs at least") => {
                s3_error!(EntityTooSmall, "Your proposed upload is smaller than the minimum allowed object size: each part but the last must be at least 5 MiB.")
            }
            ClientError::InvalidArgument { .. } => invalid_part(0),
            e => upload_error(e),
        })?
        .unwrap_or_default();
    // The part sizes, for GETs by part number (derived; a crash before this write leaves such
    // GETs answering InvalidPartNumber for this object, nothing worse).
    let version = if bucket.versioning == candybox_wire::client::Versioning::Suspended { Hlc::ZERO } else { done.hlc };
    let sizes: Vec<u64> =
        numbers.iter().map(|n| on_node.iter().find(|p| p.part_number == *n).map_or(0, |p| p.size)).collect();
    if let Ok(body) = serde_json::to_vec(&sizes) {
        let record = crate::overlay::record_key(PARTS_KIND, box_name, key, version);
        let _ = client.put_bytes(RESERVED_BOX, &record, &PutOptions::default(), Bytes::from(body)).await;
    }
    let _ = client.delete_range(RESERVED_BOX, &KeyRange::Prefix(prefix.into_bytes())).await;
    let echo = sealed.as_ref().map(Sealed::echo).unwrap_or_default();
    let output = CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(ETag::Strong(etag)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        server_side_encryption: echo.sse,
        ssekms_key_id: echo.kms_key_id,
        bucket_key_enabled: echo.bucket_key,
        ..Default::default()
    };
    Ok((output, done))
}

/// AbortMultipartUpload.
pub async fn abort(client: &TokioClient, bucket: &Bucket, input: &AbortMultipartUploadInput) -> S3Result<()> {
    let id = parse_upload_id(&input.upload_id)?;
    let box_name = &bucket.record.box_name;
    client.abort_upload(box_name, input.key.as_bytes(), id).await.map_err(upload_error)?;
    let prefix = records_prefix(box_name, id, &input.key);
    let _ = client.delete_range(RESERVED_BOX, &KeyRange::Prefix(prefix.into_bytes())).await;
    Ok(())
}

/// ListParts.
pub async fn list_parts(
    client: &TokioClient,
    bucket: &Bucket,
    owner: Owner,
    input: ListPartsInput,
) -> S3Result<ListPartsOutput> {
    let id = parse_upload_id(&input.upload_id)?;
    let box_name = &bucket.record.box_name;
    let on_node = client.list_parts(box_name, input.key.as_bytes(), id).await.map_err(upload_error)?;
    let (records, _) = read_records(client, &records_prefix(box_name, id, &input.key)).await?;
    let max = match input.max_parts {
        Some(n) if n < 0 => return Err(s3_error!(InvalidArgument, "max-parts must be a non-negative number")),
        Some(n) => usize::try_from(n).unwrap_or(LIST_PARTS_MAX).min(LIST_PARTS_MAX),
        None => LIST_PARTS_MAX,
    };
    let marker = u32::try_from(input.part_number_marker.unwrap_or(0).max(0)).unwrap_or(0);
    let mut parts = Vec::new();
    let mut truncated = false;
    for node in on_node.iter().filter(|p| p.part_number > marker) {
        if parts.len() == max {
            truncated = true;
            break;
        }
        let record =
            records.iter().find(|r| r.number == node.part_number && (r.size, r.crc32) == (node.size, node.checksum));
        let mut part = Part {
            part_number: i32::try_from(node.part_number).ok(),
            size: i64::try_from(record.and_then(|r| r.plain).unwrap_or(node.size)).ok(),
            e_tag: record.map(|r| ETag::Strong(r.md5_hex.clone())),
            last_modified: record.map(|r| timestamp(r.modified_ms)),
            ..Default::default()
        };
        if let Some(r) = record {
            for (k, v) in &r.checksums {
                match k.as_str() {
                    "checksum-crc32" => part.checksum_crc32 = Some(v.clone()),
                    "checksum-crc32c" => part.checksum_crc32c = Some(v.clone()),
                    "checksum-sha1" => part.checksum_sha1 = Some(v.clone()),
                    "checksum-sha256" => part.checksum_sha256 = Some(v.clone()),
                    "checksum-crc64nvme" => part.checksum_crc64nvme = Some(v.clone()),
                    _ => {}
                }
            }
        }
        parts.push(part);
    }
    let next = parts.last().and_then(|p| p.part_number);
    Ok(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        max_parts: i32::try_from(max).ok(),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: truncated.then_some(next).flatten(),
        is_truncated: Some(truncated),
        parts: Some(parts),
        initiator: Some(Initiator { id: owner.id.clone(), display_name: owner.display_name.clone() }),
        owner: Some(owner),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    })
}

/// ListMultipartUploads.
pub async fn list_uploads(
    client: &TokioClient,
    bucket: &Bucket,
    owner: Owner,
    input: ListMultipartUploadsInput,
) -> S3Result<ListMultipartUploadsOutput> {
    let all = client.list_uploads(&bucket.record.box_name).await.map_err(|e| s3_error(e, Missing::Bucket))?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let max = match input.max_uploads {
        Some(n) if n < 0 => return Err(s3_error!(InvalidArgument, "max-uploads must be a non-negative number")),
        Some(n) => usize::try_from(n).unwrap_or(LIST_PARTS_MAX).min(LIST_PARTS_MAX),
        None => LIST_PARTS_MAX,
    };
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let id_marker = input.upload_id_marker.as_deref().and_then(|s| parse_upload_id(s).ok());
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut last: Option<(String, Option<u64>)> = None;
    for u in all {
        let key = String::from_utf8_lossy(&u.key).into_owned();
        if !key.starts_with(&prefix) {
            continue;
        }
        // After the markers: keys after key-marker, or its own uploads after upload-id-marker.
        if !key_marker.is_empty() {
            let after = match id_marker {
                Some(m) => key.as_str() > key_marker.as_str() || (key == key_marker && u.upload_id > m),
                None => key.as_str() > key_marker.as_str(),
            };
            if !after {
                continue;
            }
        }
        let rolled = crate::gateway::common_prefix(&key, &prefix, delimiter.as_deref());
        if let Some(cp) = &rolled {
            if prefixes.last() == Some(cp) {
                continue;
            }
        }
        if uploads.len() + prefixes.len() == max {
            truncated = true;
            break;
        }
        match rolled {
            Some(cp) => {
                last = Some((cp.clone(), None));
                prefixes.push(cp);
            }
            None => {
                last = Some((key.clone(), Some(u.upload_id)));
                uploads.push(MultipartUpload {
                    key: Some(key),
                    upload_id: Some(upload_id_text(u.upload_id)),
                    initiated: Some(timestamp(u.created_ms)),
                    initiator: Some(Initiator { id: owner.id.clone(), display_name: owner.display_name.clone() }),
                    owner: Some(owner.clone()),
                    storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    ..Default::default()
                });
            }
        }
    }
    let (next_key_marker, next_upload_id_marker) = match (truncated, last) {
        (true, Some((k, id))) => (Some(k), id.map(upload_id_text)),
        _ => (None, None),
    };
    Ok(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        delimiter: input.delimiter,
        key_marker: Some(key_marker),
        upload_id_marker: input.upload_id_marker,
        next_key_marker,
        next_upload_id_marker,
        max_uploads: i32::try_from(max).ok(),
        is_truncated: Some(truncated),
        uploads: Some(uploads),
        common_prefixes: (!prefixes.is_empty())
            .then(|| prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
        encoding_type: input.encoding_type,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multipart_etag_is_the_md5_of_the_part_md5s() {
        // Two parts "a" and "b": MD5(MD5("a") ‖ MD5("b")), then "-2".
        let a = hex::encode(md5::Md5::digest(b"a"));
        let b = hex::encode(md5::Md5::digest(b"b"));
        let mut joined = md5::Md5::digest(b"a").to_vec();
        joined.extend(md5::Md5::digest(b"b"));
        let want = format!("{}-2", hex::encode(md5::Md5::digest(&joined)));
        assert_eq!(multipart_etag(&[&a, &b]), want);
    }

    #[test]
    fn upload_ids_read_back_and_anything_else_is_no_such_upload() {
        assert_eq!(parse_upload_id(&upload_id_text(0x1234_abcd)).ok(), Some(0x1234_abcd));
        assert!(parse_upload_id("xyz").is_err());
        assert!(parse_upload_id("000000000000000g").is_err());
    }
}
