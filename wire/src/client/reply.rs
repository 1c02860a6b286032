//! Turning a verified `Reply` flatbuffer into the client's plain values.
//!
//! Invariants:
//! - Every function verifies the body with [`verify_reply`] (explicit limits) before reading a
//!   field; an `error` table becomes its [`ClientError`] variant; an unexpected body kind is a
//!   [`ClientError::Protocol`].
//! - Relayed locators and rename tokens are `Bytes::slice_ref`s of the received body: the exact
//!   bytes the node sent, with no copy and no re-encoding.

use bytes::Bytes;

use super::error::ClientError;
use super::types::{
    BoxInfo, CandyMeta, DeleteDone, Hlc, ListEntry, ListPage, PartInfo, PutDone, RelayedLocator, RenameOutcome,
    RenamePrepared, ShardStats, Topology, UploadInfo, VersionEntry, VersionPage, Versioning,
};
use crate::fb;
use crate::frame::verify_reply;

/// Verifies `body` and returns the reply, or the error it carries.
///
/// # Errors
/// The node's error; [`ClientError::Protocol`] when the verifier refuses the body.
pub fn reply(body: &[u8], cap: u32) -> Result<fb::Reply<'_>, ClientError> {
    let reply = verify_reply(body, cap)?;
    if let Some(e) = reply.error() {
        return Err(ClientError::from_wire(&e));
    }
    Ok(reply)
}

fn unexpected(expected: &str, reply: &fb::Reply<'_>) -> ClientError {
    ClientError::protocol(format!(
        "expected a {expected} reply, got {}",
        reply.body_type().variant_name().unwrap_or("unknown")
    ))
}

fn hlc(h: Option<&fb::Hlc>) -> Hlc {
    h.map(|h| Hlc { physical_ms: h.physical_ms(), logical: h.logical(), node: h.node() }).unwrap_or_default()
}

fn box_info(b: &fb::BoxInfo<'_>) -> BoxInfo {
    BoxInfo {
        name: b.box_name().unwrap_or_default().to_owned(),
        partitions: b.partitions(),
        created_ms: b.created_ms(),
        box_uid: b.box_uid(),
        node: b.node(),
        versioning: match b.versioning() {
            fb::Versioning::Enabled => Versioning::Enabled,
            fb::Versioning::Suspended => Versioning::Suspended,
            _ => Versioning::Off,
        },
    }
}

/// A delete's reply: `DeleteDone` (a versioned Box's marker or deleted version), or `Done`.
///
/// # Errors
/// As [`reply`].
pub fn delete_done(body: &[u8], cap: u32) -> Result<DeleteDone, ClientError> {
    let r = reply(body, cap)?;
    Ok(r.body_as_delete_done()
        .map(|d| DeleteDone { version: hlc(d.version()), delete_marker: d.delete_marker() })
        .unwrap_or_default())
}

/// `VersionPage` of one partition.
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn version_page(body: &[u8], cap: u32) -> Result<VersionPage, ClientError> {
    let r = reply(body, cap)?;
    let page = r.body_as_version_page().ok_or_else(|| unexpected("VersionPage", &r))?;
    let entries = page
        .entries()
        .map(|v| {
            v.iter()
                .map(|e| VersionEntry {
                    key: e.key().map(|k| k.bytes().to_vec()).unwrap_or_default(),
                    version: hlc(e.version()),
                    is_latest: e.is_latest(),
                    delete_marker: e.delete_marker(),
                    size: e.size(),
                    checksum: e.checksum(),
                    content_type: e.content_type().unwrap_or_default().to_owned(),
                    created_ms: e.created_ms(),
                    modified_ms: e.modified_ms(),
                    user_meta: key_values(e.user_meta()),
                })
                .collect()
        })
        .unwrap_or_default();
    let next = page.next_key_marker().map(|k| (k.bytes().to_vec(), hlc(page.next_version_marker())));
    Ok(VersionPage { entries, next })
}

fn key_values<'a>(
    v: Option<flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<fb::KeyValue<'a>>>>,
) -> Vec<(String, String)> {
    v.map(|v| v.iter().map(|kv| (kv.key().to_owned(), kv.value().to_owned())).collect()).unwrap_or_default()
}

