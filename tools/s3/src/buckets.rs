//! Buckets: each S3 bucket is one Box of the node, described by a record in the gateway's
//! reserved Box.
//!
//! Invariants:
//! - The reserved Box is `sthree-candybox-s3`. S3 forbids bucket names that start with
//!   `sthree-`, so no bucket can be (or collide with) it.
//! - A bucket whose name is also a valid Box name (no dots) is the Box of the same name, so
//!   operators see it under its own name; a name with dots is the Box `xn--` + 32 hex digits of
//!   its SHA-256 (S3 forbids the `xn--` prefix too, so that Box never collides with another
//!   bucket's).
//! - The record `bucket/NAME` is written with a conditional write (if absent, or if its version
//!   is the one read), never under an in-process lock, so several gateways in front of one node
//!   stay correct: of two gateways creating the same bucket, exactly one record is written.
//! - Creation writes the record, then the Box; deletion deletes the Box, then the record. A
//!   crash between leaves a record without its Box: the bucket answers `NoSuchBucket` to
//!   everyone but its owner, whose next `CreateBucket` makes the Box.
//! - Resolved buckets are cached for `ttl` (a setting, 2 s by default): a bucket deleted
//!   through another gateway is seen as gone at most that late, and then the node's own
//!   `BoxNotFound` answers `NoSuchBucket`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use candybox_wire::client::{ClientError, Condition, Hlc, ListOptions, PutOptions, TokioClient, Versioning};
use s3s::{s3_error, S3Error, S3Result};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::acl::Acl;
use crate::errors::{s3_error, Missing};

/// The Box holding the gateway's own records.
pub const RESERVED_BOX: &str = "sthree-candybox-s3";

const RECORD_PREFIX: &str = "bucket/";

/// Most attempts of a record update racing other gateways.
const UPDATE_TRIES_MAX: usize = 16;

/// What the gateway keeps of a bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BucketRecord {
    /// The bucket's name.
    pub name: String,
    /// The Box that holds its objects.
    pub box_name: String,
    /// The owner's canonical id.
    pub owner: String,
    /// When it was created (Unix ms).
    pub created_ms: u64,
    /// The region it was created in (its `LocationConstraint`).
    pub region: String,
    /// Object lock was enabled at creation.
    #[serde(default)]
    pub object_lock: bool,
    /// The bucket's grants besides its owner's.
    #[serde(default)]
    pub acl: Acl,
    /// S3's object ownership: `BucketOwnerEnforced` (ACLs disabled), `BucketOwnerPreferred` or
    /// `ObjectWriter`.
    #[serde(default = "object_writer")]
    pub ownership: String,
    /// The public access block, when one is set.
    #[serde(default)]
    pub public_access_block: Option<PublicAccessBlock>,
    /// Bucket tags, in the order given.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// CORS rules (none: CORS is not enabled).
    #[serde(default)]
    pub cors: Vec<crate::cors::CorsRule>,
    /// The bucket policy, as the owner wrote it.
    #[serde(default)]
    pub policy: Option<String>,
    /// Lifecycle rules.
    #[serde(default)]
    pub lifecycle: Vec<crate::lifecycle::Rule>,
    /// Object lock's default retention.
    #[serde(default)]
    pub lock_default: Option<crate::objlock::DefaultRetention>,
    /// Default encryption of new objects (PutBucketEncryption).
    #[serde(default)]
    pub encryption: Option<crate::sse::BucketDefault>,
}

fn object_writer() -> String {
    OBJECT_WRITER.to_owned()
}

/// S3's object ownership settings.
pub const BUCKET_OWNER_ENFORCED: &str = "BucketOwnerEnforced";
/// See [`BUCKET_OWNER_ENFORCED`].
pub const BUCKET_OWNER_PREFERRED: &str = "BucketOwnerPreferred";
/// See [`BUCKET_OWNER_ENFORCED`].
pub const OBJECT_WRITER: &str = "ObjectWriter";

