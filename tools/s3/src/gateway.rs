//! The S3 operations, over the node's client library.
//!
//! Invariants:
//! - Every operation resolves its bucket (record, then Box) and checks the caller's right
//!   before it touches the node on the bucket's behalf.
//! - Object bytes are never buffered whole (see `body`); everything else an operation holds is
//!   bounded by S3's own limits (a listing page of at most 1,000 entries, metadata of 2 KiB).
//! - A node error reaches the S3 client through `errors::s3_error` only.

use std::sync::Arc;

use candybox_wire::client::{
    ByteRange, CandyMeta, ClientError, Condition, DeleteKey, Hlc, ListOptions, PutOptions, TokioClient, Versioning,
};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result, S3};

use crate::body::{Download, Expected, Source, Upload};
use crate::buckets::{Bucket, Buckets};
use crate::conditions::ReadConditions;
use crate::errors::{s3_error, with_delete_marker, Missing};
use crate::ids::{parse_version_id, timestamp, version_id};
use crate::meta::{self, Stored};
use crate::users::{User, UserStore};
use crate::{copy, multipart, versions};

/// A byte that follows a prefix to make a marker past every key with that prefix: keys are
/// UTF-8, whose bytes are at most 0xF4. (Not 0xFF: the node's version keys store key bytes
/// plus one, and 0xFF has no successor.)
pub const PAST_PREFIX: u8 = 0xF5;

/// Most keys a listing page returns (S3's cap on `max-keys`).
pub const LIST_KEYS_MAX: usize = 1000;

/// The gateway: the node's client, the bucket records and the users.
pub struct Gateway {
    client: TokioClient,
    buckets: Buckets,
    users: Arc<UserStore>,
    region: String,
}

impl Gateway {
    /// A gateway over `client`.
    pub fn new(client: TokioClient, buckets: Buckets, users: Arc<UserStore>, region: String) -> Gateway {
        Gateway { client, buckets, users, region }
    }

    /// The signed-in caller.
    fn caller<T>(&self, req: &S3Request<T>) -> S3Result<Arc<User>> {
        let Some(creds) = &req.credentials else {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        };
        match self.users.snapshot().by_access_key(&creds.access_key) {
            Some(u) => Ok(Arc::clone(u)),
            None => {
                Err(s3_error!(InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records."))
            }
        }
    }

    /// The bucket `name`, for a caller who may use it.
    async fn bucket(&self, user: &User, name: &str) -> S3Result<Arc<Bucket>> {
        let bucket = self.buckets.resolve(name).await?;
        if bucket.record.owner != user.canonical_id {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        Ok(bucket)
    }

    fn owner_of(&self, canonical_id: &str) -> Owner {
        let users = self.users.snapshot();
        let display_name = users.by_canonical_id(canonical_id).map(|u| u.display_name().to_owned());
        Owner { id: Some(canonical_id.to_owned()), display_name }
    }
}

/// The version id S3 shows for a write in a bucket of `versioning` (none while never enabled).
fn written_version(versioning: Versioning, hlc: Hlc) -> Option<String> {
    match versioning {
        Versioning::Off => None,
        Versioning::Enabled => Some(version_id(hlc)),
        Versioning::Suspended => Some("null".to_owned()),
    }
}

/// The version id S3 shows for a read (none in a bucket never versioned).
fn read_version(versioning: Versioning, hlc: Hlc) -> Option<String> {
    (versioning != Versioning::Off).then(|| version_id(hlc))
}

fn requested_version(v: Option<&str>) -> S3Result<Option<Hlc>> {
    match v {
        None => Ok(None),
        Some(s) => {
            parse_version_id(s).map(Some).ok_or_else(|| s3_error!(InvalidArgument, "Invalid version id specified"))
        }
    }
}

/// When an object was last modified: its version's stamp (a null version carries none on the
/// wire, so its creation time stands in).
fn modified_ms(m: &CandyMeta) -> u64 {
    if m.hlc == Hlc::ZERO {
        m.created_ms
    } else {
        m.hlc.physical_ms
    }
}

fn key_bytes(key: &str) -> S3Result<&[u8]> {
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "An object key must not be empty"));
    }
    Ok(key.as_bytes())
}

