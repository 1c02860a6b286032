//! From the node's typed errors to S3's: one `match`, so every node error has exactly one S3
//! answer.
//!
//! Invariants:
//! - A client's mistake is a 4xx; only the node's or the gateway's own failures are 5xx
//!   (`InternalError` for damage, `ServiceUnavailable`/`SlowDown` for what a retry may cure).
//! - A message never carries a secret or a stack: it is the node's one-line explanation.

use candybox_wire::client::ClientError;
use s3s::{S3Error, S3ErrorCode};

/// What the node's `NotFound` means for the request at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// An object (`NoSuchKey`).
    Key,
    /// A version named by id (`NoSuchVersion`).
    Version,
    /// A multipart upload (`NoSuchUpload`).
    Upload,
    /// The bucket (`NoSuchBucket`).
    Bucket,
}

/// The S3 error for a node error, where a missing object is `missing`.
pub fn s3_error(e: ClientError, missing: Missing) -> S3Error {
    use S3ErrorCode as C;
    let (code, message): (C, String) = match &e {
        ClientError::NotFound { .. } => match missing {
            Missing::Key => (C::NoSuchKey, "The specified key does not exist.".into()),
            Missing::Version => (C::NoSuchVersion, "The specified version does not exist.".into()),
            Missing::Upload => (C::NoSuchUpload, "The specified upload does not exist.".into()),
            Missing::Bucket => (C::NoSuchBucket, "The specified bucket does not exist.".into()),
        },
        ClientError::BoxNotFound { .. } => (C::NoSuchBucket, "The specified bucket does not exist.".into()),
        ClientError::BoxExists { .. } => (C::BucketAlreadyExists, "The requested bucket name is not available.".into()),
        ClientError::BoxNotEmpty { .. } => (C::BucketNotEmpty, "The bucket you tried to delete is not empty.".into()),
        ClientError::Busy { .. } => (C::SlowDown, "Please reduce your request rate.".into()),
        ClientError::InvalidArgument { field, message } if field == "range" => (C::InvalidRange, message.clone()),
        ClientError::InvalidArgument { field, message } => {
            (C::InvalidArgument, format!("invalid `{field}`: {message}"))
        }
        ClientError::LimitExceeded { limit, max, .. } if limit.contains("meta") => (
            C::MetadataTooLarge,
            format!("Your metadata headers exceed the maximum allowed metadata size ({max} bytes)."),
        ),
        ClientError::LimitExceeded { limit, max, .. } if limit.contains("key") => {
            (C::KeyTooLongError, format!("Your key is too long (at most {max} bytes)."))
        }
        ClientError::LimitExceeded { limit, value, max, .. } => {
            (C::InvalidArgument, format!("`{limit}` is {value}, more than the limit of {max}"))
        }
        ClientError::PreconditionFailed { .. } => {
            (C::PreconditionFailed, "At least one of the pre-conditions you specified did not hold".into())
        }
        ClientError::IsDeleteMarker { .. } => {
            (C::MethodNotAllowed, "The specified method is not allowed against this resource.".into())
        }
        ClientError::NoSpace { message } => (C::ServiceUnavailable, format!("the node's disk is full: {message}")),
        ClientError::ShuttingDown { .. } | ClientError::Unavailable { .. } | ClientError::NotOwner { .. } => {
            (C::ServiceUnavailable, format!("the node cannot serve this now: {e}"))
        }
        ClientError::Io { .. } | ClientError::Closed { .. } | ClientError::Timeout { .. } => {
            (C::ServiceUnavailable, format!("the node could not be reached: {e}"))
        }
        ClientError::Conflict { message } => (C::OperationAborted, message.clone()),
        _ => (C::InternalError, format!("the node failed: {e}")),
    };
    if code == C::InternalError {
        tracing::error!(error = %e, "node error answered as InternalError");
    }
    S3Error::with_message(code, message)
}

/// Adds S3's `x-amz-delete-marker` (and the marker's version id) to an error about one.
pub fn with_delete_marker(mut err: S3Error, version_id: Option<String>) -> S3Error {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-amz-delete-marker", http::HeaderValue::from_static("true"));
    if let Some(v) = version_id.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
        headers.insert("x-amz-version-id", v);
    }
    err.set_headers(headers);
    err
}