/// S3's public access block of a bucket.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublicAccessBlock {
    /// Refuse requests that set a public ACL.
    pub block_public_acls: bool,
    /// Public grants match no one.
    pub ignore_public_acls: bool,
    /// Refuse a public bucket policy.
    pub block_public_policy: bool,
    /// A public policy grants only the owner's account and AWS services.
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// Every block on (AWS's default for new buckets).
    pub const ALL: PublicAccessBlock = PublicAccessBlock {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };
}

/// What a new bucket gets when its request does not say.
#[derive(Debug, Clone)]
pub struct NewBucketDefaults {
    /// Its object ownership.
    pub ownership: String,
    /// Its public access block.
    pub public_access_block: Option<PublicAccessBlock>,
}

impl BucketRecord {
    /// True when the bucket's ACLs are disabled (owner enforced).
    pub fn acls_disabled(&self) -> bool {
        self.ownership == BUCKET_OWNER_ENFORCED
    }

    /// True when public grants are ignored.
    pub fn ignores_public_acls(&self) -> bool {
        self.public_access_block.is_some_and(|p| p.ignore_public_acls)
    }

    /// True when public ACLs are refused.
    pub fn blocks_public_acls(&self) -> bool {
        self.public_access_block.is_some_and(|p| p.block_public_acls)
    }
}

/// A bucket as a request uses it.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Its record.
    pub record: BucketRecord,
    /// Its Box's versioning state.
    pub versioning: Versioning,
    /// Its policy, parsed (a stored policy that no longer parses is treated as none, and logged).
    pub policy: Option<Arc<crate::policy::Policy>>,
}

/// The Box of a bucket name.
pub fn box_of(bucket: &str) -> String {
    let plain = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !bucket.starts_with("xn--")
        && !bucket.starts_with("sthree-");
    if plain {
        return bucket.to_owned();
    }
    let digest = sha2::Sha256::digest(bucket.as_bytes());
    format!("xn--{}", &hex::encode(digest)[..32])
}

/// S3's bucket naming rules, all of them: s3s's checks (length, characters, ends, `..`, IP
/// addresses, `xn--`) and the rest of AWS's list (no `.-` or `-.`, the reserved prefixes and
/// suffixes).
pub struct BucketNames;

impl s3s::validation::NameValidation for BucketNames {
    fn validate_bucket_name(&self, name: &str) -> bool {
        valid_bucket_name(name)
    }
}

/// True for a name S3 accepts for a new bucket.
pub fn valid_bucket_name(name: &str) -> bool {
    s3s::path::check_bucket_name(name)
        && !name.contains(".-")
        && !name.contains("-.")
        && !["sthree-", "amzn-s3-demo-"].iter().any(|p| name.starts_with(p))
        && !["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"].iter().any(|s| name.ends_with(s))
}

fn record_key(bucket: &str) -> Vec<u8> {
    format!("{RECORD_PREFIX}{bucket}").into_bytes()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The bucket records and their cache.
pub struct Buckets {
    client: TokioClient,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Arc<Bucket>, Instant)>>,
}