/// `DeleteManyReply`: one result per requested key, in request order (`expected` of them).
///
/// # Errors
/// As [`reply`], a body of another kind, or a count other than `expected`.
pub fn delete_many(
    body: &[u8],
    cap: u32,
    expected: usize,
) -> Result<Vec<Result<DeleteDone, ClientError>>, ClientError> {
    let r = reply(body, cap)?;
    let d = r.body_as_delete_many_reply().ok_or_else(|| unexpected("DeleteManyReply", &r))?;
    let results: Vec<_> = d
        .results()
        .map(|v| {
            v.iter()
                .map(|x| match x.error() {
                    Some(e) => Err(ClientError::from_wire(&e)),
                    None => Ok(DeleteDone { version: hlc(x.version()), delete_marker: x.delete_marker() }),
                })
                .collect()
        })
        .unwrap_or_default();
    if results.len() != expected {
        return Err(ClientError::protocol(format!(
            "a delete-many of {expected} keys was answered with {} results",
            results.len()
        )));
    }
    Ok(results)
}

fn candy_meta(m: &fb::CandyMeta<'_>) -> CandyMeta {
    CandyMeta {
        size: m.size(),
        checksum: m.checksum(),
        hlc: hlc(m.hlc()),
        content_type: m.content_type().unwrap_or_default().to_owned(),
        user_meta: key_values(m.user_meta()),
        created_ms: m.created_ms(),
    }
}

/// A reply whose body does not matter (`Done`, or anything else a mutation returns).
///
/// # Errors
/// As [`reply`].
pub fn done(body: &[u8], cap: u32) -> Result<(), ClientError> {
    reply(body, cap).map(|_| ())
}

/// `BoxReply`.
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn box_reply(body: &[u8], cap: u32) -> Result<BoxInfo, ClientError> {
    let r = reply(body, cap)?;
    let info = r.body_as_box_reply().and_then(|b| b.info()).ok_or_else(|| unexpected("BoxReply", &r))?;
    Ok(box_info(&info))
}

/// `BoxList`.
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn box_list(body: &[u8], cap: u32) -> Result<Vec<BoxInfo>, ClientError> {
    let r = reply(body, cap)?;
    let list = r.body_as_box_list().ok_or_else(|| unexpected("BoxList", &r))?;
    Ok(list.boxes().map(|v| v.iter().map(|b| box_info(&b)).collect()).unwrap_or_default())
}

/// `PutDone` (also accepts `CandyMeta`, and `Done`, which reports nothing).
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn put_done(body: &[u8], cap: u32) -> Result<Option<PutDone>, ClientError> {
    let r = reply(body, cap)?;
    if let Some(p) = r.body_as_put_done() {
        return Ok(Some(PutDone { size: p.size(), checksum: p.checksum(), hlc: hlc(p.hlc()) }));
    }
    if let Some(m) = r.body_as_candy_meta() {
        return Ok(Some(PutDone { size: m.size(), checksum: m.checksum(), hlc: hlc(m.hlc()) }));
    }
    if r.body_as_done().is_some() {
        return Ok(None);
    }
    Err(unexpected("PutDone", &r))
}

/// `CandyMeta`.
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn candy_meta_reply(body: &[u8], cap: u32) -> Result<CandyMeta, ClientError> {
    let r = reply(body, cap)?;
    let m = r.body_as_candy_meta().ok_or_else(|| unexpected("CandyMeta", &r))?;
    Ok(candy_meta(&m))
}

/// `GetDone`: the metadata, the first byte and the length of the bytes that follow.
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn get_done(body: &[u8], cap: u32) -> Result<(CandyMeta, u64, u64), ClientError> {
    let r = reply(body, cap)?;
    let g = r.body_as_get_done().ok_or_else(|| unexpected("GetDone", &r))?;
    let meta = g.meta().map(|m| candy_meta(&m)).unwrap_or_default();
    Ok((meta, g.first(), g.length()))
}

