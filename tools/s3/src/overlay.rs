//! Per-version overlay records in the reserved Box: what S3 lets a client change on a version
//! after its put without making a new version (object-lock state, tags). A record
//! `KIND/BOX/KEYHASH32/VERSION` holds user-metadata entries that win over the version's own.
//!
//! Invariants:
//! - A record changes only by a conditional write of the record read (if absent, or if its
//!   version is the one read), so two gateways racing cannot both pass a check made on the old
//!   value.
//! - A record, once written, always overrides (an empty change writes the entry `none` = `true`).

use bytes::Bytes;
use candybox_wire::client::{ClientError, Condition, Hlc, PutOptions, TokioClient};
use s3s::{s3_error, S3Result};
use sha2::Digest as _;

use crate::buckets::RESERVED_BOX;
use crate::errors::{s3_error, Missing};

/// The key of the `kind` record of version `version` of `key` in Box `box_name`.
pub fn record_key(kind: &str, box_name: &str, key: &[u8], version: Hlc) -> Vec<u8> {
    let hash = hex::encode(sha2::Sha256::digest(key));
    format!("{kind}/{box_name}/{}/{}", &hash[..32], crate::ids::version_id(version)).into_bytes()
}

/// The `kind` record of a version: its entries and its own version, or `None`.
///
/// # Errors
/// The node's error reading it.
pub async fn read(
    client: &TokioClient,
    kind: &str,
    box_name: &str,
    key: &[u8],
    version: Hlc,
) -> S3Result<Option<(Vec<(String, String)>, Hlc)>> {
    match client.head(RESERVED_BOX, &record_key(kind, box_name, key, version)).await {
        Ok(m) => Ok(Some((m.user_meta, m.hlc))),
        Err(ClientError::NotFound { .. }) => Ok(None),
        Err(e) => Err(s3_error(e, Missing::Key)),
    }
}

/// The entries that hold for a version: its `kind` record's when there is one (with the
/// record's version, for a conditional rewrite), else its own `entries`.
///
/// # Errors
/// The node's error reading the record.
pub async fn effective(
    client: &TokioClient,
    kind: &str,
    box_name: &str,
    key: &[u8],
    version: Hlc,
    entries: &[(String, String)],
) -> S3Result<(Vec<(String, String)>, Option<Hlc>)> {
    Ok(match read(client, kind, box_name, key, version).await? {
        Some((record, v)) => (record, Some(v)),
        None => (entries.to_vec(), None),
    })
}

/// Writes `entries` as the `kind` record of a version, if the record is still `read` (`None`:
/// absent).
///
/// # Errors
/// `OperationAborted` when another request changed the record in between; the node's error.
pub async fn write(
    client: &TokioClient,
    kind: &str,
    box_name: &str,
    key: &[u8],
    version: Hlc,
    read: Option<Hlc>,
    mut entries: Vec<(String, String)>,
) -> S3Result<()> {
    if entries.is_empty() {
        entries.push(("none".to_owned(), "true".to_owned()));
    }
    let condition = match read {
        Some(v) => Condition::IfVersion(v),
        None => Condition::IfAbsent,
    };
    let options = PutOptions { user_meta: entries, condition: Some(condition), ..PutOptions::default() };
    match client.put_bytes(RESERVED_BOX, &record_key(kind, box_name, key, version), &options, Bytes::new()).await {
        Ok(_) => Ok(()),
        Err(ClientError::PreconditionFailed { .. }) => Err(s3_error!(
            OperationAborted,
            "A conflicting conditional operation is currently in progress against this resource. Please try again."
        )),
        Err(e) => Err(s3_error(e, Missing::Key)),
    }
}