impl Buckets {
    /// The records of `client`'s node, creating the reserved Box when it is missing.
    ///
    /// # Errors
    /// The node's error when the reserved Box cannot be created.
    pub async fn open(client: TokioClient, ttl: Duration) -> Result<Buckets, ClientError> {
        match client.create_box(RESERVED_BOX, None).await {
            Ok(_) | Err(ClientError::BoxExists { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(Buckets { client, ttl, cache: Mutex::new(HashMap::new()) })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<Bucket>, Instant)>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets what is cached of `bucket` (after a change made here).
    pub fn forget(&self, bucket: &str) {
        self.cache().remove(bucket);
    }

    /// The record of `bucket` and the version of the record object.
    async fn read_record(&self, bucket: &str) -> S3Result<Option<(BucketRecord, Hlc)>> {
        match self.client.get_to_vec(RESERVED_BOX, &record_key(bucket), Default::default()).await {
            Ok((meta, bytes)) => {
                let record: BucketRecord = serde_json::from_slice(&bytes)
                    .map_err(|e| s3_error!(InternalError, "the record of bucket {bucket} is damaged: {e}"))?;
                Ok(Some((record, meta.hlc)))
            }
            Err(ClientError::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error(e, Missing::Key)),
        }
    }

    /// The bucket `name`.
    ///
    /// # Errors
    /// `NoSuchBucket`, or the node's error.
    pub async fn resolve(&self, name: &str) -> S3Result<Arc<Bucket>> {
        if let Some((b, at)) = self.cache().get(name) {
            if at.elapsed() < self.ttl {
                return Ok(Arc::clone(b));
            }
        }
        let Some((record, _)) = self.read_record(name).await? else {
            self.forget(name);
            return Err(no_such_bucket());
        };
        let info = match self.client.head_box(&record.box_name).await {
            Ok(info) => info,
            Err(ClientError::BoxNotFound { .. }) => return Err(no_such_bucket()),
            Err(e) => return Err(s3_error(e, Missing::Bucket)),
        };
        let policy = record.policy.as_deref().and_then(|text| match crate::policy::Policy::parse(text, name) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::error!(bucket = name, error = %e, "the stored bucket policy does not parse; ignored");
                None
            }
        });
        let bucket = Arc::new(Bucket { record, versioning: info.versioning, policy });
        self.cache().insert(name.to_owned(), (Arc::clone(&bucket), Instant::now()));
        Ok(bucket)
    }

    /// Creates bucket `record.name` as `record` says (its Box named by [`box_of`]).
    ///
    /// # Errors
    /// `BucketAlreadyOwnedByYou`, `BucketAlreadyExists`, or the node's error.
    pub async fn create(&self, mut record: BucketRecord) -> S3Result<BucketRecord> {
        record.box_name = box_of(&record.name);
        record.created_ms = now_ms();
        let name = record.name.clone();
        let name = name.as_str();
        let owner = record.owner.clone();
        let owner = owner.as_str();
        let object_lock = record.object_lock;
        let body = Bytes::from(serde_json::to_vec(&record).map_err(S3Error::internal_error)?);
        let options = PutOptions {
            content_type: Some("application/json".to_owned()),
            user_meta: vec![("owner".to_owned(), owner.to_owned())],
            condition: Some(Condition::IfAbsent),
            ..PutOptions::default()
        };
        let record = match self.client.put_bytes(RESERVED_BOX, &record_key(name), &options, body).await {
            Ok(_) => record,
            Err(ClientError::PreconditionFailed { .. }) => {
                let Some((existing, _)) = self.read_record(name).await? else {
                    return Err(s3_error!(
                        OperationAborted,
                        "A conflicting operation on this bucket is in progress; try again."
                    ));
                };
                if existing.owner != owner {
                    return Err(already_exists());
                }
                match self.client.head_box(&existing.box_name).await {
                    Ok(_) => {
                        return Err(s3_error!(
                            BucketAlreadyOwnedByYou,
                            "Your previous request to create the named bucket succeeded and you already own it."
                        ))
                    }
                    // A creation that stopped between the record and the Box: finish it.
                    Err(ClientError::BoxNotFound { .. }) => existing,
                    Err(e) => return Err(s3_error(e, Missing::Bucket)),
                }
            }
            Err(e) => return Err(s3_error(e, Missing::Key)),
        };
        match self.client.create_box(&record.box_name, None).await {
            Ok(_) => {}
            Err(ClientError::BoxExists { .. }) => {
                // A Box made over the native protocol holds the name: give the name back.
                let _ = self.client.delete(RESERVED_BOX, &record_key(name)).await;
                return Err(already_exists());
            }
            Err(e) => return Err(s3_error(e, Missing::Bucket)),
        }
        if object_lock {
            self.client
                .set_versioning(&record.box_name, Versioning::Enabled)
                .await
                .map_err(|e| s3_error(e, Missing::Bucket))?;
        }
        self.forget(name);
        Ok(record)
    }

    /// Deletes the (empty) bucket `name`.
    ///
    /// # Errors
    /// `NoSuchBucket`, `BucketNotEmpty`, or the node's error.
    pub async fn delete(&self, bucket: &Bucket) -> S3Result<()> {
        let name = &bucket.record.name;
        self.forget(name);
        match self.client.delete_box(&bucket.record.box_name, false).await {
            Ok(()) | Err(ClientError::BoxNotFound { .. }) => {}
            Err(e) => return Err(s3_error(e, Missing::Bucket)),
        }
        self.client.delete(RESERVED_BOX, &record_key(name)).await.map_err(|e| s3_error(e, Missing::Key))?;
        self.forget(name);
        Ok(())
    }

    /// Changes bucket `name`'s record with `change`, as a conditional write of the version read
    /// (retried when another gateway changed it in between).
    ///
    /// # Errors
    /// `NoSuchBucket`, `change`'s error, `OperationAborted` after too many races, or the node's.
    pub async fn update(
        &self,
        name: &str,
        mut change: impl FnMut(&mut BucketRecord) -> S3Result<()>,
    ) -> S3Result<BucketRecord> {
        for _ in 0..UPDATE_TRIES_MAX {
            let Some((mut record, version)) = self.read_record(name).await? else {
                return Err(no_such_bucket());
            };
            change(&mut record)?;
            let body = Bytes::from(serde_json::to_vec(&record).map_err(S3Error::internal_error)?);
            let options = PutOptions {
                content_type: Some("application/json".to_owned()),
                user_meta: vec![("owner".to_owned(), record.owner.clone())],
                condition: Some(Condition::IfVersion(version)),
                ..PutOptions::default()
            };
            match self.client.put_bytes(RESERVED_BOX, &record_key(name), &options, body).await {
                Ok(_) => {
                    self.forget(name);
                    return Ok(record);
                }
                Err(ClientError::PreconditionFailed { .. }) => continue,
                Err(e) => return Err(s3_error(e, Missing::Key)),
            }
        }
        Err(s3_error!(
            OperationAborted,
            "A conflicting conditional operation is currently in progress against this resource. Please try again."
        ))
    }

    /// Every bucket record, in name order.
    ///
    /// # Errors
    /// The node's error.
    pub async fn list(&self) -> S3Result<Vec<(String, String, u64)>> {
        let options =
            ListOptions { prefix: Some(RECORD_PREFIX.as_bytes().to_vec()), with_meta: true, ..ListOptions::default() };
        let entries = self.client.list_all(RESERVED_BOX, &options).await.map_err(|e| s3_error(e, Missing::Bucket))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let name = String::from_utf8_lossy(e.key.get(RECORD_PREFIX.len()..).unwrap_or_default()).into_owned();
            let owner = e.user_meta.iter().find(|(k, _)| k == "owner").map(|(_, v)| v.clone()).unwrap_or_default();
            out.push((name, owner, e.created_ms));
        }
        Ok(out)
    }
}

