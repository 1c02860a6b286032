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
    ByteRange, CandyMeta, ClientError, Condition, DeleteKey, Hlc, ListOptions, MetaReplace, PutOptions, TokioClient,
    Versioning,
};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

use crate::acl::{Acl, Caller, Permission};
use crate::body::{Expected, Source, Upload};
use crate::buckets::{
    Bucket, BucketRecord, Buckets, NewBucketDefaults, PublicAccessBlock, BUCKET_OWNER_ENFORCED, BUCKET_OWNER_PREFERRED,
    OBJECT_WRITER,
};
use crate::conditions::ReadConditions;
use crate::errors::{s3_error, with_delete_marker, Missing};
use crate::ids::{parse_version_id, timestamp, unix_ms, version_id};
use crate::meta::{self, Stored};
use crate::plain::{self, Named, Want};
use crate::policy::{self, Decision, Principal};
use crate::users::{User, UserStore};
use crate::{copy, cors, lifecycle, multipart, objlock, sse, tags, versions};

/// A byte that follows a prefix to make a marker past every key with that prefix: keys are
/// UTF-8, whose bytes are at most 0xF4. (Not 0xFF: the node's version keys store key bytes
/// plus one, and 0xFF has no successor.)
pub const PAST_PREFIX: u8 = 0xF5;

/// Most keys a listing page returns (S3's cap on `max-keys`).
pub const LIST_KEYS_MAX: usize = 1000;

/// The gateway: the node's client, the bucket records and the users.
pub struct Gateway {
    client: TokioClient,
    buckets: Arc<Buckets>,
    users: Arc<UserStore>,
    region: String,
    defaults: NewBucketDefaults,
    keys: Arc<crate::sse::KeyRing>,
}

/// Who asks: a signed user, or `None` for an anonymous request.
type Who = Option<Arc<User>>;

/// One request as access checks see it: who asks, the IAM action, the object key (object
/// operations) and the policy context keys.
pub struct Asker {
    user: Who,
    action: &'static str,
    key: Option<String>,
    ctx: policy::Context,
}

impl Asker {
    fn id(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.canonical_id.as_str())
    }

    fn principal(&self) -> Principal<'_> {
        Principal { canonical_id: self.id(), name: self.user.as_ref().map(|u| u.name.as_str()) }
    }

    /// The same request about object `key`.
    fn on(mut self, key: &str) -> Asker {
        self.key = Some(key.to_owned());
        self
    }

    /// What `bucket`'s policy says of this request (on the object when a key is set).
    fn policy(&self, bucket: &Bucket) -> Decision {
        let Some(p) = &bucket.policy else { return Decision::None };
        let resource = match &self.key {
            Some(k) => format!("arn:aws:s3:::{}/{k}", bucket.record.name),
            None => format!("arn:aws:s3:::{}", bucket.record.name),
        };
        let decision = p.evaluate(&self.principal(), self.action, &resource, &self.ctx);
        // RestrictPublicBuckets: a public policy grants no one but the owner.
        if decision == Decision::Allow
            && p.is_public()
            && bucket.record.public_access_block.is_some_and(|b| b.restrict_public_buckets)
            && self.id() != Some(bucket.record.owner.as_str())
        {
            return Decision::None;
        }
        decision
    }
}

/// Percent-decodes a query-string component (`+` is a space).
pub fn query_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => match bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => out.push(b),
            },
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The policy context keys of a request.
fn context_of<T>(req: &S3Request<T>, user: &Who) -> policy::Context {
    let mut values: Vec<(String, String)> = Vec::new();
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(peer) = req.extensions.get::<crate::front::Peer>() {
        values.push(("aws:sourceip".into(), peer.0.ip().to_string()));
    }
    values.push(("aws:securetransport".into(), "false".into()));
    let now = time::OffsetDateTime::now_utc();
    if let Ok(t) = now.format(&time::format_description::well_known::Rfc3339) {
        values.push(("aws:currenttime".into(), t));
    }
    values.push(("aws:epochtime".into(), now.unix_timestamp().to_string()));
    for (key, name) in [
        ("aws:useragent", "user-agent"),
        ("aws:referer", "referer"),
        ("s3:x-amz-acl", "x-amz-acl"),
        ("s3:x-amz-content-sha256", "x-amz-content-sha256"),
        ("s3:x-amz-copy-source", "x-amz-copy-source"),
        ("s3:x-amz-metadata-directive", "x-amz-metadata-directive"),
        ("s3:x-amz-server-side-encryption", "x-amz-server-side-encryption"),
        ("s3:x-amz-storage-class", "x-amz-storage-class"),
    ] {
        if let Some(v) = header(name) {
            values.push((key.into(), v));
        }
    }
    if let Some(u) = user {
        values.push(("aws:username".into(), u.name.clone()));
        values.push(("aws:userid".into(), u.canonical_id.clone()));
        values.push(("aws:principaltype".into(), "User".into()));
    } else {
        values.push(("aws:principaltype".into(), "Anonymous".into()));
    }
    for kv in req.uri.query().unwrap_or_default().split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let key = match k {
            "prefix" => "s3:prefix",
            "delimiter" => "s3:delimiter",
            "max-keys" => "s3:max-keys",
            "versionId" => "s3:versionid",
            _ => continue,
        };
        values.push((key.into(), query_decode(v)));
    }
    let auth = header("authorization");
    let (signature, auth_type) = match auth.as_deref() {
        Some(a) if a.starts_with("AWS4-") => ("AWS4-HMAC-SHA256", "REST-HEADER"),
        Some(_) => ("AWS", "REST-HEADER"),
        None if req.uri.query().is_some_and(|q| q.contains("X-Amz-Signature=")) => {
            ("AWS4-HMAC-SHA256", "REST-QUERY-STRING")
        }
        None if req.uri.query().is_some_and(|q| q.contains("Signature=")) => ("AWS", "REST-QUERY-STRING"),
        None => ("", ""),
    };
    if !signature.is_empty() {
        values.push(("s3:signatureversion".into(), signature.into()));
        values.push(("s3:authtype".into(), auth_type.into()));
    }
    policy::Context { values }
}

/// What an operation needs on its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Right {
    /// A permission an ACL can grant.
    Acl(Permission),
    /// Only the bucket's owner (its configuration).
    Owner,
    /// Nothing before the object is known (reads check the object's own ACL).
    Object,
}

/// The `x-amz-grant-*` headers an object request carries (S3 has no WRITE grant on objects).
macro_rules! object_grants {
    ($input:expr) => {
        [
            (Permission::Read, $input.grant_read.as_deref()),
            (Permission::ReadAcp, $input.grant_read_acp.as_deref()),
            (Permission::WriteAcp, $input.grant_write_acp.as_deref()),
            (Permission::FullControl, $input.grant_full_control.as_deref()),
        ]
    };
}

/// The `x-amz-grant-*` headers a bucket request carries.
macro_rules! bucket_grants {
    ($input:expr) => {
        [
            (Permission::Read, $input.grant_read.as_deref()),
            (Permission::Write, $input.grant_write.as_deref()),
            (Permission::ReadAcp, $input.grant_read_acp.as_deref()),
            (Permission::WriteAcp, $input.grant_write_acp.as_deref()),
            (Permission::FullControl, $input.grant_full_control.as_deref()),
        ]
    };
}

/// S3's canonical id of anonymous writers.
pub const ANONYMOUS_ID: &str = "65a011a29cdf8ec533ec3d1ccaae921c";