/// `ListPage` of one partition.
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn list_page(body: &[u8], cap: u32) -> Result<ListPage, ClientError> {
    let r = reply(body, cap)?;
    let page = r.body_as_list_page().ok_or_else(|| unexpected("ListPage", &r))?;
    let entries = page
        .entries()
        .map(|v| {
            v.iter()
                .map(|e| ListEntry {
                    key: e.key().map(|k| k.bytes().to_vec()).unwrap_or_default(),
                    size: e.size(),
                    checksum: e.checksum(),
                    hlc: hlc(e.hlc()),
                    content_type: e.content_type().unwrap_or_default().to_owned(),
                    created_ms: e.created_ms(),
                    user_meta: key_values(e.user_meta()),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ListPage { entries, next_start_after: page.next_start_after().map(|k| k.bytes().to_vec()) })
}

/// `UploadCreated`: the upload id.
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn upload_created(body: &[u8], cap: u32) -> Result<u64, ClientError> {
    let r = reply(body, cap)?;
    r.body_as_upload_created().map(|u| u.upload_id()).ok_or_else(|| unexpected("UploadCreated", &r))
}

/// `UploadList` of one partition.
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn upload_list(body: &[u8], cap: u32) -> Result<Vec<UploadInfo>, ClientError> {
    let r = reply(body, cap)?;
    let list = r.body_as_upload_list().ok_or_else(|| unexpected("UploadList", &r))?;
    Ok(list
        .uploads()
        .map(|v| {
            v.iter()
                .map(|u| UploadInfo {
                    key: u.key().map(|k| k.bytes().to_vec()).unwrap_or_default(),
                    upload_id: u.upload_id(),
                    created_ms: u.created_ms(),
                    parts: u.parts(),
                })
                .collect()
        })
        .unwrap_or_default())
}

/// `PartList`.
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn part_list(body: &[u8], cap: u32) -> Result<Vec<PartInfo>, ClientError> {
    let r = reply(body, cap)?;
    let list = r.body_as_part_list().ok_or_else(|| unexpected("PartList", &r))?;
    Ok(list
        .parts()
        .map(|v| {
            v.iter()
                .map(|p| PartInfo { part_number: p.part_number(), size: p.size(), checksum: p.checksum() })
                .collect()
        })
        .unwrap_or_default())
}

/// `LocatorReply`: the locator bytes as a slice of `body`.
///
/// # Errors
/// As [`reply`], a body of another kind, or a reply without a locator.
pub fn locator_reply(body: &Bytes, cap: u32) -> Result<RelayedLocator, ClientError> {
    let r = reply(body, cap)?;
    let l = r.body_as_locator_reply().ok_or_else(|| unexpected("LocatorReply", &r))?;
    let bytes = l.locator().ok_or_else(|| ClientError::protocol("a LocatorReply without a locator"))?.bytes();
    Ok(RelayedLocator { locator: body.slice_ref(bytes), partition: l.partition() })
}

/// `RenamePrepared`: token and locator as slices of `body`.
///
/// # Errors
/// As [`reply`], a body of another kind, or a reply without a token or locator.
pub fn rename_prepared(body: &Bytes, cap: u32) -> Result<RenamePrepared, ClientError> {
    let r = reply(body, cap)?;
    let p = r.body_as_rename_prepared().ok_or_else(|| unexpected("RenamePrepared", &r))?;
    let token = p.token().ok_or_else(|| ClientError::protocol("a RenamePrepared without a token"))?.bytes();
    let locator = p.locator().ok_or_else(|| ClientError::protocol("a RenamePrepared without a locator"))?.bytes();
    Ok(RenamePrepared {
        token: body.slice_ref(token),
        locator: body.slice_ref(locator),
        source_hlc: hlc(p.source_hlc()),
        source_partition: p.source_partition(),
        target_partition: p.target_partition(),
    })
}

/// `RenameCompleted` (a `Done` counts as finalized).
///
/// # Errors
/// As [`reply`], a body of another kind, or an unknown outcome.
pub fn rename_completed(body: &[u8], cap: u32) -> Result<RenameOutcome, ClientError> {
    let r = reply(body, cap)?;
    if r.body_as_done().is_some() {
        return Ok(RenameOutcome::Finalized);
    }
    let c = r.body_as_rename_completed().ok_or_else(|| unexpected("RenameCompleted", &r))?;
    match c.outcome() {
        fb::RenameOutcome::Finalized => Ok(RenameOutcome::Finalized),
        fb::RenameOutcome::SourceChanged => Ok(RenameOutcome::SourceChanged),
        fb::RenameOutcome::Pending => Ok(RenameOutcome::Pending),
        other => Err(ClientError::protocol(format!("unknown rename outcome {}", other.0))),
    }
}

/// `TopologyReply`.
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn topology(body: &[u8], cap: u32) -> Result<Topology, ClientError> {
    let r = reply(body, cap)?;
    let t = r.body_as_topology_reply().ok_or_else(|| unexpected("TopologyReply", &r))?;
    Ok(Topology {
        node_id: t.node_id(),
        shard_count: t.shard_count(),
        ports: t.ports().map(|p| p.iter().collect()).unwrap_or_default(),
        main_port: t.main_port(),
        placement: t.placement().unwrap_or_default().to_owned(),
        shard: t.shard(),
    })
}

/// `StatsReply`.
///
/// # Errors
/// As [`reply`], or a body of another kind.
pub fn stats(body: &[u8], cap: u32) -> Result<Vec<ShardStats>, ClientError> {
    let r = reply(body, cap)?;
    let s = r.body_as_stats_reply().ok_or_else(|| unexpected("StatsReply", &r))?;
    Ok(s.shards()
        .map(|v| {
            v.iter()
                .map(|sh| ShardStats {
                    shard: sh.shard(),
                    counters: sh
                        .counters()
                        .map(|c| c.iter().map(|c| (c.name().unwrap_or_default().to_owned(), c.value())).collect())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default())
}