fn no_such_bucket() -> S3Error {
    s3_error!(NoSuchBucket, "The specified bucket does not exist.")
}

fn already_exists() -> S3Error {
    s3_error!(
        BucketAlreadyExists,
        "The requested bucket name is not available. The bucket namespace is shared by all users of the system."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_every_aws_rule() {
        for good in ["abc", "my-bucket", "my.bucket.example", "a1-b2", "x".repeat(63).as_str()] {
            assert!(valid_bucket_name(good), "{good}");
        }
        let long = "x".repeat(64);
        for bad in [
            "ab",
            long.as_str(),
            "Upper",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "1.2.3.4",
            "a-.b",
            "a.-b",
            "xn--ab",
            "sthree-ab",
            "amzn-s3-demo-x",
            "ab-s3alias",
            "ab--ol-s3",
            "ab.mrap",
            "ab--x-s3",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn plain_names_are_their_box_and_dotted_ones_cannot_collide() {
        assert_eq!(box_of("photos-2024"), "photos-2024");
        let dotted = box_of("my.photos");
        assert!(dotted.starts_with("xn--") && dotted.len() == 36, "{dotted}");
        assert_ne!(box_of("my.photos"), box_of("my.photo"));
        assert!(box_of(RESERVED_BOX) != RESERVED_BOX);
    }
}