fn read_error(e: ClientError, versioning: Versioning, version_asked: bool) -> S3Error {
    match e {
        ClientError::NotFound { delete_marker: Some(m), .. } => {
            with_delete_marker(s3_error!(NoSuchKey, "The specified key does not exist."), read_version(versioning, m))
        }
        ClientError::IsDeleteMarker { version, .. } => with_delete_marker(
            s3_error!(MethodNotAllowed, "The specified method is not allowed against this resource."),
            version.map(version_id),
        ),
        ClientError::NotFound { .. } if version_asked => s3_error(e, Missing::Version),
        e => s3_error(e, Missing::Key),
    }
}

fn byte_range(r: Option<&Range>) -> ByteRange {
    match r {
        None => ByteRange::Whole,
        Some(Range::Int { first, last: Some(last) }) => ByteRange::FromTo { first: *first, last: *last },
        Some(Range::Int { first, last: None }) => ByteRange::From { first: *first },
        Some(Range::Suffix { length }) => ByteRange::Suffix { length: *length },
    }
}

fn http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

pub fn format_http_date(t: &Timestamp) -> Option<String> {
    let mut out = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut out).ok()?;
    String::from_utf8(out).ok()
}

/// Percent-encodes `s` as S3's `encoding-type=url` does: every byte but the unreserved ones
/// and `/`.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One listing page as S3 shapes it: objects and common prefixes, at most `max_keys` of both.
struct Listed {
    objects: Vec<candybox_wire::client::ListEntry>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last key or common prefix returned.
    last: Option<String>,
}

/// Lists `box_name` after `after` (exclusive) with S3's prefix and delimiter semantics.
async fn list_page(
    client: &TokioClient,
    box_name: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<Vec<u8>>,
    max_keys: usize,
) -> S3Result<Listed> {
    let mut out = Listed { objects: Vec::new(), prefixes: Vec::new(), truncated: false, last: None };
    if max_keys == 0 {
        return Ok(out);
    }
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let mut cursor = after;
    loop {
        let options = ListOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.as_bytes().to_vec()),
            start_after: cursor.clone(),
            limit: u32::try_from(max_keys + 1).unwrap_or(u32::MAX),
            with_meta: true,
            ..ListOptions::default()
        };
        let page = client.list(box_name, &options).await.map_err(|e| s3_error(e, Missing::Bucket))?;
        let ended = page.next_start_after.is_none();
        let mut jumped = false;
        for entry in page.entries {
            let key = String::from_utf8_lossy(&entry.key).into_owned();
            let rolled = delimiter.and_then(|d| {
                let rest = key.get(prefix.len()..)?;
                rest.find(d).map(|i| key[..prefix.len() + i + d.len()].to_owned())
            });
            if out.objects.len() + out.prefixes.len() == max_keys {
                out.truncated = true;
                return Ok(out);
            }
            match rolled {
                Some(cp) => {
                    // Every later key under this common prefix rolls into it: continue after
                    // all of them (see `PAST_PREFIX`).
                    let mut next = cp.clone().into_bytes();
                    next.push(PAST_PREFIX);
                    cursor = Some(next);
                    out.last = Some(cp.clone());
                    out.prefixes.push(cp);
                    jumped = true;
                    break;
                }
                None => {
                    cursor = Some(entry.key.clone());
                    out.last = Some(key);
                    out.objects.push(entry);
                }
            }
        }
        if !jumped && ended {
            return Ok(out);
        }
    }
}

fn object_of(e: &candybox_wire::client::ListEntry, owner: Option<Owner>) -> Object {
    let view = meta::view(&e.user_meta, e.checksum, e.size, e.hlc);
    let modified = if e.hlc == Hlc::ZERO { e.created_ms } else { e.hlc.physical_ms };
    Object {
        key: Some(String::from_utf8_lossy(&e.key).into_owned()),
        size: Some(i64::try_from(e.size).unwrap_or(i64::MAX)),
        e_tag: Some(ETag::Strong(view.etag)),
        last_modified: Some(timestamp(modified)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        owner,
        ..Object::default()
    }
}

fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(LIST_KEYS_MAX),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must be a non-negative number")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(LIST_KEYS_MAX).min(LIST_KEYS_MAX)),
    }
}

fn encode_token(cursor: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cursor)
}

fn decode_token(token: &str) -> S3Result<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))
}