/// The canonical id a write by `asker` is owned by.
fn writer_id(asker: &Asker) -> String {
    asker.id().map_or_else(|| ANONYMOUS_ID.to_owned(), str::to_owned)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn access_denied() -> S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

impl Gateway {
    /// A gateway over `client`.
    pub fn new(
        client: TokioClient,
        buckets: Arc<Buckets>,
        users: Arc<UserStore>,
        region: String,
        defaults: NewBucketDefaults,
        keys: Arc<crate::sse::KeyRing>,
    ) -> Gateway {
        Gateway { client, buckets, users, region, defaults, keys }
    }

    /// The request as access checks see it, asking for IAM action `action`.
    fn asker<T>(&self, req: &S3Request<T>, action: &'static str) -> S3Result<Asker> {
        let user = self.who(req)?;
        let ctx = context_of(req, &user);
        Ok(Asker { user, action, key: None, ctx })
    }

    /// The caller (s3s has checked the signature of a signed one).
    fn who<T>(&self, req: &S3Request<T>) -> S3Result<Who> {
        let Some(creds) = &req.credentials else { return Ok(None) };
        match self.users.snapshot().by_access_key(&creds.access_key) {
            Some(u) => Ok(Some(Arc::clone(u))),
            None => {
                Err(s3_error!(InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records."))
            }
        }
    }

    /// The signed caller of an operation anonymous callers may not use.
    fn signed<T>(&self, req: &S3Request<T>) -> S3Result<Arc<User>> {
        self.who(req)?.ok_or_else(access_denied)
    }

    /// Whether `asker` holds `right` on `bucket`: an explicit policy deny refuses (but never the
    /// owner's own policy operations), the owner may, a policy allow grants, then the ACLs.
    fn bucket_allows(bucket: &Bucket, asker: &Asker, right: Right) -> bool {
        let id = asker.id();
        let owner = bucket.record.owner.as_str();
        if right == Right::Object {
            return true;
        }
        let decision = asker.policy(bucket);
        let policy_op = asker.action.ends_with("BucketPolicy");
        if decision == Decision::Deny && !(id == Some(owner) && policy_op) {
            return false;
        }
        if id == Some(owner) {
            return true;
        }
        if decision == Decision::Allow {
            return true;
        }
        match right {
            Right::Object => true,
            Right::Owner => false,
            Right::Acl(_) if bucket.record.acls_disabled() => false,
            Right::Acl(p) => bucket.record.acl.allows(owner, Caller { id }, p, bucket.record.ignores_public_acls()),
        }
    }

    /// The bucket `name`, for a caller who holds `right` on it.
    async fn bucket(&self, asker: &Asker, name: &str, right: Right) -> S3Result<Arc<Bucket>> {
        let bucket = self.buckets.resolve(name).await?;
        if !Self::bucket_allows(&bucket, asker, right) {
            return Err(access_denied());
        }
        Ok(bucket)
    }

    /// Whether `asker` holds `wanted` on an object of `bucket` with user metadata `entries`.
    fn object_allows(bucket: &Bucket, asker: &Asker, entries: &[(String, String)], wanted: Permission) -> bool {
        let id = asker.id();
        match asker.policy(bucket) {
            Decision::Deny => return false,
            Decision::Allow => return true,
            Decision::None => {}
        }
        if bucket.record.acls_disabled() {
            return id == Some(bucket.record.owner.as_str());
        }
        let owner = entries.iter().find(|(k, _)| k == meta::OWNER).map_or(bucket.record.owner.as_str(), |(_, v)| v);
        let acl = entries.iter().find(|(k, _)| k == meta::ACL).map(|(_, v)| Acl::decode(v)).unwrap_or_default();
        acl.allows(owner, Caller { id }, wanted, bucket.record.ignores_public_acls())
    }

    /// A read's error: a missing key is `AccessDenied` to a caller who may not list the bucket
    /// (S3 does not tell such a caller what exists).
    fn read_refusal(bucket: &Bucket, asker: &Asker, e: S3Error) -> S3Error {
        if *e.code() == S3ErrorCode::NoSuchKey {
            let list = Asker { user: asker.user.clone(), action: "s3:ListBucket", key: None, ctx: asker.ctx.clone() };
            if !Self::bucket_allows(bucket, &list, Right::Acl(Permission::Read)) {
                return access_denied();
            }
        }
        e
    }

    /// Why version `version` of `key` may not be deleted by `who` (object lock), if it may not.
    async fn lock_refusal(
        &self,
        bucket: &Bucket,
        who: &Asker,
        key: &[u8],
        version: Hlc,
        bypass: bool,
    ) -> Option<S3Error> {
        if !bucket.record.object_lock {
            return None;
        }
        let box_name = &bucket.record.box_name;
        let m = self.client.head_version(box_name, key, version).await.ok()?;
        let lock = match objlock::effective(&self.client, box_name, key, version, &m.user_meta).await {
            Ok((lock, _)) => lock,
            Err(e) => return Some(e),
        };
        let may_bypass = bypass && self.may_bypass_governance(bucket, who);
        lock.check_delete(now_ms(), may_bypass).err()
    }

    /// The metadata of the version an object-lock request names, checked: the bucket has object
    /// lock, the caller may read the version, and it is the current one when a change is asked
    /// (the node rewrites a key's current version in place).
    async fn locked_version(
        &self,
        bucket: &Bucket,
        who: &Asker,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<(objlock::Lock, Hlc, Option<Hlc>)> {
        if !bucket.record.object_lock {
            return Err(s3_error!(InvalidRequest, "Bucket is missing Object Lock Configuration"));
        }
        let key_b = key_bytes(key)?;
        let version = requested_version(version)?;
        let box_name = &bucket.record.box_name;
        let m = self
            .head_at(box_name, key_b, version)
            .await
            .map_err(|e| Self::read_refusal(bucket, who, read_error(e, bucket.versioning, version.is_some())))?;
        if !Self::object_allows(bucket, who, &m.user_meta, Permission::WriteAcp)
            && !Self::object_allows(bucket, who, &m.user_meta, Permission::Read)
        {
            return Err(access_denied());
        }
        // A head by key names the current version by its id (zero: the null version).
        let id = version.unwrap_or(m.hlc);
        let (lock, record) = objlock::effective(&self.client, box_name, key_b, id, &m.user_meta).await?;
        Ok((lock, id, record))
    }

    /// The metadata and version id of the version a tagging request names, for a caller who
    /// holds `wanted` on it (the owner, or an ACL grant; a policy decides first).
    async fn tagged_version(
        &self,
        bucket: &Bucket,
        who: &Asker,
        key: &str,
        version: Option<&str>,
        wanted: Permission,
    ) -> S3Result<(CandyMeta, Hlc)> {
        let key_b = key_bytes(key)?;
        let version = requested_version(version)?;
        let box_name = &bucket.record.box_name;
        let m = self
            .head_at(box_name, key_b, version)
            .await
            .map_err(|e| Self::read_refusal(bucket, who, read_error(e, bucket.versioning, version.is_some())))?;
        if !Self::object_allows(bucket, who, &m.user_meta, wanted) {
            return Err(access_denied());
        }
        let id = version.unwrap_or(m.hlc);
        Ok((m, id))
    }

    /// Where part `n` of `key` (its current version, or `version`) lies: first byte, length and
    /// how many parts the object has.
    async fn part_span(
        &self,
        bucket: &Bucket,
        key: &[u8],
        version: Option<Hlc>,
        n: i32,
    ) -> S3Result<(u64, u64, usize)> {
        let box_name = &bucket.record.box_name;
        let m = self
            .head_at(box_name, key, version)
            .await
            .map_err(|e| read_error(e, bucket.versioning, version.is_some()))?;
        self.part_range_of(box_name, key, &m, n).await
    }

    /// [`Self::part_span`] of an object whose metadata is `m`: in plaintext bytes.
    async fn part_range_of(&self, box_name: &str, key: &[u8], m: &CandyMeta, n: i32) -> S3Result<(u64, u64, usize)> {
        let view = meta::view_of(m);
        if let Some(layout) = &view.layout {
            let parts = (layout.parts.len() > 1).then_some(layout.parts.as_slice());
            return multipart::part_range(n, view.size, parts);
        }
        let multipart = view.etag.contains('-');
        let sizes = if multipart { multipart::part_sizes(&self.client, box_name, key, m.hlc).await } else { None };
        multipart::part_range(n, m.size, sizes.as_deref())
    }

    /// The owner's change of a bucket's configuration: `who` must own bucket `name`; `change`
    /// applies to its record, written back conditionally on the version read.
    async fn reconfigure(
        &self,
        who: &Asker,
        name: &str,
        change: impl FnMut(&mut crate::buckets::BucketRecord) -> S3Result<()>,
    ) -> S3Result<crate::buckets::BucketRecord> {
        self.bucket(who, name, Right::Owner).await?;
        self.buckets.update(name, change).await
    }

    /// The metadata of `key`'s version `version`, or of its current one.
    async fn head_at(&self, box_name: &str, key: &[u8], version: Option<Hlc>) -> Result<CandyMeta, ClientError> {
        match version {
            Some(v) => self.client.head_version(box_name, key, v).await,
            None => self.client.head(box_name, key).await,
        }
    }

    /// Whether `who` holds s3:BypassGovernanceRetention (the owner does; others by policy).
    fn may_bypass_governance(&self, bucket: &Bucket, who: &Asker) -> bool {
        if who.id() == Some(bucket.record.owner.as_str()) {
            return true;
        }
        let ask = Asker {
            user: who.user.clone(),
            action: "s3:BypassGovernanceRetention",
            key: who.key.clone(),
            ctx: who.ctx.clone(),
        };
        ask.policy(bucket) == Decision::Allow
    }

    /// The ACL and owner a write sets: from the canned ACL or grant headers, checked against the
    /// bucket's ownership and public access block.
    fn write_acl(
        &self,
        bucket: &Bucket,
        writer: &str,
        canned: Option<&str>,
        grants: &[(Permission, Option<&str>)],
    ) -> S3Result<(Acl, String)> {
        let bucket_owner = bucket.record.owner.as_str();
        let users = self.users.snapshot();
        let acl = match (canned, Acl::from_headers(grants, &users)?) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(InvalidRequest, "Specifying both Canned ACLs and Header Grants is not allowed"))
            }
            (Some(c), None) => Acl::canned(c, writer, bucket_owner)?,
            (None, Some(a)) => a,
            (None, None) => Acl::default(),
        };
        if bucket.record.acls_disabled() {
            if !acl.is_owner_only(bucket_owner) {
                return Err(s3_error!(AccessControlListNotSupported, "The bucket does not allow ACLs"));
            }
            return Ok((Acl::default(), bucket_owner.to_owned()));
        }
        if acl.is_public() && bucket.record.blocks_public_acls() {
            return Err(s3_error!(AccessDenied, "Access Denied: the bucket's public access block refuses public ACLs"));
        }
        let owner = if bucket.record.ownership == BUCKET_OWNER_PREFERRED && canned == Some("bucket-owner-full-control")
        {
            bucket_owner
        } else {
            writer
        };
        Ok((acl, owner.to_owned()))
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

pub fn byte_range(r: Option<&Range>) -> ByteRange {
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

/// The common prefix `key` rolls into under `prefix` and `delimiter` (S3's listing rule): the key
/// up to and including the first delimiter after the prefix; `None` when it has none.
pub fn common_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.get(prefix.len()..)?;
    rest.find(d).map(|i| key[..prefix.len() + i + d.len()].to_owned())
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
            let rolled = common_prefix(&key, prefix, delimiter);
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
        size: Some(i64::try_from(view.size).unwrap_or(i64::MAX)),
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

/// S3's limits on tags: at most 50, keys up to 128 characters, values up to 256.
pub const TAGS_MAX: usize = 50;

/// The tags of a tag set, checked as S3 checks them.
fn bucket_tags(set: &[Tag]) -> S3Result<Vec<(String, String)>> {
    if set.len() > TAGS_MAX {
        return Err(s3_error!(InvalidTag, "A tag set holds at most 50 tags"));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(set.len());
    for t in set {
        let (Some(k), Some(v)) = (&t.key, &t.value) else {
            return Err(s3_error!(InvalidTag, "A tag needs a key and a value"));
        };
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(s3_error!(InvalidTag, "A tag's key has 1 to 128 characters and its value at most 256"));
        }
        if k.starts_with("aws:") {
            return Err(s3_error!(InvalidTag, "Your TagKey cannot be prefixed with aws:"));
        }
        if out.iter().any(|(x, _)| x == k) {
            return Err(s3_error!(InvalidTag, "Cannot provide multiple Tags with the same key"));
        }
        out.push((k.clone(), v.clone()));
    }
    Ok(out)
}

/// An object's owner (its writer, or the bucket owner when ACLs are disabled or it has none)
/// and ACL.
fn object_owner_and_acl(bucket: &Bucket, entries: &[(String, String)]) -> (String, Acl) {
    if bucket.record.acls_disabled() {
        return (bucket.record.owner.clone(), Acl::default());
    }
    let owner =
        entries.iter().find(|(k, _)| k == meta::OWNER).map_or_else(|| bucket.record.owner.clone(), |(_, v)| v.clone());
    let acl = entries.iter().find(|(k, _)| k == meta::ACL).map(|(_, v)| Acl::decode(v)).unwrap_or_default();
    (owner, acl)
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let who = self.asker(&req, "s3:GetObjectTagging")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let (m, id) =
            self.tagged_version(&bucket, &who, &input.key, input.version_id.as_deref(), Permission::Read).await?;
        let (tags, _) =
            tags::effective(&self.client, &bucket.record.box_name, input.key.as_bytes(), id, &m.user_meta).await?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tags::to_set(&tags),
            version_id: read_version(bucket.versioning, id),
        }))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let who = self.asker(&req, "s3:PutObjectTagging")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let new = tags::from_set(&input.tagging.tag_set, tags::OBJECT_TAGS_MAX)?;
        let (m, id) =
            self.tagged_version(&bucket, &who, &input.key, input.version_id.as_deref(), Permission::WriteAcp).await?;
        let box_name = &bucket.record.box_name;
        let (_, record) = tags::effective(&self.client, box_name, input.key.as_bytes(), id, &m.user_meta).await?;
        tags::write(&self.client, box_name, input.key.as_bytes(), id, record, &new).await?;
        Ok(S3Response::new(PutObjectTaggingOutput { version_id: read_version(bucket.versioning, id) }))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let who = self.asker(&req, "s3:DeleteObjectTagging")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let (m, id) =
            self.tagged_version(&bucket, &who, &input.key, input.version_id.as_deref(), Permission::WriteAcp).await?;
        let box_name = &bucket.record.box_name;
        let (_, record) = tags::effective(&self.client, box_name, input.key.as_bytes(), id, &m.user_meta).await?;
        tags::write(&self.client, box_name, input.key.as_bytes(), id, record, &[]).await?;
        Ok(S3Response::with_status(
            DeleteObjectTaggingOutput { version_id: read_version(bucket.versioning, id) },
            http::StatusCode::NO_CONTENT,
        ))
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        let who = self.asker(&req, "s3:GetBucketObjectLockConfiguration")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
        if !bucket.record.object_lock {
            return Err(s3_error!(
                ObjectLockConfigurationNotFoundError,
                "Object Lock configuration does not exist for this bucket"
            ));
        }
        let rule = bucket.record.lock_default.as_ref().map(|d| ObjectLockRule {
            default_retention: Some(DefaultRetention {
                mode: Some(ObjectLockRetentionMode::from(d.mode.clone())),
                days: d.days,
                years: d.years,
            }),
        });
        Ok(S3Response::new(GetObjectLockConfigurationOutput {
            object_lock_configuration: Some(ObjectLockConfiguration {
                object_lock_enabled: Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED)),
                rule,
            }),
        }))
    }

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        let who = self.asker(&req, "s3:PutBucketObjectLockConfiguration")?;
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Owner).await?;
        let Some(config) = input.object_lock_configuration else {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed: no ObjectLockConfiguration"
            ));
        };
        if config.object_lock_enabled.as_ref().map(ObjectLockEnabled::as_str) != Some(ObjectLockEnabled::ENABLED) {
            return Err(s3_error!(MalformedXML, "ObjectLockEnabled must be Enabled"));
        }
        if !bucket.record.object_lock && bucket.versioning != Versioning::Enabled {
            return Err(s3_error!(
                InvalidBucketState,
                "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
            ));
        }
        let default = match config.rule.and_then(|r| r.default_retention) {
            Some(d) => Some(objlock::DefaultRetention::new(
                d.mode.as_ref().map(ObjectLockRetentionMode::as_str),
                d.days,
                d.years,
            )?),
            None => None,
        };
        self.buckets
            .update(&input.bucket, |r| {
                r.object_lock = true;
                r.lock_default = default.clone();
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        let who = self.asker(&req, "s3:GetObjectRetention")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let (lock, _, _) = self.locked_version(&bucket, &who, &input.key, input.version_id.as_deref()).await?;
        let (Some(mode), Some(until)) = (lock.mode, lock.until_ms) else {
            return Err(s3_error!(
                NoSuchObjectLockConfiguration,
                "The specified object does not have a ObjectLock configuration"
            ));
        };
        Ok(S3Response::new(GetObjectRetentionOutput {
            retention: Some(ObjectLockRetention {
                mode: Some(ObjectLockRetentionMode::from(mode)),
                retain_until_date: Some(timestamp(until)),
            }),
        }))
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        let who = self.asker(&req, "s3:PutObjectRetention")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let (current, id, record) = self.locked_version(&bucket, &who, &input.key, input.version_id.as_deref()).await?;
        let retention = input.retention.unwrap_or_default();
        let next = objlock::Lock {
            mode: retention.mode.as_ref().map(|m| m.as_str().to_owned()),
            until_ms: retention.retain_until_date.as_ref().map(unix_ms),
            hold: current.hold,
        };
        if next.mode.is_some() != next.until_ms.is_some() {
            return Err(s3_error!(MalformedXML, "A retention has both a Mode and a RetainUntilDate, or neither"));
        }
        if let Some(m) = &next.mode {
            if m != objlock::GOVERNANCE && m != objlock::COMPLIANCE {
                return Err(s3_error!(MalformedXML, "Unknown retention mode `{m}`"));
            }
        }
        if next.until_ms.is_some_and(|u| u <= now_ms()) {
            return Err(s3_error!(InvalidArgument, "The retain until date must be in the future!"));
        }
        let bypass = input.bypass_governance_retention.unwrap_or(false) && self.may_bypass_governance(&bucket, &who);
        current.check_retention_change(&next, now_ms(), bypass)?;
        objlock::write(&self.client, &bucket.record.box_name, input.key.as_bytes(), id, record, &next).await?;
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        let who = self.asker(&req, "s3:GetObjectLegalHold")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let (lock, _, _) = self.locked_version(&bucket, &who, &input.key, input.version_id.as_deref()).await?;
        let status = if lock.hold { ObjectLockLegalHoldStatus::ON } else { ObjectLockLegalHoldStatus::OFF };
        Ok(S3Response::new(GetObjectLegalHoldOutput {
            legal_hold: Some(ObjectLockLegalHold { status: Some(ObjectLockLegalHoldStatus::from_static(status)) }),
        }))
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        let who = self.asker(&req, "s3:PutObjectLegalHold")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let (current, id, record) = self.locked_version(&bucket, &who, &input.key, input.version_id.as_deref()).await?;
        let hold = match input.legal_hold.and_then(|h| h.status).as_ref().map(ObjectLockLegalHoldStatus::as_str) {
            Some(ObjectLockLegalHoldStatus::ON) => true,
            Some(ObjectLockLegalHoldStatus::OFF) => false,
            _ => return Err(s3_error!(MalformedXML, "A legal hold's Status is ON or OFF")),
        };
        let next = objlock::Lock { hold, ..current };
        objlock::write(&self.client, &bucket.record.box_name, input.key.as_bytes(), id, record, &next).await?;
        Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let who = self.asker(&req, "s3:GetLifecycleConfiguration")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
        if bucket.record.lifecycle.is_empty() {
            return Err(s3_error!(NoSuchLifecycleConfiguration, "The lifecycle configuration does not exist"));
        }
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(lifecycle::to_s3(&bucket.record.lifecycle)),
            ..Default::default()
        }))
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let who = self.asker(&req, "s3:PutLifecycleConfiguration")?;
        let input = req.input;
        self.bucket(&who, &input.bucket, Right::Owner).await?;
        let Some(config) = input.lifecycle_configuration else {
            return Err(s3_error!(MalformedXML, "The XML you provided was not well-formed: no LifecycleConfiguration"));
        };
        let rules = lifecycle::from_s3(&config)?;
        self.buckets
            .update(&input.bucket, |r| {
                r.lifecycle = rules.clone();
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutBucketLifecycleConfigurationOutput::default()))
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        let who = self.asker(&req, "s3:PutLifecycleConfiguration")?;
        self.reconfigure(&who, &req.input.bucket, |r| {
            r.lifecycle.clear();
            Ok(())
        })
        .await?;
        Ok(S3Response::with_status(DeleteBucketLifecycleOutput {}, http::StatusCode::NO_CONTENT))
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let who = self.asker(&req, "s3:GetBucketPolicy")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
        let Some(policy) = bucket.record.policy.clone() else {
            return Err(s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"));
        };
        Ok(S3Response::new(GetBucketPolicyOutput { policy: Some(policy) }))
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let who = self.asker(&req, "s3:PutBucketPolicy")?;
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Owner).await?;
        let parsed = policy::Policy::parse(&input.policy, &input.bucket)?;
        if parsed.is_public() && bucket.record.public_access_block.is_some_and(|b| b.block_public_policy) {
            return Err(s3_error!(
                AccessDenied,
                "Access Denied: the bucket's public access block refuses public policies"
            ));
        }
        let text = input.policy;
        self.buckets
            .update(&input.bucket, |r| {
                r.policy = Some(text.clone());
                Ok(())
            })
            .await?;
        Ok(S3Response::with_status(PutBucketPolicyOutput {}, http::StatusCode::NO_CONTENT))
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        let who = self.asker(&req, "s3:DeleteBucketPolicy")?;
        self.reconfigure(&who, &req.input.bucket, |r| {
            r.policy = None;
            Ok(())
        })
        .await?;
        Ok(S3Response::with_status(DeleteBucketPolicyOutput {}, http::StatusCode::NO_CONTENT))
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        let who = self.asker(&req, "s3:GetEncryptionConfiguration")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
        let Some(d) = bucket.record.encryption.as_ref() else {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("ServerSideEncryptionConfigurationNotFoundError".into()),
                "The server side encryption configuration was not found",
            );
            e.set_status_code(http::StatusCode::NOT_FOUND);
            return Err(e);
        };
        let rule = ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                sse_algorithm: ServerSideEncryption::from(d.algorithm.clone()),
                kms_master_key_id: d.kms_key_id.clone(),
            }),
            bucket_key_enabled: Some(d.bucket_key),
        };
        let config = ServerSideEncryptionConfiguration { rules: vec![rule] };
        Ok(S3Response::new(GetBucketEncryptionOutput { server_side_encryption_configuration: Some(config) }))
    }

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let who = self.asker(&req, "s3:PutEncryptionConfiguration")?;
        let input = req.input;
        self.bucket(&who, &input.bucket, Right::Owner).await?;
        let rules = &input.server_side_encryption_configuration.rules;
        let [rule] = rules.as_slice() else {
            return Err(s3_error!(MalformedXML, "The encryption configuration must hold exactly one rule"));
        };
        let Some(by_default) = &rule.apply_server_side_encryption_by_default else {
            return Err(s3_error!(MalformedXML, "The rule has no ApplyServerSideEncryptionByDefault"));
        };
        let algorithm = by_default.sse_algorithm.as_str().to_owned();
        match algorithm.as_str() {
            "AES256" if by_default.kms_master_key_id.is_some() => {
                return Err(s3_error!(InvalidArgument, "a KMSMasterKeyID is allowed only with the aws:kms algorithm"));
            }
            "AES256" | "aws:kms" => {}
            other => return Err(s3_error!(InvalidArgument, "the encryption algorithm {other} is not supported")),
        }
        // Checked now, so that a default naming a key the gateway lacks fails here, not on a put.
        let default = sse::BucketDefault {
            algorithm,
            kms_key_id: by_default.kms_master_key_id.clone(),
            bucket_key: rule.bucket_key_enabled.unwrap_or(false),
        };
        let probe = sse::request_of(None, None, None, None, None, Some(&default))?;
        if let Some(r) = probe {
            sse::seal(&self.keys, &r)?;
        }
        self.buckets
            .update(&input.bucket, |r| {
                r.encryption = Some(default.clone());
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutBucketEncryptionOutput {}))
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        let who = self.asker(&req, "s3:PutEncryptionConfiguration")?;
        self.reconfigure(&who, &req.input.bucket, |r| {
            r.encryption = None;
            Ok(())
        })
        .await?;
        Ok(S3Response::with_status(DeleteBucketEncryptionOutput {}, http::StatusCode::NO_CONTENT))
    }

    async fn get_bucket_cors(&self, req: S3Request<GetBucketCorsInput>) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let who = self.asker(&req, "s3:GetBucketCORS")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
        if bucket.record.cors.is_empty() {
            return Err(s3_error!(NoSuchCORSConfiguration, "The CORS configuration does not exist"));
        }
        Ok(S3Response::new(GetBucketCorsOutput { cors_rules: Some(cors::to_s3(&bucket.record.cors)) }))
    }

    async fn put_bucket_cors(&self, req: S3Request<PutBucketCorsInput>) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let who = self.asker(&req, "s3:PutBucketCORS")?;
        let input = req.input;
        self.bucket(&who, &input.bucket, Right::Owner).await?;
        let rules = cors::from_s3(&input.cors_configuration)?;
        self.buckets
            .update(&input.bucket, |r| {
                r.cors = rules.clone();
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutBucketCorsOutput {}))
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let who = self.asker(&req, "s3:PutBucketCORS")?;
        self.reconfigure(&who, &req.input.bucket, |r| {
            r.cors.clear();
            Ok(())
        })
        .await?;
        Ok(S3Response::with_status(DeleteBucketCorsOutput {}, http::StatusCode::NO_CONTENT))
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let who = self.asker(&req, "s3:GetObjectAttributes")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let key = key_bytes(&input.key)?;
        let version = requested_version(input.version_id.as_deref())?;
        let box_name = &bucket.record.box_name;
        let m = self
            .head_at(box_name, key, version)
            .await
            .map_err(|e| Self::read_refusal(&bucket, &who, read_error(e, bucket.versioning, version.is_some())))?;
        if !Self::object_allows(&bucket, &who, &m.user_meta, Permission::Read) {
            return Err(access_denied());
        }
        let view = meta::view_of(&m);
        // One header may list several attributes, comma-separated.
        let wants = |a: &str| input.object_attributes.iter().flat_map(|x| x.as_str().split(',')).any(|x| x.trim() == a);
        let parts_count = view.etag.rsplit_once('-').and_then(|(_, n)| n.parse::<i32>().ok());
        let output = GetObjectAttributesOutput {
            e_tag: wants(ObjectAttributes::ETAG).then(|| ETag::Strong(view.etag.clone())),
            object_size: wants(ObjectAttributes::OBJECT_SIZE)
                .then(|| i64::try_from(meta::view_of(&m).size).unwrap_or(i64::MAX)),
            storage_class: wants(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            checksum: (wants(ObjectAttributes::CHECKSUM)
                && [
                    &view.checksums.checksum_crc32,
                    &view.checksums.checksum_crc32c,
                    &view.checksums.checksum_sha1,
                    &view.checksums.checksum_sha256,
                    &view.checksums.checksum_crc64nvme,
                ]
                .iter()
                .any(|c| c.is_some()))
            .then(|| view.checksums.clone()),
            object_parts: (wants(ObjectAttributes::OBJECT_PARTS) && parts_count.is_some())
                .then(|| GetObjectAttributesParts { total_parts_count: parts_count, ..Default::default() }),
            last_modified: Some(timestamp(modified_ms(&m))),
            version_id: read_version(bucket.versioning, m.hlc),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn get_bucket_acl(&self, req: S3Request<GetBucketAclInput>) -> S3Result<S3Response<GetBucketAclOutput>> {
        let who = self.asker(&req, "s3:GetBucketAcl")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Acl(Permission::ReadAcp)).await?;
        let owner = self.owner_of(&bucket.record.owner);
        let grants = bucket.record.acl.to_s3(&owner, &self.users.snapshot());
        Ok(S3Response::new(GetBucketAclOutput { owner: Some(owner), grants: Some(grants) }))
    }

    async fn put_bucket_acl(&self, req: S3Request<PutBucketAclInput>) -> S3Result<S3Response<PutBucketAclOutput>> {
        let who = self.asker(&req, "s3:PutBucketAcl")?;
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Acl(Permission::WriteAcp)).await?;
        let owner = bucket.record.owner.clone();
        let users = self.users.snapshot();
        let grants = bucket_grants!(input);
        let acl = match (input.acl.as_ref(), Acl::from_headers(&grants, &users)?, input.access_control_policy.as_ref())
        {
            (Some(c), None, None) => Acl::canned(c.as_str(), &owner, &owner)?,
            (None, Some(a), None) => a,
            (None, None, Some(p)) => Acl::from_policy(p, &owner, &users)?,
            (None, None, None) => {
                return Err(s3_error!(MissingSecurityHeader, "Your request was missing a required header: an ACL"))
            }
            _ => return Err(s3_error!(InvalidRequest, "Give one of a canned ACL, grant headers or an ACL document")),
        };
        if bucket.record.acls_disabled() && !acl.is_owner_only(&owner) {
            return Err(s3_error!(AccessControlListNotSupported, "The bucket does not allow ACLs"));
        }
        if acl.is_public() && bucket.record.blocks_public_acls() {
            return Err(s3_error!(AccessDenied, "Access Denied: the bucket's public access block refuses public ACLs"));
        }
        self.buckets
            .update(&input.bucket, |r| {
                r.acl = acl.clone();
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    async fn get_object_acl(&self, req: S3Request<GetObjectAclInput>) -> S3Result<S3Response<GetObjectAclOutput>> {
        let who = self.asker(&req, "s3:GetObjectAcl")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let key = key_bytes(&input.key)?;
        let version = requested_version(input.version_id.as_deref())?;
        let box_name = &bucket.record.box_name;
        let m = self
            .head_at(box_name, key, version)
            .await
            .map_err(|e| Self::read_refusal(&bucket, &who, read_error(e, bucket.versioning, version.is_some())))?;
        if !Self::object_allows(&bucket, &who, &m.user_meta, Permission::ReadAcp) {
            return Err(access_denied());
        }
        let (owner, acl) = object_owner_and_acl(&bucket, &m.user_meta);
        let owner = self.owner_of(&owner);
        let grants = acl.to_s3(&owner, &self.users.snapshot());
        Ok(S3Response::new(GetObjectAclOutput { owner: Some(owner), grants: Some(grants), ..Default::default() }))
    }

    async fn put_object_acl(&self, req: S3Request<PutObjectAclInput>) -> S3Result<S3Response<PutObjectAclOutput>> {
        let who = self.asker(&req, "s3:PutObjectAcl")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let key = key_bytes(&input.key)?;
        let box_name = &bucket.record.box_name;
        let m = self
            .client
            .head(box_name, key)
            .await
            .map_err(|e| Self::read_refusal(&bucket, &who, read_error(e, bucket.versioning, false)))?;
        if let Some(v) = requested_version(input.version_id.as_deref())? {
            if v != m.hlc {
                return Err(s3_error!(
                    NotImplemented,
                    "Setting the ACL of a version that is not the current one is not supported"
                ));
            }
        }
        if !Self::object_allows(&bucket, &who, &m.user_meta, Permission::WriteAcp) {
            return Err(access_denied());
        }
        let (owner, _) = object_owner_and_acl(&bucket, &m.user_meta);
        let users = self.users.snapshot();
        let grants = object_grants!(input);
        let acl = match (input.acl.as_ref(), Acl::from_headers(&grants, &users)?, input.access_control_policy.as_ref())
        {
            (Some(c), None, None) => Acl::canned(c.as_str(), &owner, &bucket.record.owner)?,
            (None, Some(a), None) => a,
            (None, None, Some(p)) => Acl::from_policy(p, &owner, &users)?,
            (None, None, None) => {
                return Err(s3_error!(MissingSecurityHeader, "Your request was missing a required header: an ACL"))
            }
            _ => return Err(s3_error!(InvalidRequest, "Give one of a canned ACL, grant headers or an ACL document")),
        };
        if bucket.record.acls_disabled() && !acl.is_owner_only(&bucket.record.owner) {
            return Err(s3_error!(AccessControlListNotSupported, "The bucket does not allow ACLs"));
        }
        if acl.is_public() && bucket.record.blocks_public_acls() {
            return Err(s3_error!(AccessDenied, "Access Denied: the bucket's public access block refuses public ACLs"));
        }
        let mut user_meta: Vec<(String, String)> =
            m.user_meta.iter().filter(|(k, _)| k != meta::ACL).cloned().collect();
        if !acl.grants.is_empty() {
            user_meta.push((meta::ACL.to_owned(), acl.encode()));
        }
        let replace =
            MetaReplace { content_type: (!m.content_type.is_empty()).then(|| m.content_type.clone()), user_meta };
        self.client
            .set_meta(box_name, key, &replace, Some(&Condition::IfVersion(m.hlc)))
            .await
            .map_err(|e| s3_error(e, Missing::Key))?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        let who = self.asker(&req, "s3:GetBucketOwnershipControls")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
        if bucket.record.ownership.is_empty() {
            return Err(s3_error!(OwnershipControlsNotFoundError, "The bucket ownership controls were not found"));
        }
        let rule = OwnershipControlsRule { object_ownership: ObjectOwnership::from(bucket.record.ownership.clone()) };
        Ok(S3Response::new(GetBucketOwnershipControlsOutput {
            ownership_controls: Some(OwnershipControls { rules: vec![rule] }),
        }))
    }

    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        let who = self.asker(&req, "s3:PutBucketOwnershipControls")?;
        let input = req.input;
        self.bucket(&who, &input.bucket, Right::Owner).await?;
        let [rule] = input.ownership_controls.rules.as_slice() else {
            return Err(s3_error!(MalformedXML, "Ownership controls hold exactly one rule"));
        };
        let ownership = match rule.object_ownership.as_str() {
            o @ (BUCKET_OWNER_ENFORCED | BUCKET_OWNER_PREFERRED | OBJECT_WRITER) => o.to_owned(),
            other => return Err(s3_error!(MalformedXML, "Unknown object ownership `{other}`")),
        };
        self.buckets
            .update(&input.bucket, |r| {
                if ownership == BUCKET_OWNER_ENFORCED && !r.acl.is_owner_only(&r.owner) {
                    return Err(s3_error!(
                        InvalidBucketAclWithObjectOwnership,
                        "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
                    ));
                }
                r.ownership = ownership.clone();
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutBucketOwnershipControlsOutput {}))
    }

    async fn delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        let who = self.asker(&req, "s3:PutBucketOwnershipControls")?;
        self.reconfigure(&who, &req.input.bucket, |r| {
            r.ownership = String::new();
            Ok(())
        })
        .await?;
        Ok(S3Response::with_status(DeleteBucketOwnershipControlsOutput {}, http::StatusCode::NO_CONTENT))
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        let who = self.asker(&req, "s3:GetBucketPublicAccessBlock")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
        let Some(p) = bucket.record.public_access_block else {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
                "The public access block configuration was not found",
            );
            e.set_status_code(http::StatusCode::NOT_FOUND);
            return Err(e);
        };
        Ok(S3Response::new(GetPublicAccessBlockOutput {
            public_access_block_configuration: Some(PublicAccessBlockConfiguration {
                block_public_acls: Some(p.block_public_acls),
                ignore_public_acls: Some(p.ignore_public_acls),
                block_public_policy: Some(p.block_public_policy),
                restrict_public_buckets: Some(p.restrict_public_buckets),
            }),
        }))
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        let who = self.asker(&req, "s3:PutBucketPublicAccessBlock")?;
        let input = req.input;
        self.bucket(&who, &input.bucket, Right::Owner).await?;
        let c = input.public_access_block_configuration;
        let block = PublicAccessBlock {
            block_public_acls: c.block_public_acls.unwrap_or(false),
            ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
            block_public_policy: c.block_public_policy.unwrap_or(false),
            restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
        };
        self.buckets
            .update(&input.bucket, |r| {
                r.public_access_block = Some(block);
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutPublicAccessBlockOutput {}))
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        let who = self.asker(&req, "s3:PutBucketPublicAccessBlock")?;
        self.reconfigure(&who, &req.input.bucket, |r| {
            r.public_access_block = None;
            Ok(())
        })
        .await?;
        Ok(S3Response::with_status(DeletePublicAccessBlockOutput {}, http::StatusCode::NO_CONTENT))
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        let who = self.asker(&req, "s3:GetBucketPolicyStatus")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
        // S3's policy status reads the bucket policy alone (ACLs do not count).
        let public = bucket.policy.as_ref().is_some_and(|p| p.is_public());
        Ok(S3Response::new(GetBucketPolicyStatusOutput {
            policy_status: Some(PolicyStatus { is_public: Some(public) }),
        }))
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let who = self.asker(&req, "s3:GetBucketTagging")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
        if bucket.record.tags.is_empty() {
            return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
        }
        let tag_set =
            bucket.record.tags.iter().map(|(k, v)| Tag { key: Some(k.clone()), value: Some(v.clone()) }).collect();
        Ok(S3Response::new(GetBucketTaggingOutput { tag_set }))
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let who = self.asker(&req, "s3:PutBucketTagging")?;
        let input = req.input;
        self.bucket(&who, &input.bucket, Right::Owner).await?;
        let tags = bucket_tags(&input.tagging.tag_set)?;
        self.buckets
            .update(&input.bucket, |r| {
                r.tags = tags.clone();
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutBucketTaggingOutput {}))
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        let who = self.asker(&req, "s3:PutBucketTagging")?;
        self.reconfigure(&who, &req.input.bucket, |r| {
            r.tags.clear();
            Ok(())
        })
        .await?;
        Ok(S3Response::with_status(DeleteBucketTaggingOutput {}, http::StatusCode::NO_CONTENT))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let who = self.asker(&req, "s3:PutObject")?.on(&req.input.key);
        let bucket = self.bucket(&who, &req.input.bucket, Right::Acl(Permission::Write)).await?;
        key_bytes(&req.input.key)?;
        let input = &req.input;
        let grants = object_grants!(input);
        let (acl, owner) =
            self.write_acl(&bucket, &writer_id(&who), input.acl.as_ref().map(ObjectCannedACL::as_str), &grants)?;
        // The lock and tags go with the upload's metadata, committed with the object.
        let lock = objlock::for_put(
            bucket.record.object_lock,
            bucket.record.lock_default.as_ref(),
            input.object_lock_mode.as_ref().map(ObjectLockMode::as_str),
            input.object_lock_retain_until_date.as_ref().map(unix_ms),
            input.object_lock_legal_hold_status.as_ref().map(ObjectLockLegalHoldStatus::as_str),
            now_ms(),
        )?;
        let mut extra = lock.entries();
        if let Some(h) = &input.tagging {
            extra.extend(tags::entry(&tags::from_header(h)?));
        }
        let customer = sse::customer_key!(input)?;
        let sealed = sse::requested!(input, customer, bucket.record.encryption.as_ref())?
            .map(|r| sse::seal(&self.keys, &r).map(|(s, _)| s))
            .transpose()?;
        let output = multipart::create(&self.client, &bucket, &owner, &acl, extra, sealed, req.input).await?;
        Ok(S3Response::new(output))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let who = self.asker(&req, "s3:PutBucketVersioning")?;
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Owner).await?;
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
        let who = self.asker(&req, "s3:GetBucketVersioning")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
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
        let who = self.asker(&req, "s3:ListBucketVersions")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Acl(Permission::Read)).await?;
        let owner = |id: &str| self.owner_of(id);
        Ok(S3Response::new(versions::list(&self.client, &bucket, owner, req.input).await?))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let who = self.asker(&req, "s3:PutObject")?.on(&req.input.key);
        let input = req.input;
        let target = self.bucket(&who, &input.bucket, Right::Acl(Permission::Write)).await?;
        key_bytes(&input.key)?;
        let source = copy::source_of(&input.copy_source)?;
        let source_bucket = self.bucket(&who, &source.bucket, Right::Object).await?;
        let may_read =
            |entries: &[(String, String)]| Self::object_allows(&source_bucket, &who, entries, Permission::Read);
        let grants = object_grants!(input);
        let (acl, owner) =
            self.write_acl(&target, &writer_id(&who), input.acl.as_ref().map(ObjectCannedACL::as_str), &grants)?;
        let (mut output, hlc) =
            copy::copy_object(&self.client, &self.keys, &source_bucket, &target, (&owner, &acl), &may_read, input)
                .await?;
        output.version_id = written_version(target.versioning, hlc);
        Ok(S3Response::new(output))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let who = self.asker(&req, "s3:PutObject")?.on(&req.input.key);
        let input = req.input;
        let target = self.bucket(&who, &input.bucket, Right::Acl(Permission::Write)).await?;
        let source = copy::source_of(&input.copy_source)?;
        let source_bucket = self.bucket(&who, &source.bucket, Right::Object).await?;
        let may_read =
            |entries: &[(String, String)]| Self::object_allows(&source_bucket, &who, entries, Permission::Read);
        let output =
            multipart::upload_part_copy(&self.client, &self.keys, &source_bucket, &target, &may_read, input).await?;
        Ok(S3Response::new(output))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let who = self.asker(&req, "s3:PutObject")?.on(&req.input.key);
        let bucket = self.bucket(&who, &req.input.bucket, Right::Acl(Permission::Write)).await?;
        let output =
            multipart::upload_part(&self.client, &self.keys, &bucket, &req.headers, req.trailing_headers, req.input)
                .await?;
        Ok(S3Response::new(output))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let who = self.asker(&req, "s3:PutObject")?.on(&req.input.key);
        let bucket = self.bucket(&who, &req.input.bucket, Right::Acl(Permission::Write)).await?;
        let (mut output, done) = multipart::complete(&self.client, &bucket, req.input).await?;
        output.version_id = written_version(bucket.versioning, done.hlc);
        Ok(S3Response::new(output))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let who = self.asker(&req, "s3:AbortMultipartUpload")?.on(&req.input.key);
        let bucket = self.bucket(&who, &req.input.bucket, Right::Acl(Permission::Write)).await?;
        multipart::abort(&self.client, &bucket, &req.input).await?;
        Ok(S3Response::with_status(AbortMultipartUploadOutput::default(), http::StatusCode::NO_CONTENT))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let who = self.asker(&req, "s3:ListMultipartUploadParts")?.on(&req.input.key);
        let bucket = self.bucket(&who, &req.input.bucket, Right::Acl(Permission::Read)).await?;
        let owner = self.owner_of(&bucket.record.owner);
        Ok(S3Response::new(multipart::list_parts(&self.client, &bucket, owner, req.input).await?))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let who = self.asker(&req, "s3:ListBucketMultipartUploads")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Acl(Permission::Read)).await?;
        let owner = self.owner_of(&bucket.record.owner);
        Ok(S3Response::new(multipart::list_uploads(&self.client, &bucket, owner, req.input).await?))
    }

    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let user = self.signed(&req)?;
        let input = req.input;
        let max = match input.max_buckets {
            None => usize::MAX,
            Some(n) if (1..=10_000).contains(&n) => usize::try_from(n).unwrap_or(usize::MAX),
            Some(_) => return Err(s3_error!(InvalidArgument, "max-buckets must be between 1 and 10000")),
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = input.continuation_token.as_deref().map(decode_token).transpose()?;
        let mut buckets = Vec::new();
        let mut next = None;
        // Records list in name order.
        for (name, owner, created_ms) in self.buckets.list().await? {
            if owner != user.canonical_id || !name.starts_with(&prefix) {
                continue;
            }
            if after.as_ref().is_some_and(|a| name.as_bytes() <= a.as_slice()) {
                continue;
            }
            if buckets.len() == max {
                next =
                    buckets.last().and_then(|b: &s3s::dto::Bucket| b.name.as_ref()).map(|n| encode_token(n.as_bytes()));
                break;
            }
            buckets.push(s3s::dto::Bucket {
                name: Some(name),
                creation_date: Some(timestamp(created_ms)),
                bucket_region: Some(self.region.clone()),
            });
        }
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner_of(&user.canonical_id)),
            continuation_token: next,
            prefix: input.prefix,
        }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let user = self.signed(&req)?;
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
        let ownership = match input.object_ownership.as_ref().map(ObjectOwnership::as_str) {
            None => self.defaults.ownership.clone(),
            Some(o @ (BUCKET_OWNER_ENFORCED | BUCKET_OWNER_PREFERRED | OBJECT_WRITER)) => o.to_owned(),
            Some(other) => return Err(s3_error!(InvalidArgument, "Invalid x-amz-object-ownership `{other}`")),
        };
        let users = self.users.snapshot();
        let grants = bucket_grants!(input);
        let acl = match (input.acl.as_ref(), Acl::from_headers(&grants, &users)?) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(InvalidRequest, "Specifying both Canned ACLs and Header Grants is not allowed"))
            }
            (Some(c), None) => Acl::canned(c.as_str(), &user.canonical_id, &user.canonical_id)?,
            (None, Some(a)) => a,
            (None, None) => Acl::default(),
        };
        if ownership == BUCKET_OWNER_ENFORCED && !acl.is_owner_only(&user.canonical_id) {
            return Err(s3_error!(
                InvalidBucketAclWithObjectOwnership,
                "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
            ));
        }
        let public_access_block = self.defaults.public_access_block;
        if acl.is_public() && public_access_block.is_some_and(|p| p.block_public_acls) {
            return Err(s3_error!(AccessDenied, "Access Denied: new buckets block public ACLs"));
        }
        let record = BucketRecord {
            name: input.bucket.clone(),
            box_name: String::new(),
            owner: user.canonical_id.clone(),
            created_ms: 0,
            region,
            object_lock: lock,
            acl,
            ownership,
            public_access_block,
            tags: Vec::new(),
            cors: Vec::new(),
            policy: None,
            lifecycle: Vec::new(),
            lock_default: None,
            encryption: None,
        };
        self.buckets.create(record).await?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{}", input.bucket)) }))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let who = self.asker(&req, "s3:ListBucket")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Acl(Permission::Read)).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(bucket.record.region.clone()),
            ..Default::default()
        }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let who = self.asker(&req, "s3:DeleteBucket")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
        self.buckets.delete(&bucket).await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let who = self.asker(&req, "s3:GetBucketLocation")?;
        let bucket = self.bucket(&who, &req.input.bucket, Right::Owner).await?;
        // us-east-1 is S3's empty location constraint.
        let location =
            (bucket.record.region != "us-east-1").then(|| BucketLocationConstraint::from(bucket.record.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput { location_constraint: location }))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let who = self.asker(&req, "s3:PutObject")?.on(&req.input.key);
        let trailers = req.trailing_headers.clone();
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Acl(Permission::Write)).await?;
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
        let grants = object_grants!(input);
        let (acl, owner) =
            self.write_acl(&bucket, &writer_id(&who), input.acl.as_ref().map(ObjectCannedACL::as_str), &grants)?;
        let lock = objlock::for_put(
            bucket.record.object_lock,
            bucket.record.lock_default.as_ref(),
            input.object_lock_mode.as_ref().map(ObjectLockMode::as_str),
            input.object_lock_retain_until_date.as_ref().map(unix_ms),
            input.object_lock_legal_hold_status.as_ref().map(ObjectLockLegalHoldStatus::as_str),
            now_ms(),
        )?;
        let mut user_meta = meta::entries(input.metadata.as_ref(), &stored, Some(&owner), Some(&acl));
        user_meta.extend(lock.entries());
        if let Some(h) = &input.tagging {
            user_meta.extend(tags::entry(&tags::from_header(h)?));
        }
        let customer = sse::customer_key!(input)?;
        let sealing = sse::requested!(input, customer, bucket.record.encryption.as_ref())?
            .map(|r| sse::seal(&self.keys, &r))
            .transpose()?;
        if let Some((sealed, _)) = &sealing {
            user_meta.extend(sealed.entries());
        }
        let options = PutOptions {
            content_type: input.content_type.as_ref().map(ToString::to_string),
            user_meta,
            size: length.map(|n| if sealing.is_some() { sse::stored_len(n) } else { n }),
            condition,
            digests: Vec::new(),
        };
        let mut upload = Upload::new(input.body, expected, trailers);
        let source = Source::put(&mut upload)
            .sealed(sealing.as_ref().map(|(_, k)| k), sealing.as_ref().is_none_or(|(s, _)| s.md5_etag()));
        let result = self.client.put(&bucket.record.box_name, key, &options, source).await;
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
        let mut output = PutObjectOutput {
            e_tag: Some(ETag::Strong(sse::shown_etag(sealing.as_ref(), computed.md5_hex))),
            version_id: written_version(bucket.versioning, done.hlc),
            checksum_crc32: checksums.checksum_crc32,
            checksum_crc32c: checksums.checksum_crc32c,
            checksum_sha1: checksums.checksum_sha1,
            checksum_sha256: checksums.checksum_sha256,
            checksum_crc64nvme: checksums.checksum_crc64nvme,
            size: i64::try_from(computed.length).ok(),
            ..PutObjectOutput::default()
        };
        sse::set_echo!(output, sealing.as_ref().map(|(s, _)| s.echo()).unwrap_or_default(), context);
        Ok(S3Response::new(output))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let who = self.asker(&req, "s3:GetObject")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let key = key_bytes(&input.key)?;
        let version = requested_version(input.version_id.as_deref())?;
        let mut parts_count = None;
        let want = match input.part_number {
            Some(_) if input.range.is_some() => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Cannot specify both Range header and partNumber query parameter"
                ));
            }
            Some(n) => {
                let (first, len, count) = self.part_span(&bucket, key, version, n).await?;
                parts_count = Some(count);
                if len == 0 {
                    Want::Whole
                } else {
                    Want::Span { first, len }
                }
            }
            None => input.range.map_or(Want::Whole, Want::Range),
        };
        let customer = sse::customer_key!(input)?;
        let checksum_mode = input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
        let box_name = &bucket.record.box_name;
        let get = self
            .client
            .get_version(box_name, key, want.node_range(), version)
            .await
            .map_err(|e| Self::read_refusal(&bucket, &who, read_error(e, bucket.versioning, version.is_some())))?;
        if !Self::object_allows(&bucket, &who, &get.meta().user_meta, Permission::Read) {
            return Err(access_denied());
        }
        let plain =
            plain::finish(&self.client, &self.keys, get, Named { box_name, key, version }, &want, customer.as_ref())
                .await?;
        let (m, view) = (&plain.meta, &plain.view);
        let conditions = ReadConditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        };
        // A failed condition drops the stream, which cancels the node's get.
        conditions.check(&view.etag, modified_ms(m), false)?;
        let (first, length) = (plain.first, plain.length);
        let content_range = (input.range.is_some() || parts_count.is_some_and(|c| c > 1)).then(|| {
            let last = (first + length).saturating_sub(1);
            format!("bytes {first}-{last}/{}", plain.total)
        });
        let content_type = input
            .response_content_type
            .or_else(|| (!m.content_type.is_empty()).then(|| m.content_type.clone()))
            .and_then(|t| t.parse().ok());
        let expires = input.response_expires.or_else(|| view.stored.expires.as_deref().and_then(http_date));
        let echo = view.sealed.as_ref().map(sse::Sealed::echo).unwrap_or_default();
        let view = view.clone();
        let m = plain.meta;
        let mut output = GetObjectOutput {
            body: Some(plain.body.into_blob()),
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
            parts_count: parts_count.and_then(|c| i32::try_from(c).ok()),
            tag_count: {
                let n = m
                    .user_meta
                    .iter()
                    .find(|(k, _)| k == tags::ENTRY)
                    .and_then(|(_, v)| serde_json::from_str::<tags::Tags>(v).ok())
                    .map_or(0, |t| t.len());
                (n > 0).then(|| i32::try_from(n).unwrap_or(i32::MAX))
            },
            ..GetObjectOutput::default()
        };
        sse::set_echo!(output, echo);
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
        let who = self.asker(&req, "s3:GetObject")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let key = key_bytes(&input.key)?;
        let version = requested_version(input.version_id.as_deref())?;
        let checksum_mode = input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
        let box_name = &bucket.record.box_name;
        let m = self
            .head_at(box_name, key, version)
            .await
            .map_err(|e| Self::read_refusal(&bucket, &who, read_error(e, bucket.versioning, version.is_some())))?;
        if !Self::object_allows(&bucket, &who, &m.user_meta, Permission::Read) {
            return Err(access_denied());
        }
        let view = meta::view_of(&m);
        let conditions = ReadConditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        };
        conditions.check(&view.etag, modified_ms(&m), false)?;
        let customer = sse::customer_key!(input)?;
        match &view.sealed {
            Some(sealed) => {
                sealed.open(&self.keys, customer.as_ref())?;
            }
            None if customer.is_some() => {
                return Err(s3_error!(InvalidRequest, "The encryption parameters are not applicable to this object."));
            }
            None => {}
        }
        let total = view.size;
        let mut parts_count = None;
        let (length, content_range) = match input.range.as_ref() {
            None if input.part_number.is_some() => {
                let n = input.part_number.unwrap_or(1);
                let (first, len, count) = self.part_range_of(box_name, key, &m, n).await?;
                parts_count = Some(count);
                let range = (count > 1).then(|| format!("bytes {first}-{}/{total}", (first + len).saturating_sub(1)));
                (len, range)
            }
            None => (total, None),
            Some(r) => {
                let span =
                    r.check(total).map_err(|_| s3_error!(InvalidRange, "The requested range is not satisfiable"))?;
                (span.end - span.start, Some(format!("bytes {}-{}/{total}", span.start, span.end.saturating_sub(1))))
            }
        };
        let content_type = input
            .response_content_type
            .or_else(|| (!m.content_type.is_empty()).then(|| m.content_type.clone()))
            .and_then(|t| t.parse().ok());
        let expires = input.response_expires.or_else(|| view.stored.expires.as_deref().and_then(http_date));
        let echo = view.sealed.as_ref().map(sse::Sealed::echo).unwrap_or_default();
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
            parts_count: parts_count.and_then(|c| i32::try_from(c).ok()),
            ..HeadObjectOutput::default()
        };
        sse::set_echo!(output, echo);
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
        let who = self.asker(&req, "s3:DeleteObject")?.on(&req.input.key);
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Acl(Permission::Write)).await?;
        let key = key_bytes(&input.key)?;
        let version = requested_version(input.version_id.as_deref())?;
        let box_name = &bucket.record.box_name;
        let condition = match &input.if_match {
            Some(ETagCondition::ETag(e)) => {
                Some(Condition::IfMeta { key: meta::ETAG.to_owned(), value: e.value().to_owned() })
            }
            Some(ETagCondition::Any) | None => None,
        };
        if let Some(v) = version {
            let bypass = input.bypass_governance_retention.unwrap_or(false);
            if let Some(refusal) = self.lock_refusal(&bucket, &who, key, v, bypass).await {
                return Err(refusal);
            }
        }
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
        let who = self.asker(&req, "s3:DeleteObject")?;
        let input = req.input;
        // Each key is checked on its own (a policy may allow or deny deletes by key).
        let bucket = self.bucket(&who, &input.bucket, Right::Object).await?;
        let objects = input.delete.objects;
        if objects.len() > LIST_KEYS_MAX {
            return Err(s3_error!(MalformedXML, "a multi-object delete names at most 1000 keys"));
        }
        let mut keys = Vec::with_capacity(objects.len());
        let mut errors = Vec::new();
        for o in &objects {
            let per_key =
                Asker { user: who.user.clone(), action: who.action, key: Some(o.key.clone()), ctx: who.ctx.clone() };
            if !Self::bucket_allows(&bucket, &per_key, Right::Acl(Permission::Write)) {
                errors.push(s3s::dto::Error {
                    code: Some("AccessDenied".to_owned()),
                    key: Some(o.key.clone()),
                    message: Some("Access Denied".to_owned()),
                    version_id: o.version_id.clone(),
                });
                continue;
            }
            if let Ok(Some(v)) = requested_version(o.version_id.as_deref()) {
                let bypass = input.bypass_governance_retention.unwrap_or(false);
                if let Some(refusal) = self.lock_refusal(&bucket, &per_key, o.key.as_bytes(), v, bypass).await {
                    errors.push(s3s::dto::Error {
                        code: Some(refusal.code().as_str().to_owned()),
                        key: Some(o.key.clone()),
                        message: refusal.message().map(str::to_owned),
                        version_id: o.version_id.clone(),
                    });
                    continue;
                }
            }
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
        let who = self.asker(&req, "s3:ListBucket")?;
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Acl(Permission::Read)).await?;
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
        let who = self.asker(&req, "s3:ListBucket")?;
        let input = req.input;
        let bucket = self.bucket(&who, &input.bucket, Right::Acl(Permission::Read)).await?;
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