/// The cursor after an item a page returned: after a common prefix, past all of its keys.
fn cursor_after(last: &str, delimiter: Option<&str>) -> Vec<u8> {
    let mut c = last.as_bytes().to_vec();
    if delimiter.is_some_and(|d| !d.is_empty() && last.ends_with(d)) {
        c.push(PAST_PREFIX);
    }
    c
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let user = self.caller(&req)?;
        let bucket = self.bucket(&user, &req.input.bucket).await?;
        key_bytes(&req.input.key)?;
        Ok(S3Response::new(multipart::create(&self.client, &bucket, &user.canonical_id, req.input).await?))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let user = self.caller(&req)?;
        let input = req.input;
        let bucket = self.bucket(&user, &input.bucket).await?;
        let config = input.versioning_configuration;
        if config.mfa_delete.as_ref().is_some_and(|m| m.as_str() == MFADelete::ENABLED) {
            return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
        }
        let state = match config.status.as_ref().map(BucketVersioningStatus::as_str) {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => return Err(s3_error!(MalformedXML, "The versioning status must be Enabled or Suspended.")),
        };
        if state == Versioning::Suspended && bucket.record.object_lock {
            return Err(s3_error!(
                InvalidBucketState,
                "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed."
            ));
        }
        self.client.set_versioning(&bucket.record.box_name, state).await.map_err(|e| s3_error(e, Missing::Bucket))?;
        self.buckets.forget(&input.bucket);
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let user = self.caller(&req)?;
        let bucket = self.bucket(&user, &req.input.bucket).await?;
        let status = match bucket.versioning {
            Versioning::Off => None,
            Versioning::Enabled => Some(BucketVersioningStatus::from_static(BucketVersioningStatus::ENABLED)),
            Versioning::Suspended => Some(BucketVersioningStatus::from_static(BucketVersioningStatus::SUSPENDED)),
        };
        Ok(S3Response::new(GetBucketVersioningOutput { status, mfa_delete: None }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let user = self.caller(&req)?;
        let bucket = self.bucket(&user, &req.input.bucket).await?;
        let owner = |id: &str| self.owner_of(id);
        Ok(S3Response::new(versions::list(&self.client, &bucket, owner, req.input).await?))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let user = self.caller(&req)?;
        let input = req.input;
        let target = self.bucket(&user, &input.bucket).await?;
        key_bytes(&input.key)?;
        let source = copy::source_of(&input.copy_source)?;
        let source_bucket = self.bucket(&user, &source.bucket).await?;
        let (mut output, hlc) =
            copy::copy_object(&self.client, &source_bucket, &target, &user.canonical_id, input).await?;
        output.version_id = written_version(target.versioning, hlc);
        Ok(S3Response::new(output))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let user = self.caller(&req)?;
        let input = req.input;
        let target = self.bucket(&user, &input.bucket).await?;
        let source = copy::source_of(&input.copy_source)?;
        let source_bucket = self.bucket(&user, &source.bucket).await?;
        Ok(S3Response::new(multipart::upload_part_copy(&self.client, &source_bucket, &target, input).await?))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let user = self.caller(&req)?;
        let bucket = self.bucket(&user, &req.input.bucket).await?;
        let output =
            multipart::upload_part(&self.client, &bucket, &req.headers, req.trailing_headers, req.input).await?;
        Ok(S3Response::new(output))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let user = self.caller(&req)?;
        let bucket = self.bucket(&user, &req.input.bucket).await?;
        let (mut output, done) = multipart::complete(&self.client, &bucket, req.input).await?;
        output.version_id = written_version(bucket.versioning, done.hlc);
        Ok(S3Response::new(output))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let user = self.caller(&req)?;
        let bucket = self.bucket(&user, &req.input.bucket).await?;
        multipart::abort(&self.client, &bucket, &req.input).await?;
        Ok(S3Response::with_status(AbortMultipartUploadOutput::default(), http::StatusCode::NO_CONTENT))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let user = self.caller(&req)?;
        let bucket = self.bucket(&user, &req.input.bucket).await?;
        let owner = self.owner_of(&bucket.record.owner);
        Ok(S3Response::new(multipart::list_parts(&self.client, &bucket, owner, req.input).await?))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let user = self.caller(&req)?;
        let bucket = self.bucket(&user, &req.input.bucket).await?;
        let owner = self.owner_of(&bucket.record.owner);
        Ok(S3Response::new(multipart::list_uploads(&self.client, &bucket, owner, req.input).await?))
    }

    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let user = self.caller(&req)?;
        let mut buckets = Vec::new();
        for (name, owner, created_ms) in self.buckets.list().await? {
            if owner == user.canonical_id {
                buckets.push(s3s::dto::Bucket {
                    name: Some(name),
                    creation_date: Some(timestamp(created_ms)),
                    bucket_region: Some(self.region.clone()),
                });
            }
        }
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner_of(&user.canonical_id)),
            ..ListBucketsOutput::default()
        }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let user = self.caller(&req)?;
        let input = req.input;
        let region = match input.create_bucket_configuration.as_ref().and_then(|c| c.location_constraint.as_ref()) {
            Some(c) if c.as_str() != self.region && !(c.as_str().is_empty() && self.region == "us-east-1") => {
                return Err(s3_error!(
                    InvalidLocationConstraint,
                    "The specified location-constraint is not valid: this gateway serves {}",
                    self.region
                ));
            }
            _ => self.region.clone(),
        };
        let lock = input.object_lock_enabled_for_bucket.unwrap_or(false);
        self.buckets.create(&input.bucket, &user.canonical_id, &region, lock).await?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{}", input.bucket)) }))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let user = self.caller(&req)?;
        let bucket = self.bucket(&user, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(bucket.record.region.clone()),
            ..Default::default()
        }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let user = self.caller(&req)?;
        let bucket = self.bucket(&user, &req.input.bucket).await?;
        self.buckets.delete(&bucket).await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let user = self.caller(&req)?;
        let bucket = self.bucket(&user, &req.input.bucket).await?;
        // us-east-1 is S3's empty location constraint.
        let location =
            (bucket.record.region != "us-east-1").then(|| BucketLocationConstraint::from(bucket.record.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput { location_constraint: location }))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let user = self.caller(&req)?;
        let trailers = req.trailing_headers.clone();
        let input = req.input;
        let bucket = self.bucket(&user, &input.bucket).await?;
        let key = key_bytes(&input.key)?;
        let checksums = Checksum {
            checksum_crc32: input.checksum_crc32.clone(),
            checksum_crc32c: input.checksum_crc32c.clone(),
            checksum_sha1: input.checksum_sha1.clone(),
            checksum_sha256: input.checksum_sha256.clone(),
            checksum_crc64nvme: input.checksum_crc64nvme.clone(),
            ..Checksum::default()
        };
        let expected = Expected::of_request(
            &req.headers,
            input.content_md5.as_deref(),
            checksums,
            input.checksum_algorithm.as_ref(),
            input.content_length,
        )?;
        let length = expected.length;
        let condition = match (&input.if_none_match, &input.if_match) {
            (Some(ETagCondition::Any), _) => Some(Condition::IfAbsent),
            (Some(_), _) => {
                return Err(s3_error!(NotImplemented, "If-None-Match on a put takes only `*`"));
            }
            (None, Some(ETagCondition::ETag(e))) => {
                Some(Condition::IfMeta { key: meta::ETAG.to_owned(), value: e.value().to_owned() })
            }
            (None, Some(ETagCondition::Any)) => {
                return Err(s3_error!(NotImplemented, "If-Match on a put takes an ETag, not `*`"));
            }
            (None, None) => None,
        };
        let stored = Stored {
            cache_control: input.cache_control.clone(),
            content_disposition: input.content_disposition.clone(),
            content_encoding: input.content_encoding.clone(),
            content_language: input.content_language.clone(),
            expires: input.expires.as_ref().and_then(format_http_date),
        };
        let options = PutOptions {
            content_type: input.content_type.as_ref().map(ToString::to_string),
            user_meta: meta::entries(input.metadata.as_ref(), &stored, Some(&user.canonical_id)),
            size: length,
            condition,
            digests: Vec::new(),
        };
        let mut upload = Upload::new(input.body, expected, trailers);
        let result = self.client.put(&bucket.record.box_name, key, &options, Source::put(&mut upload)).await;
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                return Err(match upload.failure.take() {
                    Some(why) => why,
                    None => s3_error(e, Missing::Key),
                })
            }
        };
        let Some(computed) = upload.computed else {
            return Err(s3_error!(InternalError, "the put ended without its digests"));
        };
        let checksums = computed.checksums;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(computed.md5_hex)),
            version_id: written_version(bucket.versioning, done.hlc),
            checksum_crc32: checksums.checksum_crc32,
            checksum_crc32c: checksums.checksum_crc32c,
            checksum_sha1: checksums.checksum_sha1,
            checksum_sha256: checksums.checksum_sha256,
            checksum_crc64nvme: checksums.checksum_crc64nvme,
            size: i64::try_from(computed.length).ok(),
            ..PutObjectOutput::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let user = self.caller(&req)?;
        let input = req.input;
        let bucket = self.bucket(&user, &input.bucket).await?;
        let key = key_bytes(&input.key)?;
        let version = requested_version(input.version_id.as_deref())?;
        if input.part_number.is_some() {
            return Err(s3_error!(NotImplemented, "GetObject by part number is not supported yet"));
        }
        let range = byte_range(input.range.as_ref());
        let checksum_mode = input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
        let get = self
            .client
            .get_version(&bucket.record.box_name, key, range, version)
            .await
            .map_err(|e| read_error(e, bucket.versioning, version.is_some()))?;
        let m = get.meta().clone();
        let view = meta::view_of(&m);
        let conditions = ReadConditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        };
        // A failed condition drops the stream, which cancels the node's get.
        conditions.check(&view.etag, modified_ms(&m), false)?;
        let (first, length) = (get.first(), get.length());
        let content_range = (input.range.is_some()).then(|| {
            let last = (first + length).saturating_sub(1);
            format!("bytes {first}-{last}/{}", m.size)
        });
        let content_type = input
            .response_content_type
            .or_else(|| (!m.content_type.is_empty()).then(|| m.content_type.clone()))
            .and_then(|t| t.parse().ok());
        let expires = input.response_expires.or_else(|| view.stored.expires.as_deref().and_then(http_date));
        let mut output = GetObjectOutput {
            body: Some(Download::new(get).into_blob()),
            content_length: i64::try_from(length).ok(),
            content_range,
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(ETag::Strong(view.etag)),
            last_modified: Some(timestamp(modified_ms(&m))),
            content_type,
            metadata: (!view.user.is_empty()).then_some(view.user),
            cache_control: input.response_cache_control.or(view.stored.cache_control),
            content_disposition: input.response_content_disposition.or(view.stored.content_disposition),
            content_encoding: input.response_content_encoding.or(view.stored.content_encoding),
            content_language: input.response_content_language.or(view.stored.content_language),
            expires,
            version_id: read_version(bucket.versioning, m.hlc),
            ..GetObjectOutput::default()
        };
        if checksum_mode && output.content_range.is_none() {
            output.checksum_crc32 = view.checksums.checksum_crc32;
            output.checksum_crc32c = view.checksums.checksum_crc32c;
            output.checksum_sha1 = view.checksums.checksum_sha1;
            output.checksum_sha256 = view.checksums.checksum_sha256;
            output.checksum_crc64nvme = view.checksums.checksum_crc64nvme;
        }
        let status =
            if output.content_range.is_some() { http::StatusCode::PARTIAL_CONTENT } else { http::StatusCode::OK };
        Ok(S3Response::with_status(output, status))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let user = self.caller(&req)?;
        let input = req.input;
        let bucket = self.bucket(&user, &input.bucket).await?;
        let key = key_bytes(&input.key)?;
        let version = requested_version(input.version_id.as_deref())?;
        let checksum_mode = input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
        let box_name = &bucket.record.box_name;
        let m = match version {
            Some(v) => self.client.head_version(box_name, key, v).await,
            None => self.client.head(box_name, key).await,
        }
        .map_err(|e| read_error(e, bucket.versioning, version.is_some()))?;
        let view = meta::view_of(&m);
        let conditions = ReadConditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        };
        conditions.check(&view.etag, modified_ms(&m), false)?;
        let (length, content_range) = match input.range.as_ref() {
            None => (m.size, None),
            Some(r) => {
                let span =
                    r.check(m.size).map_err(|_| s3_error!(InvalidRange, "The requested range is not satisfiable"))?;
                (span.end - span.start, Some(format!("bytes {}-{}/{}", span.start, span.end.saturating_sub(1), m.size)))
            }
        };
        let content_type = input
            .response_content_type
            .or_else(|| (!m.content_type.is_empty()).then(|| m.content_type.clone()))
            .and_then(|t| t.parse().ok());
        let expires = input.response_expires.or_else(|| view.stored.expires.as_deref().and_then(http_date));
        let mut output = HeadObjectOutput {
            content_length: i64::try_from(length).ok(),
            content_range,
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(ETag::Strong(view.etag)),
            last_modified: Some(timestamp(modified_ms(&m))),
            content_type,
            metadata: (!view.user.is_empty()).then_some(view.user),
            cache_control: input.response_cache_control.or(view.stored.cache_control),
            content_disposition: input.response_content_disposition.or(view.stored.content_disposition),
            content_encoding: input.response_content_encoding.or(view.stored.content_encoding),
            content_language: input.response_content_language.or(view.stored.content_language),
            expires,
            version_id: read_version(bucket.versioning, m.hlc),
            ..HeadObjectOutput::default()
        };
        if checksum_mode && output.content_range.is_none() {
            output.checksum_crc32 = view.checksums.checksum_crc32;
            output.checksum_crc32c = view.checksums.checksum_crc32c;
            output.checksum_sha1 = view.checksums.checksum_sha1;
            output.checksum_sha256 = view.checksums.checksum_sha256;
            output.checksum_crc64nvme = view.checksums.checksum_crc64nvme;
        }
        let status =
            if output.content_range.is_some() { http::StatusCode::PARTIAL_CONTENT } else { http::StatusCode::OK };
        Ok(S3Response::with_status(output, status))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let user = self.caller(&req)?;
        let input = req.input;
        let bucket = self.bucket(&user, &input.bucket).await?;
        let key = key_bytes(&input.key)?;
        let version = requested_version(input.version_id.as_deref())?;
        let box_name = &bucket.record.box_name;
        let condition = match &input.if_match {
            Some(ETagCondition::ETag(e)) => {
                Some(Condition::IfMeta { key: meta::ETAG.to_owned(), value: e.value().to_owned() })
            }
            Some(ETagCondition::Any) | None => None,
        };
        let done = match version {
            Some(v) => match self.client.delete_version(box_name, key, v).await {
                // Deleting a version that is not there succeeds, as S3's does.
                Err(ClientError::NotFound { .. }) => {
                    return Ok(S3Response::with_status(
                        DeleteObjectOutput { version_id: input.version_id, ..Default::default() },
                        http::StatusCode::NO_CONTENT,
                    ))
                }
                other => other,
            },
            None => self.client.delete_marked(box_name, key, condition.as_ref()).await,
        }
        .map_err(|e| s3_error(e, Missing::Key))?;
        let output = match version {
            Some(_) => DeleteObjectOutput {
                version_id: input.version_id,
                delete_marker: done.delete_marker.then_some(true),
                ..Default::default()
            },
            None => DeleteObjectOutput {
                version_id: done.delete_marker.then(|| version_id(done.version)),
                delete_marker: done.delete_marker.then_some(true),
                ..Default::default()
            },
        };
        Ok(S3Response::with_status(output, http::StatusCode::NO_CONTENT))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let user = self.caller(&req)?;
        let input = req.input;
        let bucket = self.bucket(&user, &input.bucket).await?;
        let objects = input.delete.objects;
        if objects.len() > LIST_KEYS_MAX {
            return Err(s3_error!(MalformedXML, "a multi-object delete names at most 1000 keys"));
        }
        let mut keys = Vec::with_capacity(objects.len());
        let mut errors = Vec::new();
        for o in &objects {
            match requested_version(o.version_id.as_deref()) {
                Ok(version_id) if !o.key.is_empty() => {
                    keys.push(DeleteKey { key: o.key.as_bytes().to_vec(), condition: None, version_id })
                }
                Ok(_) => errors.push(s3s::dto::Error {
                    code: Some("InvalidArgument".to_owned()),
                    key: Some(o.key.clone()),
                    message: Some("An object key must not be empty".to_owned()),
                    version_id: o.version_id.clone(),
                }),
                Err(_) => errors.push(s3s::dto::Error {
                    code: Some("NoSuchVersion".to_owned()),
                    key: Some(o.key.clone()),
                    message: Some("Invalid version id specified".to_owned()),
                    version_id: o.version_id.clone(),
                }),
            }
        }
        let outcomes = if keys.is_empty() {
            Vec::new()
        } else {
            self.client.delete_many(&bucket.record.box_name, &keys).await.map_err(|e| s3_error(e, Missing::Bucket))?
        };
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        for o in outcomes {
            let key = String::from_utf8_lossy(&o.key).into_owned();
            match o.result {
                Ok(done) => {
                    if quiet {
                        continue;
                    }
                    deleted.push(DeletedObject {
                        key: Some(key),
                        version_id: o.version_id.map(version_id),
                        delete_marker: done.delete_marker.then_some(true),
                        delete_marker_version_id: (done.delete_marker && o.version_id.is_none())
                            .then(|| version_id(done.version)),
                    });
                }
                Err(ClientError::NotFound { .. }) if !quiet => deleted.push(DeletedObject {
                    key: Some(key),
                    version_id: o.version_id.map(version_id),
                    ..Default::default()
                }),
                Err(ClientError::NotFound { .. }) => {}
                Err(e) => {
                    let err = s3_error(e, Missing::Key);
                    errors.push(s3s::dto::Error {
                        code: Some(err.code().as_str().to_owned()),
                        key: Some(key),
                        message: err.message().map(str::to_owned),
                        version_id: o.version_id.map(version_id),
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let user = self.caller(&req)?;
        let input = req.input;
        let bucket = self.bucket(&user, &input.bucket).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.as_deref();
        let max = max_keys(input.max_keys)?;
        let after = input.marker.as_deref().filter(|m| !m.is_empty()).map(|m| cursor_after(m, delimiter));
        let page = list_page(&self.client, &bucket.record.box_name, &prefix, delimiter, after, max).await?;
        let url = input.encoding_type.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let contents = page
            .objects
            .iter()
            .map(|e| {
                let owner = meta::view(&e.user_meta, e.checksum, e.size, e.hlc).owner.map(|o| self.owner_of(&o));
                let mut o = object_of(e, owner);
                o.key = o.key.map(enc);
                o
            })
            .collect();
        let next_marker = (page.truncated && delimiter.is_some()).then(|| page.last.clone().map(enc)).flatten();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            marker: Some(input.marker.map(enc).unwrap_or_default()),
            max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
            is_truncated: Some(page.truncated),
            contents: Some(contents),
            common_prefixes: Some(page.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(enc(p)) }).collect()),
            delimiter: input.delimiter.map(enc),
            next_marker,
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let user = self.caller(&req)?;
        let input = req.input;
        let bucket = self.bucket(&user, &input.bucket).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.as_deref();
        let max = max_keys(input.max_keys)?;
        let after = match (&input.continuation_token, &input.start_after) {
            (Some(t), _) => Some(decode_token(t)?),
            (None, Some(s)) if !s.is_empty() => Some(s.as_bytes().to_vec()),
            _ => None,
        };
        let page = list_page(&self.client, &bucket.record.box_name, &prefix, delimiter, after, max).await?;
        let url = input.encoding_type.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let fetch_owner = input.fetch_owner.unwrap_or(false);
        let contents: Vec<Object> = page
            .objects
            .iter()
            .map(|e| {
                let owner = fetch_owner
                    .then(|| meta::view(&e.user_meta, e.checksum, e.size, e.hlc).owner.map(|o| self.owner_of(&o)))
                    .flatten();
                let mut o = object_of(e, owner);
                o.key = o.key.map(enc);
                o
            })
            .collect();
        let key_count = contents.len() + page.prefixes.len();
        let next =
            page.truncated.then(|| page.last.as_deref().map(|l| encode_token(&cursor_after(l, delimiter)))).flatten();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
            key_count: Some(i32::try_from(key_count).unwrap_or(i32::MAX)),
            continuation_token: input.continuation_token,
            is_truncated: Some(page.truncated),
            next_continuation_token: next,
            contents: Some(contents),
            common_prefixes: Some(page.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(enc(p)) }).collect()),
            delimiter: input.delimiter.map(enc),
            encoding_type: input.encoding_type,
            start_after: input.start_after.map(enc),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_slashes_and_unreserved_bytes() {
        assert_eq!(url_encode("a b/c+d~é"), "a%20b/c%2Bd~%C3%A9");
    }

    #[test]
    fn a_cursor_after_a_common_prefix_passes_all_of_its_keys() {
        assert_eq!(cursor_after("a/", Some("/")), b"a/\xf5".to_vec());
        assert_eq!(cursor_after("a/b", Some("/")), b"a/b".to_vec());
        assert_eq!(cursor_after("a/", None), b"a/".to_vec());
        assert_eq!(decode_token(&encode_token(b"a/\xf5")).expect("token"), b"a/\xf5".to_vec());
    }
}
